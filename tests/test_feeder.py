"""Feeder arrays: pandapower import (mapping, switches, errors) and the synthetic generator."""

import dataclasses

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from flexenv.physics import powerflow
from flexenv.physics.feeder import LV_CABLES, Feeder
from flexenv.physics.feeder_pandapower import set_pandapower_injections


def small_net():
    """MV slack, Dyn5 trafo, a 4-bus LV cable chain with a side branch; bus indices not 0..n-1."""
    net = pp.create_empty_network()
    ids = [100, 7, 42, 3, 55, 18]
    for i, b in enumerate(ids):
        pp.create_bus(net, vn_kv=20.0 if i == 0 else 0.4, index=b)
    pp.create_ext_grid(net, 100, vm_pu=1.02, va_degree=5.0)
    pp.create_transformer(net, 100, 7, "0.4 MVA 20/0.4 kV", index=9)
    pp.create_line(net, 7, 42, 0.1, "NAYY 4x150 SE", index=30)
    pp.create_line(net, 42, 3, 0.08, "NAYY 4x120 SE", index=10)
    pp.create_line(net, 3, 55, 0.05, "NAYY 4x50 SE", index=20)
    pp.create_line(net, 42, 18, 0.06, "NAYY 4x50 SE", index=11)
    for b in (3, 55, 18):
        pp.create_load(net, b, p_mw=0.02, q_mvar=0.005)
    pp.create_sgen(net, 18, p_mw=0.01)
    return net


def compare(net, feeder, p, q):
    set_pandapower_injections(net, feeder, p, q)
    pp.runpp(net, tolerance_mva=1e-11)
    r = powerflow.solve(feeder, p, q)
    assert r.converged
    assert np.abs(r.vm_pu - net.res_bus.vm_pu.loc[feeder.bus_ids].to_numpy()).max() < 1e-9
    assert np.abs(r.va_degree - net.res_bus.va_degree.loc[feeder.bus_ids].to_numpy()).max() < 1e-7
    ref_loading = net.res_line.loading_percent.loc[feeder.line_ids].to_numpy()
    assert np.abs(r.line_loading_pct - ref_loading).max() < 1e-6
    ref_losses = 1e3 * (net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum())
    assert abs(r.losses_kw - ref_losses) < 1e-6 * ref_losses
    ref_slack = 1e3 * complex(net.res_ext_grid.p_mw.sum(), net.res_ext_grid.q_mvar.sum())
    assert abs(complex(r.p_slack_kw, r.q_slack_kvar) - ref_slack) < max(1e-4, 1e-6 * abs(ref_slack))
    return r


def test_bus_and_line_order_follow_the_net():
    net = small_net()
    f = Feeder.from_pandapower(net)
    assert f.bus_ids.tolist() == [100, 7, 42, 3, 55, 18]
    assert f.line_ids.tolist() == [30, 10, 20, 11]
    assert f.trafo_ids.tolist() == [9]
    assert f.slack_bus == 0 and f.bus_position(55) == 4
    assert sorted(f.load_buses.tolist()) == [3, 4, 5]
    # loads minus PV, in kW, consumption positive
    np.testing.assert_allclose(f.p_kw_base, [0, 0, 0, 20, 20, 10])
    # radial sweep order: parents come first
    assert f.node_parent[0] == -1 and np.all(f.node_parent[1:] < np.arange(1, f.n_node))
    r = compare(net, f, f.p_kw_base, f.q_kvar_base)
    assert r.va_degree[0] == pytest.approx(5.0)  # ext_grid angle kept


def test_text_columns_are_cast_like_simbench():
    net = small_net()
    for col in ("r_ohm_per_km", "x_ohm_per_km", "max_i_ka", "length_km"):
        net.line[col] = net.line[col].astype(str)
    net.trafo["vk_percent"] = net.trafo["vk_percent"].astype(str)
    f = Feeder.from_pandapower(net)
    ref = Feeder.from_pandapower(small_net())
    np.testing.assert_array_equal(f.branch_r_pu, ref.branch_r_pu)
    np.testing.assert_array_equal(f.branch_x_pu, ref.branch_x_pu)
    net.line.loc[10, "r_ohm_per_km"] = "abc"
    with pytest.raises(ValueError, match="line 10.*not a number"):
        Feeder.from_pandapower(net)


def test_tap_position_and_magnetising_branch_match_pandapower():
    net = small_net()
    net.trafo.loc[9, "tap_pos"] = 2  # +5 % on the HV side
    f = Feeder.from_pandapower(net)
    compare(net, f, f.p_kw_base, f.q_kvar_base)
    net.trafo.loc[9, ["tap_side", "tap_pos"]] = ["lv", -1]
    f = Feeder.from_pandapower(net)
    compare(net, f, 3 * f.p_kw_base, f.q_kvar_base)


def test_slack_power_counts_slack_bus_loads_and_shunts_like_pandapower():
    net = small_net()
    pp.create_load(net, 100, p_mw=0.05, q_mvar=0.01)  # a load at the MV slack bus itself
    pp.create_shunt(net, 100, q_mvar=-0.02, p_mw=0.001)  # and shunts at the slack and at an LV bus
    pp.create_shunt(net, 55, q_mvar=-0.003, p_mw=0.0002)
    f = Feeder.from_pandapower(net)
    r = compare(net, f, f.p_kw_base, f.q_kvar_base)
    # energy balance: slack = injections + branch losses + shunt consumption
    shunt_kw = 1e3 * net.res_shunt.p_mw.sum()
    assert r.p_slack_kw == pytest.approx(f.p_kw_base.sum() + r.losses_kw + shunt_kw, abs=1e-6)


