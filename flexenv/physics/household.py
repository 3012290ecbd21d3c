"""One PTU of every household at once: devices, no-control behaviour and connection caps, fused.

`operate_kernel` is the engine's hot path: one numba call steps every device of every prosumer of
every environment in the batch, using the per-device updates of `flexenv.physics.devices` (the same
physics as the standalone device kernels, so both are tested against each other).

Per prosumer, in this order:
1. each device turns its request into a feasible power (devices flagged *no-control* compute their
   own request first: PV fully used, appliance at its earliest start, EV at full rate, heat pump as
   a thermostat at the set point, and last the battery covering the residual: self-consumption);
2. the smart meter enforces the import cap (`net <= cap`) by cutting battery charging, EV charging
   and the heat pump, then discharging the battery; and the export cap (`-net <= cap`) by cutting
   battery discharge and V2G, then curtailing PV. What no device can absorb is reported as a breach;
3. the states advance with the final powers.

Shapes: (B, P) per prosumer and batch row, (P,) parameters, (B,) per row. Device axis order of the
request / power arrays: battery, EV, heat pump, PV used, appliance (DEVICE_ORDER).
"""

from __future__ import annotations

import types

import numba as nb
import numpy as np

from flexenv.physics import devices as dv

DEVICE_ORDER = ("battery", "ev", "heat_pump", "pv", "appliance")
BATTERY, EV, HEAT_PUMP, PV, APPLIANCE = range(5)


