"""Contention stress on the compiled backends: invariants after heavy,
many-threaded runs (more threads than cores too)."""

import threading

import numpy as np
import pytest

import kernel
from kernel import OrderBatch, Status
from kernel.bench.workloads import make_case
from kernel.invariants import check_run


@pytest.fixture(scope="module")
def flash_sale():
    # One hot SKU, 1,000,000 units, 10,000,000 single-unit orders.
    return make_case("flash-sale", scale=1.0)


@pytest.mark.parametrize("ordered", [False, True], ids=["concurrent", "ordered"])
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_hot_sku_sells_exactly_its_stock(flash_sale, compiled_backend, threads, ordered):
    inv = flash_sale.inventory(compiled_backend, threads)
    assert inv.stock.tolist() == [1_000_000]
    result = inv.reserve(flash_sale.orders, ordered=ordered)
    assert result.n_accepted == 1_000_000
    assert inv.stock.tolist() == [0]
    if ordered:  # arrival order: the first million win
        assert result.accepted[:1_000_000].all() and not result.accepted[1_000_000:].any()


@pytest.mark.parametrize("threads", [2, 8])
def test_heavy_carts_on_few_skus_keep_g1_to_g4(compiled_backend, threads):
    case = make_case("hot-carts", scale=0.2, seed=11)
    inv = case.inventory(compiled_backend, threads)
    initial = inv.stock.copy()
    result = inv.reserve(case.orders)
    assert 0 < result.n_accepted < case.n_orders  # the workload really contends
    check_run(inv, case.orders, result, initial, under_selling=True)


def test_many_python_threads_share_one_inventory(compiled_backend):
    """8 Python threads x 2 kernel threads each reserve, and some release,
    on one inventory while a watcher samples the stock for negatives (G1)."""
    rng = np.random.default_rng(7)
    n_skus = 16
    inv = kernel.Inventory(np.full(n_skus, 5_000), backend=compiled_backend, threads=2)
    initial = inv.stock.copy()
    batches = []
    for _ in range(8):
        offsets = np.concatenate(([0], np.cumsum(rng.integers(1, 4, 20_000))))
        batches.append(OrderBatch(rng.integers(0, n_skus, offsets[-1]), rng.integers(1, 4, offsets[-1]), offsets))
    results = [None] * len(batches)
    done = threading.Event()
    lowest = []

    def watch():
        while not done.is_set():
            lowest.append(int(inv.stock.min()))

    def work(k):
        results[k] = inv.reserve(batches[k])
        if k % 2:
            inv.release(batches[k], results[k])

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(batches))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
        assert not worker.is_alive(), "a worker thread did not finish in 10 minutes"
    done.set()
    watcher.join(timeout=60)

    assert lowest and min(lowest) >= 0
    kept = np.zeros(n_skus, dtype=np.int64)
    for k, result in enumerate(results):
        assert result.released == bool(k % 2)
        if not result.released:
            np.add.at(kept, result.fills.offer, result.fills.qty)
    np.testing.assert_array_equal(initial, inv.stock + kept)
    assert sum(r.n_accepted for r in results) > 0
    assert any((r.status == Status.OUT_OF_STOCK).any() for r in results)


@pytest.mark.parametrize("threads", [1, 2])
def test_carts_on_a_stock_past_the_cache_prefetch_and_keep_g1_to_g4(compiled_backend, threads):
    """A stock of 2^21 offers switches the carts kernels' prefetch on
    (general.pxi CART_PREFETCH_MIN_OFFERS): same guarantees, and on one
    thread the arrival-order outcome of the reference."""
    n_skus = 1 << 21
    rng = np.random.default_rng(7)
    offsets = np.zeros(20_001, np.int64)
    np.cumsum(rng.integers(1, 6, 20_000), out=offsets[1:])
    hot = rng.integers(0, 64, int(offsets[-1]))  # a few hot SKUs, so some carts are refused
    sku = np.where(rng.random(hot.size) < 0.5, hot, rng.integers(0, n_skus, hot.size))
    orders = OrderBatch(sku, rng.integers(1, 4, sku.size), offsets)
    stock = np.full(n_skus, 40, np.int64)
    inv = kernel.Inventory(stock, backend=compiled_backend, threads=threads)
    result = inv.reserve(orders)
    check_run(inv, orders, result, stock, under_selling=True)
    assert 0 < result.n_accepted < orders.n_orders
    if threads == 1:
        ref = kernel.Inventory(stock, backend="reference")
        assert np.array_equal(result.status, ref.reserve(orders).status)
