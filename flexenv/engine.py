"""The world: batched state arrays and one step, for every supported business model (DESIGN.md §1, §4).

An episode is `days` days. Each day is a few planning steps, then one step per PTU:

    dso_plan    (tariff link only) the DSO publishes nodal tariffs for the day
    agg_plan    one round, or `max_rounds` for the iterative link: the aggregator sends its day-ahead
                signals; every energy box plans its day against them (the EMS) and declares the
                plan; after each round the aggregator's day-ahead position is set (bought at the
                day-ahead price, settled PTU by PTU)
    operate     one step per PTU: devices run, smart meters enforce caps, the power flow runs, the
                DSO sees the grid, money moves

Every array has a leading batch axis B: row b is an independent environment with its own episode
seed (its own day), all stepping together. Agents act through flat float vectors laid out by
`Engine.action_layout[role]` (every entry in [-1, 1]); they observe flat vectors laid out by
`Engine.obs_layout[role]`. Roles: "prosumer" (B, P, ·), "aggregator" (B, ·) and "dso" (B, ·).

The engine knows links, not PettingZoo: `flexenv.envs` wraps it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numba
import numpy as np

from flexenv.layout import Layout
from flexenv.market.settlement import Ledger, imbalance_cost_eur
from flexenv.market.tariffs import tariff_curves
from flexenv.models import links as lk
from flexenv.physics import devices as dv
from flexenv.physics import household, powerflow
from flexenv.physics.household import APPLIANCE, BATTERY, DEVICE_ORDER, EV, HEAT_PUMP, PV, operate_kernel
from flexenv.scenario import load_tariff
from flexenv.scenario.data import COMPONENTS, _ar1, component_rng, generate
from flexenv.scenario.feeders import load_feeder
from flexenv.scenario.schema import Scenario

PHASES = ("dso_plan", "agg_plan", "operate")
TRAFFIC_LIGHTS = ("green", "yellow", "orange", "red")
POSITION_SCALE_KW_PER_PROSUMER = 10.0  # range of the position adjustment (a household connection) and scale of aggregates
OBS_HORIZON_PTU = 16  # how far ahead a prosumer sees its signals and forecasts
UNMET_EVENT_KWH, COMFORT_EVENT_KH = 0.01, 0.001  # below these a violation is rounding, not an event (gateway fee)
OBS_BOUND = 1.0e3  # observation features are normalised to O(1); the Box bound is this
HEADER_BYTES, VALUE_BYTES = 16, 8  # communication accounting: message header and one float
COMM_LINKS = ("aggregator-prosumers", "aggregator-dso", "dso-prosumers", "aggregator-market")


# Per-step numba kernels: each replaces a few numpy calls on small arrays (their fixed cost dominates
# a step of one environment) with the same operations in the same order, so the same floats.
@numba.njit(inline="always")
def _np_max(a, b):
    return a if (a > b or math.isnan(a)) else b  # np.maximum: NaN wins; a tie (0.0 and -0.0) gives the second


@numba.njit(inline="always")
def _np_min(a, b):
    return a if (a < b or math.isnan(a)) else b  # np.minimum: likewise


@numba.njit(cache=True)
def _block_sum(a, i0, n):
    """numpy's pairwise summation of a[i0:i0 + n] for n <= 128: sequential below 8 values, else 8
    accumulators combined as a tree, then the remainder."""
    if n < 8:
        res = 0.0
        for i in range(i0, i0 + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[i0], a[i0 + 1], a[i0 + 2], a[i0 + 3]
    r4, r5, r6, r7 = a[i0 + 4], a[i0 + 5], a[i0 + 6], a[i0 + 7]
    m = n - n % 8
    for j in range(i0 + 8, i0 + m, 8):
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(i0 + m, i0 + n):
        res += a[i]
    return res


@numba.njit(cache=True)
def _pairwise_sum(a, i0, n):
    """numpy's pairwise summation of a[i0:i0 + n] (1-D), so the same float as its `sum`: blocks of at
    most 128 values (:func:`_block_sum`), larger ranges split in halves rounded down to a multiple of 8
    and the halves' sums added. The recursion runs on an explicit stack (a recursive numba function
    cannot be cached)."""
    if n <= 128:
        return _block_sum(a, i0, n)
    depth = 64  # the halving gives a depth of log2(n / 128) + 1
    lo = np.empty(depth, dtype=np.int64)
    size = np.empty(depth, dtype=np.int64)
    stage = np.empty(depth, dtype=np.int64)  # 0: left half next, 1: right half next, 2: add the halves
    vals = np.empty(depth)
    top, nv = 0, 0
    lo[0], size[0], stage[0] = i0, n, 0
    while top >= 0:
        m = size[top]
        if m <= 128:
            vals[nv] = _block_sum(a, lo[top], m)
            nv += 1
            top -= 1
            continue
        half = m // 2
        half -= half % 8
        if stage[top] == 0:
            stage[top] = 1
            lo[top + 1], size[top + 1], stage[top + 1] = lo[top], half, 0
            top += 1
        elif stage[top] == 1:
            stage[top] = 2
            lo[top + 1], size[top + 1], stage[top + 1] = lo[top] + half, m - half, 0
            top += 1
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


@numba.njit(inline="always")
def _np_sum(a):
    """a.sum() of a 1-D array, bit for bit (numpy adds the pairwise sum to its identity 0.0)."""
    return 0.0 + _pairwise_sum(a, 0, a.shape[0])


@numba.njit(cache=True)
def _clip_actions(a):
    """(B, n) actions → (clipped to [-1, 1], (B,) count of values outside, all finite?): one pass
    instead of several numpy calls (their fixed cost dominates at one environment)."""
    B, n = a.shape
    out = np.empty((B, n))
    outside = np.zeros(B)
    for b in range(B):
        for i in range(n):
            x = a[b, i]
            if not np.isfinite(x):
                return out, outside, False
            if x > 1.0:
                x = 1.0
                outside[b] += 1.0
            elif x < -1.0:
                x = -1.0
                outside[b] += 1.0
            out[b, i] = x
    return out, outside, True


@numba.njit(cache=True)
def _clip_float32(v, bound):
    """np.clip(v, -bound, bound).astype(np.float32) in one pass, into a fresh array (NaN stays NaN)."""
    flat = v.reshape(-1)
    out = np.empty(flat.size, dtype=np.float32)
    for i in range(flat.size):
        x = flat[i]
        if x > bound:
            x = bound
        elif x < -bound:
            x = -bound
        out[i] = x
    return out.reshape(v.shape)


@numba.njit(cache=True)
def _device_states(devices, t, T, dt_h, battery_kwh, inv_battery_kwh, ev_need_kwh, inv_ev_kwh, ev_arrival, ev_departure,
                   indoor_temp, t_min, inv_band, t_out, app_start, app_earliest, app_latest):
    """The changing columns of the prosumers' `devices` observation field (B, P, 15), in place, as::

        present = (ev_arrival <= t) & (t < ev_departure); pending = (app_start < 0) & (app_earliest < T)
        devices[..., 3] = battery_kwh * inv_battery_kwh
        devices[..., 6] = present
        devices[..., 7] = ev_need_kwh * inv_ev_kwh * present
        devices[..., 8] = np.where(present, (ev_departure - t) * dt_h / 24.0, 0.0)
        devices[..., 10] = (indoor_temp - t_min) * inv_band
        devices[..., 11] = t_out[:, None] / 20.0
        devices[..., 13] = pending
        devices[..., 14] = np.where(pending, np.maximum(app_latest - t, 0) * dt_h / 24.0, 0.0)
    """
    B, P = battery_kwh.shape
    for b in range(B):
        for p in range(P):
            present = ev_arrival[b, p] <= t < ev_departure[b, p]
            pending = app_start[b, p] < 0 and app_earliest[b, p] < T
            present_f = 1.0 if present else 0.0
            devices[b, p, 3] = battery_kwh[b, p] * inv_battery_kwh[p]  # SoC
            devices[b, p, 6] = present_f
            devices[b, p, 7] = ev_need_kwh[b, p] * inv_ev_kwh[p] * present_f  # a product, as numpy's (0 × inf is NaN)
            devices[b, p, 8] = (ev_departure[b, p] - t) * dt_h / 24.0 if present else 0.0
            devices[b, p, 10] = (indoor_temp[b, p] - t_min[p]) * inv_band[p]
            devices[b, p, 11] = t_out[b] / 20.0
            devices[b, p, 13] = 1.0 if pending else 0.0
            devices[b, p, 14] = max(app_latest[b, p] - t, 0) * dt_h / 24.0 if pending else 0.0


@numba.njit(cache=True)
def _grid_state(vm_pu, lv_bus, v_min, v_max, line_loading_pct, line_max_pct, trafo_loading_pct, trafo_max_pct, bins):
    """(B,) voltage violations at the LV buses, overloaded?, traffic light: what these numpy lines give,
    in one pass (NaN included: a NaN loading is the worst, as np.max and np.searchsorted treat it)::

        violations = ((vm[:, lv] < v_min) | (vm[:, lv] > v_max)).sum(axis=1)
        worst = np.maximum((line / line_max * 100).max(axis=1, initial=0.0), trafo / trafo_max * 100)
        overloaded = worst > 100.0
        light = np.searchsorted(bins, worst, side="right")  # np.digitize
        light = np.where(violations > 0, np.maximum(light, 2), light)
    """
    B = vm_pu.shape[0]
    violations = np.zeros(B, dtype=np.int64)
    overloaded = np.zeros(B, dtype=np.bool_)
    light = np.zeros(B, dtype=np.int64)
    for b in range(B):
        n = 0
        for i in lv_bus:
            if vm_pu[b, i] < v_min or vm_pu[b, i] > v_max:
                n += 1
        violations[b] = n
        worst = 0.0
        for i in range(line_loading_pct.shape[1]):
            r = line_loading_pct[b, i] / line_max_pct * 100
            if not math.isnan(worst) and not r <= worst:  # larger, or NaN (which then stays)
                worst = r
        trafo = trafo_loading_pct[b] / trafo_max_pct * 100
        if not trafo <= worst and not math.isnan(worst):
            worst = trafo
        overloaded[b] = worst > 100.0
        level = 0
        for edge in bins:
            if not worst < edge:  # edge <= worst, or NaN (sorted last)
                level += 1
        if n > 0 and level < 2:
            level = 2
        light[b] = level
    return violations, overloaded, light


@numba.njit(cache=True)
def _accumulate_elementwise(dt, prosumer_total, prosumer, aggregator_total, aggregator, dso_total, dso, market_total, market,
                            clipped_total, clipped, comfort_total, comfort, unmet_total, unmet, losses_total, losses_kw,
                            peak_total, trafo_loading, congested_total, violated_total, overloaded, violations_total,
                            violations, failures_total, converged, curtailed_total, curtailed, cap_cut_total, cap_cut,
                            breach_total, breach, import_total, export_total, net):
    """`Engine._accumulate` after an operate step, in place, as the numpy lines it replaces::

        curtailed_total += curtailed.sum(axis=1) * dt  (likewise cap_cut, breach)
        import_total += np.maximum(net, 0).sum(axis=1) * dt; export_total += np.maximum(-net, 0).sum(axis=1) * dt
        prosumer_total += prosumer; aggregator_total += aggregator; ... (dso, market, clipped, comfort, unmet)
        losses_total += losses_kw * dt
        peak_total[:] = np.maximum(peak_total, trafo_loading)
        congested_total += overloaded; violated_total += overloaded | (violations > 0)
        violations_total += violations; failures_total += ~converged
    """
    B, P = prosumer.shape
    row = np.empty(P)
    for b in range(B):
        curtailed_total[b] += _np_sum(curtailed[b]) * dt
        cap_cut_total[b] += _np_sum(cap_cut[b]) * dt
        breach_total[b] += _np_sum(breach[b]) * dt
        for p in range(P):
            row[p] = _np_max(net[b, p], 0.0)
        import_total[b] += _np_sum(row) * dt
        for p in range(P):
            row[p] = _np_max(-net[b, p], 0.0)
        export_total[b] += _np_sum(row) * dt
        for p in range(P):
            prosumer_total[b, p] += prosumer[b, p]
            comfort_total[b, p] += comfort[b, p]
            unmet_total[b, p] += unmet[b, p]
        aggregator_total[b] += aggregator[b]
        dso_total[b] += dso[b]
        market_total[b] += market[b]
        clipped_total[b] += clipped[b]
        losses_total[b] += losses_kw[b] * dt
        peak, x = peak_total[b], trafo_loading[b]
        peak_total[b] = _np_max(peak, x)
        congested_total[b] += 1.0 if overloaded[b] else 0.0
        violated_total[b] += 1.0 if (overloaded[b] or violations[b] > 0) else 0.0
        violations_total[b] += violations[b]
        failures_total[b] += 0.0 if converged[b] else 1.0


@numba.njit(cache=True)
def _prosumer_terms(dt, net, uncapped, cap_cut, agg_import_cap, agg_export_cap, dso_cap, tan_phi, load_kw, power,
                    bill_import, bill_export, tariff, comfort_eur_per_kh, comfort, unmet_eur_per_kwh, unmet):
    """(B, P) terms of an operate step, in one pass, as the numpy lines they replace (same operations,
    same order)::

        dso_cut = np.minimum(np.maximum(np.minimum(uncapped, agg_import_cap) - dso_cap, 0.0)
                             + np.maximum(np.minimum(-uncapped, agg_export_cap) - dso_cap, 0.0), cap_cut)
        q_kvar = tan_phi * (load_kw + power[..., HEAT_PUMP] + power[..., APPLIANCE])
        energy = energy_cost_eur(net, bill_import, bill_export, dt)  # flexenv.market.settlement
        tariff_eur = np.maximum(net, 0.0) * tariff * dt
        discomfort = comfort_eur_per_kh * comfort + unmet_eur_per_kwh * unmet

    and the (B,) sums over prosumers of energy, tariff_eur, discomfort and net (as numpy's `sum(axis=1)`).
    """
    B, P = net.shape
    dso_cut, q_kvar, energy = np.empty((B, P)), np.empty((B, P)), np.empty((B, P))
    tariff_eur, discomfort = np.empty((B, P)), np.empty((B, P))
    energy_row, tariff_row, discomfort_row, net_row = np.empty(B), np.empty(B), np.empty(B), np.empty(B)
    for b in range(B):
        for p in range(P):
            u, cap = uncapped[b, p], dso_cap[b, p]
            cut = (_np_max(_np_min(u, agg_import_cap[b, p]) - cap, 0.0)
                   + _np_max(_np_min(-u, agg_export_cap[b, p]) - cap, 0.0))
            dso_cut[b, p] = _np_min(cut, cap_cut[b, p])
            q_kvar[b, p] = tan_phi[p] * (load_kw[b, p] + power[b, p, HEAT_PUMP] + power[b, p, APPLIANCE])
            n = net[b, p]
            energy[b, p] = dt * (_np_max(n, 0.0) * bill_import[b, p] - _np_max(-n, 0.0) * bill_export[b, p])
            tariff_eur[b, p] = _np_max(n, 0.0) * tariff[b, p] * dt
            discomfort[b, p] = comfort_eur_per_kh * comfort[b, p] + unmet_eur_per_kwh * unmet[b, p]
        energy_row[b] = _np_sum(energy[b])
        tariff_row[b] = _np_sum(tariff_eur[b])
        discomfort_row[b] = _np_sum(discomfort[b])
        net_row[b] = _np_sum(net[b])
    return dso_cut, q_kvar, energy, tariff_eur, discomfort, energy_row, tariff_row, discomfort_row, net_row


@numba.njit(cache=True)
def _count_changed_caps(new, old):
    """(B,) int64: per row, how many caps changed, as
    ``(~np.isclose(new, old) & ~(np.isinf(new) & np.isinf(old))).sum(axis=1)`` (np.isclose's defaults:
    |new - old| <= 1e-08 + 1e-05 |old| with `old` finite, or equal)."""
    B, P = new.shape
    out = np.zeros(B, dtype=np.int64)
    for b in range(B):
        for p in range(P):
            x, y = new[b, p], old[b, p]
            close = (abs(x - y) <= 1e-08 + 1e-05 * abs(y) and np.isfinite(y)) or x == y
            if not close and not (np.isinf(x) and np.isinf(y)):
                out[b] += 1
    return out


@numba.njit(cache=True)
def _nocontrol_day_serial(T, g0, dt, load_fc, pv_fc, t_out, cop, ev_arrival, ev_departure, ev_energy_kwh, app_earliest,
                          app_latest, bat_cap, bat_pc, bat_pd, bat_eta_c, bat_eta_d, bat_sd, ev_cap, ev_pmax, ev_eta, ev_v2g,
                          hp_pmax, hp_r, hp_c, hp_tmin, hp_tmax, hp_tset, app_profile, bat_e, ev_need, temp, app_start,
                          zeros, all_default, no_cap):
    """`Engine._simulate_nocontrol`'s loop over the PTUs of the day (from episode PTU `g0`), the same
    household kernel call by call: (net (B, P, T), device powers (B, P, T, 5), appliance starts (B, P))."""
    B, P = bat_e.shape
    net = np.empty((B, P, T))
    power = np.empty((B, P, T, 5))
    for t in range(T):
        g = g0 + t
        out = household.operate_kernel_serial(
            t, dt, load_fc[:, :, g], pv_fc[:, :, g], t_out[:, g], cop[:, :, g], ev_arrival, ev_departure, ev_energy_kwh,
            app_earliest, app_latest, bat_cap, bat_pc, bat_pd, bat_eta_c, bat_eta_d, bat_sd, ev_cap, ev_pmax, ev_eta,
            ev_v2g, hp_pmax, hp_r, hp_c, hp_tmin, hp_tmax, hp_tset, app_profile, bat_e, ev_need, temp, app_start,
            zeros, all_default, no_cap, no_cap,
        )
        bat_e, ev_need, temp, app_start = out[0], out[1], out[2], out[3]
        power[:, :, t, :] = out[4]
        net[:, :, t] = out[5]
    return net, power, app_start


@dataclasses.dataclass(frozen=True)
class Step:
    phase: str
    day: int
    index: int  # planning round, or PTU of the day


def _placement_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(len(COMPONENTS) + 1,)))


class Engine:
    """A batch of `batch_size` environments of one scenario. See the module docstring."""

    def __init__(self, scenario: Scenario, batch_size: int = 1, nocontrol: bool = False):
        """`nocontrol=True` runs the no-control baseline (DESIGN.md §5): every device at its default
        behaviour, prosumers billed the plain retail tariff (`markets.retail_tariff`), the
        aggregator a plain supplier whose day-ahead position is the forecast no-control consumption;
        agents' actions are then ignored except the DSO's."""
        lk.check_supported(scenario.links)
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size}: must be >= 1")
        self.scenario = scenario
        self.nocontrol = bool(nocontrol)
        self.B = int(batch_size)
        self.P = scenario.n_prosumers
        self.ppd = scenario.time.ptus_per_day
        self.n_days = scenario.time.days
        self.dt_h = scenario.time.dt_h

        # ---- population and feeder (fixed by the scenario seed)
        first = generate(scenario)
        self.fleet = first.fleet
        self.appliance_profile_kw = first.appliance_profile_kw
        self.feeder = load_feeder(scenario.feeder, scenario.seed)
        self._place_prosumers()
        self._build_devices()

        # ---- links
        links = scenario.links
        n_groups = getattr(links.prosumer, "n_price_groups", None) or getattr(links.prosumer, "n_cap_groups", 1)
        group = np.arange(self.P) % max(1, min(n_groups, self.P))
        self.prosumer_link = lk.PROSUMER_LINKS[links.prosumer.kind](links.prosumer, self.P, self.ppd, group)
        self.dso_link = lk.DSO_LINKS[links.dso.kind](links.dso, self.n_zones, self.ppd)
        contract = getattr(links.prosumer, "retail_tariff", scenario.markets.retail_tariff)
        self.contract_tariff = load_tariff(scenario.markets.retail_tariff if nocontrol else contract)
        self.manageable_kw = self._manageable_kw()

        # ---- schedule of one day
        day = []
        if self.dso_link.has_planning_step:
            day.append(("dso_plan", 0))
        day += [("agg_plan", r) for r in range(self.prosumer_link.planning_rounds)]
        day += [("operate", t) for t in range(self.ppd)]
        self.schedule = [Step(phase, d, i) for d in range(self.n_days) for phase, i in day]
        self.n_steps = len(self.schedule)

        self.action_layout = self._action_layouts()
        self.obs_layout = self._obs_layouts()
        self._observation_offsets()
        self._operate_constants()
        # one environment: the kernel without threads (their launch costs more than the households' step)
        self._operate_kernel = household.operate_kernel_serial if self.B == 1 else operate_kernel
        self.k = 0

    # ------------------------------------------------------------------------------ construction
    def _place_prosumers(self) -> None:
        """Prosumers sit on the feeder's load buses (seeded); zones group them by electrical distance."""
        feeder, P = self.feeder, self.P
        load_buses = np.asarray(feeder.load_buses, dtype=np.int64)
        if load_buses.size == 0:
            raise ValueError(f"feeder {feeder.name!r} has no load buses to connect prosumers to")
        rng = _placement_rng(self.scenario.seed)
        order = rng.permutation(load_buses)
        self.prosumer_bus = np.sort(np.resize(order, P)) if P > len(order) else np.sort(order[:P])
        self.bus_matrix = np.zeros((P, feeder.n_bus))  # (P, n_bus) incidence, for linear models (oracle)
        self.bus_matrix[np.arange(P), self.prosumer_bus] = 1.0
        # in a step, prosumer → bus sums by segments of the sorted bus list (no matrix product: BLAS
        # threads on small products cost more than the sum itself)
        self.bus_with_prosumers, self.bus_segment_start = np.unique(self.prosumer_bus, return_index=True)
        distance = self._electrical_distance()[self.prosumer_bus]
        n_zones = min(self.scenario.links.dso.n_zones, P)
        ranks = np.argsort(np.argsort(distance, kind="stable"), kind="stable")
        self.zone_of_prosumer = (ranks * n_zones) // P
        self.n_zones = n_zones
        zone_distance = np.array([distance[self.zone_of_prosumer == z].mean() for z in range(n_zones)])
        self.zone_loss_weight = zone_distance / max(zone_distance.max(), 1e-12)
        self.zone_matrix = np.zeros((P, n_zones))
        self.zone_matrix[np.arange(P), self.zone_of_prosumer] = 1.0
        self.lv_bus = feeder.bus_vn_kv < 1.0
        trafo = int(np.flatnonzero(feeder.branch_kind == 1)[0])
        lv_side = feeder.branch_to_bus[trafo]
        self.trafo_rating_kva = math.sqrt(3) * feeder.bus_vn_kv[lv_side] * feeder.branch_i_rated_to_ka[trafo] * 1000.0

    def to_buses(self, per_prosumer: np.ndarray) -> np.ndarray:
        """(B, P) per prosumer → (B, n_bus) summed per bus."""
        out = np.zeros((per_prosumer.shape[0], self.feeder.n_bus))
        out[:, self.bus_with_prosumers] = np.add.reduceat(per_prosumer, self.bus_segment_start, axis=1)
        return out

    def _electrical_distance(self) -> np.ndarray:
        """(n_bus,) |z| (p.u.) of the path from the slack to each bus: where losses and voltage drop grow."""
        f = self.feeder
        z = np.hypot(f.branch_r_pu, f.branch_x_pu)
        node_distance = np.zeros(f.n_node)
        for k in range(1, f.n_node):  # nodes are in breadth-first order: parents come first
            node_distance[k] = node_distance[f.node_parent[k]] + z[f.node_branch[k]]
        return node_distance[f.bus_node]

    def _build_devices(self) -> None:
        fl = self.fleet
        usable = fl.battery_capacity_kwh * (fl.battery_soc_max - fl.battery_soc_min)
        self.battery = dv.BatteryParams(usable, fl.battery_power_kw, fl.battery_power_kw,
                                        fl.battery_charge_efficiency, fl.battery_discharge_efficiency,
                                        fl.battery_self_discharge_per_h)
        self.battery_initial_kwh = fl.battery_capacity_kwh * (fl.battery_soc_initial - fl.battery_soc_min)
        self.ev = dv.EVParams(fl.ev_battery_kwh, fl.ev_max_charge_kw, fl.ev_charge_efficiency, fl.ev_v2g.astype(bool))
        band = fl.comfort_band_k
        self.heat_pump = dv.HeatPumpParams(fl.hp_rated_power_kw, fl.building_resistance_k_per_kw,
                                           fl.building_capacitance_kwh_per_k, fl.comfort_set_point_degc - band,
                                           fl.comfort_set_point_degc + band, fl.comfort_set_point_degc,
                                           fl.hp_carnot_fraction, fl.hp_supply_temp_degc, np.full(self.P, 6.0))
        self.setpoint_scale = {
            "battery_charge_kw": self.battery.p_charge_max_kw,
            "battery_discharge_kw": self.battery.p_discharge_max_kw,
            "ev_kw": self.ev.p_max_kw,
            "heat_pump_kw": self.heat_pump.p_max_kw,
        }
        self.device_present = np.stack([fl.has_battery, fl.has_ev, fl.has_heat_pump, fl.has_pv, fl.has_appliance], axis=1)

    def _manageable_kw(self) -> np.ndarray:
        """(P,) kW of the devices the contract lets the aggregator manage (basis of the management fee)."""
        m = getattr(self.scenario.links.prosumer, "manageability", None)
        fl = self.fleet
        kw = {"battery": fl.battery_power_kw, "ev": fl.ev_max_charge_kw, "heat_pump": fl.hp_rated_power_kw,
              "pv": fl.pv_kwp, "appliance": fl.appliance_power_kw}
        names = m.devices if m is not None else list(kw)
        return sum(kw[n] for n in names) if names else np.zeros(self.P)

    def _action_layouts(self) -> dict[str, Layout]:
        aggregator = Layout().add("position_adjust", (self.ppd,),
                                  f"planning: day-ahead position = declared plans + a × {POSITION_SCALE_KW_PER_PROSUMER} kW × P")
        self.prosumer_link.add_action_fields(aggregator)
        dso = Layout()
        self.dso_link.add_action_fields(dso)
        prosumer = Layout().add("setpoints", (len(DEVICE_ORDER),), "operate: " + lk.SETPOINT_DOC)
        return {"prosumer": prosumer, "aggregator": aggregator, "dso": dso}

    def _obs_layouts(self) -> dict[str, Layout]:
        H, T, Z, P = OBS_HORIZON_PTU, self.ppd, self.n_zones, self.P

        def common(layout):
            layout.add("time", (6,), "sin/cos time of day, sin/cos weekday, PTU of day / PTUs, day / days")
            layout.add("phase", (len(PHASES),), "one-hot: dso_plan, agg_plan, operate")
            layout.add("round", (1,), "planning round / rounds")
            return layout

        prosumer = common(Layout())
        prosumer.add("import_price", (H,), "€/kWh, next PTUs of the day (last value repeated)")
        prosumer.add("export_price", (H,), "€/kWh")
        prosumer.add("import_cap", (H,), "cap / 50 kW, 1 = no cap")
        prosumer.add("load_forecast", (H,), "kW / 10")
        prosumer.add("pv_forecast", (H,), "kW / 10")
        prosumer.add("devices", (15,), "has PV, kWp/10, has battery, SoC, kWh/20, has EV, EV present, EV need/capacity, "
                     "h to departure/24, has heat pump, (T_in − T_min)/band, T_out/20, has appliance, pending, h to latest start/24")
        prosumer.add("plan", (len(DEVICE_ORDER),), "the energy box's plan for this PTU, as an action")
        prosumer.add("last_net", (1,), "net power of the last PTU, kW / 10")

        aggregator = common(Layout())
        aggregator.add("day_ahead", (T,), "day-ahead price of the day, €/kWh")
        aggregator.add("load_forecast", (T,), "portfolio load forecast / scale")
        aggregator.add("pv_forecast", (T,), "portfolio PV forecast / scale")
        aggregator.add("dso_tariff", (Z, T), "DSO tariff per zone and PTU, €/kWh")
        aggregator.add("declared_plan", (T,), "sum of the energy boxes' declared plans / scale")
        aggregator.add("position", (T,), "day-ahead position / scale")
        aggregator.add("last", (3,), "last PTU: portfolio net / scale, imbalance short and long price €/kWh")
        aggregator.add("traffic_light", (4,), "one-hot grid state published by the DSO")
        if "price" in self.action_layout["aggregator"]:
            aggregator.add("signal", (self.prosumer_link.n_groups, T), "price action of the last planning round")
        if self.prosumer_link.kind == "gateway":
            aggregator.add("plan", (P, len(DEVICE_ORDER)), "reference plan for this PTU, as setpoint actions")
            aggregator.add("states", (P, 4), "SoC, EV need/capacity, (T_in − T_min)/band, appliance pending")

        dso = common(Layout())
        dso.add("prognosis", (Z, T), "zone net forecast if no device reacted (no control) / transformer rating")
        dso.add("declared_plan", (Z, T), "zone sum of declared plans / transformer rating")
        dso.add("voltage", (int(self.lv_bus.sum()),), "(vm_pu − 1) × 10 at every LV bus, last PTU")
        dso.add("line_loading", (self.feeder.n_line,), "line loading / 100, last PTU")
        dso.add("trafo_loading", (1,), "transformer loading / 100, last PTU")
        dso.add("traffic_light", (4,), "one-hot: green, yellow, orange, red")
        dso.add("zone_net", (Z,), "zone net power of the last PTU / transformer rating")
        return {"prosumer": prosumer, "aggregator": aggregator, "dso": dso}

    # ------------------------------------------------------------------------------------ reset
    def reset(self, seeds) -> dict[str, np.ndarray]:
        """Start new episodes; `seeds` gives one episode seed per batch row. Returns observations."""
        seeds = [int(s) for s in np.atleast_1d(seeds)]
        if len(seeds) != self.B:
            raise ValueError(f"reset needs {self.B} seeds (one per batch row), got {len(seeds)}")
        self.seeds = seeds
        rows = [generate(self.scenario, seed=s, fleet=self.fleet) for s in seeds]  # setup only: loop over batch rows
        grid = rows[0].grid
        self.grid = grid
        T = grid.n_steps
        stack = lambda name: np.stack([getattr(r, name) for r in rows])
        self.load_kw = stack("load_kw")
        self.pv_avail_kw = stack("pv_kw_per_kwp")[:, None, :] * self.fleet.pv_kwp[None, :, None]
        self.t_out_degc = stack("outdoor_temp_degc")
        self.day_ahead = stack("day_ahead_eur_per_kwh")
        self.imbalance_short = stack("imbalance_short_eur_per_kwh")
        self.imbalance_long = stack("imbalance_long_eur_per_kwh")
        self.cop = np.stack([dv.heat_pump_cop(t, self.heat_pump) for t in self.t_out_degc])  # (B, P, T)
        # per-day events, day-relative PTUs; a session is cut at midnight (day-ahead planning horizon)
        day_start = (np.arange(self.n_days) * self.ppd)[None, None, :]
        arrival, departure = stack("ev_arrival_ptu"), stack("ev_departure_ptu")
        present = arrival >= 0
        self.ev_arrival = np.where(present, arrival - day_start, 0)
        self.ev_departure = np.where(present, np.minimum(departure - day_start, self.ppd), 0)
        self.ev_energy_kwh = np.where(present, stack("ev_energy_needed_kwh"), 0.0)
        earliest = stack("appliance_earliest_start_ptu")
        asked = earliest >= 0
        self.app_earliest = np.where(asked, earliest - day_start, self.ppd)  # no request: never starts
        self.app_latest = np.where(asked, stack("appliance_latest_start_ptu") - day_start, self.ppd)
        # forecasts: multiplicative errors, one AR(1) path per prosumer and day
        fc = self.scenario.forecasts
        self.load_forecast_kw = np.empty_like(self.load_kw)
        self.pv_forecast_kw = np.empty_like(self.pv_avail_kw)
        for b, seed in enumerate(seeds):
            rng = component_rng(seed, "forecast")
            err_load = fc.load_error_pct / 100 * _ar1(rng, (self.P, T), 0.95)
            err_pv = fc.pv_error_pct / 100 * _ar1(rng, (self.P, T), 0.98)
            self.load_forecast_kw[b] = self.load_kw[b] * np.maximum(1.0 + err_load, 0.0)
            self.pv_forecast_kw[b] = np.minimum(self.pv_avail_kw[b] * np.maximum(1.0 + err_pv, 0.0), self.fleet.pv_kwp[:, None])
        curves = tariff_curves(self.contract_tariff, grid)
        self.contract_import = curves["import_eur_per_kwh"]
        self.contract_export = curves["export_eur_per_kwh"]

        # ---- state
        B, P = self.B, self.P
        self.battery_kwh = np.broadcast_to(self.battery_initial_kwh, (B, P)).copy()
        self.ev_need_kwh = np.zeros((B, P))
        self.indoor_temp_degc = np.broadcast_to(self.fleet.comfort_set_point_degc, (B, P)).copy()
        self.app_start = np.full((B, P), -1, dtype=np.int64)
        self.v_pu = None
        self.k = 0
        self.last_net_kw = np.zeros((B, P))
        self.last_net_row_kw = np.zeros(B)  # its sum over prosumers
        self.last_vm_pu = np.ones((B, self.feeder.n_bus))
        self.last_line_loading = np.zeros((B, self.feeder.n_line))
        self.last_trafo_loading = np.zeros(B)
        self.traffic_light = np.zeros(B, dtype=np.int64)
        self.converged_round = np.full(B, -1)
        self._plan_version = 0
        self._allocate_observations()
        self._start_day(0)
        self.totals = self._empty_totals()
        return self.observe()

    def _start_day(self, day: int) -> None:
        B, P, ppd = self.B, self.P, self.ppd
        self.day = day
        steps = slice(day * ppd, (day + 1) * ppd)
        self.day_steps = steps
        self._set_dso_tariff(np.zeros((B, self.n_zones, ppd)))
        self.signals = None
        self.plan_net_kw = np.zeros((B, P, ppd))
        self.plan_requests = np.zeros((B, P, ppd, len(DEVICE_ORDER)))
        self.plan_start = np.full((B, P), -1, dtype=np.int64)
        self.position_kw = np.zeros((B, ppd))
        self.signal_action = np.zeros((B, self.prosumer_link.n_groups, ppd))
        self.frozen = np.zeros(B, dtype=bool)  # iterative: converged rows keep their plans
        self.day_ahead_cap = np.full((B, P, ppd), np.inf)
        self.dso_cap_kw = np.full((B, P), np.inf)
        self.overrides_used = np.zeros((B, P), dtype=np.int64)
        self.app_start[:] = -1  # the appliance runs once per day
        self.converged_round[:] = -1
        # the DSO's D-prognosis: what the day would look like if nobody reacted to any signal
        prognosis, _, _ = self._simulate_nocontrol()
        self.prognosis_zone_kw = np.einsum("bpt,pz->bzt", prognosis, self.zone_matrix)
        self._plan_version += 1

    def _empty_totals(self) -> dict[str, np.ndarray]:
        B, P = self.B, self.P
        zeros = lambda *shape: np.zeros(shape)
        totals = {
            "prosumer_money_eur": zeros(B, P), "aggregator_money_eur": zeros(B), "dso_money_eur": zeros(B),
            "market_money_eur": zeros(B), "comfort_violation_kh": zeros(B, P), "ev_unmet_kwh": zeros(B, P),
            "pv_curtailed_kwh": zeros(B), "cap_cut_kwh": zeros(B), "cap_breach_kwh": zeros(B),
            "losses_kwh": zeros(B), "import_kwh": zeros(B), "export_kwh": zeros(B),
            "peak_trafo_loading_pct": zeros(B), "congested_ptus": zeros(B), "voltage_violations": zeros(B),
            "clipped_actions": zeros(B), "powerflow_failures": zeros(B), "discomfort_eur": zeros(B),
            "violated_ptus": zeros(B),
        }
        # messages and bytes per link: views of one block, which each step's counts are added to at once
        self._comm_totals = zeros(len(COMM_LINKS), 2, B)
        for i, link in enumerate(COMM_LINKS):
            totals[f"messages/{link}"] = self._comm_totals[i, 0]
            totals[f"bytes/{link}"] = self._comm_totals[i, 1]
        return totals

    # ------------------------------------------------------------------------------------- step
    @property
    def current(self) -> Step:
        return self.schedule[self.k]

    @property
    def done(self) -> bool:
        return self.k >= self.n_steps

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict]:
        """Advance every batch row by one step.

        actions: {"aggregator": (B, A_agg), "dso": (B, A_dso), "prosumer": (B, P, A_pro)} in [-1, 1];
        values outside are clipped and counted. The prosumer entry is required when prosumers are
        agents (every link but gateway). Returns (observations, rewards, info); rewards in € per
        role: prosumer (B, P), aggregator (B,), dso (B,).
        """
        if self.done:
            raise RuntimeError("episode is over: call reset()")
        return self._advance(self._check_actions(actions))

    def _advance(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict]:
        """`step` with actions `_check_actions` returned (the PettingZoo env checks them itself first,
        to name the culprit agent)."""
        step = self.current
        counts = np.zeros((len(COMM_LINKS), 2, self.B))  # messages and bytes per link, one block
        comm = {link: [counts[i, 0], counts[i, 1]] for i, link in enumerate(COMM_LINKS)}
        ledger = Ledger(self.B, self.P)
        discomfort = np.zeros((self.B, self.P))
        self._step_discomfort_eur = np.zeros(self.B)
        kpis: dict[str, np.ndarray] = {}
        if step.phase == "dso_plan":
            self._dso_plan(actions["dso"], comm)
        elif step.phase == "agg_plan":
            self._aggregator_plan(step.index, actions["aggregator"], comm)
        else:
            discomfort, kpis = self._operate(step.index, actions, ledger, comm)
        self._accumulate(ledger, counts, kpis)
        self.k += 1
        if not self.done and self.current.day != step.day:
            self._start_day(self.current.day)
        rewards = {"prosumer": ledger.prosumer - discomfort, "aggregator": ledger.aggregator.copy(), "dso": ledger.dso.copy()}
        info = {"phase": step.phase, "day": step.day, "index": step.index, "ledger": ledger,
                "comm": {k: (v[0], v[1]) for k, v in comm.items()}, "kpis": kpis,
                # this step's share of the system cost (see system_cost_eur)
                "system_cost_eur": ledger.market + self._step_discomfort_eur}
        return self.observe(), rewards, info

    def _check_actions(self, actions: dict) -> dict:
        """Actions as float64 arrays clipped to [-1, 1]; sets `_clipped`, the count of values outside
        per row. Raises ValueError for a missing role, a wrong shape, NaN or inf."""
        out = {}
        self._clipped = np.zeros(self.B)
        for role, shape in self._action_shapes.items():
            if role not in actions or actions[role] is None:
                if role == "prosumer" and not self.prosumer_link.prosumers_are_agents:
                    continue
                raise ValueError(f"missing action for role {role!r} (shape {shape})")
            a = np.asarray(actions[role])
            if a.dtype != np.float32:  # float32 (what agents usually send) is clipped into float64 as is
                a = a.astype(np.float64, copy=False)
            if a.shape != shape:
                raise ValueError(f"action for {role!r} has shape {a.shape}, expected {shape}")
            clipped, outside, finite = _clip_actions(np.ascontiguousarray(a).reshape(self.B, -1))
            if not finite:
                raise ValueError(f"action for {role!r} contains NaN or inf")
            self._clipped += outside
            out[role] = clipped.reshape(shape)
        return out

    # ---------------------------------------------------------------------------------- planning
    def _day_context(self) -> lk.DayContext:
        steps = self.day_steps
        tariff = np.einsum("bzt,pz->bpt", self.dso_tariff_zone, self.zone_matrix)
        return lk.DayContext(self.day_ahead[:, steps], self.contract_import[steps], self.contract_export[steps], tariff)

    def _set_dso_tariff(self, tariff_zone: np.ndarray) -> None:
        """The day's DSO tariff per zone (B, Z, T), and per PTU and prosumer (T, B, P) for the operate steps."""
        self.dso_tariff_zone = tariff_zone
        self._dso_tariff_by_ptu = np.ascontiguousarray(tariff_zone[:, self.zone_of_prosumer, :].transpose(2, 0, 1))

    def _dso_plan(self, action: np.ndarray, comm) -> None:
        self._set_dso_tariff(self.dso_link.decode_tariff(self.action_layout["dso"], action))
        self._plan_version += 1
        comm["aggregator-dso"][0] += 1
        comm["aggregator-dso"][1] += HEADER_BYTES + VALUE_BYTES * self.n_zones * self.ppd

    def _aggregator_plan(self, round_index: int, action: np.ndarray, comm) -> None:
        layout = self.action_layout["aggregator"]
        if self.nocontrol:
            signals = self._retail_signals()
        else:
            signals = self.prosumer_link.plan_signals(layout, action, self._day_context())
        previous = self.plan_net_kw.copy()
        active = ~self.frozen
        if self.signals is None:
            self.signals = signals
        else:  # converged rows keep their signals and plans
            for name in ("import_price", "export_price", "import_cap_kw", "export_cap_kw", "bill_import", "bill_export"):
                getattr(self.signals, name)[active] = getattr(signals, name)[active]
        if "price" in layout:
            self.signal_action[active] = layout.view(action, "price")[active]
        if self.nocontrol:
            self._plan_nocontrol()
        else:
            self._plan_energy_boxes(np.flatnonzero(active))
        scale = POSITION_SCALE_KW_PER_PROSUMER * self.P
        adjust = 0.0 if self.nocontrol else layout.view(action, "position_adjust")
        position = self.plan_net_kw.sum(axis=1) + adjust * scale
        self.position_kw[active] = position[active]
        self.day_ahead_cap = self.signals.import_cap_kw.copy()
        self._plan_version += 1
        # communication: a signal to every prosumer; iterative: every plan back; the day-ahead bid
        n_values = 0 if self.nocontrol else {"gateway": 0, "max_power": 2, "price_driven": 1, "iterative": 1}[self.prosumer_link.kind]
        n_active = active.astype(float)
        if n_values:
            comm["aggregator-prosumers"][0] += n_active * self.P
            comm["aggregator-prosumers"][1] += n_active * self.P * (HEADER_BYTES + VALUE_BYTES * n_values * self.ppd)
        if self.prosumer_link.kind == "iterative" and not self.nocontrol:
            comm["aggregator-prosumers"][0] += n_active * self.P
            comm["aggregator-prosumers"][1] += n_active * self.P * (HEADER_BYTES + VALUE_BYTES * self.ppd)
            tol = 0.01  # kW: a plan that moves less than this in every PTU counts as unchanged
            change = np.abs(self.plan_net_kw - previous).max(axis=(1, 2))
            newly = active & (round_index > 0) & (change < tol)
            self.converged_round[newly] = round_index
            self.frozen |= newly
        comm["aggregator-market"][0] += 1.0
        comm["aggregator-market"][1] += HEADER_BYTES + VALUE_BYTES * self.ppd

    def _retail_signals(self) -> lk.Signals:
        B, P, T = self.B, self.P, self.ppd
        steps = self.day_steps
        imp = np.broadcast_to(self.contract_import[steps], (B, P, T)).copy()
        exp = np.broadcast_to(self.contract_export[steps], (B, P, T)).copy()
        inf = np.full((B, P, T), np.inf)
        return lk.Signals(imp, exp, inf, inf.copy(), imp.copy(), exp.copy())

    def _plan_nocontrol(self) -> None:
        """No-control 'plans': the devices' default behaviour simulated on the day's forecasts."""
        net, power, start = self._simulate_nocontrol()
        self.plan_net_kw[:] = net
        self.plan_requests[:] = power
        self.plan_requests[..., PV] = -power[..., PV]
        self.plan_start[:] = start

    def _simulate_nocontrol(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Net power (B, P, T), device powers (B, P, T, 5) and appliance starts (B, P) of the day if
        every device ran its default behaviour on the forecasts, from the current states."""
        d, steps = self.day, self.day_steps
        B, P, T = self.B, self.P, self.ppd
        state = (self.battery_kwh.copy(), self.ev_need_kwh.copy(), self.indoor_temp_degc.copy(), self.app_start.copy())
        all_default = np.ones((B, P, len(DEVICE_ORDER)), dtype=bool)
        inf = np.full((B, P), np.inf)
        zeros = np.zeros((B, P, len(DEVICE_ORDER)))
        # the day's loop in numba, one call: 96 kernel calls from Python would cost more than the work
        return _nocontrol_day_serial(
            T, steps.start, self.dt_h, self.load_forecast_kw, self.pv_forecast_kw, self.t_out_degc, self.cop,
            self.ev_arrival[:, :, d], self.ev_departure[:, :, d], self.ev_energy_kwh[:, :, d], self.app_earliest[:, :, d],
            self.app_latest[:, :, d], *self._kernel_params(), *state, zeros, all_default, inf)

    def _operate_constants(self) -> None:
        """What every operate step uses and never changes (computed once: small numpy calls are most of a step)."""
        B, P = self.B, self.P
        self._tan_phi = np.tan(np.arccos(self.fleet.power_factor))
        tl = self.scenario.links.dso.traffic_light
        self._light_bins = np.array([tl.yellow_pct, tl.orange_pct, tl.red_pct], dtype=np.float64)
        self._all_controlled = np.zeros((B, P, len(DEVICE_ORDER)), dtype=bool)  # read-only kernel input
        self._none_controlled = np.ones((B, P, len(DEVICE_ORDER)), dtype=bool)
        fee_per_kw_month = getattr(self.scenario.links.prosumer, "management_fee_eur_per_kw_month", 0.0)
        monthly = fee_per_kw_month * self.manageable_kw * self.dt_h / (30.0 * 24.0)
        self._management_fee = np.broadcast_to(monthly, (B, P)).copy()
        self._management_fee_per_row = self._management_fee.sum(axis=1)
        self._no_tariff = np.zeros((B, P))
        self._kernel_constants = self._kernel_params()
        self._action_shapes = {"aggregator": (B, self.action_layout["aggregator"].size),
                               "dso": (B, self.action_layout["dso"].size),
                               "prosumer": (B, P, self.action_layout["prosumer"].size)}

    def _kernel_params(self) -> tuple:
        hp = self.heat_pump
        return (*self.battery, self.ev.capacity_kwh, self.ev.p_max_kw, self.ev.eta_charge, self.ev.v2g,
                hp.p_max_kw, hp.r_k_per_kw, hp.c_kwh_per_k, hp.t_min_degc, hp.t_max_degc, hp.t_set_degc,
                self.appliance_profile_kw)

    def _plan_energy_boxes(self, rows: np.ndarray) -> None:
        """Every energy box of the given batch rows plans its day against its signals (the EMS).

        One EMS call for all of them: rows × prosumers are flattened into one prosumer axis (each
        with its own day's data), so the EMS runs in parallel over all of them."""
        from flexenv.policies import ems

        if rows.size == 0:
            return
        steps, s, d = self.day_steps, self.signals, self.day
        n_rows, P, T = rows.size, self.P, self.ppd
        penalties = ems.Penalties(self.scenario.preferences.comfort_penalty_eur_per_kh,
                                  self.scenario.preferences.ev_unmet_penalty_eur_per_kwh)
        profile = ems.ENGINE_DESCENT_PROFILE if self.scenario.energy_box.ems == "descent" else ems.ENGINE_PROFILE
        config = profile._replace(penalties=penalties)

        def flat(x):  # (B, P, ...) of the planned rows → (rows × P, ...)
            return np.ascontiguousarray(x[rows].reshape((n_rows * P,) + x.shape[2:]))

        def tile(params):  # (P,) parameters → (rows × P,)
            return type(params)(*(np.tile(np.asarray(v), (n_rows,) + (1,) * (np.ndim(v) - 1)) for v in params))

        devices = dv.ProsumerDevices(
            tile(dv.PVParams(self.fleet.pv_kwp)), tile(self.battery), tile(self.ev),
            dv.EVSessions(flat(self.ev_arrival[:, :, d]), flat(self.ev_departure[:, :, d]), flat(self.ev_energy_kwh[:, :, d])),
            tile(self.heat_pump),
            dv.ApplianceParams(np.tile(self.appliance_profile_kw, (n_rows, 1)), flat(self.app_earliest[:, :, d]),
                               flat(self.app_latest[:, :, d])),
        )
        t_out = np.repeat(self.t_out_degc[rows][:, steps], P, axis=0)
        problem = ems.ProsumerProblem(
            self.dt_h, flat(self.load_forecast_kw[:, :, steps]), flat(self.pv_forecast_kw[:, :, steps]), t_out,
            flat(self.cop[:, :, steps]), flat(s.import_price), flat(s.export_price), flat(s.import_cap_kw),
            flat(s.export_cap_kw), devices, flat(self.battery_kwh), flat(self.ev_need_kwh), flat(self.indoor_temp_degc),
            flat(self.app_start), 0,
        )
        plan = ems.plan(problem, config)
        shape = (n_rows, P, T)
        self.plan_net_kw[rows] = plan.net_kw.reshape(shape)
        self.plan_requests[rows, :, :, BATTERY] = plan.battery_kw.reshape(shape)
        self.plan_requests[rows, :, :, EV] = plan.ev_kw.reshape(shape)
        self.plan_requests[rows, :, :, HEAT_PUMP] = plan.heat_pump_kw.reshape(shape)
        self.plan_requests[rows, :, :, PV] = plan.pv_used_kw.reshape(shape)
        self.plan_start[rows] = plan.appliance_start_ptu.reshape(n_rows, P)

    def plan_actions(self, t: int | None = None) -> np.ndarray:
        """(B, P, 5) the energy boxes' plan for day PTU `t` (default: the current one), as normalised actions."""
        t = self.current.index if t is None else t
        t = min(t, self.ppd - 1)
        # the plan was made on the PV forecast: its PV use is a share of the forecast (all of it → all
        # of the actual PV), which also keeps the actual PV of the coming PTU out of the observation
        pv_forecast = self.pv_forecast_kw[:, :, self.day_steps.start + t]
        return lk.encode_setpoints(self.plan_requests[:, :, t, :], self.setpoint_scale, pv_forecast, self.plan_start == t)

    # ----------------------------------------------------------------------------------- operate
    def _operate(self, t: int, actions: dict, ledger: Ledger, comm) -> tuple[np.ndarray, dict]:
        B, P, dt = self.B, self.P, self.dt_h
        g = self.day * self.ppd + t  # episode PTU
        d = self.day
        link = self.prosumer_link
        pv_avail = self.pv_avail_kw[:, :, g]

        # ---- requests: who controls which device
        nocontrol = self._all_controlled
        if self.nocontrol:
            nocontrol = self._none_controlled
            requests = np.zeros((B, P, len(DEVICE_ORDER)))
            comm["aggregator-prosumers"][0] += P  # meter reading for settlement
            comm["aggregator-prosumers"][1] += P * (HEADER_BYTES + VALUE_BYTES)
        elif link.kind == "gateway":
            setpoints = self.action_layout["aggregator"].view(actions["aggregator"], "setpoints")
            requests = lk.decode_setpoints(setpoints, self.setpoint_scale, pv_avail)
            m = self.scenario.links.prosumer.manageability
            hour = t * dt
            in_hours = m.hours[0] <= hour < m.hours[1]
            managed = np.array([name in m.devices for name in DEVICE_ORDER])
            allowed = (self.overrides_used < m.max_overrides_per_day)[:, :, None]
            controlled = in_hours & managed[None, None, :] & allowed
            nocontrol = ~controlled
            self.overrides_used += controlled.any(axis=2)
            n_managed = (controlled & self.device_present[None]).sum(axis=2)
            comm["aggregator-prosumers"][0] += 2 * P  # setpoints down, measurements up
            comm["aggregator-prosumers"][1] += (2 * HEADER_BYTES * P + VALUE_BYTES * (n_managed.sum(axis=1) + 5 * P))
        else:
            requests = lk.decode_setpoints(actions["prosumer"], self.setpoint_scale, pv_avail)
            comm["aggregator-prosumers"][0] += P  # meter reading for settlement
            comm["aggregator-prosumers"][1] += P * (HEADER_BYTES + VALUE_BYTES)

        # ---- caps: the aggregator's (max-power) and the DSO's (isolated), the tighter one binds
        import_cap = self.day_ahead_cap[:, :, t]
        export_cap = self.signals.export_cap_kw[:, :, t]
        intraday_fee_kw = np.zeros((B, P))
        if link.kind == "max_power" and not self.nocontrol:
            tightened = link.intraday_import_cap(self.action_layout["aggregator"], actions["aggregator"], import_cap)
            changed = tightened < import_cap - 1e-9
            margin = self.scenario.links.prosumer.intraday_change_margin_kw
            intraday_fee_kw = np.where(changed, np.maximum(self.plan_net_kw[:, :, t] - tightened - margin, 0.0), 0.0)
            comm["aggregator-prosumers"][0] += changed.sum(axis=1)
            comm["aggregator-prosumers"][1] += changed.sum(axis=1) * (HEADER_BYTES + VALUE_BYTES)
            import_cap = tightened
        if self.dso_link.kind == "isolated":
            zone_cap = self.dso_link.decode_caps(self.action_layout["dso"], actions["dso"])
            new_dso_cap = zone_cap[:, self.zone_of_prosumer]
            n_changed = _count_changed_caps(new_dso_cap, self.dso_cap_kw)
            comm["dso-prosumers"][0] += n_changed
            comm["dso-prosumers"][1] += n_changed * (HEADER_BYTES + VALUE_BYTES)
            self.dso_cap_kw = new_dso_cap
        aggregator_import_cap, aggregator_export_cap = import_cap, export_cap
        import_cap = np.minimum(import_cap, self.dso_cap_kw)
        export_cap = np.minimum(export_cap, self.dso_cap_kw)

        # ---- devices (one fused numba call)
        out = self._operate_kernel(
            t, dt, self.load_kw[:, :, g], pv_avail, self.t_out_degc[:, g], self.cop[:, :, g],
            self.ev_arrival[:, :, d], self.ev_departure[:, :, d], self.ev_energy_kwh[:, :, d],
            self.app_earliest[:, :, d], self.app_latest[:, :, d],
            *self._kernel_constants, self.battery_kwh, self.ev_need_kwh, self.indoor_temp_degc, self.app_start,
            np.ascontiguousarray(requests), nocontrol, np.ascontiguousarray(import_cap), np.ascontiguousarray(export_cap),
        )
        (self.battery_kwh, self.ev_need_kwh, self.indoor_temp_degc, self.app_start, power, net, request_cut,
         cap_cut, breach, curtailed, comfort, unmet, forced, uncapped) = out
        # elementwise per prosumer, in one pass: the part of the cut that only the DSO's cap caused (the
        # aggregator's own caps are its contract), reactive power, the energy bill, the DSO tariff, discomfort
        s = self.signals
        prefs = self.scenario.preferences
        tariff = self._dso_tariff_by_ptu[t] if self.dso_link.kind == "tariff" else self._no_tariff
        dso_cut, q_kvar, energy, tariff_eur, discomfort, energy_row, tariff_row, discomfort_row, net_row = _prosumer_terms(
            dt, net, uncapped, cap_cut, aggregator_import_cap, aggregator_export_cap, self.dso_cap_kw, self._tan_phi,
            self.load_kw[:, :, g], power, s.bill_import[:, :, t], s.bill_export[:, :, t], tariff,
            float(prefs.comfort_penalty_eur_per_kh), comfort, float(prefs.ev_unmet_penalty_eur_per_kwh), unmet)
        self.last_net_kw, self.last_net_row_kw = net, net_row

        # ---- grid
        result = powerflow.solve(self.feeder, self.to_buses(net), self.to_buses(q_kvar), v_init=self.v_pu, warn=False)
        ok = result.converged
        self.v_pu = np.where(ok[:, None], result.v_pu, 1.0 + 0j) if not ok.all() else result.v_pu
        fcfg = self.scenario.feeder
        voltage_violations, overloaded, light = _grid_state(
            result.vm_pu, self._lv_bus_index, fcfg.v_min_pu, fcfg.v_max_pu, result.line_loading_pct,
            float(fcfg.line_loading_max_pct), result.trafo_loading_pct[:, 0], float(fcfg.trafo_loading_max_pct), self._light_bins)
        self.traffic_light = light
        self.last_vm_pu, self.last_line_loading = result.vm_pu, result.line_loading_pct
        self.last_trafo_loading = result.trafo_loading_pct[:, 0]

        # ---- money (DESIGN.md §4): what the contracts and markets say
        ledger.pay("retail_energy", "prosumer", "aggregator", energy, energy_row)
        cfg = self.scenario.links.prosumer
        fee_per_kw_month = getattr(cfg, "management_fee_eur_per_kw_month", 0.0)
        kind = "none" if self.nocontrol else link.kind
        if self.nocontrol:
            fee_per_kw_month = 0.0
        elif kind == "gateway" and cfg.billing == "fixed_curve":
            fee_per_kw_month = 0.0
            ledger.pay("fixed_fee", "prosumer", "aggregator", np.full((B, P), cfg.fixed_fee_eur_per_day * dt / 24.0))
        if fee_per_kw_month:  # the same every PTU: computed once
            ledger.pay("management_fee", "prosumer", "aggregator", self._management_fee, self._management_fee_per_row)
        if kind == "gateway":
            # a violation event: an EV short of more than 0.01 kWh, or a PTU more than 0.001 K·h out of band
            events = (unmet > UNMET_EVENT_KWH).astype(float) + (comfort > COMFORT_EVENT_KH).astype(float)
            ledger.pay("violation_fee", "aggregator", "prosumer", cfg.violation_fee_eur * events)
        if kind == "max_power":
            ledger.pay("intraday_change_fee", "aggregator", "prosumer", cfg.intraday_change_fee_eur_per_kwh * intraday_fee_kw * dt)
        if kind == "iterative":
            planned = self.plan_net_kw[:, :, t]
            aggregate_dev = np.abs(net_row - planned.sum(axis=1))
            band = cfg.tolerance_band_pct / 100.0 * np.abs(planned.sum(axis=1))
            outside = (aggregate_dev > band)[:, None]
            ledger.pay("deviation_penalty", "prosumer", "aggregator",
                       np.where(outside, cfg.deviation_penalty_eur_per_kwh * np.abs(net - planned) * dt, 0.0))
        if self.dso_link.kind == "tariff":
            ledger.pay("dso_tariff", "aggregator", "dso", tariff_row)
        if self.dso_link.kind == "isolated":
            compensation = self.scenario.links.dso.curtailment_compensation_eur_per_kwh
            ledger.pay("dso_compensation", "dso", "prosumer", compensation * dso_cut * dt)
        dcfg = self.scenario.links.dso
        ledger.pay("quality_incentive", "dso", "market",
                   dcfg.voltage_violation_penalty_eur * voltage_violations + dcfg.overload_penalty_eur * overloaded)
        position = self.position_kw[:, t]
        ledger.pay("day_ahead", "aggregator", "market", position * self.day_ahead[:, g] * dt)
        deviation = net_row - position
        ledger.pay("imbalance", "aggregator", "market",
                   imbalance_cost_eur(deviation, self.imbalance_short[:, g], self.imbalance_long[:, g], dt))

        self._step_discomfort_eur = discomfort_row
        self.totals["discomfort_eur"] += self._step_discomfort_eur
        if kind == "gateway":  # the contract's violation fee replaces it in the reward
            discomfort = np.zeros((B, P))
        kpis = {
            "net_kw": net, "device_kw": power, "comfort_violation_kh": comfort, "ev_unmet_kwh": unmet,
            "pv_curtailed_kw": curtailed, "cap_cut_kw": cap_cut, "dso_cap_cut_kw": dso_cut, "cap_breach_kw": breach, "request_cut_kw": request_cut,
            "appliance_forced": forced, "import_cap_kw": import_cap, "export_cap_kw": export_cap,
            "vm_pu": result.vm_pu, "line_loading_pct": result.line_loading_pct, "trafo_loading_pct": result.trafo_loading_pct[:, 0],
            "losses_kw": result.losses_kw, "p_slack_kw": result.p_slack_kw, "powerflow_converged": ok, "voltage_violations": voltage_violations,
            "overloaded": overloaded, "traffic_light": light, "position_kw": position, "deviation_kw": deviation,
        }
        return discomfort, kpis

    def system_cost_eur(self) -> np.ndarray:
        """(B,) what the episode cost society so far (DESIGN.md §5, social welfare with the sign flipped):
        everything paid out of the modelled coalition to the market (day-ahead energy, imbalance,
        quality penalties) plus the value of the prosumers' lost comfort and unmet EV energy. Internal
        payments (bills, fees, tariffs, compensations) cancel. Every business model and the oracle
        are compared on it."""
        return self.totals["market_money_eur"] + self.totals["discomfort_eur"]

    def _accumulate(self, ledger: Ledger, comm_counts: np.ndarray, kpis) -> None:
        t = self.totals
        self._comm_totals += comm_counts  # (links, messages/bytes, B), the totals' messages/ and bytes/ entries
        if not kpis:
            t["prosumer_money_eur"] += ledger.prosumer
            t["aggregator_money_eur"] += ledger.aggregator
            t["dso_money_eur"] += ledger.dso
            t["market_money_eur"] += ledger.market
            t["clipped_actions"] += self._clipped
            return
        _accumulate_elementwise(
            self.dt_h, t["prosumer_money_eur"], ledger.prosumer, t["aggregator_money_eur"], ledger.aggregator, t["dso_money_eur"],
            ledger.dso, t["market_money_eur"], ledger.market, t["clipped_actions"], self._clipped,
            t["comfort_violation_kh"], kpis["comfort_violation_kh"], t["ev_unmet_kwh"], kpis["ev_unmet_kwh"],
            t["losses_kwh"], kpis["losses_kw"], t["peak_trafo_loading_pct"], kpis["trafo_loading_pct"],
            t["congested_ptus"], t["violated_ptus"], kpis["overloaded"], t["voltage_violations"], kpis["voltage_violations"],
            t["powerflow_failures"], kpis["powerflow_converged"], t["pv_curtailed_kwh"], kpis["pv_curtailed_kw"],
            t["cap_cut_kwh"], kpis["cap_cut_kw"], t["cap_breach_kwh"], kpis["cap_breach_kw"], t["import_kwh"], t["export_kwh"],
            kpis["net_kw"])

    # ------------------------------------------------------------------------------ observation
    def observe(self) -> dict[str, np.ndarray]:
        """Observations for the next step: {"prosumer": (B, P, O), "aggregator": (B, O), "dso": (B, O)} float32.

        Fields that change only at planning (day-ahead curves, plans, tariffs) are rewritten only
        when they change; the rest every step. The per-step part writes slices at precomputed
        offsets: at small prosumer counts the fixed cost per numpy call is most of a step."""
        B, P, T = self.B, self.P, self.ppd
        if self._obs_version != self._plan_version:
            self._write_day_fields()
            self._obs_version = self._plan_version
        buf, at = self._obs_buf, self._obs_at
        k = min(self.k, self.n_steps - 1)
        step = self.schedule[k]
        operating = self.signals is not None and step.phase == "operate"
        t = step.index if step.phase == "operate" else 0
        g = self.day * T + t
        d = self.day
        header = self._obs_header(k, step, t, d)
        for vec in buf.values():  # time, phase and round: the first fields of every layout
            vec[..., :header.size] = header
        light = self._eye4[self.traffic_light]

        # prosumers
        vec = buf["prosumer"]
        # prices, caps and forecasts of the next PTUs: one strided copy of a slice of the day's stacked
        # fields (padded with the last PTU, so a slice also serves the end of the day)
        self._obs_ahead[...] = self._day_ahead_obs[:, :, :, t:t + OBS_HORIZON_PTU]
        devices = self._obs_devices  # a view of the buffer; static columns were written at reset
        _device_states(devices, t, T, self.dt_h, self.battery_kwh, self._inv_battery_kwh, self.ev_need_kwh, self._inv_ev_kwh,
                       self.ev_arrival[:, :, d], self.ev_departure[:, :, d], self.indoor_temp_degc, self.heat_pump.t_min_degc,
                       self._inv_band_k, self.t_out_degc[:, g], self.app_start, self.app_earliest[:, :, d], self.app_latest[:, :, d])
        plan = self._day_plan_obs(t) if operating else 0.0
        vec[..., at["prosumer_plan"]] = plan
        vec[..., at["last_net"]] = self.last_net_kw / 10.0

        # aggregator
        vec = buf["aggregator"]
        g_last = max(g - 1, 0)
        last = at["last"]
        vec[:, last] = self.last_net_row_kw / (POSITION_SCALE_KW_PER_PROSUMER * P)
        vec[:, last + 1] = self.imbalance_short[:, g_last]
        vec[:, last + 2] = self.imbalance_long[:, g_last]
        vec[:, at["aggregator_light"]] = light
        if "aggregator_plan" in at:
            vec[:, at["aggregator_plan"]] = np.broadcast_to(plan, (B, P, len(DEVICE_ORDER))).reshape(B, -1)
            vec[:, at["states"]] = devices[:, :, self._state_columns].reshape(B, -1)

        # DSO
        vec = buf["dso"]
        vec[:, at["voltage"]] = (self.last_vm_pu[:, self._lv_bus_index] - 1.0) * 10.0
        vec[:, at["line_loading"]] = self.last_line_loading / 100.0
        vec[:, at["trafo_loading"]] = self.last_trafo_loading / 100.0
        vec[:, at["dso_light"]] = light
        vec[:, at["zone_net"]] = self.zone_sums(self.last_net_kw) / self.trafo_rating_kva
        # clipped into fresh float32 arrays (the caller may keep them); min/max as np.clip, NaN included
        return {role: _clip_float32(v, OBS_BOUND) for role, v in buf.items()}

    def _obs_header(self, k: int, step: Step, t: int, d: int) -> np.ndarray:
        """Time, phase one-hot and round of step `k`: the first fields of every observation; cached per
        step and weekday (the same in every episode)."""
        weekday = self._weekday[d]
        key = (k, int(weekday))
        header = self._header_cache.get(key)
        if header is None:
            T = self.ppd
            time = np.array([np.sin(2 * np.pi * t / T), np.cos(2 * np.pi * t / T), np.sin(2 * np.pi * weekday / 7),
                             np.cos(2 * np.pi * weekday / 7), t / T, d / self.n_days])
            phase = np.zeros(len(PHASES))
            phase[PHASES.index(step.phase)] = 1.0
            rounds = step.index / max(1, self.prosumer_link.planning_rounds) if step.phase == "agg_plan" else 0.0
            header = np.concatenate([time, phase, [rounds]])
            self._header_cache[key] = header
        return header

    def _day_plan_obs(self, t: int) -> np.ndarray:
        """(B, P, 5) `plan_actions(t)`, encoded for the whole day at once when the day's plans change."""
        if self._day_plan_actions is None:
            T, steps = self.ppd, self.day_steps
            start_now = self.plan_start[:, :, None] == np.arange(T)
            scale = {name: v[:, None] for name, v in self.setpoint_scale.items()}  # (P, 1): broadcast over PTUs
            # elementwise, so each PTU's values equal plan_actions(t)'s bit for bit
            self._day_plan_actions = lk.encode_setpoints(self.plan_requests, scale, self.pv_forecast_kw[:, :, steps], start_now)
        return self._day_plan_actions[:, :, t, :]

    def _allocate_observations(self) -> None:
        """Observation buffers of the episode, with the fields that never change written once."""
        B, P = self.B, self.P
        self._obs_buf = {role: np.zeros((B, P, lay.size) if role == "prosumer" else (B, lay.size))
                         for role, lay in self.obs_layout.items()}
        fl = self.fleet
        devices = np.zeros((B, P, 15))
        static = {0: fl.has_pv, 1: fl.pv_kwp / 10, 2: fl.has_battery, 4: self.battery.capacity_kwh / 20, 5: fl.has_ev,
                  9: fl.has_heat_pump, 12: fl.has_appliance}
        for column, values in static.items():
            devices[..., column] = values
        self.obs_layout["prosumer"].write(self._obs_buf["prosumer"], "devices", devices)
        self._obs_devices = self.obs_layout["prosumer"].view(self._obs_buf["prosumer"], "devices")
        # the contiguous block of the five look-ahead fields as (B, P, 5, OBS_HORIZON_PTU), a view
        self._obs_ahead = self._obs_buf["prosumer"][..., self._obs_at["ahead"]].reshape(B, P, 5, OBS_HORIZON_PTU)
        assert np.shares_memory(self._obs_ahead, self._obs_buf["prosumer"])
        self._inv_battery_kwh = np.divide(1.0, self.battery.capacity_kwh, out=np.zeros(P), where=self.battery.capacity_kwh > 0)
        self._inv_ev_kwh = np.divide(1.0, self.ev.capacity_kwh, out=np.zeros(P), where=self.ev.capacity_kwh > 0)
        self._inv_band_k = 1.0 / np.maximum(self.heat_pump.t_max_degc - self.heat_pump.t_min_degc, 1e-9)
        self._weekday = self.grid.weekday
        self._obs_version = -1
        self._day_plan_actions = None

    def _observation_offsets(self) -> None:
        """Slices and indices of the fields `observe` writes every step (fixed by the layouts)."""
        lay = self.obs_layout
        for role_layout in lay.values():  # observe writes the common header as one block
            assert [f.name for f in list(role_layout.fields.values())[:3]] == ["time", "phase", "round"]
        sl = lambda role, name: slice(lay[role].fields[name].start, lay[role].fields[name].stop)
        pro = lay["prosumer"].fields
        ahead_fields = ("import_price", "export_price", "import_cap", "load_forecast", "pv_forecast")
        for a, b in itertools.pairwise(ahead_fields):  # contiguous, in this order: one slice
            assert pro[a].stop == pro[b].start
        at = {
            "ahead": slice(pro[ahead_fields[0]].start, pro[ahead_fields[-1]].stop),
            "prosumer_plan": sl("prosumer", "plan"), "last_net": pro["last_net"].start,
            "last": lay["aggregator"].fields["last"].start, "aggregator_light": sl("aggregator", "traffic_light"),
            "voltage": sl("dso", "voltage"), "line_loading": sl("dso", "line_loading"),
            "trafo_loading": lay["dso"].fields["trafo_loading"].start, "dso_light": sl("dso", "traffic_light"),
            "zone_net": sl("dso", "zone_net"),
        }
        if "plan" in lay["aggregator"]:
            at["aggregator_plan"] = sl("aggregator", "plan")
            at["states"] = sl("aggregator", "states")
        self._obs_at = at
        self._state_columns = np.array([3, 7, 10, 13])
        self._lv_bus_index = np.flatnonzero(self.lv_bus)
        self._eye4 = np.eye(4)
        self._header_cache = {}

    def _write_day_fields(self) -> None:
        """Fields that change only when a day starts or a planning step happens."""
        steps, buf = self.day_steps, self._obs_buf
        scale = POSITION_SCALE_KW_PER_PROSUMER * self.P
        B, P, T = self.B, self.P, self.ppd
        # prosumers: import/export price, cap, load and PV forecast of every PTU of the day, stacked
        # in the layout's order; before the day's signals exist (planning) nothing is known of the first three
        # beyond the day: its last PTU repeated; float32 as the observation (the same values after
        # the observation's clip, as the bound is a float32), half the memory the window copy reads
        day = np.zeros((B, P, 5, T + OBS_HORIZON_PTU - 1), dtype=np.float32)
        if self.signals is not None:
            day[:, :, 0, :T] = self.signals.import_price
            day[:, :, 1, :T] = self.signals.export_price
            day[:, :, 2, :T] = np.minimum(self.day_ahead_cap, 50.0) / 50.0
        day[:, :, 3, :T] = self.load_forecast_kw[:, :, steps] / 10.0
        day[:, :, 4, :T] = self.pv_forecast_kw[:, :, steps] / 10.0
        day[:, :, :, T:] = day[:, :, :, T - 1:T]
        self._day_ahead_obs = day
        self._day_plan_actions = None  # plans may have changed: encoded again when next needed
        lay, vec = self.obs_layout["aggregator"], buf["aggregator"]
        lay.write(vec, "day_ahead", self.day_ahead[:, steps])
        lay.write(vec, "load_forecast", self.load_forecast_kw[:, :, steps].sum(axis=1) / scale)
        lay.write(vec, "pv_forecast", self.pv_forecast_kw[:, :, steps].sum(axis=1) / scale)
        lay.write(vec, "dso_tariff", self.dso_tariff_zone)
        lay.write(vec, "declared_plan", self.plan_net_kw.sum(axis=1) / scale)
        lay.write(vec, "position", self.position_kw / scale)
        if "signal" in lay:
            lay.write(vec, "signal", self.signal_action)
        lay, vec = self.obs_layout["dso"], buf["dso"]
        lay.write(vec, "prognosis", self.prognosis_zone_kw / self.trafo_rating_kva)
        lay.write(vec, "declared_plan", self.zone_sums(self.plan_net_kw.transpose(0, 2, 1)).transpose(0, 2, 1)
                  / self.trafo_rating_kva)

    def zone_sums(self, per_prosumer: np.ndarray) -> np.ndarray:
        """(..., P) per prosumer → (..., Z) summed per zone."""
        return per_prosumer @ self.zone_matrix
