"""Each business-model link behaves as DESIGN.md §4 specifies (targeted tests on the engine)."""

import numpy as np
import pytest

from flexenv.engine import Engine
from flexenv.envs.registry import scenario_for
from flexenv.physics.household import BATTERY, EV, HEAT_PUMP
from baselines.evaluate import builtin_policy


def builtin(engine, obs):
    return builtin_policy(engine)(engine, obs)


def run(env_id, seed=0, modify=None, **overrides):
    """One episode with built-in policies; `modify(engine, actions)` may change the actions.
    Returns the engine and a list of (step, info) per step."""
    engine = Engine(scenario_for(env_id, **overrides), batch_size=1)
    obs = engine.reset([seed])
    steps = []
    while not engine.done:
        step = engine.current
        actions = builtin(engine, obs)
        if modify is not None:
            modify(engine, step, actions)
        obs, rewards, info = engine.step(actions)
        steps.append((step, info, rewards))
    return engine, steps


# ------------------------------------------------------------------------------------------ gateway
def test_gateway_setpoints_are_obeyed_within_device_limits():
    def charge_everything(engine, step, actions):
        if step.phase == "operate":
            sp = engine.action_layout["aggregator"].view(actions["aggregator"], "setpoints")
            sp[..., BATTERY] = 1.0  # charge at full power

    engine, steps = run("Gateway-Isolated-Teaching10-v0", modify=charge_everything)
    first = next(info for step, info, _ in steps if step.phase == "operate")
    power = first["kpis"]["device_kw"][0, :, BATTERY]
    b = engine.battery
    has = b.capacity_kwh > 0
    assert has.any()
    # full power unless the battery would overflow: then exactly what fits
    e0 = engine.battery_initial_kwh
    keep = (1 - b.self_discharge_per_h) ** engine.dt_h
    fits = (b.capacity_kwh - keep * e0) / (b.eta_charge * engine.dt_h)
    np.testing.assert_allclose(power[has], np.minimum(b.p_charge_max_kw, fits)[has], rtol=1e-12)
    assert np.all(power[~has] == 0)


def test_gateway_pays_the_fee_on_a_hard_constraint_violation():
    def never_charge_evs(engine, step, actions):
        if step.phase == "operate":
            engine.action_layout["aggregator"].view(actions["aggregator"], "setpoints")[..., EV] = 0.0

    engine, steps = run("Gateway-Isolated-Teaching10-v0", modify=never_charge_evs)
    fee = engine.scenario.links.prosumer.violation_fee_eur
    unmet_events = sum(int((info["kpis"]["ev_unmet_kwh"] > 0.01).sum()) for s, info, _ in steps if s.phase == "operate")
    comfort_events = sum(int((info["kpis"]["comfort_violation_kh"] > 0.001).sum()) for s, info, _ in steps if s.phase == "operate")
    paid = sum(info["ledger"].flows.get("violation_fee", np.zeros(1))[0] for _, info, _ in steps)
    assert unmet_events > 0
    assert paid == pytest.approx(fee * (unmet_events + comfort_events))
    # with the reference plan (and a transformer the DSO need not cap) the EVs are served
    engine, steps = run("Gateway-Isolated-Teaching10-v0", feeder__trafo_loading_max_pct=100.0)
    assert sum(int((info["kpis"]["ev_unmet_kwh"] > 0.01).sum()) for s, info, _ in steps if s.phase == "operate") == 0


def test_gateway_manageability_leaves_unmanaged_devices_at_no_control():
    def stop_evs(engine, step, actions):
        if step.phase == "operate":
            engine.action_layout["aggregator"].view(actions["aggregator"], "setpoints")[..., EV] = -1.0

    engine, steps = run("Gateway-Isolated-Teaching10-v0", modify=stop_evs,
                        links__prosumer={"kind": "gateway", "manageability": {"devices": ["battery", "heat_pump"]}})
    ev_kw = np.array([info["kpis"]["device_kw"][0, :, EV] for s, info, _ in steps if s.phase == "operate"])
    arrival = engine.ev_arrival[0, :, 0]
    has_session = engine.ev_departure[0, :, 0] > arrival
    assert has_session.any()
    for p in np.flatnonzero(has_session):  # no-control: full rate from arrival
        assert ev_kw[arrival[p], p] == pytest.approx(min(engine.ev.p_max_kw[p], engine.ev_energy_kwh[0, p, 0] / (engine.ev.eta_charge[p] * engine.dt_h)))


