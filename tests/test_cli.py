"""The `flexenv` command line and the package's import weight."""

import subprocess
import sys

from flexenv.cli import main, unit_of


def test_scenario_show_prints_units(capsys):
    assert main(["scenario", "show", "teaching10"]) == 0
    out = capsys.readouterr().out
    assert "ptu_minutes: 15 min" in out
    assert "capacity_kwh: 5 .. 13.5 kWh" in out
    assert "# 10 prosumers" in out


def test_scenario_show_reports_invalid_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprosumers: []\n")
    assert main(["scenario", "show", str(bad)]) == 2
    assert "prosumers" in capsys.readouterr().err


def test_data_plot_writes_png(tmp_path):
    out = tmp_path / "day.png"
    assert main(["data", "plot", "rural40", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_units_from_field_names():
    assert unit_of("price_eur_per_kwh") == "€/kWh"
    assert unit_of("capacity_kwh") == "kWh"
    assert unit_of("v_min_pu") == "p.u."
    assert unit_of("count") == ""


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "flexenv.cli", "scenario", "list"], capture_output=True, text=True, check=True)
    assert "teaching10" in result.stdout


def test_import_is_light():
    """`import flexenv` must not pull torch, pandapower, stable-baselines3 or matplotlib."""
    code = (
        "import sys, flexenv, flexenv.scenario, flexenv.scenario.data; "
        "heavy = [m for m in ('torch', 'pandapower', 'stable_baselines3', 'matplotlib', 'ray') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
