"""Compare two benchmark runs cell by cell.

    python -m kernel.bench compare OLD/results.json NEW/results.json [--csv diff.csv]

For every cell present in both runs (workload, backend, mode, threads) it
prints the ratio of the new median decided orders/s to the old one and a
noise estimate: the larger of the two cells' relative round-time spreads
((max - min) / median).  A verdict ("faster" / "slower") is given only when
the change is beyond that noise; otherwise "within noise" ("different
size" where the two cells timed different batch sizes).  Cells found in only
one run are listed, and a note says when either run was disturbed by other
processes (the within-run spread does not cover that).  ``--csv`` writes the
same rows as CSV.
"""

import argparse
import csv
import json
import math
import sys

__all__ = ["compare", "main"]


def _key(m):
    return (m["workload"], m["backend"], m["mode"], int(m["threads"]))


def compare(old, new):
    """Rows ``{workload, backend, mode, threads, old, new, ratio, noise,
    verdict}`` for the cells of both runs, then ``(only_old, only_new)``."""
    a = {_key(m): m for m in old["measurements"]}
    b = {_key(m): m for m in new["measurements"]}
    rows = []
    for key in [k for k in a if k in b]:
        mo, mn = a[key], b[key]
        ratio = mn["orders_per_s"] / mo["orders_per_s"]
        noise = max(mo["spread"]["relative_range"], mn["spread"]["relative_range"])
        if mo["n_orders"] != mn["n_orders"]:
            verdict = "different size"
        elif abs(math.log(ratio)) <= math.log1p(noise):
            verdict = "within noise"
        else:
            verdict = "faster" if ratio > 1 else "slower"
        rows.append({"workload": key[0], "backend": key[1], "mode": key[2], "threads": key[3],
                     "old_orders_per_s": mo["orders_per_s"], "new_orders_per_s": mn["orders_per_s"],
                     "ratio": ratio, "noise": noise, "verdict": verdict})
    return rows, [k for k in a if k not in b], [k for k in b if k not in a]


def _load(run):
    """The largest share of the machine other processes took during a workload block, or None."""
    shares = [b.get("other_share") for b in run.get("disturbance", {}).get("blocks", {}).values()]
    shares = [x for x in shares if x is not None]
    return max(shares) if shares else None


def _provenance(run):
    m = run.get("machine", {})
    commit = (m.get("git_commit") or "?")[:10] + (" (dirty)" if m.get("git_dirty") else "")
    return f"{m.get('date', '?')} commit {commit} on {m.get('cpu', '?')}, scale {run['config']['scale']}"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kernel.bench compare", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--csv", help="also write the comparison as CSV to this path")
    args = p.parse_args(argv)
    with open(args.old, encoding="utf-8") as f:
        old = json.load(f)
    with open(args.new, encoding="utf-8") as f:
        new = json.load(f)
    rows, only_old, only_new = compare(old, new)
    print(f"old: {_provenance(old)}\nnew: {_provenance(new)}")
    if old["config"]["scale"] != new["config"]["scale"]:
        print("NOTE: the runs used different scales; ratios compare different batch sizes.")
    loads = [_load(old), _load(new)]
    if any(x is not None and x > 0.10 for x in loads):
        print(f"NOTE: other processes took up to {loads[0] or 0:.0%} (old) and {loads[1] or 0:.0%} (new) of the "
              "machine while the runs were timed: the spread within a run does not cover that, so a verdict may "
              "reflect the load rather than the code. Compare runs made on a quiet machine.")
    print(f"{'workload':<12} {'backend':<10} {'mode':<10} {'thr':>3} {'old/s':>9} {'new/s':>9} {'new/old':>8} "
          f"{'noise':>6}  verdict")
    from .report import fmt_rate
    for r in rows:
        print(f"{r['workload']:<12} {r['backend']:<10} {r['mode']:<10} {r['threads']:>3} "
              f"{fmt_rate(r['old_orders_per_s']):>9} {fmt_rate(r['new_orders_per_s']):>9} {r['ratio']:>7.2f}x "
              f"{r['noise']:>6.0%}  {r['verdict']}")
    for label, keys in (("only in old", only_old), ("only in new", only_new)):
        if keys:
            print(f"{label}: " + ", ".join("/".join(map(str, k)) for k in keys))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("faster", "slower", "within noise", "different size")}
    print(f"{len(rows)} cells compared: {counts['faster']} faster, {counts['slower']} slower, "
          f"{counts['within noise']} within noise, {counts['different size']} of different sizes (noise: the larger "
          "relative round-time spread of the two).")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["workload"])
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