# ---------------------------------------------------------------------------------------- max power
def test_max_power_caps_hold_and_only_inflexible_load_breaches():
    def tight_caps(engine, step, actions):
        if step.phase == "agg_plan":
            engine.action_layout["aggregator"].view(actions["aggregator"], "import_cap")[:] = -1.0  # cap_min

    engine, steps = run("MaxPower-Tariff-Teaching10-v0", modify=tight_caps)
    cap_min = engine.scenario.links.prosumer.cap_min_kw
    for step, info, _ in steps:
        if step.phase != "operate":
            continue
        k = info["kpis"]
        net, breach = k["net_kw"][0], k["cap_breach_kw"][0]
        assert np.all(k["import_cap_kw"][0] == cap_min)
        assert np.all(net <= cap_min + breach + 1e-9)
        flexible = np.maximum(k["device_kw"][0, :, [BATTERY, EV]], 0).sum(axis=0) + k["device_kw"][0, :, HEAT_PUMP]
        assert np.all(flexible[breach > 1e-9] < 1e-9)  # a breach only once every flexible load is off


def test_energy_boxes_plan_with_the_lp_and_descent_is_selectable():
    # under tight caps the prosumers' money over the day (bills, fees, comfort and EV penalties) with
    # the exact LP is no worse than with the descent
    def tight_caps(engine, step, actions):
        if step.phase == "agg_plan":
            engine.action_layout["aggregator"].view(actions["aggregator"], "import_cap")[:] = -1.0

    money = {}
    for method in ("lp", "descent"):
        engine, steps = run("MaxPower-Tariff-Teaching10-v0", modify=tight_caps, energy_box__ems=method)
        assert engine.scenario.energy_box.ems == method
        money[method] = sum(rewards["prosumer"].sum() for _, _, rewards in steps)
    assert money["lp"] >= money["descent"] - 1e-6


def test_max_power_intraday_fee_only_beyond_the_margin():
    target = {}

    def tighten_once(engine, step, actions):
        if step.phase == "operate" and step.index == target.get("ptu"):
            engine.action_layout["aggregator"].view(actions["aggregator"], "intraday_import_cap")[:] = -1.0

    engine, steps = run("MaxPower-Tariff-Teaching10-v0")
    planned = engine.plan_net_kw[0]
    link = engine.scenario.links.prosumer
    excess = planned - link.cap_min_kw - link.intraday_change_margin_kw
    target["ptu"] = int(np.argmax(excess.max(axis=0)))
    assert excess[:, target["ptu"]].max() > 0
    engine, steps = run("MaxPower-Tariff-Teaching10-v0", modify=tighten_once)
    fees = [info["ledger"].flows.get("intraday_change_fee", np.zeros(1))[0] for s, info, _ in steps if s.phase == "operate"]
    expected = link.intraday_change_fee_eur_per_kwh * np.maximum(excess[:, target["ptu"]], 0).sum() * engine.dt_h
    assert fees[target["ptu"]] == pytest.approx(expected)
    assert sum(fees) == pytest.approx(expected)  # no fee in the PTUs the cap did not change


# ------------------------------------------------------------------------------------- price driven
def _flexible_share_in(engine, window):
    req = engine.plan_requests[0]
    flexible = np.maximum(req[:, :, BATTERY], 0) + np.maximum(req[:, :, EV], 0) + req[:, :, HEAT_PUMP]
    return flexible[:, window].sum() / flexible.sum()


def test_price_driven_prosumers_move_load_to_cheap_ptus():
    window = slice(8, 24)  # 02:00-06:00

    def signal(cheap_inside):
        def modify(engine, step, actions):
            if step.phase == "agg_plan":
                price = engine.action_layout["aggregator"].view(actions["aggregator"], "price")
                price[:] = 1.0 if cheap_inside else -1.0
                price[..., window] = -1.0 if cheap_inside else 1.0
        return modify

    cheap, _ = run("PriceDriven-Isolated-Teaching10-v0", modify=signal(True))
    dear, _ = run("PriceDriven-Isolated-Teaching10-v0", modify=signal(False))
    assert _flexible_share_in(cheap, window) > _flexible_share_in(dear, window) + 0.2
    # and the prosumers are billed the signal they received
    assert np.allclose(cheap.signals.bill_import[0][:, window], cheap.day_ahead[0, window] + 0.12 - 0.15)


# ---------------------------------------------------------------------------------------- iterative
def test_iterative_rounds_stop_when_plans_settle():
    def repeat_first_signal(engine, step, actions):
        if step.phase == "agg_plan":
            engine.action_layout["aggregator"].view(actions["aggregator"], "price")[:] = 0.3

    engine, steps = run("Iterative-Tariff-Teaching10-v0", modify=repeat_first_signal)
    rounds = engine.scenario.links.prosumer.max_rounds
    assert sum(1 for s, _, _ in steps if s.phase == "agg_plan") == rounds
    assert engine.converged_round[0] == 1  # the second round changed nothing

    def keep_changing(engine, step, actions):
        if step.phase == "agg_plan":
            engine.action_layout["aggregator"].view(actions["aggregator"], "price")[:] = (-1.0) ** step.index

    engine, _ = run("Iterative-Tariff-Teaching10-v0", modify=keep_changing)
    assert engine.converged_round[0] == -1  # never settled: the last round's plans bind


