"""Training environments for Stable-Baselines3 over flexenv (the RL baselines of issue 7).

The aggregator's price signal and the DSO's tariff only act in the planning steps of a day: every
operate step ignores them. Learning them step by step means crediting one early action with 96
later rewards. These wrappers make the day a few decisions instead (a documented, lower-dimensional
parametrisation; flexenv itself keeps the full spaces):

- `PlanningVecEnv`: an SB3 `VecEnv` over flexenv's batched `Engine` (all `n_envs` days step at once).
  `role` ("aggregator" or "dso") acts only at its planning steps (one per day for price_driven /
  tariff, `max_rounds` for iterative); all other steps and agents run inside `step` (built-in
  policies). Action: `n_blocks` values in [-1, 1], one per block of
  the day (24 = hourly), the same for every price group / tariff zone; the aggregator's
  `position_adjust` is 0 (its day-ahead position = the prosumers' declared plans). Observation:
  `compact_obs`, the role's day-profile fields averaged to 24 hourly values, plus weekday and round.
  Reward, at the day's last decision: `J_nocontrol − J` (€ of system cost saved against the
  no-control baseline on the same day), 0 at earlier decisions. So the return is the numerator of
  the normalised score.
- `DayDecision`: the same as a Gymnasium wrapper around flexenv's single-agent view of the PettingZoo
  env (`flexenv.wrappers.single_agent(..., reward="system")`), for DummyVecEnv / SubprocVecEnv;
  `planning_agent` lets a trained planning model act for another agent of that env (joint training).
- `AgentStepVecEnv`: the single-agent view, step by step, for a whole batch (benchmarks).

Episode seeds are drawn below `TRAIN_SEED_MAX` (test days of the leaderboard are ≥ 1,000,000).
"""

from __future__ import annotations

import gymnasium
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from flexenv.engine import Engine
from flexenv.envs.registry import scenario_for
from flexenv.policies.rule_based import RuleBasedAggregator, RuleBasedDSO, follow_plan

TRAIN_SEED_MAX = 1_000_000  # training and validation days; the leaderboard's test days are ≥ this
HOURS = 24
DECISION_PHASE = {"aggregator": "agg_plan", "dso": "dso_plan"}
PRICE_FIELD = {"aggregator": "price", "dso": "variable_tariff"}


