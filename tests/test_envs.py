"""API conformance of every registered environment, and the invariants every step must keep."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test

import flexenv
from flexenv.engine import Engine
from flexenv.envs.registry import ROLES, scenario_for
from flexenv.physics.household import BATTERY, EV, HEAT_PUMP, PV
from flexenv.wrappers import single_agent

ALL_IDS = flexenv.env_ids()


def test_registry_names_links_and_presets():
    assert len(ALL_IDS) == 32
    assert "PriceDriven-Tariff-Teaching10-v0" in ALL_IDS and "Gateway-Isolated-Suburban100-v0" in ALL_IDS
    scenario = scenario_for("Gateway-Isolated-Rural40-v0")
    assert scenario.links.prosumer.kind == "gateway" and scenario.links.dso.kind == "isolated"
    assert scenario.n_prosumers == 40
    with pytest.raises(ValueError, match="unknown environment id"):
        flexenv.make("Blockchain-Tariff-Teaching10-v0")


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_parallel_api(env_id):
    env = flexenv.make(env_id)
    parallel_api_test(env, num_cycles=200)
    parallel_seed_test(lambda: flexenv.make(env_id))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_single_agent_views_pass_check_env(env_id):
    env = flexenv.make(env_id)
    for agent in ("aggregator_1", "dso", "prosumer_0"):
        if agent not in env.possible_agents:
            continue
        view = single_agent(flexenv.make(env_id), agent)
        check_env(view, skip_render_check=True)


def test_gymnasium_registration():
    gym_ids = flexenv.envs.gym_ids()
    assert len(gym_ids) == 8 * 4 * 3 - 4 * 2  # no prosumer view in the gateway link
    env = gymnasium.make("flexenv/PriceDriven-Tariff-Teaching10-Aggregator-v0")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(ROLES) == {"Aggregator", "DSO", "Prosumer"}


def _random_episode(env_id, seed, **overrides):
    """Run one episode with random actions for every agent; yield (engine, info) per step."""
    env = flexenv.make(env_id, **overrides)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    while env.agents:
        actions = {a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.agents}
        phase = env.engine.current.phase
        obs, rewards, term, trunc, infos = env.step(actions)
        for value in list(obs.values()) + list(rewards.values()):
            assert np.all(np.isfinite(value)), "NaN or inf in observation or reward"
        yield env, phase, env._last_info, rewards


@pytest.mark.parametrize("env_id", ["PriceDriven-Tariff-Teaching10-v0", "Gateway-Isolated-Synthetic30-v0",
                                    "MaxPower-Isolated-Rural40-v0", "Iterative-Tariff-Teaching10-v0"])
def test_invariants_every_step_under_random_policies(env_id):
    for env, phase, info, rewards in _random_episode(env_id, seed=3):
        e = env.engine
        ledger = info["ledger"]
        # money balance: what one actor pays another receives; the market closes the sum
        assert abs(ledger.imbalance()[0]) < 1e-9
        if phase != "operate":
            continue
        k = info["kpis"]
        # feeder energy balance: prosumer net power + losses = power drawn through the transformer
        assert abs(k["net_kw"].sum() + k["losses_kw"][0] - k["p_slack_kw"][0]) < 1e-6
        # device limits
        power = k["device_kw"][0]
        assert np.all(power[:, BATTERY] <= e.battery.p_charge_max_kw + 1e-9)
        assert np.all(-power[:, BATTERY] <= e.battery.p_discharge_max_kw + 1e-9)
        assert np.all((e.battery_kwh[0] >= -1e-9) & (e.battery_kwh[0] <= e.battery.capacity_kwh + 1e-9))
        assert np.all(np.abs(power[:, EV]) <= e.ev.p_max_kw + 1e-9)
        assert np.all(power[e.ev.v2g == 0, EV] >= 0)
        assert np.all((power[:, HEAT_PUMP] >= 0) & (power[:, HEAT_PUMP] <= e.heat_pump.p_max_kw + 1e-9))
        g = info["day"] * e.ppd + info["index"]
        assert np.all((-power[:, PV] >= -1e-12) & (-power[:, PV] <= e.pv_avail_kw[0, :, g] + 1e-9))
        # caps hold wherever a device could absorb the excess
        import_cap, export_cap = k["import_cap_kw"][0], k["export_cap_kw"][0]
        assert np.all(k["net_kw"][0] <= import_cap + k["cap_breach_kw"][0] + 1e-9)
        assert np.all(-k["net_kw"][0] <= export_cap + k["cap_breach_kw"][0] + 1e-9)
        # the market flows follow the physics: day-ahead energy at the position, imbalance on the deviation
        dt, position = e.dt_h, k["position_kw"][0]
        assert ledger.flows["day_ahead"][0] == pytest.approx(position * e.day_ahead[0, g] * dt)
        deviation = k["net_kw"][0].sum() - position
        price = e.imbalance_short[0, g] if deviation > 0 else e.imbalance_long[0, g]
        assert ledger.flows["imbalance"][0] == pytest.approx(deviation * price * dt)
        net = k["net_kw"][0]
        bill = (np.maximum(net, 0) * e.signals.bill_import[0, :, info["index"]]
                - np.maximum(-net, 0) * e.signals.bill_export[0, :, info["index"]]).sum() * dt
        assert ledger.flows["retail_energy"][0] == pytest.approx(bill)
        # rewards are each actor's money (prosumers: minus their discomfort)
        assert rewards["aggregator_1"] == pytest.approx(ledger.aggregator[0])
        assert rewards["dso"] == pytest.approx(ledger.dso[0])


def test_same_seed_same_trajectory_bit_for_bit():
    def trajectory(seed):
        out = []
        for env, phase, info, rewards in _random_episode("Iterative-Tariff-Teaching10-v0", seed):
            out.append((env.engine.observe()["prosumer"].copy(), sorted(rewards.items())))
        return out

    a, b, c = trajectory(5), trajectory(5), trajectory(6)
    assert len(a) == len(b)
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_batched_engine_rows_equal_single_engines():
    scenario = scenario_for("PriceDriven-Isolated-Teaching10-v0")
    batched = Engine(scenario, batch_size=3)
    singles = [Engine(scenario, batch_size=1) for _ in range(3)]
    seeds = [11, 12, 13]
    obs_b = batched.reset(seeds)
    obs_s = [e.reset([s]) for e, s in zip(singles, seeds)]
    rng = np.random.default_rng(0)
    while not batched.done:
        acts = {role: rng.uniform(-1, 1, (3,) + ((batched.P,) if role == "prosumer" else ()) + (layout.size,))
                for role, layout in batched.action_layout.items()}
        obs_b, rew_b, _ = batched.step(acts)
        for i, e in enumerate(singles):
            obs_i, rew_i, _ = e.step({role: a[i : i + 1] for role, a in acts.items()})
            for role in obs_i:
                np.testing.assert_array_equal(obs_b[role][i], obs_i[role][0])
                np.testing.assert_array_equal(rew_b[role][i], rew_i[role][0])


def test_bad_actions_raise_and_out_of_bounds_are_clipped_and_counted():
    env = flexenv.make("PriceDriven-Isolated-Teaching10-v0")
    obs, _ = env.reset(seed=0)
    actions = env.builtin_actions(obs)
    wrong = dict(actions, aggregator_1=np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(wrong)
    nan = dict(actions, dso=np.full(env.action_space("dso").shape, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(nan)
    missing = {k: v for k, v in actions.items() if k != "dso"}
    with pytest.raises(ValueError, match="no action"):
        env.step(missing)
    big = dict(actions, aggregator_1=np.full(env.action_space("aggregator_1").shape, 5.0, dtype=np.float32))
    _, _, _, _, infos = env.step(big)
    assert infos["aggregator_1"]["clipped_actions"] == env.action_space("aggregator_1").shape[0]


def test_render_modes():
    env = flexenv.make("Gateway-Tariff-Teaching10-v0", render_mode="ansi")
    obs, _ = env.reset(seed=0)
    for _ in range(4):
        obs, *_ = env.step(env.builtin_actions(obs))
    text = env.render()
    assert "operate" in text and "prosumer" in text and "light" in text
    env = flexenv.make("Gateway-Tariff-Teaching10-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(env.builtin_actions(obs))
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0


def test_episode_summary_at_the_end():
    env = flexenv.make("MaxPower-Tariff-Teaching10-v0")
    obs, _ = env.reset(seed=0)
    while env.agents:
        obs, rewards, term, trunc, infos = env.step(env.builtin_actions(obs))
    summary = infos["aggregator_1"]["episode"]
    for key in ("aggregator_money_eur", "prosumer_bills_eur", "voltage_violations", "congested_ptus",
                "messages/aggregator-prosumers", "bytes/aggregator-prosumers", "losses_kwh", "ev_unmet_kwh"):
        assert key in summary
    money = summary["aggregator_money_eur"] + summary["dso_money_eur"] + summary["market_money_eur"] + summary["prosumer_money_eur"]
    assert abs(money) < 1e-6


def test_system_reward_sums_to_the_episode_system_cost():
    view = single_agent("PriceDriven-Tariff-Teaching10-v0", "aggregator_1", reward="system")
    obs, _ = view.reset(seed=3)
    total, done = 0.0, False
    while not done:
        obs, reward, done, truncated, info = view.step(np.zeros(view.action_space.shape, dtype=np.float32))
        total += reward
    assert total == pytest.approx(-view.env.engine.system_cost_eur()[0])
    with pytest.raises(ValueError, match="reward"):
        single_agent("PriceDriven-Tariff-Teaching10-v0", reward="happiness")


def test_reset_seed_is_the_episode_seed_and_training_draws_stay_below_test_days():
    env = flexenv.make("PriceDriven-Tariff-Teaching10-v0")
    _, infos = env.reset(seed=1000001)
    assert infos["aggregator_1"]["episode_seed"] == 1000001 and env.engine.seeds == [1000001]
    drawn = []
    for _ in range(5):
        _, infos = env.reset()
        drawn.append(infos["aggregator_1"]["episode_seed"])
    assert all(0 <= s < 1_000_000 for s in drawn) and len(set(drawn)) == 5


_EPISODE_DIGEST = """
import hashlib, sys
import numpy as np
import flexenv
env = flexenv.make(sys.argv[1])
obs, _ = env.reset(seed=1000001)
digest = hashlib.sha256()
while env.agents:
    obs, rewards, *_ = env.step(env.builtin_actions(obs))
    for agent in sorted(obs):
        digest.update(np.ascontiguousarray(obs[agent]).tobytes())
    digest.update(np.array([rewards[a] for a in sorted(rewards)]).tobytes())
feeder = env.engine.feeder
digest.update(np.ascontiguousarray(feeder.branch_r_pu).tobytes() + np.ascontiguousarray(feeder.branch_i_rated_from_ka).tobytes())
print(digest.hexdigest())
"""


@pytest.mark.parametrize("env_id", ["PriceDriven-Tariff-Teaching10-v0", "MaxPower-Isolated-Rural40-v0"])
def test_same_seed_same_trajectory_across_processes(env_id):
    """Bit for bit in fresh processes too: no state that differs per process (pandapower's Kerber
    feeders draw cable types with Python's `random`; hash seeds differ between processes)."""
    import subprocess
    import sys

    digests = {subprocess.run([sys.executable, "-c", _EPISODE_DIGEST, env_id], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": str(k)}).stdout.strip() for k in (1, 2)}
    assert len(digests) == 1 and len(digests.pop()) == 64
