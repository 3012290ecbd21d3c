"""Prosumer device kernels: pure numba steps on structure-of-arrays state.

Shapes: parameters are ``(P,)`` arrays (one entry per prosumer); states, actions and outputs are
``(B, P)`` arrays (batch of environments x prosumers). Power sign: positive = consumption at the
connection point. A prosumer without a device has a zero size (capacity, rated power, kWp or an
all-zero appliance profile); its kernel then outputs zero power.

Every device has one kernel ``_<device>_step_kernel`` (numba, no Python loop inside) and a thin Python
wrapper ``<device>_step`` that validates shapes and values and raises ``ValueError`` on bad input.
A requested power that would break a limit is cut to the nearest feasible value; the cut
``request - actual`` is returned so callers can count it.

Device models (one PTU of length ``dt_h`` hours):

- Inflexible load: power = load.
- PV: ``0 <= used <= available``; power = -used; curtailed = available - used.
- Battery (``energy_kwh`` in ``[0, capacity_kwh]``, the usable capacity):
  ``e' = keep * e + dt * (eta_c * p_c - p_d / eta_d)`` with ``keep = (1 - self_discharge_per_h) ** dt``,
  ``p = p_c - p_d`` (never both). Each efficiency is applied exactly once: round trip = eta_c * eta_d.
- EV (state ``need_kwh``: energy still to be stored before departure, in ``[0, capacity_kwh]``): present
  for ``arrival_ptu <= t < departure_ptu``; at ``t == arrival_ptu`` the state is loaded with
  ``energy_needed_kwh``. ``need' = need - dt * (eta * p_c - p_d / eta)``; discharge (V2G) only if
  ``v2g``. At the last present PTU (``t == departure_ptu - 1``) the remaining need is reported as
  ``unmet_kwh``. A session with ``departure_ptu > T`` simply stays present until the end of the day.
- Heat pump + 1R1C building: ``C dT/dt = (T_out - T) / R + cop * p``; the exact discretisation for a
  constant input over the PTU is ``T' = a T + (1 - a)(T_out + R cop p)``, ``a = exp(-dt / (R C))``.
  ``0 <= p <= p_max_kw``. Comfort violation ``dt * (max(0, t_min - T') + max(0, T' - t_max))`` K·h.
- Shiftable appliance: fixed profile ``profile_kw[p, :]`` (kW per PTU), runs once. State
  ``start_ptu`` (-1 = not started). It starts at PTU t if requested and ``t >= earliest_start_ptu``,
  and is forced to start at ``t == latest_start_ptu`` (or later if it has not started by then).

No-control behaviour (used by the no-control baseline): PV fully used, battery maximises
self-consumption (charge from surplus, discharge to cover deficit), EV charges at full rate from
arrival, heat pump is a thermostat aiming at ``t_set_degc``, appliance starts at the earliest time.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

KELVIN = 273.15


# ---------------------------------------------------------------------------------------------
# Parameter containers (all arrays shape (P,))
# ---------------------------------------------------------------------------------------------
class PVParams(NamedTuple):
    """PV: ``kwp`` (P,) peak power in kWp (0 = no PV). Available power = kwp * pv_kw_per_kwp[t]."""

    kwp: np.ndarray


class BatteryParams(NamedTuple):
    """Stationary battery, arrays (P,).

    capacity_kwh: usable energy (0 = no battery); p_charge_max_kw, p_discharge_max_kw: power limits
    (kW at the connection point); eta_charge, eta_discharge: one-way efficiencies in (0, 1];
    self_discharge_per_h: fraction of stored energy lost per hour, in [0, 1).
    """

    capacity_kwh: np.ndarray
    p_charge_max_kw: np.ndarray
    p_discharge_max_kw: np.ndarray
    eta_charge: np.ndarray
    eta_discharge: np.ndarray
    self_discharge_per_h: np.ndarray


class EVParams(NamedTuple):
    """Electric vehicle, arrays (P,).

    capacity_kwh: battery size (0 = no EV); p_max_kw: max charge (and V2G discharge) power;
    eta_charge: charger efficiency (also used for V2G discharge); v2g: bool, discharge allowed.
    """

    capacity_kwh: np.ndarray
    p_max_kw: np.ndarray
    eta_charge: np.ndarray
    v2g: np.ndarray


class EVSessions(NamedTuple):
    """One EV session per prosumer per day, arrays (P,).

    arrival_ptu, departure_ptu: int64, departure exclusive, may exceed T (overnight);
    ``departure_ptu <= arrival_ptu`` means no session. energy_needed_kwh: energy to store, kWh.
    """

    arrival_ptu: np.ndarray
    departure_ptu: np.ndarray
    energy_needed_kwh: np.ndarray


class HeatPumpParams(NamedTuple):
    """Heat pump and 1R1C building, arrays (P,).

    p_max_kw: rated electrical power (0 = no heat pump); r_k_per_kw: thermal resistance (K/kW);
    c_kwh_per_k: heat capacity (kWh/K); t_min_degc, t_max_degc: comfort band; t_set_degc: thermostat
    set point (no-control); carnot_eff: fraction of the Carnot COP; t_supply_degc: supply
    temperature; cop_max: COP upper clip.
    """

    p_max_kw: np.ndarray
    r_k_per_kw: np.ndarray
    c_kwh_per_k: np.ndarray
    t_min_degc: np.ndarray
    t_max_degc: np.ndarray
    t_set_degc: np.ndarray
    carnot_eff: np.ndarray
    t_supply_degc: np.ndarray
    cop_max: np.ndarray


class ApplianceParams(NamedTuple):
    """Shiftable appliance: profile_kw (P, L) kW per PTU after start (all zero = no appliance);
    earliest_start_ptu, latest_start_ptu (P,) int64, inclusive."""

    profile_kw: np.ndarray
    earliest_start_ptu: np.ndarray
    latest_start_ptu: np.ndarray


class DeviceState(NamedTuple):
    """Device states, arrays (B, P): battery_energy_kwh, ev_need_kwh, indoor_temp_degc,
    appliance_start_ptu (int64, -1 = not started)."""

    battery_energy_kwh: np.ndarray
    ev_need_kwh: np.ndarray
    indoor_temp_degc: np.ndarray
    appliance_start_ptu: np.ndarray


# ---------------------------------------------------------------------------------------------
# Validation helpers (Python side)
# ---------------------------------------------------------------------------------------------
def _as_float(x, name: str, shape: tuple | None = None, ndim: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim}-d array, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return np.ascontiguousarray(a)


def _as_int(x, name: str, shape: tuple | None = None) -> np.ndarray:
    a = np.asarray(x)
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name}: expected integers")
    return np.ascontiguousarray(a, dtype=np.int64)


def _nonneg(a: np.ndarray, name: str) -> None:
    if np.any(a < 0):
        raise ValueError(f"{name}: must be >= 0, got min {a.min()}")


def _in_range(a: np.ndarray, name: str, lo: float, hi: float, lo_open: bool = False) -> None:
    bad = (a <= lo) if lo_open else (a < lo)
    if np.any(bad) or np.any(a > hi):
        raise ValueError(f"{name}: must be in {'(' if lo_open else '['}{lo}, {hi}], got {a.min()}..{a.max()}")


def _dt(dt_h: float) -> float:
    dt = float(dt_h)
    if not np.isfinite(dt) or dt <= 0 or dt > 24:
        raise ValueError(f"dt_h: must be in (0, 24] hours, got {dt_h}")
    return dt


def validate_pv(pv: PVParams, n: int | None = None) -> PVParams:
    kwp = _as_float(pv.kwp, "pv.kwp", ndim=1)
    _nonneg(kwp, "pv.kwp")
    if n is not None and kwp.shape[0] != n:
        raise ValueError(f"pv.kwp: expected {n} prosumers, got {kwp.shape[0]}")
    return PVParams(kwp)


def validate_battery(b: BatteryParams, n: int | None = None) -> BatteryParams:
    cap = _as_float(b.capacity_kwh, "battery.capacity_kwh", ndim=1)
    n = cap.shape[0] if n is None else n
    arrs = [_as_float(getattr(b, f), f"battery.{f}", shape=(n,)) for f in BatteryParams._fields]
    out = BatteryParams(*arrs)
    for f in ("capacity_kwh", "p_charge_max_kw", "p_discharge_max_kw"):
        _nonneg(getattr(out, f), f"battery.{f}")
    _in_range(out.eta_charge, "battery.eta_charge", 0.0, 1.0, lo_open=True)
    _in_range(out.eta_discharge, "battery.eta_discharge", 0.0, 1.0, lo_open=True)
    _in_range(out.self_discharge_per_h, "battery.self_discharge_per_h", 0.0, 0.999)
    return out


def validate_ev(ev: EVParams, sessions: EVSessions, n: int | None = None) -> tuple[EVParams, EVSessions]:
    cap = _as_float(ev.capacity_kwh, "ev.capacity_kwh", ndim=1)
    n = cap.shape[0] if n is None else n
    p = _as_float(ev.p_max_kw, "ev.p_max_kw", shape=(n,))
    eta = _as_float(ev.eta_charge, "ev.eta_charge", shape=(n,))
    v2g = np.asarray(ev.v2g)
    if v2g.shape != (n,):
        raise ValueError(f"ev.v2g: expected shape {(n,)}, got {v2g.shape}")
    _nonneg(cap, "ev.capacity_kwh")
    _nonneg(p, "ev.p_max_kw")
    _in_range(eta, "ev.eta_charge", 0.0, 1.0, lo_open=True)
    arr = _as_int(sessions.arrival_ptu, "ev.arrival_ptu", shape=(n,))
    dep = _as_int(sessions.departure_ptu, "ev.departure_ptu", shape=(n,))
    need = _as_float(sessions.energy_needed_kwh, "ev.energy_needed_kwh", shape=(n,))
    _nonneg(need, "ev.energy_needed_kwh")
    has = (dep > arr) & (cap > 0)
    if np.any(need[has] > cap[has] + 1e-9):
        raise ValueError("ev.energy_needed_kwh: exceeds the EV capacity_kwh")
    return EVParams(cap, p, eta, v2g.astype(np.bool_)), EVSessions(arr, dep, need)


def validate_heat_pump(hp: HeatPumpParams, n: int | None = None) -> HeatPumpParams:
    pm = _as_float(hp.p_max_kw, "heat_pump.p_max_kw", ndim=1)
    n = pm.shape[0] if n is None else n
    out = HeatPumpParams(*[_as_float(getattr(hp, f), f"heat_pump.{f}", shape=(n,)) for f in HeatPumpParams._fields])
    _nonneg(out.p_max_kw, "heat_pump.p_max_kw")
    for f in ("r_k_per_kw", "c_kwh_per_k", "carnot_eff", "cop_max"):
        _in_range(getattr(out, f), f"heat_pump.{f}", 0.0, 1e9, lo_open=True)
    if np.any(out.t_max_degc < out.t_min_degc):
        raise ValueError("heat_pump: t_max_degc must be >= t_min_degc")
    return out


def validate_appliance(app: ApplianceParams, n: int | None = None) -> ApplianceParams:
    prof = _as_float(app.profile_kw, "appliance.profile_kw", ndim=2)
    n = prof.shape[0] if n is None else n
    if prof.shape[0] != n:
        raise ValueError(f"appliance.profile_kw: expected {n} rows, got {prof.shape[0]}")
    _nonneg(prof, "appliance.profile_kw")
    e = _as_int(app.earliest_start_ptu, "appliance.earliest_start_ptu", shape=(n,))
    la = _as_int(app.latest_start_ptu, "appliance.latest_start_ptu", shape=(n,))
    if np.any(la < e):
        raise ValueError("appliance: latest_start_ptu must be >= earliest_start_ptu")
    _nonneg(e.astype(float), "appliance.earliest_start_ptu")
    return ApplianceParams(prof, e, la)


def _state2(x, name: str, shape: tuple) -> np.ndarray:
    return _as_float(x, name, shape=shape)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
# Per-device updates for one prosumer (scalars). The batched kernels below loop over them, and the
# engine's fused household kernel (flexenv.physics.household) calls the same functions.
@nb.njit(cache=True)
def pv_update(available_kw, request_used_kw):
    """PV power used (kW): the request cut to [0, available]."""
    return min(max(request_used_kw, 0.0), available_kw)


@nb.njit(cache=True)
def _pv_step_kernel(available_kw, request_used_kw):
    B, P = available_kw.shape
    used = np.empty((B, P))
    for b in range(B):
        for p in range(P):
            used[b, p] = pv_update(available_kw[b, p], request_used_kw[b, p])
    return used, -used, available_kw - used, request_used_kw - used


def pv_step(available_kw, request_used_kw):
    """PV with curtailment. available_kw, request_used_kw: (B, P) kW.

    Returns (used_kw, power_kw = -used, curtailed_kw, cut_kw = request - used), all (B, P)."""
    a = _as_float(available_kw, "available_kw", ndim=2)
    _nonneg(a, "available_kw")
    r = _as_float(request_used_kw, "request_used_kw", shape=a.shape)
    return _pv_step_kernel(a, r)


@nb.njit(cache=True)
def _battery_limits(e, cap, pcmax, pdmax, eta_c, eta_d, keep, dt):
    """Feasible (charge, discharge) power bounds for one battery at energy e (kWh)."""
    e_kept = keep * e
    pc = min(pcmax, max(cap - e_kept, 0.0) / (eta_c * dt))
    pd = min(pdmax, max(e_kept, 0.0) * eta_d / dt)
    return pc, pd


@nb.njit(cache=True)
def battery_power_limits(e, cap, pcmax, pdmax, eta_c, eta_d, sd_per_h, dt):
    """Feasible (max charge, max discharge) power (kW) of one battery holding e kWh, over one PTU."""
    return _battery_limits(e, cap, pcmax, pdmax, eta_c, eta_d, (1.0 - sd_per_h) ** dt, dt)


@nb.njit(cache=True)
def battery_update(e, request_kw, cap, pcmax, pdmax, eta_c, eta_d, sd_per_h, dt):
    """One battery over one PTU: (new energy kWh, power kW) for a requested power (+ charge)."""
    if cap <= 0.0:
        return 0.0, 0.0
    keep = (1.0 - sd_per_h) ** dt
    pc_max, pd_max = _battery_limits(e, cap, pcmax, pdmax, eta_c, eta_d, keep, dt)
    if request_kw >= 0.0:
        power = min(request_kw, pc_max)
        e_new = keep * e + dt * eta_c * power
    else:
        power = -min(-request_kw, pd_max)
        e_new = keep * e + dt * power / eta_d
    # clip rounding noise only (the limits keep e_new inside [0, cap] exactly in reals)
    return min(max(e_new, 0.0), cap), power


@nb.njit(cache=True)
def _battery_step_kernel(energy_kwh, request_kw, cap, pcmax, pdmax, eta_c, eta_d, sd_per_h, dt):
    B, P = energy_kwh.shape
    new_e = np.empty((B, P))
    power = np.empty((B, P))
    for b in range(B):
        for p in range(P):
            new_e[b, p], power[b, p] = battery_update(energy_kwh[b, p], request_kw[b, p], cap[p], pcmax[p], pdmax[p],
                                                      eta_c[p], eta_d[p], sd_per_h[p], dt)
    return new_e, power, request_kw - power


def battery_step(energy_kwh, request_kw, params: BatteryParams, dt_h: float):
    """One PTU of all batteries.

    energy_kwh: (B, P) stored energy, must be in [0, capacity_kwh]; request_kw: (B, P) requested power
    (+ charge, - discharge). Returns (new_energy_kwh, power_kw, cut_kw), all (B, P); cut = request - power.
    """
    prm = validate_battery(params)
    P = prm.capacity_kwh.shape[0]
    e = _as_float(energy_kwh, "battery energy_kwh", ndim=2)
    if e.shape[1] != P:
        raise ValueError(f"battery energy_kwh: expected (B, {P}), got {e.shape}")
    if np.any(e < -1e-9) or np.any(e > prm.capacity_kwh + 1e-9):
        raise ValueError("battery energy_kwh: must be within [0, capacity_kwh]")
    r = _as_float(request_kw, "battery request_kw", shape=e.shape)
    return _battery_step_kernel(e, r, *prm, _dt(dt_h))


@nb.njit(cache=True)
def ev_update(t, need_kwh, request_kw, cap, pmax, eta, v2g, arrival, departure, energy_needed, dt):
    """One EV over PTU t: (new need kWh, power kW, unmet kWh at departure)."""
    present = cap > 0.0 and arrival <= t < departure
    if not present:
        return need_kwh, 0.0, 0.0
    n = energy_needed if t == arrival else need_kwh
    power = 0.0
    if request_kw >= 0.0:
        power = min(request_kw, pmax, max(n, 0.0) / (eta * dt))
        n_new = n - dt * eta * power
    elif v2g:
        power = -min(-request_kw, pmax, max(cap - n, 0.0) * eta / dt)
        n_new = n - dt * power / eta
    else:
        n_new = n
    n_new = min(max(n_new, 0.0), cap)
    unmet = n_new if t == departure - 1 else 0.0
    return n_new, power, unmet


@nb.njit(cache=True)
def _ev_step_kernel(t, need_kwh, request_kw, cap, pmax, eta, v2g, arrival, departure, energy_needed, dt):
    B, P = need_kwh.shape
    new_need = np.empty((B, P))
    power = np.zeros((B, P))
    unmet = np.zeros((B, P))
    for b in range(B):
        for p in range(P):
            new_need[b, p], power[b, p], unmet[b, p] = ev_update(
                t, need_kwh[b, p], request_kw[b, p], cap[p], pmax[p], eta[p], v2g[p], arrival[p], departure[p],
                energy_needed[p], dt)
    return new_need, power, request_kw - power, unmet


def ev_step(t: int, need_kwh, request_kw, params: EVParams, sessions: EVSessions, dt_h: float):
    """One PTU (index t of the day) of all EVs.

    need_kwh: (B, P) energy still needed (ignored and reloaded at t == arrival_ptu); request_kw: (B, P).
    Returns (new_need_kwh, power_kw, cut_kw, unmet_kwh), all (B, P); unmet is nonzero only at the
    last PTU before departure. Absent EVs draw 0 (their whole request is reported as cut).
    """
    prm, ses = validate_ev(params, sessions)
    P = prm.capacity_kwh.shape[0]
    n = _as_float(need_kwh, "ev need_kwh", ndim=2)
    if n.shape[1] != P:
        raise ValueError(f"ev need_kwh: expected (B, {P}), got {n.shape}")
    _nonneg(n, "ev need_kwh")
    r = _as_float(request_kw, "ev request_kw", shape=n.shape)
    return _ev_step_kernel(int(t), n, r, *prm, *ses, _dt(dt_h))


def heat_pump_cop(t_out_degc, params: HeatPumpParams) -> np.ndarray:
    """COP from outdoor temperature, Carnot fraction: ``cop = carnot_eff * T_sup / (T_sup - T_out)``
    (kelvin), temperature lift floored at 5 K, clipped to ``[1, cop_max]``.

    t_out_degc: (T,) or (B,); returns (P, T) (or (P, B))."""
    tout = _as_float(t_out_degc, "t_out_degc", ndim=1)
    hp = validate_heat_pump(params)
    tsup = hp.t_supply_degc[:, None] + KELVIN
    lift = np.maximum(hp.t_supply_degc[:, None] - tout[None, :], 5.0)
    return np.clip(hp.carnot_eff[:, None] * tsup / lift, 1.0, hp.cop_max[:, None])


def heat_pump_cop_fitted(t_out_degc, a, b, c) -> np.ndarray:
    """COP from a fitted quadratic curve ``a + b T_out + c T_out**2`` (e.g. from a datasheet), floored
    at 1. a, b, c: (P,); t_out_degc: (T,); returns (P, T)."""
    tout = _as_float(t_out_degc, "t_out_degc", ndim=1)
    a = _as_float(a, "a", ndim=1)
    b = _as_float(b, "b", shape=a.shape)
    c = _as_float(c, "c", shape=a.shape)
    return np.maximum(a[:, None] + b[:, None] * tout[None, :] + c[:, None] * tout[None, :] ** 2, 1.0)


@nb.njit(cache=True)
def building_coeff(r, c, dt):
    """Retention ``a = exp(-dt / (R C))`` of the 1R1C building over one PTU."""
    return np.exp(-dt / (r * c))


@nb.njit(cache=True)
def heat_pump_update(temp, request_kw, cop, t_out, pmax, r, c, tmin, tmax, dt):
    """One heat pump and building over one PTU: (new indoor °C, power kW, comfort violation K·h)."""
    power = min(max(request_kw, 0.0), pmax)
    a = building_coeff(r, c, dt)
    t_new = a * temp + (1.0 - a) * (t_out + r * cop * power)
    viol = dt * (max(tmin - t_new, 0.0) + max(t_new - tmax, 0.0)) if pmax > 0.0 else 0.0
    return t_new, power, viol


@nb.njit(cache=True)
def _heat_pump_step_kernel(temp, request_kw, cop, t_out, pmax, r, c, tmin, tmax, dt):
    B, P = temp.shape
    new_t = np.empty((B, P))
    power = np.empty((B, P))
    viol = np.empty((B, P))
    for b in range(B):
        for p in range(P):
            new_t[b, p], power[b, p], viol[b, p] = heat_pump_update(
                temp[b, p], request_kw[b, p], cop[b, p], t_out[b], pmax[p], r[p], c[p], tmin[p], tmax[p], dt)
    return new_t, power, request_kw - power, viol


def heat_pump_step(temp_degc, request_kw, cop, t_out_degc, params: HeatPumpParams, dt_h: float):
    """One PTU of all heat pumps and buildings.

    temp_degc: (B, P) indoor temperature; request_kw: (B, P) electrical power; cop: (B, P) this PTU's
    COP; t_out_degc: (B,) outdoor temperature. Returns (new_temp_degc, power_kw, cut_kw,
    comfort_violation_kh), all (B, P). Prosumers without a heat pump (p_max_kw = 0) still have a
    free-floating building temperature but no violation is counted.
    """
    hp = validate_heat_pump(params)
    P = hp.p_max_kw.shape[0]
    T0 = _as_float(temp_degc, "temp_degc", ndim=2)
    if T0.shape[1] != P:
        raise ValueError(f"temp_degc: expected (B, {P}), got {T0.shape}")
    r = _as_float(request_kw, "heat pump request_kw", shape=T0.shape)
    cp = _as_float(cop, "cop", shape=T0.shape)
    if np.any(cp < 1.0 - 1e-12):
        raise ValueError("cop: must be >= 1")
    to = _as_float(t_out_degc, "t_out_degc", shape=(T0.shape[0],))
    return _heat_pump_step_kernel(T0, r, cp, to, hp.p_max_kw, hp.r_k_per_kw, hp.c_kwh_per_k,
                                  hp.t_min_degc, hp.t_max_degc, _dt(dt_h))


@nb.njit(cache=True)
def appliance_update(t, start_ptu, start_request, profile, earliest, latest):
    """One appliance over PTU t (profile: (L,) kW): (new start PTU, power kW, forced start)."""
    L = profile.shape[0]
    has = False
    for k in range(L):
        if profile[k] > 0.0:
            has = True
            break
    if not has:
        return start_ptu, 0.0, False
    s = start_ptu
    forced = False
    if s < 0 and t >= earliest:
        if t >= latest:
            forced = not start_request
            s = t
        elif start_request:
            s = t
    power = profile[t - s] if s >= 0 and 0 <= t - s < L else 0.0
    return s, power, forced


@nb.njit(cache=True)
def _appliance_step_kernel(t, start_ptu, start_request, profile, earliest, latest):
    B, P = start_ptu.shape
    new_start = start_ptu.copy()
    power = np.zeros((B, P))
    forced = np.zeros((B, P), dtype=np.bool_)
    for b in range(B):
        for p in range(P):
            new_start[b, p], power[b, p], forced[b, p] = appliance_update(
                t, start_ptu[b, p], start_request[b, p], profile[p], earliest[p], latest[p])
    return new_start, power, forced


def appliance_step(t: int, start_ptu, start_request, params: ApplianceParams):
    """One PTU (index t) of all shiftable appliances.

    start_ptu: (B, P) int64, -1 if not started; start_request: (B, P) bool (ignored before the
    earliest start and after the appliance has started). Returns (new_start_ptu, power_kw, forced),
    forced = True where the start was forced at (or after) latest_start_ptu.
    """
    app = validate_appliance(params)
    P = app.profile_kw.shape[0]
    s = _as_int(start_ptu, "start_ptu")
    if s.ndim != 2 or s.shape[1] != P:
        raise ValueError(f"start_ptu: expected (B, {P}), got {s.shape}")
    req = np.asarray(start_request)
    if req.shape != s.shape:
        raise ValueError(f"start_request: expected shape {s.shape}, got {req.shape}")
    return _appliance_step_kernel(int(t), s, req.astype(np.bool_), *app)


# ---------------------------------------------------------------------------------------------
# No-control behaviour (the requests each device makes when nobody controls it)
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def thermostat_request(temp, cop, t_out, pmax, r, c, tset, dt):
    """No-control heat pump: the power (in [0, pmax]) that brings the indoor temperature to the set
    point at the end of the PTU."""
    if pmax <= 0.0:
        return 0.0
    a = building_coeff(r, c, dt)
    need = ((tset - a * temp) / (1.0 - a) - t_out) / (r * cop)
    return min(max(need, 0.0), pmax)


@nb.njit(cache=True)
def _heat_pump_thermostat_kernel(temp, cop, t_out, pmax, r, c, tset, dt):
    B, P = temp.shape
    req = np.zeros((B, P))
    for b in range(B):
        for p in range(P):
            req[b, p] = thermostat_request(temp[b, p], cop[b, p], t_out[b], pmax[p], r[p], c[p], tset[p], dt)
    return req


def nocontrol_heat_pump_request(temp_degc, cop, t_out_degc, params: HeatPumpParams, dt_h: float):
    """Thermostat at the set point: the power (clipped to [0, p_max]) that brings the indoor
    temperature to ``t_set_degc`` at the end of the PTU. Shapes as in :func:`heat_pump_step`."""
    hp = validate_heat_pump(params)
    T0 = _as_float(temp_degc, "temp_degc", ndim=2)
    cp = _as_float(cop, "cop", shape=T0.shape)
    to = _as_float(t_out_degc, "t_out_degc", shape=(T0.shape[0],))
    return _heat_pump_thermostat_kernel(T0, cp, to, hp.p_max_kw, hp.r_k_per_kw, hp.c_kwh_per_k,
                                        hp.t_set_degc, _dt(dt_h))


def nocontrol_battery_request(residual_kw):
    """Self-consumption: request = -(net power of everything else), (B, P) kW; the battery step then
    cuts it to its limits."""
    return -_as_float(residual_kw, "residual_kw", ndim=2)


def nocontrol_ev_request(params: EVParams, batch: int):
    """Full rate whenever the EV is present (the step cuts it to the remaining need): (B, P) kW."""
    return np.broadcast_to(np.asarray(params.p_max_kw, dtype=np.float64), (batch, len(params.p_max_kw))).copy()


def nocontrol_appliance_request(n_prosumers: int, batch: int):
    """Request a start every PTU, so the appliance starts at its earliest start: (B, P) bool."""
    return np.ones((batch, n_prosumers), dtype=np.bool_)


# ---------------------------------------------------------------------------------------------
# Random devices (tests and benchmarks)
# ---------------------------------------------------------------------------------------------
class ProsumerDevices(NamedTuple):
    """All device parameters of P prosumers (see the individual containers)."""

    pv: PVParams
    battery: BatteryParams
    ev: EVParams
    sessions: EVSessions
    heat_pump: HeatPumpParams
    appliance: ApplianceParams


def random_devices(rng: np.random.Generator, n_prosumers: int, n_ptu: int = 96,
                   presence: np.ndarray | None = None, appliance_len: int = 12) -> ProsumerDevices:
    """Random device parameters for ``n_prosumers`` prosumers over a day of ``n_ptu`` PTUs.

    presence: optional (P, 5) bool mask for [pv, battery, ev, heat_pump, appliance]; default draws each
    device with probability 0.5. EV sessions, appliance windows and profiles are scaled to n_ptu.
    """
    P, T = int(n_prosumers), int(n_ptu)
    if presence is None:
        presence = rng.random((P, 5)) < 0.5
    presence = np.asarray(presence, dtype=bool)
    if presence.shape != (P, 5):
        raise ValueError(f"presence: expected shape {(P, 5)}, got {presence.shape}")
    ptu_per_h = T / 24.0
    pv = PVParams(np.where(presence[:, 0], rng.uniform(2.0, 8.0, P), 0.0))
    cap = np.where(presence[:, 1], rng.uniform(4.0, 15.0, P), 0.0)
    battery = BatteryParams(cap, cap * rng.uniform(0.3, 0.6, P), cap * rng.uniform(0.3, 0.6, P),
                            rng.uniform(0.9, 0.98, P), rng.uniform(0.9, 0.98, P), rng.uniform(0.0, 0.002, P))
    ev_cap = np.where(presence[:, 2], rng.uniform(30.0, 75.0, P), 0.0)
    ev = EVParams(ev_cap, rng.choice([3.7, 7.4, 11.0], P), rng.uniform(0.88, 0.95, P), rng.random(P) < 0.3)
    arr = np.round(rng.uniform(0.0, 20.0, P) * ptu_per_h).astype(np.int64)
    dur = np.round(rng.uniform(2.0, 14.0, P) * ptu_per_h).astype(np.int64)
    dep = arr + np.maximum(dur, 1)  # may exceed T (overnight)
    need = np.where(presence[:, 2], np.minimum(rng.uniform(3.0, 35.0, P), ev_cap), 0.0)
    sessions = EVSessions(arr, dep, need)
    r = rng.uniform(3.0, 10.0, P)
    c = rng.uniform(4.0, 15.0, P)
    tmin = rng.uniform(19.0, 21.0, P)
    hp = HeatPumpParams(np.where(presence[:, 3], rng.uniform(1.5, 5.0, P), 0.0), r, c, tmin,
                        tmin + rng.uniform(2.0, 4.0, P), tmin + 1.0, rng.uniform(0.35, 0.5, P),
                        rng.uniform(35.0, 55.0, P), np.full(P, 6.0))
    L = max(1, int(round(appliance_len * T / 96)))
    lengths = rng.integers(max(1, L // 3), L + 1, P)
    prof = np.zeros((P, L))
    for p in range(P):  # setup only, not a step
        prof[p, : lengths[p]] = rng.uniform(0.2, 2.5, lengths[p])
    prof[~presence[:, 4]] = 0.0
    earliest = rng.integers(0, max(1, T - L), P)
    latest = np.minimum(earliest + rng.integers(0, T // 2, P), T - L)
    latest = np.maximum(latest, earliest)
    app = ApplianceParams(prof, earliest.astype(np.int64), latest.astype(np.int64))
    return ProsumerDevices(pv, battery, ev, sessions, hp, app)
