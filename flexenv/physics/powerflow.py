"""Balanced AC power flow on a radial feeder: a numba backward/forward sweep.

Public API: :func:`solve` (thin Python shell: checks shapes and values, then one numba call) and
:class:`PowerFlowResult`. The numeric kernel (``_solve_serial`` / ``_solve_parallel`` around
``_solve_chunk``) works on plain arrays and knows nothing of pandapower.

Method. Each branch is an ideal transformer (complex tap, 1 for lines) followed by a series
impedance; all shunts (line charging, transformer magnetising, bus shunts) are folded into constant
admittances at the nodes, so the model is exactly pandapower's ``makeYbus`` pi model. One iteration is

* backward: node current ``J_k = conj(S_k / V_k) + Ysh_k V_k + sum(children)`` (loads drawn at
  constant power), passed to the parent through the tap as ``J_k * conj(1/tap_k)``;
* forward: ``V_k = V_parent / tap_k - z_k J_k``.

This is a fixed-point (Z-bus Gauss) iteration on the exact equations; at a fixed point the power
balance holds exactly, so the only error is the stopping tolerance ``tol_pu`` on the largest voltage
update (default 1e-10 p.u.). The transformer's phase shift is just a complex ratio here, so there is
no flat-start problem, and angles are reported unwrapped relative to the nominal angle of each bus
(slack angle minus the shifts on the path), as pandapower reports them.

Batching: work arrays are ``(n_node, rows)`` with the batch index innermost, so every node update is a
short vector loop over scenarios. Rows are processed in chunks of ``CHUNK``; chunks run in parallel
(``prange``) when there is more than one. A row that has converged is frozen, so every row gets
exactly the same floating-point operations as when it is solved alone: batched results equal single
results bit for bit.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numba
import numpy as np

from flexenv.physics.feeder import SQRT3, Feeder

CHUNK = 16  # rows per vector block; also the unit of parallel work
TOL_PU = 1e-10  # stop when no bus voltage moves by more than this between two sweeps (p.u.)
MAX_ITER = 100

# Rows of the per-node float parameter array (edge k feeds node k).
(F_Z_RE, F_Z_IM, F_Y_RE, F_Y_IM, F_T_RE, F_T_IM, F_SH_RE, F_SH_IM, F_YP_RE, F_YP_IM, F_YC_RE, F_YC_IM,
 F_FP, F_FC, F_U_RE, F_U_IM, F_VA_NOM) = range(17)
N_FLOAT_FIELDS = 17
# Rows of the per-node int parameter array.
I_PARENT, I_OUT, I_BUS = range(3)


class PowerFlowResult(NamedTuple):
    """Power-flow results. Leading ``(batch,)`` axis only when the injections were 2-D.

    vm_pu: (batch, n_bus) voltage magnitude, p.u. of the bus nominal voltage.
    va_degree: (batch, n_bus) voltage angle, degrees, incl. transformer phase shift.
    line_loading_pct: (batch, n_line) max of both ends' current / rated current (max_i_ka*df*parallel).
    trafo_loading_pct: (batch, 1) max over both sides of current / rated current (sn_mva*df*parallel).
    losses_kw: (batch,) active losses in all lines and the transformer.
    converged: (batch,) bool. iterations: (batch,) int, sweeps used.
    v_pu: (batch, n_bus) complex voltages; pass as ``v_init`` to warm-start the next solve.
    p_slack_kw, q_slack_kvar: (batch,) power drawn from the external grid (pandapower's
        ``res_ext_grid.p_mw/q_mvar`` in kW/kvar): slack voltage times the conjugate branch currents
        leaving the slack bus, plus injections and bus shunts at the slack bus itself. It is computed
        independently of ``losses_kw``, so ``p_slack_kw == sum(p_kw) + losses_kw`` (plus the power of
        bus shunts, ``net.shunt``, if any) is a real check of the energy balance.
    """

    vm_pu: np.ndarray
    va_degree: np.ndarray
    line_loading_pct: np.ndarray
    trafo_loading_pct: np.ndarray
    losses_kw: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    v_pu: np.ndarray
    p_slack_kw: np.ndarray
    q_slack_kvar: np.ndarray


def kernel_arrays(feeder: Feeder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-node parameter arrays for the kernel, built once per feeder and cached on it.

    Returns ``(node_i, node_f, bus_node, consts)``: ``node_i`` (3, n_node) int64 with parent, output
    branch and a bus of each node (-1 for auxiliary nodes); ``node_f`` (N_FLOAT_FIELDS, n_node)
    float64; ``bus_node`` (n_bus,); ``consts`` = [Re V_slack, Im V_slack, s_base_mva, Re Ysh, Im Ysh] with
    ``Ysh`` the bus shunts at the slack node (for the slack power).
    """
    cache = feeder._kernel_cache
    if "arrays" in cache:
        return cache["arrays"]
    n_node = feeder.n_node
    node_i = np.full((3, n_node), -1, dtype=np.int64)
    node_f = np.zeros((N_FLOAT_FIELDS, n_node), dtype=np.float64)
    node_i[I_PARENT] = feeder.node_parent
    node_i[I_OUT] = feeder.node_branch
    rep = np.flatnonzero(feeder.bus_fused_to == np.arange(feeder.n_bus))
    node_i[I_BUS, feeder.bus_node[rep]] = rep

    shunt = np.zeros(n_node, dtype=np.complex128)
    np.add.at(shunt, feeder.bus_node, feeder.bus_shunt_pu)
    slack_shunt = shunt[0]  # bus shunts only (before the branch shunts are added)
    vn_kv = np.zeros(n_node)
    vn_kv[feeder.bus_node] = feeder.bus_vn_kv
    for k in range(1, n_node):
        e = feeder.node_branch[k]
        parent = feeder.node_parent[k]
        z = complex(feeder.branch_r_pu[e], feeder.branch_x_pu[e])
        if feeder.node_edge_forward[k]:
            tap = complex(feeder.branch_tap[e])
            y_p, y_c = feeder.branch_y_from_pu[e], feeder.branch_y_to_pu[e]
        else:  # a line fed from its to end (lines are symmetric, tap 1)
            tap = 1.0 + 0j
            y_p, y_c = feeder.branch_y_to_pu[e], feeder.branch_y_from_pu[e]
        if node_i[I_BUS, k] < 0:
            vn_kv[k] = vn_kv[parent]  # auxiliary open-end node: same voltage level as its line
        t_inv = 1.0 / tap
        node_f[F_Z_RE, k], node_f[F_Z_IM, k] = z.real, z.imag
        node_f[F_Y_RE, k], node_f[F_Y_IM, k] = (1 / z).real, (1 / z).imag
        node_f[F_T_RE, k], node_f[F_T_IM, k] = t_inv.real, t_inv.imag
        node_f[F_YP_RE, k], node_f[F_YP_IM, k] = y_p.real, y_p.imag
        node_f[F_YC_RE, k], node_f[F_YC_IM, k] = y_c.real, y_c.imag
        # Shunt behind the tap seen from the parent bus: y_p / |tap|^2.
        shunt[parent] += y_p / abs(tap) ** 2
        shunt[k] += y_c
    for k in range(1, n_node):
        parent = feeder.node_parent[k]
        e = feeder.node_branch[k]
        forward = feeder.node_edge_forward[k]
        i_p = feeder.branch_i_rated_from_ka[e] if forward else feeder.branch_i_rated_to_ka[e]
        i_c = feeder.branch_i_rated_to_ka[e] if forward else feeder.branch_i_rated_from_ka[e]
        # loading % = |I_pu| * s_base / (sqrt3 * vn_kv) / i_rated_ka * 100, at each end
        node_f[F_FP, k] = 100.0 * feeder.s_base_mva / (SQRT3 * vn_kv[parent] * i_p)
        node_f[F_FC, k] = 100.0 * feeder.s_base_mva / (SQRT3 * vn_kv[k] * i_c)
    node_f[F_SH_RE], node_f[F_SH_IM] = shunt.real, shunt.imag
    va_nom = feeder.node_va_nominal_degree
    node_f[F_U_RE], node_f[F_U_IM] = np.cos(np.radians(va_nom)), np.sin(np.radians(va_nom))
    node_f[F_VA_NOM] = va_nom
    v_slack = feeder.slack_vm_pu * np.exp(1j * np.radians(feeder.slack_va_degree))
    consts = np.array([v_slack.real, v_slack.imag, feeder.s_base_mva, slack_shunt.real, slack_shunt.imag])
    cache["arrays"] = (node_i, node_f, feeder.bus_node.astype(np.int64), consts)
    return cache["arrays"]


