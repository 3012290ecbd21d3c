"""Seeded synthetic data at PTU resolution: loads, PV, weather, EV sessions, appliance requests, prices.

Every component draws from its own independent child stream of the scenario seed
(`numpy.random.SeedSequence(seed, spawn_key=(component,))`), so changing one generator, or
adding a new one, never changes the numbers of the others. Same seed → identical arrays.

Arrays are time-major at PTU resolution: `T = days * ptus_per_day` steps, step `t` covering
`[t, t+1) * dt_h` hours from midnight of `start_date`. Per-prosumer arrays have shape `(P, T)`,
per-day events `(P, D)`. Powers are averages over the PTU in kW, positive = consumption.

Each generator below documents its model, parameters and units; `tests/test_data.py` checks the
documented means and ranges.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numba as nb
import numpy as np

from flexenv.scenario.schema import (
    ApplianceParams,
    BatteryParams,
    DayAheadMarket,
    EVParams,
    HeatPumpParams,
    ImbalanceMarket,
    ReserveMarket,
    Scenario,
    Site,
)

# The order fixes each component's stream; append new components at the end, never reorder.
COMPONENTS = (
    "fleet", "load", "pv", "temperature", "ev", "appliance", "day_ahead", "imbalance", "reserve", "forecast",
)


def component_rng(seed: int, component: str) -> np.random.Generator:
    """The independent random stream of one data component for a scenario seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(COMPONENTS.index(component),)))


# ------------------------------------------------------------------------------------------ time grid
@dataclasses.dataclass(frozen=True)
class TimeGrid:
    """The PTU grid of an episode."""

    ptu_minutes: int
    n_days: int
    start_date: dt.date

    @property
    def ptus_per_day(self) -> int:
        return 24 * 60 // self.ptu_minutes

    @property
    def dt_h(self) -> float:
        return self.ptu_minutes / 60.0

    @property
    def n_steps(self) -> int:
        return self.n_days * self.ptus_per_day

    @property
    def day_index(self) -> np.ndarray:
        """(T,) day of the episode, 0-based."""
        return np.arange(self.n_steps) // self.ptus_per_day

    @property
    def hour_of_day(self) -> np.ndarray:
        """(T,) start hour of each PTU within its day, 0 <= h < 24."""
        return (np.arange(self.n_steps) % self.ptus_per_day) * self.dt_h

    @property
    def day_of_year(self) -> np.ndarray:
        """(D,) day of the year (1..366) of each episode day."""
        return np.array([(self.start_date + dt.timedelta(days=d)).timetuple().tm_yday for d in range(self.n_days)])

    @property
    def weekday(self) -> np.ndarray:
        """(D,) weekday of each episode day, Monday=0."""
        return np.array([(self.start_date + dt.timedelta(days=d)).weekday() for d in range(self.n_days)])


def _ar1(rng: np.random.Generator, shape: tuple, phi: float) -> np.ndarray:
    """Unit-variance AR(1) noise along the last axis with lag-one correlation `phi`."""
    eps = rng.standard_normal(shape)
    flat = eps.reshape(-1, shape[-1])
    return _ar1_filter(flat, float(phi), float(np.sqrt(1.0 - phi**2))).reshape(shape)


@nb.njit(cache=True)
def _ar1_filter(eps, phi, scale):
    out = np.empty_like(eps)
    for i in range(eps.shape[0]):
        out[i, 0] = eps[i, 0]
        for t in range(1, eps.shape[1]):
            out[i, t] = phi * out[i, t - 1] + scale * eps[i, t]
    return out


