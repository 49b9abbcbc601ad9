"""Wall-clock A/B of this checkout's Cython kernels against another revision's.

    python bench/ab_cython_build.py --base HEAD --cells carts:concurrent:1,carts:concurrent:2 --scale 0.1 --rounds 41

Builds the Cython extension of ``--base`` (a ``git worktree`` in a temporary
folder, ``setup.py build_ext --inplace`` with this interpreter), loads it
beside this checkout's under its own module name, registers it as a backend
(``cython-base``), and times both through the facade on the same cases,
alternating which goes first round by round; every round is checked
(``timed_round``: no oversell, conservation, all or nothing, and the tracked
state for tracked modes).  Prints per cell (``workload:mode:threads``) the
medians in M orders/s and the paired ratio (base time over this checkout's:
above 1, this checkout is faster), its quartiles and the rounds this checkout
won.  One process, so machine noise hits both alike: what the instruction
count gate (deterministic, but blind to memory stalls) cannot say.

A cell the change did not touch is the control: its ratio should straddle 1.
Build this checkout first (``python setup.py build_ext --inplace``).
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from kernel import backends
from kernel.bench.runner import MODES, timed_round
from kernel.bench.workloads import WORKLOADS, make_case

ROOT = Path(__file__).resolve().parent.parent
BASE_NAME = "cython-base"
BASE_MODULE = "kernel_base_build.kernels"  # the extension's init function is named by the last part


def build_base(rev, folder):
    """Check ``rev`` out under ``folder`` and build its Cython extension;
    the path of the built module."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(folder), rev], check=True)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    built = sorted((folder / "kernel" / "_cython").glob("kernels.*.so")) + sorted(
        (folder / "kernel" / "_cython").glob("kernels.*.pyd"))
    if not built:
        raise SystemExit(f"no Cython extension was built for {rev}")
    return built[0]


def register_base(path):
    """Load the base build as module BASE_MODULE and register it as backend BASE_NAME.

    This checkout's extension is imported first and put back afterwards: the
    base extension's module init registers itself under its own qualified
    name too (``kernel._cython.kernels``), so a later import of this
    checkout's kernels got the base, and every A/B timed the base against
    itself (until this check: both sides equal whatever the change)."""
    import kernel._cython
    this = importlib.import_module(backends.BACKENDS["cython"])
    spec = importlib.util.spec_from_file_location(BASE_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[BASE_MODULE] = module
    spec.loader.exec_module(module)
    sys.modules[this.__name__] = this
    kernel._cython.kernels = this
    backends.BACKENDS[BASE_NAME] = BASE_MODULE
    if backends.load("cython") is not this or backends.load(BASE_NAME) is not module:
        raise SystemExit("the base build and this checkout's did not load as two modules")


def parse_cells(text):
    cells = []
    for cell in text.split(","):
        workload, mode, threads = cell.split(":")
        if workload not in WORKLOADS:
            raise SystemExit(f"--cells: unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
        if mode not in MODES:
            raise SystemExit(f"--cells: unknown mode {mode!r}; known: {', '.join(MODES)}")
        cells.append((workload, mode, int(threads)))
    return cells


def ab_cell(case, mode, threads, rounds):
    """``(base times, this checkout's times)`` of ``rounds`` alternated pairs."""
    for backend in (BASE_NAME, "cython"):  # untimed: first-touch and allocator warm-up
        timed_round(case, backend, mode, threads)
    times = {BASE_NAME: [], "cython": []}
    for r in range(rounds):
        for backend in ((BASE_NAME, "cython") if r % 2 else ("cython", BASE_NAME)):
            times[backend].append(timed_round(case, backend, mode, threads)[0])
    return times[BASE_NAME], times["cython"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare with (default HEAD)")
    parser.add_argument("--cells", default="carts:concurrent:1,carts:concurrent:2,uniform:tracked:1",
                        help="workload:mode:threads, comma-separated")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args(argv)
    cells = parse_cells(args.cells)
    with tempfile.TemporaryDirectory(prefix="kernel-ab-") as tmp:
        folder = Path(tmp) / "base"
        try:
            register_base(build_base(args.base, folder))
            print(f"base {args.base} against this checkout, scale {args.scale}, {args.rounds} rounds a cell")
            for workload, mode, threads in cells:
                case = make_case(workload, args.scale)
                base, this = ab_cell(case, mode, threads, args.rounds)
                ratios = [b / t for b, t in zip(base, this)]
                q1, _, q3 = statistics.quantiles(ratios, n=4)
                n = case.orders.n_orders / 1e6
                print(f"{workload:10s} {mode:10s} {threads}t  base {n / statistics.median(base):7.1f}  "
                      f"this {n / statistics.median(this):7.1f} M orders/s  speed-up {statistics.median(ratios):.3f} "
                      f"(quartiles {q1:.3f}-{q3:.3f}), this faster in {sum(r > 1 for r in ratios)}/{len(ratios)}",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
                           check=False, capture_output=True)


if __name__ == "__main__":
    main()
