"""Energy-box EMS: each prosumer optimises its own devices against the signals it receives.

Problem (per prosumer, over the remaining horizon of H PTUs, ``dt`` hours each)::

    min  sum_t dt * (pi_t * max(n_t, 0) - pe_t * max(-n_t, 0))             bill
       + sum_t dt * M * (max(n_t - cap_imp_t, 0) + max(-n_t - cap_exp_t, 0))   soft caps
       + sum_t dt * w_c * (max(t_min - T_t, 0) + max(T_t - t_max, 0))           comfort (K·h)
       + w_ev * unmet EV energy at the end of the session window                EV
    n_t = load_t + appliance_t - pv_used_t + battery_t + ev_t + heat_pump_t

subject to the device dynamics of :mod:`flexenv.physics.devices`. Caps are soft with a large penalty
``M`` so an infeasible request (cap below the inflexible load) gives the minimal violation, reported
in the plan, instead of an error; likewise EV energy that cannot fit its window is reported as unmet
energy and comfort violations as K·h. The weights are in :class:`Penalties`.

Default algorithm, ``EMSConfig(method="lp")`` (numba, parallel over prosumers, no solver call): for a
fixed appliance start the problem is a linear programme, solved by the interior-point method of
:mod:`flexenv.policies.ems_lp` (exact up to its 1e-9 tolerance; the battery's and EV's charge /
discharge binaries of the MILP are not needed because simultaneous charge and discharge never pays
when export is priced at most at import). The appliance start comes from a best-first branch and
bound: by weak duality, each solve's state-row duals give every other start a lower bound (per PTU,
the cheapest way to meet that start's load from the grid and the devices at their shadow prices);
the start with the lowest bound is solved next, until none can beat the best plan (proven
optimal) or ``appliance_candidates`` further solves are spent.

Alternative, ``method="descent"`` (the former default, :data:`DESCENT_PROFILE`): PV curtailment is
folded into the cost
of the net power, which turns the cost of every PTU into a convex piecewise-linear (PL) function
``F_t`` of the net power without PV. Then (0) under a cap, a few descent sweeps with the cap
penalty raised in steps (a continuation: the devices competing for the headroom share it by their
marginal values, as in an ascending auction, where descent with the full penalty at once would leave
it to whichever device planned first), (1) block coordinate descent over the devices: the
appliance by enumerating its starts, and each storage-like device (battery, EV, heat pump + building)
by an exact dynamic programme on convex PL value functions of its one-dimensional state (stored
energy, delivered EV energy, indoor temperature), until a sweep stops improving (monotone). (2) The
appliance's next-best starts, each with the storages re-planned. (3) Exchange steps where descent
stalls at a kink of ``F_t`` (a tight cap, zero net) although two devices would gain by trading power
at a PTU: one device re-plans seeing its partners' marginal values (from the backward value
functions and a mirroring forward cost-to-arrive pass, so a trade can be absorbed in a partner's
future or past) for up to a trade radius, the others re-plan exactly, and the step is kept only if
the true objective improves (else the radius shrinks).

Exactness caveats (measured against the MILP in ``benchmarks/ems.py``): block coordinate descent is
not guaranteed to reach the joint optimum, the LP method is (for the continuous part; the appliance
start is proven optimal unless the solve budget runs out first); with export price > import price the
bill is non-convex at zero net power: descent uses the convex hull of the per-device stage cost, the LP
prices export at the import price there (the executed plan stays feasible, only optimality is lost).

Horizon conventions (shared with the MILP in ``baselines.oracle.prosumer``):
- arrays cover PTUs ``t0 .. t0 + H - 1`` of the day;
- EV: present on horizon steps with ``arrival <= t0 + k < departure``; an overnight session
  (departure beyond the horizon) must be served by the end of the horizon (conservative). The
  energy to deliver is ``energy_needed_kwh`` if the EV arrives at or after ``t0``, else the current
  ``ev_need_kwh`` state;
- appliance: a started appliance's remaining profile is fixed load; an unstarted one may start in
  ``[max(earliest, t0), min(latest, t0 + H - len)]`` (len = profile length without trailing zeros),
  or at ``t0`` when its latest start has passed; if its earliest start is beyond the horizon it is
  not planned. Energy beyond the horizon is not counted.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

from flexenv.physics import devices as dv
from flexenv.policies import ems_lp
from flexenv.policies.nb_arrays import borrow

BIG_KW = 1.0e6  # stands for "no cap" inside the numeric kernels


class Penalties(NamedTuple):
    """Soft-constraint weights of the prosumer objective (EMS and MILP use the same)."""

    comfort_eur_per_kh: float = 2.0  # per K·h outside the comfort band
    ev_unmet_eur_per_kwh: float = 3.0  # per kWh the EV misses at departure
    cap_violation_eur_per_kwh: float = 20.0  # per kWh beyond an import or export cap


class ProsumerProblem(NamedTuple):
    """One planning problem for P prosumers over the H PTUs starting at day PTU ``t0``.

    dt_h: PTU length (h). load_kw, pv_avail_kw: (P, H) inflexible load and available PV power (kW).
    t_out_degc: (H,) outdoor temperature, or (P, H) one per prosumer (planning only; `execute` takes (H,)).
    cop: (P, H) heat-pump COP. import_price_eur_per_kwh,
    export_price_eur_per_kwh: (P, H). import_cap_kw, export_cap_kw: (P, H), ``inf`` = no cap (the export
    cap bounds ``-n``). devices: :class:`flexenv.physics.devices.ProsumerDevices` (day PTU indices).
    battery_energy_kwh, ev_need_kwh, indoor_temp_degc: (P,) current states; appliance_start_ptu: (P,)
    int64 (-1 = not started). t0: first PTU of the horizon.
    """

    dt_h: float
    load_kw: np.ndarray
    pv_avail_kw: np.ndarray
    t_out_degc: np.ndarray
    cop: np.ndarray
    import_price_eur_per_kwh: np.ndarray
    export_price_eur_per_kwh: np.ndarray
    import_cap_kw: np.ndarray
    export_cap_kw: np.ndarray
    devices: dv.ProsumerDevices
    battery_energy_kwh: np.ndarray
    ev_need_kwh: np.ndarray
    indoor_temp_degc: np.ndarray
    appliance_start_ptu: np.ndarray
    t0: int = 0


class Prepared(NamedTuple):
    """Horizon-relative numeric arrays (see module docstring for the conventions); shapes (P,) or (P, H)."""

    dt: float
    base_kw: np.ndarray  # load + remaining profile of an already started appliance
    pv_kw: np.ndarray
    pi: np.ndarray
    pe: np.ndarray
    cap_imp: np.ndarray  # BIG_KW where uncapped
    cap_exp: np.ndarray
    bat_cap: np.ndarray
    bat_pc: np.ndarray
    bat_pd: np.ndarray
    bat_eta_c: np.ndarray
    bat_eta_d: np.ndarray
    bat_keep: np.ndarray
    bat_e0: np.ndarray
    ev_cap: np.ndarray
    ev_pmax: np.ndarray
    ev_eta: np.ndarray
    ev_v2g: np.ndarray
    ev_lo: np.ndarray  # first present horizon step
    ev_hi: np.ndarray  # one past the last present horizon step (0 = no session)
    ev_need0: np.ndarray
    hp_pmax: np.ndarray
    hp_a: np.ndarray  # building retention per PTU
    hp_beta: np.ndarray  # (P, H): (1 - a) * t_out
    hp_gain: np.ndarray  # (P, H): (1 - a) * R * cop, K per kW
    hp_tmin: np.ndarray
    hp_tmax: np.ndarray
    hp_T0: np.ndarray
    app_prof: np.ndarray  # (P, L)
    app_has: np.ndarray  # bool: an unstarted appliance to plan
    app_lo: np.ndarray  # first allowed start (horizon step)
    app_hi: np.ndarray  # last allowed start (horizon step)
    w_comfort: float
    w_ev: float
    w_cap: float


def prepare(pb: ProsumerProblem, pen: Penalties = Penalties()) -> Prepared:
    """Validate a problem and convert it to horizon-relative arrays. Raises ValueError on bad input."""
    dt = dv._dt(pb.dt_h)
    load = dv._as_float(pb.load_kw, "load_kw", ndim=2)
    P, H = load.shape
    if H < 1:
        raise ValueError("load_kw: horizon must have at least one PTU")
    f2 = lambda x, n: dv._as_float(x, n, shape=(P, H))  # noqa: E731
    pv = f2(pb.pv_avail_kw, "pv_avail_kw")
    dv._nonneg(pv, "pv_avail_kw")
    # outdoor temperature: one curve for all (H,), or one per prosumer (P, H) when the prosumers of
    # one call live in different environments (the engine plans all batch rows at once)
    tout = np.asarray(pb.t_out_degc, dtype=np.float64)
    tout = np.broadcast_to(dv._as_float(tout, "t_out_degc", shape=(H,) if tout.ndim == 1 else (P, H)), (P, H))
    cop = f2(pb.cop, "cop")
    if np.any(cop < 1.0 - 1e-12):
        raise ValueError("cop: must be >= 1")
    pi = f2(pb.import_price_eur_per_kwh, "import_price_eur_per_kwh")
    pe = f2(pb.export_price_eur_per_kwh, "export_price_eur_per_kwh")
    caps = []
    for name in ("import_cap_kw", "export_cap_kw"):
        c = np.asarray(getattr(pb, name), dtype=np.float64)
        if c.shape != (P, H) or np.any(np.isnan(c)):
            raise ValueError(f"{name}: expected shape {(P, H)} without NaN (inf = no cap), got {c.shape}")
        dv._nonneg(c, name)
        caps.append(np.minimum(c, BIG_KW))
    d = pb.devices
    bat = dv.validate_battery(d.battery, P)
    ev, ses = dv.validate_ev(d.ev, d.sessions, P)
    hp = dv.validate_heat_pump(d.heat_pump, P)
    app = dv.validate_appliance(d.appliance, P)
    e0 = dv._as_float(pb.battery_energy_kwh, "battery_energy_kwh", shape=(P,))
    if np.any(e0 < -1e-9) or np.any(e0 > bat.capacity_kwh + 1e-9):
        raise ValueError("battery_energy_kwh: must be within [0, capacity_kwh]")
    e0 = np.clip(e0, 0.0, bat.capacity_kwh)
    need_state = dv._as_float(pb.ev_need_kwh, "ev_need_kwh", shape=(P,))
    dv._nonneg(need_state, "ev_need_kwh")
    T0 = dv._as_float(pb.indoor_temp_degc, "indoor_temp_degc", shape=(P,))
    start = dv._as_int(pb.appliance_start_ptu, "appliance_start_ptu", shape=(P,))
    t0 = int(pb.t0)
    if t0 < 0:
        raise ValueError("t0: must be >= 0")
    if min(pen) < 0:
        raise ValueError("penalties: must be >= 0")
    if np.any(np.abs(pi) >= pen.cap_violation_eur_per_kwh) or np.any(np.abs(pe) >= pen.cap_violation_eur_per_kwh):
        raise ValueError("prices: magnitude must stay below cap_violation_eur_per_kwh")

    # EV window relative to the horizon, deadline clipped to the horizon end
    lo = np.clip(ses.arrival_ptu - t0, 0, H)
    hi = np.clip(ses.departure_ptu - t0, 0, H)
    has_ev = (ev.capacity_kwh > 0) & (hi > lo) & (ev.p_max_kw > 0)
    hi = np.where(has_ev, hi, 0)
    lo = np.where(has_ev, lo, 0)
    need0 = np.where(ses.arrival_ptu >= t0, ses.energy_needed_kwh, np.minimum(need_state, ev.capacity_kwh))
    need0 = np.where(has_ev, need0, 0.0)

    # appliance: started -> fixed load; unstarted -> start window inside the horizon
    prof = app.profile_kw
    L = prof.shape[1]
    nz = prof > 0
    length = np.where(nz.any(1), L - np.argmax(nz[:, ::-1], axis=1), 0)
    base = load.copy()
    k = np.arange(H)
    started = (start >= 0) & (length > 0)
    for_rows = np.nonzero(started)[0]
    if for_rows.size:  # vectorised over the started rows
        off = (t0 + k)[None, :] - start[for_rows, None]
        ok = (off >= 0) & (off < L)
        base[for_rows] += np.where(ok, prof[for_rows][np.arange(for_rows.size)[:, None], np.clip(off, 0, L - 1)], 0.0)
    a_lo = np.maximum(app.earliest_start_ptu - t0, 0)
    a_hi = np.minimum(app.latest_start_ptu - t0, H - length)
    a_hi = np.maximum(a_hi, a_lo)
    overdue = app.latest_start_ptu - t0 < 0
    a_lo = np.where(overdue, 0, a_lo)
    a_hi = np.where(overdue, 0, a_hi)
    app_has = (length > 0) & (~started) & (a_lo < H)
    a_hi = np.minimum(a_hi, H - 1)

    a = np.exp(-dt / (hp.r_k_per_kw * hp.c_kwh_per_k))
    return Prepared(
        dt, base, pv, pi, pe, caps[0], caps[1],
        bat.capacity_kwh, np.where(bat.capacity_kwh > 0, bat.p_charge_max_kw, 0.0),
        np.where(bat.capacity_kwh > 0, bat.p_discharge_max_kw, 0.0), bat.eta_charge, bat.eta_discharge,
        (1.0 - bat.self_discharge_per_h) ** dt, e0,
        ev.capacity_kwh, np.where(has_ev, ev.p_max_kw, 0.0), ev.eta_charge, ev.v2g, lo.astype(np.int64),
        hi.astype(np.int64), need0,
        hp.p_max_kw, a, (1.0 - a)[:, None] * tout, (1.0 - a)[:, None] * hp.r_k_per_kw[:, None] * cop,
        hp.t_min_degc, hp.t_max_degc, T0,
        prof, app_has, np.where(app_has, a_lo, 0).astype(np.int64), np.where(app_has, a_hi, 0).astype(np.int64),
        float(pen.comfort_eur_per_kh), float(pen.ev_unmet_eur_per_kwh), float(pen.cap_violation_eur_per_kwh),
    )


# =============================================================================================
# Numeric kernel
# =============================================================================================
NMAX = 512  # max breakpoints of a value function per stage (coarsened beyond, counted)


@nb.njit(cache=True)
def _f_grid(n, pi, pe, ci, ce, M):
    """Cost rate (EUR/h) of net power n (kW) with soft caps."""
    return pi * max(n, 0.0) - pe * max(-n, 0.0) + M * (max(n - ci, 0.0) + max(-n - ce, 0.0))


@nb.njit(cache=True)
def _build_F(pi, pe, ci, ce, M, A, delta, nsub, kx, ks):
    """PL cost rate F(n) = min_{0<=c<=A} f(n - c) of the net power without PV (PV folded in), kinks
    smoothed over ``delta`` kW (nsub sub-kinks each). Fills kinks kx, slopes ks (len nk + 1); returns
    (nk, value at kx[0])."""
    fk = (-ce, 0.0, ci)
    fs = (pe - M, pe, pi, pi + M)
    # leftmost minimiser of f (where the slope turns >= 0)
    j = 2
    for i in range(3):
        if fs[i + 1] >= 0.0:
            j = i
            break
    xs = fk[j]
    s0 = fs[0]
    x_first = fk[0] if j > 0 else xs
    v_first = _f_grid(x_first, pi, pe, ci, ce, M)  # F = f left of the minimiser
    # kinks of F with their slope jumps: f's kinks left of xs, xs, xs + A, f's kinks right (+ A);
    # written straight into kx (positions) and ks (jumps), nsub copies each when smoothing
    nk = 0
    for q in range(5):
        if q < j:
            x, jump = fk[q], fs[q + 1] - fs[q]
        elif q == j:
            x, jump = xs, -fs[j]
        elif q == j + 1:
            x, jump = xs + A, fs[j + 1]
        elif q - 1 < 3:
            x, jump = fk[q - 1] + A, fs[q] - fs[q - 1]
        else:
            break
        if jump == 0.0:
            continue
        if delta <= 0.0 or nsub <= 1:
            kx[nk] = x
            ks[nk] = jump
            nk += 1
        else:
            for r in range(nsub):
                kx[nk] = x + delta * ((r + 0.5) / nsub - 0.5)
                ks[nk] = jump / nsub
                nk += 1
    # sort kinks (insertion sort, few elements), then turn jumps into slopes
    for i in range(1, nk):
        x = kx[i]
        sj = ks[i]
        q = i - 1
        while q >= 0 and kx[q] > x:
            kx[q + 1] = kx[q]
            ks[q + 1] = ks[q]
            q -= 1
        kx[q + 1] = x
        ks[q + 1] = sj
    if nk == 0:
        ks[0] = s0
        return 0, v_first - s0 * x_first  # single line, value at 0
    v0 = v_first + s0 * (kx[0] - x_first)  # left asymptote kept exact
    # jumps -> slopes in place: s_{i+1} = s_i + jump_i, computed from the right end
    acc = s0
    for i in range(nk):
        acc += ks[i]
    ks[nk] = acc
    for i in range(nk - 1, 0, -1):
        ks[i] = ks[i + 1] - ks[i]
    ks[0] = s0
    return nk, v0


@nb.njit(cache=True)
def _fill_F(pi, pe, ci, ce, M, pv, FX, FS, FN, FV):
    """The exact PL cost tables (:func:`_build_F`, no smoothing) of every PTU of one prosumer, with cap
    penalty weight M."""
    for t in range(pi.shape[0]):
        nk, v0 = _build_F(pi[t], pe[t], ci[t], ce[t], M, pv[t], 0.0, 1, FX[t], FS[t])
        FN[t] = nk
        FV[t] = v0


@nb.njit(cache=True)
def _F_eval(n, kx, ks, nk, v0):
    if nk == 0:
        return v0 + ks[0] * n
    if n <= kx[0]:
        return v0 + ks[0] * (n - kx[0])
    v = v0
    for i in range(nk - 1):
        if n <= kx[i + 1]:
            return v + ks[i + 1] * (n - kx[i])
        v += ks[i + 1] * (kx[i + 1] - kx[i])
    return v + ks[nk] * (n - kx[nk - 1])


BIG_MU = 1.0e9


@nb.njit(cache=True)
def _find(x, n, q, h):
    """np.searchsorted(x[:n], q), the first index with x >= q (x sorted, q not NaN): a binary search,
    or with a hint h >= 0 a walk from index h, shorter when the answer is known to be near h."""
    if h < 0:
        return np.searchsorted(x[:n], q)
    i = min(h, n)
    while i > 0 and x[i - 1] >= q:
        i -= 1
    while i < n and x[i] < q:
        i += 1
    return i


@nb.njit(cache=True)
def _pl_slopes(x, y, n, q, h):
    """Left and right slopes of a PL function (points x, y) at q (0 for a single point); h: a hint
    for :func:`_find` (-1: none)."""
    if n == 1:
        return 0.0, 0.0
    i = _find(x, n, q, h)  # first index with x >= q
    if i <= 0:
        s = (y[1] - y[0]) / (x[1] - x[0])
        return s, s
    if i >= n:
        s = (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2])
        return s, s
    sl = (y[i] - y[i - 1]) / (x[i] - x[i - 1])
    if x[i] - q <= 1e-12 * (1.0 + abs(q)) and i < n - 1:
        return sl, (y[i + 1] - y[i]) / (x[i + 1] - x[i])
    return sl, sl


@nb.njit(cache=True)
def _F0(n, pi, pe, ci, ce, M, A):
    """Exact cost rate with PV folded in: min over x in [n - A, n] of f(x), and the minimiser."""
    best_x = n - A
    best_f = _f_grid(best_x, pi, pe, ci, ce, M)
    for kink in (-ce, 0.0, ci):
        x = min(max(kink, n - A), n)
        fx = _f_grid(x, pi, pe, ci, ce, M)
        if fx < best_f - 1e-12:
            best_f = fx
            best_x = x
    return best_f, best_x


@nb.njit(cache=True)
def _exchange_F(kx, ks, nk, v0, n_cur, mu_p, mu_m, r_p, r_m, gx, gs):
    """F with the marginal values of another device around the current net n_cur: on
    [n_cur, n_cur + r_m] the slope is min(F', mu_m) (another device can give up that much power at
    mu_m per kWh), on [n_cur - r_p, n_cur] it is max(F', mu_p) (another device would take that much
    for mu_p per kWh); F elsewhere. Fills kinks gx / slopes gs; returns (n kinks, value at gx[0])."""
    m = 0
    for i in range(nk):
        gx[m] = kx[i]
        m += 1
    gx[m] = n_cur
    m += 1
    if r_p > 0.0:
        gx[m] = n_cur - r_p
        m += 1
    if r_m > 0.0:
        gx[m] = n_cur + r_m
        m += 1
    for i in range(1, m):  # insertion sort (few points)
        x = gx[i]
        q = i - 1
        while q >= 0 and gx[q] > x:
            gx[q + 1] = gx[q]
            q -= 1
        gx[q + 1] = x
    k = 1  # drop duplicates
    for i in range(1, m):
        if gx[i] > gx[k - 1] + 1e-12:
            gx[k] = gx[i]
            k += 1
    m = k
    # slope of each segment: left of gx[0], between points, right of the last point
    for i in range(m + 1):
        if i == 0:
            mid = gx[0] - 1.0
        elif i == m:
            mid = gx[m - 1] + 1.0
        else:
            mid = 0.5 * (gx[i - 1] + gx[i])
        j = 0
        while j < nk and kx[j] < mid:
            j += 1
        s = ks[j] if nk > 0 else ks[0]
        if n_cur < mid < n_cur + r_m:
            s = min(s, mu_m)
        elif n_cur - r_p < mid < n_cur:
            s = max(s, mu_p)
        gs[i] = s
    # value at gx[0]: F(n_cur) minus the integral of the new slopes from gx[0] to n_cur
    v = _F_eval(n_cur, kx, ks, nk, v0)
    for i in range(1, m):
        if gx[i] <= n_cur + 1e-12:
            v -= gs[i] * (gx[i] - gx[i - 1])
    return m, v


@nb.njit(cache=True)
def _lower_hull(x, y, n):
    """In-place lower convex hull of points sorted by x (merges near-equal x, drops collinear points)."""
    m = 0
    for i in range(n):
        xi = x[i]
        yi = y[i]
        if m > 0 and xi - x[m - 1] <= 1e-12 * (1.0 + abs(xi)):
            if yi < y[m - 1]:
                y[m - 1] = yi
                # the lowered point may break convexity behind it
                while m >= 3:
                    s1 = (y[m - 2] - y[m - 3]) / (x[m - 2] - x[m - 3])
                    s2 = (y[m - 1] - y[m - 2]) / (x[m - 1] - x[m - 2])
                    if s2 <= s1 + 1e-11:
                        x[m - 2] = x[m - 1]
                        y[m - 2] = y[m - 1]
                        m -= 1
                    else:
                        break
            continue
        while m >= 2:
            s1 = (y[m - 1] - y[m - 2]) / (x[m - 1] - x[m - 2])
            s2 = (yi - y[m - 1]) / (xi - x[m - 1])
            if s2 <= s1 + 1e-11:
                m -= 1
            else:
                break
        x[m] = xi
        y[m] = yi
        m += 1
    return m


@nb.njit(cache=True)
def _pl_eval(x, y, n, q, h):
    """Evaluate a PL function given by points at q (linear extrapolation outside); h: a hint for
    :func:`_find` (-1: none)."""
    if n == 1:
        return y[0]
    if q <= x[0]:
        return y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (q - x[0])
    if q >= x[n - 1]:
        return y[n - 1] + (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]) * (q - x[n - 1])
    i = _find(x, n, q, h) - 1
    if i < 0:
        i = 0
    return y[i] + (y[i + 1] - y[i]) / (x[i + 1] - x[i]) * (q - x[i])


@nb.njit(cache=True)
def _pl_eval_sorted(x, y, n, q, k, out):
    """out[i] = _pl_eval(x, y, n, q[i]) for the sorted points q[:k] (x non-decreasing): the segment index
    moves forward instead of a binary search per point; same segments and arithmetic, so same bits."""
    j = 0  # first index with x[j] >= the current point (interior points only)
    for i in range(k):
        qi = q[i]
        if n == 1:
            out[i] = y[0]
        elif qi <= x[0]:
            out[i] = y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (qi - x[0])
        elif qi >= x[n - 1]:
            out[i] = y[n - 1] + (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]) * (qi - x[n - 1])
        else:
            while x[j] < qi:
                j += 1
            s = max(j - 1, 0)
            out[i] = y[s] + (y[s + 1] - y[s]) / (x[s + 1] - x[s]) * (qi - x[s])


@nb.njit(cache=True)
def _stage_cost(t, umin, umax, kc, kd, other, kx, ks, nk, v0, cx, cy):
    """Convex hull of c(u) = dt-free cost rate F(other + p(u)), p = kc*u (u>=0) or kd*u (u<0),
    as points (cx, cy) on [umin, umax]; returns the number of points."""
    m = 0
    cx[m] = umin
    m += 1
    for i in range(nk):
        p = kx[i] - other
        u = p / kc if p >= 0.0 else p / kd
        if umin < u < umax:
            cx[m] = u
            m += 1
    if umin < 0.0 < umax:
        cx[m] = 0.0
        m += 1
    if umax > umin:
        cx[m] = umax
        m += 1
    # sort (kinks are monotone already except the inserted 0)
    for i in range(1, m):
        x = cx[i]
        q = i - 1
        while q >= 0 and cx[q] > x:
            cx[q + 1] = cx[q]
            q -= 1
        cx[q + 1] = x
    for i in range(m):
        u = cx[i]
        p = kc * u if u >= 0.0 else kd * u
        cy[i] = _F_eval(other + p, kx, ks, nk, v0)
    return _lower_hull(cx, cy, m)


@nb.njit(cache=True)
def _pen(s, w, lo, hi):
    return w * (max(lo - s, 0.0) + max(s - hi, 0.0))


@nb.njit(cache=True)
def _storage_dp(H, dt, s0, alpha, beta, umin, umax, kc, kd, lo, hi, pw, plo, phi, term_w, term_target,
                other, FX, FS, FN, FV, vx, vv, vn, tx, ty, rlo, rhi, CX, CY, CN, out_p, out_s, stats, mu_p, mu_m):
    """Exact DP of one storage-like device against the convex PL cost of its net power.

    State s_{t+1} = alpha s_t + beta_t + u_t, u_t in [umin_t, umax_t], s in [lo, hi] (hard);
    power p_t = kc_t u (u >= 0) or kd_t u (u < 0) in kW; stage cost dt * F_t(other_t + p_t) +
    pw_t * dist(s_{t+1}, [plo_t, phi_t]); terminal term_w * max(term_target - s_H, 0).
    Writes power out_p (H,) and states out_s (H+1,); returns the planned cost (EUR). Also writes the
    reachable state intervals rlo, rhi (H+1,) and the stage costs CX, CY (H, .), CN (H,), which
    :func:`_past_values` reuses.
    Also writes the device's marginal values per kWh of grid energy at its planned point: mu_p[t]
    (what one more kWh at t is worth to it, -BIG when it cannot take more) and mu_m[t] (what one kWh
    less at t costs it, +BIG when it cannot give less), from the slopes of V_{t+1}.
    """
    # forward reachable intervals (value functions only live there)
    rlo[0] = s0
    rhi[0] = s0
    for t in range(H):
        a = alpha * rlo[t] + beta[t] + umin[t]
        b = alpha * rhi[t] + beta[t] + umax[t]
        a = max(a, lo)
        b = min(b, hi)
        if b < a:  # only through rounding: collapse to a point
            a = min(max(a, lo), hi)
            b = a
        rlo[t + 1] = a
        rhi[t + 1] = b
    # stage costs (convex hulls as points), computed once for the backward, forward and past passes
    for t in range(H):
        CN[t] = _stage_cost(t, umin[t], umax[t], kc[t], kd[t], other[t], FX[t], FS[t], FN[t], FV[t], CX[t], CY[t])
    # terminal value function on R_H
    m = 0
    tx[m] = rlo[H]
    m += 1
    for kink in (plo[H - 1], phi[H - 1], term_target):
        if rlo[H] < kink < rhi[H]:
            tx[m] = kink
            m += 1
    if rhi[H] > rlo[H]:
        tx[m] = rhi[H]
        m += 1
    for i in range(1, m):
        x = tx[i]
        q = i - 1
        while q >= 0 and tx[q] > x:
            tx[q + 1] = tx[q]
            q -= 1
        tx[q + 1] = x
    for i in range(m):
        ty[i] = _pen(tx[i], pw[H - 1], plo[H - 1], phi[H - 1]) + term_w * max(term_target - tx[i], 0.0)
    m = _lower_hull(tx, ty, m)
    vn[H] = m
    vx[H, :m] = tx[:m]
    vv[H, :m] = ty[:m]
    # backward pass: V_t(s) = min_u dt*c_t(u) + V_{t+1}(alpha s + beta + u) + pen_t(s)
    for t in range(H - 1, 0, -1):
        cx = CX[t]
        cy = CY[t]
        nc = CN[t]
        # inf-convolution W(z) = min_y V(y) + dt*c(y - z): merge V's segments with those of c~(v)=c(-v)
        nV = vn[t + 1]
        ax = vx[t + 1]
        ay = vv[t + 1]
        zx0 = ax[0] - cx[nc - 1]
        zy0 = ay[0] + dt * cy[nc - 1]
        tx[0] = zx0
        ty[0] = zy0
        xm, ym = zx0, zy0  # running point, kept in registers (= tx[m - 1], ty[m - 1])
        i = 0
        j = nc - 1  # c~ walks c backwards
        m = 1
        sv = sc = 0.0
        i_sv = j_sc = -1  # segments whose slopes sv, sc hold (a slope is computed once per segment)
        while i < nV - 1 or j > 0:
            take_v = False
            if j <= 0:
                take_v = True
            elif i < nV - 1:
                if i != i_sv:
                    sv = (ay[i + 1] - ay[i]) / (ax[i + 1] - ax[i])
                    i_sv = i
                if j != j_sc:
                    sc = dt * (cy[j - 1] - cy[j]) / (cx[j] - cx[j - 1])  # slope of c~(v) = c(-v)
                    j_sc = j
                take_v = sv <= sc
            if take_v:
                dx = ax[i + 1] - ax[i]
                dy = ay[i + 1] - ay[i]
                i += 1
            else:
                dx = cx[j] - cx[j - 1]
                dy = dt * (cy[j - 1] - cy[j])
                j -= 1
            xm += dx
            ym += dy
            tx[m] = xm
            ty[m] = ym
            m += 1
        # V_t(s) = W(alpha s + beta) + pen_{t-1}(s) on R_t
        a_ = rlo[t]
        b_ = rhi[t]
        nW = m
        k = 0
        ox = vx[t]
        oy = vv[t]
        ox[k] = a_
        k += 1
        for q in range(nW):
            s = (tx[q] - beta[t]) / alpha
            if a_ < s < b_:
                ox[k] = s
                k += 1
            if k >= NMAX - 4:
                break
        for kink in (plo[t - 1], phi[t - 1]):
            if a_ < kink < b_:
                ox[k] = kink
                k += 1
        if b_ > a_:
            ox[k] = b_
            k += 1
        for ii in range(1, k):  # nearly sorted: insertion sort is linear here
            x = ox[ii]
            q = ii - 1
            while q >= 0 and ox[q] > x:
                ox[q + 1] = ox[q]
                q -= 1
            ox[q + 1] = x
        iw = 0
        for q in range(k):
            s = ox[q]
            zq = alpha * s + beta[t]
            while iw < nW - 2 and tx[iw + 1] < zq:
                iw += 1
            if nW == 1:
                wv = ty[0]
            else:
                wv = ty[iw] + (ty[iw + 1] - ty[iw]) / (tx[iw + 1] - tx[iw]) * (zq - tx[iw])
            oy[q] = wv + _pen(s, pw[t - 1], plo[t - 1], phi[t - 1])
        k = _lower_hull(ox, oy, k)
        if k > NMAX // 2:  # coarsen (keeps the ends; chords stay convex)
            stats[0] += 1
            kk = 1
            for q in range(2, k - 1, 2):
                ox[kk] = ox[q]
                oy[kk] = oy[q]
                kk += 1
            ox[kk] = ox[k - 1]
            oy[kk] = oy[k - 1]
            k = kk + 1
        vn[t] = k
        stats[1] = max(stats[1], k)
    # forward pass
    s = s0
    out_s[0] = s0
    total = 0.0
    for t in range(H):
        cx = CX[t]
        cy = CY[t]
        nc = CN[t]
        z = alpha * s + beta[t]
        ylo = max(z + cx[0], vx[t + 1, 0])
        yhi = min(z + cx[nc - 1], vx[t + 1, vn[t + 1] - 1])
        if yhi < ylo:  # rounding only
            yhi = ylo
        nV = vn[t + 1]
        xv = vx[t + 1]
        yv = vv[t + 1]
        # h(y) = V(y) + dt c(y - z) is convex: bisect the points {ylo, V's breakpoints inside, yhi}
        # for the first one where h's right slope is >= 0; the minimiser lies in the linear piece of V
        # just before it, at an end or at one of c's breakpoints
        i0 = np.searchsorted(xv[:nV], ylo, side="right")
        i1 = np.searchsorted(xv[:nV], yhi, side="left")  # V points strictly inside: i0 .. i1-1
        nS = i1 - i0 + 2
        lo_j = 0
        hi_j = nS - 1
        while lo_j < hi_j:
            mid = (lo_j + hi_j) // 2
            y = ylo if mid == 0 else xv[i0 + mid - 1]
            _, gv = _pl_slopes(xv, yv, nV, y, i0 + max(mid - 1, 0))  # y is (next to) that point
            _, gc = _pl_slopes(cx, cy, nc, y - z, -1)
            if gv + dt * gc >= 0.0:
                hi_j = mid
            else:
                lo_j = mid + 1
        ya = ylo if lo_j <= 1 else xv[i0 + lo_j - 2]
        yb = yhi if lo_j == nS - 1 else (ylo if lo_j == 0 else xv[i0 + lo_j - 1])
        best_y = ya
        best_h = np.inf
        best_u = np.inf
        near = i0 + max(lo_j - 1, 0)  # V's point next to [ya, yb]
        for q in range(nc + 2):
            if q == 0:
                y = ya
            elif q == 1:
                y = yb
            else:
                y = z + cx[q - 2]
                if y < ya or y > yb:
                    continue
            h = _pl_eval(xv, yv, nV, y, near) + dt * _pl_eval(cx, cy, nc, y - z, -1)
            u = abs(y - z)
            if h < best_h - 1e-12 or (h <= best_h + 1e-12 and u < best_u):
                best_h = h
                best_y = y
                best_u = u
        u = best_y - z
        p = kc[t] * u if u >= 0.0 else kd[t] * u
        out_p[t] = p
        # one-sided slopes of V_{t+1} at the planned state
        gl, gr = _pl_slopes(xv, yv, nV, best_y, near)
        room_up = u < umax[t] - 1e-9 and best_y < vx[t + 1, nV - 1] - 1e-9
        room_dn = u > umin[t] + 1e-9 and best_y > vx[t + 1, 0] + 1e-9
        du_up = 1.0 / (kc[t] * dt) if u >= 0.0 else 1.0 / (kd[t] * dt)  # state gain per kWh of grid energy
        du_dn = 1.0 / (kc[t] * dt) if u > 0.0 else 1.0 / (kd[t] * dt)
        mu_p[t] = -gr * du_up if room_up else -BIG_MU
        mu_m[t] = -gl * du_dn if room_dn else BIG_MU
        s = best_y
        out_s[t + 1] = s
        total += _pen(s, pw[t], plo[t], phi[t])
    total += term_w * max(term_target - s, 0.0)
    return total


@nb.njit(cache=True)
def _past_values(H, dt, s0, alpha, beta, umin, umax, kc, kd, pw, plo, phi,
                 rlo, rhi, tx, ty, CX, CY, CN, qx, qy, out_s, mu_p, mu_m):
    """Forward pass mirroring the backward one: cost-to-arrive C_t(s) (convex PL, the best past
    reaching state s at t). A device can also absorb a change of its power at t in its past (state
    s_t moves instead of s_{t+1}); its marginal values become the better of future and past.
    Takes the reachable intervals, stage costs and states of the device's last :func:`_storage_dp`."""
    qx[0] = s0
    qy[0] = 0.0
    nq = 1
    for t in range(H):
        u = out_s[t + 1] - alpha * out_s[t] - beta[t]
        st_ = out_s[t]
        if nq >= 2 and t > 0:
            gl, gr = _pl_slopes(qx, qy, nq, st_, -1)
            du_up = 1.0 / (kc[t] * dt) if u >= 0.0 else 1.0 / (kd[t] * dt)
            du_dn = 1.0 / (kc[t] * dt) if u > 0.0 else 1.0 / (kd[t] * dt)
            if u < umax[t] - 1e-9 and st_ > qx[0] + 1e-9:  # take more now, arrive lower
                mu_p[t] = max(mu_p[t], gl * du_up / alpha)
            if u > umin[t] + 1e-9 and st_ < qx[nq - 1] - 1e-9:  # take less now, arrive higher
                mu_m[t] = min(mu_m[t], gr * du_dn / alpha)
        if t == H - 1:
            break
        # C_{t+1}(y) = min_z G(z) + dt c_t(y - z) + pen_t(y), G(z) = C_t((z - beta) / alpha)
        cx = CX[t]
        cy = CY[t]
        nc = CN[t]
        xm = alpha * qx[0] + beta[t] + cx[0]
        ym = qy[0] + dt * cy[0]
        tx[0] = xm
        ty[0] = ym
        i = 0
        j = 0
        m = 1
        sg = sc = 0.0
        i_sg = j_sc = -1  # segments whose slopes sg, sc hold (a slope is computed once per segment)
        while i < nq - 1 or j < nc - 1:
            take_g = False
            if j >= nc - 1:
                take_g = True
            elif i < nq - 1:
                if i != i_sg:
                    sg = (qy[i + 1] - qy[i]) / (alpha * (qx[i + 1] - qx[i]))
                    i_sg = i
                if j != j_sc:
                    sc = dt * (cy[j + 1] - cy[j]) / (cx[j + 1] - cx[j])
                    j_sc = j
                take_g = sg <= sc
            if take_g:
                dx = alpha * (qx[i + 1] - qx[i])
                dy = qy[i + 1] - qy[i]
                i += 1
            else:
                dx = cx[j + 1] - cx[j]
                dy = dt * (cy[j + 1] - cy[j])
                j += 1
            xm += dx
            ym += dy
            tx[m] = xm
            ty[m] = ym
            m += 1
        a_ = rlo[t + 1]
        b_ = rhi[t + 1]
        k = 0
        qx[k] = a_
        k += 1
        for q in range(m):
            if a_ < tx[q] < b_:
                qx[k] = tx[q]
                k += 1
            if k >= NMAX - 4:
                break
        for kink in (plo[t], phi[t]):
            if a_ < kink < b_:
                qx[k] = kink
                k += 1
        if b_ > a_:
            qx[k] = b_
            k += 1
        for ii in range(1, k):
            x = qx[ii]
            q = ii - 1
            while q >= 0 and qx[q] > x:
                qx[q + 1] = qx[q]
                q -= 1
            qx[q + 1] = x
        _pl_eval_sorted(tx, ty, m, qx, k, qy)
        for q in range(k):
            qy[q] += _pen(qx[q], pw[t], plo[t], phi[t])
        k = _lower_hull(qx, qy, k)
        if k > NMAX // 8:  # coarser than the backward pass: these only rank trades
            kk = 1
            for q in range(2, k - 1, 2):
                qx[kk] = qx[q]
                qy[kk] = qy[q]
                kk += 1
            qx[kk] = qx[k - 1]
            qy[kk] = qy[k - 1]
            k = kk + 1
        nq = k


