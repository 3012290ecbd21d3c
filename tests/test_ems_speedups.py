"""The EMS kernels' shortcuts give exactly what the plain computations give (bit for bit)."""

import numba
import numpy as np
import pytest

from flexenv.policies import ems


def _sorted_points(rng, n):
    x = np.cumsum(rng.uniform(0.01, 1.0, n)) - 3.0
    y = rng.normal(0.0, 1.0, n)
    return x, y


def test_find_with_hint_equals_searchsorted():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40):
        x, _ = _sorted_points(rng, n)
        queries = np.concatenate([x, rng.uniform(x[0] - 1.0, x[-1] + 1.0, 30)])
        for q in queries:
            expect = np.searchsorted(x, q)
            assert ems._find(x, n, q, -1) == expect
            for h in (0, n // 2, n, int(expect)):
                assert ems._find(x, n, q, h) == expect


def test_pl_eval_sorted_equals_pointwise():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 60):
        x, y = _sorted_points(rng, n)
        q = np.sort(np.concatenate([x, rng.uniform(x[0] - 1.0, x[-1] + 1.0, 25)]))
        out = np.empty(q.size)
        ems._pl_eval_sorted(x, y, n, q, q.size, out)
        expect = np.array([ems._pl_eval(x, y, n, v, -1) for v in q])
        assert out.tobytes() == expect.tobytes()


def test_same_bits_tells_signed_zeros_apart():
    assert ems._same_bits(1.5, 1.5)
    assert ems._same_bits(0.0, 0.0)
    assert not ems._same_bits(0.0, -0.0)
    assert not ems._same_bits(1.0, np.nextafter(1.0, 2.0))
    assert not ems._same_bits(np.nan, np.nan)


@pytest.mark.parametrize("cfg", [ems.EMSConfig(), ems.DESCENT_PROFILE, ems.ENGINE_PROFILE,
                                 ems.DESCENT_PROFILE._replace(exchange_rounds=0, appliance_candidates=0)])
def test_plans_identical_on_one_and_more_threads(cfg):
    # the per-prosumer work arrays (borrowed views, deferred past values, skipped re-plans) must not
    # leak between prosumers or threads: a prosumer's plan is the same alone, in a batch, on 1 thread
    pb = ems.random_problem(np.random.default_rng(5), 16, 15, "volatile", True)
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ems.plan(pb, cfg)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = ems.plan(pb, cfg)
    finally:
        numba.set_num_threads(n0)
    alone = ems.plan(ems.select(pb, slice(3, 4)), cfg)
    for f in one._fields:
        a, b = np.asarray(getattr(one, f)), np.asarray(getattr(many, f))
        assert a.tobytes() == b.tobytes(), f
        if a.ndim >= 1 and a.shape[0] == 16:
            assert a[3:4].tobytes() == np.asarray(getattr(alone, f)).tobytes(), f