# ---------------------------------------------------------------------------------------------- kernel
@numba.njit(cache=True)
def _solve_chunk(node_i, node_f, bus_node, consts, p_kw, q_kvar, v0, has_v0, r0, r1, tol, max_iter,
                 out_vm, out_va, out_load, out_loss, out_conv, out_iter, out_v, out_ps, out_qs):
    """Solve rows ``r0:r1``; all work arrays are (n_node, rows) with the row index innermost."""
    n_node = node_i.shape[1]
    n_bus = bus_node.shape[0]
    rows = r1 - r0
    kw_to_pu = 1e-3 / consts[2]
    parent = node_i[I_PARENT]
    vr = np.empty((n_node, rows))
    vi = np.empty((n_node, rows))
    sp = np.zeros((n_node, rows))
    sq = np.zeros((n_node, rows))
    jr = np.empty((n_node, rows))
    ji = np.empty((n_node, rows))
    dmax = np.empty(rows)
    active = np.ones(rows, dtype=np.bool_)

    # Node injections (fused buses add up), in p.u.; consumption positive.
    for i in range(n_bus):
        k = bus_node[i]
        for b in range(rows):
            sp[k, b] += p_kw[r0 + b, i] * kw_to_pu
            sq[k, b] += q_kvar[r0 + b, i] * kw_to_pu

    # Start: slack voltage, then either the given voltages or "parent / tap" (flat incl. shifts).
    for b in range(rows):
        vr[0, b] = consts[0]
        vi[0, b] = consts[1]
    v0_row_step = 1 if v0.shape[0] > 1 else 0
    for k in range(1, n_node):
        pk = parent[k]
        tr = node_f[F_T_RE, k]
        ti = node_f[F_T_IM, k]
        bus = node_i[I_BUS, k]
        for b in range(rows):
            if has_v0 and bus >= 0:
                v = v0[(r0 + b) * v0_row_step, bus]
                vr[k, b] = v.real
                vi[k, b] = v.imag
            else:
                vr[k, b] = vr[pk, b] * tr - vi[pk, b] * ti
                vi[k, b] = vr[pk, b] * ti + vi[pk, b] * tr

    if rows == 1:
        # One scenario: the same arithmetic on 1-D views, without the short vector loops.
        it, conv = _iterate_one(parent, node_f, sp[:, 0], sq[:, 0], vr[:, 0], vi[:, 0], jr[:, 0], ji[:, 0],
                                tol, max_iter)
        out_iter[r0] = it
        out_conv[r0] = conv
    else:
        for it in range(1, max_iter + 1):
            # Backward sweep: currents drawn by each subtree.
            jr[:, :] = 0.0
            ji[:, :] = 0.0
            for k in range(n_node - 1, 0, -1):
                pk = parent[k]
                gr = node_f[F_SH_RE, k]
                gi = node_f[F_SH_IM, k]
                tr = node_f[F_T_RE, k]
                ti = node_f[F_T_IM, k]
                for b in range(rows):
                    xr = vr[k, b]
                    xi = vi[k, b]
                    inv = 1.0 / (xr * xr + xi * xi)
                    # conj(S / V) = (P - jQ)(Vr + jVi) / |V|^2, plus the shunt current Y V
                    cr = (sp[k, b] * xr + sq[k, b] * xi) * inv + gr * xr - gi * xi + jr[k, b]
                    ci = (sp[k, b] * xi - sq[k, b] * xr) * inv + gr * xi + gi * xr + ji[k, b]
                    jr[k, b] = cr
                    ji[k, b] = ci
                    # seen from the parent through the tap: J * conj(1/tap)
                    jr[pk, b] += cr * tr + ci * ti
                    ji[pk, b] += ci * tr - cr * ti
            # Forward sweep: voltages from the slack down.
            dmax[:] = 0.0
            for k in range(1, n_node):
                pk = parent[k]
                zr = node_f[F_Z_RE, k]
                zi = node_f[F_Z_IM, k]
                tr = node_f[F_T_RE, k]
                ti = node_f[F_T_IM, k]
                for b in range(rows):
                    nr = vr[pk, b] * tr - vi[pk, b] * ti - (zr * jr[k, b] - zi * ji[k, b])
                    ni = vr[pk, b] * ti + vi[pk, b] * tr - (zr * ji[k, b] + zi * jr[k, b])
                    d = max(abs(nr - vr[k, b]), abs(ni - vi[k, b]))
                    dmax[b] = max(dmax[b], d)
                    # frozen rows keep their converged voltages (so batched == single, bit for bit)
                    vr[k, b] = nr if active[b] else vr[k, b]
                    vi[k, b] = ni if active[b] else vi[k, b]
            any_active = False
            for b in range(rows):
                if active[b]:
                    out_iter[r0 + b] = it
                    check = abs(vr[n_node - 1, b]) + abs(vi[n_node - 1, b]) if n_node > 1 else 0.0
                    if not (check < 1e6 and dmax[b] < 1e6):  # NaN or blown up: diverged
                        active[b] = False
                    elif dmax[b] < tol:
                        active[b] = False
                        out_conv[r0 + b] = True
                    else:
                        any_active = True
            if not any_active:
                break

    # Results per node, then per bus.
    s_kw = consts[2] * 1e3
    for b in range(rows):
        out_loss[r0 + b] = 0.0
        # slack power: injections at the slack node plus its bus shunts (S = |V|^2 conj(Y)), then the
        # branches leaving it are added below
        v2 = vr[0, b] * vr[0, b] + vi[0, b] * vi[0, b]
        out_ps[r0 + b] = (sp[0, b] + consts[3] * v2) * s_kw
        out_qs[r0 + b] = (sq[0, b] - consts[4] * v2) * s_kw
    for k in range(1, n_node):
        pk = parent[k]
        e = node_i[I_OUT, k]
        yr = node_f[F_Y_RE, k]
        yi = node_f[F_Y_IM, k]
        tr = node_f[F_T_RE, k]
        ti = node_f[F_T_IM, k]
        ypr = node_f[F_YP_RE, k]
        ypi = node_f[F_YP_IM, k]
        ycr = node_f[F_YC_RE, k]
        yci = node_f[F_YC_IM, k]
        fp = node_f[F_FP, k]
        fc = node_f[F_FC, k]
        for b in range(rows):
            # voltage behind the tap, series current, and the currents entering the branch at each end
            mr = vr[pk, b] * tr - vi[pk, b] * ti
            mi = vr[pk, b] * ti + vi[pk, b] * tr
            dr = mr - vr[k, b]
            di = mi - vi[k, b]
            sr = dr * yr - di * yi
            si = dr * yi + di * yr
            ar = sr + ypr * mr - ypi * mi
            ai = si + ypr * mi + ypi * mr
            ipr = ar * tr + ai * ti  # times conj(1/tap)
            ipi = ai * tr - ar * ti
            icr = ycr * vr[k, b] - yci * vi[k, b] - sr
            ici = ycr * vi[k, b] + yci * vr[k, b] - si
            loss = (vr[pk, b] * ipr + vi[pk, b] * ipi) + (vr[k, b] * icr + vi[k, b] * ici)
            out_loss[r0 + b] += loss * s_kw
            if pk == 0:  # S = V_slack * conj(I) of a branch leaving the slack
                out_ps[r0 + b] += (vr[0, b] * ipr + vi[0, b] * ipi) * s_kw
                out_qs[r0 + b] += (vi[0, b] * ipr - vr[0, b] * ipi) * s_kw
            lp = math.sqrt(ipr * ipr + ipi * ipi) * fp
            lc = math.sqrt(icr * icr + ici * ici) * fc
            out_load[r0 + b, e] = max(lp, lc)
    for i in range(n_bus):
        k = bus_node[i]
        ur = node_f[F_U_RE, k]
        ui = node_f[F_U_IM, k]
        va_nom = node_f[F_VA_NOM, k]
        for b in range(rows):
            xr = vr[k, b]
            xi = vi[k, b]
            out_vm[r0 + b, i] = math.sqrt(xr * xr + xi * xi)
            # angle relative to the nominal angle, so that results are unwrapped like pandapower's
            out_va[r0 + b, i] = va_nom + math.degrees(math.atan2(xi * ur - xr * ui, xr * ur + xi * ui))
            out_v[r0 + b, i] = complex(xr, xi)


