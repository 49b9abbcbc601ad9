"""``python -m kernel.journal inspect|verify DIR`` and ``bench``.

``inspect`` lists the snapshot, every segment (records, sequence numbers,
bytes, operations, checksum status) and the last sequence number, without
changing anything.  ``verify`` also replays the journal onto the snapshot
and checks the rebuilt state (no negative stock, no id in two slots, no
unfinished order); it exits 1 when the directory would not open.
"""

import argparse
import os
import sys

import numpy as np

from .. import codes as spec
from .records import SPARE_SEGMENT, JournalError
from .recovery import recover


def _describe(found, out):
    print(f"directory: {found.directory}", file=out)
    print(f"snapshot: {found.snapshot_path} (state after record {found.snapshot_seq})", file=out)
    for path, why in found.snapshots_rejected:
        print(f"  rejected snapshot {path}: {why}", file=out)
    for s in found.segments:
        if s.skipped:
            print(f"segment {s.name}: from record {s.first_seq}, wholly before the snapshot (not read)", file=out)
            continue
        status = "checksums ok" if s.torn_at is None else \
            f"torn tail at offset {s.torn_at} ({s.size - s.torn_at} bytes: a record a crash cut short, or, in a " \
            f"recycled segment, its old records; cut off on open)"
        if s.ended_at is not None:
            status += f", records end at offset {s.ended_at} (then {s.size - s.ended_at} bytes of old records or room)"
        if s.free:
            status += f", {s.free} bytes of preallocated room after the records"
        ops = ", ".join(f"{op} {n}" for op, n in sorted(s.ops.items())) or "no records"
        print(f"segment {s.name}: records {s.first_seq}..{s.last_seq} ({s.records}), {s.size} bytes, {status}; "
              f"{ops}", file=out)
    spare = os.path.join(found.directory, SPARE_SEGMENT)
    if os.path.exists(spare):
        print(f"spare {SPARE_SEGMENT}: {os.path.getsize(spare)} bytes, recycled for the next new segment (not read)",
              file=out)
    print(f"last sequence number: {found.last_seq}", file=out)


def _check_state(found):
    arrays = {name: found.words[at:at + n] for name, (at, n) in found.layout.offsets.items()}
    problems = []
    if arrays["stock"].size and arrays["stock"].min() < 0:
        problems.append("negative stock")
    words = arrays["order_table"][spec.ORDER_WORD_AT::spec.ORDER_STRIDE]
    used = words[words != 0]
    ids, states = used & spec.ID_MASK, used >> spec.STATE_SHIFT
    if np.unique(ids).size != ids.size:
        problems.append("an order id in two slots")
    if np.isin(states, (spec.PENDING, spec.CANCEL_REQUESTED)).any():
        problems.append("an unfinished order")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kernel.journal", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("inspect", "verify"):
        sub.add_parser(name).add_argument("directory")
    bench = sub.add_parser("bench", help="durable vs plain tracked reserve; reserve_one from threads")
    bench.add_argument("--workload", default="uniform")
    bench.add_argument("--scale", type=float, default=0.1)
    bench.add_argument("--backend", default="auto")
    bench.add_argument("--threads", type=int, default=None, help="kernel threads per call (default: all cores)")
    bench.add_argument("--batch-sizes", default="1000,10000,100000")
    bench.add_argument("--policies", default="batch,interval,none")
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--where", default=None, help="parent directory of the journals (a real disk)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench import main as bench_main
        sizes = [int(x) for x in args.batch_sizes.split(",")]
        bench_main(args.workload, args.scale, args.backend, args.threads, batch_sizes=sizes,
                   policies=args.policies.split(","), rounds=args.rounds, where=args.where)
        return 0
    try:
        found = recover(args.directory, apply=args.command == "verify")
    except (JournalError, OSError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        print(f"{args.command}: FAILED", file=sys.stdout)
        return 1
    _describe(found, sys.stdout)
    if args.command == "verify":
        problems = _check_state(found)
        if problems:
            print(f"verify: replayed state is inconsistent: {', '.join(problems)}")
            return 1
        print(f"verify: OK ({found.replayed} records replayed onto the snapshot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
