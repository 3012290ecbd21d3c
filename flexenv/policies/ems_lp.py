"""Exact continuous part of the energy-box EMS: a primal-dual interior-point LP in numba.

For a fixed appliance start, the prosumer problem of :mod:`flexenv.policies.ems` is a linear programme
(the bill is convex piecewise-linear in the net power when the export price does not exceed the
import price; the soft caps, comfort band and EV deadline add convex PL penalties). This module solves
it with Mehrotra's predictor-corrector interior-point method. The constraint matrix is block
bidiagonal in time, so the normal equations are block tridiagonal with blocks of at most 4 x 4 (one row
per PTU for the power balance and for each present storage: battery, EV, building) and each Newton
step costs O(H) through a block LDL^T factorisation. No solver call, one prosumer per numba thread.

Variables per PTU t (kW unless noted; all boxed, so the optimal face is bounded and the interior-point
iterates converge to its centre), stored variable-major as (NV, H) so each variable is one contiguous
row and the loops over a device's variables are plain vector loops::

    BC, BD  battery charge / discharge power          BE  stored energy after t (kWh)
    EC, ED  EV charge / V2G discharge power           ES  energy delivered after t (kWh)
    HP      heat-pump electric power                  HM, HL, HH  indoor temperature after t
            (T = HM - HL + HH, HM in the comfort band, HL / HH the K below / above it)
    PV      PV power used                             IM, VI  import within / beyond the import cap
    EX, VE  export within / beyond the export cap

Rows per PTU (stored (NR, H)): the power balance, and the state updates of battery, EV and building.
An absent device has its variables fixed at 0 and its row inactive; the solver skips both, so a
battery-only prosumer solves 2 x 2 blocks over 8 variables per PTU. Simultaneous charge and discharge
get a tiny cost (``EPS_EUR_PER_KWH``) so ties resolve to no cycling. Where an export price exceeds the
import price the LP uses the import price for export (the MILP's binary has no LP equivalent); the
plan is still scored with the true bill.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np
from numba.core import types as nbt
from numba.extending import intrinsic

from flexenv.policies.nb_arrays import borrow

NV, NR = 15, 4  # variables and rows per PTU
BC, BD, BE, EC, ED, ES, HP, HM, HL, HH, PV, IM, VI, EX, VE = range(NV)
# sign of each variable in the power balance row (consumption +)
BAL = np.array([1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, 1.0, 1.0])
# the variables of each row's device, as a range of variable rows: battery, EV, building; the grid
# variables (PV, IM, VI, EX, VE) belong to the balance row and are always present
DEVICE_VARS = ((BC, BE + 1), (EC, ES + 1), (HP, HH + 1))
EPS_EUR_PER_KWH = 1.0e-7  # tie-break against charging and discharging at once
COMFORT_SLACK_MAX_K = 100.0
START_OFFSET = 1.0e9  # first iterate: at most this above its lower bound
START_DUAL = 0.1  # first bound duals: this plus the variable's cost where it pushes towards that bound
STEP_FRACTION = 0.995  # of the step to the boundary
# The reductions over all variables (step lengths, residual norms, sums) are most of an iteration unless
# they vectorise. LLVM vectorises a sum when allowed to reassociate it (REDUCE_FLAGS; the result is
# still the same for the same input), but never a floating-point max; an integer max it does. For
# non-negative doubles the bit patterns read as int64 are ordered like the values, and a negative
# double reads as a negative int64, so max(bits(1.0), bits(v_k)...) is bits(max(1.0, v_k...)).
REDUCE_FLAGS = {"reassoc"}


@intrinsic
def _bits(typingctx, x):
    """The bit pattern of a float64 as an int64 (no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(nbt.int64))

    return nbt.int64(nbt.float64), codegen