@nb.njit(cache=True)
def _appliance_block(H, dt, prof, lo, hi, other, FX, FS, FN, FV):
    """Best start in [lo, hi] (earliest on ties) against the PL cost; returns (start, cost delta)."""
    L = prof.shape[0]
    best = lo
    best_c = np.inf
    for s in range(lo, hi + 1):
        c = 0.0
        for k in range(L):
            t = s + k
            if t >= H:
                break
            if prof[k] != 0.0:
                c += _F_eval(other[t] + prof[k], FX[t], FS[t], FN[t], FV[t]) - _F_eval(other[t], FX[t], FS[t], FN[t], FV[t])
        if c < best_c - 1e-12:
            best_c = c
            best = s
    return best, best_c * dt


@nb.njit(cache=True)
def _appliance_costs(H, prof, lo, hi, other, FX, FS, FN, FV, out):
    """Cost rate sum of every start in [lo, hi] against the PL cost (out[s - lo])."""
    FX, FS = borrow(FX), borrow(FS)
    L = prof.shape[0]
    for s in range(lo, hi + 1):
        c = 0.0
        for k in range(L):
            t = s + k
            if t >= H:
                break
            if prof[k] != 0.0:
                c += _F_eval(other[t] + prof[k], FX[t], FS[t], FN[t], FV[t]) - _F_eval(other[t], FX[t], FS[t], FN[t], FV[t])
        out[s - lo] = c


