"""Business-model links: what each signal does to prices, limits and penalties (DESIGN.md §4).

Each link class declares the action fields it gives its agent (aggregator or DSO) and turns those
normalised actions (every entry in [-1, 1]) into physical signals for one day. The engine calls
them; they know nothing of PettingZoo.

Aggregator ↔ prosumers (seed 000 §4.1): `GatewayLink`, `MaxPowerLink`, `PriceDrivenLink`,
`IterativeLink`. Aggregator ↔ DSO (seed 000 §4.2): `IsolatedLink`, `TariffLink`.
"""

from __future__ import annotations

import abc
import dataclasses

import numba
import numpy as np

from flexenv.layout import Layout
from flexenv.physics.household import APPLIANCE, BATTERY, DEVICE_ORDER, EV, HEAT_PUMP, PV
from flexenv.scenario import schema

NO_CAP_KW = np.inf
NO_CAP_ACTION = 0.99  # a cap action at or above this means "no cap" (a continuous policy can reach it)


def unit(a: np.ndarray) -> np.ndarray:
    """Map a normalised action in [-1, 1] to [0, 1]."""
    return (np.clip(a, -1.0, 1.0) + 1.0) * 0.5


@dataclasses.dataclass
class DayContext:
    """What a link needs to know about the day being planned; arrays batch-first.

    day_ahead: (B, T) €/kWh; contract_import, contract_export: (T,) the contract tariff of the day
    (€/kWh); dso_tariff: (B, P, T) €/kWh the aggregator pays the DSO per kWh imported at each
    prosumer's node (zeros without a tariff link).
    """

    day_ahead: np.ndarray
    contract_import: np.ndarray
    contract_export: np.ndarray
    dso_tariff: np.ndarray


@dataclasses.dataclass
class Signals:
    """What the energy boxes plan against and what they are billed, each (B, P, T)."""

    import_price: np.ndarray  # €/kWh the EMS minimises against
    export_price: np.ndarray
    import_cap_kw: np.ndarray  # inf = no cap
    export_cap_kw: np.ndarray
    bill_import: np.ndarray  # €/kWh the prosumer pays the aggregator
    bill_export: np.ndarray  # €/kWh the aggregator pays the prosumer


# --------------------------------------------------------------------------------- device actions
def decode_setpoints(action: np.ndarray, scale: dict, pv_avail_kw: np.ndarray) -> np.ndarray:
    """Normalised device actions (..., P, 5) → requests (..., P, 5) in kW (appliance: > 0 = start).

    battery: a × max charge (a ≥ 0) or a × max discharge (a < 0) kW; EV: a × max rate (negative
    only with V2G); heat pump: (a + 1)/2 × rated power; PV: (a + 1)/2 × available power is used;
    appliance: start if a > 0.
    """
    a = np.asarray(action, dtype=np.float64)
    P = a.shape[-2]
    flat = np.ascontiguousarray(a).reshape(-1, P, len(DEVICE_ORDER))
    pv = pv_avail_kw
    if type(pv) is not np.ndarray or pv.shape != a.shape[:-1] or pv.dtype != np.float64:  # else as given (the engine's)
        pv = np.ascontiguousarray(np.broadcast_to(pv_avail_kw, a.shape[:-1]), dtype=np.float64)
    pv = pv.reshape(-1, P)
    params = [_per_prosumer(scale[k], P) for k in ("battery_charge_kw", "battery_discharge_kw", "ev_kw", "heat_pump_kw")]
    return _decode_kernel(flat, pv, *params).reshape(a.shape)


def _per_prosumer(value, P: int) -> np.ndarray:
    """(P,) contiguous float64 (as given if it already is: the engine's scales are)."""
    if type(value) is np.ndarray and value.shape == (P,) and value.dtype == np.float64 and value.flags.c_contiguous:
        return value
    return np.ascontiguousarray(np.broadcast_to(value, (P,)), dtype=np.float64)


