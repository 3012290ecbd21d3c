"""Every teaching example runs (subprocess, short settings) and prints what it promises."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=240):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_first_contact(tmp_path):
    png = tmp_path / "day.png"
    out = run("examples/first_contact.py", "--seed", "3", "--png", png)
    assert "system cost of the day" in out and "aggregator action fields" in out
    assert png.stat().st_size > 1000


def test_rule_based_vs_oracle():
    out = run("examples/rule_based_vs_oracle.py", "--days", "11", "12")
    assert "rule-based score vs oracle" in out or "score undefined" in out
    assert out.count("\n") >= 4


def test_ppo_10_minutes_smoke(tmp_path):
    out = run("examples/ppo_10_minutes.py", "--minutes", "2", "--max-steps", "8", "--n-envs", "1", "--dummy", "--out", tmp_path)
    assert "PPO: € saved vs no control per day" in out
    assert (tmp_path / "model.zip").exists()
