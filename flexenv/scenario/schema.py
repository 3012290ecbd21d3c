"""The scenario schema: one validated object describes a whole experiment.

A scenario fixes time (PTU length, days, start date), the feeder, the prosumer population and its
device parameter ranges, the three business-model links with their contract parameters
(DESIGN.md §4, seed 000 §4), the markets around them and the seed.

Every field carries its unit in its name (`_kw`, `_kwh`, `_eur_per_kwh`, `_h`, `_degc`, `_pct`,
`_pu`). Validation is strict: unknown fields, wrong types and values out of range fail at load time
with the field path, the bad value and the allowed range or choices (see `flexenv.scenario.load`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Base for every config block: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _check_low_high(low: float, high: float, what: str) -> None:
    if low > high:
        raise ValueError(f"{what}: low ({low}) must not exceed high ({high})")


class RangeModel(StrictModel):
    """A uniform range [low, high]; each prosumer draws its own value from it."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self):
        _check_low_high(self.low, self.high, "range")
        return self


class PositiveRange(RangeModel):
    low: float = Field(gt=0)
    high: float = Field(gt=0)


class FractionRange(RangeModel):
    low: float = Field(gt=0, le=1)
    high: float = Field(gt=0, le=1)


# ---------------------------------------------------------------------------------------------- time
class TimeConfig(StrictModel):
    """When the episode happens and at which resolution."""

    ptu_minutes: Literal[15, 30, 60] = Field(15, description="program time unit (min)")
    days: int = Field(1, ge=1, le=366, description="episode length (days)")
    start_date: dt.date = Field(dt.date(2025, 1, 15), description="first day of the episode")

    @property
    def ptus_per_day(self) -> int:
        return 24 * 60 // self.ptu_minutes

    @property
    def dt_h(self) -> float:
        return self.ptu_minutes / 60.0


# -------------------------------------------------------------------------------------------- feeder
NAMED_FEEDERS = (
    "kerber_landnetz_kabel_1",
    "kerber_landnetz_kabel_2",
    "kerber_landnetz_freileitung_1",
    "kerber_landnetz_freileitung_2",
    "kerber_dorfnetz",
    "kerber_vorstadtnetz_kabel_1",
    "kerber_vorstadtnetz_kabel_2",
    "ieee_european_lv",
)


class FeederConfig(StrictModel):
    """The LV feeder: a named pandapower LV network, a SimBench LV grid, or a seeded synthetic one."""

    source: Literal["named", "synthetic", "simbench"] = "synthetic"
    name: Literal[NAMED_FEEDERS] | None = Field(None, description="pandapower LV network (source=named)")
    simbench_code: str | None = Field(None, description="SimBench code, e.g. 1-LV-rural1--0-sw (source=simbench)")
    n_buses: int = Field(30, ge=3, le=2000, description="buses of a synthetic feeder (source=synthetic)")
    v_min_pu: float = Field(0.95, ge=0.8, le=1.0, description="lower voltage limit (p.u.)")
    v_max_pu: float = Field(1.05, ge=1.0, le=1.2, description="upper voltage limit (p.u.)")
    line_loading_max_pct: float = Field(100.0, gt=0, le=200, description="line loading limit (%)")
    trafo_loading_max_pct: float = Field(100.0, gt=0, le=200, description="transformer loading limit (%)")

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "named" and self.name is None:
            raise ValueError(f"feeder.name is required when source='named'; choose one of {list(NAMED_FEEDERS)}")
        if self.source == "simbench" and not self.simbench_code:
            raise ValueError("feeder.simbench_code is required when source='simbench'")
        if self.v_min_pu >= self.v_max_pu:
            raise ValueError(f"v_min_pu ({self.v_min_pu}) must be below v_max_pu ({self.v_max_pu})")
        return self


# ----------------------------------------------------------------------------------------- prosumers
class Penetration(StrictModel):
    """Share of prosumers in the group that own each device (0..1)."""

    pv: float = Field(0.5, ge=0, le=1)
    battery: float = Field(0.2, ge=0, le=1)
    ev: float = Field(0.3, ge=0, le=1)
    heat_pump: float = Field(0.2, ge=0, le=1)
    appliance: float = Field(0.6, ge=0, le=1)


