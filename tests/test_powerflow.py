"""The numba power flow against pandapower.runpp on real pandapower LV networks."""

import warnings
import zlib

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from flexenv.physics import powerflow
from flexenv.physics.feeder import Feeder
from flexenv.physics.feeder_pandapower import set_pandapower_injections

# The IEEE European LV feeder ships with unbalanced per-phase loads; Feeder.from_pandapower sums them
# into balanced three-phase injections, and set_pandapower_injections replaces them by balanced loads,
# so pandapower solves the balanced positive-sequence equivalent (positive-sequence line data).
NETWORKS = {
    "kerber_landnetz_freileitung_1": pn.create_kerber_landnetz_freileitung_1,
    "kerber_landnetz_kabel_1": pn.create_kerber_landnetz_kabel_1,
    "kerber_dorfnetz": pn.create_kerber_dorfnetz,
    "kerber_vorstadtnetz_kabel_1": pn.create_kerber_vorstadtnetz_kabel_1,
    "ieee_european_lv": pn.ieee_european_lv_asymmetric,
    "dickert_middle_multiple": lambda: pn.create_dickert_lv_network(
        feeders_range="middle", linetype="cable", customer="multiple", case="average"),
    "synthetic_200": lambda: Feeder.synthetic(200, seed=1).to_pandapower(),
}

_CACHE = {}


def network(name):
    if name not in _CACHE:
        net = NETWORKS[name]()
        _CACHE[name] = (net, Feeder.from_pandapower(net, name=name))
    return _CACHE[name]


def scenario(feeder, kind, rng):
    """Random injections at the load buses: heavy evening load or strong PV feed-in (reverse flow).

    The size is the transformer rating spread over the load buses, scaled down only as far as needed
    to keep the case physical (0.88 <= vm <= 1.12), so every case is stressed."""
    s_trafo_kva = feeder.branch_i_rated_to_ka[-1] * np.sqrt(3) * feeder.bus_vn_kv[feeder.branch_to_bus[-1]] * 1e3
    loads = feeder.load_buses if len(feeder.load_buses) else np.flatnonzero(feeder.bus_vn_kv < 1)
    share = s_trafo_kva / len(loads) * rng.uniform(0.3, 1.7, len(loads))
    p = np.zeros(feeder.n_bus)
    q = np.zeros(feeder.n_bus)
    if kind == "evening":  # 130 % of the transformer rating, power factor 0.95 inductive
        p[loads] = 1.3 * share
        q[loads] = 0.33 * p[loads]
    elif kind == "pv":  # 120 % of the rating fed back, PV inverters at mixed reactive power
        p[loads] = -1.2 * share
        q[loads] = rng.uniform(-0.3, 0.3, len(loads)) * p[loads]
    else:  # a mix of consumers and producers
        p[loads] = share * rng.uniform(-1.2, 1.2, len(loads))
        q[loads] = rng.uniform(-0.3, 0.4, len(loads)) * np.abs(p[loads])
    for scale in (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12):
        r = powerflow.solve(feeder, p * scale, q * scale, warn=False)
        if r.converged and r.vm_pu.min() >= 0.88 and r.vm_pu.max() <= 1.12:
            break
    return p * scale, q * scale


def run_pandapower(net, feeder, p, q):
    set_pandapower_injections(net, feeder, p, q)
    # A tight tolerance so that the comparison measures our error, not pandapower's stopping point.
    pp.runpp(net, tolerance_mva=1e-11)
    return {
        "vm_pu": net.res_bus.vm_pu.loc[feeder.bus_ids].to_numpy(),
        "va_degree": net.res_bus.va_degree.loc[feeder.bus_ids].to_numpy(),
        "line_loading_pct": net.res_line.loading_percent.loc[feeder.line_ids].to_numpy(),
        "trafo_loading_pct": net.res_trafo.loading_percent.loc[feeder.trafo_ids].to_numpy(),
        "losses_kw": 1e3 * (net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()),
        "p_slack_kw": 1e3 * net.res_ext_grid.p_mw.sum(),
        "q_slack_kvar": 1e3 * net.res_ext_grid.q_mvar.sum(),
    }


def assert_slack_power_matches(ours, ref):
    """Slack power to 1e-6 relative or 1e-4 kW, whichever is looser."""
    for ours_kw, ref_kw in ((ours.p_slack_kw, ref["p_slack_kw"]), (ours.q_slack_kvar, ref["q_slack_kvar"])):
        assert abs(ours_kw - ref_kw) <= max(1e-4, 1e-6 * abs(ref_kw)), (ours_kw, ref_kw)


