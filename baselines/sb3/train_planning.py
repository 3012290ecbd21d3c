"""Train a planning-signal policy with SB3 (PPO or SAC), CleanRL-style: config at the top, one file.

Settings (issue 7), all the same script:
- aggregator price signal, price_driven:  --env-id PriceDriven-Tariff-Teaching10-v0 --role aggregator
- aggregator price revisions, iterative:  --env-id Iterative-Tariff-Teaching10-v0 --role aggregator
- DSO tariff, tariff link:                --env-id PriceDriven-Tariff-Teaching10-v0 --role dso

The day is a few decisions (`baselines.sb3.envs.PlanningVecEnv` on flexenv's batched engine): the
agent acts at its planning steps with `n_blocks` price (or tariff) levels, every other actor is
built-in. The reward is the system cost saved against no control on the same day (a benevolent
aggregator / DSO: the quantity the leaderboard scores; the single-agent view's `reward="system"`).
Training days are drawn below 1,000,000; validation days 900000..900015; test days are the suite's.

For every training seed: train, log KPIs (stdout, CSV, TensorBoard when installed), score on the
validation days every `eval_every` decisions, save the model; then score every seed's model on the
suite's test days next to no control, rule-based (built-in) and random; write learning curves
(PNG, mean ± std over seeds), and ship the checkpoint of the seed with the best validation score
with its manifest entry.

    python baselines/sb3/train_planning.py --algo ppo            # ~3 min per seed on one core
    python baselines/sb3/train_planning.py --algo ppo --smoke    # a few seconds, for tests
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from baselines.leaderboard import load_suite, random_policy
from baselines.sb3.common import (
    CHECKPOINTS,
    VALIDATION_DAYS,
    KPICallback,
    command_line,
    logger_formats,
    oracle_costs,
    plot_curves,
    score_policy,
    single_thread,
    summary_stats,
    update_manifest,
    versions,
)
from baselines.sb3.envs import PlanningVecEnv
from baselines.sb3.policy import planning_policy


@dataclasses.dataclass
class Config:
    env_id: str = "PriceDriven-Tariff-Teaching10-v0"
    role: str = "aggregator"  # "aggregator" (price signal) or "dso" (tariff)
    suite: str = "teaching_winter"  # test days for the final table (suite seeds ≥ 1,000,000)
    algo: str = "ppo"  # "ppo" or "sac"
    seeds: tuple = (0, 1, 2)
    decisions: int = 6144  # training decisions (planning steps) per seed; × ~97 env steps each
    n_envs: int = 16  # days simulated at once by the batched engine
    n_blocks: int = 24  # price levels per day (24 = hourly)
    eval_every: int = 1024
    name: str = ""  # checkpoint name; default "<link>_<role>_<algo>"
    out: str = "out/sb3"  # logs and every seed's model; the shipped one goes to baselines/checkpoints
    ship: bool = True
    smoke: bool = False  # tiny run for the tests: few decisions, 1 seed, 2 validation / 2 test days


def parse() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Config):
        if f.type == "bool" or isinstance(f.default, bool):
            parser.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        elif isinstance(f.default, tuple):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, nargs="+", default=list(f.default))
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    cfg = Config(**vars(parser.parse_args()))
    cfg.seeds = tuple(cfg.seeds)
    if not cfg.name:
        link = cfg.env_id.split("-")[0].lower().replace("pricedriven", "price_driven")
        cfg.name = f"{link}_{cfg.role}_{cfg.algo}"
    if cfg.smoke:
        cfg.seeds, cfg.decisions, cfg.n_envs, cfg.eval_every, cfg.ship = cfg.seeds[:1], 64, 8, 32, False
    return cfg


def make_model(cfg: Config, env, seed: int, log_dir: Path):
    gamma = 1.0  # a day has one decision per planning round; the reward comes at its end
    if cfg.algo == "ppo":
        model = PPO("MlpPolicy", env, n_steps=16, batch_size=64, n_epochs=10, learning_rate=3e-4, gamma=gamma,
                    gae_lambda=1.0, ent_coef=0.0, policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.0},
                    seed=seed, device="cpu")
    elif cfg.algo == "sac":
        model = SAC("MlpPolicy", env, buffer_size=20_000, learning_starts=256, batch_size=128, train_freq=1,
                    gradient_steps=2, learning_rate=1e-3, gamma=gamma, policy_kwargs={"net_arch": [64, 64]},
                    seed=seed, device="cpu")
    else:
        raise ValueError(f"algo {cfg.algo!r}: choose ppo or sac")
    model.set_logger(configure(str(log_dir), logger_formats()))
    return model


def main(cfg: Config) -> dict:
    single_thread()  # deterministic and polite on a shared 2-core machine
    out = Path(cfg.out) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    suite = load_suite(cfg.suite)
    if suite.env_id.split("-")[:2] != cfg.env_id.split("-")[:2]:
        print(f"note: suite {suite.name} is on {suite.env_id}; test days are scored on {cfg.env_id}")
    val_days = VALIDATION_DAYS[:2] if cfg.smoke else VALIDATION_DAYS
    test_days = suite.seeds[:2] if cfg.smoke else suite.seeds

    val_env = PlanningVecEnv(cfg.env_id, cfg.role, n_envs=len(val_days), n_blocks=cfg.n_blocks, days=val_days)
    val_oracle = np.array(oracle_costs(val_env.scenario, val_days))

    def validation_score(model) -> float:
        env = val_env
        obs, done = env.reset(), False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, dones, infos = env.step(action)
            done = dones.all()
        j = np.array([i["j_eur"] for i in infos])
        j_base = np.array([i["j_nocontrol_eur"] for i in infos])
        return float(100 * (j_base - j).sum() / (j_base - val_oracle).sum())

    runs = []
    for seed in cfg.seeds:
        t0 = time.time()
        env = VecMonitor(PlanningVecEnv(cfg.env_id, cfg.role, n_envs=cfg.n_envs, n_blocks=cfg.n_blocks, seed=seed))
        model = make_model(cfg, env, seed, out / f"seed{seed}")
        callback = KPICallback(validation_score, cfg.eval_every)
        model.learn(total_timesteps=cfg.decisions, callback=callback)
        path = out / f"seed{seed}.zip"
        model.save(path)
        runs.append({"seed": seed, "path": str(path), "curve": callback.curve, "train_s": round(time.time() - t0, 1),
                     "val_score": callback.curve[-1]["val_score"], "model": model})
        print(f"seed {seed}: {time.time() - t0:.0f} s, validation score {runs[-1]['val_score']:.1f}")

    # ---- test days: every seed's model, next to the baselines
    scenario = val_env.scenario
    table = {"rule-based": score_policy(scenario, test_days, "builtin"), "random": score_policy(scenario, test_days, random_policy)}
    table["no control"] = {"score": 0.0, "j_mean": float(np.mean(table["random"]["j_nocontrol"]))}
    for run in runs:
        run["test"] = score_policy(scenario, test_days, planning_policy({cfg.role: run.pop("model")}))
        print(f"seed {run['seed']}: test score {run['test']['score']:.1f}")
    mean, std = summary_stats([r["test"]["score"] for r in runs])
    val_base = score_policy(scenario, val_days, "builtin")["score"]
    plot_curves([r["curve"] for r in runs], out / "curves.png",
                f"{cfg.name}: {cfg.algo.upper()} on {cfg.env_id} ({cfg.role}), validation days {val_days[0]}..",
                "training decisions (days × planning rounds)",
                baselines={"val_score": {"rule-based": val_base, "no control": 0.0}, "episode_return": {"no control": 0.0}})
    result = {"config": dataclasses.asdict(cfg), "runs": runs, "test_days": list(test_days), "baselines": table,
              "test_score_mean": mean, "test_score_std": std, "versions": versions(), "command": command_line()}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"{cfg.name}: test score {mean:.1f} ± {std:.1f} over seeds {list(cfg.seeds)}; "
          f"rule-based {table['rule-based']['score']:.1f}, random {table['random']['score']:.1f}, no control 0")

    if cfg.ship:
        best = max(runs, key=lambda r: r["val_score"])  # chosen on validation days, not on test days
        CHECKPOINTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(best["path"], CHECKPOINTS / f"{cfg.name}.zip")
        shutil.copy(out / "curves.png", CHECKPOINTS / f"{cfg.name}_curves.png")
        shutil.copy(out / "result.json", CHECKPOINTS / f"{cfg.name}_result.json")  # per-day J of every seed
        update_manifest({
            "name": cfg.name, "env_id": cfg.env_id, "role": cfg.role, "algorithm": cfg.algo.upper(), "kind": "planning",
            "files": {cfg.role: f"{cfg.name}.zip"}, "n_blocks": cfg.n_blocks,
            "command": result["command"], "seed": best["seed"], "steps": cfg.decisions,
            "steps_unit": "planning decisions (one per day and planning round; ~97 environment steps per day)",
            "suite": suite.name, "test_days": list(test_days),
            "score": best["test"]["score"], "score_spread": std,
            "score_all_seeds": {str(r["seed"]): r["test"]["score"] for r in runs},
            "validation_score": best["val_score"],
            "baselines": {k: v["score"] for k, v in table.items()},
            "curves": f"{cfg.name}_curves.png", "versions": result["versions"],
        })
    return result


if __name__ == "__main__":
    main(parse())
