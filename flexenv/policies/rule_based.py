"""Built-in policies for every role: batched, pure functions of the observation (plus static facts).

- `follow_plan` (prosumers): the energy box executes the plan its EMS made at planning.
- `RuleBasedAggregator`: per link, the simple contract practice of seed 000 §4.1 —
  gateway: send the reference plan; max-power: cap imports in the most expensive quarter of the
  day; price-driven: pass the DSO tariff's time profile on to the prosumers; iterative: as
  price-driven, then after each round raise prices where the declared portfolio plan peaks and lower
  them where it dips (valley filling, with a shrinking step so the rounds settle).
- `RuleBasedDSO`: tariff link: the regulator formula, variable term rising linearly from the loading
  threshold to the transformer's limit (expected loading from the D-prognosis), weighted by each zone's electrical distance
  (losses); isolated link: when the last PTU left a limit (traffic light orange or red), cap every
  prosumer of the zones at 80 % of their zone's last mean power, else no cap.

Each policy maps a batch of observations to a batch of actions in [-1, 1]. Where the action depends
only on fields that change at planning (tariffs, day-ahead curves, declared plans), the last action is
remembered with those fields and returned again while they are unchanged: the same numbers, without
recomputing them at every operate step.
"""

from __future__ import annotations

import numpy as np

from flexenv.engine import POSITION_SCALE_KW_PER_PROSUMER, Engine
from flexenv.layout import Layout


class _Memo:
    """The last action of a pure policy and the observation fields it was computed from."""

    def __init__(self, layout: Layout, fields: tuple[str, ...]):
        index = np.concatenate([np.arange(layout.fields[f].start, layout.fields[f].stop) for f in fields])
        contiguous = bool(np.all(np.diff(index) == 1))
        self.index = slice(int(index[0]), int(index[-1]) + 1) if contiguous else index  # a slice reads without copying
        self.key = None
        self.action = None

    def __call__(self, obs: np.ndarray, compute) -> np.ndarray:
        key = obs[:, self.index]
        if self.key is not None and key.shape == self.key.shape and (key == self.key).all():  # NaN never matches
            return self.action.copy()
        action = compute(obs)
        self.key, self.action = key.copy(), action.copy()
        return action


def follow_plan(engine: Engine, prosumer_obs: np.ndarray) -> np.ndarray:
    """(B, P, O) → (B, P, 5): the energy box's plan for this PTU (zero outside operate steps)."""
    return np.array(engine.obs_layout["prosumer"].view(prosumer_obs, "plan"), dtype=np.float64)  # a copy