EV, HP, BAT, APP = 0, 1, 2, 3  # rows of the per-prosumer power array; storage devices first
ORDER = (APP, EV, HP, BAT)  # block order of a sweep


@nb.njit(cache=True)
def _same_bits(a, b):
    """a and b are the same float, signed zeros told apart (a DP fed either gives the same bits)."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


@nb.njit(cache=True)
def _solve_block(d, H, dt, base, pwr, st, pen, mup, mum, rup, rdn, exch, radius, past,
                 UMIN, UMAX, KC, KD, S0, ALPHA, BETA, LO, HI, PW, PLO, PHI, TW, TT,
                 prof, a_lo, a_hi, FX, FS, FN, FV, GX, GS, GN, GV,
                 vx, vv, vn, tx, ty, RLO, RHI, CX, CY, CN, other, out_p, OUT_S, pending,
                 memo_other, memo_ok, memo_coarse, has_past, buf_ok, stats):
    """Re-plan device d exactly against the others' current powers (rows of pwr). With ``exch`` the
    device also sees, per PTU, the best marginal value of another storage device for up to
    ``radius`` kW of trade (see :func:`_exchange_F`). Updates pwr[d], st[d], pen[d], and the
    device's marginal values mup/mum (future part; with ``past``, pending[d] is set and
    :func:`_finish_past_values` adds the past part) and power room rup/rdn (kW). RLO, RHI, CX, CY,
    CN, OUT_S: per storage device, what its last DP leaves for the past values.

    A storage device's exact re-plan is skipped when its DP would see exactly the same inputs as its
    last one whose results are still its plan (memo_ok[d]: the others' net power memo_other[d]);
    the DP is deterministic, so it would return that plan again. memo_coarse[d]: stages that DP
    coarsened (counted again); has_past[d]: mup/mum include the past part; buf_ok[d]: RLO..OUT_S[d]
    are that DP's (needed to add the past part later)."""
    # the work arrays of the inner loops, without reference counting (see nb_arrays.borrow)
    FX, FS, GX, GS = borrow(FX), borrow(FS), borrow(GX), borrow(GS)
    vx, vv, tx, ty = borrow(vx), borrow(vv), borrow(tx), borrow(ty)
    CX, CY = borrow(CX), borrow(CY)
    for t in range(H):
        o = base[t]
        for e in range(4):
            if e != d:
                o += pwr[e, t]
        other[t] = o
    # skip only if the marginal values can end as a re-plan would leave them: with the past part
    # exactly when asked for (it can be added later from that DP's buffers, not removed)
    reusable = memo_ok[d] and (past or not has_past[d]) and (has_past[d] or not past or buf_ok[d])
    if d != APP and not exch and reusable:
        same = True
        for t in range(H):
            if not _same_bits(other[t], memo_other[d, t]):
                same = False
                break
        if same:  # the DP would return the current plan again
            stats[0] += memo_coarse[d]
            pending[d] = past and not has_past[d]
            return -1
    AX, AS, AN, AV = FX, FS, FN, FV
    if exch:
        for t in range(H):  # best trading partner per PTU and side
            bp = -BIG_MU
            bm = BIG_MU
            rp = 0.0
            rm = 0.0
            for e in range(3):
                if e == d:
                    continue
                if rup[e, t] > 1e-9 and mup[e, t] > bp:
                    bp = mup[e, t]
                    rp = rup[e, t]
                if rdn[e, t] > 1e-9 and mum[e, t] < bm:
                    bm = mum[e, t]
                    rm = rdn[e, t]
            nk, v0 = _exchange_F(FX[t], FS[t], FN[t], FV[t], other[t] + pwr[d, t], bp, bm,
                                 min(rp, radius), min(rm, radius), GX[t], GS[t])
            GN[t] = nk
            GV[t] = v0
        AX, AS, AN, AV = GX, GS, GN, GV
    if d == APP:
        start, _ = _appliance_block(H, dt, prof, a_lo, a_hi, other, AX, AS, AN, AV)
        pwr[APP, :] = 0.0
        for k in range(prof.shape[0]):
            if start + k < H:
                pwr[APP, start + k] = prof[k]
        return start
    coarse0 = stats[0]
    pen[d] = _storage_dp(H, dt, S0[d], ALPHA[d], BETA[d], UMIN[d], UMAX[d], KC[d], KD[d], LO[d], HI[d],
                         PW[d], PLO[d], PHI[d], TW[d], TT[d], other, AX, AS, AN, AV,
                         vx, vv, vn, tx, ty, RLO[d], RHI[d], CX[d], CY[d], CN[d], out_p, OUT_S[d], stats,
                         mup[d], mum[d])
    pending[d] = past
    has_past[d] = False
    memo_ok[d] = not exch  # an exchange re-plan is not the exact DP against the others
    buf_ok[d] = not exch
    memo_coarse[d] = stats[0] - coarse0
    memo_other[d, :] = other
    for t in range(H):
        p = out_p[t]
        pwr[d, t] = p
        rup[d, t] = max(KC[d, t] * UMAX[d, t] - p, 0.0)
        rdn[d, t] = max(p - KD[d, t] * UMIN[d, t], 0.0)
    st[d, :] = OUT_S[d]
    return -1


@nb.njit(cache=True)
def _finish_past_values(pending, H, dt, S0, ALPHA, BETA, UMIN, UMAX, KC, KD, PW, PLO, PHI,
                        RLO, RHI, CX, CY, CN, OUT_S, tx, ty, qx, qy, mup, mum, has_past):
    """Add the past marginal values (:func:`_past_values`) of the storage devices whose last DP asked
    for them. They are computed only when they are about to be read: the marginal values of a plan
    that is undone (a rejected exchange step) or re-planned first are never needed, so computing
    them at the DP was wasted most of the time. Same inputs, so the same values."""
    tx, ty, qx, qy, CX, CY = borrow(tx), borrow(ty), borrow(qx), borrow(qy), borrow(CX), borrow(CY)
    for d in range(3):
        if pending[d]:
            _past_values(H, dt, S0[d], ALPHA[d], BETA[d], UMIN[d], UMAX[d], KC[d], KD[d], PW[d], PLO[d], PHI[d],
                         RLO[d], RHI[d], tx, ty, CX[d], CY[d], CN[d], qx, qy, OUT_S[d], mup[d], mum[d])
            pending[d] = False
            has_past[d] = True


@nb.njit(cache=True)
def _objective(H, dt, base, pwr, pen, pi, pe, ci, ce, M, pv):
    """True objective of a plan: device penalties + sum_t dt * F0(net)."""
    obj = pen[0] + pen[1] + pen[2]
    for t in range(H):
        n = base[t] + pwr[0, t] + pwr[1, t] + pwr[2, t] + pwr[3, t]
        fv, _ = _F0(n, pi[t], pe[t], ci[t], ce[t], M, pv[t])
        obj += dt * fv
    return obj


@nb.njit(cache=True)
def _trade_gain(H, mup, mum, has):
    """Largest per-kWh gain of moving power between two storage devices at one PTU, from their
    marginal values (<= 0: no such trade pays at the current plan)."""
    g = -BIG_MU
    for t in range(H):
        for a in range(3):
            if not has[a] or mup[a, t] <= -BIG_MU:
                continue
            for b in range(3):
                if b != a and has[b] and mum[b, t] < BIG_MU:
                    g = max(g, mup[a, t] - mum[b, t])
    return g


@nb.njit(cache=True)
def _plan_outputs(P, H):
    """The output arrays of both plan kernels (powers, start, states, objective, stats)."""
    return (np.zeros((P, H)), np.zeros((P, H)), np.zeros((P, H)), np.zeros((P, H)), np.zeros((P, H)),
            np.full(P, -1, dtype=np.int64), np.zeros((P, H + 1)), np.zeros((P, H + 1)), np.zeros((P, H + 1)),
            np.zeros(P), np.zeros((P, 4), dtype=np.int64))


@nb.njit(cache=True)
def _pv_use(H, net_without_pv, pi, pe, ci, ce, w_cap, pv, out):
    """PV use per PTU: the exact minimiser of the cost within [n - A, n] (ties keep the most PV)."""
    for t in range(H):
        n = net_without_pv[t]
        _, x = _F0(n, pi[t], pe[t], ci[t], ce[t], w_cap, pv[t])
        out[t] = n - x


@nb.njit(cache=True, parallel=True)
def _plan_kernel(dt, base, pv, pi, pe, ci, ce,
                 bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, bat_e0,
                 ev_cap, ev_pmax, ev_eta, ev_v2g, ev_lo, ev_hi, ev_need0,
                 hp_pmax, hp_a, hp_beta, hp_gain, hp_tmin, hp_tmax, hp_T0,
                 app_prof, app_has, app_lo, app_hi,
                 w_comfort, w_ev, w_cap, max_sweeps, exchange_rounds, radius0, radius_min, tol, app_candidates,
                 use_past, cap_ramp):
    P, H = base.shape
    (out_bat, out_ev, out_hp, out_app, out_pv, out_start, s_bat, s_ev, s_hp, objective, stats) = _plan_outputs(P, H)
    # stats: coarsened stages, max breakpoints, DP calls, exchanges kept
    KM = 8
    for p in nb.prange(P):
        FX = np.empty((H, KM))
        FS = np.empty((H, KM + 1))
        FN = np.empty(H, dtype=np.int64)
        FV = np.empty(H)
        GX = np.empty((H, KM + 4))
        GS = np.empty((H, KM + 5))
        GN = np.empty(H, dtype=np.int64)
        GV = np.empty(H)
        vx = np.empty((H + 1, NMAX))
        vv = np.empty((H + 1, NMAX))
        vn = np.empty(H + 1, dtype=np.int64)
        tx = np.empty(2 * NMAX + 64)
        ty = np.empty(2 * NMAX + 64)
        # per storage device, from its last DP: reachable intervals, stage costs, states
        rlo = np.empty((3, H + 1))
        rhi = np.empty((3, H + 1))
        cx = np.empty((3, H, KM + 16))
        cy = np.empty((3, H, KM + 16))
        cn = np.empty((3, H), dtype=np.int64)
        out_s = np.zeros((3, H + 1))
        pending = np.zeros(3, dtype=np.bool_)  # past marginal values still to add (_finish_past_values)
        has_past = np.zeros(3, dtype=np.bool_)
        # the inputs of each storage device's last exact DP, to skip identical re-plans (_solve_block)
        memo_other = np.empty((3, H))
        memo_ok = np.zeros(3, dtype=np.bool_)
        memo_coarse = np.zeros(3, dtype=np.int64)
        buf_ok = np.zeros(3, dtype=np.bool_)
        qx = np.empty(NMAX)  # cost-to-arrive of the past values
        qy = np.empty(NMAX)
        other = np.empty(H)
        out_p = np.zeros(H)
        # storage devices as rows EV, HP, BAT: state s_{t+1} = alpha s_t + beta_t + u_t,
        # power = kc u (u >= 0) or kd u (u < 0)
        UMIN = np.zeros((3, H))
        UMAX = np.zeros((3, H))
        KC = np.ones((3, H))
        KD = np.ones((3, H))
        BETA = np.zeros((3, H))
        PW = np.zeros((3, H))
        PLO = np.zeros((3, H))
        PHI = np.zeros((3, H))
        S0 = np.zeros(3)
        ALPHA = np.ones(3)
        LO = np.zeros(3)
        HI = np.zeros(3)
        TW = np.zeros(3)
        TT = np.zeros(3)
        has = np.zeros(4, dtype=np.bool_)
        has[BAT] = bat_cap[p] > 0.0 and (bat_pc[p] > 0.0 or bat_pd[p] > 0.0)
        has[EV] = ev_hi[p] > ev_lo[p] and ev_pmax[p] > 0.0
        has[HP] = hp_pmax[p] > 0.0
        has[APP] = app_has[p]
        for t in range(H):
            present = ev_lo[p] <= t < ev_hi[p]
            UMAX[EV, t] = ev_eta[p] * ev_pmax[p] * dt if present else 0.0
            UMIN[EV, t] = -ev_pmax[p] * dt / ev_eta[p] if (present and ev_v2g[p]) else 0.0
            KC[EV, t] = 1.0 / (ev_eta[p] * dt)
            KD[EV, t] = ev_eta[p] / dt
            UMAX[HP, t] = hp_gain[p, t] * hp_pmax[p]
            KC[HP, t] = 1.0 / hp_gain[p, t]
            KD[HP, t] = KC[HP, t]
            BETA[HP, t] = hp_beta[p, t]
            PW[HP, t] = w_comfort * dt
            PLO[HP, t] = hp_tmin[p]
            PHI[HP, t] = hp_tmax[p]
            UMIN[BAT, t] = -bat_pd[p] * dt / bat_ed[p]
            UMAX[BAT, t] = bat_ec[p] * bat_pc[p] * dt
            KC[BAT, t] = 1.0 / (bat_ec[p] * dt)
            KD[BAT, t] = bat_ed[p] / dt
        # EV state = energy delivered since the horizon start, in [need0 - capacity, need0]
        LO[EV] = ev_need0[p] - ev_cap[p]
        HI[EV] = ev_need0[p]
        TW[EV] = w_ev
        TT[EV] = ev_need0[p]
        S0[HP] = hp_T0[p]
        ALPHA[HP] = hp_a[p]
        LO[HP] = -1e9
        HI[HP] = 1e9
        S0[BAT] = bat_e0[p]
        ALPHA[BAT] = bat_keep[p]
        HI[BAT] = bat_cap[p]
        # initial plan: every device idle
        pwr = np.zeros((4, H))
        st = np.zeros((3, H + 1))
        pen = np.zeros(3)
        st[BAT, :] = bat_e0[p]
        st[HP, 0] = hp_T0[p]
        for t in range(H):  # free-floating building
            st[HP, t + 1] = hp_a[p] * st[HP, t] + hp_beta[p, t]
            if has[HP]:
                pen[HP] += _pen(st[HP, t + 1], w_comfort * dt, hp_tmin[p], hp_tmax[p])
        if has[EV]:
            pen[EV] = w_ev * ev_need0[p]
        mup = np.full((3, H), -BIG_MU)
        mum = np.full((3, H), BIG_MU)
        rup = np.zeros((3, H))
        rdn = np.zeros((3, H))
        start = -1
        n_flex = 0
        for d in range(4):
            n_flex += int(has[d])
        obj = np.inf  # the idle plan may not be feasible (an appliance must run)
        # cost of the net power (PV folded in); under a cap, the first n_ramp sweeps use the cap penalty
        # raised in steps (fractions cap_ramp of w_cap). Devices competing for the headroom under a cap
        # then share it by their marginal values, as in an ascending auction for the capacity, instead
        # of leaving it to whichever planned first (where descent with the full penalty stalls)
        capped = False
        for t in range(H):
            if ci[p, t] < 0.5 * BIG_KW or ce[p, t] < 0.5 * BIG_KW:
                capped = True
                break
        n_ramp = cap_ramp.shape[0] if (capped and n_flex >= 2) else 0
        _fill_F(pi[p], pe[p], ci[p], ce[p], w_cap * cap_ramp[0] if n_ramp > 0 else w_cap, pv[p], FX, FS, FN, FV)
        # phase 1: block coordinate descent, each block an exact DP (monotone), until it stalls
        past_now = False
        for sweep in range(n_ramp + max_sweeps + 1):
            if 0 < sweep <= n_ramp:  # the next cap penalty: no DP may be skipped as unchanged
                _fill_F(pi[p], pe[p], ci[p], ce[p], w_cap * cap_ramp[sweep] if sweep < n_ramp else w_cap, pv[p],
                        FX, FS, FN, FV)
                memo_ok[:] = False
                pending[:] = False
            for d in ORDER:
                if has[d]:
                    # past values only once descent has stalled (they cost a forward pass)
                    flag = past_now
                    r = _solve_block(d, H, dt, base[p], pwr, st, pen, mup, mum, rup, rdn, False, 0.0, flag,
                                     UMIN, UMAX, KC, KD, S0, ALPHA, BETA, LO, HI, PW, PLO, PHI, TW, TT,
                                     app_prof[p], app_lo[p], app_hi[p], FX, FS, FN, FV, GX, GS, GN, GV,
                                     vx, vv, vn, tx, ty, rlo, rhi, cx, cy, cn, other, out_p, out_s, pending,
                                     memo_other, memo_ok, memo_coarse, has_past, buf_ok, stats[p])
                    stats[p, 2] += 1
                    if d == APP:
                        start = r
            if sweep < n_ramp:  # a ramp sweep: the objective with the full penalty is measured from the next
                continue
            new = _objective(H, dt, base[p], pwr, pen, pi[p], pe[p], ci[p], ce[p], w_cap, pv[p])
            stalled = new > obj - tol or sweep - n_ramp >= max_sweeps - 1
            obj = min(obj, new)
            if n_flex <= 1 or past_now or (stalled and not use_past):  # one device: already exact
                break
            past_now = stalled and use_past  # one more sweep that also computes the past marginal values
        # the marginal values are read from here on
        _finish_past_values(pending, H, dt, S0, ALPHA, BETA, UMIN, UMAX, KC, KD, PW, PLO, PHI,
                            rlo, rhi, cx, cy, cn, out_s, tx, ty, qx, qy, mup, mum, has_past)
        # appliance: the start interacts with the storages (e.g. both want the PV surplus), so the
        # best few other starts, ranked with the storages' marginal values, are each tried with the
        # storages re-planned; the best true objective is kept
        if has[APP] and n_flex >= 2 and app_candidates > 0:
            for t in range(H):
                other[t] = base[p, t] + pwr[EV, t] + pwr[HP, t] + pwr[BAT, t]
                bp = -BIG_MU
                bm = BIG_MU
                rp = 0.0
                rm = 0.0
                for e in range(3):
                    if rup[e, t] > 1e-9 and mup[e, t] > bp:
                        bp = mup[e, t]
                        rp = rup[e, t]
                    if rdn[e, t] > 1e-9 and mum[e, t] < bm:
                        bm = mum[e, t]
                        rm = rdn[e, t]
                nk, v0 = _exchange_F(FX[t], FS[t], FN[t], FV[t], other[t] + pwr[APP, t], bp, bm, rp, rm,
                                     GX[t], GS[t])
                GN[t] = nk
                GV[t] = v0
            n_st = app_hi[p] - app_lo[p] + 1
            a_cost = np.empty(n_st)
            _appliance_costs(H, app_prof[p], app_lo[p], app_hi[p], other, GX, GS, GN, GV, a_cost)
            a_cost[start - app_lo[p]] = np.inf
            b_pwr = pwr.copy()
            b_st = st.copy()
            b_pen = pen.copy()
            for c in range(min(app_candidates, n_st - 1)):
                j = np.argmin(a_cost)
                a_cost[j] = np.inf
                b_pwr[:] = pwr
                b_st[:] = st
                b_pen[:] = pen
                pwr[APP, :] = 0.0
                for k in range(app_prof.shape[1]):
                    if app_lo[p] + j + k < H:
                        pwr[APP, app_lo[p] + j + k] = app_prof[p, k]
                for sweep in range(2):
                    for d in ORDER:
                        if has[d] and d != APP:
                            _solve_block(d, H, dt, base[p], pwr, st, pen, mup, mum, rup, rdn, False, 0.0, use_past,
                                         UMIN, UMAX, KC, KD, S0, ALPHA, BETA, LO, HI, PW, PLO, PHI, TW, TT,
                                         app_prof[p], app_lo[p], app_hi[p], FX, FS, FN, FV, GX, GS, GN, GV,
                                         vx, vv, vn, tx, ty, rlo, rhi, cx, cy, cn, other, out_p, out_s, pending,
                                         memo_other, memo_ok, memo_coarse, has_past, buf_ok, stats[p])
                            stats[p, 2] += 1
                new = _objective(H, dt, base[p], pwr, pen, pi[p], pe[p], ci[p], ce[p], w_cap, pv[p])
                if new < obj - tol:
                    obj = new
                    start = app_lo[p] + j
                else:  # undo (marginal values are refreshed by the next exact re-plans)
                    pwr[:] = b_pwr
                    st[:] = b_st
                    pen[:] = b_pen
                    memo_ok[:] = False  # plans and marginal values now come from different DPs
            # the marginal values of the last re-plans are read by the exchange steps
            _finish_past_values(pending, H, dt, S0, ALPHA, BETA, UMIN, UMAX, KC, KD, PW, PLO, PHI,
                                rlo, rhi, cx, cy, cn, out_s, tx, ty, qx, qy, mup, mum, has_past)
        # phase 2: exchange steps where two storage devices would gain by trading power at a PTU
        # (coordinate descent stalls there, e.g. under a tight cap); a step re-plans one device
        # seeing its partners' marginal values, then the others exactly; kept only if the true
        # objective improves, else the trade radius shrinks
        radius = radius0
        b_pwr = pwr.copy()
        b_st = st.copy()
        b_pen = pen.copy()
        b_mup = mup.copy()
        b_mum = mum.copy()
        b_rup = rup.copy()
        b_rdn = rdn.copy()
        b_start = start
        b_memo_other = memo_other.copy()
        b_memo_ok = memo_ok.copy()
        b_memo_coarse = memo_coarse.copy()
        b_has_past = has_past.copy()
        seq = np.zeros(4, dtype=np.int64)
        if n_flex >= 2:
            for rnd in range(exchange_rounds):
                if _trade_gain(H, mup, mum, has) <= tol:
                    break
                kept = False
                for d in ORDER:
                    if not has[d]:
                        continue
                    b_pwr[:] = pwr
                    b_st[:] = st
                    b_pen[:] = pen
                    b_mup[:] = mup
                    b_mum[:] = mum
                    b_rup[:] = rup
                    b_rdn[:] = rdn
                    b_start = start
                    b_memo_other[:] = memo_other
                    b_memo_ok[:] = memo_ok
                    b_memo_coarse[:] = memo_coarse
                    b_has_past[:] = has_past
                    seq[0] = d  # the exchanging device, then the others in sweep order
                    k = 1
                    for e in ORDER:
                        if e != d:
                            seq[k] = e
                            k += 1
                    for q in range(4):
                        e = seq[q]
                        if not has[e]:
                            continue
                        r = _solve_block(e, H, dt, base[p], pwr, st, pen, mup, mum, rup, rdn, q == 0, radius, use_past,
                                         UMIN, UMAX, KC, KD, S0, ALPHA, BETA, LO, HI, PW, PLO, PHI, TW, TT,
                                         app_prof[p], app_lo[p], app_hi[p], FX, FS, FN, FV, GX, GS, GN, GV,
                                         vx, vv, vn, tx, ty, rlo, rhi, cx, cy, cn, other, out_p, out_s, pending,
                                         memo_other, memo_ok, memo_coarse, has_past, buf_ok, stats[p])
                        stats[p, 2] += 1
                        if e == APP:
                            start = r
                    new = _objective(H, dt, base[p], pwr, pen, pi[p], pe[p], ci[p], ce[p], w_cap, pv[p])
                    if new < obj - tol:
                        obj = new
                        kept = True
                        stats[p, 3] += 1
                        # the next step reads the marginal values of this one
                        _finish_past_values(pending, H, dt, S0, ALPHA, BETA, UMIN, UMAX, KC, KD, PW, PLO, PHI,
                                            rlo, rhi, cx, cy, cn, out_s, tx, ty, qx, qy, mup, mum, has_past)
                    else:  # undo (the backed-up marginal values are complete: nothing left to add)
                        pending[:] = False
                        memo_other[:] = b_memo_other  # the restored plans are those DPs' again
                        memo_ok[:] = b_memo_ok
                        memo_coarse[:] = b_memo_coarse
                        has_past[:] = b_has_past
                        buf_ok[:] = False  # but RLO..OUT_S may hold the undone step's
                        pwr[:] = b_pwr
                        st[:] = b_st
                        pen[:] = b_pen
                        mup[:] = b_mup
                        mum[:] = b_mum
                        rup[:] = b_rup
                        rdn[:] = b_rdn
                        start = b_start
                if not kept:
                    radius *= 0.25
                    if radius < radius_min:
                        break
        _pv_use(H, base[p] + pwr[0] + pwr[1] + pwr[2] + pwr[3], pi[p], pe[p], ci[p], ce[p], w_cap, pv[p], out_pv[p])
        objective[p] = obj
        out_bat[p] = pwr[BAT]
        out_ev[p] = pwr[EV]
        out_hp[p] = pwr[HP]
        out_app[p] = pwr[APP]
        out_start[p] = start if has[APP] else -1
        s_bat[p] = st[BAT]
        s_ev[p] = st[EV]
        s_hp[p] = st[HP]
    return out_bat, out_ev, out_hp, out_app, out_pv, out_start, s_bat, s_ev, s_hp, objective, stats


@nb.njit(cache=True)
def _lp_plan_one(dt, base, pv, pi, pe, ci, ce, w_cap,
                 bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, bat_e0,
                 ev_cap, ev_pmax, ev_eta, ev_v2g, ev_lo, ev_hi, ev_need0,
                 hp_pmax, hp_a, hp_beta, hp_gain, hp_tmin, hp_tmax, hp_T0, w_comfort, w_ev,
                 tol, max_iter, b, c, lo, hi, x, y, pwr, st, pen, work, warm):
    """Solve the LP of one prosumer for the fixed load ``base`` (appliance included) and turn its
    solution into an executable plan: net device powers simulated through the device dynamics (so the
    states stay inside their limits despite the solver's tolerance) in pwr (EV, HP, BAT rows), states
    in st, penalties in pen. Returns (true objective, LP objective, iterations, converged, the LP's
    shape (g, k1, a, act, constant objective) as from :func:`ems_lp.lp_data`); b, c, lo, hi and y
    keep the LP's data and duals. work: :func:`ems_lp.lp_work`; warm: start from the solution in x, y
    and work of this prosumer's previous converged solve (another load, see :func:`ems_lp.lp_solve`)."""
    H = base.shape[0]
    g, k1, a, act, const = ems_lp.lp_data(dt, base, pv, pi, pe, ci, ce, BIG_KW, w_cap,
                                          bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, bat_e0,
                                          ev_cap, ev_pmax, ev_eta, ev_v2g, ev_lo, ev_hi, ev_need0,
                                          hp_pmax, hp_a, hp_beta, hp_gain, hp_tmin, hp_tmax, hp_T0, w_comfort,
                                          w_ev, b, c, lo, hi)
    iters, ok = ems_lp.lp_solve(H, g, hp_gain, k1, a, b, c, lo, hi, act, tol, max_iter, x, y, work, warm)
    e = bat_e0
    s = 0.0
    temp = hp_T0
    st[BAT, 0] = e
    st[EV, 0] = 0.0
    st[HP, 0] = temp
    ev_min = min(ev_need0 - ev_cap, 0.0)
    comfort = 0.0
    for t in range(H):
        # battery: net power, cut to what the stored energy allows
        p = x[ems_lp.BC, t] - x[ems_lp.BD, t]
        if bat_cap > 0.0:
            pc, pd = dv._battery_limits(e, bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, dt)
            p = min(max(p, -pd), pc)
            e = min(max(bat_keep * e + dt * (bat_ec * p if p >= 0.0 else p / bat_ed), 0.0), bat_cap)
        else:
            p = 0.0
        pwr[BAT, t] = p
        st[BAT, t + 1] = e
        # EV: delivered energy stays within [need0 - capacity, need0]
        q = 0.0
        if ev_lo <= t < ev_hi:
            q = min(max(x[ems_lp.EC, t] - x[ems_lp.ED, t], -ev_pmax if ev_v2g else 0.0), ev_pmax)
            q = min(q, max(ev_need0 - s, 0.0) / (dt * ev_eta))
            if q < 0.0:
                q = max(q, -max(s - ev_min, 0.0) * ev_eta / dt)
            s += dt * (ev_eta * q if q >= 0.0 else q / ev_eta)
        pwr[EV, t] = q
        st[EV, t + 1] = s
        # heat pump + building
        h = min(max(x[ems_lp.HP, t], 0.0), hp_pmax) if hp_pmax > 0.0 else 0.0
        if hp_pmax > 0.0:
            temp = hp_a * temp + hp_beta[t] + hp_gain[t] * h
            comfort += dt * (max(hp_tmin - temp, 0.0) + max(temp - hp_tmax, 0.0))
        pwr[HP, t] = h
        st[HP, t + 1] = temp
    pen[0] = w_ev * max(ev_need0 - s, 0.0) if ev_hi > ev_lo else 0.0
    pen[1] = w_comfort * comfort
    pen[2] = 0.0
    pwr[APP] = 0.0  # the appliance is in base
    obj = _objective(H, dt, base, pwr, pen, pi, pe, ci, ce, w_cap, pv)
    v_lp = const
    for j in range(ems_lp.NV):
        for t in range(H):
            v_lp += c[j, t] * x[j, t]
    return obj, v_lp, iters, ok, (g, k1, a, act, const)


APPLIANCE_PROOF_EUR = 1.0e-6  # a start whose lower bound is within this of the best plan is not tried


@nb.njit(cache=True)
def _start_bounds(H, base, prof, s_lo, s_hi, bound, threshold, seg_p, seg_len, seg_n, ends, cost0, supply0, psi0,
                  slope_l, slope_r, lb, tried):
    """Raise lb[s] to the weak-duality bound of every appliance start s in [s_lo, s_hi]: ``bound`` (the
    constant of :func:`ems_lp.lagrangian_segments`) plus, per PTU, the supply cost psi_t of the load with
    that start. Returns the untried start with the lowest bound and that bound (-1, inf: none).

    psi_t is convex: its slope at the base load times the appliance's power bounds the increase from
    below, and a start whose cheap bound is already at ``threshold`` can neither be chosen nor stop
    the proof, so only the others get the exact bound. The work arrays are borrowed (psi_t is
    evaluated for thousands of start and PTU pairs)."""
    seg_p, seg_len, seg_n, ends, cost0, supply0 = borrow(seg_p), borrow(seg_len), borrow(seg_n), borrow(ends), \
        borrow(cost0), borrow(supply0)
    psi0, slope_l, slope_r, lb, tried = borrow(psi0), borrow(slope_l), borrow(slope_r), borrow(lb), borrow(tried)
    L = prof.shape[0]
    for t in range(H):
        psi0[t] = ems_lp.supply_cost(t, base[t], seg_p, seg_len, seg_n, ends, cost0, supply0)
        bound += psi0[t]
        slope_l[t], slope_r[t] = ems_lp.supply_slopes(t, base[t], seg_p, seg_len, seg_n, ends, supply0)
    nxt = -1
    low = np.inf
    for s in range(s_lo, s_hi + 1):
        v = bound
        for j in range(L):
            if s + j < H:
                q = prof[j]
                v += q * (slope_r[s + j] if q >= 0.0 else slope_l[s + j])
        if v < threshold:
            v = bound
            for j in range(L):
                if s + j < H:
                    v += ems_lp.supply_cost(s + j, base[s + j] + prof[j], seg_p, seg_len, seg_n, ends, cost0,
                                            supply0) - psi0[s + j]
        lb[s] = max(lb[s], v)
        if not tried[s] and lb[s] < low:
            low = lb[s]
            nxt = s
    return nxt, low


@nb.njit(cache=True, parallel=True)
def _lp_plan_kernel(dt, base, pv, pi, pe, ci, ce,
                    bat_cap, bat_pc, bat_pd, bat_ec, bat_ed, bat_keep, bat_e0,
                    ev_cap, ev_pmax, ev_eta, ev_v2g, ev_lo, ev_hi, ev_need0,
                    hp_pmax, hp_a, hp_beta, hp_gain, hp_tmin, hp_tmax, hp_T0,
                    app_prof, app_has, app_lo, app_hi,
                    w_comfort, w_ev, w_cap, app_candidates, tol, max_iter):
    """The EMS with the exact LP (``method="lp"``): same outputs as :func:`_plan_kernel`; stats columns
    (LP solves, total interior-point iterations, solves that did not converge, 1 if the appliance
    start is proven optimal). A prosumer without battery, EV session or heat pump needs no LP: its
    appliance start is enumerated exactly against its inflexible net power.

    Appliance start, a best-first branch and bound over the starts: the first is the best start against
    the idle devices' net power; after each LP solve, weak duality with its state rows' duals gives every
    start a lower bound (:func:`ems_lp.lagrangian_segments`: per PTU, the cheapest way to meet that
    start's load from the grid and the devices at their shadow prices; a start is screened first with
    the slopes of that cost at the base load, and only a start that passes gets the exact bound) and
    the untried start with the lowest bound is solved next, warm from the last solve, until no bound
    is below the best plan (proven) or ``app_candidates`` solves are done."""
    P, H = base.shape
    L = app_prof.shape[1]
    (out_bat, out_ev, out_hp, out_app, out_pv, out_start, s_bat, s_ev, s_hp, objective, stats) = _plan_outputs(P, H)
    KM = 8
    for p in nb.prange(P):
        FX = np.empty((H, KM))
        FS = np.empty((H, KM + 1))
        FN = np.empty(H, dtype=np.int64)
        FV = np.empty(H)
        _fill_F(pi[p], pe[p], ci[p], ce[p], w_cap, pv[p], FX, FS, FN, FV)
        b = np.empty((ems_lp.NR, H))
        c = np.empty((ems_lp.NV, H))
        lo = np.empty((ems_lp.NV, H))
        hi = np.empty((ems_lp.NV, H))
        x = np.empty((ems_lp.NV, H))
        y = np.empty((ems_lp.NR, H))
        pwr = np.zeros((4, H))
        st = np.zeros((3, H + 1))
        pen = np.zeros(3)
        work = ems_lp.lp_work(H)
        converged = False  # the last LP solve converged: the next one starts from its solution
        load = base[p].copy()
        costs = np.empty(H)
        lb = np.full(H, -np.inf)  # lower bound on the LP value of each start (from the duals)
        seg_p = np.empty((H, ems_lp.N_LOCAL))  # the per-PTU knapsacks of that bound
        seg_len = np.empty((H, ems_lp.N_LOCAL))
        seg_n = np.empty(H, dtype=np.int64)
        ends = np.empty((H, 2))
        cost0 = np.empty(H)
        supply0 = np.empty(H)
        psi0 = np.empty(H)
        slope_l = np.empty(H)  # the derivatives of psi_t at the base load
        slope_r = np.empty(H)
        tried = np.zeros(H, dtype=np.bool_)
        best = np.inf
        best_lp = np.inf
        best_start = -1
        start = -1
        if app_has[p]:  # first start: the best one against the idle devices' net power
            _appliance_costs(H, app_prof[p], app_lo[p], app_hi[p], base[p], FX, FS, FN, FV, costs)
            bc = np.inf
            for s_ in range(app_lo[p], app_hi[p] + 1):
                if costs[s_ - app_lo[p]] < bc - 1e-12:
                    bc = costs[s_ - app_lo[p]]
                    start = s_
        n_solves = 1 if not app_has[p] else max(app_candidates, 1)
        storage = bat_cap[p] > 0.0 or (ev_hi[p] > ev_lo[p] and ev_pmax[p] > 0.0) or hp_pmax[p] > 0.0
        if not storage:
            # nothing to store energy in: the appliance start chosen against the inflexible net power
            # above is exact (its cost was evaluated for every start), no LP needed
            n_solves = 0
            stats[p, 3] = 1
            if app_has[p]:
                for j in range(L):
                    if start + j < H:
                        out_app[p, start + j] = app_prof[p, j]
            best_start = start
            best = _objective(H, dt, base[p] + out_app[p], pwr, pen, pi[p], pe[p], ci[p], ce[p], w_cap, pv[p])
            s_bat[p, :] = bat_e0[p]
            s_hp[p, :] = hp_T0[p]
        for k in range(n_solves):
            if app_has[p]:
                tried[start] = True
                load[:] = base[p]
                for j in range(L):
                    if start + j < H:
                        load[start + j] += app_prof[p, j]
            obj, v_lp, iters, ok, shape = _lp_plan_one(
                dt, load, pv[p], pi[p], pe[p], ci[p], ce[p], w_cap,
                bat_cap[p], bat_pc[p], bat_pd[p], bat_ec[p], bat_ed[p], bat_keep[p], bat_e0[p],
                ev_cap[p], ev_pmax[p], ev_eta[p], ev_v2g[p], ev_lo[p], ev_hi[p], ev_need0[p],
                hp_pmax[p], hp_a[p], hp_beta[p], hp_gain[p], hp_tmin[p], hp_tmax[p], hp_T0[p], w_comfort, w_ev,
                tol, max_iter, b, c, lo, hi, x, y, pwr, st, pen, work, converged)
            converged = ok
            stats[p, 0] += 1
            stats[p, 1] += iters
            stats[p, 2] += 0 if ok else 1
            if obj < best - 1e-12:
                best = obj
                best_start = start
                out_bat[p] = pwr[BAT]
                out_ev[p] = pwr[EV]
                out_hp[p] = pwr[HP]
                out_app[p] = load - base[p]
                s_bat[p] = st[BAT]
                s_ev[p] = st[EV]
                s_hp[p] = st[HP]
            best_lp = min(best_lp, v_lp)
            if not app_has[p]:
                break
            # Every start's LP value is bounded from below by weak duality with this solve's state-row
            # duals (ems_lp.lagrangian_segments): a constant plus, per PTU, the cheapest way to meet
            # the load there. Next: the untried start with the lowest bound; stop once no start can
            # beat the best plan (the appliance choice is then proven optimal).
            g, k1, a, act, const = shape
            bound = const + ems_lp.lagrangian_segments(H, g, hp_gain[p], k1, a, act, b, c, lo, hi, y, ci[p], ce[p],
                                                       BIG_KW, seg_p, seg_len, seg_n, ends, cost0, supply0)
            threshold = best_lp - APPLIANCE_PROOF_EUR
            nxt, low = _start_bounds(H, base[p], app_prof[p], app_lo[p], app_hi[p], bound, threshold,
                                     seg_p, seg_len, seg_n, ends, cost0, supply0, psi0, slope_l, slope_r, lb, tried)
            if nxt < 0 or low >= threshold:
                stats[p, 3] = 1
                break
            start = nxt
        _pv_use(H, base[p] + out_bat[p] + out_ev[p] + out_hp[p] + out_app[p], pi[p], pe[p], ci[p], ce[p], w_cap,
                pv[p], out_pv[p])
        objective[p] = best
        out_start[p] = best_start
    return out_bat, out_ev, out_hp, out_app, out_pv, out_start, s_bat, s_ev, s_hp, objective, stats


# =============================================================================================
# Python API
# =============================================================================================
class EMSConfig(NamedTuple):
    """EMS settings.

    method: ``"lp"`` (default) solves the continuous part exactly with the interior-point LP of
    :mod:`flexenv.policies.ems_lp` and chooses the appliance start by branch and bound on the LP duals;
    ``"descent"`` is the block coordinate descent described in the module docstring (its settings
    below are ignored by ``"lp"``). appliance_candidates: appliance starts tried after the first one
    (``"lp"``: further LP solves of the branch and bound, which stops earlier once the start is proven
    optimal; ``"descent"``: next-best starts with the storages re-planned).

    Descent only: max_sweeps: coordinate-descent sweeps (each re-plans every device exactly against
    the others; stops earlier once a sweep improves the objective by less than ``tolerance_eur``);
    exchange_rounds: rounds of exchange steps afterwards (a step lets one device trade power with
    another at a PTU, priced at the partner's marginal value, then re-plans the others; kept only if
    the objective improves); exchange_radius_kw: the largest trade per PTU of the first round, cut
    by 4 after a round without improvement until below exchange_radius_min_kw; past_values: marginal
    values also from a forward (cost-to-arrive) pass, so a trade may be absorbed in a device's past;
    cap_ramp: for a prosumer under an import or export cap, one descent sweep per entry first, with
    the cap penalty at that fraction of its weight (increasing, in (0, 1); empty = none), so the
    devices that compete for the headroom share it by their marginal values before the full penalty
    applies."""

    max_sweeps: int = 6
    exchange_rounds: int = 12
    exchange_radius_kw: float = 1.0e3
    exchange_radius_min_kw: float = 0.05
    tolerance_eur: float = 1.0e-6
    appliance_candidates: int = 7
    past_values: bool = True
    cap_ramp: tuple = (0.01, 0.03, 0.1, 0.3, 0.6)
    penalties: Penalties = Penalties()
    method: str = "lp"


METHODS = ("lp", "descent")
LP_TOLERANCE = 1.0e-9  # relative primal / dual residual and absolute duality gap (EUR) of the LP
LP_MAX_ITERATIONS = 80

# The former default: coordinate descent with twelve exchange rounds (benchmarked next to the LP).
DESCENT_PROFILE = EMSConfig(method="descent", appliance_candidates=3)
# The energy boxes inside the environments plan with this profile: the exact LP with one further
# appliance start from the branch and bound (faster than the default's budget of seven, with a slightly
# longer tail where the appliance start is not proven; both measured in benchmarks/ems.py).
ENGINE_PROFILE = EMSConfig(appliance_candidates=1)
# What the energy boxes used before the LP, still selectable per scenario (`energy_box.ems: descent`):
# a three-step cap ramp, coordinate descent, two rounds of exchange steps; faster on days without caps.
ENGINE_DESCENT_PROFILE = EMSConfig(method="descent", exchange_rounds=2, appliance_candidates=1, cap_ramp=(0.02, 0.1, 0.3))


class EMSPlan(NamedTuple):
    """Day plan of P prosumers over the H PTUs from ``t0`` (arrays (P, H) kW unless noted).

    net_kw: planned net power at the connection point; battery_kw, ev_kw, heat_pump_kw, appliance_kw:
    device powers (+ = consumption); pv_used_kw: PV power used (>= 0); appliance_start_ptu: (P,) day
    PTU of the planned start (-1 = nothing to plan); battery_energy_kwh, ev_need_kwh,
    indoor_temp_degc: (P, H+1) planned state trajectories (ev_need is the energy still needed);
    objective_eur: (P,) planned bill + penalties; cap_violation_kwh: (P,) planned energy beyond the
    caps (0 when the caps are feasible); value_function_coarsened: (P,) number of coarsened stages
    of the descent's value functions (0 normally; always 0 for the LP method).
    """

    t0: int
    net_kw: np.ndarray
    battery_kw: np.ndarray
    ev_kw: np.ndarray
    heat_pump_kw: np.ndarray
    appliance_kw: np.ndarray
    pv_used_kw: np.ndarray
    appliance_start_ptu: np.ndarray
    battery_energy_kwh: np.ndarray
    ev_need_kwh: np.ndarray
    indoor_temp_degc: np.ndarray
    objective_eur: np.ndarray
    cap_violation_kwh: np.ndarray
    value_function_coarsened: np.ndarray


def _validate(cfg: EMSConfig) -> None:
    """Raise ValueError naming the field, its value and the allowed range (every field, any method)."""
    if cfg.method not in METHODS:
        raise ValueError(f"method = {cfg.method!r}: must be one of {METHODS}")
    if int(cfg.max_sweeps) < 1:
        raise ValueError("max_sweeps: must be >= 1")
    if int(cfg.appliance_candidates) < 0:
        raise ValueError("appliance_candidates: must be >= 0")
    if int(cfg.exchange_rounds) < 0:
        raise ValueError("exchange_rounds: must be >= 0")
    r0, rmin, tol = float(cfg.exchange_radius_kw), float(cfg.exchange_radius_min_kw), float(cfg.tolerance_eur)
    if not (np.isfinite(r0) and np.isfinite(rmin) and 0 < rmin <= r0):
        raise ValueError("exchange radii: need 0 < exchange_radius_min_kw <= exchange_radius_kw, finite")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError("tolerance_eur: must be finite and >= 0")
    cap_ramp = np.asarray(cfg.cap_ramp, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(cap_ramp)) and np.all((cap_ramp > 0) & (cap_ramp < 1)) and np.all(np.diff(cap_ramp) > 0)):
        raise ValueError(f"cap_ramp = {tuple(cfg.cap_ramp)}: need increasing fractions of the cap penalty in (0, 1)")


