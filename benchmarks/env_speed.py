"""Environment speed: flexenv through the PettingZoo API and the batched engine vs CityLearn 3.x.

flexenv, built-in policies for every agent (rule-based aggregator and DSO, energy boxes following the
plan their EMS made), power flow included in every operate step:

- PettingZoo API (`flexenv.make(id)`, one environment, `env.step(env.builtin_actions(obs))` until no
  agent is left) for 10, 40 and 100 prosumers (`PriceDriven-Tariff-{Teaching10,Rural40,Suburban100}-v0`)
  and, as extra fields, other links on the 40-prosumer feeder.
- Batched engine (`flexenv.engine.Engine(scenario, batch_size=B)`, the same built-in policies called on
  the whole batch) for B = 64 and 256 on the 40-prosumer scenario (and the 10-prosumer one as an extra).

Every env step counts: the planning steps (DSO tariffs, aggregator signals, every energy box's EMS) and
the 96 operate steps (devices, caps, power flow, settlement). Rates are over whole episodes, timed from
`reset` to the last step (reset included), after one warm-up episode of the same configuration (numba
compilation and caches excluded); the figure is the median over the timed episodes (the machine may be
shared with other processes), the aggregate over all of them and the spread are reported too. Also reported: the rate without the reset and the operate-only rate
(time spent in operate steps, policy included), since planning is dominated by the EMS.
prosumer-steps/s = batch x prosumers x steps / s.

The main figures run numba with one thread (`--numba-threads`) and BLAS with one thread, a per-core
comparison like CityLearn's OMP_NUM_THREADS=1; the batched engine is also run with every thread (numba's
and BLAS's defaults, in a child process) as an extra.

CityLearn (intelligent-environments-lab/CityLearn, MIT licence) runs in its own virtual environment,
in a subprocess started by this script, so both are measured in the same run: `CityLearnEnv(schema,
central_agent=True)` on the offline dataset `citylearn_challenge_2022_phase_all` (17 buildings, hourly)
kept in `<repo>/../shared/peers/citylearn/`, random actions, OMP_NUM_THREADS=1; building-steps/s =
buildings x steps / s after a warm-up of a few steps (construction and reset excluded), median of 10
chunks. It runs before and after flexenv's main figures and the faster run is the reference (the
machine's speed drifts between runs, so the ratios err on the low side). CityLearn has no power flow.
Its virtual environment (outside the repository):

    python -m venv <dir> && <dir>/bin/pip install torch==2.13.0 && <dir>/bin/pip install citylearn==3.0.2

then pass `--citylearn-python <dir>/bin/python` or set FLEXENV_CITYLEARN_PYTHON (default:
`<repo>/../citylearn-venv/bin/python`). The dataset: `--citylearn-schema` or FLEXENV_CITYLEARN_SCHEMA
(default `<repo>/../shared/peers/citylearn/citylearn_challenge_2022_phase_all/schema.json`). If CityLearn
cannot run, `citylearn_building_steps_per_s` is null and `citylearn.reason` says why.

Targets (project issue 5): flexenv prosumer-steps/s >= 20 x CityLearn building-steps/s through the API,
>= 500 x in batched mode.

Run: `python benchmarks/env_speed.py` (about 2-8 minutes on 2 cores, most of it the EMS planning of the
batched runs). Writes
benchmarks/results/env_speed.json and benchmarks/env_speed.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Main figures: one BLAS thread (per core, as CityLearn runs); set before numpy is imported. The child
# process that measures the batched engine with every thread (FLEXENV_BENCH_ALL_THREADS=1) keeps the defaults.
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ORIGINAL_ENV = dict(os.environ)
ALL_THREADS_CHILD = os.environ.get("FLEXENV_BENCH_ALL_THREADS") == "1"
if not ALL_THREADS_CHILD:
    for _var in BLAS_VARS:
        os.environ.setdefault(_var, "1")

import numba
import numpy as np

import flexenv
from flexenv.engine import Engine
from flexenv.envs.registry import scenario_for
from flexenv.policies.rule_based import RuleBasedAggregator, RuleBasedDSO, follow_plan
from machine import describe_machine  # benchmarks/machine.py (scripts run from this folder)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
API_IDS = {10: "PriceDriven-Tariff-Teaching10-v0", 40: "PriceDriven-Tariff-Rural40-v0", 100: "PriceDriven-Tariff-Suburban100-v0"}
API_OTHER_IDS = ("MaxPower-Isolated-Rural40-v0", "Gateway-Tariff-Rural40-v0", "Iterative-Tariff-Rural40-v0")
BATCHED_ID = "PriceDriven-Tariff-Rural40-v0"
BATCHED_OTHER_ID = "PriceDriven-Tariff-Teaching10-v0"
TARGET_API_X, TARGET_BATCHED_X = 20.0, 500.0
WARMUP_BATCH = 32
PEER = {
    "name": "CityLearn",
    "repository": "intelligent-environments-lab/CityLearn",
    "licence": "MIT",
    "dataset": "citylearn_challenge_2022_phase_all (CityLearn repository data/datasets, tag 2.4.2; 17 buildings, hourly)",
    "setup": "CityLearnEnv(schema, central_agent=True), offline schema path, random actions, OMP_NUM_THREADS=1, own virtual environment",
}

# Runs inside CityLearn's virtual environment; prints one JSON line.
CITYLEARN_SCRIPT = r"""
import inspect, json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
schema, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import citylearn
from citylearn.citylearn import CityLearnEnv
kwargs = {"central_agent": True}
if "offline" in inspect.signature(CityLearnEnv.__init__).parameters:
    kwargs["offline"] = True
