"""Scenarios: the validated config schema, shipped presets, and seeded data generators."""

from flexenv.scenario.loading import (
    ScenarioError,
    list_presets,
    list_tariffs,
    load,
    load_tariff,
    validate_scenario,
)
from flexenv.scenario.schema import Scenario, Tariff

__all__ = [
    "Scenario",
    "ScenarioError",
    "Tariff",
    "list_presets",
    "list_tariffs",
    "load",
    "load_tariff",
    "validate_scenario",
]
