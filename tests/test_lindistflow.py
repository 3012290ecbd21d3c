"""LinDistFlow error against the AC power flow, with stated bounds.

Stated bounds (measured on pandapower's Kerber Landnetz (cable), Dorfnetz, Vorstadtnetz, IEEE European
LV (balanced), Dickert and a synthetic feeder):
* stressed cases (heavy evening load or PV feed-in, 0.88 <= vm <= 1.12, up to ~180 % loading):
  |dvm| <= 0.02 p.u. linearised at no load and <= 0.01 p.u. linearised at a nearby operating point;
  branch loading error <= 15 % of the peak AC loading (neglected losses dominate);
* moderate mixed cases: |dvm| <= 0.002 p.u., loading error <= 1.5 percentage points.
The error is second order: scaling the injections by 0.1 shrinks it by more than 20x.
"""

import zlib

import numpy as np
import pandapower.networks as pn
import pytest

from flexenv.physics import powerflow
from flexenv.physics.feeder import Feeder
from flexenv.physics.lindistflow import lindistflow, lindistflow_error

NETWORKS = {
    "kerber_landnetz_kabel_1": pn.create_kerber_landnetz_kabel_1,
    "kerber_dorfnetz": pn.create_kerber_dorfnetz,
    "kerber_vorstadtnetz_kabel_1": pn.create_kerber_vorstadtnetz_kabel_1,
    "ieee_european_lv": pn.ieee_european_lv_asymmetric,
    "dickert": lambda: pn.create_dickert_lv_network(
        feeders_range="middle", linetype="cable", customer="multiple", case="average"),
}
_FEEDERS = {}


def feeder(name):
    if name not in _FEEDERS:
        _FEEDERS[name] = Feeder.synthetic(200, seed=1) if name == "synthetic" else Feeder.from_pandapower(
            NETWORKS[name]())
    return _FEEDERS[name]


def injections(f, kind, rng):
    """Stressed (evening load / PV feed-in at the transformer rating) or moderate mixed injections."""
    s_kva = f.branch_i_rated_to_ka[-1] * np.sqrt(3) * f.bus_vn_kv[f.branch_to_bus[-1]] * 1e3
    loads = f.load_buses
    share = s_kva / len(loads) * rng.uniform(0.3, 1.7, len(loads))
    p = np.zeros(f.n_bus)
    q = np.zeros(f.n_bus)
    sign = {"evening": 1.3, "pv": -1.2}.get(kind)
    if sign is None:
        p[loads] = share * rng.uniform(-0.5, 0.5, len(loads))
    else:
        p[loads] = sign * share
    q[loads] = 0.2 * np.abs(p[loads])
    for scale in (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12):
        r = powerflow.solve(f, p * scale, q * scale, warn=False)
        if r.converged and 0.88 <= r.vm_pu.min() and r.vm_pu.max() <= 1.12:
            return p * scale, q * scale, r
    raise AssertionError("no physical scaling found")


@pytest.mark.parametrize("name", [*NETWORKS, "synthetic"])
def test_lindistflow_error_vs_ac_is_within_stated_bounds(name):
    f = feeder(name)
    model = lindistflow(f)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for kind in ("evening", "pv"):
        p, q, ac = injections(f, kind, rng)
        err = lindistflow_error(model, p, q)
        peak = max(ac.line_loading_pct.max(), ac.trafo_loading_pct.max())
        assert peak > 50, "the case must be stressed"
        assert err["max_dvm_pu"] <= 0.02, (kind, err)
        assert err["max_dloading_pct"] <= 0.15 * peak, (kind, err, peak)
        # linearised around a nearby operating point (e.g. the previous PTU's AC solution)
        near = powerflow.solve(f, 0.9 * p, 0.9 * q).vm_pu
        err_near = lindistflow_error(lindistflow(f, vm_ref_pu=near), p, q)
        assert err_near["max_dvm_pu"] <= 0.01, (kind, err_near)
    p, q, _ = injections(f, "mixed", rng)
    err = lindistflow_error(model, p, q)
    assert err["max_dvm_pu"] <= 0.002 and err["max_dloading_pct"] <= 1.5, err


def test_error_is_second_order_and_model_is_linear():
    f = feeder("kerber_dorfnetz")
    model = lindistflow(f)
    p, q, _ = injections(f, "evening", np.random.default_rng(1))
    big = lindistflow_error(model, p, q)
    small = lindistflow_error(model, 0.1 * p, 0.1 * q)
    assert small["max_dvm_pu"] < big["max_dvm_pu"] / 20
    assert small["max_dp_flow_kw"] < big["max_dp_flow_kw"] / 20
    # exactly linear and batched like the injections
    both = model.vm_pu(np.stack([p, 2 * p]), np.stack([q, 2 * q]))
    np.testing.assert_allclose(both[1] - model.vm0_pu, 2 * (both[0] - model.vm0_pu), rtol=1e-12, atol=1e-15)
    # flows: the transformer carries the sum of all injections (plus shunt losses at no load)
    assert model.branch_p_kw(p)[-1] == pytest.approx(p.sum() + model.branch_p0_kw[-1])
    assert model.flow_incidence[-1].sum() == f.n_bus - 1  # everything but the slack bus


def test_bad_reference_voltage_is_rejected():
    f = feeder("kerber_dorfnetz")
    with pytest.raises(ValueError, match="vm_ref_pu"):
        lindistflow(f, vm_ref_pu=np.ones(f.n_bus - 1))