def _problem_args(pr: Prepared):
    """The prepared arrays in the order both plan kernels take them."""
    return (pr.dt, pr.base_kw, pr.pv_kw, pr.pi, pr.pe, pr.cap_imp, pr.cap_exp,
            pr.bat_cap, pr.bat_pc, pr.bat_pd, pr.bat_eta_c, pr.bat_eta_d, pr.bat_keep, pr.bat_e0,
            pr.ev_cap, pr.ev_pmax, pr.ev_eta, pr.ev_v2g, pr.ev_lo, pr.ev_hi, pr.ev_need0,
            pr.hp_pmax, pr.hp_a, np.ascontiguousarray(pr.hp_beta), np.ascontiguousarray(pr.hp_gain),
            pr.hp_tmin, pr.hp_tmax, pr.hp_T0,
            pr.app_prof, pr.app_has, pr.app_lo, pr.app_hi,
            pr.w_comfort, pr.w_ev, pr.w_cap)


def _kernel_args(pr: Prepared, cfg: EMSConfig):
    cap_ramp = np.asarray(cfg.cap_ramp, dtype=np.float64).reshape(-1)
    return _problem_args(pr) + (int(cfg.max_sweeps), int(cfg.exchange_rounds), float(cfg.exchange_radius_kw),
                                float(cfg.exchange_radius_min_kw), float(cfg.tolerance_eur),
                                int(cfg.appliance_candidates), bool(cfg.past_values), cap_ramp)


