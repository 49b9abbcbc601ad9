"""Numba's ``prefetch_write`` (kernel/_numba/atomics.py) checks no index:
it promises never to fault and never to change memory, whatever the index,
as Cython's ``prefetch_rw``.  Run in a child process, so that a fault is a
failed test, not a dead test run."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

CHILD = textwrap.dedent("""
    import numpy as np
    from numba import njit
    from kernel._numba.atomics import prefetch_write

    @njit(cache=False)
    def hint_everywhere(a, indices):
        for k in range(indices.size):
            prefetch_write(a, indices[k])

    a = np.arange(8, dtype=np.int64)
    before = a.copy()
    # In range, just past the end, far past it, negative, and the extremes:
    # each forms an address that is never dereferenced.
    indices = np.array([0, 7, 8, 1 << 20, 1 << 40, -1, -(1 << 40), 2**63 - 1, -2**63], dtype=np.int64)
    hint_everywhere(a, indices)
    assert np.array_equal(a, before), a
    print("ok")
""")


@pytest.mark.parametrize("boundscheck", ["0", "1"])
def test_prefetch_write_never_faults_nor_writes_whatever_the_index(boundscheck):
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERNEL_NUMBA_BOUNDSCHECK=boundscheck))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
