"""Rule-based policies vs no control vs the MILP oracle, on a few days of one environment.

    python examples/rule_based_vs_oracle.py                      # 4 days of the teaching feeder
    python examples/rule_based_vs_oracle.py --days 1000001 1000002 --env-id MaxPower-Isolated-Teaching10-v0

For each day it prints the system cost J (€: what prosumers, aggregator and DSO together pay to the
outside, plus lost comfort) of the no-control baseline, the built-in rule-based policies and the
oracle (perfect foresight, centralised, HiGHS), and the normalised score
100 · Σ(J_nocontrol − J) / Σ(J_nocontrol − J_oracle). On the teaching feeder the rules shift load
into the same cheap hours and congest the derated transformer: they score below zero.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # no thread oversubscription on a small shared machine
import argparse

from baselines.evaluate import run_episodes, score
from baselines.oracle import solve
from flexenv.envs.registry import scenario_for

parser = argparse.ArgumentParser()
parser.add_argument("--env-id", default="PriceDriven-Tariff-Teaching10-v0")
parser.add_argument("--days", type=int, nargs="+", default=[11, 12, 13, 14], help="episode seeds (days)")
args = parser.parse_args()

scenario = scenario_for(args.env_id)
base = [k["system_cost_eur"] for k in run_episodes(scenario, args.days, "nocontrol")]
rules = run_episodes(scenario, args.days, "builtin")
oracle = [solve(scenario, seed=d).objective_eur for d in args.days]

print(f"{args.env_id}: system cost J per day (€)")
print(f"{'day':>8} {'no control':>11} {'rule-based':>11} {'oracle':>8} {'congested PTUs (rules)':>23}")
for d, b, r, o in zip(args.days, base, rules, oracle):
    print(f"{d:>8} {b:>11.2f} {r['system_cost_eur']:>11.2f} {o:>8.2f} {r['congested_ptus']:>23.0f}")
s = score(base, [r["system_cost_eur"] for r in rules], oracle)
print(f"rule-based score vs oracle: {s:.1f}  (0 = no control, 100 = oracle)" if s is not None else "score undefined (no headroom)")