def _lp_kernel_args(pr: Prepared, cfg: EMSConfig):
    return _problem_args(pr) + (int(cfg.appliance_candidates) + 1, LP_TOLERANCE, LP_MAX_ITERATIONS)


def plan(problem: ProsumerProblem, config: EMSConfig = EMSConfig()) -> EMSPlan:
    """Plan all prosumers over the remaining horizon (one numba call, parallel over prosumers).

    Re-planning when a signal changes = calling ``plan`` again with ``t0``, the current device states
    and the new signals over the remaining PTUs (see :func:`remaining_problem`)."""
    _validate(config)
    pr = prepare(problem, config.penalties)
    if config.method == "lp":
        (bat, ev, hp, app, pv, start, s_bat, s_ev, s_hp, obj, stats) = _lp_plan_kernel(*_lp_kernel_args(pr, config))
    else:
        (bat, ev, hp, app, pv, start, s_bat, s_ev, s_hp, obj, stats) = _plan_kernel(*_kernel_args(pr, config))
    net = pr.base_kw + bat + ev + hp + app - pv
    viol = pr.dt * (np.maximum(net - pr.cap_imp, 0) + np.maximum(-net - pr.cap_exp, 0)).sum(1)
    start_abs = np.where(start >= 0, start + int(problem.t0), -1)
    return EMSPlan(int(problem.t0), net, bat, ev, hp, app, pv, start_abs, s_bat, pr.ev_need0[:, None] - s_ev,
                   s_hp, obj, viol, np.zeros(len(obj), np.int64) if config.method == "lp" else stats[:, 0].copy())


