"""Nanoseconds per ``Inventory.reserve_one`` call from Python, per backend.

    python -m kernel.bench.single [--calls 200000] [--rounds 5] [--backends cython,numba]

Each round makes a fresh tracked inventory (untimed) whose one SKU holds
exactly ``calls`` units, then times a plain Python loop of ``calls``
single-unit reserves with new ids (with a per-user cap, and buyers who
come back).  Afterwards every call must have been accepted, the stock must
be 0 and :func:`kernel.invariants.check_tracked` must pass: a wrong result
is an error, not a number.  Rows:

* ``reserve_one``: the public method (argument checks + kernel);
* ``kernel only``: the backend's bound kernel called directly, i.e. what
  the argument checks cost on top of it;
* ``duplicate``: ``reserve_one`` of an id already seen (the retry path).
"""

import argparse
import statistics
import time

import numpy as np

from ..backends import BACKENDS
from ..inventory import Inventory
from ..invariants import check_tracked
from ..codes import OrderState
from ..tracking import NO_DEADLINE, NO_LIMIT

__all__ = ["measure_reserve_one", "measure_side_by_side", "prepare", "check", "VARIANTS", "main"]

VARIANTS = ("reserve_one", "kernel only", "duplicate")

_N_USERS_PER_CALL = 0.25  # a quarter as many buyers as calls: they come back
_CAP = 8


def prepare(backend, calls, variant):
    """A fresh inventory and the untimed callable for one round of ``variant``."""
    inv = Inventory([calls], backend=backend, max_orders=2 * calls, limit_per_user=_CAP)
    users = (np.arange(calls) % max(1, int(calls * _N_USERS_PER_CALL))).tolist()
    reserve_one = inv.reserve_one
    if variant == "duplicate":
        for order_id in range(calls):  # untimed: make every id known
            reserve_one(0, 1, order_id=order_id, user_id=users[order_id])
    if variant == "kernel only":
        kernel_call = inv.reserve_one_unchecked()

        def loop():
            for order_id, user in zip(range(calls), users):
                kernel_call(0, 1, NO_LIMIT, order_id, user, NO_DEADLINE)
    else:
        def loop():
            for order_id, user in zip(range(calls), users):
                reserve_one(0, 1, order_id=order_id, user_id=user)
    return inv, loop


def check(inv, calls):
    """Every unit sold exactly once, to distinct ids; the state consistent."""
    assert inv.stock.tolist() == [0], f"stock {inv.stock.tolist()} after {calls} single-unit calls"
    held = int(np.count_nonzero(inv.state_of(np.arange(calls)) == OrderState.HELD))
    assert held == calls, f"{held} orders held, expected {calls}"
    check_tracked(inv, [calls])


def _round(backend, calls, variant):
    inv, loop = prepare(backend, calls, variant)
    t0 = time.perf_counter()
    loop()
    elapsed = time.perf_counter() - t0
    check(inv, calls)
    return elapsed


def measure_reserve_one(backend, calls=200_000, rounds=5, variant="reserve_one"):
    """Median nanoseconds per call over ``rounds`` checked rounds (after one
    untimed warm-up round that also compiles Numba's kernel), and every
    round's figure."""
    return measure_side_by_side([(backend, variant)], calls, rounds)[(backend, variant)]


def measure_side_by_side(cells, calls=200_000, rounds=5):
    """``{(backend, variant): (median ns/call, [ns/call per round])}``, the
    cells interleaved round by round so that a noisy neighbour slows them
    all alike."""
    for backend, variant in cells:
        _round(backend, min(calls, 1000), variant)  # warm-up: imports, Numba's compile or cache load
    times = {cell: [] for cell in cells}
    for _ in range(rounds):
        for cell in cells:
            times[cell].append(_round(cell[0], calls, cell[1]) / calls * 1e9)
    return {cell: (statistics.median(ns), ns) for cell, ns in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default=",".join(name for name in BACKENDS if name != "reference"))
    args = parser.parse_args(argv)
    cells = [(backend, variant) for backend in args.backends.split(",") for variant in VARIANTS]
    results = measure_side_by_side(cells, args.calls, args.rounds)
    print(f"{'backend':<10} {'call':<12} {'ns/call (median)':>17} {'spread':>16} {'calls/s':>12}")
    for (backend, variant), (median, all_rounds) in results.items():
        spread = f"{min(all_rounds):.0f}-{max(all_rounds):.0f}"
        print(f"{backend:<10} {variant:<12} {median:>17.0f} {spread:>16} {1e9 / median:>12,.0f}")


if __name__ == "__main__":
    main()