def test_closed_bus_bus_switch_fuses_buses():
    net = small_net()
    pp.create_bus(net, vn_kv=0.4, index=77)
    pp.create_switch(net, 55, 77, et="b", closed=True)
    pp.create_load(net, 77, p_mw=0.01)
    f = Feeder.from_pandapower(net)
    assert f.n_bus == 7 and f.bus_node[f.bus_position(77)] == f.bus_node[f.bus_position(55)]
    r = compare(net, f, f.p_kw_base, f.q_kvar_base)
    assert r.vm_pu[f.bus_position(77)] == r.vm_pu[f.bus_position(55)]


def test_open_line_switch_keeps_charging_current_of_the_dangling_line():
    net = small_net()
    pp.create_bus(net, vn_kv=0.4, index=88)
    # a long cable open at its far end (a normally-open point): it still draws charging current
    pp.create_line_from_parameters(net, 55, 88, 2.0, 0.2, 0.08, 800.0, 0.27, index=40)
    pp.create_switch(net, 88, 40, et="l", closed=False)
    with pytest.raises(ValueError, match=r"buses \[88\].*not supplied"):
        Feeder.from_pandapower(net)
    # supply bus 88 from elsewhere so the open cable only dangles
    pp.create_line(net, 18, 88, 0.05, "NAYY 4x50 SE", index=42)
    f = Feeder.from_pandapower(net)
    assert f.n_node == f.n_bus + 1  # one auxiliary node at the open end
    r = compare(net, f, f.p_kw_base, f.q_kvar_base)
    assert r.line_loading_pct[list(f.line_ids).index(40)] > 0


def test_meshed_network_is_rejected_naming_the_line():
    net = small_net()
    pp.create_line(net, 55, 18, 0.1, "NAYY 4x50 SE", index=99)
    with pytest.raises(ValueError, match="meshed.*line"):
        Feeder.from_pandapower(net)
    # ... but an open switch makes it radial again
    pp.create_switch(net, 18, 99, et="l", closed=False)
    f = Feeder.from_pandapower(net)
    compare(net, f, f.p_kw_base, f.q_kvar_base)


def test_two_external_grids_are_rejected():
    net = small_net()
    pp.create_ext_grid(net, 55)
    with pytest.raises(ValueError, match="exactly one in-service external grid"):
        Feeder.from_pandapower(net)


def test_missing_rating_is_rejected_naming_the_line():
    net = small_net()
    net.line.loc[20, "max_i_ka"] = np.nan
    with pytest.raises(ValueError, match="line 20: max_i_ka"):
        Feeder.from_pandapower(net)
    net = small_net()
    net.trafo.loc[9, "sn_mva"] = np.nan
    with pytest.raises(ValueError, match="trafo 9: sn_mva"):
        Feeder.from_pandapower(net)


def test_islanding_open_switch_and_unsupported_elements_are_rejected():
    net = small_net()
    pp.create_switch(net, 3, 20, et="l", closed=False)  # cuts bus 55 off
    with pytest.raises(ValueError, match=r"buses \[55\].*not supplied"):
        Feeder.from_pandapower(net)
    net = small_net()
    pp.create_gen(net, 55, p_mw=0.01, vm_pu=1.0)
    with pytest.raises(ValueError, match="gen 0.*not supported"):
        Feeder.from_pandapower(net)
    net = small_net()
    pp.create_transformer(net, 100, 42, "0.4 MVA 20/0.4 kV")
    with pytest.raises(ValueError, match="exactly one in-service transformer"):
        Feeder.from_pandapower(net)


def test_ieee_european_lv_balanced_equivalent():
    net = pn.ieee_european_lv_asymmetric()
    f = Feeder.from_pandapower(net)
    assert f.n_bus == 907 and len(f.load_buses) == 55
    total_kw = 1e3 * net.asymmetric_load[["p_a_mw", "p_b_mw", "p_c_mw"]].to_numpy().sum()
    assert f.p_kw_base.sum() == pytest.approx(total_kw)


def test_synthetic_is_deterministic_and_radial():
    a = Feeder.synthetic(150, seed=11)
    b = Feeder.synthetic(150, seed=11)
    c = Feeder.synthetic(150, seed=12)
    assert a.n_bus == 150 and a.n_line == 148 and a.n_node == 150
    for fld in dataclasses.fields(Feeder):
        va, vb = getattr(a, fld.name), getattr(b, fld.name)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=fld.name)
            assert va.tobytes() == vb.tobytes()
        else:
            assert va == vb, fld.name
    assert not np.array_equal(a.branch_r_pu, c.branch_r_pu)
    assert set(a.line_type) <= set(LV_CABLES)
    assert len(a.load_buses) > 50
    rng = np.random.default_rng(0)
    p = np.zeros(a.n_bus)
    p[a.load_buses] = rng.uniform(0, 5, len(a.load_buses))
    ra, rb = powerflow.solve(a, p, 0.3 * p), powerflow.solve(b, p, 0.3 * p)
    assert ra.vm_pu.tobytes() == rb.vm_pu.tobytes()


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_buses"):
        Feeder.synthetic(3, seed=0)
    with pytest.raises(ValueError, match="cable type"):
        Feeder.synthetic(20, seed=0, branch_cable="copper wire")
