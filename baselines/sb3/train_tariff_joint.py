"""Aggregator and DSO learning at once: two independent PPO learners on the PettingZoo env, tariff link.

    python baselines/sb3/train_tariff_joint.py                 # 3 seeds × 4 alternations × 512 decisions each
    python baselines/sb3/train_tariff_joint.py --smoke

Both learners play on flexenv's PettingZoo env (`flexenv.make(env_id)`): each through its own
single-agent view (`flexenv.wrappers.single_agent(env, agent, reward="system", others=...)`) in which
the *other* learner's current policy acts for its agent (`baselines.sb3.envs.planning_agent`) and
the prosumers run their energy boxes. Each acts only at its own planning step, the day as one
decision (`baselines.sb3.envs.DayDecision`: the DSO publishes its tariff, then the aggregator its
price signal). They learn in turns (independent learners, alternating best responses): the
aggregator for `chunk` decisions against the DSO's current policy, then the DSO against the
aggregator's current policy, and so on. Both are benevolent (reward = system cost saved against no
control on the day). Training days below 1,000,000; validation days 900000..900007 score the pair
after every chunk; the result is scored on the suite's test days. The seed whose pair has the best
validation score is shipped (both models, one checkpoint).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import flexenv
from baselines.leaderboard import load_suite
from baselines.sb3.common import (
    CHECKPOINTS,
    VALIDATION_DAYS,
    KPICallback,
    command_line,
    logger_formats,
    plot_curves,
    score_policy,
    single_thread,
    summary_stats,
    update_manifest,
    versions,
)
from baselines.sb3.envs import AGENT_ID, DayDecision, planning_agent
from baselines.sb3.policy import planning_policy
from flexenv.envs.registry import scenario_for
from flexenv.wrappers import single_agent

ROLES = ("aggregator", "dso")
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env-id", default="PriceDriven-Tariff-Teaching10-v0")
parser.add_argument("--suite", default="teaching_winter")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--alternations", type=int, default=4)
parser.add_argument("--chunk", type=int, default=512, help="decisions per learner per alternation")
parser.add_argument("--n-envs", type=int, default=8, help="PettingZoo envs per learner (SB3 DummyVecEnv)")
parser.add_argument("--n-blocks", type=int, default=24)
parser.add_argument("--out", default="out/sb3/tariff_joint")
parser.add_argument("--name", default="tariff_joint_ppo", help="checkpoint name in baselines/checkpoints")
parser.add_argument("--ship", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument("--smoke", action="store_true")
args = parser.parse_args()
if args.smoke:
    args.seeds, args.alternations, args.chunk, args.n_envs, args.ship = args.seeds[:1], 1, 16, 2, False
single_thread()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
scenario = scenario_for(args.env_id)
suite = load_suite(args.suite)
val_days = VALIDATION_DAYS[:2] if args.smoke else VALIDATION_DAYS[:8]
test_days = suite.seeds[:2] if args.smoke else suite.seeds


def day_env(role: str, learned: dict):
    """`role`'s day decisions on a fresh PettingZoo env; the other learner acts through `learned`."""
    env = flexenv.make(args.env_id)
    other = "dso" if role == "aggregator" else "aggregator"
    view = single_agent(env, AGENT_ID[role], reward="system", others={AGENT_ID[other]: planning_agent(env, other, learned)})
    return DayDecision(view, n_blocks=args.n_blocks)


