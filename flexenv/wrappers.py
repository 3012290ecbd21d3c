"""Wrappers: single-agent Gymnasium views and PettingZoo views of some agents of the multi-agent environment."""

from flexenv.envs.learners import LearnersEnv, learners
from flexenv.envs.single import SingleAgentEnv, single_agent

__all__ = ["LearnersEnv", "SingleAgentEnv", "learners", "single_agent"]
