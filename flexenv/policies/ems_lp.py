"""Exact continuous part of the energy-box EMS: a primal-dual interior-point LP in numba.

For a fixed appliance start, the prosumer problem of :mod:`flexenv.policies.ems` is a linear programme
(the bill is convex piecewise-linear in the net power when the export price does not exceed the
import price; the soft caps, comfort band and EV deadline add convex PL penalties). This module solves
it with Mehrotra's predictor-corrector interior-point method. The constraint matrix is block
bidiagonal in time, so the normal equations are block tridiagonal with 4 x 4 blocks (one row per PTU
for the power balance, the battery, the EV and the building) and each Newton step costs O(H) through a
block Cholesky factorisation. No solver call, one prosumer per numba thread.

Variables per PTU t (kW unless noted; all boxed, so the optimal face is bounded and the interior-point
iterates converge to its centre)::

    BC, BD  battery charge / discharge power          BE  stored energy after t (kWh)
    EC, ED  EV charge / V2G discharge power           ES  energy delivered after t (kWh)
    HP      heat-pump electric power                  HM, HL, HH  indoor temperature after t
            (T = HM - HL + HH, HM in the comfort band, HL / HH the K below / above it)
    PV      PV power used                             IM, VI  import within / beyond the import cap
    EX, VE  export within / beyond the export cap

Rows per PTU: the power balance, and the state updates of battery, EV and building (inactive rows of
absent devices are kept as identities so every block stays 4 x 4). Simultaneous charge and discharge
get a tiny cost (``EPS_EUR_PER_KWH``) so ties resolve to no cycling. Where an export price exceeds the
import price the LP uses the import price for export (the MILP's binary has no LP equivalent); the
plan is still scored with the true bill.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

NV, NR = 15, 4  # variables and rows per PTU
BC, BD, BE, EC, ED, ES, HP, HM, HL, HH, PV, IM, VI, EX, VE = range(NV)
# sign of each variable in the power balance row (consumption +)
BAL = np.array([1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, 1.0, 1.0])
EPS_EUR_PER_KWH = 1.0e-7  # tie-break against charging and discharging at once
COMFORT_SLACK_MAX_K = 100.0
START_OFFSET = 1.0e9  # first iterate: lo + min(half the box, this)
STEP_FRACTION = 0.995  # of the step to the boundary


@nb.njit(cache=True, error_model="numpy")
def _Ax(H, g, gain, k1, a, x, out):
    """out = A x (rows per PTU: balance, battery, EV, building); g = (gBC, gBD, gEC, gED)."""
    for t in range(H):
        s = 0.0
        for j in range(NV):
            s += BAL[j] * x[t, j]
        out[t, 0] = s
        out[t, 1] = x[t, BE] + g[0] * x[t, BC] + g[1] * x[t, BD]
        out[t, 2] = x[t, ES] + g[2] * x[t, EC] + g[3] * x[t, ED]
        out[t, 3] = x[t, HM] - x[t, HL] + x[t, HH] - gain[t] * x[t, HP]
        if t > 0:
            out[t, 1] -= k1 * x[t - 1, BE]
            out[t, 2] -= x[t - 1, ES]
            out[t, 3] -= a * (x[t - 1, HM] - x[t - 1, HL] + x[t - 1, HH])


@nb.njit(cache=True, error_model="numpy")
def _ATy(H, g, gain, k1, a, y, out):
    """out = A^T y."""
    for t in range(H):
        y0 = y[t, 0]
        for j in range(NV):
            out[t, j] = BAL[j] * y0
        n1 = y[t + 1, 1] if t + 1 < H else 0.0
        n2 = y[t + 1, 2] if t + 1 < H else 0.0
        n3 = y[t + 1, 3] if t + 1 < H else 0.0
        out[t, BC] += g[0] * y[t, 1]
        out[t, BD] += g[1] * y[t, 1]
        out[t, BE] = y[t, 1] - k1 * n1
        out[t, EC] += g[2] * y[t, 2]
        out[t, ED] += g[3] * y[t, 2]
        out[t, ES] = y[t, 2] - n2
        out[t, HP] -= gain[t] * y[t, 3]
        h = y[t, 3] - a * n3
        out[t, HM] = h
        out[t, HL] = -h
        out[t, HH] = h


@nb.njit(cache=True, error_model="numpy")
def _factor(H, g, gain, k1, a, th, act, Ls, Ws, Dg, Di):
    """Block LDL^T of M = A diag(th) A^T (block tridiagonal, blocks S_t on the diagonal and C_t below):
    unit lower blocks L_t (Ls), pivots D_t (Dg) and their inverses (Di) and blocks W_t (Ws) with
    W_t D_{t-1} L_{t-1}^T = C_t and L_t D_t L_t^T = S_t - W_t D_{t-1} W_t^T. LDL^T rather than Cholesky:
    the factorisation is a chain through time, and one division per pivot is shorter than a square root
    and a division. A pivot that vanishes relative to its diagonal (a row whose variables all sit at
    bounds) is replaced by a huge one, which decouples that row."""
    S = np.empty((NR, NR))
    c = np.zeros(NR)
    v = np.zeros(NR)
    for t in range(H):
        s = 0.0
        for j in range(NV):
            if BAL[j] != 0.0:
                s += th[t, j]
        S[0, 0] = s
        S[1, 1] = th[t, BE] + g[0] * g[0] * th[t, BC] + g[1] * g[1] * th[t, BD]
        S[2, 2] = th[t, ES] + g[2] * g[2] * th[t, EC] + g[3] * g[3] * th[t, ED]
        S[3, 3] = th[t, HM] + th[t, HL] + th[t, HH] + gain[t] * gain[t] * th[t, HP]
        S[1, 0] = g[0] * th[t, BC] - g[1] * th[t, BD]
        S[2, 0] = g[2] * th[t, EC] - g[3] * th[t, ED]
        S[3, 0] = -gain[t] * th[t, HP]
        S[2, 1] = 0.0
        S[3, 1] = 0.0
        S[3, 2] = 0.0
        if t > 0:
            hp = th[t - 1, HM] + th[t - 1, HL] + th[t - 1, HH]
            S[1, 1] += k1 * k1 * th[t - 1, BE]
            S[2, 2] += th[t - 1, ES]
            S[3, 3] += a * a * hp
            c[1] = -k1 * th[t - 1, BE]  # C_t is diagonal, and 0 in the balance row
            c[2] = -th[t - 1, ES]
            c[3] = -a * hp
        for r in range(NR):
            if not act[r]:
                for q in range(r):
                    S[r, q] = 0.0
                for q in range(r + 1, NR):
                    S[q, r] = 0.0
                S[r, r] = 1.0
                c[r] = 0.0
        if t > 0:
            Lp = Ls[t - 1]
            for r in range(1, NR):  # row r of W = (D^-1 L^-1 c_r e_r)^T of block t-1; row 0 is 0
                for q in range(r):
                    v[q] = 0.0
                    Ws[t, r, q] = 0.0
                v[r] = c[r]
                Ws[t, r, r] = c[r] * Di[t - 1, r]
                for q in range(r + 1, NR):
                    u = 0.0
                    for k in range(r, q):
                        u -= Lp[q, k] * v[k]
                    v[q] = u
                    Ws[t, r, q] = u * Di[t - 1, q]
                for q in range(1, r + 1):  # S -= W D W^T (lower part)
                    u = 0.0
                    for k in range(r, NR):  # W[r, k] = 0 for k < r
                        u += Ws[t, r, k] * Ws[t, q, k] * Dg[t - 1, k]
                    S[r, q] -= u
        L = Ls[t]
        for i in range(NR):
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
def _solve(H, Ls, Ws, Di, r, z, out):
    """out = M^-1 r with the factors of :func:`_factor` (z: work array): forward through the unit
    lower factor, scale by the inverse pivots, back through its transpose; no division."""
    for t in range(H):
        L = Ls[t]
        for i in range(NR):
            v = r[t, i]
            if t > 0 and i > 0:
                for k in range(i, NR):
                    v -= Ws[t, i, k] * z[t - 1, k]
            for k in range(i):
                v -= L[i, k] * z[t, k]
            z[t, i] = v
    for t in range(H - 1, -1, -1):
        L = Ls[t]
        for i in range(NR - 1, -1, -1):
            v = z[t, i] * Di[t, i]
            if t + 1 < H:
                for k in range(1, i + 1):  # W[k, i] = 0 for k > i
                    v -= Ws[t + 1, k, i] * out[t + 1, k]
            for k in range(i + 1, NR):
                v -= L[k, i] * out[t, k]
            out[t, i] = v


@nb.njit(cache=True, error_model="numpy")
def _step_to_boundary(n, dx, dzl, dzu, isl, isu, izl, izu):
    """Largest primal and dual step lengths (each <= 1) that keep every slack and bound dual >= 0, found
    through their inverses max(-dx/sl, dx/su) and max(-dz/z): products with the stored inverse slacks
    and duals, no division or branch per variable (fixed variables have 0 inverses)."""
    inv_p = 1.0
    inv_d = 1.0
    for k in range(n):
        d = dx[k]
        inv_p = max(inv_p, -d * isl[k], d * isu[k])
        inv_d = max(inv_d, -dzl[k] * izl[k], -dzu[k] * izu[k])
    return 1.0 / inv_p, 1.0 / inv_d


@nb.njit(cache=True, error_model="numpy")  # no zero-division checks: they block vectorisation
def lp_solve(H, g, gain, k1, a, b, c, lo, hi, act, tol, max_iter, x, y):
    """Mehrotra predictor-corrector for min c.x s.t. A x = b (active rows), lo <= x <= hi, with A given
    by (g, gain, k1, a) as in :func:`_Ax`. Writes the primal x (H, NV) and the row duals y (H, NR);
    returns (iterations, converged). Variables with hi - lo <= 1e-12 are fixed at lo: their mask is
    0, which zeroes their scaling, inverse slacks and bound duals, so the loops need no branches."""
    n = H * NV
    xf = x.reshape(n)
    lf = lo.reshape(n)
    uf = hi.reshape(n)
    cf = c.reshape(n)
    th2 = np.zeros((H, NV))
    th = th2.reshape(n)
    rt2 = np.zeros((H, NV))
    rt = rt2.reshape(n)
    ATy2 = np.zeros((H, NV))
    ATy = ATy2.reshape(n)
    mask = np.zeros(n)
    zl = np.zeros(n)
    zu = np.zeros(n)
    sl = np.ones(n)
    su = np.ones(n)
    isl = np.zeros(n)
    isu = np.zeros(n)
    izl = np.zeros(n)
    izu = np.zeros(n)
    rd = np.zeros(n)
    rl = np.zeros(n)
    ru = np.zeros(n)
    dxa = np.zeros(n)
    dx = np.zeros(n)
    dzl = np.zeros(n)
    dzu = np.zeros(n)
    nfree = 0
    cnorm = 1.0
    for k in range(n):
        if uf[k] - lf[k] > 1e-12:
            mask[k] = 1.0
            nfree += 1
            xf[k] = lf[k] + min(0.5 * (uf[k] - lf[k]), START_OFFSET)
            zl[k] = 1.0
            zu[k] = 1.0
            cnorm = max(cnorm, abs(cf[k]))
        else:
            xf[k] = lf[k]
    y[:] = 0.0
    rp = np.zeros((H, NR))
    Ax = np.zeros((H, NR))
    w = np.zeros((H, NR))
    zz = np.zeros((H, NR))
    dy = np.zeros((H, NR))
    Ls = np.zeros((H, NR, NR))
    Ws = np.zeros((H, NR, NR))
    Dg = np.zeros((H, NR))
    Di = np.zeros((H, NR))
    bnorm = 1.0
    for t in range(H):
        for r in range(NR):
            bnorm = max(bnorm, abs(b[t, r]))
    n2 = 2.0 * max(nfree, 1)
    for it in range(max_iter):
        _Ax(H, g, gain, k1, a, x, Ax)
        _ATy(H, g, gain, k1, a, y, ATy2)
        pinf = 0.0
        for t in range(H):
            for r in range(NR):
                rp[t, r] = (b[t, r] - Ax[t, r]) if act[r] else 0.0
                pinf = max(pinf, abs(rp[t, r]))
        dinf = 0.0
        gap = 0.0
        for k in range(n):
            m = mask[k]
            s_l = xf[k] - lf[k] + (1.0 - m)  # 1 for fixed variables (their duals are 0)
            s_u = uf[k] - xf[k] + (1.0 - m)
            q = m / (s_l * s_u)  # one division gives both inverse slacks
            isl[k] = s_u * q
            isu[k] = s_l * q
            p = m / (zl[k] * zu[k] + (1.0 - m))
            izl[k] = zu[k] * p
            izu[k] = zl[k] * p
            sl[k] = s_l
            su[k] = s_u
            r_d = m * (cf[k] - ATy[k] - zl[k] + zu[k])
            rd[k] = r_d
            dinf = max(dinf, abs(r_d))
            gap += s_l * zl[k] + s_u * zu[k]
            t_k = m / (zl[k] * isl[k] + zu[k] * isu[k] + (1.0 - m))
            th[k] = t_k
            rt[k] = t_k * (r_d + zl[k] - zu[k])  # affine-scaling right-hand side (complementarity -> 0)
        if pinf <= tol * bnorm and dinf <= tol * cnorm and gap <= tol * cnorm:
            return it, True
        mu = gap / n2
        _factor(H, g, gain, k1, a, th2, act, Ls, Ws, Dg, Di)
        # predictor: the affine-scaling direction
        _direction(H, g, gain, k1, a, act, Ls, Ws, Di, rp, rt2, Ax, w, zz, dy, th, ATy2, dx)
        for k in range(n):
            d = dx[k]
            dzl[k] = -zl[k] * (1.0 + d * isl[k])
            dzu[k] = zu[k] * (d * isu[k] - 1.0)
        ap, ad = _step_to_boundary(n, dx, dzl, dzu, isl, isu, izl, izu)
        ga = 0.0
        for k in range(n):
            ga += (sl[k] + ap * dx[k]) * (zl[k] + ad * dzl[k]) + (su[k] - ap * dx[k]) * (zu[k] + ad * dzu[k])
        sigma = (max(ga, 0.0) / n2 / mu) ** 3 if mu > 0.0 else 0.0
        # corrector: centring + second-order correction
        smu = sigma * mu
        for k in range(n):
            d = dx[k]
            dxa[k] = d
            r_l = smu - sl[k] * zl[k] - d * dzl[k]
            r_u = smu - su[k] * zu[k] + d * dzu[k]
            rl[k] = r_l
            ru[k] = r_u
            rt[k] = th[k] * (rd[k] - r_l * isl[k] + r_u * isu[k])
        _direction(H, g, gain, k1, a, act, Ls, Ws, Di, rp, rt2, Ax, w, zz, dy, th, ATy2, dx)
        for k in range(n):
            d = dx[k]
            dzl[k] = (rl[k] - zl[k] * d) * isl[k]
            dzu[k] = (ru[k] + zu[k] * d) * isu[k]
        ap, ad = _step_to_boundary(n, dx, dzl, dzu, isl, isu, izl, izu)
        ap = min(1.0, STEP_FRACTION * ap)
        ad = min(1.0, STEP_FRACTION * ad)
        for k in range(n):
            xf[k] += ap * dx[k]
            zl[k] += ad * dzl[k]
            zu[k] += ad * dzu[k]
        for t in range(H):
            for r in range(NR):
                y[t, r] += ad * dy[t, r]
    return max_iter, False


@nb.njit(cache=True, error_model="numpy")
def _direction(H, g, gain, k1, a, act, Ls, Ws, Di, rp, rt2, Ax, w, zz, dy, th, ATy2, dx):
    """Newton direction for the right-hand side rt: dy = (A Th A^T)^-1 (rp + A rt), dx = Th A^T dy - rt."""
    _Ax(H, g, gain, k1, a, rt2, Ax)
    for t in range(H):
        for r in range(NR):
            w[t, r] = (rp[t, r] + Ax[t, r]) if act[r] else 0.0
    _solve(H, Ls, Ws, Di, w, zz, dy)
    _ATy(H, g, gain, k1, a, dy, ATy2)
    rt = rt2.reshape(H * NV)
    ATy = ATy2.reshape(H * NV)
    for k in range(H * NV):
        dx[k] = th[k] * ATy[k] - rt[k]


@nb.njit(cache=True, error_model="numpy")
def lp_data(dt, load, pv, pi, pe, ci, ce, big_kw, w_cap,
            bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, bat_e0,
            ev_cap, ev_pmax, ev_eta, ev_v2g, ev_lo, ev_hi, ev_need0,
            hp_pmax, hp_a, hp_beta, hp_gain, hp_tmin, hp_tmax, hp_T0, w_comfort, w_ev,
            b, c, lo, hi):
    """LP data of one prosumer (arrays (H,) per PTU, scalars per device; ``load`` includes a planned
    appliance): fills b (H, NR), c, lo, hi (H, NV); returns (g, k1, a, act, constant objective).
    ``big_kw`` marks an absent cap (as in :mod:`flexenv.policies.ems`)."""
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
    for t in range(H):
        b[t, 0] = -load[t]
        b[t, 1] = bat_keep * bat_e0 if t == 0 else 0.0
        b[t, 2] = 0.0
        b[t, 3] = hp_beta[t] + (hp_a * hp_T0 if t == 0 else 0.0)
        lo[t, :] = 0.0
        hi[t, :] = 0.0
        c[t, :] = 0.0
        hi[t, BC] = bat_pc
        hi[t, BD] = bat_pd
        hi[t, BE] = bat_cap
        present = act[2] and ev_lo <= t < ev_hi
        hi[t, EC] = ev_pmax if present else 0.0
        hi[t, ED] = ev_pmax if present and ev_v2g else 0.0
        if act[2]:
            lo[t, ES] = ev_min
            hi[t, ES] = max(ev_need0, ev_min)
        if act[3]:
            hi[t, HP] = hp_pmax
            lo[t, HM] = hp_tmin
            hi[t, HM] = hp_tmax
            hi[t, HL] = COMFORT_SLACK_MAX_K
            hi[t, HH] = COMFORT_SLACK_MAX_K
            c[t, HL] = w_comfort * dt
            c[t, HH] = w_comfort * dt
        hi[t, PV] = pv[t]
        capped_i = ci[t] < big_kw
        capped_e = ce[t] < big_kw
        hi[t, IM] = min(ci[t], n_max)
        hi[t, VI] = n_max if capped_i else 0.0
        hi[t, EX] = min(ce[t], n_max)
        hi[t, VE] = n_max if capped_e else 0.0
        pe_t = min(pe[t], pi[t])  # convex bill (see the module docstring)
        c[t, IM] = dt * pi[t]
        c[t, VI] = dt * (pi[t] + w_cap)
        c[t, EX] = -dt * pe_t
        c[t, VE] = dt * (w_cap - pe_t)
        c[t, BC] = c[t, BD] = c[t, EC] = c[t, ED] = EPS_EUR_PER_KWH * dt
    const = 0.0
    if act[2]:
        c[H - 1, ES] -= w_ev  # unmet EV energy: w_ev * (need0 - delivered at the end)
        const = w_ev * ev_need0
    return g, bat_keep, hp_a, act, const
