"""`flexenv leaderboard SUITE --policy POLICY`: evaluate a policy on a fixed test suite.

A suite (`configs/benchmarks/<name>.yaml`) names one environment id and a list of test day seeds,
kept apart from training seeds (tests ≥ 1,000,000; training below). For every day the policy, the
no-control baseline and the oracle are run; the result is the normalised score
`S = 100 · Σ (J_base − J_policy) / Σ (J_base − J_oracle)` (DESIGN.md §5) with the raw KPIs and the
constraint-violation rate. Oracle values are cached on disk (see `baselines.oracle`).

Policies: `builtin` (rule-based aggregator and DSO, energy boxes), `nocontrol`, `random` (uniform
random actions for every agent), or `module:function`, a factory `function(engine) -> act` with
`act(engine, obs) -> actions` for the whole batch (see `baselines.evaluate`).

Outputs in `--out` (default `out/leaderboard`): `<suite>__<policy>.json`, `.csv`, `.md`, `.png`.
"""

from __future__ import annotations

import csv
import importlib
import importlib.resources
import json
import re
from pathlib import Path

import numpy as np
import pydantic
import yaml

from baselines.evaluate import run_episodes, score
from flexenv.envs.registry import env_ids, scenario_for
from flexenv.scenario import ScenarioError
from flexenv.scenario.loading import _format_errors

TEST_SEED_MIN = 1_000_000  # test days; training scripts use seeds below


class Suite(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    description: str = ""
    env_id: str
    seeds: list[pydantic.conint(ge=TEST_SEED_MIN)] = pydantic.Field(min_length=1)

    @pydantic.field_validator("env_id")
    @classmethod
    def _known(cls, value):
        if value not in env_ids():
            raise ValueError(f"unknown environment id {value!r}")
        return value


def list_suites() -> list[str]:
    root = importlib.resources.files("flexenv.configs") / "benchmarks"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = importlib.resources.files("flexenv.configs") / "benchmarks" / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ScenarioError(f"unknown suite {name_or_path!r}; suites: {list_suites()}")
    try:
        return Suite.model_validate(yaml.safe_load(path.read_text()))
    except pydantic.ValidationError as err:
        raise ScenarioError(_format_errors(err, str(name_or_path))) from None


def random_policy(engine):
    rng = np.random.default_rng(0)

    def act(engine, obs):
        B = engine.B
        out = {"aggregator": rng.uniform(-1, 1, (B, engine.action_layout["aggregator"].size)),
               "dso": rng.uniform(-1, 1, (B, engine.action_layout["dso"].size))}
        if engine.prosumer_link.prosumers_are_agents:
            out["prosumer"] = rng.uniform(-1, 1, (B, engine.P, engine.action_layout["prosumer"].size))
        return out

    return act


def resolve_policy(spec: str):
    """"builtin" / "nocontrol" / "random" / "module:function" → what `run_episodes` takes."""
    if spec in ("builtin", "nocontrol"):
        return spec
    if spec == "random":
        return random_policy
    if ":" not in spec:
        raise ValueError(f"policy {spec!r}: use builtin, nocontrol, random or module:function")
    module, function = spec.split(":", 1)
    return getattr(importlib.import_module(module), function)


def evaluate(suite: Suite, policy_spec: str, oracle=True, progress: bool = True) -> dict:
    """Run the suite; return per-day rows and the summary (score, mean KPIs, violation rate)."""
    from rich.progress import Progress

    scenario = scenario_for(suite.env_id)
    policy = resolve_policy(policy_spec)
    rows = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"{suite.name}: {policy_spec}", total=len(suite.seeds))
        for seed in suite.seeds:  # one day at a time: the oracle is solved (or read from cache) per day
            base = run_episodes(scenario, [seed], "nocontrol")[0]
            kpis = run_episodes(scenario, [seed], policy)[0]
            j_oracle, oracle_info = None, {}
            if oracle:
                from baselines.oracle import solve

                result = solve(scenario, seed=seed)
                j_oracle = result.objective_eur
                # a day whose oracle stopped short (time limit) is flagged: its score is less certain
                oracle_info = {"oracle_status": result.status, "oracle_mip_gap": result.mip_gap,
                               "oracle_optimal": result.status == "Optimal"}
            rows.append({"seed": seed, "j_base": base["system_cost_eur"], "j_policy": kpis["system_cost_eur"],
                         "j_oracle": j_oracle, **oracle_info, **{f"kpi/{k}": v for k, v in kpis.items() if k != "seed"}})
            bar.advance(task)
    summary = {
        "suite": suite.name, "env_id": suite.env_id, "policy": policy_spec, "n_days": len(rows),
        "score": score([r["j_base"] for r in rows], [r["j_policy"] for r in rows], [r["j_oracle"] for r in rows]) if oracle else None,
        "j_base_mean": float(np.mean([r["j_base"] for r in rows])),
        "j_policy_mean": float(np.mean([r["j_policy"] for r in rows])),
        "j_oracle_mean": float(np.mean([r["j_oracle"] for r in rows])) if oracle else None,
        "constraint_violation_rate": float(np.mean([r["kpi/constraint_violation_rate"] for r in rows])),
        "oracle_days_not_optimal": sum(1 for r in rows if oracle and not r["oracle_optimal"]),
    }
    for key in rows[0]:
        if key.startswith("kpi/"):
            summary[key.replace("kpi/", "mean/")] = float(np.mean([r[key] for r in rows]))
    return {"summary": summary, "days": rows}


def write_outputs(result: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = result["summary"]
    stem = f"{s['suite']}__{re.sub(r'[^A-Za-z0-9_.-]+', '_', s['policy'])}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    keys = list(result["days"][0])
    with (out / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(result["days"])
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"Suite `{s['suite']}` ({s['env_id']}), policy `{s['policy']}`, {s['n_days']} days.", "",
             f"**Score vs oracle: {fmt(s['score'])}** (100 = oracle, 0 = no control); constraint-violation rate "
             f"{s['constraint_violation_rate']:.3f}; oracle days not solved to optimality: {s['oracle_days_not_optimal']}.", "",
             "| seed | J no-control € | J policy € | J oracle € |", "|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['j_base']:.2f} | {r['j_policy']:.2f} | {fmt(r['j_oracle'])} |" for r in result["days"]]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(result, out / f"{stem}.png")
    return out / f"{stem}.json"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = result["days"]
    x = np.arange(len(days))
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    ax.bar(x - 0.25, [d["j_base"] for d in days], width=0.25, label="no control", color="grey")
    ax.bar(x, [d["j_policy"] for d in days], width=0.25, label=result["summary"]["policy"], color="tab:blue")
    if days[0]["j_oracle"] is not None:
        ax.bar(x + 0.25, [d["j_oracle"] for d in days], width=0.25, label="oracle", color="tab:green")
    ax.set_xticks(x, [str(d["seed"]) for d in days], rotation=45, fontsize=7)
    ax.set(ylabel="system cost €", title=f"{result['summary']['suite']}: score {result['summary']['score']}")
    ax.legend()
    fig.savefig(path, dpi=90)
    plt.close(fig)
