"""Scoring, the no-control and rule-based baselines, the leaderboard and the demo (without oracle)."""

import json

import numpy as np
import pytest
import yaml

from baselines.demo import run_demo
from baselines.evaluate import run_episodes, score
from baselines.leaderboard import evaluate, list_suites, load_suite, write_outputs
from flexenv.envs.registry import scenario_for
from flexenv.scenario import ScenarioError


def test_score_definition():
    assert score([10.0, 12.0], [10.0, 12.0], [6.0, 8.0]) == pytest.approx(0.0)  # no better than no control
    assert score([10.0, 12.0], [6.0, 8.0], [6.0, 8.0]) == pytest.approx(100.0)  # as good as the oracle
    assert score([10.0, 12.0], [8.0, 10.0], [6.0, 8.0]) == pytest.approx(50.0)
    assert score([10.0], [11.0], [8.0]) == pytest.approx(-50.0)  # worse than no control
    assert score([10.0], [9.0], [9.95]) is None  # headroom below 1 % of |J_base|: undefined, not 0
    # summed over days, not averaged per day
    assert score([10.0, 10.0], [10.0, 6.0], [9.0, 6.0]) == pytest.approx(100.0 * 4.0 / 5.0)


def test_system_cost_is_what_the_coalition_pays_out():
    (kpis,) = run_episodes(scenario_for("MaxPower-Tariff-Teaching10-v0"), [1000001], "builtin")
    assert kpis["system_cost_eur"] == pytest.approx(kpis["market_payments_eur"] + kpis["discomfort_eur"])
    # internal payments cancel: prosumers + aggregator + DSO pay exactly what the market receives
    assert -kpis["prosumer_bills_eur"] + kpis["aggregator_profit_eur"] + kpis["dso_money_eur"] == pytest.approx(-kpis["market_payments_eur"])


def test_batched_evaluation_equals_one_day_at_a_time():
    scenario = scenario_for("PriceDriven-Isolated-Teaching10-v0")
    together = run_episodes(scenario, [1000001, 1000002], "builtin")
    alone = [run_episodes(scenario, [s], "builtin")[0] for s in (1000001, 1000002)]
    for a, b in zip(together, alone):
        assert a == b


def test_suites_validate_and_keep_test_seeds_apart():
    names = list_suites()
    assert {"teaching_winter", "teaching_gateway", "rural_winter"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert min(suite.seeds) >= 1_000_000 and len(set(suite.seeds)) == len(suite.seeds)


def test_bad_suite_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "env_id": "PriceDriven-Tariff-Teaching10-v0", "seeds": [5]}))
    with pytest.raises(ScenarioError, match=r"seeds\[0\]"):
        load_suite(str(path))
    path.write_text(yaml.safe_dump({"name": "x", "env_id": "Nope-v0", "seeds": [1000000]}))
    with pytest.raises(ScenarioError, match="env_id"):
        load_suite(str(path))


def test_leaderboard_writes_json_csv_markdown_and_plot(tmp_path):
    suite = load_suite("teaching_winter").model_copy(update={"seeds": [1000001, 1000002]})
    result = evaluate(suite, "random", oracle=False, progress=False)
    path = write_outputs(result, tmp_path)
    data = json.loads(path.read_text())
    assert data["summary"]["n_days"] == 2 and data["summary"]["score"] is None
    for suffix in (".csv", ".md", ".png"):
        assert path.with_suffix(suffix).stat().st_size > 100
    # random control is worse than the rule-based one on these days
    builtin = evaluate(suite, "builtin", oracle=False, progress=False)
    assert builtin["summary"]["j_policy_mean"] < data["summary"]["j_policy_mean"]


def test_demo_without_oracle_writes_its_outputs(tmp_path):
    rows = run_demo(seed=2025, out_dir=tmp_path, with_oracle=False)
    models = [r["model"] for r in rows]
    assert len(models) == 10 and "iterative / tariff" in models and "no control / isolated" in models
    nocontrol = next(r for r in rows if r["model"] == "no control / tariff")
    assert nocontrol["prosumer_savings_eur"] == 0.0
    assert all(np.isfinite(r["system_cost_eur"]) for r in rows)
    assert (tmp_path / "demo.md").read_text().count("\n|") >= 11
    assert (tmp_path / "demo.png").stat().st_size > 10_000 and (tmp_path / "demo.csv").exists()


TEST_DAYS = [1000001, 1000002, 1000003]


@pytest.mark.parametrize("env_id", [i for i in __import__("flexenv").env_ids() if "Teaching10" in i])
def test_builtin_policies_beat_no_control_where_the_grid_does_not_bind(env_id):
    """With the transformer limit at its rating nothing congests, so shifting flexible load to cheap
    hours must lower the system cost on every test day."""
    scenario = scenario_for(env_id, feeder__trafo_loading_max_pct=100.0)
    base = run_episodes(scenario, TEST_DAYS, "nocontrol")
    policy = run_episodes(scenario, TEST_DAYS, "builtin")
    for b, p in zip(base, policy):
        assert p["congested_ptus"] == 0
        assert p["system_cost_eur"] < b["system_cost_eur"]


def test_oracle_bounds_every_baseline_on_every_test_day():
    """The centralised optimum does not depend on the links: one solve per day bounds them all."""
    from baselines.oracle import solve

    oracles = [solve(scenario_for("Gateway-Isolated-Teaching10-v0"), seed=seed) for seed in TEST_DAYS]
    for env_id in ("PriceDriven-Tariff-Teaching10-v0", "Gateway-Isolated-Teaching10-v0", "MaxPower-Isolated-Teaching10-v0",
                   "Iterative-Tariff-Teaching10-v0"):
        scenario = scenario_for(env_id)
        base = run_episodes(scenario, TEST_DAYS, "nocontrol")
        policy = run_episodes(scenario, TEST_DAYS, "builtin")
        for oracle, b, p in zip(oracles, base, policy):
            slack = oracle.mip_gap * abs(oracle.objective_eur) + 1e-6
            assert oracle.objective_eur <= b["system_cost_eur"] + slack
            assert oracle.objective_eur <= p["system_cost_eur"] + slack
