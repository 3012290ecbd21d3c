"""Running policies on scenario-days and scoring them against no-control and the oracle (DESIGN.md §5).

A policy here is one of
- "builtin": every agent uses its built-in policy (rule-based aggregator and DSO, energy boxes);
- "nocontrol": the no-control baseline (`Engine(nocontrol=True)`);
- a factory `policy(engine) -> act`, where `act(engine, obs) -> actions` for the whole batch, as
  `Engine.step` takes them (the factory may set up per-engine state).

Every episode is summarised by its KPIs, among them the system cost `J` (€, lower is better) that
business models and the oracle are compared on.
"""

from __future__ import annotations

import numpy as np

from flexenv.engine import Engine
from flexenv.policies.rule_based import RuleBasedAggregator, RuleBasedDSO, follow_plan
from flexenv.scenario.schema import Scenario

SCORE_MIN_HEADROOM = 0.01  # the score is undefined when J_base − J_oracle < 1 % of |J_base|


def builtin_policy(engine: Engine):
    aggregator, dso = RuleBasedAggregator(engine), RuleBasedDSO(engine)

    def act(engine, obs):
        actions = {"aggregator": aggregator(obs["aggregator"]), "dso": dso(obs["dso"])}
        if engine.prosumer_link.prosumers_are_agents:
            actions["prosumer"] = follow_plan(engine, obs["prosumer"])
        return actions

    return act


def run_episodes(scenario: Scenario, seeds: list[int], policy="builtin") -> list[dict]:
    """Run one episode per seed (batched: all seeds step together) and return their KPIs."""
    engine = Engine(scenario, batch_size=len(seeds), nocontrol=(policy == "nocontrol"))
    act = builtin_policy(engine) if policy in ("builtin", "nocontrol") else policy(engine)
    obs = engine.reset(seeds)
    while not engine.done:
        obs, _, _ = engine.step(act(engine, obs))
    return [episode_kpis(engine, b) for b in range(len(seeds))]


def episode_kpis(engine: Engine, row: int = 0) -> dict:
    """KPIs of one finished episode (DESIGN.md §5), plain floats."""
    t = {k: np.asarray(v)[row] for k, v in engine.totals.items()}
    n_ptus = engine.n_days * engine.ppd
    kpis = {
        "seed": engine.seeds[row],
        "system_cost_eur": float(engine.system_cost_eur()[row]),
        "aggregator_profit_eur": float(t["aggregator_money_eur"]),
        "prosumer_bills_eur": float(-t["prosumer_money_eur"].sum()),
        "dso_money_eur": float(t["dso_money_eur"]),
        "market_payments_eur": float(t["market_money_eur"]),
        "discomfort_eur": float(t["discomfort_eur"]),
        "comfort_violation_kh": float(t["comfort_violation_kh"].sum()),
        "ev_unmet_kwh": float(t["ev_unmet_kwh"].sum()),
        "peak_trafo_loading_pct": float(t["peak_trafo_loading_pct"]),
        "congested_ptus": float(t["congested_ptus"]),
        "voltage_violations": float(t["voltage_violations"]),
        "pv_curtailed_kwh": float(t["pv_curtailed_kwh"]),
        "cap_cut_kwh": float(t["cap_cut_kwh"]),
        "losses_kwh": float(t["losses_kwh"]),
        "import_kwh": float(t["import_kwh"]),
        "messages": float(sum(v for k, v in t.items() if k.startswith("messages/"))),
        "bytes": float(sum(v for k, v in t.items() if k.startswith("bytes/"))),
        "constraint_violation_rate": float(t["violated_ptus"] / n_ptus),  # PTUs with an overload or a voltage violation
    }
    for key, value in t.items():
        if key.startswith(("messages/", "bytes/")):
            kpis[key] = float(value)
    return kpis


def score(j_base: list[float], j_policy: list[float], j_oracle: list[float]) -> float | None:
    """Normalised score S = 100 · Σ (J_base − J_policy) / Σ (J_base − J_oracle) over days (costs).

    100 = as good as the oracle, 0 = no better than no control, negative = worse. Undefined (None)
    when the headroom Σ (J_base − J_oracle) is below 1 % of Σ |J_base|: there is nothing to win.
    """
    base, pol, orc = (np.asarray(x, dtype=float) for x in (j_base, j_policy, j_oracle))
    headroom = (base - orc).sum()
    if headroom < SCORE_MIN_HEADROOM * np.abs(base).sum():
        return None
    return float(100.0 * (base - pol).sum() / headroom)