t0 = time.perf_counter()
env = CityLearnEnv(schema, **kwargs)
t1 = time.perf_counter()
env.reset()
t2 = time.perf_counter()
n_buildings = len(env.buildings)
episode_steps = int(env.time_steps) - 1
rng = np.random.default_rng(0)
space = env.action_space[0]
low, high = np.asarray(space.low), np.asarray(space.high)
def run(n):
    k = 0
    for _ in range(n):
        a = [rng.uniform(low, high).astype(np.float32)]
        out = env.step(a)
        k += 1
        done = out[2] if len(out) == 4 else (out[2] or out[3])
        if done:
            break
    return k
warm = run(warmup)
chunks, k_all, t_all = [], 0, 0.0
budget = min(steps, episode_steps - warm)
size = max(1, budget // 10)
while k_all < budget:
    t3 = time.perf_counter()
    n = run(min(size, budget - k_all))
    dt = time.perf_counter() - t3
    if n == 0:
        break
    chunks.append(n_buildings * n / dt)
    k_all += n
    t_all += dt
print(json.dumps({"version": getattr(citylearn, "__version__", None), "n_buildings": n_buildings,
                  "steps": k_all, "seconds": t_all, "warmup_steps": warm, "episode_steps": episode_steps,
                  "construct_s": t1 - t0, "reset_s": t2 - t1, "kwargs": sorted(kwargs),
                  "building_steps_per_s": float(np.median(chunks)), "steps_per_s": float(np.median(chunks)) / n_buildings,
                  "building_steps_per_s_aggregate": n_buildings * k_all / t_all,
                  "building_steps_per_s_min_max": [min(chunks), max(chunks)], "chunks": len(chunks)}))
"""


def machine() -> str:
    return describe_machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def threading_layer() -> str | None:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel ran
        return None


def source_state() -> dict:
    """Commit of the checkout flexenv was imported from, and its uncommitted changes under flexenv/."""
    root = Path(flexenv.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "flexenv"], cwd=root, capture_output=True, text=True,
                               timeout=30, check=False).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit or None, "uncommitted_changes": sorted(line[3:] for line in dirty if line.strip())}


# ------------------------------------------------------------------------------------------- flexenv
def api_episode(env, seed: int) -> dict:
    """One whole episode through the PettingZoo API; built-in policies for every agent."""
    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    t1 = time.perf_counter()
    steps = operate = 0
    operate_s = 0.0
    engine = env.engine
    while env.agents:
        s = time.perf_counter()
        is_operate = engine.current.phase == "operate"
        obs, _, _, _, _ = env.step(env.builtin_actions(obs))
        steps += 1
        if is_operate:
            operate += 1
            operate_s += time.perf_counter() - s
    t2 = time.perf_counter()
    return {"total_s": t2 - t0, "reset_s": t1 - t0, "steps": steps, "operate_steps": operate, "operate_s": operate_s}


def batched_episode(engine: Engine, agg, dso, seeds: list[int]) -> dict:
    """One whole episode of every batch row of the engine; built-in policies on the whole batch."""
    t0 = time.perf_counter()
    obs = engine.reset(seeds)
    t1 = time.perf_counter()
    steps = operate = 0
    operate_s = 0.0
    while not engine.done:
        s = time.perf_counter()
        is_operate = engine.current.phase == "operate"
        actions = {"aggregator": agg(obs["aggregator"]), "dso": dso(obs["dso"]), "prosumer": follow_plan(engine, obs["prosumer"])}
        obs, _, _ = engine.step(actions)
        steps += 1
        if is_operate:
            operate += 1
            operate_s += time.perf_counter() - s
    t2 = time.perf_counter()
    return {"total_s": t2 - t0, "reset_s": t1 - t0, "steps": steps, "operate_steps": operate, "operate_s": operate_s}


def rates(episodes: list[dict], n_prosumers: int, batch: int = 1) -> dict:
    """Median over the timed episodes (robust to other processes on a shared machine), plus the
    aggregate over all of them (total steps / total time) and the spread."""
    scale = batch * n_prosumers
    per_episode = [scale * e["steps"] / e["total_s"] for e in episodes]
    per_episode_op = [scale * e["operate_steps"] / e["operate_s"] for e in episodes]
    total = sum(e["total_s"] for e in episodes)
    reset = sum(e["reset_s"] for e in episodes)
    steps = sum(e["steps"] for e in episodes)
    op_s = sum(e["operate_s"] for e in episodes)
    plan_s = total - reset - op_s
    med = float(np.median(per_episode))
    return {
        "steps_per_s": med / n_prosumers,
        "prosumer_steps_per_s": med,
        "prosumer_steps_per_s_aggregate": scale * steps / total,
        "prosumer_steps_per_s_min_max": [min(per_episode), max(per_episode)],
        "prosumer_steps_per_s_without_reset": scale * steps / (total - reset),
        "operate_steps_per_s": float(np.median(per_episode_op)) / n_prosumers,
        "operate_prosumer_steps_per_s": float(np.median(per_episode_op)),
        "steps_per_episode": episodes[0]["steps"],
        "planning_steps_per_episode": episodes[0]["steps"] - episodes[0]["operate_steps"],
        "episodes_timed": len(episodes) * batch,
        "seconds_timed": total,
        "ms_per_episode": {"reset": 1e3 * reset / len(episodes), "planning": 1e3 * plan_s / len(episodes),
                           "operate": 1e3 * op_s / len(episodes)},
        "us_per_prosumer_step": 1e6 / med,
        "n_prosumers": n_prosumers,
    }


def bench_api(env_id: str, episodes: int, seed: int) -> dict:
    t0 = time.perf_counter()
    env = flexenv.make(env_id)
    make_s = time.perf_counter() - t0
    api_episode(env, seed - 1)  # warm-up
    runs = [api_episode(env, seed + i) for i in range(episodes)]
    out = {"env_id": env_id, **rates(runs, env.engine.P), "make_s": make_s,
           "agents": len(env.possible_agents)}
    print(f"api {env_id}: {out['steps_per_s']:.0f} steps/s, {out['prosumer_steps_per_s']:.0f} prosumer-steps/s "
          f"(operate only {out['operate_prosumer_steps_per_s']:.0f})", flush=True)
    return out


def bench_batched(env_id: str, batch: int, episodes: int, seed: int) -> dict:
    # warm-up: one episode of a smaller batch (> the power flow's chunk, so its parallel kernel compiles too)
    small = min(batch, WARMUP_BATCH)
    warm = Engine(scenario_for(env_id), batch_size=small)
    batched_episode(warm, RuleBasedAggregator(warm), RuleBasedDSO(warm), [seed - 1 - b for b in range(small)])
    engine = Engine(scenario_for(env_id), batch_size=batch)
    agg, dso = RuleBasedAggregator(engine), RuleBasedDSO(engine)
    runs = [batched_episode(engine, agg, dso, [seed + i * batch + b for b in range(batch)]) for i in range(episodes)]
    out = {"env_id": env_id, "batch_size": batch, **rates(runs, engine.P, batch)}
    print(f"batched {env_id} B={batch}: {out['prosumer_steps_per_s']:.0f} prosumer-steps/s "
          f"(operate only {out['operate_prosumer_steps_per_s']:.0f})", flush=True)
    return out


# ------------------------------------------------------------------------------------------ CityLearn
def run_citylearn(python: Path, schema: Path, steps: int, warmup: int, timeout_s: float) -> dict:
    if not python.exists():
        return {"reason": f"CityLearn's Python not found ({python.name} under --citylearn-python / FLEXENV_CITYLEARN_PYTHON); "
                          "create its virtual environment as the docstring says"}
    if not schema.exists():
        return {"reason": "CityLearn dataset schema.json not found (--citylearn-schema / FLEXENV_CITYLEARN_SCHEMA)"}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run([str(python), "-c", CITYLEARN_SCRIPT, str(schema), str(steps), str(warmup)],
                              capture_output=True, text=True, timeout=timeout_s, env=env, cwd=str(schema.parent),
                              check=False)
    except subprocess.TimeoutExpired:
        return {"reason": f"CityLearn did not finish within {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"reason": f"CityLearn exited with code {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------- report
def ratio(x: float, ref: float | None) -> float | None:
    return None if not ref else x / ref


def write_md(res: dict, path: Path) -> None:
    ref = res["citylearn_building_steps_per_s"]
    cl = res["citylearn"]
    lines = [
        "# Environment speed: flexenv vs CityLearn",
        "",
        f"Generated by `benchmarks/env_speed.py` on {res['date']} ({res['machine']}; load average at start "
        f"{res['load_average_start']}, at end {res['load_average_end']}; flexenv commit "
        f"{(res['flexenv_source'].get('commit') or '?')[:10]}"
        + (f", with uncommitted changes in {', '.join(res['flexenv_source']['uncommitted_changes'])}"
           if res["flexenv_source"].get("uncommitted_changes") else "") + ").",
        "",
        (f"Main figures with {res['numba_threads']} numba thread and one BLAS thread, i.e. per core, as CityLearn runs "
         f"with OMP_NUM_THREADS=1; the batched engine with numba's {res['numba_threads_available']} threads and BLAS's "
         "default threads is an extra row."),
        "",
        ("flexenv: built-in policies for every agent, power flow in every operate step; every step counted "
         "(planning steps with the EMS + 96 operate steps); rates over whole episodes from reset, after a warm-up "
         "episode; median over the timed episodes. prosumer-steps/s = batch x prosumers x steps / s."),
        "",
    ]
    if ref:
        lo, hi = cl["building_steps_per_s_min_max"]
        lines += [(f"CityLearn {cl.get('version')} (MIT; dataset citylearn_challenge_2022_phase_all, {cl['n_buildings']} "
                   "buildings, central agent, random actions, OMP_NUM_THREADS=1, no power flow), same run: "
                   f"**{ref:,.0f} building-steps/s** ({cl['steps_per_s']:.1f} env steps/s; median of {cl['chunks']} chunks "
                   f"of {cl['steps']} steps, range {lo:,.0f}-{hi:,.0f}), the faster of its runs before and after "
                   "flexenv's main figures ("
                   + ", ".join(f"{x:,.0f}" for x in cl.get("runs_building_steps_per_s", [ref]) if x) + ")."), ""]
    else:
        lines += [f"CityLearn could not run: {cl.get('reason')}. Ratios are not available.", ""]
    lines += [
        "| mode | env id | prosumers x batch | env steps/s | prosumer-steps/s | vs CityLearn | target | | operate-only prosumer-steps/s | operate-only vs CityLearn |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def row(mode, r, target):
        x = ratio(r["prosumer_steps_per_s"], ref)
        xo = ratio(r["operate_prosumer_steps_per_s"], ref)
        met = "" if x is None or target is None else ("met" if x >= target else "missed")
        return (f"| {mode} | {r['env_id']} | {r['n_prosumers']} x {r.get('batch_size', 1)} | {r['steps_per_s']:,.0f} | "
                f"{r['prosumer_steps_per_s']:,.0f} | {'' if x is None else f'{x:.1f} x'} | "
                f"{'' if target is None else f'>= {target:g} x'} | {met} | {r['operate_prosumer_steps_per_s']:,.0f} | "
                f"{'' if xo is None else f'{xo:.1f} x'} |")

    for r in res["api"].values():
        lines.append(row("API", r, TARGET_API_X))
    for r in res["batched"].values():
        lines.append(row("batched", r, TARGET_BATCHED_X))
    for r in res["api_other_links"].values():
        lines.append(row("API (extra)", r, None))
    for r in res["batched_other"].values():
        lines.append(row("batched (extra)", r, None))
    for r in res["batched_all_threads"].values():
        lines.append(row(f"batched, {r['numba_threads']} numba threads, default BLAS threads (extra)", r, None))
    t = res["targets"]
    lines += ["", "Targets: API " + ("met" if t["api_met"] else "missed" if t["api_met"] is False else "not evaluated")
              + f" (>= {TARGET_API_X:g} x at every prosumer count); batched "
              + ("met" if t["batched_met"] else "missed" if t["batched_met"] is False else "not evaluated")
              + f" (>= {TARGET_BATCHED_X:g} x at every batch size).", ""]
    lines += ["Time per episode (ms; for batched: per batch of episodes):", "",
              "| mode | env id | batch | episodes timed | reset | planning steps | operate steps | µs per prosumer-step | prosumer-steps/s min-max over episodes |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode, group in (("API", res["api"]), ("batched", res["batched"]), ("API (extra)", res["api_other_links"]),
                        ("batched (extra)", res["batched_other"]),
                        ("batched, all threads (extra)", res["batched_all_threads"])):
        for r in group.values():
            m = r["ms_per_episode"]
            lo, hi = r["prosumer_steps_per_s_min_max"]
            lines.append(f"| {mode} | {r['env_id']} | {r.get('batch_size', 1)} | {r['episodes_timed']} | {m['reset']:.1f} | "
                         f"{m['planning']:.1f} | {m['operate']:.1f} | {r['us_per_prosumer_step']:.2f} | {lo:,.0f}-{hi:,.0f} |")
    lines += ["", ("Planning time is the energy boxes' EMS (one plan per prosumer and day) plus the aggregator's and "
                   "DSO's planning actions; the operate-only figures leave it out and are not the target figures."), ""]
    path.write_text("\n".join(lines))


def run_all_threads_child(args) -> dict:
    """The batched engine with numba's and BLAS's default thread counts, in a child process (BLAS reads
    its thread count at import)."""
    env = dict(ORIGINAL_ENV, FLEXENV_BENCH_ALL_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-batched", "--batched-episodes", str(args.all_threads_episodes),
           "--seed", str(args.seed), "--batch-sizes", *map(str, args.batch_sizes)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])}
    return json.loads(lines[-1])


def child_batched(args) -> None:
    threads = numba.get_num_threads()
    out = {}
    for b in args.batch_sizes:
        r = bench_batched(BATCHED_ID, b, args.batched_episodes, args.seed)
        r["numba_threads"] = threads
        r["blas_threads"] = {v: os.environ.get(v, "default") for v in BLAS_VARS}
        out[str(b)] = r
    print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-episodes", type=int, default=30,
                    help="timed episodes per API configuration (a longer window: the median is steadier on a shared machine)")
    ap.add_argument("--batched-episodes", type=int, default=2, help="timed batch episodes per batched configuration")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--no-extras", action="store_true", help="skip the extra links and the 10-prosumer batched runs")
    ap.add_argument("--citylearn-python", type=Path,
                    default=Path(os.environ.get("FLEXENV_CITYLEARN_PYTHON", REPO.parent / "citylearn-venv" / "bin" / "python")))
    ap.add_argument("--citylearn-schema", type=Path,
                    default=Path(os.environ.get("FLEXENV_CITYLEARN_SCHEMA", REPO.parent / "shared" / "peers" / "citylearn"
                                                / "citylearn_challenge_2022_phase_all" / "schema.json")))
    ap.add_argument("--citylearn-steps", type=int, default=3000, help="timed CityLearn steps (hours)")
    ap.add_argument("--citylearn-warmup", type=int, default=24)
    ap.add_argument("--citylearn-timeout", type=float, default=300.0)
    ap.add_argument("--skip-citylearn", action="store_true")
    ap.add_argument("--numba-threads", type=int, default=1,
                    help="numba threads for the main figures (default 1: per core, as CityLearn with OMP_NUM_THREADS=1)")
    ap.add_argument("--no-all-threads", action="store_true", help="skip the batched runs with every thread")
    ap.add_argument("--all-threads-episodes", type=int, default=1, help="timed batch episodes with every thread")
    ap.add_argument("--child-batched", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "env_speed.json")
    ap.add_argument("--md", type=Path, default=HERE / "env_speed.md")
    args = ap.parse_args()
    if args.child_batched:
        return child_batched(args)

    started = time.perf_counter()
    load_start = load_average()
    def citylearn() -> dict:
        if args.skip_citylearn:
            return {"reason": "skipped (--skip-citylearn)"}
        print("CityLearn ...", flush=True)
        out = run_citylearn(args.citylearn_python.expanduser(), args.citylearn_schema.expanduser(), args.citylearn_steps,
                            args.citylearn_warmup, args.citylearn_timeout)
        print(f"CityLearn: {out.get('building_steps_per_s', out.get('reason'))}", flush=True)
        return out

    all_threads = numba.get_num_threads()
    numba.set_num_threads(min(args.numba_threads, all_threads))
    # CityLearn before and after flexenv's main figures: the machine's speed drifts between runs (seen: the peer
    # by about 12 %), so the reference is the faster of the two CityLearn runs (the ratios err on the low side)
    cl_runs = [citylearn()]
    api = {str(p): bench_api(env_id, args.api_episodes, args.seed) for p, env_id in API_IDS.items()}
    batched = {str(b): bench_batched(BATCHED_ID, b, args.batched_episodes, args.seed) for b in args.batch_sizes}
    if not args.skip_citylearn and "building_steps_per_s" in cl_runs[0]:
        cl_runs.append(citylearn())
    measured = [r for r in cl_runs if "building_steps_per_s" in r]
    cl = max(measured, key=lambda r: r["building_steps_per_s"]) if measured else cl_runs[-1]
    cl = {**cl, "runs_building_steps_per_s": [r.get("building_steps_per_s") for r in cl_runs],
          "reference": "the faster of the CityLearn runs before and after flexenv's main (API and batched) figures"}
    ref = cl.get("building_steps_per_s")
    api_other, batched_other = {}, {}
    if not args.no_extras:
        api_other = {env_id: bench_api(env_id, args.api_episodes, args.seed) for env_id in API_OTHER_IDS}
        batched_other = {f"{BATCHED_OTHER_ID}/{b}": bench_batched(BATCHED_OTHER_ID, b, args.batched_episodes, args.seed)
                         for b in args.batch_sizes}
    batched_all = {}
    if not args.no_all_threads and all_threads > 1:
        print("batched engine with every thread (child process) ...", flush=True)
        batched_all = run_all_threads_child(args)
    all_threads_error = batched_all.pop("error", None)
    for group in (api, batched, api_other, batched_other, batched_all):
        for r in group.values():
            r["ratio_vs_citylearn"] = ratio(r["prosumer_steps_per_s"], ref)
            r["operate_ratio_vs_citylearn"] = ratio(r["operate_prosumer_steps_per_s"], ref)

    api_x = {p: r["ratio_vs_citylearn"] for p, r in api.items()}
    batched_x = {b: r["ratio_vs_citylearn"] for b, r in batched.items()}
    res = {
        "citylearn_building_steps_per_s": ref,
        "citylearn": {**cl, "peer": PEER, "power_flow": False},
        "api": api,
        "batched": batched,
        "api_other_links": api_other,
        "batched_other": batched_other,
        "batched_all_threads": batched_all,
        "batched_all_threads_error": all_threads_error,
        "targets": {
            "api_ratio_min": TARGET_API_X, "batched_ratio_min": TARGET_BATCHED_X,
            "api_ratio": api_x, "batched_ratio": batched_x,
            "api_met": None if ref is None else all(x >= TARGET_API_X for x in api_x.values()),
            "batched_met": None if ref is None else all(x >= TARGET_BATCHED_X for x in batched_x.values()),
        },
        "method": ("flexenv: built-in policies for all agents, power flow every operate step, every env step counted "
                   "(planning + operate), whole episodes timed from reset after one warm-up episode per configuration; "
                   "CityLearn: random actions, construction and reset excluded, same run, own virtual environment."),
        "machine": machine(),
        "numba_threads": numba.get_num_threads(),
        "numba_threads_available": all_threads,
        "blas_threads": {v: os.environ.get(v, "default") for v in BLAS_VARS},
        "numba_threading_layer": threading_layer(),
        "flexenv_source": source_state(),
        "numpy": np.__version__,
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "benchmark_seconds": time.perf_counter() - started,
        "date": datetime.date.today().isoformat(),
        "seed": args.seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    write_md(res, args.md)
    print(args.md.read_text())


if __name__ == "__main__":
    sys.exit(main())
