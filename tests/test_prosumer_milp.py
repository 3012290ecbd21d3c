"""Exact prosumer MILP (baselines.oracle): model builder and consistency with the device kernels."""

import numpy as np
import pytest

from baselines.oracle import prosumer as milp
from baselines.oracle.model import LinExpr, ModelBuilder
from flexenv.policies import ems


def test_builder_small_lp_and_mip():
    m = ModelBuilder()
    x = m.add_var("x", (2, 3), 0.0, 4.0)
    y = m.add_var("y", (2,), 0.0, 10.0, integer=True)
    # sum_t x[p, t] >= 5.5 per p; y >= x[p, 0] + 0.5 ; minimise sum x * price + y
    tot = LinExpr((2,))
    for t in range(3):
        tot.add_term(x[:, t], 1.0)
    m.add_rows(tot, lb=5.5)
    m.add_rows(LinExpr.of(y) - LinExpr.of(x[:, 0]), lb=0.5)
    m.add_cost(LinExpr.of(x, np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])))
    m.add_cost(LinExpr.of(y))
    sol = m.solve()
    v = sol.value(x)
    # p0: cheapest is t0 but y pays for it: x0 = 4 -> y = 5 (cost 4 + 5 + 1.5*2 = 12) vs x0 = 0.5 ...
    assert sol.objective == pytest.approx(min(_brute(np.array([1.0, 2, 3])), 99) + _brute(np.array([3.0, 2, 1])), abs=1e-6)
    assert np.all(v >= -1e-9) and np.all(v <= 4 + 1e-9)
    with pytest.raises(ValueError, match="shapes"):
        LinExpr.of(x) + LinExpr.of(y)


def _brute(price):
    best = np.inf
    for x0 in np.linspace(0, 4, 401):
        y = np.ceil(x0 + 0.5 - 1e-12)
        rest = 5.5 - x0
        others = sorted(price[1:])
        c = x0 * price[0] + y + min(rest, 4) * others[0] + max(rest - 4, 0) * others[1]
        best = min(best, c)
    return best


@pytest.mark.parametrize("kind,caps", [("flat", False), ("tou", True), ("volatile", False), ("volatile", True)])
def test_milp_solution_executes_to_its_objective(kind, caps):
    pb = ems.random_problem(np.random.default_rng(7), 3, 15, kind, caps)
    for i in range(3):
        sub = ems.select(pb, slice(i, i + 1))
        r = milp.solve(sub)
        out = ems.execute(sub, r.battery_kw, r.ev_kw, r.heat_pump_kw, r.pv_used_kw, r.appliance_start_ptu)
        assert out.objective_eur[0] == pytest.approx(r.objective_eur[0], abs=1e-5)
        assert out.cut_kw.max() < 1e-6  # the MILP plan is feasible for the device kernels
        assert r.mip_gap <= 1e-4 + 1e-12


def test_infeasible_cap_gives_minimal_violation():
    rng = np.random.default_rng(3)
    none = np.zeros((2, 5), bool)
    pb = ems.random_problem(rng, 2, 60, "flat", caps=True, presence=none)
    pb = pb._replace(import_cap_kw=np.full((2, 24), 0.1))  # below the inflexible load
    r = milp.solve(pb)
    expect = np.maximum(pb.load_kw - 0.1, 0).sum(1)  # dt = 1 h
    np.testing.assert_allclose(r.cap_violation_kwh, expect, atol=1e-6)


def test_ev_linear_prices_fills_cheapest_slots():
    # one EV, no other device, prices strictly increasing: the MILP charges at the earliest slots
    pres = np.array([[False, False, True, False, False]])
    pb = ems.random_problem(np.random.default_rng(1), 1, 60, "flat", presence=pres)
    T = 24
    ses = pb.devices.sessions._replace(arrival_ptu=np.array([2]), departure_ptu=np.array([12]),
                                       energy_needed_kwh=np.array([10.0]))
    ev = pb.devices.ev._replace(p_max_kw=np.array([3.0]), eta_charge=np.array([1.0]), v2g=np.array([False]),
                                capacity_kwh=np.array([50.0]))
    price = np.linspace(0.2, 0.4, T)[None, :]
    pb = pb._replace(devices=pb.devices._replace(sessions=ses, ev=ev), import_price_eur_per_kwh=price,
                     export_price_eur_per_kwh=price * 0.1, load_kw=np.ones((1, T)), pv_avail_kw=np.zeros((1, T)))
    r = milp.solve(pb)
    np.testing.assert_allclose(r.ev_kw[0, 2:6], [3, 3, 3, 1], atol=1e-6)
    assert np.abs(r.ev_kw[0, 6:]).max() < 1e-6
