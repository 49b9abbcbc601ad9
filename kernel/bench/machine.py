"""What a benchmark ran on: CPU, cores, memory, software versions.

Every report carries this, so a number is never read without its machine.
"""

import datetime
import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

from .. import backends

__all__ = ["machine_info"]


def _cpu_model():
    """``'model name'`` of /proc/cpuinfo, with its family/model/stepping
    numbers (a VM often shows only a vendor name)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    ids = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    return f"{name} ({', '.join(ids)})" if ids else name


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


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - not installed, or broken: informational only
        return None


def _numba_version():
    return _version("numba")


def _cpu_mhz():
    """``{'current_mhz', 'max_mhz'}`` from cpufreq or /proc/cpuinfo, where known."""
    out = {"current_mhz": None, "max_mhz": None}
    base = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    for key, name in (("current_mhz", "scaling_cur_freq"), ("max_mhz", "cpuinfo_max_freq")):
        try:
            out[key] = round(int((base / name).read_text()) / 1000)
        except (OSError, ValueError):
            pass
    if out["current_mhz"] is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                mhz = [float(line.split(":")[1]) for line in f if line.lower().startswith("cpu mhz")]
            out["current_mhz"] = round(sum(mhz) / len(mhz)) if mhz else None
        except (OSError, ValueError, IndexError):
            pass
    return out


def _git():
    """``{'commit', 'dirty'}`` of the checkout the package was imported from."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(status.strip()) if commit else None}


def _numba_threading_layer():
    """The layer Numba loaded, if the numba backend ran a parallel kernel."""
    if "kernel._numba.kernels" not in sys.modules:
        return None
    layer = getattr(sys.modules["kernel._numba.kernels"], "threading_layer", None)
    try:
        return layer() if callable(layer) else None
    except Exception:  # noqa: BLE001 - informational only
        return None


def machine_info(argv=None):
    """A JSON-serialisable description of this machine and software.

    Returns
    -------
    dict
        ``cpu``, ``logical_cores``, ``usable_cores``, ``memory_gib``, ``os``,
        ``python``, ``numpy``, ``numba``, ``cython_openmp``,
        ``numba_threading_layer`` (``None`` until a parallel Numba kernel
        ran in this process), ``kernel`` version and ``date`` (UTC, ISO 8601),
        and the provenance: CPU frequency, kernel release, llvmlite, Cython,
        the C compiler and flags (the extension's and the C loops'), git
        commit and whether the checkout was dirty, the command line, the
        load average.
    """
    from .. import __version__, openmp_enabled
    from .cloops import CFLAGS, compiler_version
    from .disturbance import load_average

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
        **_cpu_mhz(),
        "os_kernel": platform.release(),
        "llvmlite": _version("llvmlite"),
        "cython": _version("Cython"),
        "compiler": compiler_version(),
        "extension_cflags": " ".join(filter(None, [sysconfig.get_config_var("CC"),
                                                   sysconfig.get_config_var("CFLAGS")])),
        "c_loop_flags": " ".join(CFLAGS),
        **_git(),
        "command": " ".join(argv if argv is not None else [os.path.basename(sys.executable), *sys.argv]),
        "load_average_at_end": load_average(),
    }
