"""The tracked path against hand-written tracked C loops, side by side in one run.

    python bench/tracked_vs_c.py --scale 0.1 --workloads uniform --rounds 11     # issue 9's tracked target
    python bench/tracked_vs_c.py --scale 0.1 --workloads carts --modes concurrent,tracked

(``bench/quick.py`` and ``python -m kernel.bench`` time every C loop of the
registry ``kernel.bench.cloops``, the tracked ones included; this script
keeps what the registry does not: several prefetch distances of the tracked
C loops side by side (``--c-ahead 4,8,16``) and a word-for-word comparison of
their one-thread tables with the kernel's.  One C source: the loops are
compiled from ``kernel/bench/c/``.)

For each workload (uniform = W1, zipf = W2, flash-sale = W3, carts = W4) it
times every compiled backend x mode (concurrent, ordered) x threads (1, 2)
end to end through the facade, and the C loops of ``kernel/bench/c/baseline.c`` on the
same data, interleaved round by round so machine noise hits all alike.
Tracked rounds (``--modes ...,tracked``: ids, buyers, caps, holds) are timed
against the tracked C loops of ``kernel/bench/c/tracked.c``.
Every timed round, C included, is checked (no oversell, conservation, all or
nothing; tracked C: one thread gives the kernel's statuses, stock and tables
word for word) before its time counts.  Prints medians in M orders/s, the
spread (max-min over median) and each figure's ratio to the best C figure of
the same kind (plain or tracked) at the same or fewer threads.
"""

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import kernel
from kernel.bench import cloops
from kernel.bench.runner import timed_round
from kernel.bench.workloads import TRACKED_LIMIT, make_case

C_DIR = cloops.C_DIR  # the registry's C sources (package data): one source of truth
PLAIN_C = C_DIR / "baseline.c"
TRACKED_C = C_DIR / "tracked.c"


def load_c_baseline(source=PLAIN_C, defines=()):
    """Compile a C baseline with OpenMP into a temp dir; None if no compiler.
    ``-O3 -march=native``: the best the compiler can do on this machine."""
    out = Path(tempfile.mkdtemp()) / (Path(source).stem + ".so")
    cmd = ["cc", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", *(f"-D{d}" for d in defines),
           str(source), "-o", str(out)]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"(C baseline {source} not built: {exc})")
        return None
    return ctypes.CDLL(str(out))



def _power_of_two_at_least(n):
    return 1 << max(0, int(n - 1).bit_length())


def c_tracked_runner(lib, case, name, threads, expect):
    """A round of the tracked C loop ``name`` (seq / cas) on ``case``'s
    tracked orders, on fresh zeroed (prefaulted) tables sized as the kernel
    sizes its own; checked, and compared word for word with ``expect`` (the
    kernel's one-thread state) when it ran on one thread."""
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    o = case.tracked_orders()
    i64 = ctypes.c_int64
    carts = not o.one_line_per_order
    fn = getattr(lib, f"{name}_tracked_{'carts' if carts else 'single'}")
    if carts:
        assert np.diff(o.line_start).max() <= 64, "tracked.c takes carts of at most MAX_CART = 64 lines"
    status = np.empty(o.n_orders, np.int8)
    order_slots = _power_of_two_at_least(2 * o.n_orders)
    limit_slots = _power_of_two_at_least(2 * o.n_lines)

    def run():
        stock = case.stock.copy()
        order_table = np.zeros(4 * order_slots, np.int64)
        limit_table = np.zeros(2 * limit_slots, np.int64)
        fill_offer = np.zeros(o.n_lines, np.int64)
        fill_qty = np.zeros(o.n_lines, np.int64)
        for a in (order_table, limit_table, fill_offer, fill_qty):
            a.fill(0)  # prefault, as the kernel's block is at creation
        args = [ptr(stock), *([ptr(o.line_start)] if carts else []), ptr(o.sku), ptr(o.qty), ptr(status), i64(o.n_orders), ptr(o.order_id), ptr(o.user_id),
                ptr(order_table), i64(order_slots), ptr(limit_table), i64(limit_slots), ptr(fill_offer),
                ptr(fill_qty), i64(case.n_skus), i64(TRACKED_LIMIT)]
        if name == "cas":
            args.append(ctypes.c_int(threads))
        t0 = time.perf_counter()
        fn(*args)
        elapsed = time.perf_counter() - t0
        accepted = status == 0
        taken = np.zeros_like(stock)
        np.add.at(taken, o.sku, np.where(accepted[o.line_order], o.qty, 0))
        assert stock.min() >= 0 and np.array_equal(stock + taken, case.stock), f"C {name} broke an invariant"
        if threads == 1 and expect is not None:
            want_status, want_stock, want_words, want_pairs = expect
            assert np.array_equal(status, want_status), f"C {name}: statuses differ from the kernel's"
            assert np.array_equal(stock, want_stock), f"C {name}: stock differs from the kernel's"
            assert np.array_equal(order_table[0::4], want_words), f"C {name}: order words differ"
            # Pairs that count units (a refused cart may leave an empty pair the kernel did not add).
            held = limit_table[1::2] != 0
            assert np.array_equal(limit_table[0::2][held], want_pairs[0::2][held]) and np.array_equal(
                limit_table[1::2], want_pairs[1::2]), f"C {name}: limit table differs"
        return elapsed
    return run