@numba.njit(cache=True)
def _iterate_one(parent, node_f, sp, sq, vr, vi, jr, ji, tol, max_iter):
    """The sweep iterations of ``_solve_chunk`` for a single row (identical floating-point operations)."""
    n_node = parent.shape[0]
    for it in range(1, max_iter + 1):
        jr[:] = 0.0
        ji[:] = 0.0
        for k in range(n_node - 1, 0, -1):
            pk = parent[k]
            gr = node_f[F_SH_RE, k]
            gi = node_f[F_SH_IM, k]
            tr = node_f[F_T_RE, k]
            ti = node_f[F_T_IM, k]
            xr = vr[k]
            xi = vi[k]
            inv = 1.0 / (xr * xr + xi * xi)
            cr = (sp[k] * xr + sq[k] * xi) * inv + gr * xr - gi * xi + jr[k]
            ci = (sp[k] * xi - sq[k] * xr) * inv + gr * xi + gi * xr + ji[k]
            jr[k] = cr
            ji[k] = ci
            jr[pk] += cr * tr + ci * ti
            ji[pk] += ci * tr - cr * ti
        dmax = 0.0
        for k in range(1, n_node):
            pk = parent[k]
            zr = node_f[F_Z_RE, k]
            zi = node_f[F_Z_IM, k]
            tr = node_f[F_T_RE, k]
            ti = node_f[F_T_IM, k]
            nr = vr[pk] * tr - vi[pk] * ti - (zr * jr[k] - zi * ji[k])
            ni = vr[pk] * ti + vi[pk] * tr - (zr * ji[k] + zi * jr[k])
            d = max(abs(nr - vr[k]), abs(ni - vi[k]))
            dmax = max(dmax, d)
            vr[k] = nr
            vi[k] = ni
        check = abs(vr[n_node - 1]) + abs(vi[n_node - 1]) if n_node > 1 else 0.0
        if not (check < 1e6 and dmax < 1e6):
            return it, False
        if dmax < tol:
            return it, True
    return max_iter, False