class LoadParams(StrictModel):
    """Inflexible household load."""

    annual_kwh: PositiveRange = Field(default_factory=lambda: PositiveRange(low=2500, high=5000))
    power_factor: float = Field(0.95, gt=0.5, le=1.0, description="cos(phi), lagging")
    noise_pct: float = Field(25.0, ge=0, le=100, description="std of multiplicative noise (%)")


class PVParams(StrictModel):
    kwp: PositiveRange = Field(default_factory=lambda: PositiveRange(low=3, high=8))


class BatteryParams(StrictModel):
    capacity_kwh: PositiveRange = Field(default_factory=lambda: PositiveRange(low=5, high=13.5))
    power_kw: PositiveRange = Field(default_factory=lambda: PositiveRange(low=2.5, high=5))
    charge_efficiency: float = Field(0.95, gt=0, le=1)
    discharge_efficiency: float = Field(0.95, gt=0, le=1)
    self_discharge_pct_per_day: float = Field(1.0, ge=0, le=20)
    soc_min_pct: float = Field(5.0, ge=0, lt=100)
    soc_max_pct: float = Field(95.0, gt=0, le=100)
    initial_soc_pct: float = Field(50.0, ge=0, le=100)

    @model_validator(mode="after")
    def _soc_order(self):
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError(f"soc_min_pct ({self.soc_min_pct}) must be below soc_max_pct ({self.soc_max_pct})")
        if not self.soc_min_pct <= self.initial_soc_pct <= self.soc_max_pct:
            raise ValueError(
                f"initial_soc_pct ({self.initial_soc_pct}) must lie in [{self.soc_min_pct}, {self.soc_max_pct}]"
            )
        return self


class EVParams(StrictModel):
    """Electric vehicle and its daily charging session at home.

    Hours count from midnight of the arrival day, so an overnight session that arrives at 18:00 and
    leaves at 07:00 next morning has `arrival_hour_mean=18`, `departure_hour_mean=31`.
    """

    battery_kwh: PositiveRange = Field(default_factory=lambda: PositiveRange(low=40, high=75))
    max_charge_kw: PositiveRange = Field(default_factory=lambda: PositiveRange(low=3.7, high=11))
    charge_efficiency: float = Field(0.92, gt=0, le=1)
    v2g: bool = Field(False, description="vehicle may discharge into the house / grid")
    session_probability: float = Field(0.8, ge=0, le=1, description="chance of a home session per day")
    arrival_hour_mean: float = Field(18.0, ge=0, lt=24)
    arrival_hour_std: float = Field(1.5, ge=0, le=6)
    departure_hour_mean: float = Field(31.0, gt=0, le=48)
    departure_hour_std: float = Field(1.0, ge=0, le=6)
    energy_needed_kwh: PositiveRange = Field(default_factory=lambda: PositiveRange(low=4, high=20))

    @model_validator(mode="after")
    def _departure_after_arrival(self):
        if self.departure_hour_mean <= self.arrival_hour_mean:
            raise ValueError(
                f"departure_hour_mean ({self.departure_hour_mean}) must be after arrival_hour_mean "
                f"({self.arrival_hour_mean}); hours count from midnight of the arrival day (use >24 for next day)"
            )
        return self


class HeatPumpParams(StrictModel):
    """Air-source heat pump heating a 1R1C building."""

    rated_power_kw: PositiveRange = Field(default_factory=lambda: PositiveRange(low=2, high=4))
    carnot_fraction: float = Field(0.45, gt=0, le=1, description="COP = fraction x Carnot COP")
    supply_temp_degc: float = Field(35.0, gt=20, le=70, description="heating water temperature")
    resistance_k_per_kw: PositiveRange = Field(default_factory=lambda: PositiveRange(low=5, high=10))
    capacitance_kwh_per_k: PositiveRange = Field(default_factory=lambda: PositiveRange(low=5, high=15))
    set_point_degc: float = Field(21.0, ge=10, le=30)
    comfort_band_k: float = Field(1.0, gt=0, le=5, description="half-width of the comfort band")


