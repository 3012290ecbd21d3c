"""Prosumers as learners with one shared policy (parameter sharing) over the PettingZoo env, PPO.

    python baselines/sb3/train_prosumers_shared.py              # 3 seeds × 1M prosumer-steps, ~2 min each
    python baselines/sb3/train_prosumers_shared.py --smoke

The PettingZoo way: `flexenv.wrappers.learners(env, "prosumers")` is the ParallelEnv of the prosumers
alone (aggregator and DSO built-in, max_power link: the aggregator sends caps); every prosumer has
the same spaces, so SuperSuit's `pettingzoo_env_to_vec_env_v1` makes each one a slot of an SB3
VecEnv and `concat_vec_envs_v1` stacks `--copies` environments. One PPO policy sees each prosumer's
own observation and sets its devices every PTU (battery, EV, heat pump, PV curtailment, appliance
start). Reward "money" (default: each prosumer's own bill, fees and lost comfort, as in flexenv) or
"system" (the step's system cost shared by the prosumers: benevolent; it learns far more slowly,
since each prosumer's credit is diluted by the others'). The baseline is the energy box (an EMS
that optimises each home's day on forecasts against the aggregator's caps).

For every seed: train, score on validation days every `--eval-every` prosumer-steps (normalised
score vs the oracle, batched engine), then on the suite's test days; learning curves (PNG, mean ± std
over seeds) and result.json. Written to `--out`; unless `--no-ship`, the seed with the best validation
score is shipped to baselines/checkpoints with its manifest entry (leaderboard suite
`teaching_max_power`: `flexenv leaderboard teaching_max_power --policy baselines.sb3.policy:prosumers_shared_ppo`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import supersuit as ss
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor

from baselines.leaderboard import load_suite
from baselines.sb3.common import (
    CHECKPOINTS,
    VALIDATION_DAYS,
    command_line,
    logger_formats,
    plot_curves,
    score_policy,
    single_thread,
    summary_stats,
    update_manifest,
    versions,
)
from baselines.sb3.policy import shared_prosumer_policy
from flexenv.envs.registry import scenario_for
from flexenv.wrappers import learners

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env-id", default="MaxPower-Isolated-Teaching10-v0")
parser.add_argument("--suite", default="teaching_max_power", help="its test days are used (on --env-id)")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--steps", type=int, default=1_000_000, help="prosumer-steps per seed (env steps × copies × prosumers)")
parser.add_argument("--copies", type=int, default=4, help="environments stacked by SuperSuit")
parser.add_argument("--eval-every", type=int, default=100_000)
parser.add_argument("--reward", default="money", choices=["money", "system"])
parser.add_argument("--out", default="out/sb3/prosumers_shared")
parser.add_argument("--name", default="prosumers_shared_ppo")
parser.add_argument("--ship", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument("--smoke", action="store_true")
args = parser.parse_args()
if args.smoke:
    args.seeds, args.steps, args.copies, args.eval_every, args.ship = args.seeds[:1], 2 * 64 * 20, 2, 1280, False
single_thread()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
scenario = scenario_for(args.env_id)
val_days = VALIDATION_DAYS[:2] if args.smoke else VALIDATION_DAYS[:8]
test_days = load_suite(args.suite).seeds[:2] if args.smoke else load_suite(args.suite).seeds


def shared_vec_env(seed: int):
    """SB3 VecEnv: every prosumer of `args.copies` PettingZoo envs is one slot (SuperSuit)."""
    team = learners(args.env_id, "prosumers", reward=args.reward)
    vec = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(team), args.copies, num_cpus=0,
                                base_class="stable_baselines3")
    vec.venv.reset(seed=seed)  # SuperSuit's SB3 adapter has no seed(): this seeds copy i's episode stream with seed + i
    return VecMonitor(vec)


class Curve(BaseCallback):
    """Every `every` prosumer-steps: the mean episode return per prosumer of the days finished since
    (€; with reward "system", minus the system cost / prosumers) and the validation score."""

    def __init__(self, every: int):
        super().__init__()
        self.every, self.next, self.returns, self.curve = every, every, [], []

    def _on_step(self):
        self.returns += [i["episode"]["r"] for i, d in zip(self.locals["infos"], self.locals["dones"]) if d and "episode" in i]
        if self.num_timesteps >= self.next:
            self.next += self.every
            self._record()
        return True

    def _on_training_end(self):
        if not self.curve or self.curve[-1]["steps"] != self.num_timesteps:
            self._record()

    def _record(self):
        point = {"steps": int(self.num_timesteps),
                 "val_score": score_policy(scenario, val_days, shared_prosumer_policy(self.model))["score"]}
        if self.returns:
            point["episode_return"] = float(np.mean(self.returns))
            self.logger.record("kpi/episode_return_per_prosumer_eur", point["episode_return"])
            self.returns = []
        self.logger.record("kpi/validation_score_vs_oracle", point["val_score"])
        self.logger.dump(self.num_timesteps)
        self.curve.append(point)


runs = []
for seed in args.seeds:
    t0 = time.time()
    set_random_seed(seed)  # torch, numpy, random; not PPO(seed=...), which would call the adapter's missing seed()
    env = shared_vec_env(seed)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=512, n_epochs=4, gamma=0.99, device="cpu",
                policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.0})
    model.set_logger(configure(str(out / f"seed{seed}"), logger_formats()))
    callback = Curve(args.eval_every)
    model.learn(args.steps, callback=callback)
    model.save(out / f"seed{seed}.zip")
    test = score_policy(scenario, test_days, shared_prosumer_policy(model))
    runs.append({"seed": seed, "train_s": round(time.time() - t0, 1), "curve": callback.curve, "test": test,
                 "val_score": callback.curve[-1]["val_score"]})
    print(f"seed {seed}: {time.time() - t0:.0f} s, validation score {callback.curve[-1]['val_score']:.1f}, "
          f"test score {test['score']:.1f}, J {test['j_mean']:.2f} €/day")

builtin = score_policy(scenario, test_days, "builtin")
mean, std = summary_stats([r["test"]["score"] for r in runs])
val_builtin = score_policy(scenario, val_days, "builtin")["score"]
plot_curves([r["curve"] for r in runs], out / "curves.png",
            f"{args.name}: PPO, one policy for all prosumers on {args.env_id} (SuperSuit)",
            "prosumer-steps", baselines={"val_score": {"energy boxes": val_builtin, "no control": 0.0}},
            return_label="episode return per prosumer, €/day")
result = {"command": command_line(), "config": vars(args), "test_days": list(test_days),
          "energy_boxes": builtin, "energy_boxes_validation_score": val_builtin, "runs": runs, "test_score_mean": mean, "test_score_std": std, "versions": versions()}
(out / "result.json").write_text(json.dumps(result, indent=2))
print(f"{args.name}: test score {mean:.1f} ± {std:.1f} over seeds {args.seeds}; energy boxes {builtin['score']:.1f}, "
      f"J {builtin['j_mean']:.2f} €/day; no control 0")
if args.ship:
    best = max(runs, key=lambda r: r["val_score"])  # chosen on validation days, not on test days
    shutil.copy(out / f"seed{best['seed']}.zip", CHECKPOINTS / f"{args.name}.zip")
    shutil.copy(out / "result.json", CHECKPOINTS / f"{args.name}_result.json")
    shutil.copy(out / "curves.png", CHECKPOINTS / f"{args.name}_curves.png")
    update_manifest({
        "name": args.name, "env_id": args.env_id, "role": "prosumer", "algorithm": "PPO", "kind": "shared_prosumer",
        "files": {"prosumer": f"{args.name}.zip"}, "command": command_line(), "seed": best["seed"], "steps": args.steps,
        "steps_unit": "prosumer-steps (one per prosumer and environment step), all prosumers sharing one policy",
        "reward": args.reward, "suite": args.suite, "test_days": list(test_days),
        "score": best["test"]["score"], "score_spread": std,
        "score_all_seeds": {str(r["seed"]): r["test"]["score"] for r in runs}, "validation_score": best["val_score"],
        "baselines": {"energy boxes": builtin["score"], "no control": 0.0},
        "curves": f"{args.name}_curves.png", "versions": result["versions"],
    })