@numba.njit(cache=True)
def _decode_kernel(a, pv, charge_kw, discharge_kw, ev_kw, hp_kw):
    """`decode_setpoints` on (N, P, 5): one pass, the same arithmetic as the numpy expressions
    (clip, then ×; (a + 1) × 0.5 × scale), so the same floats."""
    N, P, _ = a.shape
    out = np.empty(a.shape)
    for n in range(N):
        for p in range(P):
            for j in range(5):
                x = a[n, p, j]  # np.clip: NaN stays NaN
                if x < -1.0:
                    x = -1.0
                elif x > 1.0:
                    x = 1.0
                if j == BATTERY:
                    out[n, p, j] = x * charge_kw[p] if x >= 0 else x * discharge_kw[p]
                elif j == EV:
                    out[n, p, j] = x * ev_kw[p]
                elif j == HEAT_PUMP:
                    out[n, p, j] = (x + 1.0) * 0.5 * hp_kw[p]
                elif j == PV:
                    out[n, p, j] = (x + 1.0) * 0.5 * pv[n, p]
                else:
                    out[n, p, j] = x
    return out


def encode_setpoints(requests: np.ndarray, scale: dict, pv_avail_kw: np.ndarray, start_now: np.ndarray) -> np.ndarray:
    """Inverse of `decode_setpoints`: kW requests (..., P, 5) → normalised actions in [-1, 1].

    The PV request is expressed as a share of `pv_avail_kw` (the PV the request was planned with)."""
    def ratio(x, s):
        return np.divide(x, s, out=np.zeros_like(x), where=s > 0)

    out = np.empty(requests.shape)
    bat = requests[..., BATTERY]
    out[..., BATTERY] = np.where(bat >= 0, ratio(bat, scale["battery_charge_kw"]), ratio(bat, scale["battery_discharge_kw"]))
    out[..., EV] = ratio(requests[..., EV], scale["ev_kw"])
    out[..., HEAT_PUMP] = 2.0 * ratio(requests[..., HEAT_PUMP], scale["heat_pump_kw"]) - 1.0
    used = np.where(pv_avail_kw > 0, ratio(requests[..., PV], pv_avail_kw), 1.0)
    used = np.where(used > 1.0 - 1e-9, 1.0, used)  # "all of it" survives rounding
    out[..., PV] = 2.0 * used - 1.0
    out[..., APPLIANCE] = np.where(start_now, 1.0, -1.0)
    return np.clip(out, -1.0, 1.0)


SETPOINT_DOC = (
    "device setpoints [battery, EV, heat pump, PV, appliance] in [-1, 1]: battery ±max power (+ charge), "
    "EV ±max rate (− only with V2G), heat pump (a+1)/2 × rated power, PV (a+1)/2 × available power used, "
    "appliance starts if a > 0"
)


# ------------------------------------------------------------------------ aggregator ↔ prosumers
class ProsumerLinkModel(abc.ABC):
    """Base: one planning round, prosumers are agents, no caps."""

    kind = ""
    prosumers_are_agents = True

    def __init__(self, config, n_prosumers: int, ptus_per_day: int, group_of_prosumer: np.ndarray):
        self.config = config
        self.n_prosumers = n_prosumers
        self.ptus_per_day = ptus_per_day
        self.group_of_prosumer = group_of_prosumer  # (P,) signal group of each prosumer
        self.n_groups = int(group_of_prosumer.max()) + 1

    @property
    def planning_rounds(self) -> int:
        return 1

    def add_action_fields(self, layout: Layout) -> None:
        pass

    @abc.abstractmethod
    def plan_signals(self, layout: Layout, action: np.ndarray, ctx: DayContext) -> Signals:
        """The day's signals for every prosumer from the aggregator's planning action."""

    def per_prosumer(self, per_group: np.ndarray) -> np.ndarray:
        """(B, G, T) → (B, P, T) by each prosumer's group."""
        return per_group[:, self.group_of_prosumer, :]

    def _uncapped(self, shape) -> tuple[np.ndarray, np.ndarray]:
        return np.full(shape, NO_CAP_KW), np.full(shape, NO_CAP_KW)


