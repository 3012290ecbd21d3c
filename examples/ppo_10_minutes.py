"""A 10-minute PPO run on a laptop CPU: the aggregator learns its day-ahead price signal.

    python examples/ppo_10_minutes.py                  # 10 minutes of training, then a comparison
    python examples/ppo_10_minutes.py --minutes 1      # a shorter taste
    tensorboard --logdir out/examples/ppo              # curves (if tensorboard is installed)

The aggregator of `PriceDriven-Tariff-Teaching10-v0` is seen through flexenv's single-agent view
with `reward="system"` (a benevolent aggregator that minimises what the whole coalition pays). Its
price only matters in the planning step, so `DayDecision` (baselines/sb3/envs.py) turns the day into
one decision: 24 hourly price levels in [-1, 1]; the reward is the system cost saved against no
control on the same day. Two environments run in subprocesses (SubprocVecEnv), one per core.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # no thread oversubscription on a small shared machine
import argparse
import time

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from baselines.sb3.common import logger_formats
from baselines.sb3.envs import DayDecision
from flexenv.wrappers import single_agent

parser = argparse.ArgumentParser()
parser.add_argument("--minutes", type=float, default=10.0)
parser.add_argument("--max-steps", type=int, default=10**7, help="stop earlier after this many decisions (days)")
parser.add_argument("--n-envs", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--dummy", action="store_true", help="DummyVecEnv (one process) instead of SubprocVecEnv")
parser.add_argument("--out", default="out/examples/ppo")
args = parser.parse_args()
ENV_ID = "PriceDriven-Tariff-Teaching10-v0"
torch.manual_seed(args.seed)
torch.set_num_threads(1)


def make_env():
    return DayDecision(single_agent(ENV_ID, "aggregator_1", reward="system"), n_blocks=24)  # make_vec_env adds Monitor


class TimeBudget(BaseCallback):
    def __init__(self, seconds):
        super().__init__()
        self.deadline = time.time() + seconds

    def _on_step(self):
        return time.time() < self.deadline


if __name__ == "__main__":
    # training days: the vec env seeds env i with seed + i; the view draws each day from that stream
    env = make_vec_env(make_env, n_envs=args.n_envs, seed=args.seed, vec_env_cls=DummyVecEnv if args.dummy else SubprocVecEnv)
    n_steps = max(8, min(32, args.max_steps // args.n_envs))  # decisions per env between updates
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=n_steps, gamma=1.0, gae_lambda=1.0, seed=args.seed, device="cpu",
                policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.0}, verbose=1)
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(args.out, logger_formats()))
    model.learn(total_timesteps=args.max_steps, callback=TimeBudget(60 * args.minutes))
    model.save(f"{args.out}/model.zip")

    # compare on 4 fixed days the agent never trained on (seeds of validation days, below the test days)
    eval_env = make_env()
    saved = {"PPO": [], "zero prices (day-ahead pass-through)": []}
    for day in range(900_000, 900_004):
        for name, values in saved.items():
            obs, _ = eval_env.reset(seed=day)
            action = model.predict(obs, deterministic=True)[0] if name == "PPO" else np.zeros(24, np.float32)
            _, reward, *_ = eval_env.step(action)
            values.append(reward)
    for name, values in saved.items():
        print(f"{name:>38}: € saved vs no control per day: {np.mean(values):.2f} (days: {np.round(values, 2).tolist()})")
    env.close()
