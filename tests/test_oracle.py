"""Portfolio oracle: replay through the engine, an independent formulation, infeasibility reports, cache.

Replay tolerance: the engine recomputes every power and state in floating point from the setpoints
(ratios to the device ratings, efficiencies, building coefficients), so its cost differs from the
MILP objective by rounding only; FLOAT_TOL_EUR (1e-6 €) on top of the MIP gap covers it.
"""

import types

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

from baselines.oracle import GRID_FAMILIES, OracleInfeasibleError, replay_schedules, solve
from baselines.oracle import portfolio as po
from flexenv.engine import Engine
from flexenv.envs.registry import scenario_for
from flexenv.market.settlement import imbalance_cost_eur
from flexenv.physics import devices as dv
from flexenv.physics.lindistflow import lindistflow
from flexenv.policies.rule_based import RuleBasedAggregator, RuleBasedDSO
from flexenv.scenario import load

TEACHING = "Gateway-Isolated-Teaching10-v0"
FLOAT_TOL_EUR = 1e-6


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """One cache folder for the whole session: every instance is solved once."""
    monkeypatch.setenv("FLEXENV_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "flexenv_cache"))


def _position_shortfall_eur(scenario, seed, position_kw, aggregate_kw):
    """What the engine charges beyond the oracle's cost when the position misses the aggregate:
    day-ahead energy of the difference plus its imbalance settlement."""
    eng = Engine(scenario)
    eng.reset([seed])
    dt = eng.dt_h
    da_eur = dt * (eng.day_ahead[0] * (position_kw - aggregate_kw)).sum()
    return da_eur + imbalance_cost_eur(aggregate_kw - position_kw, eng.imbalance_short[0], eng.imbalance_long[0], dt).sum()


def _assert_replay_matches(scenario, result, position_kw=None):
    rep = replay_schedules(scenario, result.schedules, seed=result.seed, position_kw=position_kw)
    if position_kw is None:
        assert rep.position_clipped_ptus == 0, "the oracle's position must be representable"
    # a position the engine cannot represent is settled as imbalance: add exactly that
    extra = _position_shortfall_eur(scenario, result.seed, rep.position_kw, result.schedules.aggregate_kw)
    if position_kw is None:
        assert (rep.position_clipped_ptus == 0) == (abs(extra) < 1e-9)
    lo = result.dual_bound_eur + extra - FLOAT_TOL_EUR
    hi = result.objective_eur + extra + FLOAT_TOL_EUR
    assert lo <= rep.system_cost_eur <= hi, (rep.system_cost_eur, result.objective_eur, result.dual_bound_eur, extra)
    assert rep.dso_cap_ptus == 0, "the oracle keeps the grid in limits: the DSO must never cap"
    assert rep.totals["voltage_violations"] == 0 and rep.totals["congested_ptus"] == 0
    assert rep.max_request_cut_kw < 1e-6, "every setpoint of the oracle must be feasible for the devices"
    np.testing.assert_allclose(rep.net_kw, result.schedules.net_kw, atol=1e-6)
    return rep


def test_replay_reproduces_the_oracle_objective_on_teaching10():
    scenario = scenario_for(TEACHING)
    result = solve(scenario)
    assert result.status == "Optimal" and result.mip_gap <= 1e-4
    assert result.dual_bound_eur <= result.objective_eur + 1e-9
    assert result.ac_max_voltage_excess_pu <= 0 and result.ac_max_loading_excess_pct <= 0
    rep = _assert_replay_matches(scenario, result)
    assert abs(rep.totals["discomfort_eur"]) < 1e-6  # here comfort and EV energy are fully served
    # the grid limit shapes this optimum: the transformer runs within 2 % of its limit in some PTU
    assert rep.totals["peak_trafo_loading_pct"] > 0.98 * scenario.feeder.trafo_loading_max_pct


def test_replay_over_two_days_carries_states_over_midnight():
    """Battery and building states cross midnight, EV sessions and appliance runs are per day."""
    scenario = scenario_for(TEACHING, time__days=2)
    result = solve(scenario, seed=3)
    assert result.schedules.net_kw.shape == (10, 192)
    _assert_replay_matches(scenario, result)


def test_a_position_out_of_the_adjust_range_is_clipped_and_settled_as_imbalance():
    """position_adjust spans ±10 kW × P = ±100 kW around the reference plans: a position further off is clipped."""
    scenario = scenario_for(TEACHING)
    result = solve(scenario)
    position = result.schedules.aggregate_kw.copy()
    position[30] += 300.0
    position[70] -= 300.0
    rep = _assert_replay_matches(scenario, result, position_kw=position)
    assert rep.position_clipped_ptus == 2 and rep.position_missing_kw > 0


def test_oracle_bounds_the_rule_based_gateway_aggregator():
    scenario = scenario_for(TEACHING)
    result = solve(scenario)
    engine = Engine(scenario)
    obs = engine.reset([scenario.seed])
    agg, dso = RuleBasedAggregator(engine), RuleBasedDSO(engine)
    while not engine.done:
        obs, _, _ = engine.step({"aggregator": agg(obs["aggregator"]), "dso": dso(obs["dso"])})
    assert engine.system_cost_eur()[0] >= result.dual_bound_eur - FLOAT_TOL_EUR


def test_cache_returns_the_stored_result_and_keys_on_seed_and_options():
    scenario = scenario_for(TEACHING)
    first = solve(scenario)
    again = solve(scenario)
    assert again.cached and again.objective_eur == first.objective_eur
    key = po.cache_key(scenario, 0, {"mip_rel_gap": 1e-4})
    assert key != po.cache_key(scenario, 1, {"mip_rel_gap": 1e-4})
    assert key != po.cache_key(scenario, 0, {"mip_rel_gap": 1e-3})
    assert (po.cache_dir()).is_dir() and any(po.cache_dir().glob("*.pkl"))


def test_tree_voltages_equal_the_dense_lindistflow_model():
    """The sparse tree rows of the MILP give the same squared voltages as LinDistFlow's matrices."""
    scenario = scenario_for(TEACHING)
    engine = Engine(scenario)
    engine.reset([scenario.seed])
    m, pc = po.build_model(engine)
    run = po._run(m.build(), 1e-4, 60.0, 1)
    net, q = run.x[pc["net"]], run.x[pc["q"]]
    ldf = lindistflow(engine.feeder)
    p_bus, q_bus = net.T @ engine.bus_matrix, q.T @ engine.bus_matrix
    dense = ldf.v2_0_pu + p_bus @ ldf.dv2_dp_pu_per_kw.T + q_bus @ ldf.dv2_dq_pu_per_kvar.T  # (H, n_bus)
    tree = (pc["v2_0"][:, None] + pc["w_scale"] * run.x[pc["w"]])[engine.feeder.bus_node].T
    np.testing.assert_allclose(tree, dense, atol=1e-9)


# ------------------------------------------------------------------------- infeasibility
def test_transformer_limit_below_the_inflexible_load_is_reported_by_family():
    scenario = scenario_for(TEACHING, feeder__trafo_loading_max_pct=1.0)
    with pytest.raises(OracleInfeasibleError, match="trafo_loading") as err:
        solve(scenario, cache=False)
    assert err.value.families == ("trafo_loading",)
    assert set(err.value.families) <= set(GRID_FAMILIES)


# ------------------------------------------------------------------------- independent formulation
T_SMALL = 8


def _small_engine():
    """3 prosumers, 8 hourly PTUs (10:00-18:00), every device somewhere, a transformer limit that
    binds; arrays overridden on a real engine's feeder and placement."""
    group = load("teaching10").model_dump(mode="json")["prosumers"][0]
    group["count"] = 3
    scenario = load("teaching10", {"prosumers": [group], "time.ptu_minutes": 60, "links.prosumer": {"kind": "gateway"},
                                   "links.dso": {"kind": "isolated"}})
    eng = Engine(scenario)
    eng.reset([5])
    P, T, w = 3, T_SMALL, slice(10, 10 + T_SMALL)
    ns = types.SimpleNamespace(**vars(eng))
    ns.ppd, ns.n_days = T, 1
    ns.load_kw = eng.load_kw[:, :, w] + 0.5
    ns.pv_avail_kw = (np.array([4.0, 0.0, 6.0])[:, None] * np.sin(np.linspace(0.4, 2.6, T))[None, :])[None]
    ns.t_out_degc = np.linspace(4.0, -2.0, T)[None]
    ns.day_ahead = np.array([[0.12, 0.10, -0.02, 0.05, 0.09, 0.20, 0.31, 0.27]])
    ns.fleet = types.SimpleNamespace(pv_kwp=np.array([4.0, 0.0, 6.0]), comfort_set_point_degc=np.full(P, 21.0),
                                     power_factor=np.array([0.95, 0.9, 0.97]))
    ns.battery = dv.BatteryParams(np.array([5.0, 0.0, 8.0]), np.array([2.5, 0.0, 4.0]), np.array([2.0, 0.0, 4.0]),
                                  np.full(P, 0.95), np.full(P, 0.93), np.full(P, 0.01 / 24))
    ns.battery_initial_kwh = np.array([2.0, 0.0, 1.0])
    ns.ev = dv.EVParams(np.array([50.0, 40.0, 0.0]), np.array([7.4, 3.7, 0.0]), np.full(P, 0.92),
                        np.array([False, True, False]))
    ns.ev_arrival = np.array([[[2], [1], [0]]])
    ns.ev_departure = np.array([[[7], [T], [0]]])
    ns.ev_energy_kwh = np.array([[[18.0], [9.0], [0.0]]])
    ns.heat_pump = dv.HeatPumpParams(np.array([3.0, 0.0, 2.0]), np.array([6.0, 6.0, 8.0]), np.array([8.0, 8.0, 5.0]),
                                     np.full(P, 20.0), np.full(P, 22.0), np.full(P, 21.0), np.full(P, 0.45),
                                     np.full(P, 35.0), np.full(P, 6.0))
    ns.cop = dv.heat_pump_cop(ns.t_out_degc[0], ns.heat_pump)[None]
    ns.appliance_profile_kw = np.array([[0.0, 0.0], [2.0, 1.5], [1.2, 1.2]])
    ns.app_earliest = np.array([[[T], [1], [3]]])
    ns.app_latest = np.array([[[T], [5], [6]]])
    feeder_cfg = types.SimpleNamespace(v_min_pu=0.95, v_max_pu=1.05, line_loading_max_pct=100.0,
                                       trafo_loading_max_pct=100.0)
    ns.scenario = types.SimpleNamespace(preferences=scenario.preferences, feeder=feeder_cfg)
    # a transformer limit of 14 kVA (apparent), below the unconstrained evening peak
    ns.scenario.feeder.trafo_loading_max_pct = 100.0 * 14.0 / lindistflow(eng.feeder).branch_s_rated_kva[-1]
    return ns


def _scipy_oracle(ns):
    """The same problem written independently: per-PTU device equations of flexenv.physics.devices,
    the dense LinDistFlow matrices for voltages and flows, scipy's milp."""
    P, T, dt = ns.P, ns.ppd, ns.dt_h
    cols, lb, ub, integ, cost = {}, [], [], [], []

    def var(name, shape, lo=0.0, hi=np.inf, integer=False):
        n = int(np.prod(shape))
        cols[name] = np.arange(len(lb), len(lb) + n).reshape(shape)
        lb.extend(np.broadcast_to(lo, shape).ravel())
        ub.extend(np.broadcast_to(hi, shape).ravel())
        integ.extend([int(integer)] * n)
        cost.extend([0.0] * n)
        return cols[name]

    rows, rlo, rhi = [], [], []

    def row(terms, lo, hi):
        rows.append(terms)
        rlo.append(lo)
        rhi.append(hi)

    b, ev, hp = ns.battery, ns.ev, ns.heat_pump
    prefs = ns.scenario.preferences
    pc = var("pc", (P, T), 0.0, b.p_charge_max_kw[:, None])
    pd = var("pd", (P, T), 0.0, b.p_discharge_max_kw[:, None])
    zb = var("zb", (P, T), 0.0, 1.0, True)
    e = var("e", (P, T + 1), 0.0, b.capacity_kwh[:, None])
    keep = (1.0 - b.self_discharge_per_h) ** dt
    arr, dep, need = ns.ev_arrival[0, :, 0], ns.ev_departure[0, :, 0], ns.ev_energy_kwh[0, :, 0]
    k = np.arange(T)
    present = (k[None, :] >= arr[:, None]) & (k[None, :] < dep[:, None]) & (ev.capacity_kwh[:, None] > 0)
    c = var("c", (P, T), 0.0, np.where(present, ev.p_max_kw[:, None], 0.0))
    d = var("d", (P, T), 0.0, np.where(present & ev.v2g[:, None], ev.p_max_kw[:, None], 0.0))
    zev = var("zev", (P, T), 0.0, 1.0, True)
    n = var("n", (P, T + 1), 0.0, ev.capacity_kwh[:, None])
    u = var("u", (P,), 0.0)
    hpp = var("hp", (P, T), 0.0, hp.p_max_kw[:, None])
    temp = var("temp", (P, T + 1), -np.inf, np.inf)
    below = var("below", (P, T), 0.0)
    above = var("above", (P, T), 0.0)
    used = var("used", (P, T), 0.0, ns.pv_avail_kw[0])
    prof = ns.appliance_profile_kw
    L = prof.shape[1]
    e0, l0 = ns.app_earliest[0, :, 0], ns.app_latest[0, :, 0]
    has_app = (prof > 0).any(axis=1) & (e0 < T)
    ok_start = has_app[:, None] & (k[None, :] >= e0[:, None]) & (k[None, :] <= np.minimum(l0, T - L)[:, None])
    y = var("y", (P, T), 0.0, ok_start.astype(float), True)
    net = var("net", (P, T), -np.inf, np.inf)
    q = var("q", (P, T), -np.inf, np.inf)
    a = np.exp(-dt / (hp.r_k_per_kw * hp.c_kwh_per_k))
    tan_phi = np.tan(np.arccos(ns.fleet.power_factor))
    load = ns.load_kw[0]
    for p in range(P):
        row({e[p, 0]: 1.0}, ns.battery_initial_kwh[p], ns.battery_initial_kwh[p])
        row({n[p, 0]: 1.0}, need[p] if present[p].any() else 0.0, need[p] if present[p].any() else 0.0)
        row({temp[p, 0]: 1.0}, 21.0, 21.0)
        row({u[p]: 1.0, n[p, T]: -1.0}, 0.0, np.inf)
        if has_app[p]:
            row({y[p, s]: 1.0 for s in range(T)}, 1.0, 1.0)
        for t in range(T):
            row({e[p, t + 1]: 1.0, e[p, t]: -keep[p], pc[p, t]: -dt * b.eta_charge[p], pd[p, t]: dt / b.eta_discharge[p]}, 0.0, 0.0)
            row({pc[p, t]: 1.0, zb[p, t]: -b.p_charge_max_kw[p]}, -np.inf, 0.0)
            row({pd[p, t]: 1.0, zb[p, t]: b.p_discharge_max_kw[p]}, -np.inf, b.p_discharge_max_kw[p])
            row({n[p, t + 1]: 1.0, n[p, t]: -1.0, c[p, t]: dt * ev.eta_charge[p], d[p, t]: -dt / ev.eta_charge[p]}, 0.0, 0.0)
            row({c[p, t]: 1.0, zev[p, t]: ev.p_max_kw[p]}, -np.inf, ev.p_max_kw[p])
            row({d[p, t]: 1.0, zev[p, t]: -ev.p_max_kw[p]}, -np.inf, 0.0)
            gain = (1 - a[p]) * hp.r_k_per_kw[p] * ns.cop[0, p, t]
            row({temp[p, t + 1]: 1.0, temp[p, t]: -a[p], hpp[p, t]: -gain}, (1 - a[p]) * ns.t_out_degc[0, t], (1 - a[p]) * ns.t_out_degc[0, t])
            row({temp[p, t + 1]: 1.0, below[p, t]: 1.0}, hp.t_min_degc[p], np.inf)
            row({temp[p, t + 1]: 1.0, above[p, t]: -1.0}, -np.inf, hp.t_max_degc[p])
            app_terms = {y[p, s]: prof[p, t - s] for s in range(max(0, t - L + 1), t + 1)}
            row({net[p, t]: 1.0, pc[p, t]: -1.0, pd[p, t]: 1.0, c[p, t]: -1.0, d[p, t]: 1.0, hpp[p, t]: -1.0,
                 used[p, t]: 1.0, **{i: -v for i, v in app_terms.items()}}, load[p, t], load[p, t])
            row({q[p, t]: 1.0, hpp[p, t]: -tan_phi[p], **{i: -tan_phi[p] * v for i, v in app_terms.items()}},
                tan_phi[p] * load[p, t], tan_phi[p] * load[p, t])
    cost = np.array(cost)
    cost[net] = dt * ns.day_ahead[0][None, :]
    cost[u] = prefs.ev_unmet_penalty_eur_per_kwh
    cost[below] = cost[above] = prefs.comfort_penalty_eur_per_kh * dt * (hp.p_max_kw > 0)[:, None]

    # grid: dense LinDistFlow, same margins and polygon as the oracle
    ldf = lindistflow(ns.feeder)
    fc = ns.scenario.feeder
    bus_of = ns.prosumer_bus
    lv = np.flatnonzero(ns.lv_bus)
    vlo, vhi = (fc.v_min_pu + po.INITIAL_V_MARGIN_PU) ** 2, (fc.v_max_pu - po.INITIAL_V_MARGIN_PU) ** 2
    angles = 2 * np.pi * np.arange(po.N_FACETS) / po.N_FACETS
    limit = np.where(ns.feeder.branch_kind == 1, fc.trafo_loading_max_pct, fc.line_loading_max_pct)
    s_max = ldf.branch_s_rated_kva * limit / 100 * (1 - po.INITIAL_LOADING_MARGIN) * np.cos(np.pi / po.N_FACETS)
    for t in range(T):
        for bus in lv:
            terms = {}
            for p in range(P):
                terms[net[p, t]] = ldf.dv2_dp_pu_per_kw[bus, bus_of[p]]
                terms[q[p, t]] = ldf.dv2_dq_pu_per_kvar[bus, bus_of[p]]
            row(terms, vlo - ldf.v2_0_pu[bus], vhi - ldf.v2_0_pu[bus])
        for br in np.flatnonzero(ldf.branch_s_rated_kva > 0):
            for ang in angles:
                terms = {}
                for p in range(P):
                    terms[net[p, t]] = np.cos(ang) * ldf.flow_incidence[br, bus_of[p]]
                    terms[q[p, t]] = np.sin(ang) * ldf.flow_incidence[br, bus_of[p]]
                rhs = s_max[br] - np.cos(ang) * ldf.branch_p0_kw[br] - np.sin(ang) * ldf.branch_q0_kvar[br]
                row(terms, -np.inf, rhs)

    A = sp.lil_matrix((len(rows), len(lb)))
    for i, terms in enumerate(rows):
        for j, v in terms.items():
            A[i, j] += v
    res = so.milp(cost, constraints=so.LinearConstraint(A.tocsr(), rlo, rhi), integrality=np.array(integ),
                  bounds=so.Bounds(lb, ub), options={"mip_rel_gap": 1e-6})
    assert res.success, res.message
    return res.fun


def test_small_instance_agrees_with_an_independent_scipy_formulation():
    ns = _small_engine()
    result = po.solve_engine(ns, mip_rel_gap=1e-6, ac_check=False)
    ref_obj = _scipy_oracle(ns)
    tol = 1e-6 * max(1.0, abs(ref_obj)) + 1e-7
    assert abs(result.objective_eur - ref_obj) <= tol, (result.objective_eur, ref_obj)
    # the transformer limit binds: the instance tests the grid rows, not just the devices
    free = po.solve_engine(_without_grid_limits(ns), mip_rel_gap=1e-6, ac_check=False)
    assert free.objective_eur < result.objective_eur - 1e-3, "the grid limit must cost something here"


def _without_grid_limits(ns):
    out = types.SimpleNamespace(**vars(ns))
    out.scenario = types.SimpleNamespace(preferences=ns.scenario.preferences, feeder=types.SimpleNamespace(
        v_min_pu=0.5, v_max_pu=1.5, line_loading_max_pct=1e4, trafo_loading_max_pct=1e4))
    return out