@intrinsic
def _from_bits(typingctx, i):
    """The float64 with the bit pattern of an int64 (the inverse of :func:`_bits`)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(nbt.float64))

    return nbt.float64(nbt.int64), codegen


@nb.njit(cache=True, error_model="numpy")
def _Ax(H, g, gain, k1, a, act, x, out):
    """out = A x for x (NV, H), out (NR, H); rows: balance, battery, EV, building (inactive rows 0)."""
    for t in range(H):
        out[0, t] = -x[PV, t] - x[IM, t] - x[VI, t] + x[EX, t] + x[VE, t]
    if act[1]:
        for t in range(H):
            out[0, t] += x[BC, t] - x[BD, t]
            out[1, t] = x[BE, t] + g[0] * x[BC, t] + g[1] * x[BD, t]
        for t in range(1, H):
            out[1, t] -= k1 * x[BE, t - 1]
    if act[2]:
        for t in range(H):
            out[0, t] += x[EC, t] - x[ED, t]
            out[2, t] = x[ES, t] + g[2] * x[EC, t] + g[3] * x[ED, t]
        for t in range(1, H):
            out[2, t] -= x[ES, t - 1]
    if act[3]:
        for t in range(H):
            out[0, t] += x[HP, t]
            out[3, t] = x[HM, t] - x[HL, t] + x[HH, t] - gain[t] * x[HP, t]
        for t in range(1, H):
            out[3, t] -= a * (x[HM, t - 1] - x[HL, t - 1] + x[HH, t - 1])


@nb.njit(cache=True, error_model="numpy")
def _ATy(H, g, gain, k1, a, act, y, out):
    """out = A^T y for y (NR, H), out (NV, H); the variables of absent devices are left untouched."""
    for t in range(H):
        y0 = y[0, t]
        out[PV, t] = -y0
        out[IM, t] = -y0
        out[VI, t] = -y0
        out[EX, t] = y0
        out[VE, t] = y0
    if act[1]:
        for t in range(H):
            out[BC, t] = y[0, t] + g[0] * y[1, t]
            out[BD, t] = -y[0, t] + g[1] * y[1, t]
            out[BE, t] = y[1, t]
        for t in range(H - 1):
            out[BE, t] -= k1 * y[1, t + 1]
    if act[2]:
        for t in range(H):
            out[EC, t] = y[0, t] + g[2] * y[2, t]
            out[ED, t] = -y[0, t] + g[3] * y[2, t]
            out[ES, t] = y[2, t]
        for t in range(H - 1):
            out[ES, t] -= y[2, t + 1]
    if act[3]:
        for t in range(H):
            out[HP, t] = y[0, t] - gain[t] * y[3, t]
            h = y[3, t] - (a * y[3, t + 1] if t + 1 < H else 0.0)
            out[HM, t] = h
            out[HL, t] = -h
            out[HH, t] = h


@nb.njit(cache=True, error_model="numpy")
def _state_rows(act, rows):
    """Fills rows (NR - 1,) with the active state rows (battery 1, EV 2, building 3) in order; returns
    their number."""
    ns = 0
    for r in range(1, NR):
        if act[r]:
            rows[ns] = r
            ns += 1
    return ns


@nb.njit(cache=True, error_model="numpy")
def _factor(H, g, gain, k1, a, rows, ns, th, s0, d0i, sd, cc, Ls, Ws, Dg, Di, S, v):
    """Factor M = A diag(th) A^T. The balance row of a PTU couples only with that PTU's state rows, so it
    is eliminated first, PTU by PTU (vector loops, no chain through time): its inverse pivot d0i (H,)
    and its coupling s0 (NR - 1, H) to each active state row. What is left is block tridiagonal in the
    state rows alone (blocks of at most 3 x 3; a scalar tridiagonal system for one storage), with
    diagonal couplings C_t, factored by :func:`_factor_n` (sd, cc: work arrays for its diagonal and
    coupling terms; S, v: its block work arrays). rows, ns: the active state rows (:func:`_state_rows`)."""
    for t in range(H):
        d0i[t] = th[PV, t] + th[IM, t] + th[VI, t] + th[EX, t] + th[VE, t]
    for p in range(ns):
        r = rows[p]
        if r == 1:
            for t in range(H):
                d0i[t] += th[BC, t] + th[BD, t]
                s0[p, t] = g[0] * th[BC, t] - g[1] * th[BD, t]
                sd[p, t] = th[BE, t] + g[0] * g[0] * th[BC, t] + g[1] * g[1] * th[BD, t]
            for t in range(1, H):
                sd[p, t] += k1 * k1 * th[BE, t - 1]
                cc[p, t] = -k1 * th[BE, t - 1]
        elif r == 2:
            for t in range(H):
                d0i[t] += th[EC, t] + th[ED, t]
                s0[p, t] = g[2] * th[EC, t] - g[3] * th[ED, t]
                sd[p, t] = th[ES, t] + g[2] * g[2] * th[EC, t] + g[3] * g[3] * th[ED, t]
            for t in range(1, H):
                sd[p, t] += th[ES, t - 1]
                cc[p, t] = -th[ES, t - 1]
        else:
            for t in range(H):
                d0i[t] += th[HP, t]
                s0[p, t] = -gain[t] * th[HP, t]
                sd[p, t] = th[HM, t] + th[HL, t] + th[HH, t] + gain[t] * gain[t] * th[HP, t]
            for t in range(1, H):
                hp = th[HM, t - 1] + th[HL, t - 1] + th[HH, t - 1]
                sd[p, t] += a * a * hp
                cc[p, t] = -a * hp
    for t in range(H):  # a balance row whose variables all sit at bounds decouples (huge pivot)
        d0i[t] = 1.0 / d0i[t] if d0i[t] > 1e-300 else 1e-64
    if ns == 3:
        _factor_n(H, s0, d0i, sd, cc, Ls, Ws, Dg, Di, S, v, 3)
    elif ns == 2:
        _factor_n(H, s0, d0i, sd, cc, Ls, Ws, Dg, Di, S, v, 2)
    elif ns == 1:
        _factor_n(H, s0, d0i, sd, cc, Ls, Ws, Dg, Di, S, v, 1)


@nb.njit(cache=True, error_model="numpy")
def _factor_n(H, s0, d0i, sd, cc, Ls, Ws, Dg, Di, S, v, ns):
    """Block LDL^T of the state-row system left after :func:`_factor` eliminated the balance rows:
    diagonal blocks S_t = diag(sd_t) - s0_t s0_t^T d0i_t, diagonal couplings C_t = diag(cc_t) below.
    Unit lower blocks L_t (Ls), pivots D_t (Dg) and their inverses (Di), blocks W_t (Ws) with
    W_t D_{t-1} L_{t-1}^T = C_t and L_t D_t L_t^T = S_t - W_t D_{t-1} W_t^T. LDL^T rather than Cholesky:
    this is a chain through time, and one division per pivot is shorter than a square root and a
    division. A pivot that vanishes relative to its diagonal (a row whose variables all sit at bounds)
    is replaced by a huge one, which decouples that row. ns (compile-time): the number of state rows."""
    nb.literally(ns)
    for t in range(H):
        for i in range(ns):
            for j in range(i + 1):
                S[i, j] = (sd[i, t] if i == j else 0.0) - s0[i, t] * s0[j, t] * d0i[t]
        if t > 0:
            Lp = Ls[t - 1]
            for r in range(ns):  # row r of W = (D^-1 L^-1 c_r e_r)^T of block t-1
                for q in range(r):
                    v[q] = 0.0
                v[r] = cc[r, t]
                Ws[t, r, r] = cc[r, t] * Di[t - 1, r]
                for q in range(r + 1, ns):
                    u = 0.0
                    for k in range(r, q):
                        u -= Lp[q, k] * v[k]
                    v[q] = u
                    Ws[t, r, q] = u * Di[t - 1, q]
                for q in range(r + 1):  # S -= W D W^T (lower part; W[r, k] = 0 for k < r)
                    u = 0.0
                    for k in range(r, ns):
                        u += Ws[t, r, k] * Ws[t, q, k] * Dg[t - 1, k]
                    S[r, q] -= u
        L = Ls[t]
        for i in range(ns):
            for j in range(i):
                u = S[i, j]
                for k in range(j):
                    u -= L[i, k] * Dg[t, k] * L[j, k]
                L[i, j] = u * Di[t, j]
            u = S[i, i]
            for k in range(i):
                u -= L[i, k] * L[i, k] * Dg[t, k]
            ok = u > 1e-14 * abs(S[i, i]) and u > 1e-300
            Dg[t, i] = u if ok else 1e64
            Di[t, i] = 1.0 / u if ok else 1e-64


@nb.njit(cache=True, error_model="numpy")
def _solve(H, rows, ns, s0, d0i, Ls, Ws, Di, r, z, out):
    """out = M^-1 r (r, out: (NR, H); z: (H, NR) work) with the factors of :func:`_factor`: the
    balance rows eliminated from r, the state rows solved, the balance rows recovered. Inactive rows
    of out are left untouched."""
    for p in range(ns):
        rp = rows[p]
        for t in range(H):
            z[t, p] = r[rp, t] - s0[p, t] * d0i[t] * r[0, t]
    if ns == 3:
        _solve_n(H, Ls, Ws, Di, z, 3)
    elif ns == 2:
        _solve_n(H, Ls, Ws, Di, z, 2)
    elif ns == 1:
        _solve_n(H, Ls, Ws, Di, z, 1)
    for t in range(H):
        out[0, t] = r[0, t]
    for p in range(ns):
        rp = rows[p]
        for t in range(H):
            out[rp, t] = z[t, p]
            out[0, t] -= s0[p, t] * z[t, p]
    for t in range(H):
        out[0, t] *= d0i[t]


@nb.njit(cache=True, error_model="numpy")
def _solve_n(H, Ls, Ws, Di, z, ns):
    """Solve the state-row system of :func:`_factor_n` in place (z: (H, NR), first ns columns): forward
    through the unit lower factor, scale by the inverse pivots, back through its transpose; no
    division. ns (compile-time): the number of state rows."""
    nb.literally(ns)
    for t in range(H):
        L = Ls[t]
        for i in range(ns):
            v = z[t, i]
            if t > 0:
                for k in range(i, ns):  # W[i, k] = 0 for k < i
                    v -= Ws[t, i, k] * z[t - 1, k]
            for k in range(i):
                v -= L[i, k] * z[t, k]
            z[t, i] = v
    for t in range(H - 1, -1, -1):
        L = Ls[t]
        for i in range(ns - 1, -1, -1):
            v = z[t, i] * Di[t, i]
            if t + 1 < H:
                for k in range(i + 1):  # W[k, i] = 0 for k > i
                    v -= Ws[t + 1, k, i] * z[t + 1, k]
            for k in range(i + 1, ns):
                v -= L[k, i] * z[t, k]
            z[t, i] = v  # the solution overwrites z (block t + 1 is done)


@nb.njit(cache=True, error_model="numpy")
def _ranges(H, act, lo, hi, rlo, rhi):
    """Fills rlo, rhi (NV,) with flat index ranges [rlo, rhi) in the (NV, H) layout that hold every free
    variable (hi - lo > 1e-12) of the present devices: per variable row, from its first to its last free PTU (so the rows of an
    absent cap, of PV at night and of the EV outside its window cost nothing); adjacent ranges merged.
    A variable outside the ranges stays at its lower bound with zero scaling, direction and duals.
    Returns the number of ranges. rlo, rhi unsigned: numba then skips its negative-index wrap-around,
    and the loops over them vectorise."""
    nr = 0
    for d in range(4):
        if d == 3 or act[d + 1]:
            j0 = DEVICE_VARS[d][0] if d < 3 else PV
            j1 = DEVICE_VARS[d][1] if d < 3 else NV
            for j in range(j0, j1):
                t0 = H
                t1 = 0
                for t in range(H):
                    if hi[j, t] - lo[j, t] > 1e-12:
                        t0 = min(t0, t)
                        t1 = t + 1
                if t1 == 0:
                    continue
                k0 = j * H + t0
                if nr > 0 and rhi[nr - 1] == k0:  # adjacent: one longer loop
                    rhi[nr - 1] = j * H + t1
                else:
                    rlo[nr] = k0
                    rhi[nr] = j * H + t1
                    nr += 1
    return nr


@nb.njit(cache=True, error_model="numpy", fastmath=REDUCE_FLAGS)
def _update_and_scale(step, rlo, rhi, nr, ap, ad, xf, zl, zu, dx, dzl, dzu, ATy, ATdy, lf, uf, cf, mask, isl, isu, izl,
                      izu, th, rt, rd):
    """Take the step of the last iteration (if ``step``: not before the first) in x, the bound duals and
    ATy = A^T y (ATdy = A^T dy of that step), then compute the new iterate's inverse slacks and bound
    duals, scaling th, dual residual rd and affine right-hand side rt; returns the dual infeasibility
    and the complementarity gap. Fixed variables inside the ranges have mask 0, which zeroes their
    inverses, scaling and residual without a branch."""
    for s in range(nr if step else 0):  # separate loops with few arrays each: each of them vectorises
        for k in range(rlo[s], rhi[s]):
            xf[k] += ap * dx[k]
            zl[k] += ad * dzl[k]
            zu[k] += ad * dzu[k]
            ATy[k] += ad * ATdy[k]
    dinf = _bits(0.0)  # maxima as bit patterns (see REDUCE_FLAGS)
    gap = 0.0
    for s in range(nr):
        for k in range(rlo[s], rhi[s]):
            x_k = xf[k]
            z_l = zl[k]
            z_u = zu[k]
            m = mask[k]
            s_l = x_k - lf[k] + (1.0 - m)  # 1 for fixed variables (their duals are 0)
            s_u = uf[k] - x_k + (1.0 - m)
            # one division gives the inverse slacks, the inverse duals and th = 1 / (zl / sl + zu / su):
            # with A = sl su, B = zl su + zu sl, Z = zl zu and r = 1 / (A B Z), 1 / sl = su B Z r,
            # 1 / zl = zu A B r and th = A / B = A^2 Z r (divisions bound this loop)
            A = s_l * s_u
            B = z_l * s_u + z_u * s_l
            Z = z_l * z_u
            r = m / (A * B * Z + (1.0 - m))
            BZr = B * Z * r
            ABr = A * B * r
            isl[k] = s_u * BZr
            isu[k] = s_l * BZr
            izl[k] = z_u * ABr
            izu[k] = z_l * ABr
            t_k = A * A * Z * r
            r_d = m * (cf[k] - ATy[k] - z_l + z_u)
            rd[k] = r_d
            th[k] = t_k
            rt[k] = t_k * (r_d + z_l - z_u)  # affine-scaling right-hand side (complementarity -> 0)
            dinf = max(dinf, _bits(abs(r_d)))
            gap += s_l * z_l + s_u * z_u
    return _from_bits(dinf), gap


@nb.njit(cache=True, error_model="numpy", fastmath=REDUCE_FLAGS)
def _predictor_step(rlo, rhi, nr, dx, zl, zu, isl, isu):
    """Step lengths of the affine direction dx, and two sums that give the complementarity after the
    step without another pass. With dzl = -zl (1 + dx / sl) and dzu = zu (dx / su - 1) the inverse
    primal and dual steps are max(-dx / sl, dx / su) and max(1 + dx / sl, 1 - dx / su);
    s1 = sum dx (zl - zu) and s4 = sum dx^2 (zl / sl + zu / su)."""
    inv_p = _bits(1.0)  # maxima as bit patterns (see REDUCE_FLAGS)
    inv_d = _bits(1.0)
    s1 = 0.0
    s4 = 0.0
    for s in range(nr):
        for k in range(rlo[s], rhi[s]):
            d = dx[k]
            a_l = d * isl[k]
            a_u = d * isu[k]
            inv_p = max(inv_p, _bits(max(-a_l, a_u)))
            inv_d = max(inv_d, _bits(max(1.0 + a_l, 1.0 - a_u)))
            s1 += d * (zl[k] - zu[k])
            s4 += d * (zl[k] * a_l + zu[k] * a_u)
    return 1.0 / _from_bits(inv_p), 1.0 / _from_bits(inv_d), s1, s4


@nb.njit(cache=True, error_model="numpy")
def _corrector_rhs(rlo, rhi, nr, smu, dx, xf, lf, uf, mask, zl, zu, isl, isu, th, rd, rl, ru, rt):
    """Right-hand side of the corrector: the complementarity residuals rl, ru with the centring term
    smu and the second-order term of the affine direction dx, and rt for :func:`_direction`."""
    for s in range(nr):
        for k in range(rlo[s], rhi[s]):
            d = dx[k]
            m = mask[k]
            s_l = xf[k] - lf[k] + (1.0 - m)
            s_u = uf[k] - xf[k] + (1.0 - m)
            dz_l = -zl[k] * (1.0 + d * isl[k])
            dz_u = zu[k] * (d * isu[k] - 1.0)
            r_l = smu - s_l * zl[k] - d * dz_l
            r_u = smu - s_u * zu[k] + d * dz_u
            rl[k] = r_l
            ru[k] = r_u
            rt[k] = th[k] * (rd[k] - r_l * isl[k] + r_u * isu[k])


@nb.njit(cache=True, error_model="numpy", fastmath=REDUCE_FLAGS)
def _corrector_step(rlo, rhi, nr, dx, rl, ru, zl, zu, isl, isu, izl, izu, dzl, dzu):
    """Bound-dual directions dzl, dzu of the corrector direction dx, and the largest primal and dual
    step lengths (each <= 1) that keep every slack and bound dual >= 0, through their inverses
    max(-dx / sl, dx / su) and max(-dzl / zl, -dzu / zu): products with the stored inverse slacks and
    duals, no division or branch per variable (fixed variables have 0 inverses). Also returns whether
    the directions are finite (the maxima would hide a NaN)."""
    inv_p = _bits(1.0)  # maxima as bit patterns (see REDUCE_FLAGS)
    inv_d = _bits(1.0)
    total = 0.0
    for s in range(nr):
        for k in range(rlo[s], rhi[s]):
            d = dx[k]
            dz_l = (rl[k] - zl[k] * d) * isl[k]
            dz_u = (ru[k] + zu[k] * d) * isu[k]
            dzl[k] = dz_l
            dzu[k] = dz_u
            inv_p = max(inv_p, _bits(max(-d * isl[k], d * isu[k])))
            inv_d = max(inv_d, _bits(max(-dz_l * izl[k], -dz_u * izu[k])))
            total += d + dz_l + dz_u
    return 1.0 / _from_bits(inv_p), 1.0 / _from_bits(inv_d), np.isfinite(total)


@nb.njit(cache=True, error_model="numpy")
def _direction(H, g, gain, k1, a, act, rows, ns, s0, d0i, Ls, Ws, Di, rp, rt2, Ax, w, zz, dy, th, ATy2, dx, rlo, rhi,
               nr):
    """Newton direction for the right-hand side rt: dy = M^-1 (rp + A rt), dx = Th A^T dy - rt."""
    _Ax(H, g, gain, k1, a, act, rt2, Ax)
    for r in range(NR):
        if act[r]:
            for t in range(H):
                w[r, t] = rp[r, t] + Ax[r, t]
    _solve(H, rows, ns, s0, d0i, Ls, Ws, Di, w, zz, dy)
    _ATy(H, g, gain, k1, a, act, dy, ATy2)
    rt = rt2.reshape(NV * H)
    ATy = ATy2.reshape(NV * H)
    for s in range(nr):
        for k in range(rlo[s], rhi[s]):
            dx[k] = th[k] * ATy[k] - rt[k]


class LPWork(NamedTuple):
    """Work arrays of :func:`lp_solve` for one horizon: allocated once by :func:`lp_work` and reused by
    every solve of a prosumer (instead of about 30 allocations per solve and 5 per iteration). After
    a converged solve ``vec`` holds its bound duals, the start of a warm solve."""

    vec: np.ndarray  # (N_VEC, NV * H): one per-variable vector per row, named by the V_* constants
    row: np.ndarray  # (4, NR, H): primal residual, A x, a solve's right-hand side, the row-dual direction
    zz: np.ndarray  # (H, NR) the state rows of a solve, time-major
    Ls: np.ndarray  # (H, NR, NR) the factors of _factor_n
    Ws: np.ndarray
    Dg: np.ndarray  # (H, NR)
    Di: np.ndarray
    s0: np.ndarray  # (NR - 1, H) the balance-row elimination of _factor
    d0i: np.ndarray  # (H,)
    sd: np.ndarray  # (NR - 1, H)
    cc: np.ndarray
    S: np.ndarray  # (NR, NR) block work arrays of _factor_n
    v: np.ndarray  # (NR,)
    rlo: np.ndarray  # (NV,) uint64: the index ranges of _ranges
    rhi: np.ndarray
    rows: np.ndarray  # (NR - 1,) int64: the active state rows


# rows of LPWork.vec
(V_TH, V_RT, V_ATDY, V_ATY, V_MASK, V_ZL, V_ZU, V_ISL, V_ISU, V_IZL, V_IZU, V_RD, V_RL, V_RU, V_DXA, V_DX, V_DZL,
 V_DZU) = range(18)
N_VEC = 18
# A warm start moves the previous optimum into the interior: each free variable at least this share of
# its box (at most 1 unit) from its bounds, each bound dual at least WARM_MU / its slack (both chosen
# by trying a few values on the benchmark's prosumer-days; a much smaller push made warm solves slower).
WARM_PUSH = 0.1
WARM_MU = 1.0e-3


@nb.njit(cache=True)
def lp_work(H):
    """The work arrays of :func:`lp_solve` for horizon H. Not initialised: a solve writes every entry
    before it reads it (a test fills them with NaN), except the bound duals a warm start reads."""
    return LPWork(np.empty((N_VEC, NV * H)), np.empty((4, NR, H)), np.empty((H, NR)), np.empty((H, NR, NR)),
                  np.empty((H, NR, NR)), np.empty((H, NR)), np.empty((H, NR)), np.empty((NR - 1, H)), np.empty(H),
                  np.empty((NR - 1, H)), np.empty((NR - 1, H)), np.empty((NR, NR)), np.empty(NR),
                  np.empty(NV, dtype=np.uint64), np.empty(NV, dtype=np.uint64), np.empty(NR - 1, dtype=np.int64))


@nb.njit(cache=True, error_model="numpy")
def lp_solve(H, g, gain, k1, a, b, c, lo, hi, act, tol, max_iter, x, y, work, warm):
    """Mehrotra predictor-corrector for min c.x s.t. A x = b (active rows), lo <= x <= hi, with A given
    by (g, gain, k1, a, act) as in :func:`_Ax`; x, c, lo, hi (NV, H), b, y (NR, H); work from
    :func:`lp_work`. Writes the primal x and the row duals y (0 in inactive rows); returns (iterations,
    converged). The variables of an absent device (its row inactive) must be fixed (lo = hi). Other
    variables with hi - lo <= 1e-12 are fixed at lo too: the loops skip them where a stretch of a
    variable row is fixed (:func:`_ranges`), and elsewhere their mask is 0.

    ``warm``: start from x, y and the bound duals in ``work`` of the previous converged solve of an LP
    with the same A, bounds pattern and costs (only b and box widths may differ; here: the same
    prosumer with another appliance start), moved into the interior (WARM_PUSH, WARM_MU). Otherwise
    y starts at 0, the bound duals dual feasible (START_DUAL) and x where the two complementarity
    products of each variable are equal.

    An iteration: the last iteration's step and the new scaling (:func:`_update_and_scale`), the
    predictor's direction and step lengths, the corrector's right-hand side, direction and step
    lengths. The complementarity after the predictor step comes from sums of the predictor's
    step-length pass rather than from a pass of its own."""
    n = NV * H
    # every array of the iterations without reference counting (nb_arrays.borrow): passing ~20 arrays
    # to each pass otherwise costs two atomic updates per array and call
    x, y, b, c, lo, hi = borrow(x), borrow(y), borrow(b), borrow(c), borrow(lo), borrow(hi)
    xf = x.reshape(n)
    lf = lo.reshape(n)
    uf = hi.reshape(n)
    cf = c.reshape(n)
    gain, g, act = borrow(gain), borrow(g), borrow(act)
    work = LPWork(borrow(work.vec), borrow(work.row), borrow(work.zz), borrow(work.Ls), borrow(work.Ws), borrow(work.Dg),
                  borrow(work.Di), borrow(work.s0), borrow(work.d0i), borrow(work.sd), borrow(work.cc), borrow(work.S),
                  borrow(work.v), borrow(work.rlo), borrow(work.rhi), borrow(work.rows))
    rlo, rhi, rows = work.rlo, work.rhi, work.rows
    nr = _ranges(H, act, lo, hi, rlo, rhi)
    ns = _state_rows(act, rows)
    vec = work.vec
    th = vec[V_TH]
    th2 = th.reshape((NV, H))
    rt = vec[V_RT]
    rt2 = rt.reshape((NV, H))
    ATdy = vec[V_ATDY]  # A^T dy of the last direction
    ATdy2 = ATdy.reshape((NV, H))
    ATy = vec[V_ATY]  # A^T y, updated with the steps
    mask = vec[V_MASK]
    zl = vec[V_ZL]
    zu = vec[V_ZU]
    isl = vec[V_ISL]
    isu = vec[V_ISU]
    izl = vec[V_IZL]
    izu = vec[V_IZU]
    rd = vec[V_RD]
    rl = vec[V_RL]
    ru = vec[V_RU]
    dxa = vec[V_DXA]  # the predictor's direction
    dx = vec[V_DX]  # the corrector's (the step taken)
    dzl = vec[V_DZL]
    dzu = vec[V_DZU]
    rp = work.row[0]
    Ax = work.row[1]
    w = work.row[2]
    dy = work.row[3]
    # outside the ranges th and rt must be 0 (the factor and A rt read whole rows); everything else
    # is written before it is read
    th[:] = 0.0
    rt[:] = 0.0
    mask[:] = 0.0
    nfree = 0
    cnorm = 1.0
    if not warm:
        xf[:] = lf
    for s in range(nr):
        for k in range(rlo[s], rhi[s]):
            w_k = uf[k] - lf[k]
            if w_k > 1e-12:
                mask[k] = 1.0
                nfree += 1
                cnorm = max(cnorm, abs(cf[k]))
                if warm:
                    push = WARM_PUSH * min(w_k, 1.0)
                    x_k = min(max(xf[k], lf[k] + push), uf[k] - push)
                    xf[k] = x_k
                    zl[k] = max(zl[k], WARM_MU / (x_k - lf[k]))
                    zu[k] = max(zu[k], WARM_MU / (uf[k] - x_k))
                else:
                    zl[k] = START_DUAL + max(cf[k], 0.0)  # dual feasible: zl - zu = c (and A^T y = 0)
                    zu[k] = START_DUAL + max(-cf[k], 0.0)
                    # centred: sl zl = su zu, so a variable that costs starts nearer its lower bound
                    xf[k] = lf[k] + min(w_k * zu[k] / (zl[k] + zu[k]), START_OFFSET)
            else:
                xf[k] = lf[k]
                zl[k] = 0.0
                zu[k] = 0.0
    if warm:
        for r in range(NR):
            if not act[r]:
                y[r, :] = 0.0
        _ATy(H, g, gain, k1, a, act, y, ATdy2)  # A^T y (ATdy is free until the first direction)
        for s in range(nr):
            for k in range(rlo[s], rhi[s]):
                ATy[k] = ATdy[k]
    else:
        y[:] = 0.0
        for s in range(nr):
            for k in range(rlo[s], rhi[s]):
                ATy[k] = 0.0
    bnorm = 1.0
    for r in range(NR):
        if act[r]:
            for t in range(H):
                bnorm = max(bnorm, abs(b[r, t]))
    n2 = 2.0 * max(nfree, 1)
    ap = 0.0  # the last iteration's step lengths, taken at the start of the next one
    ad = 0.0
    for it in range(max_iter + 1):
        if it > 0:
            for r in range(NR):
                if act[r]:
                    for t in range(H):
                        y[r, t] += ad * dy[r, t]
        dinf, gap = _update_and_scale(it > 0, rlo, rhi, nr, ap, ad, xf, zl, zu, dx, dzl, dzu, ATy, ATdy, lf, uf, cf, mask,
                                      isl, isu, izl, izu, th, rt, rd)
        _Ax(H, g, gain, k1, a, act, x, Ax)
        pinf = 0.0
        for r in range(NR):
            if act[r]:
                for t in range(H):
                    rp[r, t] = b[r, t] - Ax[r, t]
                    pinf = max(pinf, abs(rp[r, t]))
        if pinf <= tol * bnorm and dinf <= tol * cnorm and gap <= tol * cnorm:
            return it, True
        if it == max_iter:
            break
        mu = gap / n2
        _factor(H, g, gain, k1, a, rows, ns, th2, work.s0, work.d0i, work.sd, work.cc, work.Ls, work.Ws, work.Dg,
                work.Di, work.S, work.v)
        # predictor: the affine-scaling direction
        _direction(H, g, gain, k1, a, act, rows, ns, work.s0, work.d0i, work.Ls, work.Ws, work.Di, rp, rt2, Ax, w,
                   work.zz, dy, th, ATdy2, dxa, rlo, rhi, nr)
        ap, ad, s1, s4 = _predictor_step(rlo, rhi, nr, dxa, zl, zu, isl, isu)
        # complementarity after that step, sum (sl + ap dx)(zl + ad dzl) + (su - ap dx)(zu + ad dzu),
        # expanded with the identities of _predictor_step
        ga = gap * (1.0 - ad) + s1 * (ap - ad - ap * ad) - ap * ad * s4
        sigma = (max(ga, 0.0) / n2 / mu) ** 3 if mu > 0.0 else 0.0
        # corrector: centring + second-order correction
        _corrector_rhs(rlo, rhi, nr, sigma * mu, dxa, xf, lf, uf, mask, zl, zu, isl, isu, th, rd, rl, ru, rt)
        _direction(H, g, gain, k1, a, act, rows, ns, work.s0, work.d0i, work.Ls, work.Ws, work.Di, rp, rt2, Ax, w,
                   work.zz, dy, th, ATdy2, dx, rlo, rhi, nr)
        ap, ad, finite = _corrector_step(rlo, rhi, nr, dx, rl, ru, zl, zu, isl, isu, izl, izu, dzl, dzu)
        if not finite:  # the normal equations broke down (a stalled, degenerate LP): keep this iterate
            return it, False
        ap = min(1.0, STEP_FRACTION * ap)
        ad = min(1.0, STEP_FRACTION * ad)
    return max_iter, False


LOCAL_VARS = np.array([PV, IM, VI, EX, VE, BC, BD, EC, ED, HP])  # the variables of the balance row
N_LOCAL = LOCAL_VARS.size


@nb.njit(cache=True, error_model="numpy")
def lagrangian_segments(H, g, gain, k1, a, act, b, c, lo, hi, y, ci, ce, big_kw, seg_p, seg_len, seg_n, ends,
                        cost0, supply0):
    """A lower bound on the LP value for any other load, from the state-row duals of ``y``.

    Weak duality with the state rows' duals fixed at y[1:] (any finite values give a valid bound):
    the problem splits into one knapsack per PTU, meet the load D_t from the balance row's variables
    at their reduced costs, plus a constant (the state rows' b.y and the other variables at the
    cheaper end of their boxes). The knapsack's value psi_t(D_t) is convex piecewise linear in D_t:
    this fills, per PTU, its sorted price segments (seg_p EUR per kW, seg_len kW, seg_n of them), the
    prices of the unbounded export / import at its ends (ends[t] = (lowest, highest)) and its value
    cost0 at the supply supply0 where every segment is empty. Import and export are taken unbounded
    above where uncapped (their box in the LP depends on the load). Returns the constant;
    :func:`supply_cost` evaluates psi_t. The bound is constant + sum_t psi_t(D_t)."""
    y_state = y.copy()
    y_state[0, :] = 0.0
    ct = np.zeros((NV, H))
    _ATy(H, g, gain, k1, a, act, y_state, ct)  # the state rows' part of A^T y
    const = 0.0
    for r in range(1, NR):
        if act[r]:
            for t in range(H):
                const += b[r, t] * y[r, t]
    for r in range(1, NR):
        if act[r]:
            lo_v, hi_v = DEVICE_VARS[r - 1]
            for j in range(lo_v, hi_v):
                if BAL[j] != 0.0:
                    continue
                for t in range(H):
                    rc = c[j, t] - ct[j, t]
                    const += rc * (lo[j, t] if rc >= 0.0 else hi[j, t])
    pj = np.empty(N_LOCAL)
    smn = np.empty(N_LOCAL)
    smx = np.empty(N_LOCAL)
    for t in range(H):
        capped_i = ci[t] < big_kw
        capped_e = ce[t] < big_kw
        export_end = -np.inf
        import_end = np.inf
        base_cost = 0.0
        base_supply = 0.0
        m = 0
        for q in range(N_LOCAL):
            j = LOCAL_VARS[q]
            sig = -BAL[j]  # +1: supplies the load, -1: absorbs
            red = c[j, t] - ct[j, t]  # reduced cost with the balance row's dual left out
            price = sig * red  # EUR per kW supplied
            if (j == IM and not capped_i) or (j == VI and capped_i):
                import_end = min(import_end, price)
                continue
            if (j == EX and not capped_e) or (j == VE and capped_e):
                export_end = max(export_end, price)
                continue
            l = lo[j, t]
            u = ci[t] if j == IM else (ce[t] if j == EX else hi[j, t])
            if j == VI or j == VE or u - l <= 0.0:  # fixed (an absent device's, or no cap)
                base_cost += red * l
                base_supply += sig * l
                continue
            pj[m] = price
            smn[m] = l if sig > 0.0 else -u
            smx[m] = u if sig > 0.0 else -l
            m += 1
        n = 0
        for q in range(m):
            if pj[q] < export_end:  # cheaper than the unbounded export: always full
                base_cost += pj[q] * smx[q]
                base_supply += smx[q]
                continue
            base_cost += pj[q] * smn[q]
            base_supply += smn[q]
            if pj[q] <= import_end:  # else dearer than the unbounded import: always empty
                k = n  # insertion by price
                while k > 0 and seg_p[t, k - 1] > pj[q]:
                    seg_p[t, k] = seg_p[t, k - 1]
                    seg_len[t, k] = seg_len[t, k - 1]
                    k -= 1
                seg_p[t, k] = pj[q]
                seg_len[t, k] = smx[q] - smn[q]
                n += 1
        seg_n[t] = n
        ends[t, 0] = export_end
        ends[t, 1] = import_end
        cost0[t] = base_cost
        supply0[t] = base_supply
    return const


@nb.njit(cache=True, error_model="numpy")
def supply_cost(t, demand_kw, seg_p, seg_len, seg_n, ends, cost0, supply0):
    """psi_t(demand): the cheapest way to meet ``demand_kw`` at PTU t (see :func:`lagrangian_segments`)."""
    r = demand_kw - supply0[t]
    if r <= 0.0:
        return cost0[t] + ends[t, 0] * r
    v = cost0[t]
    for k in range(seg_n[t]):
        if r <= seg_len[t, k]:
            return v + seg_p[t, k] * r
        v += seg_p[t, k] * seg_len[t, k]
        r -= seg_len[t, k]
    return v + ends[t, 1] * r


@nb.njit(cache=True, error_model="numpy")
def supply_slopes(t, demand_kw, seg_p, seg_len, seg_n, ends, supply0):
    """The left and right derivatives of psi_t (:func:`supply_cost`) at ``demand_kw``, in EUR per kW."""
    r = demand_kw - supply0[t]
    left = ends[t, 0] if r <= 0.0 else ends[t, 1]
    right = ends[t, 0] if r < 0.0 else ends[t, 1]
    lo_kw = 0.0
    for k in range(seg_n[t]):  # segment k covers r in [lo_kw, lo_kw + seg_len]
        hi_kw = lo_kw + seg_len[t, k]
        if lo_kw < r <= hi_kw:
            left = seg_p[t, k]
        if lo_kw <= r < hi_kw:
            right = seg_p[t, k]
        lo_kw = hi_kw
    return left, right


@nb.njit(cache=True, error_model="numpy")
def lp_data(dt, load, pv, pi, pe, ci, ce, big_kw, w_cap,
            bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, bat_e0,
            ev_cap, ev_pmax, ev_eta, ev_v2g, ev_lo, ev_hi, ev_need0,
            hp_pmax, hp_a, hp_beta, hp_gain, hp_tmin, hp_tmax, hp_T0, w_comfort, w_ev,
            b, c, lo, hi):
    """LP data of one prosumer (arrays (H,) per PTU, scalars per device; ``load`` includes a planned
    appliance): fills b (NR, H), c, lo, hi (NV, H); returns (g, k1, a, act, constant objective).
    ``big_kw`` marks an absent cap (as in :mod:`flexenv.policies.ems`); an absent device has its row
    inactive and its variables fixed at 0."""
    H = load.shape[0]
    g = np.array([-dt * bat_ec, dt / bat_ed, -dt * ev_eta, dt / ev_eta])
    act = np.array([True, bat_cap > 0.0, ev_hi > ev_lo and ev_pmax > 0.0, hp_pmax > 0.0])
    pv_max = 0.0
    load_max = 0.0
    for t in range(H):
        pv_max = max(pv_max, pv[t])
        load_max = max(load_max, abs(load[t]))
    # bound on any net power: keeps import and export (and their sum) boxed when prices tie
    n_max = load_max + pv_max + bat_pc + bat_pd + 2.0 * ev_pmax + hp_pmax + 1.0
    ev_min = min(ev_need0 - ev_cap, 0.0)
    lo[:] = 0.0
    hi[:] = 0.0
    c[:] = 0.0
    for t in range(H):
        b[0, t] = -load[t]
        b[1, t] = bat_keep * bat_e0 if t == 0 else 0.0
        b[2, t] = 0.0
        b[3, t] = hp_beta[t] + (hp_a * hp_T0 if t == 0 else 0.0)
        if act[1]:
            hi[BC, t] = bat_pc
            hi[BD, t] = bat_pd
            hi[BE, t] = bat_cap
        present = act[2] and ev_lo <= t < ev_hi
        hi[EC, t] = ev_pmax if present else 0.0
        hi[ED, t] = ev_pmax if present and ev_v2g else 0.0
        if act[2]:
            lo[ES, t] = ev_min
            hi[ES, t] = max(ev_need0, ev_min)
        if act[3]:
            hi[HP, t] = hp_pmax
            lo[HM, t] = hp_tmin
            hi[HM, t] = hp_tmax
            hi[HL, t] = COMFORT_SLACK_MAX_K
            hi[HH, t] = COMFORT_SLACK_MAX_K
            c[HL, t] = w_comfort * dt
            c[HH, t] = w_comfort * dt
        hi[PV, t] = pv[t]
        capped_i = ci[t] < big_kw
        capped_e = ce[t] < big_kw
        hi[IM, t] = min(ci[t], n_max)
        hi[VI, t] = n_max if capped_i else 0.0
        hi[EX, t] = min(ce[t], n_max)
        hi[VE, t] = n_max if capped_e else 0.0
        pe_t = min(pe[t], pi[t])  # convex bill (see the module docstring)
        c[IM, t] = dt * pi[t]
        c[VI, t] = dt * (pi[t] + w_cap)
        c[EX, t] = -dt * pe_t
        c[VE, t] = dt * (w_cap - pe_t)
        c[BC, t] = c[BD, t] = c[EC, t] = c[ED, t] = EPS_EUR_PER_KWH * dt
    const = 0.0
    if act[2]:
        c[ES, H - 1] -= w_ev  # unmet EV energy: w_ev * (need0 - delivered at the end)
        const = w_ev * ev_need0
    return g, bat_keep, hp_a, act, const
