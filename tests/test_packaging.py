"""An installed flexenv (not only a checkout) ships its YAML presets."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_preset(tmp_path):
    # build from a copy, so the checkout gets no build/ or egg-info and stale files cannot leak in
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "out", ".flexenv_cache", "build",
                                                                "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("flexenv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert shipped, "no presets found in configs/"
    missing = {s for s in shipped if f"flexenv/configs/{s}" not in names}
    assert not missing, missing
    assert any(n.startswith("baselines/") for n in names)
