"""flexenv: RL environments for electricity flexibility."""
__version__ = "0.1.0"