class ApplianceParams(StrictModel):
    """Shiftable appliance (washing machine, dishwasher): one run per day inside a window."""

    power_kw: PositiveRange = Field(default_factory=lambda: PositiveRange(low=1.0, high=2.2))
    duration_h: PositiveRange = Field(default_factory=lambda: PositiveRange(low=1.0, high=2.0))
    earliest_start_hour: RangeModel = Field(default_factory=lambda: RangeModel(low=7, high=12))

    @model_validator(mode="after")
    def _fits_in_a_day(self):
        if self.duration_h.high > 12:
            raise ValueError(f"duration_h.high ({self.duration_h.high}) must be at most 12 h: a run fits in its day")
        if not 0 <= self.earliest_start_hour.low <= self.earliest_start_hour.high < 24:
            raise ValueError(f"earliest_start_hour {self.earliest_start_hour.low}..{self.earliest_start_hour.high} "
                             "must lie in [0, 24)")
        return self
    window_h: PositiveRange = Field(default_factory=lambda: PositiveRange(low=6, high=12))
    request_probability: float = Field(0.7, ge=0, le=1, description="chance of a request per day")


class ProsumerGroup(StrictModel):
    """A group of similar prosumers; a scenario lists one or more groups."""

    name: str = Field("households", min_length=1)
    count: int = Field(ge=1, le=10_000)
    penetration: Penetration = Field(default_factory=Penetration)
    load: LoadParams = Field(default_factory=LoadParams)
    pv: PVParams = Field(default_factory=PVParams)
    battery: BatteryParams = Field(default_factory=BatteryParams)
    ev: EVParams = Field(default_factory=EVParams)
    heat_pump: HeatPumpParams = Field(default_factory=HeatPumpParams)
    appliance: ApplianceParams = Field(default_factory=ApplianceParams)


# ---------------------------------------------------------------------------- aggregator <-> prosumers
DEVICE_NAMES = ("pv", "battery", "ev", "heat_pump", "appliance")


class Manageability(StrictModel):
    """What the aggregator may manage (seed 000 §3.1): devices, hours and overrides per day."""

    devices: list[Literal[DEVICE_NAMES]] = Field(default_factory=lambda: list(DEVICE_NAMES))
    hours: tuple[int, int] = Field((0, 24), description="managed hours [from, to) of the day")
    max_overrides_per_day: int = Field(96, ge=0, le=1000)

    @model_validator(mode="after")
    def _hours(self):
        start, end = self.hours
        if not (0 <= start < end <= 24):
            raise ValueError(f"hours {self.hours} must satisfy 0 <= from < to <= 24")
        return self


class GatewayLink(StrictModel):
    """Centralised direct control: the aggregator sends setpoints for each managed device."""

    kind: Literal["gateway"] = "gateway"
    billing: Literal["fixed_curve", "pass_through"] = Field(
        "fixed_curve", description="(a) fixed hourly price curve, or (b) market pass-through + management fee"
    )
    retail_tariff: str = Field("flat", description="tariff preset for the fixed curve (billing=fixed_curve)")
    fixed_fee_eur_per_day: float = Field(0.0, ge=0, le=10)
    management_fee_eur_per_kw_month: float = Field(1.0, ge=0, le=20, description="per manageable kW (pass_through)")
    violation_fee_eur: float = Field(2.0, ge=0, le=100, description="paid to the prosumer per hard-constraint violation")
    manageability: Manageability = Field(default_factory=Manageability)


class MaxPowerLink(StrictModel):
    """Import/export caps per prosumer per PTU; the local EMS minimises the bill under the caps."""

    kind: Literal["max_power"] = "max_power"
    retail_tariff: str = Field("two_slot_tou", description="ToU contract prices (tariff preset)")
    n_cap_groups: int = Field(1, ge=1, le=1000, description="prosumer groups sharing one cap curve")
    cap_min_kw: float = Field(1.0, ge=0, le=100, description="lowest cap the aggregator may send")
    cap_max_kw: float = Field(20.0, gt=0, le=500, description="highest finite cap; actions above 0.99 mean no cap")
    intraday_change_margin_kw: float = Field(0.5, ge=0, le=50)
    intraday_change_fee_eur_per_kwh: float = Field(0.10, ge=0, le=5)
    manageability: Manageability = Field(default_factory=Manageability)

    @model_validator(mode="after")
    def _cap_range(self):
        if self.cap_min_kw >= self.cap_max_kw:
            raise ValueError(f"cap_min_kw ({self.cap_min_kw}) must be below cap_max_kw ({self.cap_max_kw})")
        return self


