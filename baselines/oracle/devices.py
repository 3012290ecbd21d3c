"""Device constraint builders for MILP oracles, vectorised over prosumers.

Each builder takes a :class:`baselines.oracle.model.ModelBuilder`, the horizon-relative arrays of
:func:`flexenv.policies.ems.prepare` (a ``Prepared``) and a name prefix; it adds its variable blocks
(shape ``(P, H)`` or ``(P, H + 1)`` for states) and rows, adds its penalty terms to the cost, and returns
``(net_power_expr, blocks)``: a :class:`LinExpr` of shape ``(P, H)`` in kW (+ = consumption) and a dict
of its variable blocks. Absent devices get zero bounds (their rows stay, trivially satisfied), which
keeps every block rectangular. A full-portfolio oracle adds grid rows on top of the same expressions.

The constraints are exactly the device models of :mod:`flexenv.physics.devices` with the horizon
conventions of :mod:`flexenv.policies.ems`.
"""

from __future__ import annotations

import numpy as np

from baselines.oracle.model import LinExpr, ModelBuilder


def _state_rows(m: ModelBuilder, s, alpha, s0, terms, beta=0.0):
    """Rows s[:, t+1] = alpha * s[:, t] + beta_t + sum(coef * x) for t = 0..H-1, s[:, 0] = s0 (fixed
    through the bounds of the caller)."""
    P, H1 = s.shape
    H = H1 - 1
    e = LinExpr.of(s[:, 1:]) - LinExpr.of(s[:, :-1], np.broadcast_to(np.asarray(alpha, float)[:, None], (P, H)))
    for idx, coef in terms:
        e = e - LinExpr.of(idx, coef)
    m.add_rows(e, lb=beta, ub=beta)


def battery(m: ModelBuilder, pr, name: str = "bat"):
    """Battery: charge/discharge powers (binary mode z so they are never both > 0), stored energy
    state e (P, H+1) in [0, capacity], e[t+1] = keep e[t] + dt (eta_c pc - pd / eta_d)."""
    P, H = pr.base_kw.shape
    dt = pr.dt
    pc = m.add_var(f"{name}_pc", (P, H), 0.0, pr.bat_pc[:, None])
    pd = m.add_var(f"{name}_pd", (P, H), 0.0, pr.bat_pd[:, None])
    z = m.add_var(f"{name}_z", (P, H), 0.0, 1.0, integer=True)
    lo = np.zeros((P, H + 1))
    hi = np.repeat(pr.bat_cap[:, None], H + 1, 1)
    lo[:, 0] = hi[:, 0] = pr.bat_e0
    e = m.add_var(f"{name}_e", (P, H + 1), lo, hi)
    _state_rows(m, e, pr.bat_keep, pr.bat_e0,
                [(pc, dt * pr.bat_eta_c[:, None]), (pd, -dt / pr.bat_eta_d[:, None])])
    # pc <= pcmax z, pd <= pdmax (1 - z)
    m.add_rows(LinExpr.of(pc) - LinExpr.of(z, pr.bat_pc[:, None]), ub=0.0)
    m.add_rows(LinExpr.of(pd) + LinExpr.of(z, pr.bat_pd[:, None]), ub=pr.bat_pd[:, None] * np.ones((1, H)))
    return LinExpr.of(pc) - LinExpr.of(pd), {"pc": pc, "pd": pd, "z": z, "e": e}


def ev(m: ModelBuilder, pr, name: str = "ev"):
    """EV: charge (and V2G discharge, binary mode) only on present steps; delivered energy state d
    (P, H+1), d[0] = 0, need0 - capacity <= d <= need0; unmet u >= need0 - d[H] costs w_ev per kWh."""
    P, H = pr.base_kw.shape
    dt = pr.dt
    k = np.arange(H)[None, :]
    present = (k >= pr.ev_lo[:, None]) & (k < pr.ev_hi[:, None])
    c = m.add_var(f"{name}_c", (P, H), 0.0, np.where(present, pr.ev_pmax[:, None], 0.0))
    dmax = np.where(present & pr.ev_v2g[:, None], pr.ev_pmax[:, None], 0.0)
    d = m.add_var(f"{name}_d", (P, H), 0.0, dmax)
    z = m.add_var(f"{name}_z", (P, H), 0.0, np.where(dmax > 0, 1.0, 0.0), integer=True)
    lo = np.repeat((pr.ev_need0 - pr.ev_cap)[:, None], H + 1, 1)
    hi = np.repeat(pr.ev_need0[:, None], H + 1, 1)
    lo = np.minimum(lo, 0.0)
    lo[:, 0] = hi[:, 0] = 0.0
    hi[:, 0] = 0.0
    s = m.add_var(f"{name}_delivered", (P, H + 1), lo, np.maximum(hi, lo))
    _state_rows(m, s, np.ones(P), 0.0, [(c, dt * pr.ev_eta[:, None]), (d, -dt / pr.ev_eta[:, None])])
    # c <= pmax (1 - z) where V2G is possible (z = 1 discharge mode)
    m.add_rows(LinExpr.of(c) + LinExpr.of(z, pr.ev_pmax[:, None]), ub=pr.ev_pmax[:, None] * np.ones((1, H)))
    m.add_rows(LinExpr.of(d) - LinExpr.of(z, pr.ev_pmax[:, None]), ub=0.0)
    u = m.add_var(f"{name}_unmet", (P,), 0.0, np.inf, cost=pr.w_ev)
    m.add_rows(LinExpr.of(u) + LinExpr.of(s[:, H]), lb=pr.ev_need0)
    return LinExpr.of(c) - LinExpr.of(d), {"c": c, "d": d, "z": z, "delivered": s, "unmet": u}