def setpoints(p: EMSPlan, k: int = 0) -> dict:
    """Setpoints of horizon step k (day PTU t0 + k), each (P,): the requests for the device kernels."""
    return {"battery_kw": p.battery_kw[:, k], "ev_kw": p.ev_kw[:, k], "heat_pump_kw": p.heat_pump_kw[:, k],
            "pv_used_kw": p.pv_used_kw[:, k], "appliance_start": p.appliance_start_ptu == p.t0 + k}


def remaining_problem(day: ProsumerProblem, t0: int, battery_energy_kwh, ev_need_kwh, indoor_temp_degc,
                      appliance_start_ptu, **signals) -> ProsumerProblem:
    """The problem over day PTUs ``t0 ..`` from a full-day problem (``day.t0`` must be 0), with the
    current states and optionally new signals (any (P, T) field name of ProsumerProblem, full-day
    arrays) -> pass to :func:`plan` to re-plan."""
    if day.t0 != 0:
        raise ValueError("remaining_problem: day.t0 must be 0")
    T = np.asarray(day.load_kw).shape[1]
    if not 0 <= t0 < T:
        raise ValueError(f"t0: must be in [0, {T})")
    fields = dict(day._asdict())
    for k, v in signals.items():
        if k not in fields:
            raise ValueError(f"unknown signal {k!r}")
        fields[k] = v
    for k in ("load_kw", "pv_avail_kw", "cop", "import_price_eur_per_kwh", "export_price_eur_per_kwh",
              "import_cap_kw", "export_cap_kw"):
        fields[k] = np.asarray(fields[k])[:, t0:]
    fields["t_out_degc"] = np.asarray(fields["t_out_degc"])[t0:]
    fields.update(battery_energy_kwh=battery_energy_kwh, ev_need_kwh=ev_need_kwh,
                  indoor_temp_degc=indoor_temp_degc, appliance_start_ptu=appliance_start_ptu, t0=t0)
    return ProsumerProblem(**fields)


