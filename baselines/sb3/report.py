"""Markdown table of the SB3 results: `python baselines/sb3/report.py [out/sb3]`.

Reads `baselines/checkpoints/manifest.json` (shipped checkpoints) and every `result.json` the training
scripts wrote under the output folder; prints test-day scores (100 · Σ(J_nc − J) / Σ(J_nc − J_oracle))
of every training seed next to rule-based, random and no control.
"""

import json
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1] if len(sys.argv) > 1 else "out/sb3")
print("| run | env id | agent | algorithm | decisions / seed | test days | score per seed | mean ± std | rule-based | random | no control |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(root.glob("*/result.json")):
    r = json.loads(path.read_text())
    if "runs" not in r:
        continue
    c = r["config"]
    scores = [run["test"]["score"] for run in r["runs"]]
    per_seed = ", ".join(f"{run['seed']}: {s:.1f}" for run, s in zip(r["runs"], scores))
    b = r["baselines"]
    print(f"| {c['name']} | {c['env_id']} | {c['role']} | {c['algo'].upper()} | {c['decisions']} | {len(r['test_days'])} "
          f"({r['test_days'][0]}..) | {per_seed} | {np.mean(scores):.1f} ± {np.std(scores):.1f} | "
          f"{b['rule-based']['score']:.1f} | {b['random']['score']:.1f} | 0 |")
for path in sorted(root.glob("*/result.json")):
    r = json.loads(path.read_text())
    if "table" in r:
        print(f"\n`{r['command']}` (seed {r['seed']}, days {r['days'][0]}..{r['days'][-1]}):\n")
        print("| policy | score vs oracle | J € / day |\n|---|---|---|")
        for name, row in r["table"].items():
            s = "—" if row["score"] is None else f"{row['score']:.1f}"
            print(f"| {name} | {s} | {row['j_mean']:.2f} |")
