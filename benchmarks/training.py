"""SB3 PPO environment-steps per second on the aggregator's single-agent view, by vectorisation.

    python benchmarks/training.py            # writes benchmarks/results/training.json and training.md

Modes, each with 1, 2 and 8 environments:
- dummy:    SB3 DummyVecEnv over `flexenv.wrappers.single_agent(id, "aggregator_1", reward="system")`;
- subproc:  SB3 SubprocVecEnv over the same (one process per environment);
- batched:  `baselines.sb3.envs.AgentStepVecEnv`, the same view for all environments on one
            batched `flexenv.engine.Engine` (one engine step per VecEnv step).
An environment step is one step of the view (97 per day in PriceDriven-Tariff: a DSO planning step,
an aggregator planning step, 96 PTUs). PPO's own cost (forward pass, updates) is included: the figure
is what a training run sees. numba kernels run single-threaded (NUMBA_NUM_THREADS=1, also in
the subprocesses). A warm-up `learn` (compilation, process start) is not timed.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # kernels single-threaded: parallelism comes from the vec env
import json
import platform
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from baselines.sb3.envs import AgentStepVecEnv
from flexenv.wrappers import single_agent

ENV_ID = "PriceDriven-Tariff-Teaching10-v0"
N_STEPS = 128  # PPO rollout length per environment
ROUNDS = 2  # timed PPO iterations
HERE = Path(__file__).resolve().parent


def make_view(rank):
    def thunk():
        env = Monitor(single_agent(ENV_ID, "aggregator_1", reward="system"))  # SB3's episode bookkeeping
        env.reset(seed=rank)
        return env

    return thunk


def make_vec(mode: str, n: int):
    if mode == "batched":
        return AgentStepVecEnv(ENV_ID, "aggregator", n_envs=n, reward="system", seed=0)
    cls = DummyVecEnv if mode == "dummy" else SubprocVecEnv
    return cls([make_view(i) for i in range(n)])


def measure(mode: str, n: int) -> float:
    env = make_vec(mode, n)
    model = PPO("MlpPolicy", env, n_steps=N_STEPS, batch_size=min(256, N_STEPS * n), n_epochs=1, seed=0, device="cpu")
    model.learn(N_STEPS * n)  # warm-up
    start = time.perf_counter()
    model.learn(ROUNDS * N_STEPS * n, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    env.close()
    return ROUNDS * N_STEPS * n / elapsed


def main():
    torch.set_num_threads(1)
    results = {}
    for mode in ("dummy", "subproc", "batched"):
        results[mode] = {}
        for n in (1, 2, 8):
            results[mode][str(n)] = round(measure(mode, n), 1)
            print(f"{mode:>8} × {n}: {results[mode][str(n)]:8.1f} env-steps/s", flush=True)
    out = {
        "env_id": ENV_ID, "agent": "aggregator_1", "algorithm": "PPO (SB3, MlpPolicy 64x64, n_epochs=1)",
        "n_steps_per_env": N_STEPS, "timed_iterations": ROUNDS, "ppo_env_steps_per_s": results,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores, Python {platform.python_version()}",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d"),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "training.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# SB3 PPO training throughput", "",
             f"Environment steps per second of SB3 PPO on the aggregator's single-agent view of `{ENV_ID}`",
             "(`python benchmarks/training.py`; PPO's own forward passes and updates included).", "",
             (f"Machine: {out['machine']}; load average at the end of the run {out['load_average_at_end']} "
              "(the machine was shared: figures are lower bounds)."), "",
             "| mode | 1 env | 2 envs | 8 envs |", "|---|---|---|---|"]
    for mode, row in results.items():
        lines.append(f"| {mode} | " + " | ".join(f"{row[n]:.0f}" for n in ("1", "2", "8")) + " |")
    lines += ["", (f"Batched engine vs DummyVecEnv at 8 environments: {results['batched']['8'] / results['dummy']['8']:.1f}×; "
                   f"vs SubprocVecEnv: {results['batched']['8'] / results['subproc']['8']:.1f}×.")]
    (HERE / "training.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
