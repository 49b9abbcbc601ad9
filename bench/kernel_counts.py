"""Instructions, loads and stores per order of each kernel call of one
facade ``reserve``, counted by callgrind (one thread), both compiled backends.

    python bench/kernel_counts.py                                  # uniform, tracked, 200k orders
    python bench/kernel_counts.py --workload flash-sale
    python bench/kernel_counts.py --workload carts --mode concurrent
    python bench/kernel_counts.py --workload carts --mode concurrent --no-c

Beside the kernels it counts the hand-written C loops of the registry
(:mod:`kernel.bench.cloops`) that fit the workload and mode, one thread
each, on the same data: what the kernels are compared with in wall time.

The instruction-count gate (``python -m kernel.bench.gate``) counts whole
``reserve`` calls on small fixed cases and judges them against a baseline;
this script says where a call's instructions go: one line per kernel the
facade called (``claim_and_reserve``, ``settle_refused``, ...), with loads
(``Dr``) and stores (``Dw``) from callgrind's cache simulation, per order
(per line for carts).  It runs itself under valgrind with the gate's probe
and settings (``NUMBA_CPU_NAME=generic``, one OpenMP thread), after one
untimed run outside valgrind, with the same settings, that fills Numba's
cache.  Deterministic: the same tree and toolchain give the same counts, so
two trees (or two commits, e.g. a ``git worktree`` of the old one on
``PYTHONPATH``) compare exactly where wall-clock times on a shared machine
cannot.
"""

import argparse
import collections
import ctypes
import gc
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from kernel.bench import gate
from kernel.bench.runner import MODES

EVENTS = ("Ir", "Dr", "Dw")
_INNER = "KERNEL_COUNTS_PROBE"  # set in the process valgrind runs: the probe library's path
_WARM = "KERNEL_COUNTS_WARM"  # set in the warm-up process (the gate's settings, outside valgrind)


class CallCounter:
    """Stands in for a kernel module: each call is counted on its own and
    dumped under the label ``backend:kernel``."""

    def __init__(self, kernels, backend, lib):
        self.__name__ = kernels.__name__  # stands for that backend (kernel.backends.backend_name)
        self.kernels, self.backend, self.lib = kernels, backend, lib

    def __getattr__(self, name):
        fn = getattr(self.kernels, name)

        def counted(*args):
            return count(self.lib, f"{self.backend}:{name}", fn, *args)
        return counted


def count(lib, label, fn, *args):
    """``fn(*args)``, counted on its own and dumped under ``label``."""
    lib.cg_zero()
    lib.cg_toggle()
    try:
        return fn(*args)
    finally:
        lib.cg_toggle()
        lib.cg_dump(label.encode())


def run_cases(args, lib):
    """The body valgrind runs (and the warm-up run, with ``lib`` None)."""
    from kernel import backends
    from kernel.bench.workloads import make_case

    data = make_case(args.workload, args.scale, seed=0)
    tracked = args.mode == "tracked"
    orders = data.tracked_orders() if tracked else data.orders
    ordered = args.mode == "ordered"
    for backend in args.backends.split(","):
        data.inventory(backend, 1, tracked).reserve(orders, ordered=ordered)  # warm: dispatch, caches
        if lib is None:
            continue
        inv = data.inventory(CallCounter(backends.load(backend), backend, lib), 1, tracked)
        gc.collect()
        gc.disable()  # no collector pass inside a counted call
        inv.reserve(orders, ordered=ordered)
        gc.enable()
    if lib is None or not args.c:
        return
    from kernel.bench import cloops
    # valgrind (3.19-3.22) does not run AVX-512 code: on a host that has it,
    # -march=native alone made the C loops die of SIGILL under callgrind.
    # Everything else of the host's ISA stays (the timed loops' flags); on
    # an x86 host without AVX-512 the flag changes nothing.
    x86 = platform.machine() in ("x86_64", "AMD64")
    clib, note = cloops.load(extra_flags=("-mno-avx512f",) if x86 else ())
    if clib is None:
        print(note, file=sys.stderr)
        return
    for loop in cloops.loops_for(data, [args.mode]):
        c = cloops.cell(clib, loop, data, 1)
        stock = data.stock.copy()
        c.fresh()
        count(lib, f"C:{c.function}", c.call, stock)
        c.check(stock)  # a count of a wrong result is no count


def read_dumps(paths):
    """``{label: {event: total}}`` summed over callgrind's dump files."""
    totals = collections.defaultdict(collections.Counter)
    for path in paths:
        text = Path(path).read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        events = re.search(r"^events:\s+(.+)$", text, re.M)
        summary = re.search(r"^(?:summary|totals):\s+(.+)$", text, re.M)
        if label and events and summary:
            totals[label.group(1).strip()].update(dict(zip(events.group(1).split(), map(int, summary.group(1).split()))))
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="uniform")
    parser.add_argument("--mode", default="tracked", choices=MODES)
    parser.add_argument("--scale", type=float, default=0.02, help="1.0 = 10M orders (default 0.02: 200k)")
    parser.add_argument("--backends", default="cython,numba")
    parser.add_argument("--no-c", dest="c", action="store_false", help="leave out the C loops")
    args = parser.parse_args(argv)
    if os.environ.get(_INNER):
        run_cases(args, ctypes.CDLL(os.environ[_INNER]))
        return 0
    if os.environ.get(_WARM):
        run_cases(args, None)
        return 0
    work = Path(tempfile.mkdtemp(prefix="kernel-counts-"))
    # Numba compiles (or loads its cache) in a warm-up process outside
    # valgrind, with the gate's settings: its cache entries are keyed by the
    # CPU name, so a warm-up in this process (the host's CPU, not the gate's
    # NUMBA_CPU_NAME=generic) left the counted run to compile every kernel
    # under valgrind, which took over 25 minutes.
    subprocess.run([sys.executable, __file__, *(argv or sys.argv[1:])], env=dict(gate.gate_env(), **{_WARM: "1"}),
                   check=True)
    env = dict(gate.gate_env(), **{_INNER: str(gate.build_probe(work))})
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--cache-sim=yes",
           f"--callgrind-out-file={work}/callgrind.out", sys.executable, __file__, *(argv or sys.argv[1:])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"callgrind run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    from kernel.bench.workloads import make_case
    data = make_case(args.workload, args.scale, seed=0)
    per = data.tracked_orders().n_lines if args.mode == "tracked" else data.orders.n_lines
    totals = read_dumps(work.glob("callgrind.out*"))
    print(f"{args.workload}/{args.mode}, {per:,} lines, per line: " + ", ".join(EVENTS))
    for backend in args.backends.split(","):
        calls = {k: v for k, v in sorted(totals.items()) if k.startswith(backend + ":")}
        for label, v in calls.items():
            print(f"  {label:40s}" + "".join(f"{v[e] / per:9.1f}" for e in EVENTS))
        whole = sum(calls.values(), collections.Counter())
        print(f"  {backend + ': every kernel call':40s}" + "".join(f"{whole[e] / per:9.1f}" for e in EVENTS))
    for label, v in sorted(totals.items()):
        if label.startswith("C:"):
            print(f"  {label:40s}" + "".join(f"{v[e] / per:9.1f}" for e in EVENTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