class PriceDrivenLink(StrictModel):
    """Price curves per prosumer group; prosumers pay the signalled price plus a management fee."""

    kind: Literal["price_driven"] = "price_driven"
    n_price_groups: int = Field(1, ge=1, le=1000, description="prosumer groups with their own curve")
    price_band_eur_per_kwh: float = Field(0.15, ge=0, le=2, description="signal bound around the reference price")
    reference_markup_eur_per_kwh: float = Field(0.12, ge=0, le=1, description="retail reference = day-ahead + markup")
    management_fee_eur_per_kw_month: float = Field(1.0, ge=0, le=20)
    manageability: Manageability = Field(default_factory=Manageability)


class IterativeLink(PriceDrivenLink):
    """Price curves revised over planning rounds after seeing the prosumers' planned schedules."""

    kind: Literal["iterative"] = "iterative"
    max_rounds: int = Field(3, ge=1, le=20)
    tolerance_band_pct: float = Field(10.0, ge=0, le=100, description="aggregate deviation band (% of plan)")
    deviation_penalty_eur_per_kwh: float = Field(0.10, ge=0, le=5)


ProsumerLink = Annotated[
    Union[GatewayLink, MaxPowerLink, PriceDrivenLink, IterativeLink], Field(discriminator="kind")
]


# --------------------------------------------------------------------------------- aggregator <-> DSO
class TrafficLight(StrictModel):
    """Loading thresholds of the traffic-light regime (seed 003 §2.6): green < yellow < orange < red."""

    yellow_pct: float = Field(80.0, gt=0, le=300)
    orange_pct: float = Field(100.0, gt=0, le=300)
    red_pct: float = Field(150.0, gt=0, le=300)

    @model_validator(mode="after")
    def _ordered(self):
        if not self.yellow_pct < self.orange_pct < self.red_pct:
            raise ValueError(f"need yellow_pct < orange_pct < red_pct, got {self.yellow_pct}, {self.orange_pct}, {self.red_pct}")
        return self


class DSOBase(StrictModel):
    """What every DSO link shares: zones, the traffic light and the regulator's quality incentive."""

    n_zones: int = Field(2, ge=1, le=1000, description="tariff / cap zones, by electrical distance")
    traffic_light: TrafficLight = Field(default_factory=TrafficLight)
    voltage_violation_penalty_eur: float = Field(0.5, ge=0, le=100, description="per bus and PTU outside the band")
    overload_penalty_eur: float = Field(5.0, ge=0, le=1000, description="per PTU with a line or the transformer overloaded")


class IsolatedLink(DSOBase):
    """No signals; the DSO caps prosumers' max power in real time when a limit is left."""

    kind: Literal["isolated"] = "isolated"
    min_cap_kw: float = Field(1.0, ge=0, le=50, description="lowest cap the DSO may impose on a prosumer")
    no_cap_kw: float = Field(30.0, gt=0, le=500, description="cap that means 'not capped' (connection size)")
    curtailment_compensation_eur_per_kwh: float = Field(0.20, ge=0, le=5, description="paid by the DSO per kWh capped away")

    @model_validator(mode="after")
    def _cap_range(self):
        if self.min_cap_kw >= self.no_cap_kw:
            raise ValueError(f"min_cap_kw ({self.min_cap_kw}) must be below no_cap_kw ({self.no_cap_kw})")
        return self


class TariffLink(DSOBase):
    """Nodal access tariffs per PTU: fixed + variable term from expected loading and losses."""

    kind: Literal["tariff"] = "tariff"
    fixed_eur_per_kwh: float = Field(0.03, ge=0, le=1)
    variable_max_eur_per_kwh: float = Field(0.10, ge=0, le=2, description="variable term at full expected loading")
    loading_threshold_pct: float = Field(50.0, ge=0, le=150, description="expected transformer loading (% of its limit) where the variable term starts")


