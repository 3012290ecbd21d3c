"""The fused per-step kernels give exactly the numbers of the numpy expressions they replace, and the
fast paths of one environment (serial household kernel, remembered policy actions) change nothing."""

import numpy as np
import pytest

import flexenv
from flexenv import engine as eng
from flexenv.models import links as lk
from flexenv.physics import household

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 100.0, 60.0, 80.0])


def _random(rng, shape, scale=2.0):
    x = rng.normal(scale=scale, size=shape)
    mask = rng.random(shape) < 0.2
    x[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
    return x


def test_grid_state_matches_numpy():
    rng = np.random.default_rng(0)
    bins = np.array([60.0, 80.0, 100.0])
    for n_line in (0, 1, 7):
        for _ in range(200):
            B, n_bus = 3, 6
            vm = 1.0 + _random(rng, (B, n_bus), 0.05)
            lv = np.array([1, 2, 4, 5])
            line = np.abs(_random(rng, (B, n_line), 60.0))
            trafo = np.abs(_random(rng, (B,), 60.0))
            v_min, v_max, line_max, trafo_max = 0.95, 1.05, 100.0, 45.0
            viol, over, light = eng._grid_state(vm, lv, v_min, v_max, line, line_max, trafo, trafo_max, bins)
            ref_viol = ((vm[:, lv] < v_min) | (vm[:, lv] > v_max)).sum(axis=1)
            worst = np.maximum((line / line_max * 100).max(axis=1, initial=0.0), trafo / trafo_max * 100)
            ref_light = np.digitize(worst, bins)
            ref_light = np.where(ref_viol > 0, np.maximum(ref_light, 2), ref_light)
            assert viol.dtype == ref_viol.dtype and np.array_equal(viol, ref_viol)
            assert np.array_equal(over, worst > 100.0)
            assert light.dtype == ref_light.dtype and np.array_equal(light, ref_light)


def test_clip_kernels_match_numpy():
    rng = np.random.default_rng(1)
    for shape in ((1, 7), (3, 4, 9)):
        v = _random(rng, shape, 2000.0)
        out = eng._clip_float32(v, eng.OBS_BOUND)
        ref = np.clip(v, -eng.OBS_BOUND, eng.OBS_BOUND).astype(np.float32)
        assert out.dtype == np.float32 and out.shape == ref.shape
        assert np.array_equal(out, ref, equal_nan=True)
        assert np.array_equal(np.signbit(out), np.signbit(ref))
    a = rng.normal(scale=2.0, size=(3, 11))
    a[0, 0] = -0.0
    clipped, outside, finite = eng._clip_actions(a)
    assert finite and np.array_equal(clipped, np.clip(a, -1.0, 1.0)) and np.array_equal(np.signbit(clipped), np.signbit(a))
    assert np.array_equal(outside, (np.abs(a) > 1.0).sum(axis=1).astype(float))
    a[1, 3] = np.nan
    assert not eng._clip_actions(a)[2]


def _decode_reference(action, scale, pv_avail_kw):
    a = np.clip(action, -1.0, 1.0)
    out = np.empty(a.shape)
    bat = a[..., 0]
    out[..., 0] = np.where(bat >= 0, bat * scale["battery_charge_kw"], bat * scale["battery_discharge_kw"])
    out[..., 1] = a[..., 1] * scale["ev_kw"]
    out[..., 2] = lk.unit(a[..., 2]) * scale["heat_pump_kw"]
    out[..., 3] = lk.unit(a[..., 3]) * pv_avail_kw
    out[..., 4] = a[..., 4]
    return out


def test_decode_setpoints_matches_numpy():
    rng = np.random.default_rng(2)
    P = 6
    scale = {k: rng.uniform(0, 10, P) for k in ("battery_charge_kw", "battery_discharge_kw", "ev_kw", "heat_pump_kw")}
    scale["ev_kw"][0] = 0.0
    for shape in ((P, 5), (3, P, 5)):
        a = _random(rng, shape, 1.5)
        pv = rng.uniform(0, 5, shape[:-1])
        out = lk.decode_setpoints(a, scale, pv)
        ref = _decode_reference(a, scale, pv)
        assert np.array_equal(out, ref, equal_nan=True)
        assert np.array_equal(np.signbit(out), np.signbit(ref))


@pytest.mark.parametrize("env_id", ["PriceDriven-Tariff-Teaching10-v0", "Gateway-Tariff-Rural40-v0"])
def test_fast_paths_change_nothing(env_id):
    """One environment with the serial household kernel and remembered policy actions steps exactly
    as one with the parallel kernel and the policies recomputed at every step."""
    from flexenv.physics.household import operate_kernel

    fast, slow = flexenv.make(env_id), flexenv.make(env_id)
    slow.engine._operate_kernel = operate_kernel
    for policy in slow.builtin.values():
        policy._memo = None
    obs, _ = fast.reset(seed=1_000_123)
    obs_slow, _ = slow.reset(seed=1_000_123)
    while fast.agents:
        actions, actions_slow = fast.builtin_actions(obs), slow.builtin_actions(obs_slow)
        assert actions.keys() == actions_slow.keys()
        assert all(np.array_equal(actions[a], actions_slow[a]) for a in actions)
        obs, rewards, _, _, infos = fast.step(actions)
        obs_slow, rewards_slow, _, _, infos_slow = slow.step(actions_slow)
        assert all(np.array_equal(obs[a], obs_slow[a]) for a in obs)
        assert rewards == rewards_slow and infos == infos_slow


def test_plan_observation_equals_plan_actions():
    env = flexenv.make("PriceDriven-Tariff-Teaching10-v0")
    obs, _ = env.reset(seed=3)
    e = env.engine
    field = e.obs_layout["prosumer"].fields["plan"]
    while env.agents:
        if e.current.phase == "operate":
            expected = e.plan_actions(e.current.index).astype(np.float32)[0]
            got = np.array([obs[a][field.start:field.stop] for a in env._prosumer_ids])
            assert np.array_equal(got, expected)
        obs = env.step(env.builtin_actions(obs))[0]


def test_look_ahead_observation_is_the_next_ptus_of_the_day():
    # the five look-ahead fields of a prosumer hold the next OBS_HORIZON_PTU PTUs of its signals and
    # forecasts, the day's last PTU repeated beyond the end of the day
    from flexenv.engine import OBS_BOUND, OBS_HORIZON_PTU

    env = flexenv.make("PriceDriven-Tariff-Teaching10-v0")
    obs, _ = env.reset(seed=5)
    e = env.engine
    lay = e.obs_layout["prosumer"].fields
    names = ("import_price", "export_price", "import_cap", "load_forecast", "pv_forecast")
    seen_end = False
    while env.agents:
        if e.current.phase == "operate":
            t, T = e.current.index, e.ppd
            k = np.minimum(t + np.arange(OBS_HORIZON_PTU), T - 1)
            day = [e.signals.import_price[0], e.signals.export_price[0], np.minimum(e.day_ahead_cap[0], 50.0) / 50.0,
                   e.load_forecast_kw[0][:, e.day_steps] / 10.0, e.pv_forecast_kw[0][:, e.day_steps] / 10.0]
            for name, values in zip(names, day):
                expected = np.clip(values[:, k], -OBS_BOUND, OBS_BOUND).astype(np.float32)
                got = np.array([obs[a][lay[name].start:lay[name].stop] for a in env._prosumer_ids])
                assert np.array_equal(got, expected), (name, t)
            seen_end |= t > T - OBS_HORIZON_PTU
        obs = env.step(env.builtin_actions(obs))[0]
    assert seen_end


def test_bad_action_names_the_agent():
    env = flexenv.make("PriceDriven-Tariff-Teaching10-v0")
    obs, _ = env.reset(seed=4)
    actions = env.builtin_actions(obs)
    actions["prosumer_3"] = actions["prosumer_3"].copy()
    actions["prosumer_3"][1] = np.nan
    with pytest.raises(ValueError, match="prosumer_3"):
        env.step(actions)
    actions = env.builtin_actions(obs)
    del actions["dso"]
    with pytest.raises(ValueError, match="no action for agent 'dso'"):
        env.step(actions)
    actions = env.builtin_actions(obs)
    actions["aggregator_1"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="aggregator_1"):
        env.step(actions)


def test_device_states_match_numpy():
    rng = np.random.default_rng(5)
    B, P, T, dt = 2, 9, 96, 0.25
    for t in (0, 30, 95):
        battery, inv_b = rng.uniform(0, 10, (B, P)), rng.uniform(0, 1, P)
        need, inv_e = rng.normal(5, 10, (B, P)), rng.uniform(0, 1, P)
        arrival, departure = rng.integers(0, T, (B, P)), rng.integers(0, T + 1, (B, P))
        temp, t_min, inv_band = rng.normal(20, 2, (B, P)), rng.normal(19, 1, P), rng.uniform(0.1, 1, P)
        t_out = rng.normal(5, 5, B)
        start, earliest, latest = rng.integers(-1, 3, (B, P)), rng.integers(0, T + 1, (B, P)), rng.integers(0, T + 1, (B, P))
        devices = np.zeros((B, P, 15))
        eng._device_states(devices, t, T, dt, battery, inv_b, need, inv_e, arrival, departure, temp, t_min, inv_band,
                           t_out, start, earliest, latest)
        present = (arrival <= t) & (t < departure)
        pending = (start < 0) & (earliest < T)
        ref = np.zeros((B, P, 15))
        ref[..., 3] = battery * inv_b
        ref[..., 6] = present
        ref[..., 7] = need * inv_e * present
        ref[..., 8] = np.where(present, (departure - t) * dt / 24.0, 0.0)
        ref[..., 10] = (temp - t_min) * inv_band
        ref[..., 11] = t_out[:, None] / 20.0
        ref[..., 13] = pending
        ref[..., 14] = np.where(pending, np.maximum(latest - t, 0) * dt / 24.0, 0.0)
        assert np.array_equal(devices, ref) and np.array_equal(np.signbit(devices), np.signbit(ref))


def test_prosumer_terms_match_numpy():
    from flexenv.market.settlement import energy_cost_eur

    rng = np.random.default_rng(6)
    B, dt = 2, 0.25
    for i in range(50):
        P = (3, 8, 10, 40, 130)[i % 5]  # the sums over prosumers: below, within and above numpy's blocks
        net, uncapped, cap_cut = _random(rng, (B, P), 5), _random(rng, (B, P), 5), np.abs(_random(rng, (B, P), 2))
        imp_cap, exp_cap, dso_cap = (np.abs(_random(rng, (B, P), 5)) for _ in range(3))
        tan_phi, load, power = rng.uniform(0, 0.5, P), _random(rng, (B, P), 2), _random(rng, (B, P, 5), 3)
        bill_i, bill_e, tariff = (rng.uniform(-0.1, 0.4, (B, P)) for _ in range(3))
        comfort, unmet = np.abs(_random(rng, (B, P), 1)), np.abs(_random(rng, (B, P), 1))
        got = eng._prosumer_terms(dt, net, uncapped, cap_cut, imp_cap, exp_cap, dso_cap, tan_phi, load, power,
                                  bill_i, bill_e, tariff, 0.5, comfort, 1.5, unmet)
        with np.errstate(all="ignore"):  # inf - inf among the special values
            dso_cut = np.minimum(np.maximum(np.minimum(uncapped, imp_cap) - dso_cap, 0.0)
                                 + np.maximum(np.minimum(-uncapped, exp_cap) - dso_cap, 0.0), cap_cut)
            ref = (dso_cut, tan_phi * (load + power[..., 2] + power[..., 4]), energy_cost_eur(net, bill_i, bill_e, dt),
                   np.maximum(net, 0.0) * tariff * dt, 0.5 * comfort + 1.5 * unmet)
            ref = ref + (ref[2].sum(axis=1), ref[3].sum(axis=1), ref[4].sum(axis=1), net.sum(axis=1))
        assert len(got) == len(ref)
        for x, y in zip(got, ref):
            # the same floats and signed zeros; a NaN's sign bit depends on numpy's SIMD path, not checked
            number = ~np.isnan(y)
            assert np.array_equal(x, y, equal_nan=True) and np.array_equal(np.signbit(x)[number], np.signbit(y)[number])


@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 15, 16, 17, 40, 127, 128, 129, 130, 255, 256, 257, 300, 1000, 1234])
def test_pairwise_sum_is_numpy_sum(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        x = rng.normal(size=n) * 10.0 ** rng.uniform(-6, 6, n)  # magnitudes apart: the order of additions shows
        assert eng._np_sum(x) == x.sum() and np.signbit(eng._np_sum(x)) == np.signbit(x.sum())
    for special in (np.full(n, -0.0), _random(rng, (n,))):
        with np.errstate(invalid="ignore"):
            ref = special.sum()
        got = eng._np_sum(special)
        assert (np.isnan(got) and np.isnan(ref)) or (got == ref and np.signbit(got) == np.signbit(ref))


def test_accumulate_elementwise_matches_numpy():
    rng = np.random.default_rng(7)
    B, P, dt = 3, 5, 0.25
    totals = [_random(rng, (B, P)) if i < 3 else _random(rng, (B,)) for i in range(17)]
    ref = [x.copy() for x in totals]
    prosumer, comfort, unmet, curtailed, cap_cut, breach, net = (_random(rng, (B, P)) for _ in range(7))
    agg, dso, market, clipped, losses, trafo = (_random(rng, (B,)) for _ in range(6))
    overloaded, converged = rng.random(B) < 0.5, rng.random(B) < 0.5
    violations = rng.integers(0, 3, B)
    eng._accumulate_elementwise(dt, totals[0], prosumer, totals[3], agg, totals[4], dso, totals[5], market, totals[6], clipped,
                                totals[1], comfort, totals[2], unmet, totals[7], losses, totals[8], trafo, totals[9],
                                totals[10], overloaded, totals[11], violations, totals[6], converged, totals[12], curtailed,
                                totals[13], cap_cut, totals[14], breach, totals[15], totals[16], net)
    with np.errstate(invalid="ignore"):  # inf - inf among the special values
        ref[12] += curtailed.sum(axis=1) * dt
        ref[13] += cap_cut.sum(axis=1) * dt
        ref[14] += breach.sum(axis=1) * dt
        ref[15] += np.maximum(net, 0).sum(axis=1) * dt
        ref[16] += np.maximum(-net, 0).sum(axis=1) * dt
    ref[0] += prosumer
    ref[1] += comfort
    ref[2] += unmet
    ref[3] += agg
    ref[4] += dso
    ref[5] += market
    ref[6] += clipped
    ref[7] += losses * dt
    ref[8] = np.maximum(ref[8], trafo)
    ref[9] += overloaded
    ref[10] += overloaded | (violations > 0)
    ref[11] += violations
    ref[6] += ~converged
    for x, y in zip(totals, ref):
        assert np.array_equal(x, y, equal_nan=True) and np.array_equal(np.signbit(x), np.signbit(y))


def test_nocontrol_day_equals_the_household_kernel_ptu_by_ptu():
    """The no-control day is simulated in one numba loop over the PTUs; it equals calling the batched
    household kernel from Python PTU by PTU, and a batch row equals the same seed alone."""
    scenario = flexenv.make("Gateway-Tariff-Rural40-v0").scenario
    one, two = eng.Engine(scenario, batch_size=1), eng.Engine(scenario, batch_size=2)
    one.reset([11])
    two.reset([11, 12])
    e, d, steps = two, two.day, two.day_steps
    B, P, T = e.B, e.P, e.ppd
    state = (e.battery_kwh.copy(), e.ev_need_kwh.copy(), e.indoor_temp_degc.copy(), e.app_start.copy())
    net, power = np.empty((B, P, T)), np.empty((B, P, T, len(eng.DEVICE_ORDER)))
    inf = np.full((B, P), np.inf)
    for t in range(T):
        g = steps.start + t
        out = household.operate_kernel(
            t, e.dt_h, e.load_forecast_kw[:, :, g], e.pv_forecast_kw[:, :, g], e.t_out_degc[:, g], e.cop[:, :, g],
            e.ev_arrival[:, :, d], e.ev_departure[:, :, d], e.ev_energy_kwh[:, :, d], e.app_earliest[:, :, d],
            e.app_latest[:, :, d], *e._kernel_params(), *state, np.zeros((B, P, len(eng.DEVICE_ORDER))),
            np.ones((B, P, len(eng.DEVICE_ORDER)), dtype=bool), inf, inf)
        state = out[:4]
        power[:, :, t], net[:, :, t] = out[4], out[5]
    for x, y in zip(two._simulate_nocontrol(), (net, power, state[3])):
        assert np.array_equal(x, y)
    for x, y in zip(one._simulate_nocontrol(), two._simulate_nocontrol()):
        assert np.array_equal(x[0], y[0])


def test_count_changed_caps_matches_numpy():
    rng = np.random.default_rng(8)
    for _ in range(100):
        old = np.abs(_random(rng, (3, 7), 5.0))
        new = np.where(rng.random((3, 7)) < 0.5, old * (1 + rng.choice([0.0, 1e-7, 1e-5, 1e-3], (3, 7))), np.abs(_random(rng, (3, 7), 5.0)))
        with np.errstate(all="ignore"):
            ref = (~np.isclose(new, old) & ~(np.isinf(new) & np.isinf(old))).sum(axis=1)
        got = eng._count_changed_caps(new, old)
        assert got.dtype == ref.dtype and np.array_equal(got, ref)
