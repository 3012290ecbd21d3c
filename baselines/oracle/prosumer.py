"""Exact prosumer problem (the energy-box EMS objective) as a MILP solved by HiGHS.

Same objective, device models, soft constraints and horizon conventions as
:mod:`flexenv.policies.ems` (see its module docstring), built from the device builders of
:mod:`baselines.oracle.devices`. Import and export are split into ``imp, exp >= 0`` with
``net = imp - exp``; where the export price exceeds the import price a binary forbids both at once.
Caps are soft: ``imp <= cap_imp + v_imp``, ``exp <= cap_exp + v_exp`` with ``v`` costing
``cap_violation_eur_per_kwh`` per kWh, so an infeasible cap gives the minimal violation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from baselines.oracle import devices as odev
from baselines.oracle.model import LinExpr, ModelBuilder
from flexenv.policies.ems import BIG_KW, Penalties, ProsumerProblem, prepare


class ProsumerMILPResult(NamedTuple):
    """Solution, arrays (P, H) kW unless noted: net_kw, battery_kw, ev_kw, heat_pump_kw, appliance_kw,
    pv_used_kw; appliance_start_ptu (P,) day PTU or -1; objective_eur (P,) per prosumer (bill +
    penalties); cap_violation_kwh (P,); total objective, solver status, seconds, MIP gap."""

    net_kw: np.ndarray
    battery_kw: np.ndarray
    ev_kw: np.ndarray
    heat_pump_kw: np.ndarray
    appliance_kw: np.ndarray
    pv_used_kw: np.ndarray
    appliance_start_ptu: np.ndarray
    objective_eur: np.ndarray
    cap_violation_kwh: np.ndarray
    total_objective_eur: float
    status: str
    seconds: float
    mip_gap: float


def build(problem: ProsumerProblem, penalties: Penalties = Penalties()):
    """Build the MILP for all prosumers of ``problem`` (block-diagonal); returns (model, pieces)."""
    pr = prepare(problem, penalties)
    P, H = pr.base_kw.shape
    m = ModelBuilder()
    net = LinExpr((P, H), const=pr.base_kw)
    parts = {}
    for key, fn in (("battery", odev.battery), ("ev", odev.ev), ("heat_pump", odev.heat_pump),
                    ("pv", odev.pv), ("appliance", odev.appliance)):
        expr, blocks = fn(m, pr)
        parts[key] = (expr, blocks)
        net = net + expr
    dt = pr.dt
    imp = m.add_var("imp", (P, H), 0.0, np.inf, cost=dt * pr.pi)
    exp_ = m.add_var("exp", (P, H), 0.0, np.inf, cost=-dt * pr.pe)
    m.add_rows(net - LinExpr.of(imp) + LinExpr.of(exp_), lb=0.0, ub=0.0)
    capped_i = pr.cap_imp < BIG_KW
    capped_e = pr.cap_exp < BIG_KW
    vi = m.add_var("cap_imp_violation", (P, H), 0.0, np.where(capped_i, np.inf, 0.0), cost=dt * pr.w_cap)
    ve = m.add_var("cap_exp_violation", (P, H), 0.0, np.where(capped_e, np.inf, 0.0), cost=dt * pr.w_cap)
    m.add_rows(LinExpr.of(imp) - LinExpr.of(vi), ub=pr.cap_imp, mask=capped_i)
    m.add_rows(LinExpr.of(exp_) - LinExpr.of(ve), ub=pr.cap_exp, mask=capped_e)
    # simultaneous import and export only pays when pe > pi: forbid it there with a binary
    both = pr.pe > pr.pi
    if both.any():
        big = (pr.base_kw + pr.bat_pc[:, None] + pr.ev_pmax[:, None] + pr.hp_pmax[:, None]
               + pr.app_prof.max(1)[:, None] + pr.pv_kw + pr.bat_pd[:, None] + pr.ev_pmax[:, None] + 1.0)
        w = m.add_var("imp_mode", (P, H), 0.0, both.astype(float), integer=True)
        m.add_rows(LinExpr.of(imp) - LinExpr.of(w, big), ub=0.0, mask=both)
        m.add_rows(LinExpr.of(exp_) + LinExpr.of(w, big), ub=big, mask=both)
    return m, dict(pr=pr, net=net, imp=imp, exp=exp_, vi=vi, ve=ve, parts=parts)


def solve(problem: ProsumerProblem, penalties: Penalties = Penalties(), mip_rel_gap: float = 1e-4,
          time_limit: float | None = None, threads: int = 1) -> ProsumerMILPResult:
    """Solve the prosumer MILP with HiGHS (``mip_rel_gap`` default 1e-4)."""
    m, b = build(problem, penalties)
    sol = m.solve(mip_rel_gap=mip_rel_gap, time_limit=time_limit, threads=threads)
    pr = b["pr"]
    parts = b["parts"]
    net = sol.eval(b["net"])
    bat = sol.eval(parts["battery"][0])
    ev = sol.eval(parts["ev"][0])
    hp = sol.eval(parts["heat_pump"][0])
    pv = -sol.eval(parts["pv"][0])
    app = sol.eval(parts["appliance"][0])
    y = sol.value(parts["appliance"][1]["start"])
    start = np.where(pr.app_has, np.argmax(y, axis=1) + int(problem.t0), -1)
    # per-prosumer objective from the solution
    dt = pr.dt
    imp, exp_ = sol.value(b["imp"]), sol.value(b["exp"])
    vi, ve = sol.value(b["vi"]), sol.value(b["ve"])
    hpb = parts["heat_pump"][1]
    comfort = (sol.value(hpb["below"]) + sol.value(hpb["above"])).sum(1) * dt * (pr.hp_pmax > 0)
    unmet = sol.value(parts["ev"][1]["unmet"])
    obj = (dt * (pr.pi * imp - pr.pe * exp_).sum(1) + pr.w_cap * dt * (vi + ve).sum(1)
           + pr.w_comfort * comfort + pr.w_ev * unmet)
    capv = dt * (vi + ve).sum(1)
    return ProsumerMILPResult(net, bat, ev, hp, app, pv, start, obj, capv, sol.objective, sol.status,
                              sol.seconds, sol.mip_gap)
