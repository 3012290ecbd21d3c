"""The EMS's exact LP method (flexenv.policies.ems_lp): the interior-point LP equals HiGHS on the same
LP, the appliance branch and bound reaches the MILP optimum, and edge cases converge."""

import numpy as np
import pytest

from baselines.oracle import prosumer as milp
from flexenv.policies import ems, ems_lp

LP = ems.EMSConfig()  # the default method


def _highs_lp_value(pb, start_rel):
    """HiGHS on the prosumer MILP with the appliance start fixed and the mode binaries relaxed (the
    LP that ems_lp solves, up to its tie-break cost)."""
    m, b = milp.build(pb)
    y = b["parts"]["appliance"][1]["start"]
    lb, ub = np.concatenate(m.lb), np.concatenate(m.ub)
    if start_rel >= 0:
        ub[y[0]] = 0.0
        lb[y[0, start_rel]] = ub[y[0, start_rel]] = 1.0
    m.lb, m.ub, m.integer = [lb], [ub], [np.zeros(m.n_col, bool)]
    return m.solve().objective


@pytest.mark.parametrize("kind,caps", [("flat", True), ("tou", False), ("volatile", True)])
def test_lp_value_equals_highs(kind, caps):
    pb = ems.random_problem(np.random.default_rng(7), 4, 15, kind, caps, presence=np.ones((4, 5), bool))
    pl = ems.plan(pb, LP)
    out = ems.execute_plan(pb, pl)
    for i in range(4):
        sub = ems.select(pb, slice(i, i + 1))
        ref = _highs_lp_value(sub, int(pl.appliance_start_ptu[i]))
        # the executed plan of the LP costs what HiGHS's optimum of the same LP costs
        assert abs(out.objective_eur[i] - ref) <= 1e-4 * abs(ref) + 1e-4


def test_every_mix_reaches_the_milp():
    rng = np.random.default_rng(3)
    pres = rng.random((24, 5)) < 0.5  # some prosumers without any storage (no LP for them)
    pres[:, 4] |= rng.random(24) < 0.5  # plenty of appliances for the branch and bound
    for kind in ems.PRICE_KINDS:
        pb = ems.random_problem(rng, 24, 15, kind, True, presence=pres)
        out = ems.execute_plan(pb, ems.plan(pb, LP))
        for i in range(24):
            r = milp.solve(ems.select(pb, slice(i, i + 1)))
            tol = 2e-4 * abs(r.objective_eur[0]) + 1e-4  # the MILP's relative gap
            assert out.objective_eur[i] >= r.objective_eur[0] - tol
            assert out.objective_eur[i] <= r.objective_eur[0] + tol + 1e-3 * abs(r.objective_eur[0])
            if r.cap_violation_kwh[0] < 1e-9:
                assert out.cap_violation_kwh[i] < 1e-6


def test_solver_statistics_report_convergence_and_proofs():
    pb = ems.random_problem(np.random.default_rng(4), 40, 15, "volatile", True)
    pr = ems.prepare(pb)
    *_, stats = ems._lp_plan_kernel(*ems._lp_kernel_args(pr, LP))
    assert np.all(stats[:, 2] == 0)  # every LP converged
    storage = (pr.bat_cap > 0) | ((pr.ev_hi > pr.ev_lo) & (pr.ev_pmax > 0)) | (pr.hp_pmax > 0)
    assert storage.any() and (~storage).any()
    assert np.all(stats[storage, 0] >= 1) and np.all(stats[:, 0] <= LP.appliance_candidates + 1)
    assert np.all(stats[storage & ~pr.app_has, 0] == 1)  # one LP without an appliance to place
    assert np.all(stats[~storage, 0] == 0) and np.all(stats[~storage, 3] == 1)  # enumerated exactly
    assert stats[pr.app_has, 3].mean() > 0.5  # most appliance starts are proven optimal


