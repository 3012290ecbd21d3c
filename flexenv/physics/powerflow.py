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

Reduction (``solve(..., reduce=True)``, the default). Buses that carry no injection are eliminated
exactly before the sweep (``powerflow_reduce``): load-free dead ends become shunt admittances,
pass-through chains become one equivalent pi section. The sweep runs on the slack, the load buses and
their junctions only (110 of 907 nodes on the IEEE European LV feeder); afterwards every eliminated
node's voltage is recovered as a fixed linear combination of two solved voltages, and loadings, losses
and slack power are computed on the original branches. If a call has a nonzero injection at an
eliminated bus, it is solved on the full tree instead.

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
from flexenv.physics.powerflow_reduce import node_branch_params, reduce_tree

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


def _tree_f(parent, z, tap, y_p, y_c, own) -> np.ndarray:
    """Float parameters of a sweep tree (series, tap, pi shunts folded into node shunts)."""
    node_f = np.zeros((N_FLOAT_FIELDS, len(parent)), dtype=np.float64)
    t_inv = 1.0 / tap
    y = np.zeros_like(z)
    y[1:] = 1.0 / z[1:]
    shunt = own.copy()
    # Shunt behind the tap seen from the parent bus: y_p / |tap|^2; the child-side shunt at the child.
    np.add.at(shunt, parent[1:], y_p[1:] / np.abs(tap[1:]) ** 2)
    shunt[1:] += y_c[1:]
    for row_re, row_im, values in ((F_Z_RE, F_Z_IM, z), (F_Y_RE, F_Y_IM, y), (F_T_RE, F_T_IM, t_inv),
                                   (F_YP_RE, F_YP_IM, y_p), (F_YC_RE, F_YC_IM, y_c),
                                   (F_SH_RE, F_SH_IM, shunt)):
        node_f[row_re], node_f[row_im] = values.real, values.imag
    return node_f