@numba.njit(cache=True)
def _first_bad(p_kw, q_kvar):
    """(row, bus) of the first non-finite injection, or (-1, -1)."""
    for r in range(p_kw.shape[0]):
        for i in range(p_kw.shape[1]):
            if not (np.isfinite(p_kw[r, i]) and np.isfinite(q_kvar[r, i])):
                return r, i
    return -1, -1


@numba.njit(cache=True)
def _allocate(batch, n_bus, n_branch):
    return (np.empty((batch, n_bus)), np.empty((batch, n_bus)), np.empty((batch, n_branch)),
            np.empty(batch), np.zeros(batch, dtype=np.bool_), np.zeros(batch, dtype=np.int64),
            np.empty((batch, n_bus), dtype=np.complex128), np.empty(batch), np.empty(batch))


@numba.njit(cache=True)
def _solve_serial(node_i, node_f, bus_node, consts, n_branch, p_kw, q_kvar, v0, has_v0, tol, max_iter):
    bad_row, bad_bus = _first_bad(p_kw, q_kvar)
    batch = p_kw.shape[0]
    out = _allocate(batch, bus_node.shape[0], n_branch)
    if bad_row >= 0:
        return out, bad_row, bad_bus
    n_chunks = (batch + CHUNK - 1) // CHUNK
    for c in range(n_chunks):
        r0 = c * CHUNK
        r1 = min(batch, r0 + CHUNK)
        _solve_chunk(node_i, node_f, bus_node, consts, p_kw, q_kvar, v0, has_v0, r0, r1, tol, max_iter,
                     out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8])
    return out, bad_row, bad_bus


