"""README stays true: its generated tables equal what the code produces now."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(table: str) -> list[str]:
    return [c.strip() for line in table.splitlines() if line.startswith("|") for c in line.strip("|").split("|")]


def _close(a: str, b: str) -> bool:
    """Equal text, or numbers equal to their printed precision (solver tolerances move the last digit)."""
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return abs(x - y) <= max(0.15, 0.005 * abs(y))


def test_readme_tables_are_current():
    script = _script()
    text = (ROOT / "README.md").read_text()
    for name, fresh in script.generated_sections().items():
        current = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S).group(1)
        a, b = _cells(current), _cells(fresh)
        assert len(a) == len(b), f"README's {name} has another shape: run python scripts/update_readme.py"
        stale = [(x, y) for x, y in zip(a, b) if not _close(x, y)]
        assert not stale, f"README's {name} is stale ({stale[:3]}): run python scripts/update_readme.py"


def test_readme_quick_start_commands_exist():
    text = (ROOT / "README.md").read_text()
    for command in ("./scripts/demo", "./scripts/test"):
        assert command in text
        assert (ROOT / command).exists()
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