@pytest.mark.parametrize("band_pct", [0.0, 10.0, 60.0])
def test_iterative_penalties_apply_only_outside_the_aggregate_band(band_pct):
    engine, steps = run("Iterative-Tariff-Teaching10-v0",
                        links__prosumer={"kind": "iterative", "tolerance_band_pct": band_pct})
    link = engine.scenario.links.prosumer
    n_outside = 0
    for step, info, _ in steps:
        if step.phase != "operate":
            continue
        net = info["kpis"]["net_kw"][0]
        planned = engine.plan_net_kw[0, :, step.index]
        outside = abs(net.sum() - planned.sum()) > band_pct / 100 * abs(planned.sum())
        penalty = info["ledger"].flows["deviation_penalty"][0]
        expected = link.deviation_penalty_eur_per_kwh * np.abs(net - planned).sum() * engine.dt_h if outside else 0.0
        assert penalty == pytest.approx(expected)
        n_outside += outside
    if band_pct == 0.0:
        assert n_outside > 0  # forecast errors make the portfolio deviate


# ----------------------------------------------------------------------------------------- isolated
def test_isolated_dso_caps_when_and_only_when_limits_are_violated():
    # a transformer limit of 20 % makes some PTUs overloaded and others not
    engine, steps = run("PriceDriven-Isolated-Teaching10-v0", feeder__trafo_loading_max_pct=20.0)
    lights = []
    capped_any = False
    for step, info, _ in steps:
        if step.phase != "operate":
            continue
        k = info["kpis"]
        capped = np.isfinite(k["import_cap_kw"][0]).any()
        previous_red_or_orange = bool(lights) and lights[-1] >= 2
        assert capped == previous_red_or_orange
        if not capped:
            assert info["ledger"].flows["dso_compensation"][0] == 0.0
        capped_any |= capped
        lights.append(int(k["traffic_light"][0]))
    assert capped_any and min(lights) < 2 <= max(lights)


def test_isolated_dso_compensates_the_energy_it_caps():
    def cap_everyone(engine, step, actions):
        actions["dso"][:] = -1.0  # min cap everywhere

    engine, steps = run("PriceDriven-Isolated-Teaching10-v0", modify=cap_everyone)
    rate = engine.scenario.links.dso.curtailment_compensation_eur_per_kwh
    for step, info, _ in steps:
        if step.phase == "operate":
            cut = info["kpis"]["cap_cut_kw"][0].sum()
            assert info["ledger"].flows["dso_compensation"][0] == pytest.approx(rate * cut * engine.dt_h)
    assert engine.totals["cap_cut_kwh"][0] > 0


# ------------------------------------------------------------------------------------------- tariff
def test_tariff_changes_the_aggregators_cost_by_node():
    def zone_tariff(expensive_zone):
        def modify(engine, step, actions):
            if step.phase == "dso_plan":
                tariff = engine.action_layout["dso"].view(actions["dso"], "variable_tariff")
                tariff[:] = -1.0
                tariff[:, expensive_zone, :] = 1.0
        return modify

    costs = {}
    for zone in (0, 1):
        engine, steps = run("PriceDriven-Tariff-Teaching10-v0", modify=zone_tariff(zone))
        link = engine.scenario.links.dso
        total = 0.0
        for step, info, _ in steps:
            if step.phase != "operate":
                continue
            net = info["kpis"]["net_kw"][0]
            rate = link.fixed_eur_per_kwh + np.where(engine.zone_of_prosumer == zone, link.variable_max_eur_per_kwh, 0.0)
            expected = (np.maximum(net, 0) * rate).sum() * engine.dt_h
            assert info["ledger"].flows["dso_tariff"][0] == pytest.approx(expected)
            total += expected
        costs[zone] = total
    assert costs[0] != pytest.approx(costs[1])


# -------------------------------------------------------------------------------------- no control
def test_nocontrol_baseline_runs_devices_at_their_defaults():
    scenario = scenario_for("PriceDriven-Tariff-Teaching10-v0", forecasts={"load_error_pct": 0.0, "pv_error_pct": 0.0})
    engine = Engine(scenario, batch_size=1, nocontrol=True)
    obs = engine.reset([4])
    while not engine.done:
        step = engine.current
        acts = builtin(engine, obs)
        acts["prosumer"] = np.random.default_rng(0).uniform(-1, 1, acts["prosumer"].shape)  # ignored
        obs, rewards, info = engine.step(acts)
        if step.phase == "operate":
            k = info["kpis"]
            # perfect forecasts: the supplier's position is exactly the no-control consumption
            assert abs(k["deviation_kw"][0]) < 1e-9
            assert "management_fee" not in info["ledger"].flows
            # PV is never curtailed and the EVs charge at full rate from arrival
            assert np.all(k["pv_curtailed_kw"][0] == 0.0)
    assert engine.totals["ev_unmet_kwh"][0].sum() < 1e-9
    retail = engine.scenario.markets.retail_tariff
    assert engine.contract_tariff.name == retail
