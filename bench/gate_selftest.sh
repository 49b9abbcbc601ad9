#!/usr/bin/env bash
# Shows that the performance gate catches a slowed kernel: copies the
# committed tree, patches both backends' innermost take (take_exactly) to
# re-load the stock word 8 extra times, builds the copy, and runs the gate
# against the committed baseline.  Expected: REGRESSION rows and exit 1.
#
#   PYTHON=.venv/bin/python bash bench/gate_selftest.sh   (python with the project installed)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive HEAD | tar -x -C "$work"
"${PYTHON:-python}" - "$work" <<'PY'
import sys
from pathlib import Path
root = Path(sys.argv[1])
pyx = root / "kernel/_cython/kernels.pyx"
old = "    cdef int64_t cur = atomic_load_i64(&stock[offer])\n    while cur >= units:"
new = ("    cdef int64_t cur = atomic_load_i64(&stock[offer])\n    cdef int extra\n"
       "    for extra in range(8):  # DELIBERATE SLOWDOWN (gate self-test)\n"
       "        cur = atomic_load_i64(&stock[offer])\n    while cur >= units:")
text = pyx.read_text()
assert old in text, "cython take_exactly changed: update the self-test patch"
pyx.write_text(text.replace(old, new, 1))
nb = root / "kernel/_numba/kernels.py"
old = "    seen = atomic_load(stock, offer)\n    while seen >= units:"
new = ("    seen = atomic_load(stock, offer)\n    for _extra in range(8):  # DELIBERATE SLOWDOWN (gate self-test)\n"
       "        seen = atomic_load(stock, offer)\n    while seen >= units:")
text = nb.read_text()
assert old in text, "numba take_exactly changed: update the self-test patch"
nb.write_text(text.replace(old, new, 1))
print("patched take_exactly in both backends")
PY
(cd "$work" && "${PYTHON:-python}" setup.py -q build_ext --inplace >/dev/null)
set +e
(cd "$work" && PYTHONPATH="$work" NUMBA_CACHE_DIR="$work/.numba-cache" "${PYTHON:-python}" -m kernel.bench.gate --out "$work/report")
status=$?
set -e
if [ "$status" -eq 1 ] && grep -q REGRESSION "$work/report/gate.md"; then
  echo "gate self-test: the slowed kernel was flagged (exit 1), as it must be"
else
  echo "gate self-test FAILED: the slowed kernel was not flagged (exit $status)"
  exit 1
fi
