"""README stays true: its generated tables equal what the code produces now."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_are_current():
    script = _script()
    text = (ROOT / "README.md").read_text()
    assert script.replace_sections(text, script.generated_sections()) == text, "run: python scripts/update_readme.py"


def test_readme_quick_start_commands_exist():
    text = (ROOT / "README.md").read_text()
    for command in ("./scripts/demo", "./scripts/test"):
        assert command in text
        assert (ROOT / command).exists()
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