@pytest.mark.parametrize("kind", ["evening", "pv", "mixed"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_matches_pandapower(name, kind):
    net, feeder = network(name)
    rng = np.random.default_rng(zlib.crc32(f"{name}-{kind}".encode()))
    p, q = scenario(feeder, kind, rng)
    ours = powerflow.solve(feeder, p, q)
    ref = run_pandapower(net, feeder, p, q)
    assert ours.converged
    if kind == "evening":
        assert ours.vm_pu.min() < 0.97  # the case really is stressed
    if kind == "pv":
        assert ours.vm_pu.max() > 1.02 or feeder.slack_vm_pu > 1.0
    assert np.abs(ours.vm_pu - ref["vm_pu"]).max() <= 1e-6
    assert np.abs(ours.va_degree - ref["va_degree"]).max() <= 1e-5
    assert np.abs(ours.line_loading_pct - ref["line_loading_pct"]).max() <= 1e-3
    assert np.abs(ours.trafo_loading_pct - ref["trafo_loading_pct"]).max() <= 1e-3
    assert abs(ours.losses_kw - ref["losses_kw"]) <= 1e-3 * abs(ref["losses_kw"])
    assert_slack_power_matches(ours, ref)


def test_slack_power_closes_the_energy_balance_batched():
    # the slack power comes from the slack voltage and branch currents, losses from every branch's two
    # ends, injections from the input: three independent numbers that must add up
    for name in ("kerber_dorfnetz", "ieee_european_lv"):
        _, feeder = network(name)
        rng = np.random.default_rng(11)
        kinds = ["evening", "pv", "mixed"]
        rows = [scenario(feeder, kinds[i % 3], rng) for i in range(20)]
        p = np.array([r[0] for r in rows])
        q = np.array([r[1] for r in rows])
        r = powerflow.solve(feeder, p, q)
        assert r.p_slack_kw.shape == r.q_slack_kvar.shape == (20,)
        assert r.converged.all()
        np.testing.assert_allclose(r.p_slack_kw, p.sum(axis=1) + r.losses_kw, rtol=0, atol=1e-6)
        # reverse flow really happens in some rows, so the sign is checked too
        assert (r.p_slack_kw < 0).any() and (r.p_slack_kw > 0).any()
        single = powerflow.solve(feeder, p[3], q[3])
        assert np.ndim(single.p_slack_kw) == 0 and single.p_slack_kw == r.p_slack_kw[3]


def test_phase_shift_is_reported_like_pandapower():
    net, feeder = network("kerber_dorfnetz")
    r = powerflow.solve(feeder, feeder.p_kw_base, feeder.q_kvar_base)
    lv = feeder.bus_vn_kv < 1
    # Dyn5: LV side lags by 150 degrees, unwrapped (not folded into +210)
    assert np.all((r.va_degree[lv] < -150) & (r.va_degree[lv] > -160))
    ref = run_pandapower(net, feeder, feeder.p_kw_base, feeder.q_kvar_base)
    assert np.abs(r.va_degree - ref["va_degree"]).max() < 1e-6


@pytest.mark.parametrize("name", ["kerber_dorfnetz", "ieee_european_lv"])
def test_batched_equals_single_row_by_row(name):
    _, feeder = network(name)
    rng = np.random.default_rng(7)
    kinds = ["evening", "pv", "mixed"]
    # 37 rows: more than one chunk (parallel path) and a partial last chunk
    rows = [scenario(feeder, kinds[i % 3], rng) for i in range(37)]
    p = np.array([r[0] for r in rows])
    q = np.array([r[1] for r in rows])
    batched = powerflow.solve(feeder, p, q)
    assert batched.vm_pu.shape == (37, feeder.n_bus)
    assert batched.line_loading_pct.shape == (37, feeder.n_line)
    assert batched.trafo_loading_pct.shape == (37, 1)
    assert batched.losses_kw.shape == (37,)
    for i in range(37):
        single = powerflow.solve(feeder, p[i], q[i])
        for field in powerflow.PowerFlowResult._fields:
            np.testing.assert_array_equal(getattr(batched, field)[i], getattr(single, field), err_msg=field)


def test_warm_start_converges_faster_to_the_same_solution():
    _, feeder = network("kerber_vorstadtnetz_kabel_1")
    rng = np.random.default_rng(3)
    p, q = scenario(feeder, "evening", rng)
    previous = powerflow.solve(feeder, 0.95 * p, 0.95 * q)
    cold = powerflow.solve(feeder, p, q)
    warm = powerflow.solve(feeder, p, q, v_init=previous.v_pu)
    assert warm.converged and warm.iterations < cold.iterations
    assert np.abs(warm.vm_pu - cold.vm_pu).max() < 1e-9
    # a batch can share one start vector or have one per row
    batch = powerflow.solve(feeder, np.stack([p, p]), np.stack([q, q]), v_init=previous.v_pu)
    np.testing.assert_array_equal(batch.vm_pu[0], warm.vm_pu)


def test_non_convergence_is_reported_per_row():
    _, feeder = network("kerber_landnetz_freileitung_1")
    p_ok, q_ok = scenario(feeder, "evening", np.random.default_rng(0))
    p_absurd = np.zeros(feeder.n_bus)
    p_absurd[feeder.load_buses] = 5000.0  # 5 MW per load bus: beyond voltage collapse
    p = np.stack([p_ok, p_absurd, p_ok])
    q = np.stack([q_ok, np.zeros(feeder.n_bus), q_ok])
    with pytest.warns(RuntimeWarning, match="did not converge for 1 of 3"):
        r = powerflow.solve(feeder, p, q)
    assert r.converged.tolist() == [True, False, True]
    assert r.iterations[0] < powerflow.MAX_ITER
    single = powerflow.solve(feeder, p_ok, q_ok)
    np.testing.assert_array_equal(r.vm_pu[2], single.vm_pu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = powerflow.solve(feeder, p_absurd, np.zeros(feeder.n_bus), warn=False)
    assert not quiet.converged


def test_zero_injection_gives_no_load_solution():
    net, feeder = network("kerber_dorfnetz")
    r = powerflow.solve(feeder, np.zeros(feeder.n_bus), np.zeros(feeder.n_bus))
    ref = run_pandapower(net, feeder, np.zeros(feeder.n_bus), np.zeros(feeder.n_bus))
    assert np.abs(r.vm_pu - ref["vm_pu"]).max() < 1e-9
    # no load: only magnetising and cable charging losses, a few hundred watts at most
    assert 0 < r.losses_kw < 2.0


def test_bad_input_raises_clear_errors():
    _, feeder = network("kerber_dorfnetz")
    n = feeder.n_bus
    p = np.zeros(n)
    with pytest.raises(ValueError, match="shape"):
        powerflow.solve(feeder, np.zeros(n - 1), np.zeros(n - 1))
    with pytest.raises(ValueError, match="must match"):
        powerflow.solve(feeder, np.zeros((2, n)), np.zeros((3, n)))
    with pytest.raises(ValueError, match="shape"):
        powerflow.solve(feeder, np.zeros((2, 2, n)), np.zeros((2, 2, n)))
    bad = p.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match=f"non-finite injection at bus {feeder.bus_ids[5]}"):
        powerflow.solve(feeder, bad, p)
    bad2 = np.zeros((3, n))
    bad2[2, 7] = np.inf
    with pytest.raises(ValueError, match="row 2, bus"):
        powerflow.solve(feeder, np.zeros((3, n)), bad2)
    with pytest.raises(ValueError, match="v_init"):
        powerflow.solve(feeder, p, p, v_init=np.ones(n - 1))
    with pytest.raises(ValueError, match="v_init"):
        powerflow.solve(feeder, p, p, v_init=np.full(n, np.nan))
    with pytest.raises(ValueError, match="v_init"):
        powerflow.solve(feeder, p, p, v_init=np.zeros(n))
    big = np.ones((powerflow.CHUNK + 1, n), dtype=complex)
    big[-1, 3] = np.inf
    with pytest.raises(ValueError, match="v_init"):  # the parallel kernel checks it as well
        powerflow.solve(feeder, np.zeros(big.shape), np.zeros(big.shape), v_init=big)


def test_import_does_not_pull_in_pandapower():
    import subprocess
    import sys

    code = ("import sys, flexenv, flexenv.physics.powerflow, flexenv.physics.feeder, "
            "flexenv.physics.lindistflow; print('pandapower' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def chain_net():
    """MV slack, Dyn5 trafo, and an LV feeder that is mostly pass-through buses: the LV busbar (1) and
    buses 2, 3, 6 (+ 11 fused to 6) only pass power on, with a bus shunt at 2; 3 also feeds a load-free
    dead end 8-9 ending in a cable open at its far end. Loads at 5, 7, 10 only."""
    net = pp.create_empty_network()
    pp.create_bus(net, vn_kv=20.0, index=0)
    for b in range(1, 12):
        pp.create_bus(net, vn_kv=0.4, index=b)
    pp.create_ext_grid(net, 0, vm_pu=1.01)
    pp.create_transformer(net, 0, 1, "0.25 MVA 20/0.4 kV")
    for f, t, km, kind in [(1, 2, 0.05, "NAYY 4x150 SE"), (2, 3, 0.04, "NAYY 4x150 SE"), (3, 4, 0.03, "NAYY 4x120 SE"),
                           (4, 5, 0.05, "NAYY 4x50 SE"), (4, 6, 0.02, "NAYY 4x120 SE"), (6, 7, 0.03, "NAYY 4x50 SE"),
                           (3, 8, 0.06, "NAYY 4x50 SE"), (8, 9, 0.04, "NAYY 4x50 SE"), (7, 10, 0.02, "NAYY 4x50 SE")]:
        pp.create_line(net, f, t, km, kind)
    open_line = pp.create_line_from_parameters(net, 9, 10, 0.3, 0.2, 0.08, 800.0, 0.27)
    pp.create_switch(net, 10, open_line, et="l", closed=False)
    pp.create_switch(net, 6, 11, et="b", closed=True)
    pp.create_shunt(net, 2, q_mvar=-0.002, p_mw=0.0001)
    for b, p_mw in ((5, 0.04), (7, 0.03), (10, 0.05)):
        pp.create_load(net, b, p_mw=p_mw, q_mvar=0.3 * p_mw)
    return net


def assert_matches_pandapower_tightly(net, feeder, r, p, q):
    ref = run_pandapower(net, feeder, p, q)
    assert r.converged
    assert np.abs(r.vm_pu - ref["vm_pu"]).max() < 1e-9
    assert np.abs(r.va_degree - ref["va_degree"]).max() < 1e-7
    assert np.abs(r.line_loading_pct - ref["line_loading_pct"]).max() < 1e-6
    assert np.abs(r.trafo_loading_pct - ref["trafo_loading_pct"]).max() < 1e-6
    assert abs(r.losses_kw - ref["losses_kw"]) < 1e-6 * ref["losses_kw"]
    assert_slack_power_matches(r, ref)


def test_pass_through_and_dead_end_buses_are_eliminated_exactly():
    net = chain_net()
    feeder = Feeder.from_pandapower(net)
    # swept: slack, junction 4 and load buses 5, 7, 10; the chain 1-2-3 starts with the transformer's tap
    red_i, _, bus_red, red_full, rec_i, _ = powerflow.sweep_arrays(feeder, True)
    assert red_i.shape[1] == 5
    kept_buses = sorted(feeder.bus_ids[bus_red >= 0].tolist())
    assert kept_buses == [0, 4, 5, 7, 10]
    assert len(red_full) + rec_i.shape[1] == feeder.n_node  # every other node is recovered (incl. open end)
    p, q = feeder.p_kw_base, feeder.q_kvar_base
    r = powerflow.solve(feeder, p, q)
    assert r.vm_pu.shape == (feeder.n_bus,) and r.line_loading_pct.shape == (feeder.n_line,)
    assert_matches_pandapower_tightly(net, feeder, r, p, q)
    full = powerflow.solve(feeder, p, q, reduce=False)
    for field in ("vm_pu", "va_degree", "line_loading_pct", "trafo_loading_pct", "losses_kw", "p_slack_kw"):
        np.testing.assert_allclose(getattr(r, field), getattr(full, field), rtol=0, atol=1e-9, err_msg=field)
    # reverse flow through the chain (PV at the load buses) as well
    assert_matches_pandapower_tightly(net, feeder, powerflow.solve(feeder, -2 * p, 0.1 * q), -2 * p, 0.1 * q)


def test_injection_at_an_eliminated_bus_falls_back_to_the_full_sweep():
    net = chain_net()
    feeder = Feeder.from_pandapower(net)
    p = feeder.p_kw_base.copy()
    q = feeder.q_kvar_base.copy()
    p[feeder.bus_position(2)] = 15.0  # a pass-through bus: not in load_buses
    q[feeder.bus_position(9)] = -3.0  # a dead-end bus
    r = powerflow.solve(feeder, p, q)
    assert_matches_pandapower_tightly(net, feeder, r, p, q)
    full = powerflow.solve(feeder, p, q, reduce=False)
    for field in powerflow.PowerFlowResult._fields:
        np.testing.assert_array_equal(getattr(r, field), getattr(full, field), err_msg=field)


def test_ieee_feeder_sweeps_a_fraction_of_its_buses():
    _, feeder = network("ieee_european_lv")
    red_i = powerflow.sweep_arrays(feeder, True)[0]
    # 55 load buses, their junctions and the slack: ~8x fewer nodes than the 907 buses
    assert red_i.shape[1] < feeder.n_bus / 6
    assert powerflow.sweep_arrays(feeder, False)[0].shape[1] == feeder.n_node
