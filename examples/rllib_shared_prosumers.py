"""Ray RLlib trains the 10 prosumers of a flexenv feeder with ONE shared PPO policy (parameter sharing).

    pip install -e ".[rllib]"
    python examples/rllib_shared_prosumers.py                   # 40 iterations of 10k prosumer-steps
    python examples/rllib_shared_prosumers.py --smoke           # two tiny iterations, sampled in this process
    python examples/rllib_shared_prosumers.py --minutes 5       # stop after 5 minutes of training
    PYTHONHASHSEED=0 python examples/rllib_shared_prosumers.py  # repeats exactly (see below)

No glue: `flexenv.wrappers.learners(env, "prosumers")` is a PettingZoo `ParallelEnv` of the prosumers
alone (the aggregator and the DSO run their built-in policies), and RLlib's `ParallelPettingZooEnv`
makes it an RLlib `MultiAgentEnv` as it is. Every prosumer has the same Box spaces, so the policy
mapping sends all of them to one RLModule "shared": each prosumer acts on its own observation, and
every prosumer-step trains the same network. The reward (`--reward money`, default) is each
prosumer's own money (€ per step: minus its bill, fees and penalties, minus the value of lost comfort
and unmet EV energy); "system" shares the step's system cost among the prosumers instead.

Printed and written to `--out` per training iteration: env steps, prosumer-steps and the mean episode
return per prosumer (€/day, over the days finished in that iteration): `curve.csv` and `curve.png`,
with the return of the energy boxes (the built-in EMS) on a few validation days as a reference.

`--seed` seeds the networks, the action noise and the stream of training days. A run repeats exactly
only when PYTHONHASHSEED is fixed too: RLlib's multi-agent episodes keep their agents in Python sets,
whose order (and so the order of rows in a batch) changes with the string hash seed of the process.
"""

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # no thread oversubscription on a small shared machine (Ray's workers inherit)
import argparse
import csv
import math
import random
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
from ray.tune.registry import register_env

import flexenv
from flexenv.wrappers import learners

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env-id", default="MaxPower-Isolated-Teaching10-v0")
parser.add_argument("--reward", default="money", choices=["money", "system"])
parser.add_argument("--iterations", type=int, default=40)
parser.add_argument("--minutes", type=float, default=float("inf"), help="also stop after this wall time")
parser.add_argument("--train-batch", type=int, default=10_000, help="prosumer-steps per iteration (10 per env step)")
parser.add_argument("--minibatch", type=int, default=1000, help="prosumer-steps per SGD step")
parser.add_argument("--epochs", type=int, default=4, help="passes of SGD over each iteration's batch")
parser.add_argument("--lr", type=float, default=3e-4)
parser.add_argument("--gamma", type=float, default=0.99)
parser.add_argument("--env-runners", type=int, default=1, help="sampling processes (0: sample in this process)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="out/rllib")
parser.add_argument("--smoke", action="store_true", help="two tiny iterations sampled in this process (tests)")
args = parser.parse_args()
if args.smoke:
    # 2000 prosumer-steps = 200 env steps: two days (97 steps each) end in the first iteration, so it has a return
    args.iterations, args.train_batch, args.minibatch, args.epochs = 2, 2000, 1000, 1
    args.env_runners = 0
DAY_ENV_STEPS = 97  # one day of the Teaching10 envs: its planning step(s), then 96 PTUs of 15 min
random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)
torch.set_num_threads(1)


def make_team(config: dict) -> ParallelPettingZooEnv:
    """RLlib's view of the prosumers' ParallelEnv, as it is; `config` is RLlib's env_config."""
    return ParallelPettingZooEnv(learners(flexenv.make(config["env_id"]), "prosumers", reward=config["reward"]))


