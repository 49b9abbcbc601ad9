"""Wall-clock A/B of how the Numba carts kernel's per-cart helper is compiled.

    python bench/ab_take_cart.py --scale 0.1 --rounds 31

``general.take_cart`` is compiled as a plain call (``_jit``), where the other
per-order helpers are inlined at Numba's IR level (``_inline``; ``_jit.py``
says why).  This script compiles, in this process and without the on-disk
cache, an IR-inlined twin of it and of the kernels above it
(``_carts_chunk``, ``_reserve_carts``), then times the shipped kernels and
the twin on the same carts workload through the facade, alternating which
goes first round by round, every round checked (``timed_round``: no
oversell, conservation, all or nothing).  It prints, per mode and thread
count, the medians in M carts/s and the paired ratio (inlined time over
shipped time: above 1, the shipped one is faster), with its quartiles and
the rounds the shipped one won.  One process, so machine noise hits both
alike; the figures in ``general.py`` come from it.
"""

import argparse
import types

import numpy as np

from kernel._numba import _jit as J
from kernel._numba import general as G
from kernel.bench.runner import timed_round
from kernel.bench.workloads import make_case


def inlined_twin():
    """The carts kernels' globals with an IR-inlined ``take_cart`` (no cache:
    Numba's cache key would not tell the twin from the shipped kernels)."""
    nocache = {**J._jit, "cache": False}
    env = dict(G.__dict__)
    env["take_cart"] = J.njit(**{**nocache, "inline": "always"})(G.take_cart.py_func)
    env["_carts_chunk"] = J.njit(**nocache)(types.FunctionType(G._carts_chunk.py_func.__code__, env, "_carts_chunk"))
    reserve = types.FunctionType(G._reserve_carts.__code__, env, "_reserve_carts")
    return {"_carts_chunk": env["_carts_chunk"],
            "_reserve_carts_par": J.njit(parallel=True, **nocache)(J._clone(reserve, "_parallel")),
            "_reserve_carts_ser": J.njit(**nocache)(J._clone(reserve, "_serial"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="1.0 = 10M carts over 1M SKUs")
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args(argv)
    shipped = {name: getattr(G, name) for name in ("_carts_chunk", "_reserve_carts_par", "_reserve_carts_ser")}
    variants = {"shipped": shipped, "inlined": inlined_twin()}
    case = make_case("carts", args.scale)
    cells = [("concurrent", 1), ("concurrent", 2), ("ordered", 1)]
    times = {}
    try:
        for variant in variants.values():  # compile and warm both
            vars(G).update(variant)
            for mode, threads in cells:
                timed_round(case, "numba", mode, threads)
        for r in range(args.rounds):
            order = ("shipped", "inlined") if r % 2 == 0 else ("inlined", "shipped")
            for mode, threads in cells:
                for name in order:
                    vars(G).update(variants[name])
                    times.setdefault((mode, threads, name), []).append(timed_round(case, "numba", mode, threads)[0])
    finally:
        vars(G).update(shipped)
    print(f"carts, scale {args.scale}: {case.n_orders:,} carts, {args.rounds} interleaved rounds, numba backend")
    for mode, threads in cells:
        a = np.array(times[(mode, threads, "shipped")])
        b = np.array(times[(mode, threads, "inlined")])
        ratio = b / a
        print(f"{mode:<10} {threads} thread(s): shipped {case.n_orders / np.median(a) / 1e6:6.1f} M/s, "
              f"IR-inlined {case.n_orders / np.median(b) / 1e6:6.1f} M/s; inlined/shipped time "
              f"{np.median(ratio):.2f} ({np.percentile(ratio, 25):.2f}-{np.percentile(ratio, 75):.2f}), "
              f"shipped faster in {int((ratio > 1).sum())}/{len(ratio)}")


if __name__ == "__main__":
    main()
