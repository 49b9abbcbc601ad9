"""Benchmark the kernel over the workload registry and write a report.

    python -m kernel.bench                         # everything, scale 0.1
    python -m kernel.bench --workloads uniform,carts --backends cython --threads 1,all
    kernel-bench --scale 1 --rounds 7 --out /tmp/full   # full size: 10M orders per workload
    python -m kernel.bench compare OLD/results.json NEW/results.json [--csv diff.csv]
    python -m kernel.bench cluster --shards 1,2,4        # ShardedInventory over Ray (kernel.cluster.bench)

Defaults: every registry workload, every available backend, all three modes,
threads 1..cores plus 'all', scale 0.1 (1M orders per workload; 200k for
marketplace, 100k for hot-carts), 5 timed rounds of at least 100 ms each,
interleaved; the hand-written C loops; Redis and PostgreSQL where installed
(started and stopped by the benchmark); latency figures.  The reference
backend (pure Python) only runs on workloads of at most 200,000 orders;
larger ones are reported as skipped.

Prints the cells and a summary at the end and writes ``results.json``,
``results.csv`` and a self-contained ``report.html`` to ``--out``.
"""

import argparse
import sys

from .. import available_backends
from ..backends import default_threads
from .peers import PEERS
from .report import text_table, write_reports
from .runner import MODES, OPT_IN_MODES, run_matrix
from .workloads import WORKLOADS

__all__ = ["main"]


def _csv(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def _thread_list(text):
    out = []
    for part in _csv(text):
        if part == "all":
            out.append("all")
            continue
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"threads: {part!r} is not an integer or 'all'") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"threads: {n} is not >= 1")
        out.append(n)
    return out


def _choices(name, known):
    def parse(text):
        values = _csv(text)
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise argparse.ArgumentTypeError(f"{name}: unknown {unknown or text!r}; known: {', '.join(known)}")
        return values
    return parse


def parser():
    cores = default_threads()
    p = argparse.ArgumentParser(prog="python -m kernel.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--workloads", type=_choices("workloads", list(WORKLOADS)), default=list(WORKLOADS),
                   help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: all)")
    p.add_argument("--backends", type=_choices("backends", available_backends()), default=available_backends(),
                   help="comma-separated (default: every available backend)")
    p.add_argument("--modes", type=_choices("modes", list(MODES + OPT_IN_MODES)), default=list(MODES),
                   help=f"comma-separated from {','.join(MODES + OPT_IN_MODES)} (default: {','.join(MODES)}; "
                        f"durable journals to disk)")
    p.add_argument("--threads", type=_thread_list, default=[*range(1, cores + 1), "all"],
                   help=f"comma-separated counts and/or 'all' (default: 1..{cores},all)")
    p.add_argument("--scale", type=float, default=0.1, help="workload size, 1.0 = 10M orders (default 0.1)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per cell (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="./bench-report", help="output folder (default ./bench-report)")
    p.add_argument("--min-round-ms", type=float, default=100.0,
                   help="calibrate calls per timed round to last at least this long (default 100; 0: one call)")
    p.add_argument("--peers", type=_choices("peers", [*PEERS, "none"]), default=list(PEERS),
                   help="peers to measure where installed: redis,postgresql or none (default: both)")
    p.add_argument("--no-c", dest="c_loops", action="store_false", help="leave out the hand-written C loops")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="leave out the latency figures")
    p.add_argument("--latency-calls", type=int, default=50_000,
                   help="reserve_one calls per latency measurement (default 50,000)")
    return p


class Progress:
    """``[#####.....] 12/40 uniform cython concurrent x2`` on stderr: redrawn
    in place on a terminal, one line per step otherwise."""

    def __init__(self, stream=None, width=20):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0

    def __call__(self, done, total, label):
        filled = self.width * done // max(1, total)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._last) + ("\n" if done == total else ""))
            self._last = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:
        from .compare import main as compare_main
        return compare_main(argv[1:])
    if argv[:1] == ["cluster"]:  # the sharded inventory over Ray: its own options (needs the 'ray' extra)
        from ..cluster.bench import main as cluster_main
        return cluster_main(argv[1:])
    args = parser().parse_args(argv)
    if args.rounds < 1 or not args.scale > 0:
        parser().error("--rounds must be >= 1 and --scale > 0")
    peers = [p for p in args.peers if p != "none"]
    latency = dict(calls=args.latency_calls) if args.latency else None
    run = run_matrix(args.workloads, args.backends, args.modes, args.threads, args.scale, args.rounds,
                     seed=args.seed, progress=Progress(), min_round_s=args.min_round_ms / 1e3,
                     c_loops=args.c_loops, peers=peers, latency=latency,
                     argv=["python -m kernel.bench", *argv])
    print(text_table(run))
    json_path, html_path = write_reports(run, args.out)
    print(f"wrote {json_path}")
    print(f"wrote {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
