"""Seeded data generators: deterministic per seed, documented means and ranges, correct units."""

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexenv.scenario import load
from flexenv.scenario import data as d
from flexenv.scenario.schema import DayAheadMarket, ImbalanceMarket, ReserveMarket, Site


def _generate(name="suburban100", seed=None, **overrides):
    return d.generate(load(name, overrides), seed=seed)


def test_same_seed_same_arrays_bit_for_bit():
    a, b = _generate(seed=3), _generate(seed=3)
    for key, value in a.arrays().items():
        assert np.array_equal(value, b.arrays()[key]), key


def test_different_seeds_different_days():
    a, b = _generate(seed=3), _generate(seed=4)
    for key in ("load_kw", "pv_kw_per_kwp", "outdoor_temp_degc", "day_ahead_eur_per_kwh", "imbalance_short_eur_per_kwh"):
        assert not np.array_equal(a.arrays()[key], b.arrays()[key]), key


def test_components_use_independent_streams():
    """Changing the price model must not change the loads or the weather."""
    a = _generate(seed=1)
    b = _generate(seed=1, **{"markets.day_ahead.volatility_pct": 50.0})
    assert np.array_equal(a.load_kw, b.load_kw) and np.array_equal(a.outdoor_temp_degc, b.outdoor_temp_degc)
    assert not np.array_equal(a.day_ahead_eur_per_kwh, b.day_ahead_eur_per_kwh)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), ptu=st.sampled_from([15, 30, 60]), days=st.integers(1, 3))
def test_shapes_units_and_ranges(seed, ptu, days):
    data = _generate("teaching10", seed=seed, **{"time.ptu_minutes": ptu, "time.days": days})
    n_steps, n_prosumers = days * 24 * 60 // ptu, 10
    assert data.load_kw.shape == (n_prosumers, n_steps)
    assert data.pv_kw_per_kwp.shape == data.day_ahead_eur_per_kwh.shape == (n_steps,)
    assert data.ev_arrival_ptu.shape == (n_prosumers, days)
    for key, value in data.arrays().items():
        assert np.all(np.isfinite(value)), key
    assert np.all(data.load_kw > 0)
    assert np.all((0 <= data.pv_kw_per_kwp) & (data.pv_kw_per_kwp <= 1))
    assert np.all(data.imbalance_short_eur_per_kwh >= data.day_ahead_eur_per_kwh)
    assert np.all(data.imbalance_long_eur_per_kwh <= data.day_ahead_eur_per_kwh)
    up, down = data.reserve_activation_up, data.reserve_activation_down
    assert np.all((0 <= up) & (up <= 1) & (0 <= down) & (down <= 1)) and not np.any((up > 0) & (down > 0))
    # prices in €/kWh, not €/MWh: a household-scale magnitude
    assert -1.0 < np.median(data.day_ahead_eur_per_kwh) < 1.0


def _grid(days=364, start=dt.date(2025, 1, 1), ptu=15):
    return d.TimeGrid(ptu, days, start)


def test_load_mean_matches_annual_energy():
    grid = _grid()
    rng = np.random.default_rng(0)
    annual = np.array([2000.0, 3500.0, 5000.0])
    load_kw = d.household_load_kw(rng, grid, annual, np.full(3, 25.0))
    energy_kwh = load_kw.sum(axis=1) * grid.dt_h
    expected = annual / 8760.0 * 24 * d.load_seasonal_factor(grid.day_of_year).sum()
    np.testing.assert_allclose(energy_kwh, expected, rtol=0.03)
    assert abs(d.load_seasonal_factor(np.arange(1, 366)).mean() - 1.0) < 1e-3


def test_load_has_evening_peak_and_winter_peak():
    grid = _grid()
    load_kw = d.household_load_kw(np.random.default_rng(1), grid, np.full(20, 3500.0), np.full(20, 25.0))
    hourly = load_kw.mean(axis=0).reshape(grid.n_days, 24, 4).mean(axis=(0, 2))
    assert hourly.argmax() in (18, 19, 20) and hourly.argmin() in (2, 3, 4, 5)
    daily = load_kw.mean(axis=0).reshape(grid.n_days, -1).mean(axis=1)
    assert daily[:31].mean() > 1.2 * daily[180:211].mean()


def test_pv_is_zero_at_night_and_larger_in_summer():
    grid = _grid()
    pv = d.pv_kw_per_kwp(np.random.default_rng(2), grid, Site())
    sun = d.solar_elevation_sin(grid, Site().latitude_deg)
    assert np.all(pv[sun <= 0] == 0)
    daily_kwh = pv.reshape(grid.n_days, -1).sum(axis=1) * grid.dt_h
    assert daily_kwh[150:200].mean() > 3 * daily_kwh[:40].mean()
    # yearly yield per kWp of a central-European roof: roughly 700-1200 kWh/kWp
    assert 650 < daily_kwh.sum() < 1250


def test_temperature_seasons_and_mean():
    grid = _grid()
    site = Site(annual_mean_temp_degc=10.0, annual_temp_amplitude_k=8.0)
    temp = d.outdoor_temperature_degc(np.random.default_rng(3), grid, site)
    assert abs(temp.mean() - 10.0) < 1.5
    daily = temp.reshape(grid.n_days, -1).mean(axis=1)
    assert daily[:31].mean() < daily[181:212].mean() - 10
    hourly = temp.reshape(grid.n_days, 24, 4).mean(axis=(0, 2))
    assert hourly.argmax() in (14, 15, 16)


