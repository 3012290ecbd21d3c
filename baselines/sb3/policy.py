"""Trained checkpoints as leaderboard policies.

`flexenv leaderboard teaching_winter --policy baselines.sb3.policy:price_driven_ppo` runs the shipped
checkpoint `baselines/checkpoints/price_driven_ppo.zip` for its agent (here the aggregator, at its
planning steps) and the built-in policies for every other actor. Every checkpoint in
`baselines/checkpoints/manifest.json` is reachable as `baselines.sb3.policy:<name>`, or through
`checkpoint_policy(name)`.

A policy factory here follows `baselines.evaluate`: `factory(engine) -> act(engine, obs) -> actions`.
"""

from __future__ import annotations

import json

import numpy as np

from baselines.sb3.common import CHECKPOINTS, MANIFEST
from baselines.sb3.envs import DECISION_PHASE, builtin_others, compact_obs, expand_action


def load_model(algorithm: str, path):
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[algorithm.lower()].load(str(path), device="cpu")


def planning_policy(models: dict):
    """models: {role: SB3 model} for roles "aggregator" / "dso" acting at their planning steps
    through the block parametrisation (`baselines.sb3.envs`); other actors built-in."""

    def factory(engine):
        actors = builtin_others(engine)

        def act(engine, obs):
            out = {"aggregator": actors["aggregator"](engine, obs["aggregator"]), "dso": actors["dso"](engine, obs["dso"])}
            if engine.prosumer_link.prosumers_are_agents:
                out["prosumer"] = actors["prosumer"](engine, obs["prosumer"])
            for role, model in models.items():
                if engine.current.phase == DECISION_PHASE[role]:
                    blocks, _ = model.predict(compact_obs(engine, role, obs[role]), deterministic=True)
                    out[role] = expand_action(engine, role, blocks)
            return out

        return act

    return factory


def shared_prosumer_policy(model):
    """One shared SB3 policy drives every prosumer (raw setpoints); aggregator and DSO built-in."""

    def factory(engine):
        actors = builtin_others(engine)

        def act(engine, obs):
            out = {"aggregator": actors["aggregator"](engine, obs["aggregator"]), "dso": actors["dso"](engine, obs["dso"])}
            flat = obs["prosumer"].reshape(-1, obs["prosumer"].shape[-1])
            a, _ = model.predict(flat, deterministic=True)
            out["prosumer"] = np.asarray(a, dtype=np.float64).reshape(obs["prosumer"].shape[:2] + (-1,))
            return out

        return act

    return factory


def manifest_entry(name: str) -> dict:
    entries = json.loads(MANIFEST.read_text())["checkpoints"] if MANIFEST.exists() else []
    for entry in entries:
        if entry["name"] == name:
            return entry
    raise KeyError(f"no checkpoint {name!r} in {MANIFEST.name}; known: {[e['name'] for e in entries]}")


def checkpoint_policy(name: str):
    """The policy factory of a shipped checkpoint, by its manifest name."""
    entry = manifest_entry(name)
    models = {role: load_model(entry["algorithm"], CHECKPOINTS / file) for role, file in entry["files"].items()}
    if entry.get("kind") == "shared_prosumer":
        return shared_prosumer_policy(models["prosumer"])
    return planning_policy(models)


def __getattr__(name):  # `baselines.sb3.policy:<checkpoint name>` for the leaderboard
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return checkpoint_policy(name)
    except KeyError as err:
        raise AttributeError(str(err)) from None
