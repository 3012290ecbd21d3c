"""Energy-box EMS (flexenv.policies.ems): feasibility, exactness on single devices, determinism."""

import numpy as np
import pytest

from baselines.oracle import prosumer as milp
from flexenv.policies import ems


@pytest.mark.parametrize("kind", ems.PRICE_KINDS)
@pytest.mark.parametrize("caps", [False, True])
def test_plan_executes_exactly(kind, caps):
    pb = ems.random_problem(np.random.default_rng(11), 12, 15, kind, caps)
    pl = ems.plan(pb)
    out = ems.execute_plan(pb, pl)
    assert out.cut_kw.max() < 1e-6  # every setpoint is feasible for the device kernels
    np.testing.assert_allclose(out.net_kw, pl.net_kw, atol=1e-6)
    np.testing.assert_allclose(out.objective_eur, pl.objective_eur, atol=1e-6)
    np.testing.assert_allclose(out.cap_violation_kwh, pl.cap_violation_kwh, atol=1e-6)
    assert np.all(pl.pv_used_kw >= -1e-12) and np.all(pl.pv_used_kw <= pb.pv_avail_kw + 1e-12)


@pytest.mark.parametrize("device", [1, 2, 3, 4])
@pytest.mark.parametrize("kind,caps", [("tou", False), ("volatile", True)])
def test_single_device_matches_milp(device, kind, caps):
    # with one flexible device (plus PV) the EMS block is an exact DP: equal to the MILP optimum
    pres = np.zeros((3, 5), bool)
    pres[:, 0] = True
    pres[:, device] = True
    pb = ems.random_problem(np.random.default_rng(100 + device), 3, 15, kind, caps, presence=pres)
    pl = ems.plan(pb)
    out = ems.execute_plan(pb, pl)
    for i in range(3):
        r = milp.solve(ems.select(pb, slice(i, i + 1)))
        tol = 2e-4 * abs(r.objective_eur[0]) + 1e-6  # the MILP's own relative gap
        assert out.objective_eur[i] >= r.objective_eur[0] - tol
        assert out.objective_eur[i] <= r.objective_eur[0] + tol


