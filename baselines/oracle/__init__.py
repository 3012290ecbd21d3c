"""MILP oracles (HiGHS): the portfolio oracle of a whole episode (`solve`, `portfolio`), its replay
through the engine (`replay_schedules`), the exact prosumer MILP (`prosumer`) and the shared device builders
(`devices`, `model`).

The portfolio names are imported lazily, so `from baselines.oracle import prosumer` stays light.
"""

_EXPORTS = {
    "solve": "portfolio", "solve_engine": "portfolio", "build_model": "portfolio", "OracleResult": "portfolio",
    "Schedules": "portfolio", "OracleInfeasibleError": "portfolio", "GRID_FAMILIES": "portfolio",
    "replay_schedules": "replay", "ReplayResult": "replay",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
