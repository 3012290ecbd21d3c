"""Portfolio oracle: the perfect-foresight optimum of a whole episode over every device of every
prosumer, inside the grid limits (DESIGN.md §5), as one MILP solved by HiGHS.

Data: an :class:`flexenv.engine.Engine` reset with the episode seed, so the oracle sees exactly the
arrays the environment runs on (actual load and PV, prices, EV sessions, appliance windows, device
parameters, initial states, feeder and prosumer placement).

Objective = the engine's ``system_cost_eur()`` under perfect foresight: the day-ahead position
equals the actual aggregate net power, so there is no imbalance, and the grid stays inside its
limits, so there are no DSO quality penalties; what remains is

    sum_t dt * day_ahead_t * sum_p net_pt  +  comfort K·h × penalty  +  unmet EV kWh × penalty.

Devices (shared builders of :mod:`baselines.oracle.devices`, conventions of
:func:`flexenv.policies.ems.prepare`): battery, heat pump + building and PV over the whole episode
(their states carry over midnight, as in the engine); the EV session and the appliance once per
day (the engine cuts sessions at midnight and lets the appliance run once a day), built as one row
per (prosumer, day) on the day horizon and mapped back onto the episode axis.

Grid (LinDistFlow, :mod:`flexenv.physics.lindistflow`, written sparsely on the feeder tree instead
of the dense sensitivity matrices, so the rows grow with the feeder, not with buses × prosumers)::

    FP_k = sum_{p at node k} net_p + sum_{children c} FP_c           (active flow into node k, kW)
    FQ_k = likewise with q_p = tan(acos(pf_p)) * (load + heat pump + appliance)   (as the engine)
    w_k  = w_parent / |tap_k|^2 - 2 (r_k FP_k + x_k FQ_k) / s_base   (w = v^2 - v^2 at no load)

Hard limits: at every node with an LV bus ``(v_min + m_lo)^2 <= v2_0 + w <= (v_max - m_hi)^2``;
on every line and the transformer the apparent power of the linear flow (plus the no-load shunt
flows) inside a 16-facet polygon inscribed in ``|S| <= S_rated * limit * (1 - m_load)``.

Safety margins: LinDistFlow neglects losses and linearises; its stated error is <= 0.002 p.u. and
<= 1.5 loading points in moderate cases (tests/test_lindistflow.py). The oracle starts with these
margins (``INITIAL_V_MARGIN_PU``, ``INITIAL_LOADING_MARGIN``), then checks its schedule with the
exact AC power flow (:mod:`flexenv.physics.powerflow`, the engine's own); where the AC solution
still leaves a limit it widens that bus's (branch's) margin by the excess plus a step and solves
again, at most ``MAX_MARGIN_ROUNDS`` times. The margins used and the AC check are in the result.

Hard constraint families (what can make the MILP infeasible): ``voltage_min``, ``voltage_max``,
``line_loading``, ``trafo_loading``. Device limits alone are always feasible (idle devices, an
appliance window is never empty) and comfort and EV energy are soft (priced), as in the engine.
An infeasible instance raises :class:`OracleInfeasibleError` naming the family (found by solving
with each grid family alone, then by dropping one at a time).

Windows (model predictive control, ``baselines.mpc``): ``build_model`` / ``solve_engine`` take an
optional :class:`Window`, a part of one day from given states (battery energy, EV need, indoor
temperature, appliance started), on given load and PV, optionally with a position already bought
(deviations then priced at imbalance prices); the schedules then cover the window's PTUs.

Results are cached on disk (pickle) under ``$FLEXENV_CACHE_DIR/oracle/`` (default
``.flexenv_cache/oracle/`` in the current directory), keyed by a hash of the scenario JSON, the
seed, the solver options and the source code of flexenv and baselines.oracle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import time
import types
from pathlib import Path

import highspy
import numpy as np

from baselines.oracle import devices as odev
from baselines.oracle.model import LinExpr, ModelBuilder
from flexenv.engine import Engine
from flexenv.physics import devices as dv
from flexenv.physics import powerflow
from flexenv.physics.lindistflow import lindistflow
from flexenv.policies.ems import Penalties, ProsumerProblem, prepare

GRID_FAMILIES = ("voltage_min", "voltage_max", "line_loading", "trafo_loading")
N_FACETS = 16  # polygon of |S| <= S_max; inscribed, so at most 1 - cos(pi/16) = 1.9 % conservative
INITIAL_V_MARGIN_PU = 0.002  # LinDistFlow's stated voltage error in moderate cases
INITIAL_LOADING_MARGIN = 0.015  # its stated loading error (1.5 points), as a fraction of the limit
V_MARGIN_STEP_PU = 0.001  # added on top of a measured AC excess when a margin is widened
LOADING_MARGIN_STEP = 0.005
MAX_MARGIN_ROUNDS = 4
W_SCALE = 1e-3  # p.u.^2 per unit of the squared-voltage variables
CACHE_FORMAT = 1


class OracleInfeasibleError(RuntimeError):
    """The MILP has no solution; ``families`` names the hard constraint families responsible."""

    def __init__(self, message: str, families: tuple[str, ...]):
        super().__init__(message)
        self.families = families


@dataclasses.dataclass
class Schedules:
    """The oracle's plan, arrays (P, H) over the episode's (or the window's) H PTUs in kW (+ = consumption) unless
    noted: battery_kw (+ charge), ev_kw, heat_pump_kw, pv_used_kw (>= 0), appliance_kw, net_kw,
    q_kvar; appliance_start_ptu (P, D) day PTU of each day's start, -1 = none; battery_energy_kwh
    and indoor_temp_degc (P, H + 1) states; ev_unmet_kwh (P, D); comfort_violation_kh (P,)."""

    battery_kw: np.ndarray
    ev_kw: np.ndarray
    heat_pump_kw: np.ndarray
    pv_used_kw: np.ndarray
    appliance_kw: np.ndarray
    net_kw: np.ndarray
    q_kvar: np.ndarray
    appliance_start_ptu: np.ndarray
    battery_energy_kwh: np.ndarray
    indoor_temp_degc: np.ndarray
    ev_unmet_kwh: np.ndarray
    comfort_violation_kh: np.ndarray

    @property
    def aggregate_kw(self) -> np.ndarray:
        """(H,) portfolio net power: the oracle's day-ahead position."""
        return self.net_kw.sum(axis=0)


@dataclasses.dataclass
class OracleResult:
    """objective_eur: system cost of the schedule (€); dual_bound_eur: HiGHS's lower bound;
    mip_gap: (objective - bound) / |objective|; status: HiGHS model status; build_s, solve_s:
    seconds of the last model build and of all HiGHS runs (margin rounds included);
    margin_rounds: how many times the model was solved; v_margin_pu (n_node, 2) lower/upper
    voltage margins and loading_margin (n_branch,) used last; ac_max_voltage_excess_pu and
    ac_max_loading_excess_pct: worst AC excess over the limits of the final schedule (<= 0: inside);
    n_rows, n_cols, n_integer: model size."""

    objective_eur: float
    dual_bound_eur: float
    mip_gap: float
    status: str
    schedules: Schedules
    build_s: float
    solve_s: float
    highs_version: str
    seed: int
    margin_rounds: int
    v_margin_pu: np.ndarray
    loading_margin: np.ndarray
    ac_max_voltage_excess_pu: float
    ac_max_loading_excess_pct: float
    n_rows: int
    n_cols: int
    n_integer: int
    cached: bool = False


@dataclasses.dataclass
class Window:
    """A part of one day to optimise from given states (model predictive control, ``baselines.mpc``),
    instead of the whole episode from its initial states.

    start_ptu: episode PTU of the first step; n_ptus: length (the window must end by midnight);
    battery_kwh, ev_need_kwh, indoor_temp_degc: (P,) states at the start; appliance_start_ptu: (P,)
    day PTU of today's start, -1 = not started (a started run's remaining profile is fixed load);
    load_kw, pv_kw: (P, n_ptus) the load and available PV to plan on (default: the actual arrays);
    position_kw: (n_ptus,) a day-ahead position already bought (default: none, the position is the
    plan); its energy is a constant and the deviation of the aggregate from it is settled at
    imbalance_short_eur_per_kwh / imbalance_long_eur_per_kwh (n_ptus,) as in the engine (the short
    price is raised to the long one where it is lower, which keeps the model convex); row: batch row.
    """

    start_ptu: int
    n_ptus: int
    battery_kwh: np.ndarray
    ev_need_kwh: np.ndarray
    indoor_temp_degc: np.ndarray
    appliance_start_ptu: np.ndarray
    load_kw: np.ndarray | None = None
    pv_kw: np.ndarray | None = None
    position_kw: np.ndarray | None = None
    imbalance_short_eur_per_kwh: np.ndarray | None = None
    imbalance_long_eur_per_kwh: np.ndarray | None = None
    row: int = 0


def _horizon(engine: Engine, window: Window | None):
    """The arrays the model is built on: the whole episode of batch row 0 from the initial states
    (``window=None``, the oracle), or a window. EV and appliance data per (prosumer, day) in day PTUs;
    day rows cover day PTUs t0 .. t0 + T - 1."""
    P, ppd = engine.P, engine.ppd
    if window is None:
        H, g0, b = engine.n_days * ppd, 0, 0
        D, T, t0 = engine.n_days, ppd, 0
        load, pv = engine.load_kw[0], engine.pv_avail_kw[0]
        states = (engine.battery_initial_kwh, np.zeros(P), engine.fleet.comfort_set_point_degc.astype(float),
                  np.full(P, -1, np.int64))
        position = short = long = None
    else:
        H, g0, b = int(window.n_ptus), int(window.start_ptu), int(window.row)
        day, t0 = divmod(g0, ppd)
        if H < 1 or t0 + H > ppd or day >= engine.n_days:
            raise ValueError(f"window [{g0}, {g0 + H}) must lie inside one day of {ppd} PTUs of the episode")
        D, T = 1, H
        steps = slice(g0, g0 + H)
        load = engine.load_kw[b, :, steps] if window.load_kw is None else np.asarray(window.load_kw, float)
        pv = engine.pv_avail_kw[b, :, steps] if window.pv_kw is None else np.asarray(window.pv_kw, float)
        if load.shape != (P, H) or pv.shape != (P, H):
            raise ValueError(f"window load_kw and pv_kw: expected shape {(P, H)}, got {load.shape} and {pv.shape}")
        states = (window.battery_kwh, window.ev_need_kwh, window.indoor_temp_degc, window.appliance_start_ptu)
        position = short = long = None
        if window.position_kw is not None:
            if window.imbalance_short_eur_per_kwh is None or window.imbalance_long_eur_per_kwh is None:
                raise ValueError("a window with a position needs its imbalance prices (short and long)")
            position = np.asarray(window.position_kw, float)
            long = np.asarray(window.imbalance_long_eur_per_kwh, float)
            short = np.maximum(np.asarray(window.imbalance_short_eur_per_kwh, float), long)
            if position.shape != (H,) or short.shape != (H,) or long.shape != (H,):
                raise ValueError(f"window position and imbalance prices: expected shape {(H,)}")
    days = slice(g0 // ppd, g0 // ppd + D)
    steps = slice(g0, g0 + H)
    return types.SimpleNamespace(
        P=P, D=D, T=T, t0=t0, H=H, row=b, steps=steps, load_kw=load, pv_kw=pv,
        t_out_degc=engine.t_out_degc[b, steps], cop=engine.cop[b, :, steps], day_ahead=engine.day_ahead[b, steps],
        ev_arrival=engine.ev_arrival[b, :, days], ev_departure=engine.ev_departure[b, :, days],
        ev_energy_kwh=engine.ev_energy_kwh[b, :, days], app_earliest=engine.app_earliest[b, :, days],
        app_latest=engine.app_latest[b, :, days], battery_kwh=np.asarray(states[0], float),
        ev_need_kwh=np.asarray(states[1], float), indoor_temp_degc=np.asarray(states[2], float),
        appliance_start_ptu=np.asarray(states[3], np.int64), position_kw=position, short_eur_per_kwh=short,
        long_eur_per_kwh=long)


def highs_version() -> str:
    return highspy.Highs().version()


# ------------------------------------------------------------------------------------ model
def _reshape(expr: LinExpr, shape) -> LinExpr:
    """The same expression with its elements laid out in another shape (C order)."""
    return LinExpr(shape, [(np.reshape(i, shape), np.reshape(c, shape)) for i, c in expr.terms],
                   np.reshape(expr.const, shape))


def _slots(group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of each group as a padded table: (n_groups, width) member index and validity mask."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    first = np.searchsorted(g, np.arange(n_groups))
    rank = np.arange(len(g)) - first[g]
    width = max(int(rank.max(initial=-1)) + 1, 1)
    table = np.zeros((n_groups, width), dtype=np.int64)
    mask = np.zeros((n_groups, width), dtype=bool)
    table[g, rank] = order
    mask[g, rank] = True
    return table, mask


def _prepared(engine: Engine, hz, penalties: Penalties):
    """The shared builders' inputs: battery, heat pump and PV over the horizon (P rows), EV and
    appliance per day ((P*D) rows, row p*D + d, day horizon)."""
    P, D, T, H = hz.P, hz.D, hz.T, hz.H
    dt = engine.dt_h
    fl = engine.fleet
    zP, zPD = np.zeros(P), np.zeros(P * D)
    no_ev = dv.EVSessions(np.zeros(P, np.int64), np.zeros(P, np.int64), zP)
    no_app = dv.ApplianceParams(engine.appliance_profile_kw, np.full(P, H, np.int64), np.full(P, H, np.int64))
    episode = ProsumerProblem(
        dt, hz.load_kw, hz.pv_kw, hz.t_out_degc, hz.cop,
        np.zeros((P, H)), np.zeros((P, H)), np.full((P, H), np.inf), np.full((P, H), np.inf),
        dv.ProsumerDevices(dv.PVParams(fl.pv_kwp), engine.battery, engine.ev, no_ev, engine.heat_pump, no_app),
        hz.battery_kwh, zP, hz.indoor_temp_degc, np.full(P, -1, np.int64), 0)

    def rep(x):  # (P,) -> (P*D,), row p*D + d
        return np.repeat(np.asarray(x), D, axis=0)

    b, hp = engine.battery, engine.heat_pump
    day_devices = dv.ProsumerDevices(
        dv.PVParams(zPD),
        dv.BatteryParams(zPD, zPD, zPD, rep(b.eta_charge), rep(b.eta_discharge), rep(b.self_discharge_per_h)),
        dv.EVParams(*(rep(x) for x in engine.ev)),
        dv.EVSessions(hz.ev_arrival.reshape(-1), hz.ev_departure.reshape(-1), hz.ev_energy_kwh.reshape(-1)),
        dv.HeatPumpParams(zPD, *(rep(x) for x in hp[1:])),
        dv.ApplianceParams(rep(engine.appliance_profile_kw), hz.app_earliest.reshape(-1), hz.app_latest.reshape(-1)),
    )
    PD = P * D
    # states that carry into the day rows: the EV need of a session under way, today's appliance start
    day = ProsumerProblem(
        dt, np.zeros((PD, T)), np.zeros((PD, T)), np.zeros(T), np.ones((PD, T)), np.zeros((PD, T)),
        np.zeros((PD, T)), np.full((PD, T), np.inf), np.full((PD, T), np.inf), day_devices,
        zPD, rep(hz.ev_need_kwh), rep(hp.t_set_degc), rep(hz.appliance_start_ptu), hz.t0)
    return prepare(episode, penalties), prepare(day, penalties)


def build_model(engine: Engine, v_margin_pu=None, loading_margin=None, families=GRID_FAMILIES,
                window: Window | None = None):
    """The portfolio MILP of the engine's current episode (batch row 0). Returns (model, pieces).

    v_margin_pu: (n_node, 2) lower/upper voltage margins (default ``INITIAL_V_MARGIN_PU``);
    loading_margin: (n_branch,) fractions of the loading limits (default ``INITIAL_LOADING_MARGIN``);
    families: which hard grid families to include; window: a :class:`Window` of one day to build
    instead of the whole episode (its states, data, position and batch row).
    """
    unknown = set(families) - set(GRID_FAMILIES)
    if unknown:
        raise ValueError(f"unknown constraint families {sorted(unknown)}; known: {GRID_FAMILIES}")
    sc = engine.scenario
    hz = _horizon(engine, window)
    P, H = hz.P, hz.H
    dt = engine.dt_h
    prefs = sc.preferences
    penalties = Penalties(prefs.comfort_penalty_eur_per_kh, prefs.ev_unmet_penalty_eur_per_kwh)
    pr, pr_day = _prepared(engine, hz, penalties)
    m = ModelBuilder()

    # ---- devices (shared builders) and per-prosumer net / reactive power
    bat_expr, bat = odev.battery(m, pr, "bat")
    hp_expr, hp = odev.heat_pump(m, pr, "hp")
    pv_expr, pv = odev.pv(m, pr, "pv")
    ev_day, ev = odev.ev(m, pr_day, "ev")
    app_day, app = odev.appliance(m, pr_day, "app")
    # an appliance started before the window: its remaining profile is fixed load (zero otherwise)
    app_day = app_day + pr_day.base_kw
    ev_expr, app_expr = _reshape(ev_day, (P, H)), _reshape(app_day, (P, H))
    device_net = LinExpr((P, H), const=pr.base_kw) + bat_expr + hp_expr + pv_expr + ev_expr + app_expr
    tan_phi = np.tan(np.arccos(engine.fleet.power_factor))[:, None]
    reactive = (LinExpr((P, H), const=hz.load_kw) + hp_expr + app_expr) * tan_phi
    net = m.add_var("net", (P, H), -np.inf, np.inf)
    q = m.add_var("q", (P, H), -np.inf, np.inf)
    m.add_rows(LinExpr.of(net) - device_net, lb=0.0, ub=0.0)
    m.add_rows(LinExpr.of(q) - reactive, lb=0.0, ub=0.0)
    if hz.position_kw is None:
        # day-ahead energy of the aggregate position (= actual net: no imbalance under perfect foresight)
        m.add_cost(LinExpr.of(net, dt * hz.day_ahead[None, :]))
    else:
        # a position already bought: its energy is a constant, the aggregate's deviation is settled
        # at the imbalance prices (short above, long below the position)
        m.add_cost(LinExpr((1,), const=dt * (hz.day_ahead * hz.position_kw).sum()))
        short = m.add_var("short", (H,), 0.0, np.inf, cost=dt * hz.short_eur_per_kwh)
        long = m.add_var("long", (H,), 0.0, np.inf, cost=-dt * hz.long_eur_per_kwh)
        aggregate = LinExpr((H,), [(net[p], np.ones(H)) for p in range(P)])  # vectorised over time
        m.add_rows(aggregate - LinExpr.of(short) + LinExpr.of(long), lb=hz.position_kw, ub=hz.position_kw)
    # an EV session with a zero charging rate: the engine reports its whole need unmet (a constant)
    m.add_cost(LinExpr((1,), const=penalties.ev_unmet_eur_per_kwh * _stranded_ev_kwh(engine, hz).sum()))

    # ---- grid: LinDistFlow on the feeder tree
    f = engine.feeder
    ldf = lindistflow(f)
    n_node = f.n_node
    parent, branch = f.node_parent, f.node_branch
    kw_to_pu = 1e-3 / f.s_base_mva
    nodes = np.arange(1, n_node)
    e = branch[nodes]
    tap2 = np.where(f.node_edge_forward[nodes], np.abs(f.branch_tap[e]) ** 2, 1.0)
    fp = m.add_var("flow_p", (n_node, H), -np.inf, np.inf)  # row 0 (slack) unused
    fq = m.add_var("flow_q", (n_node, H), -np.inf, np.inf)
    lv_node = np.zeros(n_node, bool)
    lv_node[f.bus_node[engine.lv_bus]] = True
    v2_0 = np.zeros(n_node)
    v2_0[f.bus_node] = ldf.v2_0_pu
    margin = np.full((n_node, 2), INITIAL_V_MARGIN_PU) if v_margin_pu is None else np.asarray(v_margin_pu, float)
    fc = sc.feeder
    w_lo = np.full(n_node, -np.inf)
    w_hi = np.full(n_node, np.inf)
    if "voltage_min" in families:
        w_lo = np.where(lv_node, (fc.v_min_pu + margin[:, 0]) ** 2 - v2_0, -np.inf)
    if "voltage_max" in families:
        w_hi = np.where(lv_node, (fc.v_max_pu - margin[:, 1]) ** 2 - v2_0, np.inf)
    w_lo[0] = w_hi[0] = 0.0
    # w in units of W_SCALE p.u.^2: keeps the voltage rows' coefficients near 1 (numerics of the LP)
    w = m.add_var("dv2", (n_node, H), np.repeat(w_lo[:, None], H, 1) / W_SCALE, np.repeat(w_hi[:, None], H, 1) / W_SCALE)
    if np.any(w_lo > w_hi):
        raise OracleInfeasibleError("the voltage band with its safety margin is empty at a node",
                                    ("voltage_min", "voltage_max"))

    node_of_prosumer = f.bus_node[engine.prosumer_bus]
    members, member_ok = _slots(node_of_prosumer, n_node)
    children, child_ok = _slots(parent[nodes], n_node)
    children = children + 1  # _slots indexed `nodes`, which start at node 1
    for flow, inj in ((fp, net), (fq, q)):
        balance = LinExpr.of(flow[nodes])
        for s in range(children.shape[1]):
            balance.add_term(flow[children[nodes, s]], -child_ok[nodes, s][:, None].astype(float))
        for s in range(members.shape[1]):
            balance.add_term(inj[members[nodes, s]], -member_ok[nodes, s][:, None].astype(float))
        m.add_rows(balance, lb=0.0, ub=0.0)
    drop = LinExpr.of(w[nodes]) - LinExpr.of(w[parent[nodes]], (1.0 / tap2)[:, None])
    drop = drop + LinExpr.of(fp[nodes], (2.0 * kw_to_pu / W_SCALE * f.branch_r_pu[e])[:, None])
    drop = drop + LinExpr.of(fq[nodes], (2.0 * kw_to_pu / W_SCALE * f.branch_x_pu[e])[:, None])
    m.add_rows(drop, lb=0.0, ub=0.0)

    # loading polygon, rows only where the flow could reach the limit
    is_trafo = f.branch_kind[e] == 1
    limit_pct = np.where(is_trafo, fc.trafo_loading_max_pct, fc.line_loading_max_pct)
    lmargin = np.full(f.n_branch, INITIAL_LOADING_MARGIN) if loading_margin is None else np.asarray(loading_margin, float)
    s_max = ldf.branch_s_rated_kva[e] * limit_pct / 100.0 * (1.0 - lmargin[e]) * np.cos(np.pi / N_FACETS)
    reach_p, reach_q = _reach_kw(engine, hz, pr, pr_day, tan_phi[:, 0])
    sub = ldf.flow_incidence[e]  # (n_node - 1, n_bus)
    p0, q0 = ldf.branch_p0_kw[e][:, None], ldf.branch_q0_kvar[e][:, None]
    could = np.hypot(np.abs(p0) + sub @ reach_p, np.abs(q0) + sub @ reach_q) > s_max[:, None]
    fam_ok = np.where(is_trafo, "trafo_loading" in families, "line_loading" in families)
    rated = ldf.branch_s_rated_kva[e] > 0
    use = could & (fam_ok & rated)[:, None]
    angles = 2.0 * np.pi * np.arange(N_FACETS) / N_FACETS
    for a in angles:
        row = LinExpr.of(fp[nodes], np.cos(a)) + LinExpr.of(fq[nodes], np.sin(a))
        m.add_rows(row, ub=s_max[:, None] - np.cos(a) * p0 - np.sin(a) * q0, mask=use)
    if np.any(use & (s_max[:, None] < 0)):
        raise OracleInfeasibleError("a loading limit with its safety margin is below zero",
                                    ("line_loading", "trafo_loading"))

    pieces = {"horizon": hz, "w_scale": W_SCALE, "pr": pr, "pr_day": pr_day, "net": net, "q": q, "bat": bat, "hp": hp, "pv": pv,
              "ev": ev, "app": app, "ev_expr": ev_expr, "app_expr": app_expr, "hp_expr": hp_expr, "bat_expr": bat_expr,
              "w": w, "v2_0": v2_0, "lv_node": lv_node, "n_loading_rows": int(use.sum()) * N_FACETS}
    return m, pieces


def _stranded_ev_kwh(engine: Engine, hz=None) -> np.ndarray:
    """(P, D) energy of EV sessions that cannot charge at all (rate 0): unmet in the engine, which
    reports it in the session's last PTU (counted where that PTU is inside the horizon)."""
    hz = _horizon(engine, None) if hz is None else hz
    ev = engine.ev
    session = (hz.ev_departure > hz.ev_arrival) & (ev.capacity_kwh > 0)[:, None]
    reported = (hz.ev_departure - 1 >= hz.t0) & (hz.ev_departure - 1 < hz.t0 + hz.T)
    return np.where(session & reported & (ev.p_max_kw <= 0)[:, None], hz.ev_energy_kwh, 0.0)


def _reach_kw(engine: Engine, hz, pr, pr_day, tan_phi):
    """(n_bus, H) largest |P| and |Q| each bus's prosumers could inject in each PTU: where the
    subtree of a branch cannot reach its limit, the polygon rows are left out."""
    P, D = hz.P, hz.D
    app_max = pr_day.app_prof.max(axis=1).reshape(P, D).max(axis=1)
    ev_max = pr_day.ev_pmax.reshape(P, D).max(axis=1)
    up = pr.base_kw + (pr.bat_pc + ev_max + pr.hp_pmax + app_max)[:, None]
    down = pr.pv_kw + (pr.bat_pd + ev_max * engine.ev.v2g)[:, None] - hz.load_kw
    reach_p = np.maximum(up, np.maximum(down, 0.0))
    reach_q = tan_phi[:, None] * (hz.load_kw + (pr.hp_pmax + app_max)[:, None])
    return engine.bus_matrix.T @ reach_p, engine.bus_matrix.T @ reach_q


# ------------------------------------------------------------------------------------ solve
@dataclasses.dataclass
class _Run:
    status: str
    feasible: bool
    objective: float
    bound: float
    gap: float
    x: np.ndarray | None
    seconds: float


def _run(lp, mip_rel_gap: float, time_limit_s: float | None, threads: int, relax: bool = False) -> _Run:
    # HiGHS keeps one thread pool per process; reset it so a different `threads` takes effect
    highspy.Highs.resetGlobalScheduler(True)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    if relax:  # LP relaxation by the interior-point solver (with crossover): the fastest here
        h.setOptionValue("solve_relaxation", True)
        h.setOptionValue("solver", "ipm")
    t0 = time.perf_counter()
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the oracle model")
    if h.run() == highspy.HighsStatus.kError:
        raise RuntimeError(f"HiGHS failed: {h.modelStatusToString(h.getModelStatus())}")
    seconds = time.perf_counter() - t0
    info = h.getInfo()
    status = h.modelStatusToString(h.getModelStatus())
    feasible = info.primal_solution_status == 2
    obj = float(info.objective_function_value) if feasible else float("nan")
    mip = len(lp.integrality_) > 0 and not relax
    bound = float(info.mip_dual_bound) if mip else obj
    gap = float(info.mip_gap) if mip and np.isfinite(info.mip_gap) else 0.0
    x = np.asarray(h.getSolution().col_value) if feasible else None
    return _Run(status, feasible, obj, bound, gap, x, seconds)


def _ac_excess(engine: Engine, net_kw: np.ndarray, q_kvar: np.ndarray):
    """AC power flow of a schedule (PTUs as a batch). Returns (voltage excess (H, n_bus, 2) p.u.
    below v_min / above v_max at LV buses, loading excess (H, n_branch) as a fraction of the limit)."""
    f, fc = engine.feeder, engine.scenario.feeder
    res = powerflow.solve(f, net_kw.T @ engine.bus_matrix, q_kvar.T @ engine.bus_matrix, warn=False)
    if not np.all(res.converged):
        raise RuntimeError("AC power flow of the oracle schedule did not converge")
    lv = engine.lv_bus[None, :]
    v = np.stack([np.where(lv, fc.v_min_pu - res.vm_pu, -np.inf), np.where(lv, res.vm_pu - fc.v_max_pu, -np.inf)], -1)
    load = np.full((net_kw.shape[1], f.n_branch), -np.inf)
    lines = f.branch_kind == 0
    load[:, lines] = res.line_loading_pct / fc.line_loading_max_pct - 1.0
    load[:, ~lines] = res.trafo_loading_pct / fc.trafo_loading_max_pct - 1.0
    return v, load


def _schedules(engine: Engine, x: np.ndarray, pc) -> Schedules:
    hz = pc["horizon"]
    P, D, T = hz.P, hz.D, hz.T

    def val(expr):
        out = expr.const.copy()
        for idx, coef in expr.terms:
            out = out + coef * x[idx]
        return out

    y = x[pc["app"]["start"]].reshape(P, D, T)
    started = y.max(axis=2) > 0.5
    unmet = x[pc["ev"]["unmet"]].reshape(P, D)
    dt = engine.dt_h
    has_hp = engine.heat_pump.p_max_kw > 0
    comfort = (x[pc["hp"]["below"]] + x[pc["hp"]["above"]]).sum(axis=1) * dt * has_hp
    return Schedules(
        battery_kw=val(pc["bat_expr"]), ev_kw=val(pc["ev_expr"]), heat_pump_kw=val(pc["hp_expr"]),
        pv_used_kw=x[pc["pv"]["used"]], appliance_kw=val(pc["app_expr"]), net_kw=x[pc["net"]],
        q_kvar=x[pc["q"]], appliance_start_ptu=np.where(started, hz.t0 + y.argmax(axis=2), -1),
        battery_energy_kwh=x[pc["bat"]["e"]], indoor_temp_degc=x[pc["hp"]["temp"]],
        ev_unmet_kwh=np.where(pc["pr_day"].ev_pmax.reshape(P, D) > 0, unmet, 0.0) + _stranded_ev_kwh(engine, hz),
        comfort_violation_kh=comfort,
    )


def _diagnose(engine: Engine, v_margin, l_margin, mip_rel_gap, time_limit_s, threads, window=None) -> tuple[str, ...]:
    """Which hard grid families make the model infeasible: those infeasible on their own, else those
    whose removal restores feasibility."""
    def feasible(fams):
        m, _ = build_model(engine, v_margin, l_margin, fams, window)
        return _run(m.build(), mip_rel_gap, time_limit_s, threads).feasible

    alone = tuple(fam for fam in GRID_FAMILIES if not feasible((fam,)))
    if alone:
        return alone
    return tuple(fam for fam in GRID_FAMILIES if feasible(tuple(x for x in GRID_FAMILIES if x != fam)))


# ------------------------------------------------------------------------------------ cache
def _code_version() -> str:
    """Hash of the source of flexenv and baselines.oracle: any code change invalidates the cache."""
    import flexenv

    h = hashlib.sha256()
    for root in (Path(flexenv.__file__).parent, Path(__file__).parent):
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """Folder of cached oracle results: ``$FLEXENV_CACHE_DIR/oracle`` or ``./.flexenv_cache/oracle``."""
    return Path(os.environ.get("FLEXENV_CACHE_DIR", ".flexenv_cache")) / "oracle"


def cache_key(scenario, seed: int, options: dict) -> str:
    h = hashlib.sha256()
    h.update(scenario.model_dump_json().encode())
    h.update(repr((int(seed), sorted(options.items()), CACHE_FORMAT)).encode())
    h.update(_code_version().encode())
    return h.hexdigest()[:32]


# ------------------------------------------------------------------------------------ API
def solve(scenario, seed: int | None = None, *, mip_rel_gap: float = 1e-4, time_limit_s: float | None = 300.0,
          threads: int = 1, cache: bool = True, ac_check: bool = True) -> OracleResult:
    """Perfect-foresight portfolio optimum of one episode (see the module docstring).

    scenario: a validated :class:`flexenv.scenario.Scenario`, a registered environment id or a preset
    name; seed: episode seed (default: the
    scenario's seed); mip_rel_gap, time_limit_s, threads: HiGHS options (a time limit returns the best
    schedule found with its gap, status "Time limit reached"); cache: read/write the disk cache;
    ac_check: verify the schedule with the AC power flow and widen the margins where needed.
    Raises :class:`OracleInfeasibleError` when no schedule satisfies the hard limits.
    """
    if isinstance(scenario, str):  # a registered environment id or a preset name
        from flexenv.envs.registry import env_ids, scenario_for
        from flexenv.scenario import load

        scenario = scenario_for(scenario) if scenario in env_ids() else load(scenario)
    seed = int(scenario.seed if seed is None else seed)
    options = {"mip_rel_gap": float(mip_rel_gap), "time_limit_s": time_limit_s, "threads": int(threads),
               "ac_check": bool(ac_check)}
    path = cache_dir() / f"{cache_key(scenario, seed, options)}.pkl"
    if cache and path.exists():
        with open(path, "rb") as fh:
            result = pickle.load(fh)
        result.cached = True
        return result
    engine = Engine(scenario, batch_size=1)
    engine.reset([seed])
    result = solve_engine(engine, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s, threads=threads, ac_check=ac_check)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh)
        os.replace(tmp, path)  # atomic: parallel test workers never read half a file
    return result


def solve_engine(engine: Engine, *, mip_rel_gap: float = 1e-4, time_limit_s: float | None = 300.0, threads: int = 1,
                 ac_check: bool = True, window: Window | None = None) -> OracleResult:
    """As :func:`solve`, on an engine already reset (batch row 0), without the cache.

    window: optimise only a :class:`Window` of one day from its states (model predictive control);
    the schedules then cover the window's PTUs and the objective is the window's system cost."""
    f = engine.feeder
    v_margin = np.full((f.n_node, 2), INITIAL_V_MARGIN_PU)
    l_margin = np.full(f.n_branch, INITIAL_LOADING_MARGIN)
    solve_s = 0.0
    for rounds in range(1, MAX_MARGIN_ROUNDS + 2):
        t0 = time.perf_counter()
        m, pc = build_model(engine, v_margin, l_margin, window=window)
        lp = m.build()
        build_s = time.perf_counter() - t0
        run = _run(lp, mip_rel_gap, time_limit_s, threads)
        solve_s += run.seconds
        if not run.feasible:
            if run.status == "Infeasible":
                fams = _diagnose(engine, v_margin, l_margin, mip_rel_gap, time_limit_s, threads, window)
                raise OracleInfeasibleError(
                    f"oracle MILP is infeasible: hard constraint families {list(fams)} cannot be met "
                    f"(with safety margins; comfort and EV energy are soft)", fams)
            raise RuntimeError(f"HiGHS found no feasible schedule (status {run.status!r})")
        sched = _schedules(engine, run.x, pc)
        v_exc, l_exc = _ac_excess(engine, sched.net_kw, sched.q_kvar)
        if not ac_check:
            break
        # widen the margin of each node (branch) the AC solution leaves the limit at, and re-solve
        bus_worst = v_exc.max(axis=0)  # (n_bus, 2)
        node_worst = np.full((f.n_node, 2), -np.inf)
        np.maximum.at(node_worst, f.bus_node, bus_worst)
        branch_worst = l_exc.max(axis=0)
        bad_v, bad_l = node_worst > 0, branch_worst > 0
        if not (bad_v.any() or bad_l.any()) or rounds > MAX_MARGIN_ROUNDS:
            break
        v_margin = np.where(bad_v, v_margin + node_worst + V_MARGIN_STEP_PU, v_margin)
        l_margin = np.where(bad_l, l_margin + branch_worst + LOADING_MARGIN_STEP, l_margin)
    n_int = int(np.concatenate(m.integer).sum())
    return OracleResult(
        objective_eur=run.objective, dual_bound_eur=run.bound, mip_gap=run.gap, status=run.status, schedules=sched,
        build_s=build_s, solve_s=solve_s, highs_version=highs_version(), seed=int(engine.seeds[pc["horizon"].row]),
        margin_rounds=rounds, v_margin_pu=v_margin, loading_margin=l_margin,
        ac_max_voltage_excess_pu=float(v_exc.max()), ac_max_loading_excess_pct=float(100.0 * l_exc.max()),
        n_rows=m.n_row, n_cols=m.n_col, n_integer=n_int)


def solve_relaxation(engine: Engine, *, threads: int = 1, time_limit_s: float | None = None) -> tuple[float, float]:
    """LP relaxation of the portfolio model with the initial margins (interior point + crossover):
    (objective €, solve seconds)."""
    m, _ = build_model(engine)
    run = _run(m.build(), 0.0, time_limit_s, threads, relax=True)
    return run.objective, run.seconds
