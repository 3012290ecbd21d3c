"""PettingZoo view of some agents: they act, every other agent runs its built-in policy (or one given).

    env = flexenv.make("MaxPower-Tariff-Teaching10-v0")
    team = flexenv.wrappers.learners(env, "prosumers")          # a ParallelEnv of the prosumers only
    duo = flexenv.wrappers.learners(env, ["aggregator_1", "dso"], reward="system")

The result is itself a PettingZoo `ParallelEnv` (spaces, observations, infos and termination are the
underlying `FlexEnv`'s), so multi-agent tools take it as it is; e.g. parameter sharing over the
prosumers with SuperSuit's `pettingzoo_env_to_vec_env_v1`, since every prosumer has the same spaces.

Rewards, by `reward`:
- "money" (default): each learner's own money this step (€), as in `FlexEnv`;
- "system": minus this step's system cost (€) shared equally by the learners, so a team of benevolent
  learners sums to minus the system cost the leaderboard scores.

`others` replaces the built-in policy of chosen non-learning agents: {agent: f(observation) → action}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pettingzoo import ParallelEnv

from flexenv.envs.parallel import FlexEnv

REWARDS = ("money", "system")


class LearnersEnv(ParallelEnv):
    def __init__(self, env: FlexEnv, agents: Sequence[str], reward: str = "money",
                 others: dict[str, Callable] | None = None):
        if reward not in REWARDS:
            raise ValueError(f"reward {reward!r}: choose one of {REWARDS}")
        agents = list(agents)
        unknown = [a for a in agents if a not in env.possible_agents]
        if not agents or unknown:
            raise ValueError(f"learners {unknown or agents!r} are not agents of this environment; agents: "
                             f"{env.possible_agents[:5]}{'...' if len(env.possible_agents) > 5 else ''}")
        others = dict(others or {})
        clash = [a for a in others if a in agents or a not in env.possible_agents]
        if clash:
            raise ValueError(f"others {clash!r}: must be agents of the environment that are not learners")
        self.env = env
        self.reward_kind = reward
        self.others = others
        self.possible_agents = agents
        self.agents = []
        self.metadata = env.metadata
        self.render_mode = env.render_mode
        self._obs = None

    def observation_space(self, agent: str):
        return self.env.observation_space(agent)

    def action_space(self, agent: str):
        return self.env.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None):
        """`seed` is the episode seed, as in `FlexEnv.reset`."""
        self._obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return {a: self._obs[a] for a in self.agents}, {a: infos[a] for a in self.agents}

    def step(self, actions: dict):
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"no action for learner(s) {missing[:5]!r}")
        full = self.env.builtin_actions(self._obs)
        for agent, policy in self.others.items():
            full[agent] = policy(self._obs[agent])
        for agent in self.agents:
            full[agent] = actions[agent]
        self._obs, rewards, terminations, truncations, infos = self.env.step(full)
        if self.reward_kind == "system":
            share = -infos[self.agents[0]]["system_cost_eur"] / len(self.agents)
            rewards = {a: share for a in self.agents}
        learners = self.agents
        out = ({a: self._obs[a] for a in learners}, {a: rewards[a] for a in learners},
               {a: terminations[a] for a in learners}, {a: truncations[a] for a in learners},
               {a: infos[a] for a in learners})
        if not self.env.agents:
            self.agents = []
        return out

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()

    def state(self) -> np.ndarray:
        return self.env.state()


def learners(env: FlexEnv | str, agents: Sequence[str] | str, reward: str = "money",
             others: dict[str, Callable] | None = None, **kwargs) -> LearnersEnv:
    """A PettingZoo env in which `agents` act and all others use built-in policies (or `others`).

    `env` is a `FlexEnv` or a registered id (then `kwargs` go to `flexenv.make`); `agents` is a list of
    agent ids, or "prosumers" for every prosumer agent; `reward` is "money" or "system" (module docstring).
    """
    if isinstance(env, str):
        from flexenv.envs.registry import make

        env = make(env, **kwargs)
    if agents == "prosumers":
        agents = [a for a in env.possible_agents if a.startswith("prosumer_")]
        if not agents:
            raise ValueError(f"{env.env_id}: prosumers are not agents in this link (the gateway aggregator sets their devices)")
    elif isinstance(agents, str):
        agents = [agents]
    return LearnersEnv(env, agents, reward=reward, others=others)