def test_tied_prices_and_export_above_import_converge():
    pb = ems.random_problem(np.random.default_rng(9), 4, 15, "tou", False, presence=np.ones((4, 5), bool))
    pi = np.asarray(pb.import_price_eur_per_kwh)
    for pe, exact in ((pi.copy(), True), (np.zeros_like(pi), True), (pi + 0.05, False)):
        q = pb._replace(export_price_eur_per_kwh=pe)
        pr = ems.prepare(q)
        *_, stats = ems._lp_plan_kernel(*ems._lp_kernel_args(pr, LP))
        assert np.all(stats[:, 2] == 0)  # converged, even with import and export free to tie
        pl = ems.plan(q, LP)
        out = ems.execute_plan(q, pl)
        assert out.cut_kw.max() < 1e-6
        np.testing.assert_allclose(out.objective_eur, pl.objective_eur, atol=1e-6)
        if exact:  # convex bill: the MILP optimum; export above import is the documented approximation
            for i in range(4):
                r = milp.solve(ems.select(q, slice(i, i + 1)))
                assert abs(out.objective_eur[i] - r.objective_eur[0]) <= 1e-3 * abs(r.objective_eur[0]) + 1e-3


def test_unknown_method_is_rejected():
    pb = ems.random_problem(np.random.default_rng(0), 1, 60, "flat")
    with pytest.raises(ValueError, match="method"):
        ems.plan(pb, ems.EMSConfig(method="simplex"))


@pytest.mark.parametrize("t0", [94, 95])
def test_last_ptus_of_the_day_match_the_milp(t0):
    # one or two PTUs left, EVs mid-session and appliances overdue: the same conventions as the MILP
    pb = ems.random_problem(np.random.default_rng(12), 6, 15, "volatile", True, presence=np.ones((6, 5), bool))
    P = 6
    rest = ems.remaining_problem(pb, t0, 0.5 * pb.devices.battery.capacity_kwh, np.full(P, 3.0),
                                 np.asarray(pb.indoor_temp_degc), np.full(P, -1))
    pl = ems.plan(rest, LP)
    out = ems.execute_plan(rest, pl)
    assert pl.net_kw.shape == (P, 96 - t0) and out.cut_kw.max() < 1e-6
    for i in range(P):
        r = milp.solve(ems.select(rest, slice(i, i + 1)))
        assert abs(out.objective_eur[i] - r.objective_eur[0]) <= 2e-4 * abs(r.objective_eur[0]) + 1e-4


def test_lp_plan_reports_no_coarsening():
    pb = ems.random_problem(np.random.default_rng(2), 8, 15, "tou", True)
    assert np.all(ems.plan(pb, LP).value_function_coarsened == 0)


def test_stalled_lp_keeps_its_last_finite_iterate():
    # two prosumer-days of a speed-benchmark-like set whose LP stalls near its optimum (degenerate:
    # duals grow without bound) until the normal equations break down: the solver stops with its last
    # finite iterate, which is the MILP optimum, instead of a NaN plan (which days stall depends on
    # the starting point; these do from the current one)
    rng = np.random.default_rng(2)
    probs = [ems.random_problem(rng, 500, 15, kind, caps) for kind in ems.PRICE_KINDS for caps in (False, True)][:4]
    for k, i in ((3, 180), (3, 181)):
        pb = ems.select(probs[k], [i])
        pr = ems.prepare(pb)
        *_, stats = ems._lp_plan_kernel(*ems._lp_kernel_args(pr, LP))
        assert stats[0, 2] == 1 and stats[0, 1] < ems.LP_MAX_ITERATIONS  # stopped early
        out = ems.execute_plan(pb, ems.plan(pb, LP))
        assert np.isfinite(out.objective_eur[0])
        r = milp.solve(pb)
        assert abs(out.objective_eur[0] - r.objective_eur[0]) <= 1e-4 * abs(r.objective_eur[0]) + 1e-4


def _load_at(pr, i, start):
    """Prosumer i's load (H,) with its appliance started at ``start`` (-1: none)."""
    H = pr.base_kw.shape[1]
    load = pr.base_kw[i].copy()
    if start >= 0:
        n = min(pr.app_prof.shape[1], H - start)
        load[start:start + n] += pr.app_prof[i, :n]
    return load


