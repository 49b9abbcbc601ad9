"""A service that forks workers after using the kernel must not hang.

GNU OpenMP's thread pool does not survive fork(); kernel.backends detects a
fork after parallel use and runs the child's kernels on one thread.
"""

import multiprocessing
import sys

import numpy as np
import pytest

import kernel
from kernel import OrderBatch

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")


def child_reserves(backend, queue):
    inv = kernel.Inventory(np.full(1000, 3), backend=backend, threads=2)
    result = inv.reserve(OrderBatch(np.arange(100_000) % 1000, np.ones(100_000, np.int64)))
    queue.put((result.n_accepted, int(inv.stock.sum())))


def test_forked_child_reserves_after_parent_ran_parallel_kernels(compiled_backend):
    parent = kernel.Inventory(np.full(1000, 3), backend=compiled_backend, threads=2)
    parent.reserve(OrderBatch(np.arange(100_000) % 1000, np.ones(100_000, np.int64)))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=child_reserves, args=(compiled_backend, queue))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("forked child hung in the kernel")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (3000, 0)
