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


@nb.njit(cache=True)
def _chol(S, L):
    """Cholesky of the 4 x 4 SPD block S into L (lower). A pivot that vanishes relative to its diagonal
    (a row whose variables all sit at bounds) is replaced by a huge one, which decouples that row."""
    for i in range(NR):
        for j in range(i + 1):
            s = S[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                L[i, i] = math.sqrt(s) if s > 1e-14 * abs(S[i, i]) and s > 1e-300 else 1e32
            else:
                L[i, j] = s / L[j, j]
        for j in range(i + 1, NR):
            L[i, j] = 0.0


@nb.njit(cache=True)
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


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def _factor(H, g, gain, k1, a, th, act, Ls, Ws):
    """Block Cholesky of A diag(th) A^T (block tridiagonal): blocks L_t (Ls) and W_t (Ws) with
    L_t L_t^T = D_t - W_t W_t^T and W_t L_{t-1}^T = C_t."""
    S = np.empty((NR, NR))
    c = np.zeros(NR)
    for t in range(H):
        S[:] = 0.0
        s = 0.0
        for j in range(NV):
            if BAL[j] != 0.0:
                s += th[t, j]
        S[0, 0] = s
        hs = th[t, HM] + th[t, HL] + th[t, HH]
        S[1, 1] = th[t, BE] + g[0] * g[0] * th[t, BC] + g[1] * g[1] * th[t, BD]
        S[2, 2] = th[t, ES] + g[2] * g[2] * th[t, EC] + g[3] * g[3] * th[t, ED]
        S[3, 3] = hs + gain[t] * gain[t] * th[t, HP]
        S[0, 1] = S[1, 0] = g[0] * th[t, BC] - g[1] * th[t, BD]
        S[0, 2] = S[2, 0] = g[2] * th[t, EC] - g[3] * th[t, ED]
        S[0, 3] = S[3, 0] = -gain[t] * th[t, HP]
        if t > 0:
            hp = th[t - 1, HM] + th[t - 1, HL] + th[t - 1, HH]
            S[1, 1] += k1 * k1 * th[t - 1, BE]
            S[2, 2] += th[t - 1, ES]
            S[3, 3] += a * a * hp
            c[1] = -k1 * th[t - 1, BE]  # the coupling block C_t is diagonal (state rows only)
            c[2] = -th[t - 1, ES]
            c[3] = -a * hp
        for r in range(NR):
            if not act[r]:
                for q in range(NR):
                    S[r, q] = 0.0
                    S[q, r] = 0.0
                S[r, r] = 1.0
                c[r] = 0.0
        if t > 0:
            Lp = Ls[t - 1]
            for r in range(NR):  # row r of W solves L_{t-1} w = c_r e_r
                for q in range(NR):
                    v = c[r] if q == r else 0.0
                    for k in range(q):
                        v -= Lp[q, k] * Ws[t, r, k]
                    Ws[t, r, q] = v / Lp[q, q]
            for r in range(NR):
                for q in range(r + 1):
                    v = 0.0
                    for k in range(NR):
                        v += Ws[t, r, k] * Ws[t, q, k]
                    S[r, q] -= v
                    if q != r:
                        S[q, r] -= v
        _chol(S, Ls[t])


@nb.njit(cache=True)
def _solve(H, Ls, Ws, r, z, out):
    """out = (A diag(th) A^T)^{-1} r with the factors of :func:`_factor` (z: work array)."""
    for t in range(H):
        L = Ls[t]
        for i in range(NR):
            v = r[t, i]
            if t > 0:
                for k in range(NR):
                    v -= Ws[t, i, k] * z[t - 1, k]
            for k in range(i):
                v -= L[i, k] * z[t, k]
            z[t, i] = v / L[i, i]
    for t in range(H - 1, -1, -1):
        L = Ls[t]
        for i in range(NR - 1, -1, -1):
            v = z[t, i]
            if t + 1 < H:
                for k in range(NR):
                    v -= Ws[t + 1, k, i] * out[t + 1, k]
            for k in range(i + 1, NR):
                v -= L[k, i] * out[t, k]
            out[t, i] = v / L[i, i]


@nb.njit(cache=True)
def lp_solve(H, g, gain, k1, a, b, c, lo, hi, act, tol, max_iter, x, y):
    """Mehrotra predictor-corrector for min c.x s.t. A x = b (active rows), lo <= x <= hi, with A given
    by (g, gain, k1, a) as in :func:`_Ax`. Writes the primal x (H, NV) and the row duals y (H, NR);
    returns (iterations, converged). Variables with hi - lo <= 1e-12 are fixed at lo."""
    free = np.zeros((H, NV), dtype=np.bool_)
    zl = np.zeros((H, NV))
    zu = np.zeros((H, NV))
    nfree = 0
    for t in range(H):
        for j in range(NV):
            if hi[t, j] - lo[t, j] > 1e-12:
                free[t, j] = True
                nfree += 1
                x[t, j] = 0.5 * (lo[t, j] + hi[t, j])
                zl[t, j] = 1.0
                zu[t, j] = 1.0
            else:
                x[t, j] = lo[t, j]
    y[:] = 0.0
    th = np.zeros((H, NV))
    sl = np.ones((H, NV))
    su = np.ones((H, NV))
    rd = np.zeros((H, NV))
    rt = np.zeros((H, NV))
    rl = np.zeros((H, NV))
    ru = np.zeros((H, NV))
    rp = np.zeros((H, NR))
    Ax = np.zeros((H, NR))
    ATy = np.zeros((H, NV))
    w = np.zeros((H, NR))
    zz = np.zeros((H, NR))
    dxa = np.zeros((H, NV))
    dzla = np.zeros((H, NV))
    dzua = np.zeros((H, NV))
    dx = np.zeros((H, NV))
    dzl = np.zeros((H, NV))
    dzu = np.zeros((H, NV))
    dy = np.zeros((H, NR))
    Ls = np.zeros((H, NR, NR))
    Ws = np.zeros((H, NR, NR))
    bnorm = 1.0
    cnorm = 1.0
    for t in range(H):
        for r in range(NR):
            bnorm = max(bnorm, abs(b[t, r]))
        for j in range(NV):
            cnorm = max(cnorm, abs(c[t, j]))
    sigma = 0.0
    n2 = 2.0 * max(nfree, 1)
    for it in range(max_iter):
        _Ax(H, g, gain, k1, a, x, Ax)
        _ATy(H, g, gain, k1, a, y, ATy)
        pinf = 0.0
        for t in range(H):
            for r in range(NR):
                rp[t, r] = (b[t, r] - Ax[t, r]) if act[r] else 0.0
                pinf = max(pinf, abs(rp[t, r]))
        dinf = 0.0
        gap = 0.0
        for t in range(H):
            for j in range(NV):
                if free[t, j]:
                    sl[t, j] = x[t, j] - lo[t, j]
                    su[t, j] = hi[t, j] - x[t, j]
                    rd[t, j] = c[t, j] - ATy[t, j] - zl[t, j] + zu[t, j]
                    dinf = max(dinf, abs(rd[t, j]))
                    gap += sl[t, j] * zl[t, j] + su[t, j] * zu[t, j]
                    th[t, j] = 1.0 / (zl[t, j] / sl[t, j] + zu[t, j] / su[t, j])
        if pinf <= tol * bnorm and dinf <= tol * cnorm and gap <= tol * cnorm:
            return it, True
        mu = gap / n2
        _factor(H, g, gain, k1, a, th, act, Ls, Ws)
        ap = 1.0
        ad = 1.0
        for corrector in range(2):
            for t in range(H):
                for j in range(NV):
                    if free[t, j]:
                        if corrector == 0:  # affine-scaling direction
                            rl[t, j] = -sl[t, j] * zl[t, j]
                            ru[t, j] = -su[t, j] * zu[t, j]
                        else:  # centring + second-order correction
                            rl[t, j] = sigma * mu - sl[t, j] * zl[t, j] - dxa[t, j] * dzla[t, j]
                            ru[t, j] = sigma * mu - su[t, j] * zu[t, j] + dxa[t, j] * dzua[t, j]
                        rt[t, j] = th[t, j] * (rd[t, j] - rl[t, j] / sl[t, j] + ru[t, j] / su[t, j])
            _Ax(H, g, gain, k1, a, rt, Ax)
            for t in range(H):
                for r in range(NR):
                    w[t, r] = (rp[t, r] + Ax[t, r]) if act[r] else 0.0
            _solve(H, Ls, Ws, w, zz, dy)
            _ATy(H, g, gain, k1, a, dy, ATy)
            ap = 1.0
            ad = 1.0
            for t in range(H):
                for j in range(NV):
                    if free[t, j]:
                        d = th[t, j] * ATy[t, j] - rt[t, j]
                        dl = (rl[t, j] - zl[t, j] * d) / sl[t, j]
                        du = (ru[t, j] + zu[t, j] * d) / su[t, j]
                        dx[t, j] = d
                        dzl[t, j] = dl
                        dzu[t, j] = du
                        if d < 0.0:
                            ap = min(ap, -sl[t, j] / d)
                        elif d > 0.0:
                            ap = min(ap, su[t, j] / d)
                        if dl < 0.0:
                            ad = min(ad, -zl[t, j] / dl)
                        if du < 0.0:
                            ad = min(ad, -zu[t, j] / du)
            if corrector == 0:
                ga = 0.0
                for t in range(H):
                    for j in range(NV):
                        if free[t, j]:
                            ga += (sl[t, j] + ap * dx[t, j]) * (zl[t, j] + ad * dzl[t, j]) \
                                + (su[t, j] - ap * dx[t, j]) * (zu[t, j] + ad * dzu[t, j])
                sigma = (ga / n2 / mu) ** 3 if mu > 0.0 else 0.0
                dxa[:] = dx
                dzla[:] = dzl
                dzua[:] = dzu
        ap = min(1.0, 0.995 * ap)
        ad = min(1.0, 0.995 * ad)
        for t in range(H):
            for j in range(NV):
                if free[t, j]:
                    x[t, j] += ap * dx[t, j]
                    zl[t, j] += ad * dzl[t, j]
                    zu[t, j] += ad * dzu[t, j]
            for r in range(NR):
                y[t, r] += ad * dy[t, r]
    return max_iter, False


@nb.njit(cache=True)
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