def heat_pump(m: ModelBuilder, pr, name: str = "hp"):
    """Heat pump + 1R1C building: power p in [0, p_max], temperature state T (P, H+1),
    T[t+1] = a T[t] + beta_t + gain_t p_t; comfort slacks (K) below t_min and above t_max cost
    w_comfort * dt per K and PTU."""
    P, H = pr.base_kw.shape
    p = m.add_var(f"{name}_p", (P, H), 0.0, pr.hp_pmax[:, None])
    lo = np.full((P, H + 1), -np.inf)
    hi = np.full((P, H + 1), np.inf)
    lo[:, 0] = hi[:, 0] = pr.hp_T0
    T = m.add_var(f"{name}_temp", (P, H + 1), lo, hi)
    _state_rows(m, T, pr.hp_a, pr.hp_T0, [(p, pr.hp_gain)], beta=pr.hp_beta)
    has = (pr.hp_pmax > 0)[:, None].astype(float)
    w = pr.w_comfort * pr.dt * has * np.ones((1, H))
    s_lo = m.add_var(f"{name}_below", (P, H), 0.0, np.inf, cost=w)
    s_hi = m.add_var(f"{name}_above", (P, H), 0.0, np.inf, cost=w)
    m.add_rows(LinExpr.of(T[:, 1:]) + LinExpr.of(s_lo), lb=pr.hp_tmin[:, None] * np.ones((1, H)))
    m.add_rows(LinExpr.of(T[:, 1:]) - LinExpr.of(s_hi), ub=pr.hp_tmax[:, None] * np.ones((1, H)))
    return LinExpr.of(p), {"p": p, "temp": T, "below": s_lo, "above": s_hi}


def pv(m: ModelBuilder, pr, name: str = "pv"):
    """PV: used power in [0, available]; net contribution -used."""
    P, H = pr.base_kw.shape
    used = m.add_var(f"{name}_used", (P, H), 0.0, pr.pv_kw)
    return -LinExpr.of(used), {"used": used}


def appliance(m: ModelBuilder, pr, name: str = "app"):
    """Shiftable appliance: binary start y (P, H) allowed in [app_lo, app_hi], exactly one start for
    prosumers with an appliance to plan; power_t = sum_k profile_k y_{t-k} (energy beyond the horizon
    dropped)."""
    P, H = pr.base_kw.shape
    L = pr.app_prof.shape[1]
    k = np.arange(H)[None, :]
    allowed = pr.app_has[:, None] & (k >= pr.app_lo[:, None]) & (k <= pr.app_hi[:, None])
    y = m.add_var(f"{name}_start", (P, H), 0.0, allowed.astype(float), integer=True)
    one = LinExpr((P,))
    for t in range(H):  # P-vectorised; loop over the start offset (model building only)
        one.add_term(y[:, t], 1.0)
    m.add_rows(one, lb=1.0, ub=1.0, mask=pr.app_has)
    power = LinExpr((P, H))
    for j in range(L):  # power_t += profile_j * y_{t-j}
        coef = np.zeros((P, H))
        coef[:, j:] = pr.app_prof[:, j:j + 1]
        idx = np.zeros((P, H), dtype=np.int64)
        idx[:, j:] = y[:, : H - j] if j < H else y[:, :0]
        idx[:, :j] = y[:, :1]  # coefficient 0 there
        power.add_term(idx, coef)
    return power, {"start": y}