@nb.njit(cache=True, parallel=True)
def operate_kernel(
    t, dt,
    load_kw, pv_avail_kw, t_out_degc, cop,
    ev_arrival, ev_departure, ev_energy_kwh, app_earliest, app_latest,
    bat_cap, bat_pc, bat_pd, bat_eta_c, bat_eta_d, bat_sd,
    ev_cap, ev_pmax, ev_eta, ev_v2g,
    hp_pmax, hp_r, hp_c, hp_tmin, hp_tmax, hp_tset,
    app_profile,
    bat_e, ev_need, temp, app_start,
    requests, nocontrol, import_cap_kw, export_cap_kw,
):
    """Step all households by one PTU (day PTU index `t`). Returns a tuple:

    new (bat_e, ev_need, temp, app_start); power (B, P, 5) kW per device (+ consumption, PV as
    -used); net_kw (B, P); request_cut_kw (B, P) total |request - power| before caps; cap_cut_kw
    (B, P) power removed by the caps; cap_breach_kw (B, P) excess no device could absorb;
    pv_curtailed_kw (B, P); comfort_kh (B, P); ev_unmet_kwh (B, P); appliance_forced (B, P);
    uncapped_net_kw (B, P), the net power before the caps (to attribute cuts to whoever capped).
    """
    B, P = load_kw.shape
    new_e = np.empty((B, P))
    new_need = np.empty((B, P))
    new_temp = np.empty((B, P))
    new_start = np.empty((B, P), dtype=np.int64)
    power = np.zeros((B, P, 5))
    net = np.empty((B, P))
    request_cut = np.zeros((B, P))
    cap_cut = np.zeros((B, P))
    breach = np.zeros((B, P))
    curtailed = np.zeros((B, P))
    comfort = np.zeros((B, P))
    unmet = np.zeros((B, P))
    forced = np.zeros((B, P), dtype=np.bool_)
    uncapped = np.empty((B, P))
    for b in nb.prange(B):  # batch rows are independent environments
        for p in range(P):
            # ---- 1. feasible powers for the requests (no-control devices make their own request)
            req_pv = pv_avail_kw[b, p] if nocontrol[b, p, PV] else requests[b, p, PV]
            used = dv.pv_update(pv_avail_kw[b, p], req_pv)
            req_app = True if nocontrol[b, p, APPLIANCE] else requests[b, p, APPLIANCE] > 0.0
            start, p_app, was_forced = dv.appliance_update(
                t, app_start[b, p], req_app, app_profile[p], app_earliest[b, p], app_latest[b, p]
            )
            req_ev = ev_pmax[p] if nocontrol[b, p, EV] else requests[b, p, EV]
            need, p_ev, miss = dv.ev_update(
                t, ev_need[b, p], req_ev, ev_cap[p], ev_pmax[p], ev_eta[p], ev_v2g[p],
                ev_arrival[b, p], ev_departure[b, p], ev_energy_kwh[b, p], dt,
            )
            if nocontrol[b, p, HEAT_PUMP]:
                req_hp = dv.thermostat_request(temp[b, p], cop[b, p], t_out_degc[b], hp_pmax[p], hp_r[p], hp_c[p], hp_tset[p], dt)
            else:
                req_hp = requests[b, p, HEAT_PUMP]
            tn, p_hp, viol = dv.heat_pump_update(
                temp[b, p], req_hp, cop[b, p], t_out_degc[b], hp_pmax[p], hp_r[p], hp_c[p], hp_tmin[p], hp_tmax[p], dt
            )
            if nocontrol[b, p, BATTERY]:
                req_bat = -(load_kw[b, p] + p_app + p_ev + p_hp - used)
            else:
                req_bat = requests[b, p, BATTERY]
            e_new, p_bat = dv.battery_update(
                bat_e[b, p], req_bat, bat_cap[p], bat_pc[p], bat_pd[p], bat_eta_c[p], bat_eta_d[p], bat_sd[p], dt
            )
            request_cut[b, p] = (
                abs(req_pv - used) * (not nocontrol[b, p, PV]) + abs(req_ev - p_ev) * (not nocontrol[b, p, EV])
                + abs(req_hp - p_hp) * (not nocontrol[b, p, HEAT_PUMP])
                + abs(req_bat - p_bat) * (not nocontrol[b, p, BATTERY])
            )

            # ---- 2. connection caps (smart meter)
            n = load_kw[b, p] + p_app + p_ev + p_hp + p_bat - used
            uncapped[b, p] = n
            excess = n - import_cap_kw[b, p]
            changed = False
            if excess > 1e-12:
                changed = True
                cut = min(max(p_bat, 0.0), excess)
                p_bat -= cut
                excess -= cut
                cut = min(max(p_ev, 0.0), excess)
                p_ev -= cut
                excess -= cut
                cut = min(p_hp, excess)
                p_hp -= cut
                excess -= cut
                if excess > 1e-12:  # discharge the battery further, within its limits
                    _, pd_max = dv.battery_power_limits(bat_e[b, p], bat_cap[p], bat_pc[p], bat_pd[p],
                                                             bat_eta_c[p], bat_eta_d[p], bat_sd[p], dt)
                    cut = min(pd_max + p_bat, excess) if bat_cap[p] > 0.0 else 0.0
                    p_bat -= cut
                    excess -= cut
                breach[b, p] = max(excess, 0.0)
                cap_cut[b, p] = n - import_cap_kw[b, p] - breach[b, p]
            excess = -n - export_cap_kw[b, p]
            if excess > 1e-12:
                changed = True
                cut = min(max(-p_bat, 0.0), excess)
                p_bat += cut
                excess -= cut
                cut = min(max(-p_ev, 0.0), excess)
                p_ev += cut
                excess -= cut
                cut = min(used, excess)
                used -= cut
                excess -= cut
                breach[b, p] = max(excess, 0.0)
                cap_cut[b, p] = -n - export_cap_kw[b, p] - breach[b, p]
            if changed:  # re-run the state updates with the capped powers (feasible by construction)
                need, p_ev, miss = dv.ev_update(
                    t, ev_need[b, p], p_ev, ev_cap[p], ev_pmax[p], ev_eta[p], ev_v2g[p],
                    ev_arrival[b, p], ev_departure[b, p], ev_energy_kwh[b, p], dt,
                )
                tn, p_hp, viol = dv.heat_pump_update(
                    temp[b, p], p_hp, cop[b, p], t_out_degc[b], hp_pmax[p], hp_r[p], hp_c[p], hp_tmin[p], hp_tmax[p], dt
                )
                e_new, p_bat = dv.battery_update(
                    bat_e[b, p], p_bat, bat_cap[p], bat_pc[p], bat_pd[p], bat_eta_c[p], bat_eta_d[p], bat_sd[p], dt
                )

            # ---- 3. outputs
            new_e[b, p] = e_new
            new_need[b, p] = need
            new_temp[b, p] = tn
            new_start[b, p] = start
            power[b, p, BATTERY] = p_bat
            power[b, p, EV] = p_ev
            power[b, p, HEAT_PUMP] = p_hp
            power[b, p, PV] = -used
            power[b, p, APPLIANCE] = p_app
            net[b, p] = load_kw[b, p] + p_app + p_ev + p_hp + p_bat - used
            curtailed[b, p] = pv_avail_kw[b, p] - used
            comfort[b, p] = viol
            unmet[b, p] = miss
            forced[b, p] = was_forced
    return (new_e, new_need, new_temp, new_start, power, net, request_cut, cap_cut, breach, curtailed,
            comfort, unmet, forced, uncapped)


def _renamed(func, name: str):
    """A copy of the Python function `func` under another name. numba caches compiled code per
    function name, and the serial and the parallel build of one kernel must not share an entry."""
    copy = types.FunctionType(func.__code__.replace(co_name=name), func.__globals__, name, func.__defaults__, func.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = func.__doc__
    return copy


# The same kernel without threads, for a batch of one environment: there the parallel launch costs
# more than stepping the households (same arithmetic per household, so the same numbers).
operate_kernel_serial = nb.njit(cache=True)(_renamed(operate_kernel.py_func, "operate_kernel_serial"))
