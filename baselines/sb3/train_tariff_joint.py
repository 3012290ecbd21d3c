"""Aggregator and DSO learning at once: two independent PPO learners on the tariff link.

    python baselines/sb3/train_tariff_joint.py                 # 4 alternations × 512 decisions each
    python baselines/sb3/train_tariff_joint.py --smoke

Each learner sees only its own observation and acts only at its own planning step (the DSO publishes
its tariff, then the aggregator its price signal; `baselines.sb3.envs.PlanningVecEnv`). They learn in
turns (independent learners, alternating best responses): the aggregator for `chunk` decisions
against the DSO's current policy, then the DSO against the aggregator's current policy, and so on.
Both are benevolent (reward = system cost saved against no control on the day). Prosumers run their
energy boxes. Training days below 1,000,000; the result is scored on the suite's test days.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from baselines.leaderboard import load_suite
from baselines.sb3.common import (
    CHECKPOINTS,
    KPICallback,
    command_line,
    logger_formats,
    plot_curves,
    score_policy,
    single_thread,
    update_manifest,
    versions,
)
from baselines.sb3.envs import PlanningVecEnv, model_actor
from baselines.sb3.policy import planning_policy

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env-id", default="PriceDriven-Tariff-Teaching10-v0")
parser.add_argument("--suite", default="teaching_winter")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--alternations", type=int, default=4)
parser.add_argument("--chunk", type=int, default=512, help="decisions per learner per alternation")
parser.add_argument("--n-envs", type=int, default=16)
parser.add_argument("--n-blocks", type=int, default=24)
parser.add_argument("--out", default="out/sb3/tariff_joint")
parser.add_argument("--name", default="tariff_joint_ppo", help="checkpoint name in baselines/checkpoints")
parser.add_argument("--ship", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument("--smoke", action="store_true")
args = parser.parse_args()
if args.smoke:
    args.alternations, args.chunk, args.n_envs, args.ship = 1, 32, 8, False
single_thread()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


def ppo(env, seed, log):
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=64, gamma=1.0, gae_lambda=1.0, seed=seed, device="cpu",
                policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.0})
    model.set_logger(configure(str(out / log), logger_formats()))
    return model


# each learner trains in its own batch of days; the other learner acts through `others`
agg_env = PlanningVecEnv(args.env_id, "aggregator", args.n_envs, args.n_blocks, seed=args.seed)
dso_env = PlanningVecEnv(args.env_id, "dso", args.n_envs, args.n_blocks, seed=args.seed + 1)
aggregator = ppo(VecMonitor(agg_env), args.seed, "aggregator")
dso = ppo(VecMonitor(dso_env), args.seed + 1, "dso")
agg_env.actors["dso"] = model_actor(dso, "dso", agg_env.actors["dso"])
dso_env.actors["aggregator"] = model_actor(aggregator, "aggregator", dso_env.actors["aggregator"])

curves = {"aggregator": KPICallback(eval_every=args.chunk), "dso": KPICallback(eval_every=args.chunk)}
t0 = time.time()
for k in range(args.alternations):
    aggregator.learn(args.chunk, callback=curves["aggregator"], reset_num_timesteps=False)
    dso.learn(args.chunk, callback=curves["dso"], reset_num_timesteps=False)
    print(f"alternation {k}: aggregator {curves['aggregator'].curve[-1]}, dso {curves['dso'].curve[-1]}")
aggregator.save(out / "aggregator.zip")
dso.save(out / "dso.zip")

suite = load_suite(args.suite)
days = suite.seeds[:2] if args.smoke else suite.seeds
scenario = agg_env.scenario
table = {"rule-based (both)": score_policy(scenario, days, "builtin"),
         "learned DSO, rule-based aggregator": score_policy(scenario, days, planning_policy({"dso": dso})),
         "learned aggregator, rule-based DSO": score_policy(scenario, days, planning_policy({"aggregator": aggregator})),
         "both learned": score_policy(scenario, days, planning_policy({"aggregator": aggregator, "dso": dso}))}
for name, row in table.items():
    print(f"{name:>36}: score {row['score']:.1f}, J {row['j_mean']:.2f} €/day")
plot_curves([curves["aggregator"].curve], out / "curves_aggregator.png", "joint training: aggregator", "decisions")
plot_curves([curves["dso"].curve], out / "curves_dso.png", "joint training: DSO", "decisions")
(out / "result.json").write_text(json.dumps({"command": command_line(), "seed": args.seed, "days": list(days),
                                             "train_s": round(time.time() - t0, 1), "table": table, "versions": versions(),
                                             "curves": {k: c.curve for k, c in curves.items()}}, indent=2))

if args.ship:  # both learners as one checkpoint: the leaderboard runs them together
    for role in ("aggregator", "dso"):
        shutil.copy(out / f"{role}.zip", CHECKPOINTS / f"{args.name}_{role}.zip")
    shutil.copy(out / "result.json", CHECKPOINTS / f"{args.name}_result.json")
    shutil.copy(out / "curves_aggregator.png", CHECKPOINTS / f"{args.name}_curves_aggregator.png")
    shutil.copy(out / "curves_dso.png", CHECKPOINTS / f"{args.name}_curves_dso.png")
    update_manifest({
        "name": args.name, "env_id": args.env_id, "role": "aggregator", "algorithm": "PPO", "kind": "planning",
        "files": {role: f"{args.name}_{role}.zip" for role in ("aggregator", "dso")}, "n_blocks": args.n_blocks,
        "command": command_line(), "seed": args.seed, "steps": 2 * args.alternations * args.chunk,
        "steps_unit": "planning decisions, both learners together", "suite": suite.name, "test_days": list(days),
        "score": table["both learned"]["score"],
        "score_spread": None, "score_spread_note": "one training seed: spread not measured",
        "baselines": {name: row["score"] for name, row in table.items() if name != "both learned"} | {"no control": 0.0},
        "curves": f"{args.name}_curves_aggregator.png", "versions": versions(),
    })
