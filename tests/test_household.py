"""The engine's fused household kernel against the standalone device kernels."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flexenv.physics import devices as dv
from flexenv.physics.household import APPLIANCE, BATTERY, EV, HEAT_PUMP, PV, operate_kernel


def _case(seed, B=3, P=6, T=96):
    rng = np.random.default_rng(seed)
    d = dv.random_devices(rng, P, T)
    t = int(rng.integers(0, T))
    state = dict(
        bat_e=rng.uniform(0, 1, (B, P)) * d.battery.capacity_kwh,
        ev_need=rng.uniform(0, 20, (B, P)),
        temp=rng.uniform(17, 24, (B, P)),
        app_start=np.where(rng.random((B, P)) < 0.3, rng.integers(0, T, (B, P)), -1).astype(np.int64),
    )
    exo = dict(load=rng.uniform(0.1, 3, (B, P)), pv=rng.uniform(0, 1, (B, P)) * d.pv.kwp, t_out=rng.uniform(-10, 15, B))
    cop = np.stack([dv.heat_pump_cop(np.full(1, x), d.heat_pump)[:, 0] for x in exo["t_out"]])
    requests = rng.uniform(-12, 12, (B, P, 5))
    requests[..., APPLIANCE] = rng.uniform(-1, 1, (B, P))
    return rng, d, t, state, exo, cop, requests


def _fused(d, t, state, exo, cop, requests, nocontrol, import_cap, export_cap, B):
    s = d.sessions
    tile = lambda x: np.broadcast_to(x, (B,) + x.shape).copy()  # noqa: E731
    return operate_kernel(
        t, 0.25, exo["load"], exo["pv"], exo["t_out"], cop,
        tile(s.arrival_ptu), tile(s.departure_ptu), tile(s.energy_needed_kwh),
        tile(d.appliance.earliest_start_ptu), tile(d.appliance.latest_start_ptu),
        *d.battery, d.ev.capacity_kwh, d.ev.p_max_kw, d.ev.eta_charge, d.ev.v2g,
        d.heat_pump.p_max_kw, d.heat_pump.r_k_per_kw, d.heat_pump.c_kwh_per_k, d.heat_pump.t_min_degc,
        d.heat_pump.t_max_degc, d.heat_pump.t_set_degc, d.appliance.profile_kw,
        state["bat_e"], state["ev_need"], state["temp"], state["app_start"], requests, nocontrol, import_cap, export_cap,
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_uncapped_fused_step_equals_the_device_kernels(seed):
    rng, d, t, state, exo, cop, requests = _case(seed)
    B, P = exo["load"].shape
    no = np.zeros((B, P, 5), dtype=bool)
    inf = np.full((B, P), np.inf)
    out = _fused(d, t, state, exo, cop, requests, no, inf, inf, B)
    new_e, new_need, new_temp, new_start, power, net = out[:6]
    used, _, _, _ = dv.pv_step(exo["pv"], requests[..., PV])
    s_start, p_app, _ = dv.appliance_step(t, state["app_start"], requests[..., APPLIANCE] > 0, d.appliance)
    e_need, p_ev, _, unmet = dv.ev_step(t, state["ev_need"], requests[..., EV], d.ev, d.sessions, 0.25)
    t_new, p_hp, _, viol = dv.heat_pump_step(state["temp"], requests[..., HEAT_PUMP], cop, exo["t_out"], d.heat_pump, 0.25)
    e_new, p_bat, _ = dv.battery_step(state["bat_e"], requests[..., BATTERY], d.battery, 0.25)
    np.testing.assert_array_equal(power[..., PV], -used)
    np.testing.assert_array_equal(power[..., APPLIANCE], p_app)
    np.testing.assert_array_equal(power[..., EV], p_ev)
    np.testing.assert_array_equal(power[..., HEAT_PUMP], p_hp)
    np.testing.assert_array_equal(power[..., BATTERY], p_bat)
    np.testing.assert_array_equal(new_e, e_new)
    np.testing.assert_array_equal(new_need, e_need)
    np.testing.assert_array_equal(new_temp, t_new)
    np.testing.assert_array_equal(new_start, s_start)
    np.testing.assert_array_equal(out[10], viol)
    np.testing.assert_array_equal(out[11], unmet)
    np.testing.assert_allclose(net, exo["load"] + power.sum(axis=-1), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), cap=st.floats(0.0, 5.0))
def test_caps_hold_unless_only_inflexible_load_is_left(seed, cap):
    rng, d, t, state, exo, cop, requests = _case(seed)
    B, P = exo["load"].shape
    no = np.zeros((B, P, 5), dtype=bool)
    caps = np.full((B, P), cap)
    out = _fused(d, t, state, exo, cop, requests, no, caps, caps, B)
    new_e, new_need, new_temp, new_start, power, net, _, cap_cut, breach = out[:9]
    assert np.all(net <= cap + breach + 1e-9) and np.all(-net <= cap + breach + 1e-9)
    imports = net > cap + 1e-9
    # an import breach only when battery, EV and heat pump no longer draw
    assert np.all(np.maximum(power[..., BATTERY], 0)[imports] < 1e-9)
    assert np.all(np.maximum(power[..., EV], 0)[imports] < 1e-9)
    assert np.all(power[..., HEAT_PUMP][imports] < 1e-9)
    # states follow the capped powers: the battery's energy matches its final power
    keep = (1 - d.battery.self_discharge_per_h) ** 0.25
    p = power[..., BATTERY]
    expected = np.where(p >= 0, keep * state["bat_e"] + 0.25 * d.battery.eta_charge * p,
                        keep * state["bat_e"] + 0.25 * p / d.battery.eta_discharge)
    expected = np.where(d.battery.capacity_kwh > 0, np.clip(expected, 0, d.battery.capacity_kwh), 0.0)
    np.testing.assert_allclose(new_e, expected, atol=1e-9)
    assert np.all(cap_cut >= -1e-9)


def test_no_control_devices_follow_their_default_behaviour():
    rng, d, t, state, exo, cop, requests = _case(7)
    B, P = exo["load"].shape
    everything = np.ones((B, P, 5), dtype=bool)
    inf = np.full((B, P), np.inf)
    power = _fused(d, t, state, exo, cop, requests, everything, inf, inf, B)[4]
    np.testing.assert_array_equal(-power[..., PV], exo["pv"])  # PV fully used
    expected_hp = dv.nocontrol_heat_pump_request(state["temp"], cop, exo["t_out"], d.heat_pump, 0.25)
    np.testing.assert_array_equal(power[..., HEAT_PUMP], expected_hp)  # thermostat
    _, p_ev, _, _ = dv.ev_step(t, state["ev_need"], dv.nocontrol_ev_request(d.ev, B), d.ev, d.sessions, 0.25)
    np.testing.assert_array_equal(power[..., EV], p_ev)  # full rate
    residual = exo["load"] + power[..., APPLIANCE] + power[..., EV] + power[..., HEAT_PUMP] + power[..., PV]
    _, p_bat, _ = dv.battery_step(state["bat_e"], -residual, d.battery, 0.25)
    np.testing.assert_array_equal(power[..., BATTERY], p_bat)  # self-consumption
