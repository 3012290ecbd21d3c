"""The RLlib example trains the shared prosumer policy with no glue (subprocess, smoke settings).

Skipped unless Ray RLlib is installed (`pip install -e ".[rllib]"`).
"""

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.rllib")

ROOT = Path(__file__).resolve().parents[1]


def test_rllib_shared_prosumers_smoke(tmp_path):
    # the timeout leaves room for a first run that still compiles the energy boxes' numba kernels
    proc = subprocess.run([sys.executable, "examples/rllib_shared_prosumers.py", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "mean episode return per prosumer" in proc.stdout
    with open(tmp_path / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(int(r["env_steps"]) > 0 for r in rows)
    assert any(math.isfinite(float(r["mean_return_per_prosumer_eur"])) for r in rows)
    assert (tmp_path / "curve.png").stat().st_size > 1000
