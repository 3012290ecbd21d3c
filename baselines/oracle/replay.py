"""Replay an oracle schedule through the engine (gateway link) and measure its system cost.

Each day, at the aggregator's planning step, the position is set to the oracle's aggregate net power:
``position_adjust = (oracle aggregate - sum of the energy boxes' reference plans) / (POSITION_SCALE_KW_PER_PROSUMER × P)`` (10 kW × P). The
reference plans are made inside that same step, so they are read first from a copy of the engine
stepped with a zero action (the EMS is deterministic). An adjustment outside [-1, 1] cannot be
represented: it is clipped, and the PTUs and kW that miss are reported (the engine then settles the
difference as imbalance). In every operate step the oracle's device powers are sent as setpoints;
the DSO acts with its rule-based policy, which caps prosumers after a PTU outside the grid limits.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from flexenv.engine import POSITION_SCALE_KW_PER_PROSUMER, Engine
from flexenv.models.links import encode_setpoints
from flexenv.physics.household import BATTERY, DEVICE_ORDER, EV, HEAT_PUMP, PV
from flexenv.policies.rule_based import RuleBasedDSO


@dataclasses.dataclass
class ReplayResult:
    """system_cost_eur: the engine's ``system_cost_eur()`` of the replayed episode; totals: the
    engine's episode totals (batch row 0); position_clipped_ptus and position_missing_kw: PTUs whose
    position adjustment fell outside [-1, 1] and the largest kW the position missed by there;
    dso_cap_ptus: operate steps in which the DSO capped any prosumer; max_request_cut_kw: largest
    difference between a setpoint and what a device did (the oracle's schedule should be feasible);
    net_kw (P, H) replayed net power; position_kw (H,) the day-ahead position the engine bought."""

    system_cost_eur: float
    totals: dict
    position_clipped_ptus: int
    position_missing_kw: float
    dso_cap_ptus: int
    max_request_cut_kw: float
    net_kw: np.ndarray
    position_kw: np.ndarray


def _check_gateway(engine: Engine) -> None:
    links = engine.scenario.links
    if links.prosumer.kind != "gateway":
        raise ValueError(f"replay drives device setpoints: needs links.prosumer.kind = 'gateway', got {links.prosumer.kind!r}")
    m = links.prosumer.manageability
    full = set(m.devices) == set(DEVICE_ORDER) and m.hours[0] <= 0 and m.hours[1] >= 24 and m.max_overrides_per_day >= engine.ppd
    if not full:
        raise ValueError("replay needs full manageability (every device, hours [0, 24], an override every PTU); "
                         f"got devices={list(m.devices)}, hours={list(m.hours)}, max_overrides_per_day={m.max_overrides_per_day}")


def replay_schedules(scenario, schedules, seed: int | None = None, position_kw=None) -> ReplayResult:
    """Run one episode of `scenario` (episode `seed`, default the scenario's) with the oracle's
    `schedules` (:class:`baselines.oracle.portfolio.Schedules`) as the aggregator's actions.

    position_kw: (H,) day-ahead position to aim for; default the schedule's aggregate net power."""
    seed = int(scenario.seed if seed is None else seed)
    target_kw = schedules.aggregate_kw if position_kw is None else np.asarray(position_kw, dtype=float)
    if target_kw.shape != schedules.aggregate_kw.shape:
        raise ValueError(f"position_kw: expected shape {schedules.aggregate_kw.shape}, got {target_kw.shape}")
    engine = Engine(scenario, batch_size=1)
    _check_gateway(engine)
    obs = engine.reset([seed])
    P, T = engine.P, engine.ppd
    agg_layout = engine.action_layout["aggregator"]
    dso = RuleBasedDSO(engine)
    scale = POSITION_SCALE_KW_PER_PROSUMER * P
    clipped, missing, cap_ptus, max_cut = 0, 0.0, 0, 0.0
    net = np.zeros((P, engine.n_days * T))
    position = np.zeros(engine.n_days * T)
    while not engine.done:
        step = engine.current
        action = np.zeros((1, agg_layout.size))
        steps = slice(step.day * T, (step.day + 1) * T)
        if step.phase == "agg_plan":
            probe = copy.deepcopy(engine)
            probe.step({"aggregator": action, "dso": dso(obs["dso"])})
            plan_kw = probe.plan_net_kw[0].sum(axis=0)
            adjust = (target_kw[steps] - plan_kw) / scale
            outside = np.abs(adjust) > 1.0
            clipped += int(outside.sum())
            missing = max(missing, float((np.abs(adjust) - 1.0).clip(min=0.0).max() * scale))
            agg_layout.write(action, "position_adjust", np.clip(adjust, -1.0, 1.0)[None, :])
        elif step.phase == "operate":
            g = step.day * T + step.index
            requests = np.zeros((1, P, len(DEVICE_ORDER)))
            requests[0, :, BATTERY] = schedules.battery_kw[:, g]
            requests[0, :, EV] = schedules.ev_kw[:, g]
            requests[0, :, HEAT_PUMP] = schedules.heat_pump_kw[:, g]
            requests[0, :, PV] = schedules.pv_used_kw[:, g]
            start_now = schedules.appliance_start_ptu[:, step.day] == step.index
            setpoints = encode_setpoints(requests, engine.setpoint_scale, engine.pv_avail_kw[:, :, g], start_now[None, :])
            agg_layout.write(action, "setpoints", setpoints)
        obs, _, info = engine.step({"aggregator": action, "dso": dso(obs["dso"])})
        if step.phase == "agg_plan":
            position[steps] = engine.position_kw[0]
        if step.phase == "operate":
            kpis = info["kpis"]
            cap_ptus += int(np.isfinite(engine.dso_cap_kw).any())
            max_cut = max(max_cut, float(kpis["request_cut_kw"].max()))
            net[:, step.day * T + step.index] = kpis["net_kw"][0]
    totals = {k: np.asarray(v)[0] if np.ndim(v) else v for k, v in engine.totals.items()}
    return ReplayResult(float(engine.system_cost_eur()[0]), totals, clipped, missing, cap_ptus, max_cut, net, position)

