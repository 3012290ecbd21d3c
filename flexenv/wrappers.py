"""Wrappers: single-agent Gymnasium views of the multi-agent environment."""

from flexenv.envs.single import SingleAgentEnv, single_agent

__all__ = ["SingleAgentEnv", "single_agent"]
