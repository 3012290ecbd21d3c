"""Environments: the PettingZoo parallel env, single-agent Gymnasium views, and the registry."""

from flexenv.envs.registry import env_ids, gym_ids, make, register_gymnasium, scenario_for

__all__ = ["env_ids", "gym_ids", "make", "register_gymnasium", "scenario_for"]
