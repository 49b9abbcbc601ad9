"""How the C loops were checked not to be weak: their prefetch distances
side by side, interleaved round by round on the same data.

    python bench/c_variants.py --scale 0.1 --rounds 7
    python bench/c_variants.py --aheads 0,4,8,16 --workloads carts --modes concurrent

Builds the registry's C sources (``kernel/bench/c/``) once per prefetch
distance (``-DSINGLE_AHEAD=d -DCARTS_AHEAD=d -DGENERAL_AHEAD=d
-DTRACKED_AHEAD=d -DTRACKED_CART_AHEAD=d -DTRACKED_GENERAL_AHEAD=d``; 0: no
prefetch, for the tracked loops but the general ones 0 prefetches the
current order, i.e. nothing ahead), then times every loop that fits each
workload (serial on one thread, CAS on each thread count) at every distance,
every call checked (``kernel.bench.cloops``).  Prints the median M orders/s,
the best round's (the least disturbed on a shared machine), the spread
(max-min over median) and each variant's ratio to the best distance of the
same loop, by median and by best round.  The defaults in the C files are the distances
that won here; their figures are quoted at the top of each C file.
"""

import argparse
import statistics
import sys
import time

from kernel.bench import cloops
from kernel.bench.workloads import make_case


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workloads", default="uniform,zipf,carts,marketplace")
    parser.add_argument("--modes", default="concurrent,tracked")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--aheads", default="0,4,8,16")
    parser.add_argument("--min-round-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    aheads = [int(a) for a in args.aheads.split(",")]
    libs = {}
    for d in aheads:
        kinds = ("SINGLE", "CARTS", "GENERAL", "TRACKED", "TRACKED_CART", "TRACKED_GENERAL")
        lib, note = cloops.load([f"{k}_AHEAD={d}" for k in kinds])
        if lib is None:
            print(note)
            return 1
        libs[d] = lib
    print(note.replace("C loops compiled with:", "compiled with:"), "-D*_AHEAD=" + "/".join(map(str, aheads)))
    threads = [int(t) for t in args.threads.split(",")]
    print(f"{'workload':<12} {'loop':<20} {'thr':>3} {'ahead':>5} {'median M/s':>10} {'best M/s':>9} {'spread':>7} "
          f"{'vs best':>8} {'(best rounds)':>13}")
    for workload in args.workloads.split(","):
        case = make_case(workload, args.scale)
        cells = []
        for loop in cloops.loops_for(case, args.modes.split(",")):
            for t in (threads if loop.parallel else [1]):
                for d in aheads:
                    cells.append(((loop.function, t, d), cloops.cell(libs[d], loop, case, t)))
        reps = {}
        for key, c in cells:  # warm-up, and calls per round for at least --min-round-ms
            elapsed = c.run()[0]
            reps[key] = max(1, min(64, int(args.min_round_ms / 1e3 / max(elapsed, 1e-9)) + 1))
        times = {key: [] for key, _ in cells}
        for _ in range(args.rounds):
            for key, c in cells:
                total = sum(c.run()[0] for _ in range(reps[key]))
                times[key].append(total / reps[key])
        rate = {key: case.n_orders / statistics.median(ts) / 1e6 for key, ts in times.items()}
        top = {key: case.n_orders / min(ts) / 1e6 for key, ts in times.items()}
        for (function, t, d), ts in times.items():
            best = max(rate[(function, t, x)] for x in aheads)
            best_top = max(top[(function, t, x)] for x in aheads)
            spread = (max(ts) - min(ts)) / statistics.median(ts)
            print(f"{workload:<12} {function:<20} {t:>3} {d:>5} {rate[(function, t, d)]:>10.1f} "
                  f"{top[(function, t, d)]:>9.1f} {spread:>6.0%} {rate[(function, t, d)] / best:>7.0%} "
                  f"{top[(function, t, d)] / best_top:>13.0%}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - t0:.0f} s)")
    sys.exit(code)