def energy_box_return(env_id: str, days: list[int]) -> float:
    """Mean return per prosumer (€/day) when the energy boxes (built-in EMS) set the devices."""
    env = flexenv.make(env_id)
    prosumers = [a for a in env.possible_agents if a.startswith("prosumer_")]
    totals = []
    for day in days:
        obs, _ = env.reset(seed=day)
        total = 0.0
        while env.agents:
            obs, rewards, *_ = env.step(env.builtin_actions(obs))
            total += float(np.mean([rewards[a] for a in prosumers]))
        totals.append(total)
    return float(np.mean(totals))


if __name__ == "__main__":
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_prosumers = len(learners(args.env_id, "prosumers").possible_agents)
    register_env("flexenv_prosumers", make_team)
    ray.init(num_cpus=max(2, args.env_runners), include_dashboard=False, log_to_driver=False)  # a CPU per env runner

    config = (
        PPOConfig()  # the new API stack (RLModule, Learner, EnvRunner), RLlib's default
        .environment("flexenv_prosumers", env_config={"env_id": args.env_id, "reward": args.reward})
        .multi_agent(policies={"shared"}, policy_mapping_fn=lambda agent_id, episode, **kwargs: "shared",
                     count_steps_by="agent_steps")  # batch sizes in prosumer-steps, the rows the network trains on
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={"shared": RLModuleSpec(
            # separate value net: returns are tens of €, their loss would swamp the policy's in a shared trunk
            model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], vf_share_layers=False))}))
        .env_runners(num_env_runners=args.env_runners, num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=args.train_batch, minibatch_size=args.minibatch,
                  num_epochs=args.epochs, lr=args.lr, gamma=args.gamma, lambda_=0.95,
                  vf_clip_param=100.0)  # value targets are in €/day, well beyond the default clip of 10
        # the return is averaged over about one iteration's days, not RLlib's default of the last 100
        .reporting(metrics_num_episodes_for_smoothing=max(1, args.train_batch // (DAY_ENV_STEPS * n_prosumers)))
        .debugging(seed=args.seed)  # seeds the networks and each env runner's first day (then its day stream)
    )
    algo = config.build_algo()

    rows, t0 = [], time.time()
    for iteration in range(1, args.iterations + 1):
        result = algo.train()
        runners = result["env_runners"]
        # RLlib's episode return sums every agent's return: divide by the prosumers for € per prosumer and day
        ret = runners.get("episode_return_mean", math.nan) / n_prosumers
        rows.append({"iteration": iteration, "env_steps": int(result["num_env_steps_sampled_lifetime"]),
                     "prosumer_steps": int(sum(runners["num_agent_steps_sampled_lifetime"].values())),  # per agent
                     "mean_return_per_prosumer_eur": round(ret, 4), "wall_s": round(time.time() - t0, 1)})
        print(f"iter {iteration:3d}  env steps {rows[-1]['env_steps']:7d}  prosumer-steps {rows[-1]['prosumer_steps']:8d}  "
              f"mean episode return per prosumer {ret:8.2f} €/day  ({rows[-1]['wall_s']:.0f} s)", flush=True)
        if time.time() - t0 > 60 * args.minutes:
            break
    algo.stop()
    ray.shutdown()

    with open(out / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    days = [900_000] if args.smoke else list(range(900_000, 900_008))  # validation days, never trained on
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["env_steps"] for r in rows], [r["mean_return_per_prosumer_eur"] for r in rows], "o-", label="shared PPO (training days)")
    boxes = energy_box_return(args.env_id, days)
    print(f"energy boxes: mean episode return per prosumer {boxes:.2f} €/day on {len(days)} validation days")
    ax.axhline(boxes, color="gray", ls="--", label=f"energy boxes ({len(days)} validation days)")
    ax.set_xlabel("env steps (each: one 15-min PTU or a planning step, for all prosumers)")
    ax.set_ylabel("episode return per prosumer, €/day")
    ax.set_title(f"RLlib PPO, one policy for the {n_prosumers} prosumers of {args.env_id}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=100)
    print(f"wrote {out / 'curve.csv'} and {out / 'curve.png'}")