class RuleBasedAggregator:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.layout = engine.action_layout["aggregator"]
        self.obs = engine.obs_layout["aggregator"]
        self.link = engine.prosumer_link
        self.config = engine.scenario.links.prosumer
        inputs = {"max_power": ("day_ahead", "load_forecast"), "price_driven": ("dso_tariff",),
                  "iterative": ("round", "dso_tariff", "declared_plan", "signal")}.get(self.link.kind)
        self._memo = _Memo(self.obs, inputs) if inputs else None  # gateway: the plan changes every PTU

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)  # the memo compares in the observation's own dtype
        return self._memo(obs, self._compute) if self._memo else self._compute(obs)

    def _compute(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        B = obs.shape[0]
        action = np.zeros((B, self.layout.size))
        phase = self.obs.view(obs, "phase").argmax(axis=-1)
        operate = phase == 2
        kind = self.link.kind
        T = self.engine.ppd
        day_ahead = self.obs.view(obs, "day_ahead")
        tariff = self.obs.view(obs, "dso_tariff").mean(axis=1)  # (B, T) zone average
        if kind == "gateway":
            self.layout.write(action, "setpoints", np.where(operate[:, None, None], self.obs.view(obs, "plan"), 0.0))
        elif kind == "max_power":
            # import caps in the 25 % most expensive PTUs: 1.5 × mean forecast load + 1 kW per prosumer
            scale = POSITION_SCALE_KW_PER_PROSUMER * self.engine.P
            mean_load_kw = self.obs.view(obs, "load_forecast") * scale / self.engine.P
            cap_kw = np.maximum(1.5 * mean_load_kw + 1.0, self.config.cap_min_kw)
            a_cap = 2.0 * (cap_kw - self.config.cap_min_kw) / (self.config.cap_max_kw - self.config.cap_min_kw) - 1.0
            expensive = day_ahead >= np.quantile(day_ahead, 0.75, axis=1, keepdims=True)
            a = np.where(expensive, np.minimum(a_cap, 0.98), 1.0)
            self.layout.write(action, "import_cap", np.broadcast_to(a[:, None, :], (B, self.link.n_groups, T)))
            self.layout.write(action, "export_cap", np.ones((B, self.link.n_groups, T)))
            self.layout.write(action, "intraday_import_cap", np.ones((B, self.link.n_groups)))
        else:  # price_driven, iterative
            band = max(self.config.price_band_eur_per_kwh, 1e-9)
            a = np.clip((tariff - tariff.mean(axis=1, keepdims=True)) / band, -1.0, 1.0)
            if kind == "iterative":
                round_fraction = self.obs.view(obs, "round")[:, 0]
                plan = self.obs.view(obs, "declared_plan")
                has_plan = np.abs(plan).sum(axis=1) > 0
                peak = plan - plan.mean(axis=1, keepdims=True)
                peak = peak / np.maximum(np.abs(peak).max(axis=1, keepdims=True), 1e-9)
                step = 0.5 * (1.0 - round_fraction)[:, None]
                previous = self.obs.view(obs, "signal")[:, 0, :]
                a = np.where(has_plan[:, None], np.clip(previous + step * peak, -1.0, 1.0), a)
            self.layout.write(action, "price", np.broadcast_to(a[:, None, :], (B, self.link.n_groups, T)))
        return action


class RuleBasedDSO:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.layout = engine.action_layout["dso"]
        self.obs = engine.obs_layout["dso"]
        self.kind = engine.dso_link.kind
        self.config = engine.scenario.links.dso
        self.zone_weight = engine.zone_loss_weight
        self.prosumers_per_zone = np.bincount(engine.zone_of_prosumer, minlength=engine.n_zones)
        # tariff: the prognosis is fixed for the day; isolated: the last PTU's grid changes every step
        self._memo = _Memo(self.obs, ("prognosis",)) if self.kind == "tariff" else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)  # the memo compares in the observation's own dtype
        return self._memo(obs, self._compute) if self._memo else self._compute(obs)

    def _compute(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        B = obs.shape[0]
        action = np.zeros((B, self.layout.size))
        if self.kind == "tariff":
            # expected transformer loading in % of its limit (the prognosis is in units of its rating)
            limit_pct = self.engine.scenario.feeder.trafo_loading_max_pct
            loading_pct = np.abs(self.obs.view(obs, "prognosis").sum(axis=1)) * 100.0 * 100.0 / limit_pct
            threshold = self.config.loading_threshold_pct
            u = np.clip((loading_pct - threshold) / max(100.0 - threshold, 1e-9), 0.0, 1.0)
            variable = u[:, None, :] * self.zone_weight[None, :, None]
            self.layout.write(action, "variable_tariff", 2.0 * variable - 1.0)
        elif self.kind == "isolated":
            light = self.obs.view(obs, "traffic_light").argmax(axis=-1)
            zone_net_kw = self.obs.view(obs, "zone_net") * self.engine.trafo_rating_kva
            mean_kw = np.abs(zone_net_kw) / np.maximum(self.prosumers_per_zone, 1)
            c = self.config
            cap_kw = np.maximum(0.8 * mean_kw, c.min_cap_kw)
            a_cap = 2.0 * (cap_kw - c.min_cap_kw) / (c.no_cap_kw - c.min_cap_kw) - 1.0
            self.layout.write(action, "zone_cap", np.where((light >= 2)[:, None], np.minimum(a_cap, 0.98), 1.0))
        return action
