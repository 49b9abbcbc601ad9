#!/usr/bin/env bash
# Shows that the performance gate gates on a toolchain its committed baseline
# was not recorded on (the situation of every GitHub runner):
#
#   * every run below uses NUMBA_OPT=1 (Numba's default is 3): another
#     toolchain setting, recorded in the toolchain, so the committed baseline
#     cannot judge (its rows say "not compared") and only the comparison with
#     the base commit, built and counted on this runner, can;
#   * a clone of the committed tree (HEAD), built in place, is gated against
#     its base HEAD (built by the gate in its pinned venv) RUNS times
#     (default 5): every run must pass;
#   * then one kernel is slowed (numba's take_exactly re-loads the stock word
#     EXTRA_LOADS more times, default 2: about 6% more instructions in the
#     cases that go through it) and the gate must fail with a REGRESSION of
#     at least 3% on it.
#
# Counts do not depend on timing, so the runs overlap on a 2-core runner:
# the first clean run counts the base (built in the gate's pinned venv) and
# this tree at once and caches the base for the others; then the slowed run
# (longest first: its own tree, so it compiles its kernels afresh) and clean
# runs 2..5 go two at a time (GATE_SELFTEST_JOBS).  Clean run 1 and the base
# each compile the Numba kernels afresh (and agree far inside the threshold:
# 0.014% at most in CI); clean runs 2..5 load clean run 1's machine code from its
# Numba cache, as any gate run after the first does, and count it again under
# valgrind (the counting must repeat: each is a full gate run and verdict).
# Compiling the gate's kernels takes about 110 s of the 185 s a count costs
# on this 2-core VM; counts moved by at most 0.031% (the threshold is 3%).
#
#   PYTHON=.venv/bin/python bash bench/gate_selftest.sh   (python with the project installed)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
py=$(command -v "${PYTHON:-python}")
py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py")  # absolute: the runs below cd
runs=${GATE_SELFTEST_RUNS:-5}
extra=${GATE_SELFTEST_EXTRA_LOADS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NUMBA_OPT=${GATE_SELFTEST_NUMBA_OPT:-1}
cache=${GATE_CACHE:-$work/cache}

git clone -q --no-hardlinks "$root" "$work/repo"
cd "$work/repo"
build() { PYTHONPATH="$work/repo" "$py" setup.py -q build_ext --inplace >/dev/null 2>&1; }
gate() {  # one gate run of ${tree:-$work/repo} against HEAD (counted once, then cached), report in $work/$1
  # One Numba cache for the clean runs (run 1 fills it), its own for the slowed tree.
  PYTHONPATH="${tree:-$work/repo}" NUMBA_CACHE_DIR="$work/numba-cache-${numba_cache:-clean}" \
    "$py" -m kernel.bench.gate --base HEAD --cache "$cache" --out "$work/$1" >"$work/$1.log" 2>&1
}
build

clean_verdict() {  # $1: run number
  local i=$1
  if [ "$(cat "$work/clean$i.status")" = 0 ]; then
    worst=$("$py" -c 'import json,sys; rows=json.load(open(sys.argv[1]))["verdict"]["rows"]; print("%.3f%%" % (100 * max(abs(r["base_change"] or 0) for r in rows)))' "$work/clean$i/gate.json")
    echo "clean run $i/$runs: pass (largest change vs base: $worst)"
  else
    echo "gate self-test FAILED: clean run $i of an unchanged tree did not pass"
    cat "$work/clean$i.log"
    exit 1
  fi
}
counted() {  # $1: report name; its exit status lands in $work/$1.status
  local s=0
  gate "$1" || s=$?
  echo "$s" >"$work/$1.status"
}

# The slowed tree: a copy of the built one (same extension), one Numba
# kernel patched.
cp -a "$work/repo" "$work/slow"
"$py" - "$work/slow" "$extra" <<'PY'
import sys
from pathlib import Path
root, extra = Path(sys.argv[1]), int(sys.argv[2])
old = "    seen = atomic_load(stock, offer)\n    while seen >= units:"
new = ("    seen = atomic_load(stock, offer)\n"
       + f"    for _extra in range({extra}):  # DELIBERATE SLOWDOWN (gate self-test)\n"
       + "        seen = atomic_load(stock, offer)\n    while seen >= units:")
hits = [f for f in sorted((root / "kernel" / "_numba").rglob("*.py")) if old in f.read_text()]
assert len(hits) == 1, "numba take_exactly changed: update the self-test patch"
hits[0].write_text(hits[0].read_text().replace(old, new, 1))
print(f"slowed numba take_exactly ({hits[0].relative_to(root)}): {extra} extra atomic load(s) per call")
PY

counted clean1  # before the others: it counts the base (at the same time as this tree) and caches it
clean_verdict 1
jobs_max=${GATE_SELFTEST_JOBS:-2}
queue=(slowed)  # the longest (it compiles) first, so the short ones fill the other slot
for i in $(seq 2 "$runs"); do queue+=("clean$i"); done
for name in "${queue[@]}"; do
  if [ "$name" = slowed ]; then
    (cd "$work/slow" && tree="$work/slow" numba_cache=slowed counted slowed) &
  else
    counted "$name" &
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
done
wait  # the last ones (each wrote its own status)
for i in $(seq 2 "$runs"); do clean_verdict "$i"; done
grep -q "not compared" "$work/clean1/gate.md" || {
  echo "gate self-test FAILED: the committed baseline judged NUMBA_OPT=$NUMBA_OPT counts (toolchain not recorded?)"; exit 1; }
"$py" - "$work/clean1/gate.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["verdict"]["rows"]
moved = [r for r in rows if r["baseline"] and abs(r["change"]) > 0.01]
print(f"NUMBA_OPT={__import__('os').environ['NUMBA_OPT']}: committed baseline 'not compared' on every row; "
      f"{len(moved)} of {len(rows)} cases are over 1% away from its figures, e.g.")
for r in sorted(moved, key=lambda r: -abs(r["change"]))[:3]:
    print(f"  {r['case']}: {r['current']:,} here, {r['baseline']:,} committed ({r['change']:+.2%})")
PY

status=$(cat "$work/slowed.status")
"$py" - "$work/slowed/gate.json" "$status" <<'PY'
import json, sys
verdict, status = json.load(open(sys.argv[1]))["verdict"], int(sys.argv[2])
flagged = [r for r in verdict["rows"] if r["base_verdict"] == "REGRESSION"]
for r in flagged:
    print(f"  REGRESSION {r['case']}: {r['base']:,} -> {r['current']:,} ({r['base_change']:+.2%} vs base)")
biggest = max((r["base_change"] for r in flagged), default=0)
if status == 1 and verdict["failed"] and flagged and biggest >= 0.03 and all(
        r["case"].startswith("numba:") for r in flagged):
    print(f"gate self-test: the slowed kernel (+{biggest:.2%} in its worst case) was flagged (exit 1) "
          "on a toolchain the committed baseline cannot judge, as it must be")
    sys.exit(0)
print(f"gate self-test FAILED: exit {status}, flagged {[r['case'] for r in flagged]}, worst {biggest:+.2%}")
sys.exit(1)
PY
