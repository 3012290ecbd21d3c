"""What every SB3 training script shares: KPI callback, validation/test scoring, curves, manifest."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from baselines.evaluate import builtin_policy, episode_kpis, score
from baselines.sb3.envs import cached_engine

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
MANIFEST = CHECKPOINTS / "manifest.json"
VALIDATION_DAYS = list(range(900_000, 900_016))  # below the test seeds (≥ 1,000,000), never trained on


def single_thread() -> None:
    """One thread for torch and for numba's parallel kernels: deterministic, and no thread
    oversubscription when several processes share a small machine (parallel numba kernels then
    slow down by an order of magnitude)."""
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)


def versions() -> dict:
    import subprocess

    import gymnasium
    import stable_baselines3
    import torch

    import flexenv

    try:  # the environment's dynamics change with flexenv's code: record the commit trained on
        root = Path(flexenv.__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "flexenv"], cwd=root, capture_output=True, text=True,
                               check=False).stdout.strip()
        commit = (commit + ("+modified" if dirty else "")) or "?"
    except OSError:
        commit = "?"
    return {"python": platform.python_version(), "flexenv": getattr(flexenv, "__version__", "?"), "flexenv_commit": commit,
            "stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__,
            "gymnasium": gymnasium.__version__, "numpy": np.__version__}


def command_line() -> str:
    return " ".join(["python", shlex.quote(sys.argv[0])] + [shlex.quote(a) for a in sys.argv[1:]])


def logger_formats() -> list[str]:
    """SB3 logger outputs: stdout + CSV, and TensorBoard event files when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401

        return ["stdout", "csv", "tensorboard"]
    except ImportError:
        return ["stdout", "csv"]


def oracle_costs(scenario, seeds) -> list[float]:
    from baselines.oracle import solve

    return [float(solve(scenario, seed=int(s)).objective_eur) for s in seeds]


def run_episodes(scenario, seeds: list[int], policy="builtin") -> list[dict]:
    """As `baselines.evaluate.run_episodes`, on a cached engine (building one takes seconds)."""
    engine = cached_engine(scenario, len(seeds), nocontrol=(policy == "nocontrol"))
    act = builtin_policy(engine) if policy in ("builtin", "nocontrol") else policy(engine)
    obs = engine.reset(seeds)
    while not engine.done:
        obs, _, _ = engine.step(act(engine, obs))
    return [episode_kpis(engine, b) for b in range(len(seeds))]


def score_policy(scenario, seeds, policy, with_oracle: bool = True) -> dict:
    """J per day of `policy` (anything `run_episodes` takes), no control and oracle; the score."""
    j = [k["system_cost_eur"] for k in run_episodes(scenario, list(seeds), policy)]
    j_base = [k["system_cost_eur"] for k in run_episodes(scenario, list(seeds), "nocontrol")]
    j_oracle = oracle_costs(scenario, seeds) if with_oracle else None
    return {"seeds": list(map(int, seeds)), "j": j, "j_nocontrol": j_base, "j_oracle": j_oracle,
            "score": score(j_base, j, j_oracle) if with_oracle else None,
            "j_mean": float(np.mean(j)), "saving_eur_per_day": float(np.mean(np.subtract(j_base, j)))}


class KPICallback(BaseCallback):
    """Logs the day KPIs from `infos` (system cost, no-control cost, saving, congested PTUs) to the
    SB3 logger (stdout / CSV / TensorBoard) and, every `eval_every` environment decisions, the
    normalised score on validation days; keeps the curve points for the PNG."""

    def __init__(self, evaluate=None, eval_every: int = 1024):
        super().__init__()
        self.evaluate, self.eval_every = evaluate, eval_every
        self.window, self.curve, self._next_eval = [], [], 0

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done and "j_nocontrol_eur" in info:
                self.window.append((info["j_nocontrol_eur"] - info["j_eur"], info["j_eur"], info.get("congested_ptus", 0.0)))
        if self.num_timesteps >= self._next_eval:
            self._next_eval += self.eval_every
            self._record()
        return True

    def _on_training_end(self) -> None:
        self._record()

    def _record(self):
        point = {"steps": int(self.num_timesteps)}
        if self.window:
            w = np.asarray(self.window)
            point.update(episode_return=float(w[:, 0].mean()), j_eur=float(w[:, 1].mean()))
            self.logger.record("kpi/saving_vs_nocontrol_eur", point["episode_return"])
            self.logger.record("kpi/system_cost_eur", point["j_eur"])
            self.logger.record("kpi/congested_ptus", float(w[:, 2].mean()))
            self.window = []
        if self.evaluate is not None:
            point["val_score"] = self.evaluate(self.model)
            self.logger.record("kpi/validation_score_vs_oracle", point["val_score"])
        if self.curve and self.curve[-1]["steps"] == point["steps"]:
            return
        self.curve.append(point)
        self.logger.dump(self.num_timesteps)


def plot_curves(curves: list[list[dict]], path: Path, title: str, x_label: str, baselines: dict | None = None,
                return_label: str = "episode return: € saved vs no control / day") -> None:
    """Episode return and validation score vs training steps, mean ± std over seeds (one curve per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, key, label in ((axes[0], "episode_return", return_label),
                           (axes[1], "val_score", "validation score vs oracle (100 = oracle)")):
        grid = sorted({p["steps"] for c in curves for p in c if key in p})
        if not grid:
            continue
        ys = np.array([np.interp(grid, [p["steps"] for p in c if key in p], [p[key] for p in c if key in p]) for c in curves])
        mean, std = ys.mean(axis=0), ys.std(axis=0)
        ax.plot(grid, mean, color="tab:blue", label=f"mean ± std, {len(curves)} seeds")
        ax.fill_between(grid, mean - std, mean + std, color="tab:blue", alpha=0.25)
        for name, value in (baselines or {}).get(key, {}).items():
            if value is not None:
                ax.axhline(value, ls="--", lw=1, color={"rule-based": "tab:orange", "no control": "grey"}.get(name, "k"), label=name)
        ax.set(xlabel=x_label, ylabel=label)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def update_manifest(entry: dict, path: Path = MANIFEST) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"checkpoints": []}
    data["checkpoints"] = [c for c in data["checkpoints"] if c["name"] != entry["name"]] + [entry]
    data["checkpoints"].sort(key=lambda c: c["name"])
    path.write_text(json.dumps(data, indent=2) + "\n")


def summary_stats(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return float(v.mean()), float(v.std())