# =============================================================================================
# Execution and evaluation (Python loop over time: for tests and benchmarks, not a step)
# =============================================================================================
class Outcome(NamedTuple):
    """Result of executing setpoints with the device kernels, (P,) unless noted: bill_eur (energy only),
    objective_eur (bill + penalties), cap_violation_kwh, comfort_violation_kh, ev_unmet_kwh,
    net_kw (P, H), cut_kw (P, H) total |request - executed| over devices."""

    bill_eur: np.ndarray
    objective_eur: np.ndarray
    cap_violation_kwh: np.ndarray
    comfort_violation_kh: np.ndarray
    ev_unmet_kwh: np.ndarray
    net_kw: np.ndarray
    cut_kw: np.ndarray


def execute(problem: ProsumerProblem, battery_kw, ev_kw, heat_pump_kw, pv_used_kw, appliance_start_ptu,
            penalties: Penalties = Penalties()) -> Outcome:
    """Run the device kernels over the horizon with the given setpoints ((P, H) kW; appliance start
    (P,) day PTU or -1) and score the result with the planning objective. EV energy still needed at
    the end of the horizon (or at departure) counts as unmet, as in the planner."""
    pr = prepare(problem, penalties)
    d = problem.devices
    P, H = pr.base_kw.shape
    dt = pr.dt
    t0 = int(problem.t0)
    e = pr.bat_e0[None, :].copy()
    temp = pr.hp_T0[None, :].copy()
    need = np.asarray(problem.ev_need_kwh, float)[None, :].copy()
    start = np.asarray(problem.appliance_start_ptu, np.int64)[None, :].copy()
    app_start = np.asarray(appliance_start_ptu, np.int64)
    net = np.zeros((P, H))
    cut = np.zeros((P, H))
    comfort = np.zeros(P)
    unmet = np.zeros(P)
    ses = d.sessions
    for k in range(H):
        t = t0 + k
        load = np.asarray(problem.load_kw, float)[:, k]
        used, ppv, _, c1 = dv.pv_step(pr.pv_kw[None, :, k], np.asarray(pv_used_kw, float)[None, :, k])
        e, pb, c2 = dv.battery_step(e, np.asarray(battery_kw, float)[None, :, k], d.battery, dt)
        need, pev, c3, u = dv.ev_step(t, need, np.asarray(ev_kw, float)[None, :, k], d.ev, ses, dt)
        unmet += u[0]
        tout = np.asarray(problem.t_out_degc, float)[k:k + 1]
        temp, php, c4, v = dv.heat_pump_step(temp, np.asarray(heat_pump_kw, float)[None, :, k],
                                             np.asarray(problem.cop, float)[None, :, k], tout, d.heat_pump, dt)
        comfort += v[0]
        start, pap, _ = dv.appliance_step(t, start, (app_start == t)[None, :], d.appliance)
        net[:, k] = load + ppv[0] + pb[0] + pev[0] + php[0] + pap[0]
        cut[:, k] = np.abs(c1[0]) + np.abs(c2[0]) + np.abs(c3[0]) + np.abs(c4[0])
    # sessions still open at the horizon end: what is still needed counts as unmet (planner convention)
    present_end = (ses.arrival_ptu <= t0 + H - 1) & (ses.departure_ptu > t0 + H) & (pr.ev_hi > 0)
    unmet += np.where(present_end, need[0], 0.0)
    pi, pe = pr.pi, pr.pe
    bill = dt * (pi * np.maximum(net, 0) - pe * np.maximum(-net, 0)).sum(1)
    capv = dt * (np.maximum(net - pr.cap_imp, 0) + np.maximum(-net - pr.cap_exp, 0)).sum(1)
    obj = bill + pr.w_cap * capv + pr.w_comfort * comfort + pr.w_ev * unmet
    return Outcome(bill, obj, capv, comfort, unmet, net, cut)