def test_deterministic_and_batched_equals_rowwise():
    pb1 = ems.random_problem(np.random.default_rng(5), 10, 30, "volatile", True)
    pb2 = ems.random_problem(np.random.default_rng(5), 10, 30, "volatile", True)
    a, b = ems.plan(pb1), ems.plan(pb2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for i in (0, 4, 9):
        row = ems.plan(ems.select(pb1, slice(i, i + 1)))
        np.testing.assert_array_equal(row.net_kw[0], a.net_kw[i])
        np.testing.assert_array_equal(row.objective_eur[0], a.objective_eur[i])


def test_ems_never_beats_milp_and_respects_feasible_caps():
    pb = ems.random_problem(np.random.default_rng(21), 6, 15, "tou", True, presence=np.ones((6, 5), bool))
    out = ems.execute_plan(pb, ems.plan(pb))
    for i in range(6):
        r = milp.solve(ems.select(pb, slice(i, i + 1)))
        assert out.objective_eur[i] >= r.objective_eur[0] - 2e-4 * abs(r.objective_eur[0]) - 1e-6
        if r.cap_violation_kwh[0] < 1e-9:
            assert out.cap_violation_kwh[i] < 1e-6


def test_infeasible_requests_are_reported_not_raised():
    none = np.zeros((2, 5), bool)
    pb = ems.random_problem(np.random.default_rng(2), 2, 60, "flat", True, presence=none)
    pb = pb._replace(import_cap_kw=np.full((2, 24), 0.1))
    pl = ems.plan(pb)
    np.testing.assert_allclose(pl.cap_violation_kwh, np.maximum(pb.load_kw - 0.1, 0).sum(1), atol=1e-9)
    # EV needing more than fits in its window: charges flat out, the shortfall is reported as unmet
    ev_only = np.zeros((1, 5), bool)
    ev_only[0, 2] = True
    pb = ems.random_problem(np.random.default_rng(2), 1, 60, "flat", presence=ev_only)
    d = pb.devices
    pb = pb._replace(devices=d._replace(
        sessions=d.sessions._replace(arrival_ptu=np.array([10]), departure_ptu=np.array([12]),
                                     energy_needed_kwh=np.array([30.0])),
        ev=d.ev._replace(capacity_kwh=np.array([60.0]), p_max_kw=np.array([3.7]), v2g=np.array([False]))))
    pl = ems.plan(pb)
    out = ems.execute_plan(pb, pl)
    np.testing.assert_allclose(pl.ev_kw[0, 10:12], 3.7)
    np.testing.assert_allclose(out.ev_unmet_kwh, 30.0 - 2 * 3.7 * d.ev.eta_charge[0], atol=1e-9)


def test_replan_on_remaining_horizon():
    pb = ems.random_problem(np.random.default_rng(8), 5, 15, "tou", False)
    pl = ems.plan(pb)
    t0 = 40
    # states after executing the first t0 steps of the plan
    head = pb._replace(**{k: np.asarray(getattr(pb, k))[:, :t0] for k in (
        "load_kw", "pv_avail_kw", "cop", "import_price_eur_per_kwh", "export_price_eur_per_kwh",
        "import_cap_kw", "export_cap_kw")}, t_out_degc=pb.t_out_degc[:t0])
    ems.execute_plan(head, pl._replace(**{k: getattr(pl, k)[:, :t0] for k in (
        "battery_kw", "ev_kw", "heat_pump_kw", "pv_used_kw")}))
    st = (pl.battery_energy_kwh[:, t0], pl.ev_need_kwh[:, t0], pl.indoor_temp_degc[:, t0],
          np.where((pl.appliance_start_ptu >= 0) & (pl.appliance_start_ptu < t0), pl.appliance_start_ptu, -1))
    prices = np.asarray(pb.import_price_eur_per_kwh) * 1.5  # a new signal
    rest = ems.remaining_problem(pb, t0, *st, import_price_eur_per_kwh=prices)
    pl2 = ems.plan(rest)
    assert pl2.net_kw.shape == (5, 96 - t0)
    out2 = ems.execute_plan(rest, pl2)
    assert out2.cut_kw.max() < 1e-6
    np.testing.assert_allclose(out2.objective_eur, pl2.objective_eur, atol=1e-6)


def test_bad_input_raises_value_error():
    pb = ems.random_problem(np.random.default_rng(0), 2, 60, "flat")
    bad = np.array(pb.import_price_eur_per_kwh)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ems.plan(pb._replace(import_price_eur_per_kwh=bad))
    with pytest.raises(ValueError, match="shape"):
        ems.plan(pb._replace(load_kw=np.zeros((2, 5))))
    with pytest.raises(ValueError, match="capacity_kwh"):
        b = pb.devices.battery._replace(capacity_kwh=np.array([-1.0, 2.0]))
        ems.plan(pb._replace(devices=pb.devices._replace(battery=b)))


def _inflexible_bill(pb):
    """Bill of the inflexible load and PV alone (no flexible device, no penalty)."""
    pr = ems.prepare(pb)
    load = np.asarray(pb.load_kw, float)
    bill = lambda n: pr.pi * np.maximum(n, 0) - pr.pe * np.maximum(-n, 0)  # noqa: E731
    cands = (load - pr.pv_kw, load, np.clip(0.0, load - pr.pv_kw, load))
    return pr.dt * np.minimum.reduce([bill(n) for n in cands]).sum(1)


def _benchmark_cell(mix, kind, caps, reps=2, seed=2024):
    """The instances of one (device mix, prices, caps) cell of benchmarks/ems.py (same random stream)."""
    import itertools

    rng = np.random.default_rng(seed)
    for m in itertools.product([False, True], repeat=5):
        for k in ems.PRICE_KINDS:
            for c in (False, True):
                pb = ems.random_problem(rng, reps, 15, k, c, presence=np.tile(np.array(m), (reps, 1)))
                if m == mix and k == kind and c == caps:
                    return pb
    raise AssertionError("cell not found")


@pytest.mark.parametrize("kind", ["flat", "volatile"])
def test_tight_cap_battery_ev_heat_pump_regression(kind):
    # previous worst cases (PV + battery + EV + heat pump under a tight import cap): coordinate descent
    # stalled where the devices had to trade the capped import; gap of the flexible bill <= 3 %
    pb = _benchmark_cell((True, True, True, True, False), kind, True)
    out = ems.execute_plan(pb, ems.plan(pb))
    j_inflex = _inflexible_bill(pb)
    for i in range(2):
        r = milp.solve(ems.select(pb, slice(i, i + 1)))
        gap = (out.objective_eur[i] - r.objective_eur[0]) / max(abs(r.objective_eur[0] - j_inflex[i]), 0.05)
        assert gap >= -2e-4 * abs(r.objective_eur[0]) - 1e-6  # never better than the MILP (its MIP gap)
        assert gap <= 0.03
        if r.cap_violation_kwh[0] < 1e-9:
            assert out.cap_violation_kwh[i] < 1e-6


def test_cap_ramp_closes_the_fast_descents_worst_case():
    # the worst instance of benchmarks/ems.py for the fast descent the environments used before the LP
    # (battery + EV + heat pump + appliance under a ToU price and a tight cap): descent with the full cap
    # penalty at once let the first planner take the headroom (26 EUR above the MILP); with the cap
    # ramp the devices share it
    fast_descent = ems.ENGINE_DESCENT_PROFILE
    pb = ems.select(_benchmark_cell((False, True, True, True, True), "tou", True, reps=4), slice(0, 1))
    r = milp.solve(pb)
    ramped = ems.execute_plan(pb, ems.plan(pb, fast_descent)).objective_eur[0]
    unramped = ems.execute_plan(pb, ems.plan(pb, fast_descent._replace(cap_ramp=()))).objective_eur[0]
    assert r.objective_eur[0] - 1e-3 <= ramped <= r.objective_eur[0] + 2.0
    assert unramped - ramped > 10.0
    for cfg in (ems.EMSConfig(), ems.ENGINE_PROFILE):  # the LP: the MILP's optimum
        best = ems.execute_plan(pb, ems.plan(pb, cfg)).objective_eur[0]
        assert best <= r.objective_eur[0] + 2e-4 * abs(r.objective_eur[0]) + 1e-4


def test_config_validation():
    pb = ems.random_problem(np.random.default_rng(0), 1, 60, "flat")
    for bad in (dict(max_sweeps=0), dict(exchange_rounds=-1), dict(exchange_radius_min_kw=0.0),
                dict(tolerance_eur=np.nan), dict(appliance_candidates=-2), dict(cap_ramp=(0.5, 0.1)),
                dict(cap_ramp=(0.1, 1.5)), dict(cap_ramp=(np.nan,))):
        with pytest.raises(ValueError):
            ems.plan(pb, ems.EMSConfig(**bad))
