"""What machine a benchmark ran on (one line for the results files)."""

import os
import platform


def describe_machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numba

    return (f"{cpu} ({os.cpu_count()} logical cores), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, numba {numba.__version__}")
