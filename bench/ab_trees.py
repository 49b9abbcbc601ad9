"""Before / after on one machine: one mode (default: tracked) of two source
trees, timed in alternating fresh processes (so load that drifts hits both
alike).

    git archive <old-commit> | tar -x -C /tmp/old && (cd /tmp/old && python setup.py build_ext --inplace)
    python bench/ab_trees.py /tmp/old . --workload carts --scale 0.03 --reps 5
    python bench/ab_trees.py /tmp/old . --workload carts --mode concurrent --backends numba

Each repetition runs one process per tree; each process times two checked
rounds per backend and thread count after a warm-up.  Prints the
medians (M orders/s), the spread (max-min over median) and after/before.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from kernel.bench.runner import MODES

_ONE = """
import json, sys
from kernel.bench.runner import timed_round
from kernel.bench.workloads import make_case
case = make_case(sys.argv[1], float(sys.argv[2]))
mode = sys.argv[3]
out = {"n": case.n_orders}
for backend in sys.argv[4].split(","):
    for t in (1, 2):
        timed_round(case, backend, mode, t)
        out[f"{backend} {t}"] = [timed_round(case, backend, mode, t)[0] for _ in range(2)]
print(json.dumps(out))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--workload", default="uniform")
    parser.add_argument("--scale", default="0.1")
    parser.add_argument("--mode", default="tracked", choices=MODES)
    parser.add_argument("--backends", default="cython,numba")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    times, n = {}, None
    for _ in range(args.reps):
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=tree)
            res = subprocess.run([sys.executable, "-c", _ONE, args.workload, args.scale, args.mode,
                                  args.backends], cwd="/", env=env,
                                 capture_output=True, text=True, check=True)
            out = json.loads(res.stdout.strip().splitlines()[-1])
            n = out.pop("n")
            for key, ts in out.items():
                times.setdefault((key, name), []).extend(ts)
    for key in sorted({k for k, _ in times}):
        cells = []
        for name in trees:
            ts = times[(key, name)]
            med = statistics.median(ts)
            cells.append(f"{name} {n / med / 1e6:6.2f} M/s (spread {(max(ts) - min(ts)) / med:4.0%}, n={len(ts)})")
        ratio = statistics.median(times[(key, "before")]) / statistics.median(times[(key, "after")])
        print(f"{args.workload} {args.mode} {key:9s} | {' | '.join(cells)} | after/before {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