def _hourly_shape(hourly_values: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Periodic linear interpolation of 24 hourly values (at h+0.5) to arbitrary hours."""
    return np.interp(hours % 24.0, np.arange(24) + 0.5, hourly_values, period=24.0)


# ------------------------------------------------------------------------------------ inflexible load
# Relative household load shape per hour (mean 1 over the day), weekday and weekend: a night base,
# a morning peak (later and broader at weekends) and the evening peak.
_LOAD_WEEKDAY = np.array([0.55, 0.45, 0.42, 0.40, 0.40, 0.45, 0.75, 1.20, 1.15, 0.85, 0.80, 0.85,
                          0.95, 0.90, 0.80, 0.80, 0.95, 1.30, 1.75, 1.90, 1.75, 1.50, 1.15, 0.80])
_LOAD_WEEKEND = np.array([0.60, 0.50, 0.45, 0.42, 0.40, 0.42, 0.50, 0.75, 1.10, 1.35, 1.35, 1.30,
                          1.35, 1.20, 1.00, 0.95, 1.00, 1.25, 1.60, 1.75, 1.60, 1.40, 1.10, 0.83])
_LOAD_WEEKDAY = _LOAD_WEEKDAY / _LOAD_WEEKDAY.mean()
_LOAD_WEEKEND = _LOAD_WEEKEND / _LOAD_WEEKEND.mean()
LOAD_SEASONAL_AMPLITUDE = 0.2  # winter peak +20 %, summer trough -20 %


def load_seasonal_factor(day_of_year: np.ndarray) -> np.ndarray:
    """Household consumption relative to the annual mean: 1 + 0.2 cos(2π (doy − 15) / 365)."""
    return 1.0 + LOAD_SEASONAL_AMPLITUDE * np.cos(2 * np.pi * (day_of_year - 15) / 365.0)


def household_load_kw(
    rng: np.random.Generator, grid: TimeGrid, annual_kwh: np.ndarray, noise_pct: np.ndarray
) -> np.ndarray:
    """Inflexible household load (P, T) in kW.

    load = annual_kwh / 8760 h × seasonal factor(day) × shape(weekday/weekend, hour shifted by the
    prosumer's habit offset of up to ±1 h) × noise, where noise is log-normal AR(1) (lag-one
    correlation 0.8 per 15 min) with mean 1 and coefficient of variation `noise_pct` %. The
    expected value over a day is annual_kwh / 8760 × seasonal factor.
    """
    n_prosumers = annual_kwh.shape[0]
    hours = grid.hour_of_day
    day = grid.day_index
    habit_shift_h = rng.uniform(-1.0, 1.0, size=(n_prosumers, 1))
    shifted = hours[None, :] + habit_shift_h
    is_weekend = (grid.weekday >= 5)[day][None, :]
    shape = np.where(is_weekend, _hourly_shape(_LOAD_WEEKEND, shifted), _hourly_shape(_LOAD_WEEKDAY, shifted))
    season = load_seasonal_factor(grid.day_of_year)[day][None, :]
    mean_kw = (annual_kwh / 8760.0)[:, None]
    phi = 0.8 ** (grid.ptu_minutes / 15.0)
    sigma = np.sqrt(np.log1p((noise_pct[:, None] / 100.0) ** 2))
    noise = np.exp(sigma * _ar1(rng, (n_prosumers, grid.n_steps), phi) - 0.5 * sigma**2)
    return mean_kw * season * shape * noise


# ---------------------------------------------------------------------------------------- solar PV
PV_PERFORMANCE_RATIO = 0.85  # inverter, temperature and wiring losses at clear sky


def solar_elevation_sin(grid: TimeGrid, latitude_deg: float) -> np.ndarray:
    """(T,) sine of the solar elevation at the middle of each PTU (solar time = clock time)."""
    day = grid.day_index
    doy = grid.day_of_year[day]
    declination = np.radians(23.45) * np.sin(2 * np.pi * (284 + doy) / 365.0)
    hour_angle = np.radians(15.0 * (grid.hour_of_day + grid.dt_h / 2 - 12.0))
    lat = np.radians(latitude_deg)
    return np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)


def pv_kw_per_kwp(rng: np.random.Generator, grid: TimeGrid, site: Site) -> np.ndarray:
    """PV output per installed kWp (T,) in kW/kWp, within [0, 1].

    clear-sky = 0.85 × max(sin(elevation), 0)^1.2 (a simple air-mass attenuation); each day draws a
    clearness index from Beta(2.5, 1.5) in summer to Beta(1.5, 2.5) in winter (mean 0.62 .. 0.38),
    and within the day passing clouds multiply by exp(0.3 (1 − clearness) × AR(1) noise).
    """
    n_days = grid.n_days
    summer = 0.5 * (1 - np.cos(2 * np.pi * (grid.day_of_year - 15) / 365.0))  # 0 in mid-January, 1 in July
    alpha = 1.5 + summer
    beta = 2.5 - summer
    clearness = rng.beta(alpha, beta, size=n_days)[grid.day_index]
    clear_sky = PV_PERFORMANCE_RATIO * np.maximum(solar_elevation_sin(grid, site.latitude_deg), 0.0) ** 1.2
    clouds = np.exp(0.3 * (1 - clearness) * _ar1(rng, (grid.n_steps,), 0.9 ** (grid.ptu_minutes / 15.0)))
    return np.clip(clear_sky * (0.25 + 0.75 * clearness) * clouds, 0.0, 1.0)


# ---------------------------------------------------------------------------------- temperature
def outdoor_temperature_degc(rng: np.random.Generator, grid: TimeGrid, site: Site) -> np.ndarray:
    """Outdoor temperature (T,) in °C.

    seasonal mean − annual amplitude × cos(2π (doy − 15)/365) (coldest mid-January)
    + daily amplitude × cos(2π (hour − 15)/24) (warmest at 15:00)
    + a day-to-day weather anomaly, AR(1) with std 2.5 K and lag-one correlation 0.7,
    + PTU noise with std 0.3 K.
    """
    day = grid.day_index
    seasonal = site.annual_mean_temp_degc - site.annual_temp_amplitude_k * np.cos(
        2 * np.pi * (grid.day_of_year - 15) / 365.0
    )
    anomaly = 2.5 * _ar1(rng, (grid.n_days,), 0.7)
    diurnal = site.daily_temp_amplitude_k * np.cos(2 * np.pi * (grid.hour_of_day - 15.0) / 24.0)
    return seasonal[day] + anomaly[day] + diurnal + 0.3 * rng.standard_normal(grid.n_steps)


# ------------------------------------------------------------------------------------- EV sessions
def ev_sessions(
    rng: np.random.Generator, grid: TimeGrid, has_ev: np.ndarray, battery_kwh: np.ndarray, params: list[EVParams],
    group: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Home charging sessions, one chance per prosumer and day: (arrival_ptu, departure_ptu, energy_kwh), each (P, D).

    PTU indices count from the start of the episode; departure is exclusive and may exceed T for a
    session that runs past the episode's end; a session never overlaps the next day's arrival.
    A day without a session has arrival = departure = -1 and energy 0. Arrival hour ~ N(mean, std)
    clipped to [0, 23.75]; departure hour ~ N(mean, std) clipped to at least one hour after arrival;
    energy needed ~ U(range) clipped to 90 % of the EV battery.
    """
    n_prosumers, n_days, ppd = has_ev.shape[0], grid.n_days, grid.ptus_per_day
    arr_mean = np.array([params[g].arrival_hour_mean for g in group])[:, None]
    arr_std = np.array([params[g].arrival_hour_std for g in group])[:, None]
    dep_mean = np.array([params[g].departure_hour_mean for g in group])[:, None]
    dep_std = np.array([params[g].departure_hour_std for g in group])[:, None]
    e_low = np.array([params[g].energy_needed_kwh.low for g in group])[:, None]
    e_high = np.array([params[g].energy_needed_kwh.high for g in group])[:, None]
    p_session = np.array([params[g].session_probability for g in group])[:, None]

    shape = (n_prosumers, n_days)
    arrival_h = np.clip(arr_mean + arr_std * rng.standard_normal(shape), 0.0, 24.0 - grid.dt_h)
    departure_h = np.maximum(dep_mean + dep_std * rng.standard_normal(shape), arrival_h + 1.0)
    energy_kwh = np.minimum(rng.uniform(e_low, e_high, size=shape), 0.9 * battery_kwh[:, None])
    present = has_ev[:, None] & (rng.random(shape) < p_session)

    day_start = (np.arange(n_days) * ppd)[None, :]
    arrival = day_start + np.floor(arrival_h / grid.dt_h).astype(np.int64)
    departure = day_start + np.ceil(departure_h / grid.dt_h).astype(np.int64)
    # no overlap with the next day's session
    next_arrival = np.full(shape, np.iinfo(np.int64).max)
    next_arrival[:, :-1] = np.where(present[:, 1:], arrival[:, 1:], np.iinfo(np.int64).max)
    departure = np.minimum(departure, next_arrival)
    arrival = np.where(present, arrival, -1)
    departure = np.where(present, departure, -1)
    energy_kwh = np.where(present, energy_kwh, 0.0)
    return arrival, departure, energy_kwh


# ----------------------------------------------------------------------------- shiftable appliances
def appliance_profile_kw(power_kw: np.ndarray, duration_ptu: np.ndarray) -> np.ndarray:
    """Run profile (P, L) in kW, L = max duration: the first third (≥ 1 PTU) heats at full power,
    the rest runs at 25 % of it (washing machine / dishwasher); zeros after each run's end."""
    length = int(max(duration_ptu.max(initial=1), 1))
    k = np.arange(length)[None, :]
    heating = np.maximum(1, np.round(duration_ptu / 3.0)).astype(np.int64)[:, None]
    level = np.where(k < heating, 1.0, 0.25)
    return np.where(k < duration_ptu[:, None], level * power_kw[:, None], 0.0)


def appliance_requests(
    rng: np.random.Generator, grid: TimeGrid, has_appliance: np.ndarray, duration_ptu: np.ndarray,
    params: list[ApplianceParams], group: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One run request per prosumer and day with probability `request_probability`:
    (earliest_start_ptu, latest_start_ptu), each (P, D), counted from the episode start.

    The earliest start hour ~ U(earliest_start_hour range), the window ~ U(window_h range); the
    latest start lets the run finish inside the window and inside the day, and is never before
    the earliest. No request: both -1.
    """
    n_prosumers, n_days, ppd = has_appliance.shape[0], grid.n_days, grid.ptus_per_day
    shape = (n_prosumers, n_days)
    s_low = np.array([params[g].earliest_start_hour.low for g in group])[:, None]
    s_high = np.array([params[g].earliest_start_hour.high for g in group])[:, None]
    w_low = np.array([params[g].window_h.low for g in group])[:, None]
    w_high = np.array([params[g].window_h.high for g in group])[:, None]
    p_request = np.array([params[g].request_probability for g in group])[:, None]

    earliest_h = np.clip(rng.uniform(s_low, s_high, size=shape), 0.0, 24.0 - grid.dt_h)
    window_h = rng.uniform(w_low, w_high, size=shape)
    present = has_appliance[:, None] & (rng.random(shape) < p_request)
    earliest = np.floor(earliest_h / grid.dt_h).astype(np.int64)
    latest = np.floor((earliest_h + window_h) / grid.dt_h).astype(np.int64) - duration_ptu[:, None]
    latest = np.clip(latest, earliest, np.maximum(ppd - duration_ptu[:, None], earliest))
    day_start = (np.arange(n_days) * ppd)[None, :]
    return np.where(present, day_start + earliest, -1), np.where(present, day_start + latest, -1)


# ------------------------------------------------------------------------------------------ prices
# Relative day-ahead price shape per hour (mean 0): night trough, morning and evening peaks.
_DA_SHAPE = np.array([-0.30, -0.38, -0.42, -0.44, -0.40, -0.25, 0.05, 0.45, 0.55, 0.35, 0.15, 0.00,
                      -0.10, -0.12, -0.05, 0.05, 0.25, 0.60, 0.85, 0.80, 0.55, 0.25, 0.00, -0.20])
_DA_SHAPE = _DA_SHAPE - _DA_SHAPE.mean()


def day_ahead_price_eur_per_kwh(
    rng: np.random.Generator, grid: TimeGrid, market: DayAheadMarket, pv_shape: np.ndarray
) -> np.ndarray:
    """Day-ahead price (T,) in €/kWh.

    mean × daily level × (1 + amplitude × shape(hour) − solar dip) + PTU noise, where the daily
    level is log-normal AR(1) (std 0.15, correlation 0.6, mean 1), the solar dip is proportional to
    the clear-sky PV shape (deeper in summer), the noise std is `volatility_pct` % of the mean, and
    with probability `negative_midday_probability` per day a midday surplus pushes prices below zero
    (a dip of 1.2–2× the mean centred on solar noon).
    """
    day = grid.day_index
    mean = market.mean_eur_per_mwh / 1000.0
    level = np.exp(0.15 * _ar1(rng, (grid.n_days,), 0.6) - 0.5 * 0.15**2)[day]
    shape = np.interp(grid.hour_of_day, np.arange(24), _DA_SHAPE, period=24.0)
    solar_dip = 0.4 * pv_shape
    price = mean * level * (1.0 + market.daily_amplitude_pct / 100.0 * shape - solar_dip)
    price = price + mean * market.volatility_pct / 100.0 * rng.standard_normal(grid.n_steps)
    negative_day = rng.random(grid.n_days) < market.negative_midday_probability
    depth = rng.uniform(1.2, 2.0, size=grid.n_days)
    midday_bump = np.exp(-0.5 * ((grid.hour_of_day - 13.0) / 1.5) ** 2)
    return price - np.where(negative_day[day], depth[day] * mean * midday_bump, 0.0)


def imbalance_prices_eur_per_kwh(
    rng: np.random.Generator, day_ahead: np.ndarray, market: ImbalanceMarket
) -> tuple[np.ndarray, np.ndarray]:
    """Imbalance prices (short, long), each (T,) in €/kWh, asymmetric around the day-ahead price.

    short (the portfolio is short and buys) = DA + skew × spread × E1, long (it is long and sells)
    = DA − spread × E2, with E1, E2 unit-mean exponential, so short ≥ DA ≥ long always and on
    average short − DA = skew × spread, DA − long = spread.
    """
    spread = market.spread_eur_per_mwh / 1000.0
    e_short = rng.exponential(1.0, size=day_ahead.shape)
    e_long = rng.exponential(1.0, size=day_ahead.shape)
    return day_ahead + market.short_skew * spread * e_short, day_ahead - spread * e_long


def reserve_signals(
    rng: np.random.Generator, grid: TimeGrid, market: ReserveMarket
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reserve market data, each (T,): capacity price €/kW/h, activation price €/kWh, and the
    activated fraction of the upward and downward commitment (0..1).

    Prices are the configured means × log-normal daily factors (std 0.2, mean 1). Activations start
    in a PTU with `activation_probability`, last a geometric number of PTUs (mean 30 min) and call a
    fraction U(0.2, 1) of the commitment; an event is upward or downward with equal chance.
    """
    day = grid.day_index
    capacity = market.capacity_eur_per_mw_h / 1000.0 * np.exp(0.2 * rng.standard_normal(grid.n_days) - 0.02)[day]
    activation_price = market.activation_eur_per_mwh / 1000.0 * np.exp(
        0.2 * rng.standard_normal(grid.n_days) - 0.02
    )[day]
    starts = rng.random(grid.n_steps) < market.activation_probability
    lengths = rng.geometric(min(1.0, grid.ptu_minutes / 30.0), size=grid.n_steps)
    sizes = rng.uniform(0.2, 1.0, size=grid.n_steps)
    upward = rng.random(grid.n_steps) < 0.5
    up = np.zeros(grid.n_steps)
    down = np.zeros(grid.n_steps)
    for t in np.flatnonzero(starts):  # loop over the few events only
        end = min(grid.n_steps, t + lengths[t])
        target = up if upward[t] else down
        target[t:end] = np.maximum(target[t:end], sizes[t])
    down[up > 0] = 0.0  # never both directions in one PTU
    return capacity, activation_price, up, down


# ---------------------------------------------------------------------------------------- the fleet
@dataclasses.dataclass(frozen=True)
class Fleet:
    """Static per-prosumer parameters, every array (P,). Absent devices have zero sizes."""

    group: np.ndarray  # index into scenario.prosumers
    annual_kwh: np.ndarray
    power_factor: np.ndarray
    has_pv: np.ndarray
    pv_kwp: np.ndarray
    has_battery: np.ndarray
    battery_capacity_kwh: np.ndarray
    battery_power_kw: np.ndarray
    battery_charge_efficiency: np.ndarray
    battery_discharge_efficiency: np.ndarray
    battery_self_discharge_per_h: np.ndarray  # fraction of stored energy lost per hour
    battery_soc_min: np.ndarray  # fraction of capacity
    battery_soc_max: np.ndarray
    battery_soc_initial: np.ndarray
    has_ev: np.ndarray
    ev_battery_kwh: np.ndarray
    ev_max_charge_kw: np.ndarray
    ev_charge_efficiency: np.ndarray
    ev_v2g: np.ndarray
    has_heat_pump: np.ndarray
    hp_rated_power_kw: np.ndarray  # electric
    hp_carnot_fraction: np.ndarray
    hp_supply_temp_degc: np.ndarray
    building_resistance_k_per_kw: np.ndarray
    building_capacitance_kwh_per_k: np.ndarray
    comfort_set_point_degc: np.ndarray
    comfort_band_k: np.ndarray
    has_appliance: np.ndarray
    appliance_power_kw: np.ndarray
    appliance_duration_ptu: np.ndarray

    @property
    def n_prosumers(self) -> int:
        return self.group.shape[0]


def _choose_owners(rng: np.random.Generator, count: int, share: float) -> np.ndarray:
    """Exactly round(share × count) owners, chosen at random (no Bernoulli noise in small groups)."""
    owners = np.zeros(count, dtype=bool)
    owners[rng.permutation(count)[: int(round(share * count))]] = True
    return owners


def sample_fleet(rng: np.random.Generator, scenario: Scenario) -> Fleet:
    """Draw each prosumer's devices and parameters from its group's penetrations and ranges."""
    dt_h = scenario.time.dt_h
    columns: dict[str, list[np.ndarray]] = {f.name: [] for f in dataclasses.fields(Fleet)}

    def put(name, value, n):
        columns[name].append(np.broadcast_to(np.asarray(value), (n,)).copy())

    for index, group in enumerate(scenario.prosumers):
        n = group.count
        def draw(r, n=n):
            return rng.uniform(r.low, r.high, size=n)

        pen = group.penetration
        has = {name: _choose_owners(rng, n, getattr(pen, name)) for name in ("pv", "battery", "ev", "heat_pump", "appliance")}
        b: BatteryParams = group.battery
        hp: HeatPumpParams = group.heat_pump
        put("group", index, n)
        put("annual_kwh", draw(group.load.annual_kwh), n)
        put("power_factor", group.load.power_factor, n)
        put("has_pv", has["pv"], n)
        put("pv_kwp", np.where(has["pv"], draw(group.pv.kwp), 0.0), n)
        put("has_battery", has["battery"], n)
        put("battery_capacity_kwh", np.where(has["battery"], draw(b.capacity_kwh), 0.0), n)
        put("battery_power_kw", np.where(has["battery"], draw(b.power_kw), 0.0), n)
        put("battery_charge_efficiency", b.charge_efficiency, n)
        put("battery_discharge_efficiency", b.discharge_efficiency, n)
        put("battery_self_discharge_per_h", 1.0 - (1.0 - b.self_discharge_pct_per_day / 100.0) ** (1 / 24), n)
        put("battery_soc_min", b.soc_min_pct / 100.0, n)
        put("battery_soc_max", b.soc_max_pct / 100.0, n)
        put("battery_soc_initial", b.initial_soc_pct / 100.0, n)
        put("has_ev", has["ev"], n)
        put("ev_battery_kwh", np.where(has["ev"], draw(group.ev.battery_kwh), 0.0), n)
        put("ev_max_charge_kw", np.where(has["ev"], draw(group.ev.max_charge_kw), 0.0), n)
        put("ev_charge_efficiency", group.ev.charge_efficiency, n)
        put("ev_v2g", has["ev"] & group.ev.v2g, n)
        put("has_heat_pump", has["heat_pump"], n)
        put("hp_rated_power_kw", np.where(has["heat_pump"], draw(hp.rated_power_kw), 0.0), n)
        put("hp_carnot_fraction", hp.carnot_fraction, n)
        put("hp_supply_temp_degc", hp.supply_temp_degc, n)
        put("building_resistance_k_per_kw", draw(hp.resistance_k_per_kw), n)
        put("building_capacitance_kwh_per_k", draw(hp.capacitance_kwh_per_k), n)
        put("comfort_set_point_degc", hp.set_point_degc, n)
        put("comfort_band_k", hp.comfort_band_k, n)
        put("has_appliance", has["appliance"], n)
        put("appliance_power_kw", np.where(has["appliance"], draw(group.appliance.power_kw), 0.0), n)
        duration_ptu = np.maximum(1, np.round(draw(group.appliance.duration_h) / dt_h)).astype(np.int64)
        put("appliance_duration_ptu", np.where(has["appliance"], duration_ptu, 0), n)
    return Fleet(**{name: np.concatenate(parts) for name, parts in columns.items()})


# -------------------------------------------------------------------------------------- everything
@dataclasses.dataclass(frozen=True)
class ScenarioData:
    """All exogenous data of an episode. Shapes: (T,) common, (P, T) per prosumer, (P, D) per day."""

    grid: TimeGrid
    fleet: Fleet
    load_kw: np.ndarray  # (P, T) inflexible consumption, kW
    pv_kw_per_kwp: np.ndarray  # (T,) available PV per kWp, kW/kWp
    outdoor_temp_degc: np.ndarray  # (T,)
    ev_arrival_ptu: np.ndarray  # (P, D) int, -1 = no session
    ev_departure_ptu: np.ndarray  # (P, D) int, exclusive
    ev_energy_needed_kwh: np.ndarray  # (P, D)
    appliance_earliest_start_ptu: np.ndarray  # (P, D) int, -1 = no request
    appliance_latest_start_ptu: np.ndarray  # (P, D) int
    appliance_profile_kw: np.ndarray  # (P, L) run profile
    day_ahead_eur_per_kwh: np.ndarray  # (T,)
    imbalance_short_eur_per_kwh: np.ndarray  # (T,) price for a portfolio that is short (buys)
    imbalance_long_eur_per_kwh: np.ndarray  # (T,) price for a portfolio that is long (sells)
    reserve_capacity_eur_per_kw_h: np.ndarray  # (T,)
    reserve_activation_eur_per_kwh: np.ndarray  # (T,)
    reserve_activation_up: np.ndarray  # (T,) activated fraction of the upward commitment
    reserve_activation_down: np.ndarray  # (T,)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array field by name (for hashing, saving and tests)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                out[f.name] = value
        out.update({f"fleet.{f.name}": getattr(self.fleet, f.name) for f in dataclasses.fields(Fleet)})
        return out


def generate(scenario: Scenario, seed: int | None = None, fleet: Fleet | None = None) -> ScenarioData:
    """All data of `scenario` for the episode seed `seed` (default: the scenario's own seed).

    The fleet (who owns which device, with which parameters) is the scenario's population and is
    drawn from `scenario.seed`; the episode seed draws everything that changes from day to day
    (loads, weather, sessions, requests, prices), so training on many seeds trains on many days of
    the same households. Pass the scenario's `fleet` to skip drawing it again.
    """
    if fleet is None:
        fleet = sample_fleet(component_rng(scenario.seed, "fleet"), scenario)
    seed = scenario.seed if seed is None else seed
    grid = TimeGrid(scenario.time.ptu_minutes, scenario.time.days, scenario.time.start_date)
    groups = scenario.prosumers
    noise_pct = np.array([groups[g].load.noise_pct for g in fleet.group], dtype=float)
    load = household_load_kw(component_rng(seed, "load"), grid, fleet.annual_kwh, noise_pct)
    pv = pv_kw_per_kwp(component_rng(seed, "pv"), grid, scenario.site)
    temp = outdoor_temperature_degc(component_rng(seed, "temperature"), grid, scenario.site)
    ev = ev_sessions(
        component_rng(seed, "ev"), grid, fleet.has_ev, fleet.ev_battery_kwh, [g.ev for g in groups], fleet.group
    )
    appliance = appliance_requests(
        component_rng(seed, "appliance"), grid, fleet.has_appliance, fleet.appliance_duration_ptu,
        [g.appliance for g in groups], fleet.group,
    )
    clear_sky_shape = np.maximum(solar_elevation_sin(grid, scenario.site.latitude_deg), 0.0)
    day_ahead = day_ahead_price_eur_per_kwh(component_rng(seed, "day_ahead"), grid, scenario.markets.day_ahead, clear_sky_shape)
    short, long = imbalance_prices_eur_per_kwh(component_rng(seed, "imbalance"), day_ahead, scenario.markets.imbalance)
    capacity, activation, up, down = reserve_signals(component_rng(seed, "reserve"), grid, scenario.markets.reserve)
    return ScenarioData(
        grid=grid,
        fleet=fleet,
        load_kw=load,
        pv_kw_per_kwp=pv,
        outdoor_temp_degc=temp,
        ev_arrival_ptu=ev[0],
        ev_departure_ptu=ev[1],
        ev_energy_needed_kwh=ev[2],
        appliance_earliest_start_ptu=appliance[0],
        appliance_latest_start_ptu=appliance[1],
        appliance_profile_kw=appliance_profile_kw(fleet.appliance_power_kw, fleet.appliance_duration_ptu),
        day_ahead_eur_per_kwh=day_ahead,
        imbalance_short_eur_per_kwh=short,
        imbalance_long_eur_per_kwh=long,
        reserve_capacity_eur_per_kw_h=capacity,
        reserve_activation_eur_per_kwh=activation,
        reserve_activation_up=up,
        reserve_activation_down=down,
    )
