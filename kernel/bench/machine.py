"""What a benchmark ran on: CPU, cores, memory, software versions.

Every report carries this, so a number is never read without its machine.
"""

import datetime
import os
import platform
import sys

import numpy as np

from .. import backends

__all__ = ["machine_info"]


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _total_memory_bytes():
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _numba_version():
    try:
        import numba
    except ImportError:
        return None
    return numba.__version__


def _numba_threading_layer():
    """The layer Numba loaded, if the numba backend ran a parallel kernel."""
    if "kernel._numba.kernels" not in sys.modules:
        return None
    layer = getattr(sys.modules["kernel._numba.kernels"], "threading_layer", None)
    try:
        return layer() if callable(layer) else None
    except Exception:  # noqa: BLE001 - informational only
        return None


def machine_info():
    """A JSON-serialisable description of this machine and software.

    Returns
    -------
    dict
        ``cpu``, ``logical_cores``, ``usable_cores``, ``memory_gib``, ``os``,
        ``python``, ``numpy``, ``numba``, ``cython_openmp``,
        ``numba_threading_layer`` (``None`` until a parallel Numba kernel
        ran in this process), ``kernel`` version and ``date`` (UTC, ISO 8601).
    """
    from .. import __version__, openmp_enabled

    memory = _total_memory_bytes()
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": backends.default_threads(),
        "memory_gib": None if memory is None else round(memory / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _numba_version(),
        "cython_openmp": openmp_enabled(),
        "numba_threading_layer": _numba_threading_layer(),
        "kernel": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
