"""Gymnasium view of one agent: it acts, every other agent runs its built-in policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import gymnasium
import numpy as np

from flexenv.envs.learners import LearnersEnv
from flexenv.envs.parallel import FlexEnv


class SingleAgentEnv(gymnasium.Env):
    """`env.agent_id` acts through a flat Box; the others use `FlexEnv.builtin_actions` (or `others`).

    Spaces are the agent's own (see `FlexEnv.describe_action` / `describe_observation`); `info` is the
    agent's info from the parallel env. The reward is, by `reward`:
    - "money" (default): the agent's own money this step (€);
    - "system": minus this step's system cost (€), for a benevolent agent that serves the whole
      coalition (the quantity the leaderboard scores).
    """

    metadata: ClassVar[dict] = {"render_modes": ["ansi", "rgb_array"]}

    def __init__(self, env: FlexEnv, agent_id: str, reward: str = "money", others: dict[str, Callable] | None = None):
        if agent_id not in env.possible_agents:
            raise ValueError(f"agent {agent_id!r} is not in this environment; agents: {env.possible_agents[:5]}...")
        self.team = LearnersEnv(env, [agent_id], reward=reward, others=others)
        self.env = env
        self.agent_id = agent_id
        self.reward_kind = reward
        self.observation_space = env.observation_space(agent_id)
        self.action_space = env.action_space(agent_id)
        self.render_mode = env.render_mode
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and not self._started:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        self._started = True
        obs, infos = self.team.reset(seed=seed, options=options)
        return obs[self.agent_id], infos[self.agent_id]

    def step(self, action):
        a = self.agent_id
        obs, rewards, terminations, truncations, infos = self.team.step({a: np.asarray(action, dtype=np.float32)})
        return obs[a], rewards[a], terminations[a], truncations[a], infos[a]

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()


def single_agent(env: FlexEnv | str, agent_id: str = "aggregator_1", reward: str = "money",
                 others: dict[str, Callable] | None = None, **kwargs) -> SingleAgentEnv:
    """A Gymnasium env in which `agent_id` acts and all others use built-in policies (or `others`:
    {agent: f(observation) → action}).

    `env` is a `FlexEnv` or a registered id (then `kwargs` go to `flexenv.make`); `reward` is "money"
    or "system" (see `SingleAgentEnv`).
    """
    if isinstance(env, str):
        from flexenv.envs.registry import make

        env = make(env, **kwargs)
    return SingleAgentEnv(env, agent_id, reward=reward, others=others)
