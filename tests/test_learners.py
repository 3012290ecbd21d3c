"""`flexenv.wrappers.learners`: a PettingZoo view of some agents, the others built-in (or given)."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

import flexenv
from flexenv.wrappers import learners

ENV_ID = "MaxPower-Tariff-Teaching10-v0"


def test_prosumer_team_passes_the_parallel_api():
    team = learners(ENV_ID, "prosumers")
    assert team.possible_agents == [f"prosumer_{i}" for i in range(10)]
    parallel_api_test(team, num_cycles=150)
    parallel_seed_test(lambda: learners(ENV_ID, "prosumers"))


def test_builtin_team_reproduces_the_full_env_and_system_reward_sums_to_the_system_cost():
    """Learners that play the built-in actions give the full env's trajectory; with reward="system"
    the team's rewards add up to minus the step's system cost."""
    env = flexenv.make(ENV_ID)
    team = learners(flexenv.make(ENV_ID), ["aggregator_1", "dso"], reward="system")
    obs_full, _ = env.reset(seed=1000001)
    obs_team, _ = team.reset(seed=1000001)
    steps = 0
    while env.agents:
        acts = env.builtin_actions(obs_full)
        obs_full, _, _, _, infos = env.step(acts)
        obs_team, rewards, terms, _, _ = team.step({a: acts[a] for a in team.agents})
        for a in ("aggregator_1", "dso"):
            np.testing.assert_array_equal(obs_team[a], obs_full[a])
        assert sum(rewards.values()) == pytest.approx(-infos["dso"]["system_cost_eur"], rel=1e-12, abs=1e-12)
        steps += 1
    assert not team.agents and all(terms.values()) and steps == len(env.engine.schedule)


def test_others_replace_builtin_policies():
    """A DSO that publishes the highest tariff changes what the aggregator observes."""
    def run(others):
        team = learners(ENV_ID, ["aggregator_1"], others=others)
        obs, _ = team.reset(seed=3)
        zero = np.zeros(team.action_space("aggregator_1").shape, np.float32)
        for _ in range(3):
            obs, *_ = team.step({"aggregator_1": zero})
        return obs["aggregator_1"]

    env = flexenv.make(ENV_ID)
    high = {"dso": lambda obs: np.ones(env.action_space("dso").shape, np.float32)}
    assert not np.array_equal(run(None), run(high))


def test_bad_learner_sets_and_actions_raise():
    with pytest.raises(ValueError, match="not agents"):
        learners(ENV_ID, ["prosumer_99"])
    with pytest.raises(ValueError, match="prosumers are not agents"):
        learners("Gateway-Tariff-Teaching10-v0", "prosumers")
    with pytest.raises(ValueError, match="reward"):
        learners(ENV_ID, "prosumers", reward="happiness")
    with pytest.raises(ValueError, match="not learners"):
        learners(ENV_ID, ["dso"], others={"dso": lambda o: o})
    team = learners(ENV_ID, "prosumers")
    team.reset(seed=0)
    with pytest.raises(ValueError, match="no action"):
        team.step({"prosumer_0": np.zeros(team.action_space("prosumer_0").shape)})


def test_supersuit_turns_the_prosumer_team_into_an_sb3_vec_env():
    """Parameter sharing the PettingZoo way: every prosumer is one slot of an SB3 VecEnv."""
    ss = pytest.importorskip("supersuit")
    vec = ss.pettingzoo_env_to_vec_env_v1(learners(ENV_ID, "prosumers", reward="system"))
    vec = ss.concat_vec_envs_v1(vec, 2, num_cpus=0, base_class="stable_baselines3")
    assert vec.num_envs == 20
    vec.venv.reset(seed=0)  # SuperSuit's SB3 adapter has no seed(): seed the copies (seeds 0 and 1) by a reset
    obs = vec.reset()
    assert obs.shape == (20,) + flexenv.make(ENV_ID).observation_space("prosumer_0").shape
    for _ in range(3):
        obs, rewards, dones, _ = vec.step(np.zeros((20,) + vec.action_space.shape, np.float32))
    assert np.all(np.isfinite(rewards)) and not dones.any()