def test_fleet_penetration_is_exact():
    scenario = load("suburban100")
    fleet = d.sample_fleet(d.component_rng(0, "fleet"), scenario)
    pen = scenario.prosumers[0].penetration
    assert fleet.has_pv.sum() == round(pen.pv * 100) and fleet.has_ev.sum() == round(pen.ev * 100)
    assert np.all(fleet.pv_kwp[~fleet.has_pv] == 0) and np.all(fleet.pv_kwp[fleet.has_pv] >= 3)
    assert np.all(fleet.battery_capacity_kwh[~fleet.has_battery] == 0)


def test_ev_sessions_are_consistent():
    data = _generate(seed=5, **{"time.days": 7})
    arrival, departure, energy = data.ev_arrival_ptu, data.ev_departure_ptu, data.ev_energy_needed_kwh
    present = arrival >= 0
    assert present.sum() > 0
    assert np.all(departure[present] > arrival[present])
    assert np.all(energy[present] > 0) and np.all(energy[~present] == 0)
    assert not np.any(present[~data.fleet.has_ev])
    battery = np.broadcast_to(data.fleet.ev_battery_kwh[:, None], energy.shape)
    assert np.all(energy <= 0.9 * battery + 1e-12)
    day = np.arange(7)[None, :] * 96
    assert np.all((arrival[present] >= day.repeat(100, 0)[present]) & (arrival[present] < day.repeat(100, 0)[present] + 96))
    # sessions never overlap the next day's
    both = present[:, :-1] & present[:, 1:]
    assert np.all(departure[:, :-1][both] <= arrival[:, 1:][both])


def test_appliance_requests_fit_the_day():
    data = _generate(seed=6, **{"time.days": 3})
    earliest, latest = data.appliance_earliest_start_ptu, data.appliance_latest_start_ptu
    present = earliest >= 0
    assert present.sum() > 0 and not np.any(present[~data.fleet.has_appliance])
    duration = np.broadcast_to(data.fleet.appliance_duration_ptu[:, None], earliest.shape)
    day_end = (np.arange(3)[None, :] + 1) * 96
    assert np.all(latest[present] >= earliest[present])
    assert np.all(latest[present] + duration[present] <= np.broadcast_to(day_end, earliest.shape)[present])
    profile = data.appliance_profile_kw
    owners = data.fleet.has_appliance
    np.testing.assert_array_equal((profile[owners] > 0).sum(axis=1), data.fleet.appliance_duration_ptu[owners])
    np.testing.assert_allclose(profile[owners].max(axis=1), data.fleet.appliance_power_kw[owners])


def test_day_ahead_negative_midday_prices():
    grid = _grid(days=60)
    sun = np.maximum(d.solar_elevation_sin(grid, 50.0), 0)
    always = d.day_ahead_price_eur_per_kwh(
        np.random.default_rng(7), grid, DayAheadMarket(negative_midday_probability=1.0, volatility_pct=0), sun
    )
    never = d.day_ahead_price_eur_per_kwh(
        np.random.default_rng(7), grid, DayAheadMarket(negative_midday_probability=0.0, volatility_pct=0), sun
    )
    noon = (grid.hour_of_day >= 12.5) & (grid.hour_of_day < 13.5)
    assert np.all(always[noon] < 0)
    assert np.all(never > 0)
    assert abs(never.mean() - 0.090) < 0.02  # configured mean 90 €/MWh, less the solar dip


def test_imbalance_spread_means():
    rng = np.random.default_rng(8)
    day_ahead = np.full(200_000, 0.1)
    short, long = d.imbalance_prices_eur_per_kwh(rng, day_ahead, ImbalanceMarket(spread_eur_per_mwh=40, short_skew=1.5))
    assert abs((short - day_ahead).mean() - 0.060) < 0.001
    assert abs((day_ahead - long).mean() - 0.040) < 0.001


def test_reserve_activation_frequency():
    grid = _grid(days=100)
    _, _, up, down = d.reserve_signals(np.random.default_rng(9), grid, ReserveMarket(activation_probability=0.05))
    share = ((up > 0) | (down > 0)).mean()
    assert 0.05 < share < 0.2  # starts at 5 % of PTUs, each lasting 2 PTUs on average, some overlapping
    assert abs((up > 0).mean() - (down > 0).mean()) < 0.05


@pytest.mark.parametrize("component", d.COMPONENTS)
def test_component_streams_differ(component):
    others = [c for c in d.COMPONENTS if c != component]
    first = d.component_rng(0, component).random(4)
    assert all(not np.array_equal(first, d.component_rng(0, c).random(4)) for c in others)


def test_fleet_comes_from_the_scenario_seed_and_days_from_the_episode_seed():
    scenario = load("teaching10")
    a, b = d.generate(scenario, seed=1), d.generate(scenario, seed=2)
    assert np.array_equal(a.fleet.pv_kwp, b.fleet.pv_kwp) and np.array_equal(a.fleet.has_ev, b.fleet.has_ev)
    assert not np.array_equal(a.load_kw, b.load_kw)
    other_population = d.generate(load("teaching10", {"seed": 5}), seed=1)
    assert not np.array_equal(a.fleet.annual_kwh, other_population.fleet.annual_kwh)
