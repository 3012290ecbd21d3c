"""The `flexenv` command line.

    flexenv demo                               the business models compared on the default scenario
    flexenv leaderboard SUITE --policy P       score a policy on a test suite
    flexenv envs                               registered environment ids (Markdown table)
    flexenv scenario list                      presets shipped with flexenv
    flexenv scenario show NAME_OR_PATH         the validated scenario, with units
    flexenv data plot NAME_OR_PATH --out F.png one day of every generated profile
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Unit of a field, read from its name's suffix (DESIGN.md §3: units in names).
_UNIT_SUFFIXES = (
    ("_eur_per_kw_month", "€/kW/month"),
    ("_eur_per_mw_h", "€/MW/h"),
    ("_eur_per_kw_h", "€/kW/h"),
    ("_eur_per_mwh", "€/MWh"),
    ("_eur_per_kwh", "€/kWh"),
    ("_eur_per_day", "€/day"),
    ("_k_per_kw", "K/kW"),
    ("_kwh_per_k", "kWh/K"),
    ("_pct_per_day", "%/day"),
    ("_eur", "€"),
    ("_kwh", "kWh"),
    ("_kwp", "kWp"),
    ("_kw", "kW"),
    ("_pct", "%"),
    ("_pu", "p.u."),
    ("_degc", "°C"),
    ("_deg", "°"),
    ("_k", "K"),
    ("_h", "h"),
    ("_hour", "h"),
    ("_hours", "h"),
    ("_minutes", "min"),
)


def unit_of(field: str) -> str:
    """The unit encoded in a field name ('' if none): `capacity_kwh` → 'kWh'."""
    if field == "kwp":
        return "kWp"
    for suffix, unit in _UNIT_SUFFIXES:
        if field.endswith(suffix) or field == suffix[1:]:
            return unit
    return ""


def format_tree(value, name: str = "", indent: int = 0) -> list[str]:
    """Render a nested dict/list of a dumped scenario as indented lines with units."""
    pad = "  " * indent
    if isinstance(value, dict):
        if set(value) == {"low", "high"}:
            unit = unit_of(name)
            return [f"{pad}{name}: {value['low']:g} .. {value['high']:g} {unit}".rstrip()]
        lines = [f"{pad}{name}:"] if name else []
        for key, item in value.items():
            lines += format_tree(item, key, indent + (1 if name else 0))
        return lines
    if isinstance(value, list) and value and isinstance(value[0], dict):
        lines = [f"{pad}{name}:"]
        for i, item in enumerate(value):
            lines += format_tree(item, f"[{i}]", indent + 1)
        return lines
    unit = unit_of(name)
    return [f"{pad}{name}: {value} {unit}".rstrip()]


def _scenario_show(args) -> int:
    from flexenv.scenario import load

    scenario = load(args.scenario)
    print("\n".join(format_tree(scenario.model_dump(mode="json"))))
    print(f"# {scenario.n_prosumers} prosumers, {scenario.time.days} day(s) of {scenario.time.ptus_per_day} PTUs")
    return 0


def _scenario_list(args) -> int:
    from flexenv.scenario import list_presets, list_tariffs, load

    for name in list_presets():
        print(f"{name:16s} {load(name).description}")
    print("tariffs:", ", ".join(list_tariffs()))
    return 0


def _data_plot(args) -> int:
    from flexenv.render import plot_scenario_day
    from flexenv.scenario import load
    from flexenv.scenario.data import generate

    scenario = load(args.scenario)
    data = generate(scenario, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    seed = scenario.seed if args.seed is None else args.seed
    plot_scenario_day(data, day=args.day, path=out, title=f"{scenario.name}, seed {seed}")
    print(f"wrote {out}")
    return 0


def env_table() -> str:
    """Markdown table of every registered environment id (README's table is this output)."""
    from flexenv.envs.registry import _REGISTRY
    from flexenv.scenario import load

    rows = ["| id | aggregator ↔ prosumers | aggregator ↔ DSO | preset | prosumers | agents |", "| --- | --- | --- | --- | --- | --- |"]
    for env_id, (prosumer_link, dso_link, preset) in _REGISTRY.items():
        n = load(preset).n_prosumers
        agents = "aggregator_1, dso" + ("" if prosumer_link == "gateway" else f", prosumer_0..{n - 1}")
        rows.append(f"| `{env_id}` | {prosumer_link} | {dso_link} | {preset} | {n} | {agents} |")
    return "\n".join(rows)


def _envs(args) -> int:
    print(env_table())
    return 0


def _demo(args) -> int:
    # The demo needs the oracle and the baselines, which sit above flexenv (they use it); the CLI is
    # the one place that reaches up, lazily.
    from baselines.demo import run_demo

    run_demo(args.scenario, seed=args.seed, out_dir=args.out, with_oracle=not args.no_oracle)
    print(f"wrote {args.out}/demo.csv, demo.md, demo.png")
    return 0


def _leaderboard(args) -> int:
    from baselines.leaderboard import evaluate, load_suite, write_outputs

    suite = load_suite(args.suite)
    result = evaluate(suite, args.policy, oracle=not args.no_oracle)
    path = write_outputs(result, args.out)
    s = result["summary"]
    score = "undefined" if s["score"] is None else f"{s['score']:.1f}"
    print(f"{suite.name} / {args.policy}: score {score}, mean system cost {s['j_policy_mean']:.2f} € "
          f"(no control {s['j_base_mean']:.2f} €), violation rate {s['constraint_violation_rate']:.3f}; wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flexenv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    scenario = commands.add_parser("scenario", help="inspect scenarios").add_subparsers(dest="action", required=True)
    show = scenario.add_parser("show", help="print a validated scenario with units")
    show.add_argument("scenario", help="preset name or YAML path")
    show.set_defaults(func=_scenario_show)
    listing = scenario.add_parser("list", help="list the shipped presets")
    listing.set_defaults(func=_scenario_list)

    demo = commands.add_parser("demo", help="compare the business models on the default scenario (the main job)")
    demo.add_argument("--scenario", default="teaching10", help="preset name or YAML path")
    demo.add_argument("--seed", type=int, default=2025, help="day seed")
    demo.add_argument("--out", default="out", help="output folder")
    demo.add_argument("--no-oracle", action="store_true", help="skip the MILP oracle (no scores)")
    demo.set_defaults(func=_demo)

    board = commands.add_parser("leaderboard", help="score a policy on a fixed test suite")
    board.add_argument("suite", help="suite name (configs/benchmarks) or YAML path")
    board.add_argument("--policy", default="builtin", help="builtin, nocontrol, random or module:function")
    board.add_argument("--out", default="out/leaderboard", help="output folder")
    board.add_argument("--no-oracle", action="store_true", help="skip the oracle (no score)")
    board.set_defaults(func=_leaderboard)

    envs = commands.add_parser("envs", help="list the registered environment ids as a Markdown table")
    envs.set_defaults(func=_envs)

    data = commands.add_parser("data", help="inspect generated data").add_subparsers(dest="action", required=True)
    plot = data.add_parser("plot", help="plot one day of every profile")
    plot.add_argument("scenario", help="preset name or YAML path")
    plot.add_argument("--out", required=True, help="PNG file to write")
    plot.add_argument("--day", type=int, default=0, help="episode day to plot (0-based)")
    plot.add_argument("--seed", type=int, default=None, help="data seed (default: the scenario's)")
    plot.set_defaults(func=_data_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flexenv.scenario import ScenarioError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ScenarioError, ValueError, ImportError, AttributeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