def _lp_at_start(pr, i, start):
    """The LP of prosumer i of ``pr`` with its appliance at ``start``: (LP value, converged, the LP's
    shape, its data and duals) from the EMS's own solve."""
    H = pr.base_kw.shape[1]
    load = _load_at(pr, i, start)
    arr = [np.empty((ems_lp.NR, H)), np.empty((ems_lp.NV, H)), np.empty((ems_lp.NV, H)), np.empty((ems_lp.NV, H)),
           np.empty((ems_lp.NV, H)), np.empty((ems_lp.NR, H)), np.zeros((4, H)), np.zeros((3, H + 1)), np.zeros(3),
           ems_lp.lp_work(H), False]
    args = [a[i] if isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[0] == pr.base_kw.shape[0] else a
            for a in ems._problem_args(pr)]
    dev = args[7:28]  # battery, EV and heat pump parameters, as _lp_plan_one takes them
    _, v_lp, _, ok, shape = ems._lp_plan_one(args[0], load, *args[2:7], pr.w_cap, *dev, pr.w_comfort, pr.w_ev,
                                            ems.LP_TOLERANCE, ems.LP_MAX_ITERATIONS, *arr)
    return v_lp, ok, shape, arr


def test_lagrangian_bound_is_below_every_start_and_tight_at_the_solved_one():
    # weak duality: with the state-row duals of one solve, the bound of every appliance start is at
    # most that start's LP value, and it equals the solved start's value (the duals are optimal there)
    rng = np.random.default_rng(11)
    for kind, caps in (("volatile", True), ("tou", False), ("flat", True)):
        pb = ems.random_problem(rng, 6, 15, kind, caps, presence=np.ones((6, 5), bool))
        pr = ems.prepare(pb)
        H = pr.base_kw.shape[1]
        for i in range(6):
            starts = np.arange(pr.app_lo[i], pr.app_hi[i] + 1)
            s0 = int(starts[len(starts) // 2])
            v0, ok, (g, k1, a, act, const), (b, c, lo, hi, _x, y, *_) = _lp_at_start(pr, i, s0)
            assert ok
            seg = (np.empty((H, ems_lp.N_LOCAL)), np.empty((H, ems_lp.N_LOCAL)), np.empty(H, np.int64),
                   np.empty((H, 2)), np.empty(H), np.empty(H))
            k = const + ems_lp.lagrangian_segments(H, g, pr.hp_gain[i], k1, a, act, b, c, lo, hi, y, pr.cap_imp[i],
                                                   pr.cap_exp[i], ems.BIG_KW, *seg)
            for s in starts[::4].tolist() + [s0]:
                load = _load_at(pr, i, s)
                bound = k + sum(ems_lp.supply_cost(t, load[t], *seg) for t in range(H))
                v = _lp_at_start(pr, i, s)[0] if s != s0 else v0
                assert bound <= v + 1e-6 * max(1.0, abs(v))
                if s == s0:
                    assert bound >= v - 1e-5 * max(1.0, abs(v))
            # the cheap bound the branch and bound screens starts with: by convexity psi_t rises by
            # at least its slope at the base load times the appliance's power
            seg_args = seg[:4] + seg[5:]  # supply_slopes takes no cost0
            for t in range(H):
                left, right = ems_lp.supply_slopes(t, pr.base_kw[i, t], *seg_args)
                psi = ems_lp.supply_cost(t, pr.base_kw[i, t], *seg)
                assert left <= right
                for h in (1e-6, 0.3, 2.0, 7.5):
                    assert ems_lp.supply_cost(t, pr.base_kw[i, t] + h, *seg) - psi >= h * right - 1e-9
                    assert psi - ems_lp.supply_cost(t, pr.base_kw[i, t] - h, *seg) <= h * left + 1e-9
                rise = (ems_lp.supply_cost(t, pr.base_kw[i, t] + 1e-7, *seg) - psi) / 1e-7
                assert abs(rise - right) <= 1e-4 * max(1.0, abs(right))


def test_step_length_maxima_as_bit_patterns_equal_the_float_maxima():
    """The reductions take maxima over int64 bit patterns (ems_lp._bits): for non-negative doubles that
    must order like the values, and a negative value must never win over a non-negative start."""
    import numba as nb

    @nb.njit
    def bit_max(v, start):
        m = ems_lp._bits(start)
        for k in range(v.size):
            m = max(m, ems_lp._bits(v[k]))
        return ems_lp._from_bits(m)

    rng = np.random.default_rng(0)
    special = np.array([0.0, 5e-324, 2.2e-308, 1e-300, 0.5, 1.0, 1.0 + 2**-52, 1e300, np.inf])
    for _ in range(200):
        v = np.concatenate([rng.choice(special, 3), rng.standard_normal(5) * 10.0 ** rng.integers(-300, 300, 5)])
        for start in (0.0, 1.0):
            assert bit_max(v, start) == max(start, v.max())
    assert bit_max(np.array([-np.inf, -1.0, -0.0]), 1.0) == 1.0


def _lp_of(pr, i, start):
    """lp_data of prosumer i of ``pr`` with its appliance at ``start``: (H, shape, b, c, lo, hi)."""
    H = pr.base_kw.shape[1]
    args = [a[i] if isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[0] == pr.base_kw.shape[0] else a
            for a in ems._problem_args(pr)]
    b, c, lo, hi = (np.empty((ems_lp.NR, H)), np.empty((ems_lp.NV, H)), np.empty((ems_lp.NV, H)),
                    np.empty((ems_lp.NV, H)))
    shape = ems_lp.lp_data(args[0], _load_at(pr, i, start), *args[2:7], ems.BIG_KW, pr.w_cap, *args[7:28],
                           pr.w_comfort, pr.w_ev, b, c, lo, hi)
    return H, shape, b, c, lo, hi


def _solve_lp(pr, i, shape, H, b, c, lo, hi, work, warm=False, x=None, y=None):
    g, k1, a, act, _ = shape
    x = np.empty((ems_lp.NV, H)) if x is None else x
    y = np.empty((ems_lp.NR, H)) if y is None else y
    it, ok = ems_lp.lp_solve(H, g, pr.hp_gain[i], k1, a, b, c, lo, hi, act, ems.LP_TOLERANCE, ems.LP_MAX_ITERATIONS,
                             x, y, work, warm)
    return it, ok, x, y


def test_lp_reads_no_work_entry_before_writing_it():
    # the work arrays are not initialised (ems_lp.lp_work): filled with NaN, or left from another
    # prosumer's solve, a cold solve gives the same iterate bit for bit
    pb = ems.random_problem(np.random.default_rng(5), 6, 15, "volatile", True)
    pr = ems.prepare(pb)
    H = pr.base_kw.shape[1]
    used = ems_lp.lp_work(H)
    for i in range(6):
        lp = _lp_of(pr, i, -1)
        if not lp[1][3][1:].any():
            continue  # no storage: no LP
        nan_work = ems_lp.lp_work(H)
        for arr in nan_work:
            arr[...] = np.nan if arr.dtype.kind == "f" else 123456789  # integer work: index garbage
        it0, ok0, x0, y0 = _solve_lp(pr, i, lp[1], *lp[:1], *lp[2:], nan_work)
        it1, ok1, x1, y1 = _solve_lp(pr, i, lp[1], *lp[:1], *lp[2:], used)
        assert ok0 and ok1 and it0 == it1
        assert np.array_equal(x0, x1) and np.array_equal(y0, y1)


def test_warm_start_reaches_the_same_optimum_in_fewer_iterations():
    # the appliance branch and bound's second solve starts from the first one's solution
    rng = np.random.default_rng(9)
    cold_its = warm_its = 0
    for kind, caps in (("volatile", True), ("tou", False), ("flat", True)):
        pb = ems.random_problem(rng, 8, 15, kind, caps, presence=np.ones((8, 5), bool))
        pr = ems.prepare(pb)
        for i in range(8):
            s0, s1 = int(pr.app_lo[i]), int(pr.app_hi[i])
            H, shape, b, c, lo, hi = _lp_of(pr, i, s0)
            work = ems_lp.lp_work(H)
            _, ok, x, y = _solve_lp(pr, i, shape, H, b, c, lo, hi, work)
            assert ok
            H, shape, b, c, lo, hi = _lp_of(pr, i, s1)
            it_c, ok_c, x_c, _ = _solve_lp(pr, i, shape, H, b, c, lo, hi, ems_lp.lp_work(H))
            it_w, ok_w, x_w, _ = _solve_lp(pr, i, shape, H, b, c, lo, hi, work, True, x, y)
            assert ok_c and ok_w
            v_c, v_w = float((c * x_c).sum()), float((c * x_w).sum())
            assert abs(v_c - v_w) <= 1e-6 * max(1.0, abs(v_c))
            cold_its += it_c
            warm_its += it_w
    assert warm_its < 0.9 * cold_its
