"""Energy-box EMS vs the exact prosumer MILP (HiGHS): bill gap, cap compliance and speed.

Instances: every one of the 32 device mixes (PV, battery, EV, heat pump, appliance present or not)
x 3 price kinds (flat, ToU, volatile) x with / without import-export caps, ``--reps`` random
prosumer-days each (15-minute PTUs). Both plans are executed with the device kernels and scored with
the same objective (bill + soft-constraint penalties, :class:`flexenv.policies.ems.Penalties`).

Gap of the flexible part of the bill, per instance::

    gap_pct = 100 * (J_ems - J_milp) / max(|J_milp - J_inflex|, floor_eur)

J_inflex is the bill of the inflexible load and PV alone (no flexible device, no penalty; PV used
where it lowers the bill), so J - J_inflex is the flexible part of the objective (device energy and
penalties). The earlier, more lenient figure is kept as ``*_vs_idle_devices``: the denominator there
is |J_milp - J_idle| with J_idle = the objective with every flexible device idle, penalties included
(an uncharged EV's unmet penalty inflates it). Statistics are over instances with at least one of
battery, EV, heat pump or appliance. ``cap_violations`` counts instances whose executed EMS plan
exceeds the caps by more than the MILP's minimal violation (+ 1e-6 kWh).

Speed: a batch of random mixed prosumer-days planned by the EMS with one numba thread after a warm-up
call (compile time excluded) -> plans per second per core; the MILP's build + solve time per
prosumer-day (HiGHS, one thread, mip_rel_gap 1e-4) measured on the accuracy instances.

Run: ``python benchmarks/ems.py`` (a few minutes on 2 cores). Writes benchmarks/results/ems.json and
benchmarks/ems.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import time
from pathlib import Path

import numba
import numpy as np

from baselines.oracle import prosumer as milp
from flexenv.policies import ems
from machine import describe_machine  # benchmarks/machine.py (scripts run from this folder)

HERE = Path(__file__).resolve().parent
# measured next to the default (exact LP, up to 8 solves): the energy boxes' profile in the environments
# (the LP with up to 2 solves) and the former default (coordinate descent)
OTHER_PROFILES = {"engine_profile": ems.ENGINE_PROFILE, "descent_profile": ems.DESCENT_PROFILE}


def machine() -> str:
    return describe_machine()


def inflexible_bill(pb: ems.ProsumerProblem, pen: ems.Penalties) -> np.ndarray:
    """Bill of the inflexible load and PV alone (no flexible device, no penalty), PV used where it
    lowers the bill (the bill is convex in the PV use, so an end or the zero-net point is optimal)."""
    pr = ems.prepare(pb, pen)
    load = np.asarray(pb.load_kw, float)
    bill = lambda n: pr.pi * np.maximum(n, 0) - pr.pe * np.maximum(-n, 0)  # noqa: E731
    cands = (load - pr.pv_kw, load, np.clip(0.0, load - pr.pv_kw, load))
    return pr.dt * np.minimum.reduce([bill(n) for n in cands]).sum(1)


def base_objective(pb: ems.ProsumerProblem, pen: ems.Penalties) -> np.ndarray:
    """Objective with all flexible devices idle (PV used optimally), EV unmet / comfort included."""
    P, H = np.asarray(pb.load_kw).shape
    z = np.zeros((P, H))
    pr = ems.prepare(pb, pen)
    # PV use that minimises the cost of the idle net, PTU by PTU (same rule as the EMS)
    pv = np.zeros((P, H))
    for p in range(P):
        for t in range(H):
            _, x = ems._F0(pr.base_kw[p, t], pr.pi[p, t], pr.pe[p, t], pr.cap_imp[p, t], pr.cap_exp[p, t],
                           pr.w_cap, pr.pv_kw[p, t])
            pv[p, t] = pr.base_kw[p, t] - x
    start = np.where(pr.app_has, pr.app_lo + int(pb.t0), -1)  # an appliance must still run once
    return ems.execute(pb, z, z, z, pv, start, pen).objective_eur


def run(reps: int, seed: int, n_speed: int, floor_eur: float) -> dict:
    rng = np.random.default_rng(seed)
    pen = ems.Penalties()
    cfg = ems.EMSConfig()
    rows = []
    milp_secs = []
    ems.plan(ems.random_problem(np.random.default_rng(0), 4))  # compile outside any figure
    for mix in itertools.product([False, True], repeat=5):
        for kind in ems.PRICE_KINDS:
            for caps in (False, True):
                pb = ems.random_problem(rng, reps, 15, kind, caps, presence=np.tile(np.array(mix), (reps, 1)))
                plan = ems.plan(pb, cfg)
                out_e = ems.execute_plan(pb, plan, pen)
                out_alt = {name: ems.execute_plan(pb, ems.plan(pb, c._replace(penalties=pen)), pen)
                           for name, c in OTHER_PROFILES.items()}
                j_base = base_objective(pb, pen)
                j_inflex = inflexible_bill(pb, pen)
                for i in range(reps):
                    sub = ems.select(pb, slice(i, i + 1))
                    t0 = time.perf_counter()
                    r = milp.solve(sub, pen, mip_rel_gap=1e-4, threads=1)
                    milp_secs.append(time.perf_counter() - t0)
                    out_m = ems.execute(sub, r.battery_kw, r.ev_kw, r.heat_pump_kw, r.pv_used_kw,
                                        r.appliance_start_ptu, pen)
                    rows.append(dict(mix=[int(m) for m in mix], prices=kind, caps=caps,
                                     j_ems=float(out_e.objective_eur[i]), j_milp=float(out_m.objective_eur[0]),
                                     **{f"j_{name}": float(o.objective_eur[i]) for name, o in out_alt.items()},
                                     **{f"capv_{name}": float(o.cap_violation_kwh[i]) for name, o in out_alt.items()},
                                     j_milp_solver=float(r.objective_eur[0]), j_base=float(j_base[i]), j_inflex=float(j_inflex[i]),
                                     capv_ems=float(out_e.cap_violation_kwh[i]),
                                     capv_milp=float(out_m.cap_violation_kwh[0]), mip_gap=r.mip_gap))
    flexible = [r for r in rows if any(r["mix"][1:])]
    gaps = np.array([100.0 * (r["j_ems"] - r["j_milp"]) / max(abs(r["j_milp"] - r["j_inflex"]), floor_eur)
                     for r in flexible])
    gaps_idle = np.array([100.0 * (r["j_ems"] - r["j_milp"]) / max(abs(r["j_milp"] - r["j_base"]), floor_eur)
                          for r in flexible])
    names = ["pv", "battery", "ev", "heat_pump", "appliance"]
    for r, g, gi in zip(flexible, gaps, gaps_idle):
        r["gap_pct"] = float(g)
        r["gap_vs_idle_devices_pct"] = float(gi)
        r["description"] = (f"{'+'.join(n for n, m in zip(names, r['mix']) if m)}, {r['prices']} prices, "
                            f"{'with' if r['caps'] else 'without'} caps")
    gaps_eur = np.array([r["j_ems"] - r["j_milp"] for r in flexible])
    gaps_tot = np.array([100.0 * (r["j_ems"] - r["j_milp"]) / max(abs(r["j_milp"]), floor_eur) for r in flexible])
    capv = sum(1 for r in rows if r["caps"] and r["capv_ems"] > r["capv_milp"] + 1e-6)
    milp_exec_err = max(abs(r["j_milp"] - r["j_milp_solver"]) for r in rows)

    # speed: mixed random prosumers, one thread, compile excluded
    numba.set_num_threads(1)
    srng = np.random.default_rng(seed + 1)
    probs = [ems.random_problem(srng, n_speed // 6, 15, kind, caps)
             for kind in ems.PRICE_KINDS for caps in (False, True)]
    n = sum(np.asarray(pb.load_kw).shape[0] for pb in probs)

    def plan_seconds(c):
        for pb in probs:
            ems.plan(pb, c)
        t0 = time.perf_counter()
        for pb in probs:
            ems.plan(pb, c)
        return time.perf_counter() - t0

    ems_secs = plan_seconds(cfg)
    lp_solves_per_plan = 0.0
    proven = []
    for pb in probs:
        pr = ems.prepare(pb, pen)
        *_, st = ems._lp_plan_kernel(*ems._lp_kernel_args(pr, cfg))
        lp_solves_per_plan += st[:, 0].sum() / n
        proven.extend(st[pr.app_has, 3].tolist())
    alt_secs = {name: plan_seconds(c) for name, c in OTHER_PROFILES.items()}
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    def profile_stats(name):
        g = np.array([100.0 * (r[f"j_{name}"] - r["j_milp"]) / max(abs(r["j_milp"] - r["j_inflex"]), floor_eur)
                      for r in flexible])
        return dict(
            config={k: v for k, v in OTHER_PROFILES[name]._asdict().items() if k != "penalties"},
            median_gap_pct=float(np.median(g)), worst_gap_pct=float(g.max()),
            p95_gap_pct=float(np.percentile(g, 95)), p99_gap_pct=float(np.percentile(g, 99)),
            instances_over_worst_target=int(np.sum(g > 3.0)),
            worst_gap_eur=float(max(r[f"j_{name}"] - r["j_milp"] for r in flexible)),
            cap_violations=int(sum(1 for r in rows if r["caps"] and r[f"capv_{name}"] > r["capv_milp"] + 1e-6)),
            plans_per_second=float(n / alt_secs[name]),
        )

    by = {}
    for key in ("prices", "caps"):
        for val in sorted({r[key] for r in flexible}, key=str):
            g = np.array([r["gap_pct"] for r in flexible if r[key] == val])
            by[f"{key}={val}"] = dict(n=int(g.size), median_gap_pct=float(np.median(g)), worst_gap_pct=float(g.max()))
    for d in range(1, 5):
        g = np.array([r["gap_pct"] for r in flexible if r["mix"][d]])
        by[f"with {names[d]}"] = dict(n=int(g.size), median_gap_pct=float(np.median(g)), worst_gap_pct=float(g.max()))
    return dict(
        n_instances=len(flexible),
        n_instances_total=len(rows),
        median_gap_pct=float(np.median(gaps)),
        worst_gap_pct=float(gaps.max()),
        p95_gap_pct=float(np.percentile(gaps, 95)),
        p99_gap_pct=float(np.percentile(gaps, 99)),
        instances_over_worst_target=int(np.sum(gaps > 3.0)),
        median_gap_eur=float(np.median(gaps_eur)),
        worst_gap_eur=float(gaps_eur.max()),
        share_within_0_5_pct=float(np.mean(gaps <= 0.5)),
        min_gap_pct=float(gaps.min()),
        median_gap_vs_idle_devices_pct=float(np.median(gaps_idle)),
        worst_gap_vs_idle_devices_pct=float(gaps_idle.max()),
        worst_instance=flexible[int(np.argmax(gaps))]["description"],
        median_gap_vs_total_objective_pct=float(np.median(gaps_tot)),
        worst_gap_vs_total_objective_pct=float(gaps_tot.max()),
        gap_floor_eur=floor_eur,
        cap_violations=int(capv),
        capped_instances=int(sum(r["caps"] for r in rows)),
        ems_plans_per_second=float(n / ems_secs),
        ems_speed_prosumer_days=int(n),
        lp_solves_per_plan=float(lp_solves_per_plan),
        appliance_start_proven_share=float(np.mean(proven)) if proven else 1.0,
        **{name: profile_stats(name) for name in OTHER_PROFILES},
        milp_seconds_per_plan=float(np.mean(milp_secs)),
        milp_seconds_median=float(np.median(milp_secs)),
        milp_max_reported_mip_gap=float(max(r["mip_gap"] for r in rows)),
        milp_executed_vs_solver_objective_max_abs_eur=float(milp_exec_err),
        speedup_ems_vs_milp=float((n / ems_secs) * np.mean(milp_secs)),
        breakdown=by,
        ems_config={k: v for k, v in cfg._asdict().items() if k != "penalties"},
        penalties=pen._asdict(),
        targets=dict(median_gap_pct=0.5, worst_gap_pct=3.0, cap_violations=0, ems_plans_per_second=5000),
        machine=machine(),
        date=datetime.date.today().isoformat(),
        seed=seed,
        reps_per_cell=reps,
        worst_instances=sorted(flexible, key=lambda r: -r["gap_pct"])[:5],
    )


def write_md(res: dict, path: Path) -> None:
    t = res["targets"]
    ok = lambda good: "met" if good else "missed"  # noqa: E731
    lines = [
        "# Energy-box EMS vs exact MILP",
        "",
        f"Generated by `benchmarks/ems.py` on {res['date']} ({res['machine']}).",
        "",
        "| metric | measured | target | |",
        "| --- | --- | --- | --- |",
        f"| instances (with a flexible device) | {res['n_instances']} of {res['n_instances_total']} | >= 200 | |",
        f"| median gap of the flexible bill | {res['median_gap_pct']:.3f} % | <= {t['median_gap_pct']} % | "
        f"{ok(res['median_gap_pct'] <= t['median_gap_pct'])} |",
        f"| worst gap | {res['worst_gap_pct']:.2f} % | <= {t['worst_gap_pct']} % | "
        f"{ok(res['worst_gap_pct'] <= t['worst_gap_pct'])} |",
        f"| worst instance | {res['worst_instance']} | | |",
        f"| 95th / 99th percentile gap | {res['p95_gap_pct']:.2f} % / {res['p99_gap_pct']:.2f} % | | |",
        f"| instances above the worst-gap target | {res['instances_over_worst_target']} of {res['n_instances']} | 0 | |",
        f"| median / worst gap in EUR per prosumer-day | {res['median_gap_eur']:.4f} / {res['worst_gap_eur']:.2f} | | |",
        f"| median / worst gap vs idle devices (earlier, lenient definition) | "
        f"{res['median_gap_vs_idle_devices_pct']:.3f} % / {res['worst_gap_vs_idle_devices_pct']:.2f} % | | |",
        f"| worst gap relative to the whole MILP objective | {res['worst_gap_vs_total_objective_pct']:.2f} % | | |",
        f"| instances within 0.5 % | {100 * res['share_within_0_5_pct']:.1f} % | | |",
        f"| cap violations where the MILP complies | {res['cap_violations']} of {res['capped_instances']} | 0 | "
        f"{ok(res['cap_violations'] == 0)} |",
        f"| EMS plans / s / core | {res['ems_plans_per_second']:.0f} | >= {t['ems_plans_per_second']} | "
        f"{ok(res['ems_plans_per_second'] >= t['ems_plans_per_second'])} |",
        f"| LP solves per plan / appliance starts proven optimal | {res['lp_solves_per_plan']:.2f} / "
        f"{100 * res['appliance_start_proven_share']:.1f} % | | |",
    ]
    for name, label in (("engine_profile", "engine profile (LP, at most 2 solves; the energy boxes in the environments)"),
                        ("descent_profile", "descent profile (the former default)")):
        q = res[name]
        lines += [
            f"| {label}: median / p95 / p99 / worst gap | {q['median_gap_pct']:.3f} % / {q['p95_gap_pct']:.2f} % / "
            f"{q['p99_gap_pct']:.2f} % / {q['worst_gap_pct']:.2f} % | | |",
            f"| {label}: instances above 3 % / worst gap in EUR | {q['instances_over_worst_target']} / "
            f"{q['worst_gap_eur']:.2f} | | |",
            f"| {label}: cap violations / plans per s per core | {q['cap_violations']} / {q['plans_per_second']:.0f} | | |",
        ]
    lines += [
        f"| MILP s / plan (build + solve, 1 thread) | {res['milp_seconds_per_plan']:.4f} | | |",
        f"| EMS speed-up vs MILP | {res['speedup_ems_vs_milp']:.0f} x | | |",
        "",
        "| subset | n | median gap % | worst gap % |",
        "| --- | --- | --- | --- |",
    ]
    for k, v in res["breakdown"].items():
        lines.append(f"| {k} | {v['n']} | {v['median_gap_pct']:.3f} | {v['worst_gap_pct']:.2f} |")
    lines += ["", "The worst gap is a tail statistic: it grows with the number of instances and moves with the seed "
              "(run with --seed and --reps to see it), so the 99th percentile, the count above the target and the "
              "gap in EUR are shown next to it. A relative gap is large where flexibility is worth little (the "
              "denominator is floored at floor_eur).", "", "Gap = (J_ems - J_milp) / max(|J_milp - J_inflex|, floor) with J_inflex the bill of the "
              "inflexible load and PV alone (no flexible device, no penalty). The earlier definition (denominator "
              "against all devices idle, avoided penalties included) is shown for comparison; it is more lenient "
              "because an uncharged EV's penalty inflates its denominator.", "",
              "| worst instances | gap % | J_ems | J_milp | J_inflex |", "| --- | --- | --- | --- | --- |"]
    for r in res["worst_instances"]:
        lines.append(f"| {r['description']} | {r['gap_pct']:.2f} | {r['j_ems']:.4f} | {r['j_milp']:.4f} | "
                     f"{r['j_inflex']:.4f} |")
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4, help="random prosumer-days per (mix, prices, caps) cell")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--n-speed", type=int, default=3000, help="prosumer-days in the speed run")
    ap.add_argument("--floor-eur", type=float, default=0.05, help="floor of the flexible-bill denominator")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ems.json")
    args = ap.parse_args()
    res = run(args.reps, args.seed, args.n_speed, args.floor_eur)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    write_md(res, HERE / "ems.md")
    keys = ("n_instances", "median_gap_pct", "worst_gap_pct", "cap_violations", "ems_plans_per_second",
            "milp_seconds_per_plan")
    print(json.dumps({k: res[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