class GatewayLink(ProsumerLinkModel):
    """Direct control: the aggregator sends setpoints for every managed device, every PTU.

    Billing (a) `fixed_curve`: the contract tariff; (b) `pass_through`: the day-ahead price, plus a
    management fee per manageable kW. The energy boxes' reference plan (what the aggregator's own
    planning tool proposes, observed by the aggregator) minimises the aggregator's cost: day-ahead
    price plus DSO tariff on imports, day-ahead price on exports.
    """

    kind = "gateway"
    prosumers_are_agents = False

    def add_action_fields(self, layout: Layout) -> None:
        layout.add("setpoints", (self.n_prosumers, len(DEVICE_ORDER)), "operate: " + SETPOINT_DOC)

    def plan_signals(self, layout, action, ctx):
        B, P, T = ctx.dso_tariff.shape
        import_price = ctx.day_ahead[:, None, :] + ctx.dso_tariff
        export_price = np.broadcast_to(ctx.day_ahead[:, None, :], (B, P, T)).copy()
        if self.config.billing == "fixed_curve":
            bill_import = np.broadcast_to(ctx.contract_import, (B, P, T)).copy()
            bill_export = np.broadcast_to(ctx.contract_export, (B, P, T)).copy()
        else:
            bill_import, bill_export = export_price.copy(), export_price.copy()
        return Signals(import_price, export_price, *self._uncapped((B, P, T)), bill_import, bill_export)


class MaxPowerLink(ProsumerLinkModel):
    """Import / export caps per prosumer group and PTU, day-ahead; the import cap may be tightened
    intraday. The energy box minimises the bill at the contract's ToU prices under the caps."""

    kind = "max_power"

    def add_action_fields(self, layout):
        G, T = self.n_groups, self.ptus_per_day
        doc = (f"planning: cap per group and PTU, cap_min + (a+1)/2 × (cap_max − cap_min) kW "
               f"({self.config.cap_min_kw}..{self.config.cap_max_kw}); a ≥ {NO_CAP_ACTION}: no cap")
        layout.add("import_cap", (G, T), doc)
        layout.add("export_cap", (G, T), doc)
        layout.add("intraday_import_cap", (G,), f"operate: tightens this PTU's import cap to the decoded value (a ≥ {NO_CAP_ACTION}: no change)")

    def decode_cap(self, a: np.ndarray) -> np.ndarray:
        """Cap in kW for actions in [-1, 1]; a ≥ NO_CAP_ACTION means no cap (inf)."""
        c = self.config
        return np.where(a >= NO_CAP_ACTION, NO_CAP_KW, c.cap_min_kw + unit(a) * (c.cap_max_kw - c.cap_min_kw))

    def plan_signals(self, layout, action, ctx):
        B, P, T = ctx.dso_tariff.shape
        import_cap = self.per_prosumer(self.decode_cap(layout.view(action, "import_cap")))
        export_cap = self.per_prosumer(self.decode_cap(layout.view(action, "export_cap")))
        bill_import = np.broadcast_to(ctx.contract_import, (B, P, T)).copy()
        bill_export = np.broadcast_to(ctx.contract_export, (B, P, T)).copy()
        return Signals(bill_import, bill_export, import_cap, export_cap, bill_import.copy(), bill_export.copy())

    def intraday_import_cap(self, layout, action, day_ahead_cap: np.ndarray) -> np.ndarray:
        """(B, P) this PTU's import cap: the day-ahead cap, tightened by the intraday action."""
        new = self.decode_cap(layout.view(action, "intraday_import_cap"))[:, self.group_of_prosumer]
        return np.minimum(day_ahead_cap, new)


