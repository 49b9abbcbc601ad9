"""The registry of backends (name -> kernel module) and the policies the
facade drives every kernel with: how many threads a call gets, and when a
concurrent batch's refused orders are re-run (G4).

Every backend module exposes the functions of :mod:`kernel.reference` with the
same names and arguments; adding a backend is one entry in ``BACKENDS``.
"""

import importlib
import os

import numpy as np

from .codes import ROLLBACKS

__all__ = ["BACKENDS", "available_backends", "load", "openmp_enabled", "resolve_threads", "default_threads",
           "rerun_refused_after_rollback", "arrival_order"]

# Preference order for backend="auto": the first importable one wins.
BACKENDS = {
    "cython": "kernel._cython.kernels",
    "numba": "kernel._numba.kernels",
    "reference": "kernel.reference",
}

# Lines of work a thread must get to be worth waking.  Below this the
# fork-join of a parallel region (tens of microseconds, far more when the
# machine is busy) costs more than the work itself, and 2 threads would be
# slower than 1; so small batches run on fewer threads.  (~0.5 ms of work.)
PARALLEL_GRAIN = 50_000

_loaded = {}
_errors = {}

# Set when this process ran a multi-threaded kernel.  GNU OpenMP's thread pool
# does not survive fork(): a child that enters a parallel region the parent
# had already used can hang (Cython) or abort (Numba's omp layer).  A child of
# such a parent therefore runs the compiled kernels on one thread.
_parallel_used = False
_forked_after_parallel = False


def _after_fork_in_child():
    global _forked_after_parallel
    if _parallel_used:
        _forked_after_parallel = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def load(name):
    """Import and return the kernel module of backend ``name``.

    ``"auto"`` picks the first available of cython, numba, reference.  A
    non-string is taken as a kernel module already (a module of
    :data:`BACKENDS`, or a wrapper around one that exposes the same
    functions and ``__name__``, such as the instruction-count gate's probe)
    and returned as it is.
    """
    if not isinstance(name, str):
        backend_name(name)  # must stand for a registered backend
        return name
    if name == "auto":
        for candidate in BACKENDS:
            if _try_load(candidate) is not None:
                return _loaded[candidate]
        raise ImportError("no kernel backend could be imported")  # reference always imports
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {name!r}")
    module = _try_load(name)
    if module is None:
        raise ImportError(f"backend {name!r} is not available: {_errors[name]}")
    return module


def _try_load(name):
    if name not in _loaded and name not in _errors:
        try:
            _loaded[name] = importlib.import_module(BACKENDS[name])
        except ImportError as exc:  # e.g. the Cython extension was not built
            _errors[name] = f"{type(exc).__name__}: {exc}"
    return _loaded.get(name)


def backend_name(module):
    """The registry name of a loaded kernel module (or of a wrapper with its
    ``__name__``)."""
    for name, path in BACKENDS.items():
        if path == getattr(module, "__name__", None):
            return name
    raise ValueError(f"backend must be one of {['auto', *BACKENDS]} or one of their kernel modules, got {module!r}")


def available_backends():
    """Names of the backends that import on this machine, in preference order.

    Returns
    -------
    list of str
    """
    return [name for name in BACKENDS if _try_load(name) is not None]


def openmp_enabled():
    """Whether the Cython kernels were compiled with OpenMP (so can run on
    several threads); ``False`` if the extension is not built."""
    module = _try_load("cython")
    return bool(module is not None and module.openmp_enabled())


def default_threads():
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(module, threads, work, contended=False):
    """The thread count a kernel call actually uses for ``work`` lines.

    At most ``threads`` (``None``: every core), at most one per
    ``PARALLEL_GRAIN`` lines, and 1 for the reference, for ``contended``
    work (threads would fight over a few cache lines; the facade judges
    that) or in a child forked after this process ran a parallel kernel.
    """
    global _parallel_used
    n = default_threads() if threads is None else threads
    if module.__name__ == BACKENDS["reference"] or _forked_after_parallel or contended:
        return 1
    n = min(n, max(1, work // PARALLEL_GRAIN))
    if n > 1:
        _parallel_used = True
    return n


def rerun_refused_after_rollback(counters, rollbacks_before, status, refused, rerun, own_serial=0):
    """The G4 (no under-selling) rule for a concurrent batch.

    A rollback hands units back after other orders may have been refused for
    lack of them.  So when one happened while the batch ran (in it, or in
    another call on the same inventory: ``counters[ROLLBACKS]`` moved past
    ``rollbacks_before``), every order whose ``status`` is one of the codes
    ``refused`` is run again, one by one in arrival order, by
    ``rerun(mask)`` (``mask[i]``: order ``i`` is refused; the caller's to
    change; :func:`arrival_order` makes it the kernels' order index): an
    order still refused then was refused against stock that only shrinks
    from there on, so no order is refused for stock that is there at the end.

    ``own_serial``: rollbacks the batch's kernel made itself, counted by it,
    where it ran on ONE thread (else pass 0).  Those need no re-run: on one
    thread an order gives back what it took before the next order is
    decided, so no order of the batch met units another of its orders held
    for a moment, and the stock each refused order met only shrank after it.
    When every rollback since ``rollbacks_before`` was one of those (none came
    from another call), nothing is re-run.

    Returns what ``rerun`` returned, or ``None`` when no re-run was needed.
    """
    if counters[ROLLBACKS] - rollbacks_before == own_serial:
        return None
    # A mask, not an index: in a flash sale ~900k of 1M orders are refused,
    # and an int64 index of them (7 MB of fresh pages) and the tracked
    # path's selections through it (lifecycle.py) took ~12 ms of a call
    # that the masks do in ~3 (np.isin's table lookup too: compares).
    mask = np.zeros(status.shape, dtype=bool)
    for code in np.atleast_1d(refused):
        mask |= status == code
    return rerun(mask)


def arrival_order(mask):
    """The orders ``mask`` selects, as the int64 order index the kernels take
    (ascending: arrival order)."""
    return np.flatnonzero(mask).astype(np.int64, copy=False)
