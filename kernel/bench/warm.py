"""Compile the Numba kernels ahead, into Numba's on-disk cache.

    python -m kernel.bench.warm                  # every registry workload, every mode, 1 and 2 threads
    python -m kernel.bench.warm --workloads uniform,carts --modes tracked

The Numba backend compiles each kernel on its first call in a process and
keeps the machine code in its on-disk cache, so later processes load it in
a fraction of a second.  A cold tracked kernel takes 35-80 s to compile on
the 2-core VM; a deploy can pay that once, ahead, and so does a run of the
test suite (``tests/conftest.py`` runs this in two processes, one per kernel
family, before the tests: ``--workloads`` splits it).  Several processes may
run it at once: the backend's cache queues their saves on a lock.

Each cell is one checked call (:func:`kernel.bench.runner.timed_round`) of a
registry workload at ``--scale`` (the calls take milliseconds).  The facade's
thread policy would run small or contended batches on one thread; here, as in
the tests, it is lifted for the duration (:func:`every_dispatcher`), so a
call on more than one thread reaches the parallel dispatchers whatever the
batch.  Tracked cells go first: they are the slow ones to compile, and a test
run needs them latest.
"""

import argparse
import contextlib
import sys
import time

import numpy as np

from .. import backends, inventory
from ..codes import Status
from ..invariants import check_tracked
from .runner import MODES, timed_round
from .workloads import WORKLOADS, make_case

__all__ = ["warm", "lifecycle_round", "every_dispatcher", "main"]

DEFAULT_SCALE = 0.001  # 10,000 uniform orders
WARM_MODES = ("tracked",) + tuple(mode for mode in MODES if mode != "tracked")


@contextlib.contextmanager
def every_dispatcher():
    """Within it, a call on more than one thread runs the parallel
    dispatchers however small or contended its batch (the facade's
    ``PARALLEL_GRAIN`` and ``CONTENDED_SKUS`` lifted; the tests run inside
    it too, ``tests/conftest.py``),
    and the machine code is the same: those are Python-level choices of
    which dispatcher to call, not constants of the kernels.  Process-wide:
    warm a process before it serves, not while it does."""
    saved = backends.PARALLEL_GRAIN, inventory.CONTENDED_SKUS
    backends.PARALLEL_GRAIN, inventory.CONTENDED_SKUS = 1, 0
    try:
        yield
    finally:
        backends.PARALLEL_GRAIN, inventory.CONTENDED_SKUS = saved


def warm(workloads=None, modes=WARM_MODES, thread_counts=(1, 2), scale=DEFAULT_SCALE, progress=None,
         lifecycle=True):
    """Run one checked numba call of each workload x mode x thread count
    (and, with ``lifecycle``, a :func:`lifecycle_round` after each tracked one).

    Returns ``[(workload, mode, threads, seconds)]``: the first call's time,
    which is the compile (or the cache load) of whatever it reached first.

    Raises
    ------
    ImportError
        Numba is not installed.
    KeyError
        An unknown workload or mode.
    """
    import numba  # noqa: F401  (a clear ImportError before any work)
    workloads = list(WORKLOADS) if workloads is None else list(workloads)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise KeyError(f"mode {unknown[0]!r} is not one of {MODES}")
    cases = [make_case(name, scale) for name in workloads]
    out = []
    with every_dispatcher():
        for mode in modes:
            for case in cases:
                for threads in thread_counts:
                    t0 = time.perf_counter()
                    timed_round(case, "numba", mode, threads)
                    if mode == "tracked" and lifecycle:
                        lifecycle_round(case, threads)
                    out.append((case.name, mode, threads, time.perf_counter() - t0))
                    if progress is not None:
                        progress(*out[-1])
    return out


def lifecycle_round(case, threads):
    """What a service does after a tracked reserve, once each, checked: a
    third of the accepted orders confirmed, a third cancelled, the rest
    expired, a recover, a restock, a ``reserve_one``; then the same batch on
    a durable inventory (``fsync="none"``, in a temporary directory: the
    journal's compiled capture)."""
    from ..journal.bench import durable_round  # (imported when used, as runner.timed_round does)
    inv = case.inventory("numba", threads, tracked=True)
    orders = case.tracked_orders()
    initial = inv.stock.copy()
    status = inv.reserve(orders, threads=threads, hold_until=1).status
    accepted = orders.order_id[status == Status.ACCEPTED]
    third = accepted.size // 3
    inv.confirm(accepted[:third], threads=threads)
    inv.cancel(accepted[third:2 * third], threads=threads)
    inv.expire(1, threads=threads)
    inv.recover()
    inv.restock(0, 1, threads=threads)
    restocked = np.zeros_like(initial)
    restocked[0] = 1
    check_tracked(inv, initial, restocked=restocked)
    alone = case.inventory("numba", threads, tracked=True)  # (inv's order table is full)
    alone.reserve_one(int(orders.sku[0]), order_id=1, user_id=0)
    check_tracked(alone, initial)
    durable_round(case, "numba", threads, fsync="none")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kernel.bench.warm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated (default: all)")
    parser.add_argument("--modes", default=",".join(WARM_MODES), help="comma-separated (default: all)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--no-lifecycle", action="store_true",
                        help="no confirm/cancel/expire/recover/restock/reserve_one/durable calls after the tracked ones")
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help=f"workload scale (default {DEFAULT_SCALE}: 10,000 uniform orders)")
    args = parser.parse_args(argv)
    split = lambda text: [part.strip() for part in text.split(",") if part.strip()]
    t0 = time.perf_counter()
    warm(split(args.workloads), split(args.modes), [int(t) for t in split(args.threads)], args.scale,
         progress=lambda w, m, t, s: print(f"{w:12s} {m:10s} {t} thread(s): {s:6.2f} s", flush=True),
         lifecycle=not args.no_lifecycle)
    print(f"warm: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