class DSOIterativeLink(TariffLink):
    kind: Literal["iterative"] = "iterative"
    max_rounds: int = Field(3, ge=1, le=20)
    tolerance_pct: float = Field(5.0, ge=0, le=100)
    congestion_penalty_eur_per_kwh: float = Field(0.20, ge=0, le=5)


class MarketLink(StrictModel):
    kind: Literal["market"] = "market"
    underuse_margin_pct: float = Field(10.0, ge=0, le=100)
    underuse_penalty_eur_per_kwh: float = Field(0.05, ge=0, le=5)
    congestion_penalty_eur_per_kwh: float = Field(0.20, ge=0, le=5)


class FlexMarketLink(StrictModel):
    kind: Literal["flex_market"] = "flex_market"
    non_delivery_penalty_eur_per_kwh: float = Field(0.30, ge=0, le=5)


DSOLink = Annotated[
    Union[IsolatedLink, TariffLink, DSOIterativeLink, MarketLink, FlexMarketLink], Field(discriminator="kind")
]


# --------------------------------------------------------------------------------- aggregator <-> TSO
class NoReserve(StrictModel):
    kind: Literal["none"] = "none"


class ReserveLink(StrictModel):
    """Reserve bidding into the ancillary-service market (seed 000 §4.3, seed 001 §1.5)."""

    kind: Literal["direct"] = "direct"
    product: Literal["FCR", "aFRR", "mFRR"] = "aFRR"
    direction: Literal["up", "down", "both"] = "both"
    block_hours: Literal[1, 4, 24] = 4
    non_delivery_penalty_eur_per_kwh: float = Field(0.50, ge=0, le=10)


TSOLink = Annotated[Union[NoReserve, ReserveLink], Field(discriminator="kind")]


class Links(StrictModel):
    """The business model: one link of each kind (seed 000 §4)."""

    prosumer: ProsumerLink = Field(default_factory=PriceDrivenLink)
    dso: DSOLink = Field(default_factory=IsolatedLink)
    tso: TSOLink = Field(default_factory=NoReserve)


# ------------------------------------------------------------------------------------------ markets
class DayAheadMarket(StrictModel):
    """Synthetic day-ahead prices (see `flexenv.scenario.data.day_ahead_price`)."""

    mean_eur_per_mwh: float = Field(90.0, ge=-500, le=3000)
    daily_amplitude_pct: float = Field(35.0, ge=0, le=200, description="size of the daily shape (% of mean)")
    volatility_pct: float = Field(10.0, ge=0, le=200, description="PTU noise std (% of mean)")
    negative_midday_probability: float = Field(0.1, ge=0, le=1, description="chance per day of a negative-price midday")


class ImbalanceMarket(StrictModel):
    spread_eur_per_mwh: float = Field(40.0, ge=0, le=3000, description="mean distance to the day-ahead price")
    short_skew: float = Field(1.5, ge=1, le=10, description="short (deficit) price spread / long spread")


class ReserveMarket(StrictModel):
    capacity_eur_per_mw_h: float = Field(15.0, ge=0, le=1000)
    activation_eur_per_mwh: float = Field(120.0, ge=0, le=5000)
    activation_probability: float = Field(0.05, ge=0, le=1, description="chance per PTU that an activation starts")


class Markets(StrictModel):
    day_ahead: DayAheadMarket = Field(default_factory=DayAheadMarket)
    imbalance: ImbalanceMarket = Field(default_factory=ImbalanceMarket)
    reserve: ReserveMarket = Field(default_factory=ReserveMarket)
    retail_tariff: str = Field("flat", description="tariff preset prosumers pay without an aggregator")


class Preferences(StrictModel):
    """What prosumers' comfort is worth to them: the soft penalties of their energy box and their reward."""

    comfort_penalty_eur_per_kh: float = Field(2.0, ge=0, le=100, description="per K·h outside the comfort band")
    ev_unmet_penalty_eur_per_kwh: float = Field(3.0, ge=0, le=100, description="per kWh an EV misses at departure")


