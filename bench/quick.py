"""Hand-check of kernel speed against hand-written C, side by side in one run.

    python bench/quick.py                      # W1-W4 at full size (10M orders)
    python bench/quick.py --scale 0.1 --rounds 3

A shortcut for the main runner with only the plain modes, the compiled
backends and the C loops of ``kernel/bench/c/`` (registered in
``kernel.bench.cloops``), no peers and no latency: the same interleaved,
checked rounds, and each kernel cell's ratio to the best C loop ("x best C").
Extra options go through to ``python -m kernel.bench``.
"""

import sys

from kernel.bench.__main__ import main

DEFAULTS = ["--scale", "1.0", "--workloads", "uniform,zipf,flash-sale,carts", "--backends", "cython,numba",
            "--modes", "concurrent,ordered", "--peers", "none", "--no-latency", "--out", "./bench-report-quick"]

if __name__ == "__main__":
    sys.exit(main(DEFAULTS + sys.argv[1:]))