def execute_plan(problem: ProsumerProblem, p: EMSPlan, penalties: Penalties = Penalties()) -> Outcome:
    """:func:`execute` with the setpoints of a plan."""
    return execute(problem, p.battery_kw, p.ev_kw, p.heat_pump_kw, p.pv_used_kw, p.appliance_start_ptu,
                   penalties)


# =============================================================================================
# Random instances (tests and benchmarks)
# =============================================================================================
PRICE_KINDS = ("flat", "tou", "volatile")


def random_prices(rng: np.random.Generator, kind: str, n_prosumers: int, n_ptu: int):
    """Import and export price curves (P, T) EUR/kWh; export <= import, both >= 0.

    flat: constant retail price; tou: night / day / evening-peak tariff; volatile: a day-ahead-like
    curve (random walk with a morning and an evening peak and a solar dip) plus a retail adder."""
    P, T = n_prosumers, n_ptu
    h = (np.arange(T) + 0.5) * 24.0 / T
    if kind == "flat":
        imp = np.repeat(rng.uniform(0.2, 0.4, (P, 1)), T, 1)
        exp_ = np.repeat(rng.uniform(0.0, 0.12, (P, 1)), T, 1)
    elif kind == "tou":
        night = rng.uniform(0.12, 0.22, (P, 1))
        day = night + rng.uniform(0.05, 0.15, (P, 1))
        peak = day + rng.uniform(0.05, 0.2, (P, 1))
        imp = np.where((h >= 7) & (h < 23), day, night)
        imp = np.where((h >= 17) & (h < 21), peak, imp)
        exp_ = np.repeat(rng.uniform(0.0, 0.1, (P, 1)), T, 1)
    elif kind == "volatile":
        shape = 0.05 * np.exp(-((h - 8) / 1.5) ** 2) + 0.09 * np.exp(-((h - 19) / 2) ** 2) \
            - 0.05 * np.exp(-((h - 13) / 2.5) ** 2)
        walk = np.cumsum(rng.normal(0, 0.012 * np.sqrt(96 / T), (P, T)), axis=1)
        whole = np.maximum(rng.uniform(0.06, 0.14, (P, 1)) + shape[None, :] * rng.uniform(0.5, 2.0, (P, 1)) + walk,
                           0.0)
        imp = whole + rng.uniform(0.1, 0.2, (P, 1))
        exp_ = whole
    else:
        raise ValueError(f"price kind must be one of {PRICE_KINDS}, got {kind!r}")
    return imp, np.minimum(exp_, imp)


def random_problem(rng: np.random.Generator, n_prosumers: int, ptu_minutes: int = 15, price_kind: str = "tou",
                   caps: bool = False, presence: np.ndarray | None = None) -> ProsumerProblem:
    """A random prosumer-day for ``n_prosumers`` prosumers (t0 = 0): devices from
    :func:`flexenv.physics.devices.random_devices`, a load profile with morning and evening peaks, a
    PV profile with random clouds, a winter-to-spring outdoor temperature, prices of ``price_kind``
    and, if ``caps``, import/export caps (sometimes below the inflexible load: infeasible on purpose)."""
    if ptu_minutes not in (15, 30, 60):
        raise ValueError("ptu_minutes must be 15, 30 or 60")
    P, T = int(n_prosumers), 24 * 60 // ptu_minutes
    dt = ptu_minutes / 60.0
    h = (np.arange(T) + 0.5) * dt
    devs = dv.random_devices(rng, P, T, presence=presence)
    load = (rng.uniform(0.15, 0.5, (P, 1))
            + rng.uniform(0.2, 1.2, (P, 1)) * np.exp(-((h - rng.uniform(6.5, 8.5, (P, 1))) / 1.0) ** 2)
            + rng.uniform(0.5, 2.0, (P, 1)) * np.exp(-((h - rng.uniform(17.5, 20.5, (P, 1))) / 1.8) ** 2))
    load = load * rng.uniform(0.7, 1.3, (P, T))
    sun = np.clip(np.sin(np.pi * (h - 6.5) / 13.0), 0, None) ** 1.5
    clouds = np.clip(1 - rng.uniform(0, 0.8) * rng.random(T) ** 2, 0, 1)
    pv = devs.pv.kwp[:, None] * (sun * clouds * rng.uniform(0.4, 0.9))[None, :]
    t_mean = rng.uniform(-5.0, 12.0)
    tout = t_mean + 4.0 * np.sin(np.pi * (h - 9.0) / 12.0) + rng.normal(0, 0.3, T)
    cop = dv.heat_pump_cop(tout, devs.heat_pump)
    imp, exp_ = random_prices(rng, price_kind, P, T)
    if caps:
        ci = np.repeat(rng.uniform(2.0, 8.0, (P, 1)), T, 1)
        evening = (h >= 17) & (h < 21)
        ci[:, evening] *= rng.uniform(0.3, 1.0, (P, 1))  # tighter evening cap
        ce = np.repeat(rng.uniform(1.0, 4.0, (P, 1)), T, 1)
    else:
        ci = np.full((P, T), np.inf)
        ce = np.full((P, T), np.inf)
    # mostly feasible requests: EV energy fits its (in-day) window for 85 % of sessions, heat pumps
    # sized for the coldest hour; the rest stay as drawn (possibly infeasible, on purpose)
    ses = devs.sessions
    hours = (np.minimum(ses.departure_ptu, T) - ses.arrival_ptu).clip(0) * dt
    fit = 0.9 * devs.ev.p_max_kw * devs.ev.eta_charge * hours
    need = np.where(rng.random(P) < 0.85, np.minimum(ses.energy_needed_kwh, fit), ses.energy_needed_kwh)
    hpp = devs.heat_pump
    cop_min = cop.min(axis=1)
    p_need = 1.2 * (hpp.t_max_degc - tout.min()) / (hpp.r_k_per_kw * cop_min)
    devs = devs._replace(sessions=ses._replace(energy_needed_kwh=need),
                         heat_pump=hpp._replace(p_max_kw=np.where(hpp.p_max_kw > 0, np.maximum(hpp.p_max_kw, p_need), 0.0)))
    e0 = rng.uniform(0, 1, P) * devs.battery.capacity_kwh
    T0 = devs.heat_pump.t_min_degc + rng.uniform(-0.5, 1.5, P)
    return ProsumerProblem(dt, load, pv, tout, cop, imp, exp_, ci, ce, devs, e0, np.zeros(P), T0,
                           np.full(P, -1, dtype=np.int64), 0)


def select(problem: ProsumerProblem, rows) -> ProsumerProblem:
    """The sub-problem of the prosumers ``rows`` (index array or slice)."""
    rows = np.arange(np.asarray(problem.load_kw).shape[0])[rows]
    sl = lambda nt: type(nt)(*[np.asarray(x)[rows] for x in nt])  # noqa: E731
    f = problem._asdict()
    f["devices"] = dv.ProsumerDevices(*[sl(x) for x in problem.devices])
    for k in ("load_kw", "pv_avail_kw", "cop", "import_price_eur_per_kwh", "export_price_eur_per_kwh",
              "import_cap_kw", "export_cap_kw", "battery_energy_kwh", "ev_need_kwh", "indoor_temp_degc",
              "appliance_start_ptu"):
        f[k] = np.asarray(f[k])[rows]
    return ProsumerProblem(**f)
