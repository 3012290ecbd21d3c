"""SB3 training scripts in smoke mode (subprocess, a few dozen decisions) and the shipped checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "baselines" / "checkpoints" / "manifest.json"


def run(*args, timeout=300):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_train_price_driven_ppo_smoke(tmp_path):
    out = run("baselines/sb3/train_planning.py", "--smoke", "--algo", "ppo", "--out", tmp_path)
    result = json.loads((tmp_path / "price_driven_aggregator_ppo" / "result.json").read_text())
    assert np.isfinite(result["test_score_mean"]) and result["baselines"]["rule-based"]["score"] is not None
    assert (tmp_path / "price_driven_aggregator_ppo" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "price_driven_aggregator_ppo" / "seed0.zip").exists()
    assert "test score" in out


@pytest.mark.parametrize("env_id, role, algo", [("Iterative-Tariff-Teaching10-v0", "aggregator", "sac"),
                                                ("PriceDriven-Tariff-Teaching10-v0", "dso", "ppo")])
def test_train_planning_other_settings_smoke(tmp_path, env_id, role, algo):
    run("baselines/sb3/train_planning.py", "--smoke", "--env-id", env_id, "--role", role, "--algo", algo, "--out", tmp_path)
    (result,) = tmp_path.glob("*/result.json")
    assert json.loads(result.read_text())["config"]["role"] == role


def test_train_tariff_joint_smoke(tmp_path):
    out = run("baselines/sb3/train_tariff_joint.py", "--smoke", "--out", tmp_path)
    assert "both learned" in out and (tmp_path / "seed0" / "dso.zip").exists() and (tmp_path / "seed0" / "aggregator.zip").exists()
    result = json.loads((tmp_path / "result.json").read_text())
    assert np.isfinite(result["runs"][0]["test"]["both learned"]["score"])
    assert (tmp_path / "curves_dso.png").stat().st_size > 1000
    assert "| tariff_joint_ppo | PriceDriven-Tariff-Teaching10-v0 | aggregator + DSO |" in run("baselines/sb3/report.py", tmp_path)


def test_train_prosumers_shared_smoke(tmp_path):
    out = run("baselines/sb3/train_prosumers_shared.py", "--smoke", "--out", tmp_path)
    assert "energy boxes" in out and (tmp_path / "seed0.zip").exists()
    result = json.loads((tmp_path / "result.json").read_text())
    assert [p["steps"] for p in result["runs"][0]["curve"]] == [1280, 2560]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert "| prosumers_shared_ppo | MaxPower-Isolated-Teaching10-v0 |" in run("baselines/sb3/report.py", tmp_path)


@pytest.mark.parametrize("agent", ["aggregator_1", "dso"])
def test_day_decision_views_pass_check_env(agent):
    """The day-as-one-decision view of either planner, on the PettingZoo env's single-agent view."""
    from gymnasium.utils.env_checker import check_env

    from baselines.sb3.envs import DayDecision
    from flexenv.wrappers import single_agent

    env = DayDecision(single_agent("PriceDriven-Tariff-Teaching10-v0", agent, reward="system"))
    check_env(env, skip_render_check=True)
    env.reset(seed=7)
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert terminated and reward == pytest.approx(info["j_nocontrol_eur"] - info["j_eur"])


def test_planning_agent_plays_a_model_for_the_other_planner():
    """`planning_agent` acts for the DSO at its planning step with the model's tariff, built-in otherwise."""
    import flexenv
    from baselines.sb3.envs import planning_agent

    class Constant:  # an SB3-like model: the highest tariff in every hour
        def predict(self, obs, deterministic=True):
            return np.ones((obs.shape[0], 24), np.float32), None

    env = flexenv.make("PriceDriven-Tariff-Teaching10-v0")
    obs, _ = env.reset(seed=3)
    models = {}
    act = planning_agent(env, "dso", models)
    builtin = env.builtin["dso"](obs["dso"][None])[0]
    np.testing.assert_array_equal(act(obs["dso"]), builtin.astype(np.float32))  # no model yet
    models["dso"] = Constant()
    tariff = act(obs["dso"])
    assert not np.array_equal(tariff, builtin.astype(np.float32)) and tariff.max() == 1.0


def test_shipped_checkpoints_load_and_act():
    from baselines.leaderboard import resolve_policy
    from baselines.sb3.envs import DECISION_PHASE, cached_engine
    from flexenv.envs.registry import scenario_for

    entries = json.loads(MANIFEST.read_text())["checkpoints"]
    assert entries
    for entry in entries:
        for key in ("name", "env_id", "algorithm", "command", "seed", "steps", "score", "score_spread", "versions"):
            assert key in entry, (entry["name"], key)
        for file in entry["files"].values():
            size = (MANIFEST.parent / file).stat().st_size
            assert 10_000 < size < 1_000_000, (file, size)
        factory = resolve_policy(f"baselines.sb3.policy:{entry['name']}")  # the leaderboard's spec
        engine = cached_engine(scenario_for(entry["env_id"]), 2)
        act = factory(engine)
        obs = engine.reset([5, 6])
        role = entry["role"]
        phase = "operate" if entry["kind"] == "shared_prosumer" else DECISION_PHASE[role]
        while engine.current.phase != phase:
            obs, _, _ = engine.step(act(engine, obs))
        actions = act(engine, obs)[role]
        per_agent = (engine.P,) if role == "prosumer" else ()
        assert actions.shape == (2, *per_agent, engine.action_layout[role].size) and np.all(np.abs(actions) <= 1)
        assert np.ptp(actions) > 0  # the model acts: not an all-zero (or constant) curve