def kernel_arrays(feeder: Feeder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-node parameter arrays of the full sweep tree, built once per feeder and cached on it.

    Returns ``(node_i, node_f, bus_node, consts)``: ``node_i`` (3, n_node) int64 with parent, output
    branch and a bus of each node (-1 for auxiliary nodes); ``node_f`` (N_FLOAT_FIELDS, n_node)
    float64; ``bus_node`` (n_bus,); ``consts`` = [Re V_slack, Im V_slack, s_base_mva, Re Ysh, Im Ysh] with
    ``Ysh`` the bus shunts at the slack node (for the slack power).
    """
    cache = feeder._kernel_cache
    if "arrays" in cache:
        return cache["arrays"]
    n_node = feeder.n_node
    prm = node_branch_params(feeder)
    node_i = np.full((3, n_node), -1, dtype=np.int64)
    node_i[I_PARENT] = feeder.node_parent
    node_i[I_OUT] = feeder.node_branch
    rep = np.flatnonzero(feeder.bus_fused_to == np.arange(feeder.n_bus))
    node_i[I_BUS, feeder.bus_node[rep]] = rep
    node_f = _tree_f(feeder.node_parent, prm["z"], prm["tap"], prm["y_p"], prm["y_c"], prm["own"])

    vn_kv = np.zeros(n_node)
    vn_kv[feeder.bus_node] = feeder.bus_vn_kv
    for k in range(1, n_node):  # auxiliary open-end nodes: same voltage level as their line
        if node_i[I_BUS, k] < 0:
            vn_kv[k] = vn_kv[feeder.node_parent[k]]
    e = feeder.node_branch[1:]
    forward = feeder.node_edge_forward[1:]
    i_p = np.where(forward, feeder.branch_i_rated_from_ka[e], feeder.branch_i_rated_to_ka[e])
    i_c = np.where(forward, feeder.branch_i_rated_to_ka[e], feeder.branch_i_rated_from_ka[e])
    # loading % = |I_pu| * s_base / (sqrt3 * vn_kv) / i_rated_ka * 100, at each end
    node_f[F_FP, 1:] = 100.0 * feeder.s_base_mva / (SQRT3 * vn_kv[feeder.node_parent[1:]] * i_p)
    node_f[F_FC, 1:] = 100.0 * feeder.s_base_mva / (SQRT3 * vn_kv[1:] * i_c)
    va_nom = feeder.node_va_nominal_degree
    node_f[F_U_RE], node_f[F_U_IM] = np.cos(np.radians(va_nom)), np.sin(np.radians(va_nom))
    node_f[F_VA_NOM] = va_nom
    v_slack = feeder.slack_vm_pu * np.exp(1j * np.radians(feeder.slack_va_degree))
    slack_shunt = prm["own"][0]  # bus shunts only, for the slack power
    consts = np.array([v_slack.real, v_slack.imag, feeder.s_base_mva, slack_shunt.real, slack_shunt.imag])
    cache["arrays"] = (node_i, node_f, feeder.bus_node.astype(np.int64), consts)
    return cache["arrays"]


def sweep_arrays(feeder: Feeder, reduce: bool) -> tuple:
    """The tree the sweep iterates on, and how to get every node back from it (cached on the feeder).

    Returns ``(red_i, red_f, bus_red, red_full, rec_i, rec_f)``: ``red_i``/``red_f`` like ``node_i``/
    ``node_f`` for the sweep nodes; ``bus_red`` (n_bus,) the sweep node of each bus (-1: eliminated);
    ``red_full`` the full node of each sweep node; ``rec_i`` (3, n_elim) eliminated node and its two
    source nodes, ``rec_f`` (4, n_elim) Re/Im of the coefficients ``a``, ``b`` (see powerflow_reduce).
    With ``reduce=False`` (or a feeder without load buses) the sweep tree is the full tree.
    """
    key = "reduced" if reduce and len(feeder.load_buses) else "full"
    cache = feeder._kernel_cache
    if key in cache:
        return cache[key]
    node_i, node_f, bus_node, _ = kernel_arrays(feeder)
    if key == "full":
        no_rec_i, no_rec_f = np.zeros((3, 0), dtype=np.int64), np.zeros((4, 0))
        cache[key] = (node_i, node_f, bus_node, np.arange(feeder.n_node, dtype=np.int64), no_rec_i, no_rec_f)
        return cache[key]
    red = reduce_tree(feeder)
    full = red["full"]
    red_i = np.full((3, len(full)), -1, dtype=np.int64)
    red_i[I_PARENT] = red["parent"]
    red_i[I_BUS] = node_i[I_BUS, full]
    red_f = _tree_f(red["parent"], red["z"], red["tap"], red["y_p"], red["y_c"], red["own"])
    red_index = np.full(feeder.n_node, -1, dtype=np.int64)
    red_index[full] = np.arange(len(full))
    bus_red = red_index[bus_node]
    rec_i = np.vstack([red["rec_node"], red["rec_src"]])
    coef = red["rec_coef"]
    rec_f = np.ascontiguousarray(np.vstack([coef[0].real, coef[0].imag, coef[1].real, coef[1].imag]))
    cache[key] = (red_i, red_f, bus_red, full.astype(np.int64), rec_i, rec_f)
    return cache[key]


# ---------------------------------------------------------------------------------------------- kernel
# The kernels use numpy's floating-point error model (x / 0 gives inf or nan instead of raising), so that
# loops carry no division checks and vectorise; a blown-up row is caught by the divergence test.
_ATAN_MOREBITS = 6.123233995736765886130e-17  # pi/2 - float(pi/2)
_TAN_3PI_8 = 2.41421356237309504880


@numba.njit(cache=True, inline="always", error_model="numpy")
def _atan2(y, x):
    """``math.atan2`` without a library call (Cephes' double-precision atan, within 1e-15 rad), so that
    the loops around it vectorise: the angle of every bus was most of the result stage's time."""
    t = y / x
    a = abs(t)
    big = a > _TAN_3PI_8
    mid = a > 0.66
    u = -1.0 / a if big else ((a - 1.0) / (a + 1.0) if mid else a)
    base = math.pi / 2 if big else (math.pi / 4 if mid else 0.0)
    extra = _ATAN_MOREBITS if big else (0.5 * _ATAN_MOREBITS if mid else 0.0)
    z = u * u
    num = (((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z - 7.500855792314704667340e1) * z
           - 1.228866684490136173410e2) * z - 6.485021904942025371773e1
    den = ((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z + 4.328810604912902668951e2) * z
           + 4.853903996359136964868e2) * z + 1.945506571482613964425e2
    r = base + (u * (z * num / den) + u + extra)
    r = r if t >= 0 else -r
    if x < 0:  # left half plane
        r = r + math.pi if y >= 0 else r - math.pi
    return r


@numba.njit(cache=True, error_model="numpy")
def _solve_chunk(red_i, red_f, bus_red, red_full, rec_i, rec_f, node_i, node_f, bus_node, consts, p_kw, q_kvar,
                 v0, has_v0, r0, r1, tol, max_iter,
                 out_vm, out_va, out_load, out_loss, out_conv, out_iter, out_v, out_ps, out_qs):
    """Solve rows ``r0:r1``; all work arrays are (nodes, rows) with the row index innermost.

    The sweep runs on the ``red_*`` tree; then every full node's voltage is filled in (copied, or
    recovered from two solved voltages) and the results are computed on the full tree."""
    n_red = red_i.shape[1]
    n_node = node_i.shape[1]
    n_bus = bus_node.shape[0]
    rows = r1 - r0
    kw_to_pu = 1e-3 / consts[2]
    parent = red_i[I_PARENT]
    vr = np.empty((n_red, rows))
    vi = np.empty((n_red, rows))
    sp = np.zeros((n_red, rows))
    sq = np.zeros((n_red, rows))
    jr = np.empty((n_red, rows))
    ji = np.empty((n_red, rows))
    dmax = np.empty(rows)
    active = np.ones(rows, dtype=np.bool_)

    # Node injections (fused buses add up), in p.u.; consumption positive. Eliminated buses carry none.
    for i in range(n_bus):
        k = bus_red[i]
        if k < 0:
            continue
        for b in range(rows):
            sp[k, b] += p_kw[r0 + b, i] * kw_to_pu
            sq[k, b] += q_kvar[r0 + b, i] * kw_to_pu

    # Start: slack voltage, then either the given voltages or "parent / tap" (flat incl. shifts).
    for b in range(rows):
        vr[0, b] = consts[0]
        vi[0, b] = consts[1]
    v0_row_step = 1 if v0.shape[0] > 1 else 0
    for k in range(1, n_red):
        pk = parent[k]
        tr = red_f[F_T_RE, k]
        ti = red_f[F_T_IM, k]
        bus = red_i[I_BUS, k]
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
        it, conv = _iterate_one(parent, red_f, sp[:, 0], sq[:, 0], vr[:, 0], vi[:, 0], jr[:, 0], ji[:, 0],
                                tol, max_iter)
        out_iter[r0] = it
        out_conv[r0] = conv
    else:
        for it in range(1, max_iter + 1):
            # Backward sweep: currents drawn by each subtree.
            jr[:, :] = 0.0
            ji[:, :] = 0.0
            for k in range(n_red - 1, 0, -1):
                pk = parent[k]
                gr = red_f[F_SH_RE, k]
                gi = red_f[F_SH_IM, k]
                tr = red_f[F_T_RE, k]
                ti = red_f[F_T_IM, k]
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
            for k in range(1, n_red):
                pk = parent[k]
                zr = red_f[F_Z_RE, k]
                zi = red_f[F_Z_IM, k]
                tr = red_f[F_T_RE, k]
                ti = red_f[F_T_IM, k]
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
                    check = abs(vr[n_red - 1, b]) + abs(vi[n_red - 1, b]) if n_red > 1 else 0.0
                    if not (check < 1e6 and dmax[b] < 1e6):  # NaN or blown up: diverged
                        active[b] = False
                    elif dmax[b] < tol:
                        active[b] = False
                        out_conv[r0 + b] = True
                    else:
                        any_active = True
            if not any_active:
                break

    # Every node's voltage: solved nodes copied, eliminated ones from two known voltages (exact,
    # linear), in increasing node order so that a dead end's parent is always known.
    fr = np.empty((n_node, rows))
    fi = np.empty((n_node, rows))
    for k in range(n_red):
        kf = red_full[k]
        for b in range(rows):
            fr[kf, b] = vr[k, b]
            fi[kf, b] = vi[k, b]
    for j in range(rec_i.shape[1]):
        k = rec_i[0, j]
        s1 = rec_i[1, j]
        s2 = rec_i[2, j]
        ar = rec_f[0, j]
        ai = rec_f[1, j]
        br = rec_f[2, j]
        bi = rec_f[3, j]
        for b in range(rows):
            fr[k, b] = ar * fr[s1, b] - ai * fi[s1, b] + br * fr[s2, b] - bi * fi[s2, b]
            fi[k, b] = ar * fi[s1, b] + ai * fr[s1, b] + br * fi[s2, b] + bi * fr[s2, b]
    _results(node_i, node_f, bus_node, consts, sp[0], sq[0], fr, fi, r0, out_vm, out_va, out_load, out_loss,
             out_v, out_ps, out_qs)


@numba.njit(cache=True, error_model="numpy")
def _results(node_i, node_f, bus_node, consts, sp0, sq0, vr, vi, r0, out_vm, out_va, out_load, out_loss, out_v,
             out_ps, out_qs):
    """Results per branch and per bus from the full tree's voltages ``vr + j vi`` (n_node, rows)."""
    n_node = node_i.shape[1]
    n_bus = bus_node.shape[0]
    rows = vr.shape[1]
    parent = node_i[I_PARENT]
    s_kw = consts[2] * 1e3
    for b in range(rows):
        out_loss[r0 + b] = 0.0
        # slack power: injections at the slack node plus its bus shunts (S = |V|^2 conj(Y)), then the
        # branches leaving it are added below
        v2 = vr[0, b] * vr[0, b] + vi[0, b] * vi[0, b]
        out_ps[r0 + b] = (sp0[b] + consts[3] * v2) * s_kw
        out_qs[r0 + b] = (sq0[b] - consts[4] * v2) * s_kw
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
            out_va[r0 + b, i] = va_nom + math.degrees(_atan2(xi * ur - xr * ui, xr * ur + xi * ui))
            out_v[r0 + b, i] = complex(xr, xi)


@numba.njit(cache=True, error_model="numpy")
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


BAD_V_INIT = -2  # _scan's row for a start voltage that is not finite or zero


@numba.njit(cache=True)
def _scan(p_kw, q_kvar, bus_red, v0, has_v0):
    """(row, bus) of the first non-finite injection or (-1, -1), and whether any eliminated bus
    (``bus_red < 0``) has a nonzero injection (then the reduced tree cannot be used). A start
    voltage that is not finite or zero gives row ``BAD_V_INIT`` (checked here: in numpy it would cost
    more than the sweep at small feeders)."""
    eliminated_nonzero = False
    if has_v0:
        for r in range(v0.shape[0]):
            for i in range(v0.shape[1]):
                x = v0[r, i]
                if not (np.isfinite(x.real) and np.isfinite(x.imag)) or x == 0:
                    return BAD_V_INIT, i, eliminated_nonzero
    for r in range(p_kw.shape[0]):
        for i in range(p_kw.shape[1]):
            if not (np.isfinite(p_kw[r, i]) and np.isfinite(q_kvar[r, i])):
                return r, i, eliminated_nonzero
            if bus_red[i] < 0 and (p_kw[r, i] != 0.0 or q_kvar[r, i] != 0.0):
                eliminated_nonzero = True
    return -1, -1, eliminated_nonzero


@numba.njit(cache=True)
def _allocate(batch, n_bus, n_branch):
    return (np.empty((batch, n_bus)), np.empty((batch, n_bus)), np.empty((batch, n_branch)),
            np.empty(batch), np.zeros(batch, dtype=np.bool_), np.zeros(batch, dtype=np.int64),
            np.empty((batch, n_bus), dtype=np.complex128), np.empty(batch), np.empty(batch))


@numba.njit(cache=True)
def _solve_serial(red_i, red_f, bus_red, red_full, rec_i, rec_f, node_i, node_f, bus_node, consts, n_branch,
                  p_kw, q_kvar, v0, has_v0, tol, max_iter):
    """Returns ``(outputs, bad_row, bad_bus, eliminated_nonzero)``; solves only if both are clean."""
    bad_row, bad_bus, eliminated_nonzero = _scan(p_kw, q_kvar, bus_red, v0, has_v0)
    batch = p_kw.shape[0]
    out = _allocate(batch, bus_node.shape[0], n_branch)
    if bad_row != -1 or eliminated_nonzero:
        return out, bad_row, bad_bus, eliminated_nonzero
    n_chunks = (batch + CHUNK - 1) // CHUNK
    for c in range(n_chunks):
        r0 = c * CHUNK
        r1 = min(batch, r0 + CHUNK)
        _solve_chunk(red_i, red_f, bus_red, red_full, rec_i, rec_f, node_i, node_f, bus_node, consts, p_kw,
                     q_kvar, v0, has_v0, r0, r1, tol, max_iter,
                     out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8])
    return out, bad_row, bad_bus, eliminated_nonzero


@numba.njit(cache=True, parallel=True)
def _solve_parallel(red_i, red_f, bus_red, red_full, rec_i, rec_f, node_i, node_f, bus_node, consts, n_branch,
                    p_kw, q_kvar, v0, has_v0, tol, max_iter):
    bad_row, bad_bus, eliminated_nonzero = _scan(p_kw, q_kvar, bus_red, v0, has_v0)
    batch = p_kw.shape[0]
    out = _allocate(batch, bus_node.shape[0], n_branch)
    if bad_row != -1 or eliminated_nonzero:
        return out, bad_row, bad_bus, eliminated_nonzero
    vm, va, load, loss, conv, iters, v, ps, qs = out
    n_chunks = (batch + CHUNK - 1) // CHUNK
    for c in numba.prange(n_chunks):
        r0 = c * CHUNK
        r1 = min(batch, r0 + CHUNK)
        _solve_chunk(red_i, red_f, bus_red, red_full, rec_i, rec_f, node_i, node_f, bus_node, consts, p_kw,
                     q_kvar, v0, has_v0, r0, r1, tol, max_iter,
                     vm, va, load, loss, conv, iters, v, ps, qs)
    return out, bad_row, bad_bus, eliminated_nonzero


_NO_V0 = np.zeros((1, 1), dtype=np.complex128)


# ---------------------------------------------------------------------------------------------- API
def solve(feeder: Feeder, p_kw, q_kvar, v_init=None, *, tol_pu: float = TOL_PU, max_iter: int = MAX_ITER,
          warn: bool = True, reduce: bool = True) -> PowerFlowResult:
    """AC power flow on ``feeder`` for one or many injection scenarios.

    p_kw, q_kvar: (n_bus,) or (batch, n_bus) float, three-phase active/reactive power per bus in
        kW/kvar, consumption positive (PV feed-in negative), in the feeder's bus order. Injections at
        the slack bus do not change the solution.
    v_init: optional complex p.u. voltages (n_bus,) or (batch, n_bus) to start from, typically the
        previous PTU's ``result.v_pu`` (warm start). Default: slack voltage behind the taps.
    reduce: sweep only the buses that matter -- load buses (``feeder.load_buses``), junctions and the
        slack -- and recover all others exactly afterwards (see ``powerflow_reduce``); every bus and
        line is still in the result, equal to the full sweep's to within ``tol_pu``. Used only when
        every injection at an eliminated bus is zero; otherwise this call falls back to the full sweep
        (so injections may be given at any bus, at the full sweep's speed). ``reduce=False`` always
        sweeps the full tree. Batched results equal row-by-row results bit for bit when both calls
        take the same path.
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
        v0 = np.ascontiguousarray(v0)
        has_v0 = True
    node_i, node_f, bus_node, consts = kernel_arrays(feeder)
    kernel = _solve_parallel if batch > CHUNK else _solve_serial
    for sweep in (sweep_arrays(feeder, reduce), sweep_arrays(feeder, False)):
        out, bad_row, bad_bus, eliminated_nonzero = kernel(*sweep, node_i, node_f, bus_node, consts,
                                                           feeder.n_branch, p, q, v0, has_v0, float(tol_pu),
                                                           int(max_iter))
        if not eliminated_nonzero:  # else: injections at eliminated buses, solve on the full tree
            break
    if bad_row == BAD_V_INIT:
        raise ValueError("v_init must be finite and non-zero at every bus")
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
