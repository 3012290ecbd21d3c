"""Prosumers as learners with one shared policy (parameter sharing), max_power link, PPO.

    python baselines/sb3/train_prosumers_shared.py              # 100k prosumer-steps
    python baselines/sb3/train_prosumers_shared.py --smoke

Every prosumer of every simulated day is one SB3 environment (`baselines.sb3.envs.SharedProsumerVecEnv`
on flexenv's batched engine, like SuperSuit's PettingZoo → vec-env conversion): one policy sees each
prosumer's own observation and sets its devices every PTU (battery, EV, heat pump, PV curtailment,
appliance start). Aggregator (caps) and DSO are rule-based. Reward: "system" (the step's system cost
shared by the prosumers; benevolent) or "money" (own bill and comfort). The baseline they must beat
is the energy box (an EMS optimising each home's day): a hard one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from baselines.leaderboard import load_suite
from baselines.sb3.common import command_line, logger_formats, score_policy, single_thread, versions
from baselines.sb3.envs import SharedProsumerVecEnv
from baselines.sb3.policy import shared_prosumer_policy

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env-id", default="MaxPower-Isolated-Teaching10-v0")
parser.add_argument("--suite", default="teaching_winter", help="its test days are used (on --env-id)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=100_000, help="prosumer-steps (= engine steps × days × prosumers)")
parser.add_argument("--n-days", type=int, default=4)
parser.add_argument("--reward", default="system", choices=["system", "money"])
parser.add_argument("--out", default="out/sb3/prosumers_shared")
parser.add_argument("--smoke", action="store_true")
args = parser.parse_args()
if args.smoke:
    args.steps, args.n_days = 2 * 64 * 20, 2
single_thread()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


class DayKPIs(BaseCallback):
    """Logs the system cost of every finished day (kpi/system_cost_eur) and keeps the curve."""

    def __init__(self):
        super().__init__()
        self.curve = []

    def _on_step(self):
        j = [i["j_eur"] for i, d in zip(self.locals["infos"], self.locals["dones"]) if d]
        if j:
            self.curve.append({"steps": int(self.num_timesteps), "j_eur": float(np.mean(j))})
            self.logger.record("kpi/system_cost_eur", float(np.mean(j)))
        return True


env = VecMonitor(SharedProsumerVecEnv(args.env_id, n_days=args.n_days, reward=args.reward, seed=args.seed))
model = PPO("MlpPolicy", env, n_steps=64, batch_size=256, n_epochs=4, gamma=0.99, seed=args.seed, device="cpu",
            policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.0})
model.set_logger(configure(str(out), logger_formats()))
t0 = time.time()
callback = DayKPIs()
model.learn(args.steps, callback=callback)
model.save(out / "prosumer.zip")

suite = load_suite(args.suite)
days = suite.seeds[:2] if args.smoke else suite.seeds
scenario = env.venv.scenario
table = {"energy boxes (rule-based aggregator)": score_policy(scenario, days, "builtin"),
         "shared PPO prosumers": score_policy(scenario, days, shared_prosumer_policy(model))}
for name, row in table.items():
    print(f"{name:>38}: score {row['score']}, J {row['j_mean']:.2f} €/day")
(out / "result.json").write_text(json.dumps({"command": command_line(), "seed": args.seed, "steps": args.steps, "days": list(days),
                                             "train_s": round(time.time() - t0, 1), "table": table, "curve": callback.curve,
                                             "versions": versions()}, indent=2))
