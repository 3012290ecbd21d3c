"""flexenv: reinforcement-learning environments for electricity flexibility.

    import flexenv
    env = flexenv.make("PriceDriven-Tariff-Teaching10-v0")      # PettingZoo ParallelEnv
    view = flexenv.wrappers.single_agent(env, "aggregator_1")   # Gymnasium Env

Heavy modules (the engine, pandapower, torch) load only when used.
"""

__version__ = "0.1.0"


def make(env_id_or_scenario, render_mode=None, **scenario_overrides):
    """The PettingZoo parallel env of a registered id, preset, YAML path or Scenario (see flexenv.envs)."""
    from flexenv.envs.registry import make as _make

    return _make(env_id_or_scenario, render_mode=render_mode, **scenario_overrides)


def env_ids() -> list[str]:
    """Every registered environment id."""
    from flexenv.envs.registry import env_ids as _env_ids

    return _env_ids()


def _register() -> None:
    # Single-agent views become available to gymnasium.make("flexenv/...") once flexenv is imported.
    from flexenv.envs.registry import register_gymnasium

    register_gymnasium()


_register()


def __getattr__(name):
    if name == "wrappers":
        import importlib

        return importlib.import_module("flexenv.wrappers")
    raise AttributeError(name)