@numba.njit(cache=True, parallel=True)
def _solve_parallel(node_i, node_f, bus_node, consts, n_branch, p_kw, q_kvar, v0, has_v0, tol, max_iter):
    bad_row, bad_bus = _first_bad(p_kw, q_kvar)
    batch = p_kw.shape[0]
    out = _allocate(batch, bus_node.shape[0], n_branch)
    if bad_row >= 0:
        return out, bad_row, bad_bus
    vm, va, load, loss, conv, iters, v, ps, qs = out
    n_chunks = (batch + CHUNK - 1) // CHUNK
    for c in numba.prange(n_chunks):
        r0 = c * CHUNK
        r1 = min(batch, r0 + CHUNK)
        _solve_chunk(node_i, node_f, bus_node, consts, p_kw, q_kvar, v0, has_v0, r0, r1, tol, max_iter,
                     vm, va, load, loss, conv, iters, v, ps, qs)
    return out, bad_row, bad_bus


_NO_V0 = np.zeros((1, 1), dtype=np.complex128)


# ---------------------------------------------------------------------------------------------- API
def solve(feeder: Feeder, p_kw, q_kvar, v_init=None, *, tol_pu: float = TOL_PU, max_iter: int = MAX_ITER,
          warn: bool = True) -> PowerFlowResult:
    """AC power flow on ``feeder`` for one or many injection scenarios.

    p_kw, q_kvar: (n_bus,) or (batch, n_bus) float, three-phase active/reactive power per bus in
        kW/kvar, consumption positive (PV feed-in negative), in the feeder's bus order. Injections at
        the slack bus do not change the solution.
    v_init: optional complex p.u. voltages (n_bus,) or (batch, n_bus) to start from, typically the
        previous PTU's ``result.v_pu`` (warm start). Default: slack voltage behind the taps.
    Returns a :class:`PowerFlowResult`, batched like the input. Rows that did not converge within
    ``max_iter`` sweeps (e.g. absurd loading beyond voltage collapse) have ``converged = False`` and a
    ``RuntimeWarning`` is issued unless ``warn=False``.
    Raises ``ValueError`` for wrong shapes or non-finite injections / start voltages.
    """
    p = np.asarray(p_kw, dtype=np.float64)
    q = np.asarray(q_kvar, dtype=np.float64)
    n_bus = feeder.n_bus
    single = p.ndim == 1
    if p.shape != q.shape:
        raise ValueError(f"p_kw has shape {p.shape} but q_kvar has shape {q.shape}; they must match")
    if p.ndim not in (1, 2) or p.shape[-1] != n_bus:
        raise ValueError(f"p_kw/q_kvar must have shape (n_bus,) or (batch, n_bus) with n_bus = {n_bus} for "
                         f"feeder {feeder.name!r}; got {p.shape}")
    if single:
        p = p.reshape(1, n_bus)
        q = q.reshape(1, n_bus)
    p = np.ascontiguousarray(p)
    q = np.ascontiguousarray(q)
    batch = p.shape[0]
    if v_init is None:
        v0, has_v0 = _NO_V0, False
    else:
        v0 = np.asarray(v_init, dtype=np.complex128)
        if v0.ndim == 1:
            v0 = v0.reshape(1, -1)
        if v0.ndim != 2 or v0.shape[1] != n_bus or v0.shape[0] not in (1, batch):
            raise ValueError(f"v_init must have shape (n_bus,) or ({batch}, n_bus) with n_bus = {n_bus}; "
                             f"got {np.shape(v_init)}")
        if not np.isfinite(v0).all() or (np.abs(v0) == 0).any():
            raise ValueError("v_init must be finite and non-zero at every bus")
        v0 = np.ascontiguousarray(v0)
        has_v0 = True
    node_i, node_f, bus_node, consts = kernel_arrays(feeder)
    kernel = _solve_parallel if batch > CHUNK else _solve_serial
    out, bad_row, bad_bus = kernel(node_i, node_f, bus_node, consts, feeder.n_branch, p, q, v0, has_v0,
                                   float(tol_pu), int(max_iter))
    if bad_row >= 0:
        where = f"bus {feeder.bus_ids[bad_bus]} (position {bad_bus})"
        if not single:
            where = f"row {bad_row}, " + where
        raise ValueError(f"non-finite injection at {where}: p_kw = {p[bad_row, bad_bus]}, "
                         f"q_kvar = {q[bad_row, bad_bus]}")
    vm, va, load, loss, conv, iters, v, ps, qs = out
    if warn and not conv.all():
        rows = np.flatnonzero(~conv)
        warnings.warn(f"power flow did not converge for {len(rows)} of {batch} rows (first: {rows[:5]})",
                      RuntimeWarning, stacklevel=2)
    n_line = feeder.n_line
    if single:
        return PowerFlowResult(vm[0], va[0], load[0, :n_line], load[0, n_line:], loss[0], conv[0], iters[0],
                               v[0], ps[0], qs[0])
    return PowerFlowResult(vm, va, load[:, :n_line], load[:, n_line:], loss, conv, iters, v, ps, qs)
