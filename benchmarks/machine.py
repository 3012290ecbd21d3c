"""What machine a benchmark ran on (one line for the results files)."""

import os
import platform


def cpu_name() -> str:
    """The CPU model name (Linux), else what the platform says."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu


def describe_machine() -> str:
    import numba

    cpu = cpu_name()
    return (f"{cpu} ({os.cpu_count()} logical cores), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, numba {numba.__version__}")