runs = []
for seed in args.seeds:
    t0 = time.time()
    learned = {}  # role → PPO model; each env's other learner looks its current policy up here
    models, curves = {}, {}

    def val(_model, learned=learned) -> float:  # the validation score of the pair, whichever learner is training
        return score_policy(scenario, val_days, planning_policy(dict(learned)))["score"]

    for i, role in enumerate(ROLES):
        vec = VecMonitor(DummyVecEnv([lambda role=role, learned=learned: day_env(role, learned)] * args.n_envs))
        model = PPO("MlpPolicy", vec, n_steps=16, batch_size=64, gamma=1.0, gae_lambda=1.0, seed=seed + i, device="cpu",
                    policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.0})
        model.set_logger(configure(str(out / f"seed{seed}" / role), logger_formats()))
        learned[role] = models[role] = model
        curves[role] = KPICallback(val, eval_every=args.chunk)
    for k in range(args.alternations):
        for role in ROLES:
            models[role].learn(args.chunk, callback=curves[role], reset_num_timesteps=False)
        print(f"seed {seed}, alternation {k}: validation score of the pair {curves['dso'].curve[-1]['val_score']:.1f}")
    for role in ROLES:
        models[role].save(out / f"seed{seed}" / f"{role}.zip")
    table = {"learned DSO, rule-based aggregator": score_policy(scenario, test_days, planning_policy({"dso": models["dso"]})),
             "learned aggregator, rule-based DSO": score_policy(scenario, test_days, planning_policy({"aggregator": models["aggregator"]})),
             "both learned": score_policy(scenario, test_days, planning_policy(dict(models)))}
    runs.append({"seed": seed, "train_s": round(time.time() - t0, 1), "val_score": curves["dso"].curve[-1]["val_score"],
                 "curves": {role: curves[role].curve for role in ROLES}, "test": table})
    print(f"seed {seed}: {time.time() - t0:.0f} s; test: " + ", ".join(f"{n} {r['score']:.1f}" for n, r in table.items()))

rule_based = score_policy(scenario, test_days, "builtin")
mean, std = summary_stats([r["test"]["both learned"]["score"] for r in runs])
val_base = score_policy(scenario, val_days, "builtin")["score"]
for role in ROLES:
    plot_curves([r["curves"][role] for r in runs], out / f"curves_{role}.png",
                f"joint training on {args.env_id}: {role} (validation score = the pair)", "decisions of this learner",
                baselines={"val_score": {"rule-based": val_base, "no control": 0.0}, "episode_return": {"no control": 0.0}})
result = {"command": command_line(), "config": vars(args), "test_days": list(test_days), "rule_based": rule_based,
          "runs": runs, "test_score_mean": mean, "test_score_std": std, "versions": versions()}
(out / "result.json").write_text(json.dumps(result, indent=2))
print(f"{args.name}: both learned {mean:.1f} ± {std:.1f} over seeds {args.seeds}; rule-based {rule_based['score']:.1f}; no control 0")

if args.ship:  # both learners as one checkpoint: the leaderboard runs them together
    best = max(runs, key=lambda r: r["val_score"])  # chosen on validation days, not on test days
    for role in ROLES:
        shutil.copy(out / f"seed{best['seed']}" / f"{role}.zip", CHECKPOINTS / f"{args.name}_{role}.zip")
        shutil.copy(out / f"curves_{role}.png", CHECKPOINTS / f"{args.name}_curves_{role}.png")
    shutil.copy(out / "result.json", CHECKPOINTS / f"{args.name}_result.json")
    update_manifest({
        "name": args.name, "env_id": args.env_id, "role": "aggregator", "algorithm": "PPO", "kind": "planning",
        "files": {role: f"{args.name}_{role}.zip" for role in ROLES}, "n_blocks": args.n_blocks,
        "command": command_line(), "seed": best["seed"], "steps": 2 * args.alternations * args.chunk,
        "steps_unit": "planning decisions, both learners together (one per learner and day)",
        "suite": suite.name, "test_days": list(test_days),
        "score": best["test"]["both learned"]["score"], "score_spread": std,
        "score_all_seeds": {str(r["seed"]): r["test"]["both learned"]["score"] for r in runs},
        "validation_score": best["val_score"],
        "baselines": {"rule-based (both)": rule_based["score"], "no control": 0.0}
        | {name: row["score"] for name, row in best["test"].items() if name != "both learned"},
        "curves": f"{args.name}_curves_aggregator.png", "versions": versions(),
    })