def kernel_tracked_state(case, backend):
    """What one thread of the kernel leaves: statuses, stock, order words and
    the limit table (the tracked C loops must leave the same)."""
    inv = case.inventory(backend, 1, tracked=True)
    result = inv.reserve(case.tracked_orders(), threads=1)
    return (result.status.astype(np.int8), inv.stock.copy(), inv.state.order_table[0::4].copy(),
            inv.state.limit_table.copy())


def c_runner(lib, case, name, threads):
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    o = case.orders
    status = np.empty(o.n_orders, np.int8)
    carts = not o.one_line_per_order
    fn = getattr(lib, f"{name}_{'carts' if carts else 'single'}")
    args = [ptr(o.line_start)] if carts else []
    args += [ptr(o.sku), ptr(o.qty), ptr(status), ctypes.c_int64(o.n_orders)]
    if name == "cas":
        args.append(ctypes.c_int(threads))

    def run():
        stock = case.stock.copy()
        t0 = time.perf_counter()
        fn(ptr(stock), *args)
        elapsed = time.perf_counter() - t0
        # The C loops are checked too: no negative stock, units conserved.
        accepted = status == 0
        taken = np.zeros_like(stock)
        np.add.at(taken, o.sku, np.where(accepted[o.line_order], o.qty, 0))
        assert stock.min() >= 0 and np.array_equal(stock + taken, case.stock), f"C {name} broke an invariant"
        return elapsed
    return run


def kernel_runner(case, backend, mode, threads):
    return lambda: timed_round(case, backend, mode, threads)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", default="uniform,zipf,flash-sale,carts")
    parser.add_argument("--backends", default="cython,numba")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--modes", default="tracked",
                        help="kernel modes: concurrent, ordered, tracked")
    parser.add_argument("--c-ahead", default="",
                        help="prefetch distances (orders; carts for the cart loops) of the tracked C loops to "
                             "build and time, e.g. 4,8,16 (default: the C file's own)")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    modes = args.modes.split(",")
    lib = load_c_baseline()
    tracked_libs = {}
    if "tracked" in modes:
        for ahead in args.c_ahead.split(",") if args.c_ahead else ["default"]:
            defines = [] if ahead == "default" else [f"TRACKED_AHEAD={int(ahead)}", f"TRACKED_CART_AHEAD={int(ahead)}"]
            tracked_libs[ahead] = load_c_baseline(TRACKED_C, defines)
    print(f"kernel {kernel.__version__}, backends {kernel.available_backends()}, OpenMP {kernel.openmp_enabled()}, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"{'workload':<11} {'implementation':<30} {'threads':>7} {'median Mord/s':>14} {'min-max':>15} "
          f"{'spread':>7} {'vs best C':>9} {'paired per round':>18}")
    for workload in args.workloads.split(","):
        case = make_case(workload, args.scale)
        runners = {}
        plain = [m for m in modes if m != "tracked"]
        if lib is not None and plain:
            runners[("C sequential (no atomics)", 1)] = c_runner(lib, case, "seq", 1)
            for t in thread_counts:
                runners[("C CAS loop", t)] = c_runner(lib, case, "cas", t)
        if "tracked" in modes:
            expect = kernel_tracked_state(case, args.backends.split(",")[0])
            for ahead, tlib in tracked_libs.items():
                if tlib is not None:
                    runners[(f"C tracked seq ahead={ahead}", 1)] = c_tracked_runner(tlib, case, "seq", 1, expect)
                    for t in thread_counts:
                        runners[(f"C tracked CAS ahead={ahead}", t)] = c_tracked_runner(tlib, case, "cas", t, expect)
        for backend in args.backends.split(","):
            for mode in modes:
                for t in thread_counts:
                    runners[(f"{backend} {mode}", t)] = kernel_runner(case, backend, mode, t)
        for run in runners.values():
            run()  # warm-up: page faults, Numba compilation
        times = {key: [] for key in runners}
        for _ in range(args.rounds):
            for key, run in runners.items():
                times[key].append(run())
        rate = {key: case.n_orders / statistics.median(ts) / 1e6 for key, ts in times.items()}
        for (label, t), ts in times.items():
            tracked = "tracked" in label
            best_key = max(((lab, tc) for (lab, tc) in rate
                            if lab.startswith("C ") and ("tracked" in lab) == tracked and tc <= t),
                           key=rate.get, default=None)
            lo, hi = case.n_orders / max(ts) / 1e6, case.n_orders / min(ts) / 1e6
            spread = (max(ts) - min(ts)) / statistics.median(ts)
            vs = paired = "-"
            if best_key:
                vs = f"{rate[(label, t)] / rate[best_key]:.0%}"
                # Per round, against that C loop's time in the same round:
                # robust to load that drifts between rounds.
                ratios = [c / k for c, k in zip(times[best_key], ts)]
                paired = f"{statistics.median(ratios):.0%} ({min(ratios):.0%}-{max(ratios):.0%})"
            print(f"{workload:<11} {label:<30} {t:>7} {rate[(label, t)]:>14.1f} {lo:>7.1f}-{hi:<7.1f} "
                  f"{spread:>6.0%} {vs:>9} {paired:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
