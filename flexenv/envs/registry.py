"""Registry: `flexenv.make(id)` and Gymnasium registration of the single-agent views.

Ids name the aggregator ↔ prosumer link, the aggregator ↔ DSO link and the scenario preset, with a
version: `PriceDriven-Tariff-Teaching10-v0`. The preset's own links are replaced by the ones the id
names. Single-agent views are registered with Gymnasium as `flexenv/<id stem>-<Role>-v0`, Role one of
Aggregator, DSO, Prosumer (prosumer_0; not for gateway, where prosumers take no decisions).
"""

from __future__ import annotations

import gymnasium

from flexenv.scenario import Scenario, load

PROSUMER_LINK_NAMES = {"Gateway": "gateway", "MaxPower": "max_power", "PriceDriven": "price_driven", "Iterative": "iterative"}
DSO_LINK_NAMES = {"Isolated": "isolated", "Tariff": "tariff"}
PRESET_NAMES = {"Teaching10": "teaching10", "Rural40": "rural40", "Suburban100": "suburban100", "Synthetic30": "synthetic30"}
ROLES = {"Aggregator": "aggregator_1", "DSO": "dso", "Prosumer": "prosumer_0"}
VERSION = "v0"

_REGISTRY: dict[str, tuple[str, str, str]] = {
    f"{p}-{d}-{s}-{VERSION}": (PROSUMER_LINK_NAMES[p], DSO_LINK_NAMES[d], preset)
    for s, preset in PRESET_NAMES.items()
    for p in PROSUMER_LINK_NAMES
    for d in DSO_LINK_NAMES
}


def env_ids() -> list[str]:
    """Every registered environment id."""
    return list(_REGISTRY)


def _overrides(kwargs: dict) -> dict:
    """`time__days=2` → {"time.days": 2}."""
    return {key.replace("__", "."): value for key, value in kwargs.items()}


def scenario_for(env_id: str, **scenario_overrides) -> Scenario:
    """The validated scenario behind a registered id, with overrides applied."""
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown environment id {env_id!r}; see flexenv.env_ids()")
    prosumer_link, dso_link, preset = _REGISTRY[env_id]
    base = load(preset)
    overrides = {"name": env_id}
    if base.links.prosumer.kind != prosumer_link:
        overrides["links.prosumer"] = {"kind": prosumer_link}
    if base.links.dso.kind != dso_link:
        overrides["links.dso"] = {"kind": dso_link}
    overrides.update(_overrides(scenario_overrides))
    return load(preset, overrides)


def make(env_id_or_scenario, render_mode: str | None = None, **scenario_overrides):
    """The PettingZoo parallel env of a registered id, a preset name or YAML path, or a `Scenario`.

    Keyword overrides use `__` for nesting: `make("PriceDriven-Tariff-Teaching10-v0", time__days=2)`.
    """
    from flexenv.envs.parallel import FlexEnv

    if isinstance(env_id_or_scenario, Scenario):
        scenario = env_id_or_scenario
        if scenario_overrides:
            scenario = load_validated(scenario, scenario_overrides)
        return FlexEnv(scenario, render_mode=render_mode)
    if env_id_or_scenario in _REGISTRY:
        return FlexEnv(scenario_for(env_id_or_scenario, **scenario_overrides), render_mode=render_mode, env_id=env_id_or_scenario)
    if str(env_id_or_scenario).endswith(f"-{VERSION}"):
        raise ValueError(f"unknown environment id {env_id_or_scenario!r}; registered ids: flexenv.env_ids(), e.g. {env_ids()[:3]}")
    return FlexEnv(load(env_id_or_scenario, _overrides(scenario_overrides)), render_mode=render_mode)


def load_validated(scenario: Scenario, overrides: dict) -> Scenario:
    from flexenv.scenario import validate_scenario
    from flexenv.scenario.loading import _deep_update

    return validate_scenario(_deep_update(scenario.model_dump(mode="json"), _overrides(overrides)), scenario.name)


def _make_single(env_id: str, agent: str, render_mode: str | None = None, **overrides):
    from flexenv.envs.single import SingleAgentEnv

    return SingleAgentEnv(make(env_id, render_mode=render_mode, **overrides), agent)


def gym_ids() -> list[str]:
    """Every Gymnasium id of a single-agent view."""
    out = []
    for env_id, (prosumer_link, _, _) in _REGISTRY.items():
        stem = env_id.rsplit("-", 1)[0]
        for role in ROLES:
            if role == "Prosumer" and prosumer_link == "gateway":
                continue
            out.append(f"flexenv/{stem}-{role}-{VERSION}")
    return out


def register_gymnasium() -> None:
    for gym_id in gym_ids():
        if gym_id in gymnasium.registry:
            continue
        stem, role, _ = gym_id.removeprefix("flexenv/").rsplit("-", 2)
        gymnasium.register(id=gym_id, entry_point="flexenv.envs.registry:_make_single",
                           kwargs={"env_id": f"{stem}-{VERSION}", "agent": ROLES[role]})
