"""Hand-check of kernel speed against hand-written C, side by side in one run.

    python bench/quick.py                      # W1-W4 at full size (10M orders)
    python bench/quick.py --scale 0.1 --rounds 3

For each workload (uniform = W1, zipf = W2, flash-sale = W3, carts = W4) it
times every compiled backend x mode (concurrent, ordered) x threads (1, 2)
end to end through the facade, and the C loops of ``c_baseline.c`` on the
same data, interleaved round by round so machine noise hits all alike.
Every timed kernel round is checked (no oversell, conservation, all or
nothing) before its time counts.  Prints medians in M orders/s and each
figure's ratio to the best C figure at the same or fewer threads.
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
from kernel.bench.runner import timed_round
from kernel.bench.workloads import make_case

HERE = Path(__file__).resolve().parent


def load_c_baseline():
    """Compile c_baseline.c with OpenMP into a temp dir; None if no compiler."""
    out = Path(tempfile.mkdtemp()) / "c_baseline.so"
    cmd = ["cc", "-O3", "-fopenmp", "-shared", "-fPIC", str(HERE / "c_baseline.c"), "-o", str(out)]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"(C baseline not built: {exc})")
        return None
    return ctypes.CDLL(str(out))


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
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    lib = load_c_baseline()
    print(f"kernel {kernel.__version__}, backends {kernel.available_backends()}, OpenMP {kernel.openmp_enabled()}, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"{'workload':<11} {'implementation':<24} {'threads':>7} {'median Mord/s':>14} {'min-max':>15} "
          f"{'vs best C':>9}")
    for workload in args.workloads.split(","):
        case = make_case(workload, args.scale)
        runners = {}
        if lib is not None:
            runners[("C sequential (no atomics)", 1)] = c_runner(lib, case, "seq", 1)
            for t in thread_counts:
                runners[("C CAS loop", t)] = c_runner(lib, case, "cas", t)
        for backend in args.backends.split(","):
            for mode in ("concurrent", "ordered"):
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
            best_c = max((r for (lab, tc), r in rate.items() if lab.startswith("C ") and tc <= t), default=None)
            lo, hi = case.n_orders / max(ts) / 1e6, case.n_orders / min(ts) / 1e6
            vs = f"{rate[(label, t)] / best_c:8.0%}" if best_c else "-"
            print(f"{workload:<11} {label:<24} {t:>7} {rate[(label, t)]:>14.1f} {lo:>7.1f}-{hi:<7.1f} {vs:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
