"""Wall-clock A/B of the durable journal's zeroed room: when it pays.

    python bench/ab_journal_room.py --batch-sizes 1000,2500,10000 --callers 1,2 --rounds 9
    python bench/ab_journal_room.py --big-flush 512,64 --batch-sizes 10000 --rounds 11

A private ``"batch"`` journal keeps zeroed, synced room ahead of its
records (``kernel.journal.writer``: a background thread writes the zeros)
while its flushes average at most ``BIG_FLUSH`` bytes; bigger flushes
append.  Each variant here is one ``BIG_FLUSH`` in KiB (``0``: no room at
all, ``PREALLOCATE = 0``), run on the same workload in one process:
:func:`kernel.journal.bench.durable_round` (1M tracked orders at ``--scale
0.1``, in batches, every round checked with ``check_tracked``) per batch
size and caller count, with the plain tracked path at the same number of
callers in the same rounds, the order of the variants alternating round by
round.  It prints each variant's median time and ratio to plain, and the
paired speed of each variant against the first (above 1: that variant is
faster), with its quartiles (so at least 2 rounds).  ``--big-flush``
may also name ``ahead``: the shipped ``BIG_FLUSH`` with room made before
the timed calls (:meth:`kernel.journal.DurableInventory.make_room`, 40
bytes per order and 1 MiB more: a burst into a journal prepared for it).

    python bench/ab_journal_room.py --big-flush 128,ahead --batch-sizes 10000,100000 --callers 1 --rounds 11
"""

import argparse
import statistics

from kernel.bench.workloads import make_case
from kernel.journal import writer
from kernel.journal.bench import durable_round


AHEAD = "ahead"
ROOM_PER_ORDER = 40  # bytes of room made ahead per order (a tracked single-line order's record takes ~27-31)


def run(case, batch, callers, big_flush_kib):
    """One checked round's seconds; ``big_flush_kib`` None: the plain path;
    ``AHEAD``: the shipped settings, room made ahead."""
    if big_flush_kib == AHEAD:
        return durable_round(case, "auto", 1, batch_size=batch, callers=callers,
                             room=ROOM_PER_ORDER * case.n_orders + (1 << 20))[0]
    saved = writer.BIG_FLUSH, writer.PREALLOCATE
    try:
        if big_flush_kib is not None:
            writer.BIG_FLUSH = big_flush_kib << 10
            writer.PREALLOCATE = saved[1] if big_flush_kib else 0
        return durable_round(case, "auto", 1, batch_size=batch, callers=callers,
                             durable=big_flush_kib is not None)[0]
    finally:
        writer.BIG_FLUSH, writer.PREALLOCATE = saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--workload", default="uniform")
    parser.add_argument("--batch-sizes", default="10000")
    parser.add_argument("--callers", default="1,2")
    parser.add_argument("--big-flush", default="512,0",
                        help="BIG_FLUSH values in KiB (0: no room at all), or 'ahead' (room made before the run)")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be >= 2 (the paired speeds' quartiles)")
    case = make_case(args.workload, args.scale)
    variants = [v if v == AHEAD else int(v) for v in args.big_flush.split(",")]
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for callers in (int(c) for c in args.callers.split(",")):
            cells = [None] + variants
            for v in cells:  # warm-up: compilation, the first journal's files
                run(case, batch, callers, v)
            times = {v: [] for v in cells}
            for r in range(args.rounds):
                for v in (cells if r % 2 else cells[::-1]):
                    times[v].append(run(case, batch, callers, v))
            plain = times[None]
            print(f"batch {batch}, {callers} caller(s), {args.rounds} rounds: "
                  f"plain {statistics.median(plain) * 1e3:.1f} ms")
            for v in variants:
                vs_plain = [p / t for p, t in zip(plain, times[v])]
                paired = [a / b for a, b in zip(times[variants[0]], times[v])]
                q1, _, q3 = statistics.quantiles(paired, n=4)
                label = "room made ahead   " if v == AHEAD else f"BIG_FLUSH {v:>4} KiB"
                first = variants[0] if variants[0] == AHEAD else f"{variants[0]} KiB"
                print(f"  {label}{' (no room)' if v == 0 else '':<10} "
                      f"{statistics.median(times[v]) * 1e3:7.1f} ms  {statistics.median(vs_plain):.2f}x of plain "
                      f"({min(vs_plain):.2f}-{max(vs_plain):.2f})  speed vs {first} "
                      f"{statistics.median(paired):.3f} ({q1:.3f}-{q3:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
