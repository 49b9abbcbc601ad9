"""How many threads a call really uses (kernel.backends.resolve_threads)."""

import pytest

from kernel import backends


@pytest.fixture
def cython():
    return backends.load("cython")


def test_small_batches_run_on_fewer_threads(cython, monkeypatch):
    monkeypatch.setattr(backends, "PARALLEL_GRAIN", 1000)
    assert backends.resolve_threads(cython, 8, 500) == 1
    assert backends.resolve_threads(cython, 8, 2500) == 2
    assert backends.resolve_threads(cython, 8, 10**9) == 8
    assert backends.resolve_threads(cython, None, 10**9) == backends.default_threads()


def test_reference_and_forked_children_run_serially(cython, monkeypatch):
    monkeypatch.setattr(backends, "PARALLEL_GRAIN", 1)
    assert backends.resolve_threads(backends.load("reference"), 8, 10**6) == 1
    assert backends.resolve_threads(cython, 8, 10**6, contended=True) == 1
    monkeypatch.setattr(backends, "_forked_after_parallel", True)
    assert backends.resolve_threads(cython, 8, 10**6) == 1


def test_few_skus_with_short_runs_run_on_one_thread(monkeypatch):
    import numpy as np

    import kernel
    from kernel import inventory

    monkeypatch.setattr(inventory, "CONTENDED_SKUS", 4096)
    mixed = kernel.OrderBatch(np.arange(10_000) % 64, np.ones(10_000))
    runs = kernel.OrderBatch(np.zeros(10_000), np.ones(10_000))
    assert kernel.Inventory(np.ones(64))._contended(mixed)
    assert not kernel.Inventory(np.ones(64))._contended(runs)  # coalesced: one CAS per run
    assert not kernel.Inventory(np.ones(5000))._contended(mixed)


def test_result_reports_the_threads_really_used(compiled_backend, monkeypatch):
    import numpy as np

    import kernel

    monkeypatch.setattr(backends, "PARALLEL_GRAIN", 1000)
    inv = kernel.Inventory(np.full(10_000, 5), backend=compiled_backend, threads=2)
    small = kernel.OrderBatch(np.arange(500), np.ones(500))
    large = kernel.OrderBatch(np.arange(5000), np.ones(5000))
    assert inv.reserve(small).threads == 1
    assert inv.reserve(large).threads == 2