class PriceDrivenLink(ProsumerLinkModel):
    """Price curves per prosumer group for the day. The signal is bounded to the contract band
    around the reference (day-ahead + markup); the prosumer pays the signal on imports and is paid
    the signal minus the markup on exports (DESIGN.md leaves export open; documented choice)."""

    kind = "price_driven"

    def add_action_fields(self, layout):
        c = self.config
        layout.add("price", (self.n_groups, self.ptus_per_day),
                   f"planning: import price = day-ahead + {c.reference_markup_eur_per_kwh} + a × {c.price_band_eur_per_kwh} €/kWh")

    def plan_signals(self, layout, action, ctx):
        c = self.config
        B, P, T = ctx.dso_tariff.shape
        offset = np.clip(layout.view(action, "price"), -1.0, 1.0) * c.price_band_eur_per_kwh
        import_price = ctx.day_ahead[:, None, :] + c.reference_markup_eur_per_kwh + self.per_prosumer(offset)
        export_price = import_price - c.reference_markup_eur_per_kwh
        return Signals(import_price, export_price, *self._uncapped((B, P, T)), import_price.copy(), export_price.copy())


class IterativeLink(PriceDrivenLink):
    """As price-driven, revised over up to `max_rounds` planning rounds after seeing the declared
    plans. The last round's plans are the commitment; prosumers pay deviation penalties only in PTUs
    where the portfolio's aggregate deviation leaves the tolerance band."""

    kind = "iterative"

    @property
    def planning_rounds(self) -> int:
        return self.config.max_rounds


PROSUMER_LINKS = {cls.kind: cls for cls in (GatewayLink, MaxPowerLink, PriceDrivenLink, IterativeLink)}


# ------------------------------------------------------------------------------- aggregator ↔ DSO
class DSOLinkModel:
    kind = ""
    has_planning_step = False

    def __init__(self, config, n_zones: int, ptus_per_day: int):
        self.config = config
        self.n_zones = n_zones
        self.ptus_per_day = ptus_per_day

    def add_action_fields(self, layout: Layout) -> None:
        pass


class IsolatedLink(DSOLinkModel):
    """No signals to the aggregator. In real time the DSO caps prosumers' power (import and export)
    per zone through the smart meters, and compensates the capped energy."""

    kind = "isolated"

    def add_action_fields(self, layout):
        c = self.config
        layout.add("zone_cap", (self.n_zones,),
                   f"operate: cap on every prosumer of the zone, {c.min_cap_kw} + (a+1)/2 × ({c.no_cap_kw} − {c.min_cap_kw}) kW; "
                   f"a ≥ {NO_CAP_ACTION}: no cap")

    def decode_caps(self, layout, action) -> np.ndarray:
        """(B, Z) cap per zone in kW, inf where a ≥ NO_CAP_ACTION (no cap)."""
        c = self.config
        a = np.clip(layout.view(action, "zone_cap"), -1.0, 1.0)
        cap = c.min_cap_kw + unit(a) * (c.no_cap_kw - c.min_cap_kw)
        return np.where(a >= NO_CAP_ACTION, NO_CAP_KW, cap)


class TariffLink(DSOLinkModel):
    """Nodal access tariffs per zone and PTU, published before the aggregator plans: fixed term +
    variable term; the aggregator pays them on its prosumers' imported energy."""

    kind = "tariff"
    has_planning_step = True

    def add_action_fields(self, layout):
        c = self.config
        layout.add("variable_tariff", (self.n_zones, self.ptus_per_day),
                   f"DSO planning: variable term (a+1)/2 × {c.variable_max_eur_per_kwh} €/kWh per zone and PTU")

    def decode_tariff(self, layout, action) -> np.ndarray:
        """(B, Z, T) €/kWh: fixed + variable term."""
        c = self.config
        return c.fixed_eur_per_kwh + unit(layout.view(action, "variable_tariff")) * c.variable_max_eur_per_kwh


DSO_LINKS = {cls.kind: cls for cls in (IsolatedLink, TariffLink)}


def check_supported(links: schema.Links) -> None:
    """Fail early, naming the link, for links the schema knows but the engine does not run yet."""
    if links.dso.kind not in DSO_LINKS:
        raise ValueError(
            f"links.dso.kind = {links.dso.kind!r} is not run by the engine yet; supported: {sorted(DSO_LINKS)}"
        )
    if links.tso.kind != "none":
        raise ValueError(f"links.tso.kind = {links.tso.kind!r} is not run by the engine yet; supported: ['none']")
