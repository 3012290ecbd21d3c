"""Markdown table of the SB3 results: `python baselines/sb3/report.py [folder]`.

Reads every `*_result.json` the training scripts shipped next to the checkpoints (default:
baselines/checkpoints; or the `result.json` files of an output folder such as out/sb3) and prints the
test-day scores (100 · Σ(J_nc − J) / Σ(J_nc − J_oracle); 0 = no control, 100 = oracle) of every
training seed, with the spread over seeds, next to the built-in baseline of the same days.
"""

import json
import sys
from pathlib import Path

import numpy as np

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def rows(r: dict):
    """(run, env id, learner, algorithm, budget per seed, per-seed test scores, built-in baseline) of one result."""
    c = r["config"]
    if "decisions" in c:  # train_planning.py
        scores = [run["test"]["score"] for run in r["runs"]]
        base = f"rule-based {r['baselines']['rule-based']['score']:.1f}, random {r['baselines']['random']['score']:.1f}"
        return c["name"], c["env_id"], c["role"], c["algo"].upper(), f"{c['decisions']} decisions", scores, base
    if "alternations" in c:  # train_tariff_joint.py
        scores = [run["test"]["both learned"]["score"] for run in r["runs"]]
        budget = f"{c['alternations']} × {c['chunk']} decisions each"
        return c["name"], c["env_id"], "aggregator + DSO", "PPO (independent)", budget, scores, \
            f"rule-based {r['rule_based']['score']:.1f}"
    scores = [run["test"]["score"] for run in r["runs"]]  # train_prosumers_shared.py
    return c["name"], c["env_id"], f"prosumers (shared, reward {c['reward']})", "PPO", f"{c['steps']:,} prosumer-steps", \
        scores, f"energy boxes {r['energy_boxes']['score']:.1f}"


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else CHECKPOINTS
    paths = sorted(folder.glob("*_result.json")) or sorted(folder.glob("*/result.json")) or sorted(folder.glob("result.json"))
    print("| run | env id | learner | algorithm | budget / seed | test days | score per seed | mean ± std | built-in | no control |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        r = json.loads(path.read_text())
        if "runs" not in r or "config" not in r:
            continue
        name, env_id, learner, algo, budget, scores, base = rows(r)
        per_seed = ", ".join(f"{run['seed']}: {s:.1f}" for run, s in zip(r["runs"], scores))
        print(f"| {name} | {env_id} | {learner} | {algo} | {budget} | {len(r['test_days'])} ({r['test_days'][0]}..) | "
              f"{per_seed} | {np.mean(scores):.1f} ± {np.std(scores):.1f} | {base} | 0 |")
