"""The feeder of a scenario: a named pandapower LV network, a SimBench grid, or a synthetic one."""

from __future__ import annotations

import functools
import warnings

from flexenv.physics.feeder import Feeder
from flexenv.scenario.schema import FeederConfig

# pandapower constructor for each named feeder (pandapower.networks)
_PANDAPOWER_NETWORKS = {
    "kerber_landnetz_kabel_1": ("create_kerber_landnetz_kabel_1", {}),
    "kerber_landnetz_kabel_2": ("create_kerber_landnetz_kabel_2", {}),
    "kerber_landnetz_freileitung_1": ("create_kerber_landnetz_freileitung_1", {}),
    "kerber_landnetz_freileitung_2": ("create_kerber_landnetz_freileitung_2", {}),
    "kerber_dorfnetz": ("create_kerber_dorfnetz", {}),
    "kerber_vorstadtnetz_kabel_1": ("create_kerber_vorstadtnetz_kabel_1", {}),
    "kerber_vorstadtnetz_kabel_2": ("create_kerber_vorstadtnetz_kabel_2", {}),
    "ieee_european_lv": ("ieee_european_lv_asymmetric", {"scenario": "on_peak_566"}),
}


def pandapower_net(name: str, seed: int = 0):
    """A fresh pandapower network for a named feeder (pandapower is imported here, lazily).

    pandapower's Kerber builders draw cable types and branch-outs with Python's `random` module, so
    they run under `random.seed(seed)`: every process builds the same feeder for the same seed (the
    caller's random state is restored afterwards)."""
    import random

    import pandapower.networks as pn

    constructor, kwargs = _PANDAPOWER_NETWORKS[name]
    state = random.getstate()
    random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandapower's deprecation chatter on network creation
            return getattr(pn, constructor)(**kwargs)
    finally:
        random.setstate(state)


def simbench_net(code: str):
    """A SimBench LV grid (needs the `data` extra)."""
    try:
        import simbench
    except ImportError as err:  # pragma: no cover - depends on the optional extra
        raise ImportError("feeder.source 'simbench' needs the data extra: pip install 'flexenv[data]'") from err
    return simbench.get_simbench_net(code)


@functools.lru_cache(maxsize=32)
def _load_feeder(source: str, name: str | None, simbench_code: str | None, n_buses: int, seed: int) -> Feeder:
    if source == "named":
        return Feeder.from_pandapower(pandapower_net(name, seed), name=name)
    if source == "simbench":
        return Feeder.from_pandapower(simbench_net(simbench_code), name=simbench_code)
    return Feeder.synthetic(n_buses, seed)


def load_feeder(config: FeederConfig, seed: int = 0) -> Feeder:
    """The feeder arrays of a feeder config (cached: feeders are immutable)."""
    return _load_feeder(config.source, config.name, config.simbench_code, config.n_buses, seed)
