"""PettingZoo `ParallelEnv` over the engine: one environment, every actor an agent.

Agents (DESIGN.md §2): `aggregator_1`, `dso`, and `prosumer_<i>` for every prosumer when the
aggregator ↔ prosumer link leaves decisions to them (all links but gateway, where the aggregator
sets the devices directly). Every agent acts at every step; a field that has no meaning in the
current phase is ignored (each space's `describe()` says which field applies when).

Spaces (Box, float32):
- actions in [-1, 1]; values outside are clipped and counted in `infos[agent]["clipped_actions"]`;
  NaN or a wrong shape raises ValueError.
- observations: normalised features, O(1), bounded by ±OBS_BOUND; the fields are listed by
  `env.describe_observation(agent)`.
Prosumers share one observation and one action space, so one policy can drive all of them.

Rewards are each actor's own money in € this step (prosumers: minus their bill, fees and
penalties, minus the value of lost comfort and unmet EV energy). `infos[agent]` carries the step's
KPIs; at the last step also `episode`, the summary of the whole episode.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from flexenv.engine import OBS_BOUND, Engine
from flexenv.policies.rule_based import RuleBasedAggregator, RuleBasedDSO, follow_plan
from flexenv.scenario.schema import Scenario

AGGREGATOR = "aggregator_1"
TRAIN_SEED_END = 1_000_000  # episode seeds drawn for training lie below; test suites use seeds from here on
DSO = "dso"


def prosumer_id(i: int) -> str:
    return f"prosumer_{i}"


class FlexEnv(ParallelEnv):
    metadata = {"name": "flexenv_v0", "render_modes": ["ansi", "rgb_array"], "is_parallelizable": True}

    def __init__(self, scenario: Scenario, render_mode: str | None = None, env_id: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r}: choose one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.scenario = scenario
        self.env_id = env_id or scenario.name
        self.engine = Engine(scenario, batch_size=1)
        e = self.engine
        prosumers = [prosumer_id(i) for i in range(e.P)] if e.prosumer_link.prosumers_are_agents else []
        self.possible_agents = [AGGREGATOR, DSO] + prosumers
        self._prosumer_ids = prosumers
        self.agents = []
        self._role = {AGGREGATOR: "aggregator", DSO: "dso", **{p: "prosumer" for p in prosumers}}
        # one space object per agent (PettingZoo requires the same object on every call)
        boxes = {role: (gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(e.obs_layout[role].size,), dtype=np.float32),
                        gymnasium.spaces.Box(-1.0, 1.0, shape=(e.action_layout[role].size,), dtype=np.float32))
                 for role in ("aggregator", "dso", "prosumer")}
        self._observation_spaces = {a: boxes[r][0] for a, r in self._role.items()}
        self._action_spaces = {a: boxes[r][1] for a, r in self._role.items()}
        self._np_random = np.random.default_rng()
        self.builtin = {"aggregator": RuleBasedAggregator(e), "dso": RuleBasedDSO(e)}
        self._last_info = None

    # ------------------------------------------------------------------ spaces
    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._action_spaces[agent]

    def describe_observation(self, agent: str) -> str:
        return self.engine.obs_layout[self._role[agent]].describe()

    def describe_action(self, agent: str) -> str:
        return self.engine.action_layout[self._role[agent]].describe()

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None, options: dict | None = None):
        """`seed` is the episode (day) seed itself, as in `flexenv leaderboard` and the engine; without
        one, the next episode seed is drawn from the training range [0, TRAIN_SEED_END), so training
        never meets the leaderboard's test days (seeds ≥ TRAIN_SEED_END)."""
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
            episode_seed = int(seed)
        else:
            episode_seed = int(self._np_random.integers(0, TRAIN_SEED_END))
        self.agents = list(self.possible_agents)
        self._obs = self.engine.reset([episode_seed])
        self.episode_seed = episode_seed
        infos = {agent: {"phase": self.engine.current.phase, "episode_seed": episode_seed} for agent in self.agents}
        return self._split(self._obs), infos

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() after the episode ended: call reset()")
        e = self.engine
        checked = self._check(actions)
        self._obs, rewards, info = e._advance(checked)
        self._last_info = info
        obs = self._split(self._obs)
        reward = {AGGREGATOR: float(rewards["aggregator"][0]), DSO: float(rewards["dso"][0])}
        reward.update(zip(self._prosumer_ids, rewards["prosumer"][0].tolist()))
        done = e.done
        infos = self._infos(info)
        terminations = dict.fromkeys(self.agents, done)
        truncations = dict.fromkeys(self.agents, False)
        if done:
            self.agents = []
        return obs, reward, terminations, truncations, infos

    def _check(self, actions: dict) -> dict:
        """The batch of actions for the engine, checked by the engine in one go; when something is
        wrong, checked again agent by agent to raise an error that names the agent."""
        e = self.engine
        try:
            # in the agents' dtype: the engine converts while it clips
            batch = {"aggregator": np.asarray(actions[AGGREGATOR])[None, :], "dso": np.asarray(actions[DSO])[None, :]}
            if self._prosumer_ids:
                batch["prosumer"] = np.asarray([actions[a] for a in self._prosumer_ids])[None]
            return e._check_actions(batch)
        except (KeyError, ValueError, TypeError, IndexError):
            pass
        batch = {}
        for role, agent in (("aggregator", AGGREGATOR), ("dso", DSO)):
            batch[role] = self._agent_action(actions, agent)[None, :]  # raises, naming the agent
        if self._prosumer_ids:
            batch["prosumer"] = self._prosumer_actions(actions)[None]
        return e._check_actions(batch)

    def _agent_action(self, actions: dict, agent: str) -> np.ndarray:
        if agent not in actions:
            raise ValueError(f"no action for agent {agent!r}")
        a = np.asarray(actions[agent], dtype=np.float64)
        expected = self.action_space(agent).shape
        if a.shape != expected:
            raise ValueError(f"action of {agent!r} has shape {a.shape}, expected {expected}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action of {agent!r} contains NaN or inf")
        return a

    def _prosumer_actions(self, actions: dict) -> np.ndarray:
        """(P, A) actions of every prosumer, checked agent by agent (raises, naming the culprit)."""
        return np.stack([self._agent_action(actions, a) for a in self._prosumer_ids])

    def _split(self, obs: dict) -> dict:
        out = {AGGREGATOR: obs["aggregator"][0], DSO: obs["dso"][0]}
        if self._prosumer_ids:
            out.update(zip(self._prosumer_ids, obs["prosumer"][0]))
        return out

    def _infos(self, info: dict) -> dict:
        """Per-agent infos: one common dict (copied per agent), the prosumers' own KPIs added."""
        e = self.engine
        kpis = info["kpis"]
        comm = info["comm"]
        common = {
            "phase": info["phase"], "day": info["day"], "index": info["index"],
            "clipped_actions": int(e._clipped[0]), "flows_eur": {k: float(v[0]) for k, v in info["ledger"].flows.items()},
            "system_cost_eur": float(info["system_cost_eur"][0]),
            "messages": {k: float(v[0][0]) for k, v in comm.items()},
            "bytes": {k: float(v[1][0]) for k, v in comm.items()},
        }
        if kpis:
            common["trafo_loading_pct"] = float(kpis["trafo_loading_pct"][0])
            common["voltage_violations"] = int(kpis["voltage_violations"][0])
            common["traffic_light"] = int(kpis["traffic_light"][0])
            common["losses_kw"] = float(kpis["losses_kw"][0])
            common["portfolio_net_kw"] = float(e.last_net_row_kw[0])  # net_kw summed over the prosumers
        if e.done:
            common["episode"] = self.episode_summary()
        infos = {AGGREGATOR: dict(common), DSO: dict(common)}
        if self._prosumer_ids:
            if kpis:
                per_prosumer = zip(self._prosumer_ids, kpis["net_kw"][0].tolist(), kpis["comfort_violation_kh"][0].tolist(),
                                   kpis["ev_unmet_kwh"][0].tolist())
                infos.update((agent, {**common, "net_kw": net, "comfort_violation_kh": comfort, "ev_unmet_kwh": unmet})
                             for agent, net, comfort, unmet in per_prosumer)
            else:
                infos.update((agent, dict(common)) for agent in self._prosumer_ids)
        return infos

    def episode_summary(self) -> dict:
        """Episode KPIs (DESIGN.md §5) of row 0, totals over the episode so far."""
        t = self.engine.totals
        out = {}
        for key, value in t.items():
            v = np.asarray(value)[0]
            out[key] = float(v.sum()) if np.ndim(v) else float(v)
        out["prosumer_bills_eur"] = (-np.asarray(t["prosumer_money_eur"])[0]).tolist()
        return out

    # ------------------------------------------------------------------ built-in policies
    def builtin_actions(self, observations: dict) -> dict:
        """Actions of every live agent's built-in policy (rule-based aggregator and DSO, energy boxes)."""
        e = self.engine
        acts = {}
        if AGGREGATOR in observations:
            acts[AGGREGATOR] = self.builtin["aggregator"](observations[AGGREGATOR][None])[0].astype(np.float32)
        if DSO in observations:
            acts[DSO] = self.builtin["dso"](observations[DSO][None])[0].astype(np.float32)
        ids = [a for a in self._prosumer_ids if a in observations]
        if ids:
            stacked = np.array([observations[a] for a in ids])[None]  # as np.stack, with less overhead per row
            plan = follow_plan(e, stacked)[0].astype(np.float32)
            acts.update(zip(ids, plan))
        return acts

    # ------------------------------------------------------------------ render
    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode")
            return None
        from flexenv import render

        if self.render_mode == "ansi":
            return render.ansi_frame(self.engine, self._last_info)
        return render.rgb_frame(self.engine)

    def close(self):
        pass

    def state(self) -> np.ndarray:
        """Global state: every observation concatenated (for centralised critics)."""
        return np.concatenate([self._split(self._obs)[a] for a in self.possible_agents])