class EnergyBox(StrictModel):
    """How the prosumers' energy boxes plan (the EMS of `flexenv.policies.ems`)."""

    ems: Literal["lp", "descent"] = Field(
        "lp", description="lp: exact LP (interior point) for the devices, appliance start by branch and bound; "
        "descent: coordinate descent with exchange steps, faster on easy days, with a worse tail "
        "(benchmarks/ems.md)")


class Forecasts(StrictModel):
    """Forecast errors of what actors plan with (seed 003 HLR#10: forecasts, never the future)."""

    load_error_pct: float = Field(15.0, ge=0, le=100, description="std of the day-ahead load forecast error")
    pv_error_pct: float = Field(20.0, ge=0, le=100, description="std of the day-ahead PV forecast error")


class Site(StrictModel):
    latitude_deg: float = Field(50.8, ge=-66, le=66)
    annual_mean_temp_degc: float = Field(10.5, ge=-20, le=35)
    annual_temp_amplitude_k: float = Field(8.0, ge=0, le=30)
    daily_temp_amplitude_k: float = Field(4.0, ge=0, le=20)


# ---------------------------------------------------------------------------------------- scenario
class Scenario(StrictModel):
    """A whole experiment. Load one with `flexenv.scenario.load(name_or_path)`."""

    name: str = Field("custom", min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    time: TimeConfig = Field(default_factory=TimeConfig)
    site: Site = Field(default_factory=Site)
    feeder: FeederConfig = Field(default_factory=FeederConfig)
    prosumers: list[ProsumerGroup] = Field(min_length=1)
    links: Links = Field(default_factory=Links)
    markets: Markets = Field(default_factory=Markets)
    preferences: Preferences = Field(default_factory=Preferences)
    energy_box: EnergyBox = Field(default_factory=EnergyBox)
    forecasts: Forecasts = Field(default_factory=Forecasts)

    @property
    def n_prosumers(self) -> int:
        return sum(group.count for group in self.prosumers)


class TariffSlot(StrictModel):
    """A price applying on the given days between two hours; `to_hour` may wrap past midnight."""

    from_hour: float = Field(ge=0, lt=24)
    to_hour: float = Field(gt=0, le=24)
    price_eur_per_kwh: float = Field(ge=-1, le=5)
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: list(range(7)), min_length=1, description="days it applies, Monday=0 .. Sunday=6"
    )
    label: str = ""


class Tariff(StrictModel):
    """A retail tariff scheme (seed 003 Table 13). Later slots override earlier ones where they overlap.

    `exclusive_slots` apply only to the devices listed in `exclusive_devices` (Belgium's exclusive
    night meter for appliances that run only at night: EV, heat pump); outside those slots those
    devices pay the normal slots (simplification: the exclusive circuit is not switched off by day).
    """

    name: str = Field(min_length=1)
    country: str = ""
    description: str = ""
    slots: list[TariffSlot] = Field(min_length=1)
    export_price_eur_per_kwh: float = Field(0.05, ge=-1, le=5, description="feed-in remuneration")
    exclusive_slots: list[TariffSlot] = Field(default_factory=list)
    exclusive_devices: list[Literal[DEVICE_NAMES]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exclusive(self):
        if bool(self.exclusive_slots) != bool(self.exclusive_devices):
            raise ValueError("exclusive_slots and exclusive_devices must be given together")
        for weekday in range(7):
            for quarter in range(96):
                if not any(slot_covers(s, quarter / 4, weekday) for s in self.slots):
                    raise ValueError(
                        f"slots leave weekday {weekday} (Monday=0) hour {quarter / 4:g} without a price; "
                        "every hour of every day needs one"
                    )
        return self


def slot_covers(slot: TariffSlot, hour: float, weekday: int) -> bool:
    """True if `slot` prices `hour` (0..24) on `weekday` (Monday=0)."""
    if weekday not in slot.weekdays:
        return False
    if slot.from_hour < slot.to_hour:
        return slot.from_hour <= hour < slot.to_hour
    return hour >= slot.from_hour or hour < slot.to_hour  # wraps past midnight
