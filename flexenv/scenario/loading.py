"""Loading scenarios and tariffs from YAML presets or files, with readable validation errors.

Presets are the YAML files of the repository's `configs/` folder, installed with the package as
`flexenv.configs`; scenario presets sit at its top level, tariff presets in `configs/tariffs/`.
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from flexenv.scenario.schema import Scenario, Tariff


class ScenarioError(ValueError):
    """An invalid scenario or tariff: the message names each bad field, its value and what is allowed."""


def _presets_root():
    return importlib.resources.files("flexenv.configs")


def list_presets() -> list[str]:
    """Names of the scenario presets shipped with flexenv."""
    return sorted(p.name[:-5] for p in _presets_root().iterdir() if p.name.endswith(".yaml"))


def list_tariffs() -> list[str]:
    """Names of the retail tariff presets shipped with flexenv (seed 003 Table 13)."""
    return sorted(p.name[:-5] for p in (_presets_root() / "tariffs").iterdir() if p.name.endswith(".yaml"))


def _format_errors(error: pydantic.ValidationError, source: str) -> str:
    lines = [f"invalid {error.title.lower()} in {source}:"]
    for item in error.errors(include_url=False):
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        value = item.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {path or '<root>'} = {shown}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path | Any) -> dict:
    with path.open("r", encoding="utf-8") as f:
        data = yaml.safe_load(f)  # safe loader: no Python objects from YAML
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_update(base: dict, overrides: dict) -> dict:
    """Merge `overrides` into a copy of `base`; keys may be dotted paths ("time.days").

    A mapping that names another `kind` (a different link) replaces the old one instead of merging.
    """
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ScenarioError(f"override {key!r}: {part!r} is not a mapping")
        current = node.get(parts[-1])
        same_kind = not isinstance(value, dict) or value.get("kind", None) in (None, (current or {}).get("kind"))
        if isinstance(value, dict) and isinstance(current, dict) and same_kind:
            node[parts[-1]] = _deep_update(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def validate_scenario(data: dict, source: str = "<dict>") -> Scenario:
    """Validate a plain mapping as a Scenario; raise ScenarioError naming each bad field."""
    try:
        scenario = Scenario.model_validate(data)
    except pydantic.ValidationError as err:
        raise ScenarioError(_format_errors(err, source)) from None
    _check_references(scenario, source)
    _check_runnable(scenario, source)
    return scenario


# Links the schema describes (DESIGN.md §4) but the engine does not run yet.
NOT_RUN_YET = {"links.dso.kind": ("iterative", "market", "flex_market"), "links.tso.kind": ("direct",)}


def _check_runnable(scenario: Scenario, source: str) -> None:
    values = {"links.dso.kind": scenario.links.dso.kind, "links.tso.kind": scenario.links.tso.kind}
    for field, value in values.items():
        if value in NOT_RUN_YET[field]:
            raise ScenarioError(f"invalid scenario in {source}:\n  {field} = {value!r}: defined by the design but not "
                                "run by the engine yet; supported: " + ("isolated, tariff" if "dso" in field else "none"))


def _check_references(scenario: Scenario, source: str) -> None:
    """Tariff names must name a shipped tariff preset (checked at load, not deep in a run)."""
    known = list_tariffs()
    named = {"markets.retail_tariff": scenario.markets.retail_tariff}
    if hasattr(scenario.links.prosumer, "retail_tariff"):
        named["links.prosumer.retail_tariff"] = scenario.links.prosumer.retail_tariff
    for field, name in named.items():
        if name not in known and not (name.endswith((".yaml", ".yml")) and Path(name).is_file()):
            raise ScenarioError(f"invalid scenario in {source}:\n  {field} = {name!r}: unknown tariff; choose one of {known}")


def load(name_or_path: str | Path, overrides: dict | None = None) -> Scenario:
    """Load a scenario preset by name (see `list_presets()`) or from a YAML file path.

    `overrides` maps (dotted) field paths to values, e.g. `{"time.days": 2, "seed": 7}`.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ScenarioError(f"no scenario file at {path}")
        data, source = _read_yaml(path), str(path)
    else:
        preset = _presets_root() / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; presets: {list_presets()}")
        data, source = _read_yaml(preset), f"preset {name_or_path!r}"
    if overrides:
        data = _deep_update(data, overrides)
    return validate_scenario(data, source)


def load_tariff(name_or_path: str | Path) -> Tariff:
    """Load a retail tariff preset by name (see `list_tariffs()`) or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        source, resource = str(path), path
    else:
        resource = _presets_root() / "tariffs" / f"{name_or_path}.yaml"
        source = f"tariff preset {name_or_path!r}"
        if not resource.is_file():
            raise ScenarioError(f"unknown tariff {str(name_or_path)!r}; presets: {list_tariffs()}")
    try:
        return Tariff.model_validate(_read_yaml(resource))
    except pydantic.ValidationError as err:
        raise ScenarioError(_format_errors(err, source)) from None