# ------------------------------------------------------------------------------- shared pieces
def compact_obs(engine: Engine, role: str, obs: np.ndarray) -> np.ndarray:
    """(B, O) raw observation of `role` → (B, F) float32: every day-profile field (last axis = PTUs of
    the day; zones / groups averaged) as 24 hourly means, then weekday sin/cos and the round."""
    layout = engine.obs_layout[role]
    T = engine.ppd
    parts = []
    for name, field in layout.fields.items():
        if field.shape[-1] != T:
            continue
        v = np.asarray(layout.view(obs, name), dtype=np.float64)
        v = v.reshape(v.shape[0], -1, T).mean(axis=1)  # zones / groups → mean
        parts.append(v.reshape(v.shape[0], HOURS, T // HOURS).mean(axis=2))
    time = layout.view(obs, "time")
    parts += [time[:, 2:4], layout.view(obs, "round")]
    return np.concatenate(parts, axis=1).astype(np.float32)


def compact_obs_size(engine: Engine, role: str) -> int:
    n_profiles = sum(1 for f in engine.obs_layout[role].fields.values() if f.shape[-1] == engine.ppd)
    return n_profiles * HOURS + 3


def expand_action(engine: Engine, role: str, blocks: np.ndarray) -> np.ndarray:
    """(B, K) block values → (B, A) full action of `role`: each block repeated over its PTUs, the
    same curve for every group / zone, all other fields 0."""
    layout = engine.action_layout[role]
    blocks = np.clip(np.asarray(blocks, dtype=np.float64), -1.0, 1.0)
    B, K = blocks.shape
    T = engine.ppd
    if T % K:
        raise ValueError(f"n_blocks = {K} must divide the {T} PTUs of a day")
    curve = np.repeat(blocks, T // K, axis=1)  # (B, T)
    out = np.zeros((B, layout.size))
    field = PRICE_FIELD[role]
    layout.write(out, field, np.broadcast_to(curve[:, None, :], (B,) + layout.fields[field].shape))
    return out


def builtin_others(engine: Engine) -> dict:
    """Built-in actors: {"aggregator": f, "dso": f, "prosumer": f}, each f(engine, obs_role) → actions."""
    agg, dso = RuleBasedAggregator(engine), RuleBasedDSO(engine)
    return {"aggregator": lambda e, o: agg(o), "dso": lambda e, o: dso(o), "prosumer": follow_plan}


def all_actions(engine: Engine, obs: dict, actors: dict) -> dict:
    out = {"aggregator": actors["aggregator"](engine, obs["aggregator"]), "dso": actors["dso"](engine, obs["dso"])}
    if engine.prosumer_link.prosumers_are_agents:
        out["prosumer"] = actors["prosumer"](engine, obs["prosumer"])
    return out


_ENGINES: dict = {}


def cached_engine(scenario, batch_size: int, nocontrol: bool = False) -> Engine:
    """An engine per (scenario, batch size, nocontrol), built once: construction takes seconds."""
    key = (scenario.model_dump_json(), int(batch_size), bool(nocontrol))
    if key not in _ENGINES:
        _ENGINES[key] = Engine(scenario, batch_size=batch_size, nocontrol=nocontrol)
    return _ENGINES[key]


def nocontrol_costs(scenario, seeds) -> np.ndarray:
    """System cost J of the no-control baseline on each day (one batched run)."""
    engine = cached_engine(scenario, len(seeds), nocontrol=True)
    actors = builtin_others(engine)
    obs = engine.reset(seeds)
    while not engine.done:
        obs, _, _ = engine.step(all_actions(engine, obs, actors))
    return engine.system_cost_eur().copy()


class _BaseVecEnv(VecEnv):
    """Bits every engine-backed VecEnv shares (SB3's abstract API)."""

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [getattr(self, method_name)(*args, **kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def _indices(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices

    def seed(self, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def _draw_seeds(self, n: int) -> list[int]:
        return [int(s) for s in self.rng.integers(0, TRAIN_SEED_MAX, n)]


# ------------------------------------------------------------------------------- planning decisions
class PlanningVecEnv(_BaseVecEnv):
    """See the module docstring. `days`: fixed list of episode seeds to cycle through (validation);
    otherwise seeds are drawn from `seed` below TRAIN_SEED_MAX."""

    def __init__(self, env_id: str, role: str = "aggregator", n_envs: int = 8, n_blocks: int = HOURS,
                 seed: int = 0, days: list[int] | None = None, **scenario_overrides):
        if role not in DECISION_PHASE:
            raise ValueError(f"role {role!r}: choose 'aggregator' or 'dso'")
        self.scenario = scenario_for(env_id, **scenario_overrides)
        self.env_id, self.role, self.n_blocks = env_id, role, int(n_blocks)
        self.engine = Engine(self.scenario, batch_size=n_envs)
        if not any(s.phase == DECISION_PHASE[role] for s in self.engine.schedule):
            raise ValueError(f"{env_id}: the {role} has no planning step to act in")
        if PRICE_FIELD[role] not in self.engine.action_layout[role]:
            raise ValueError(f"{env_id}: the {role} sends no {PRICE_FIELD[role]} signal")
        self.actors = builtin_others(self.engine)
        self.rng = np.random.default_rng(seed)
        self.days = list(days) if days is not None else None
        self._next_day = 0
        obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (compact_obs_size(self.engine, role),), np.float32)
        act_space = gymnasium.spaces.Box(-1.0, 1.0, (self.n_blocks,), np.float32)
        super().__init__(n_envs, obs_space, act_space)
        self._actions = None

    def _new_seeds(self) -> list[int]:
        if self.days is None:
            return self._draw_seeds(self.num_envs)
        out = [self.days[(self._next_day + i) % len(self.days)] for i in range(self.num_envs)]
        self._next_day += self.num_envs
        return out

    def _advance(self) -> None:
        """Run built-in steps until the role's next decision or the end of the episode."""
        e = self.engine
        while not e.done and e.current.phase != DECISION_PHASE[self.role]:
            self._raw, _, _ = e.step(all_actions(e, self._raw, self.actors))

    def reset(self):
        self.day_seeds = self._new_seeds()
        self._raw = self.engine.reset(self.day_seeds)
        self._advance()
        return compact_obs(self.engine, self.role, self._raw[self.role])

    def step_async(self, actions):
        self._actions = np.asarray(actions)

    def step_wait(self):
        e = self.engine
        acts = all_actions(e, self._raw, self.actors)
        acts[self.role] = expand_action(e, self.role, self._actions.reshape(self.num_envs, -1))
        self._raw, _, _ = e.step(acts)
        self._advance()
        n = self.num_envs
        if not e.done:
            return compact_obs(e, self.role, self._raw[self.role]), np.zeros(n, np.float32), np.zeros(n, bool), [{} for _ in range(n)]
        j = e.system_cost_eur().copy()
        j_base = nocontrol_costs(self.scenario, self.day_seeds)
        reward = (j_base - j).astype(np.float32)
        congested = e.totals["congested_ptus"].copy()
        final = compact_obs(e, self.role, self._raw[self.role])
        infos = [{"terminal_observation": final[b], "day_seed": self.day_seeds[b], "j_eur": float(j[b]),
                  "j_nocontrol_eur": float(j_base[b]), "congested_ptus": float(congested[b])} for b in range(n)]
        return self.reset(), reward, np.ones(n, bool), infos


# ------------------------------------------------------------------------------- gymnasium view
AGENT_ID = {"aggregator": "aggregator_1", "dso": "dso"}


class DayDecision(gymnasium.Wrapper):
    """The aggregator's or the DSO's day as planning decisions, on flexenv's single-agent view
    (`flexenv.wrappers.single_agent(env, "aggregator_1" or "dso", reward="system")`).

    Same observation, action and reward as `PlanningVecEnv(role=...)`; works with SB3's DummyVecEnv and
    SubprocVecEnv. `reset(seed=s)` makes day `s` the episode (flexenv's view: the seed is the episode
    seed; seeds it draws itself stay below the test days)."""

    def __init__(self, view, n_blocks: int = HOURS):
        super().__init__(view)
        self.engine = view.env.engine
        roles = {agent: role for role, agent in AGENT_ID.items()}
        if view.agent_id not in roles or view.reward_kind != "system":
            raise ValueError("DayDecision wraps single_agent(env, 'aggregator_1' or 'dso', reward='system')")
        self.role = roles[view.agent_id]
        self.n_blocks = n_blocks
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (compact_obs_size(self.engine, self.role),), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (n_blocks,), np.float32)
        self._zero = np.zeros(view.action_space.shape, np.float32)

    def _advance(self, obs, cost):
        e = self.engine
        info = {}
        while not e.done and e.current.phase != DECISION_PHASE[self.role]:
            obs, reward, _, _, info = self.env.step(self._zero)
            cost -= reward
        return obs, cost, info

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        obs, self._cost, _ = self._advance(obs, 0.0)
        return compact_obs(self.engine, self.role, obs[None])[0], info

    def step(self, action):
        full = expand_action(self.engine, self.role, np.asarray(action)[None])[0].astype(np.float32)
        obs, reward, _, _, info = self.env.step(full)
        obs, cost, last = self._advance(obs, self._cost - reward)
        self._cost = cost
        info = dict(last or info)
        if "episode" in info:  # flexenv's episode KPIs; SB3 reserves info["episode"] for Monitor
            info["episode_kpis"] = info.pop("episode")
        done = self.engine.done
        out = compact_obs(self.engine, self.role, obs[None])[0]
        if not done:
            return out, 0.0, False, False, info
        day_seed = self.env.env.episode_seed
        j_base = float(nocontrol_costs(self.engine.scenario, [day_seed])[0])
        info.update(j_eur=cost, j_nocontrol_eur=j_base, day_seed=day_seed)
        return out, j_base - cost, True, False, info


def planning_agent(env, role: str, models: dict):
    """An `others` entry of `flexenv.wrappers.single_agent` / `learners` on the PettingZoo env `env`:
    `models[role]` (an SB3 planning model, looked up at every call, so it may be filled in or keep
    training later) acts at the role's planning steps through the block parametrisation; the
    role's built-in policy acts at every other step and while `models` has no entry for it."""

    def act(obs):
        model = models.get(role)
        engine = env.engine
        if model is None or engine.current.phase != DECISION_PHASE[role]:
            return env.builtin[role](obs[None])[0].astype(np.float32)
        blocks, _ = model.predict(compact_obs(engine, role, obs[None]), deterministic=True)
        return expand_action(engine, role, blocks)[0].astype(np.float32)

    return act


# ------------------------------------------------------------------------------- step by step
class AgentStepVecEnv(_BaseVecEnv):
    """The single-agent view of `role` for `n_envs` days at once: one engine step per VecEnv step,
    the full raw action and observation, every other actor built-in. reward "system": minus the
    step's system cost; "money": the role's own money (summed over prosumers for role "prosumer" is
    not offered: see `flexenv.wrappers.learners` with SuperSuit)."""

    def __init__(self, env_id: str, role: str = "aggregator", n_envs: int = 8, reward: str = "system", seed: int = 0):
        self.scenario = scenario_for(env_id)
        self.engine = Engine(self.scenario, batch_size=n_envs)
        self.role, self.reward_kind = role, reward
        self.actors = builtin_others(self.engine)
        self.rng = np.random.default_rng(seed)
        e = self.engine
        obs_space = gymnasium.spaces.Box(-1e3, 1e3, (e.obs_layout[role].size,), np.float32)
        act_space = gymnasium.spaces.Box(-1.0, 1.0, (e.action_layout[role].size,), np.float32)
        super().__init__(n_envs, obs_space, act_space)

    def reset(self):
        self._raw = self.engine.reset(self._draw_seeds(self.num_envs))
        return self._raw[self.role]

    def step_async(self, actions):
        self._actions = np.asarray(actions, dtype=np.float64)

    def step_wait(self):
        e = self.engine
        acts = all_actions(e, self._raw, self.actors)
        acts[self.role] = self._actions
        self._raw, rewards, info = e.step(acts)
        reward = -info["system_cost_eur"] if self.reward_kind == "system" else rewards[self.role]
        reward = np.asarray(reward, dtype=np.float32)
        n = self.num_envs
        if not e.done:
            return self._raw[self.role], reward, np.zeros(n, bool), [{} for _ in range(n)]
        infos = [{"terminal_observation": self._raw[self.role][b], "j_eur": float(e.system_cost_eur()[b])} for b in range(n)]
        return self.reset(), reward, np.ones(n, bool), infos
