"""G1-G6 as properties, for every backend and thread count (1, 2 and 8)."""

import numpy as np
from conftest import build, markets
from hypothesis import HealthCheck, given, settings

import kernel
from kernel.invariants import check_run

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(market=markets())
def test_concurrent_mode_keeps_g1_to_g4(backend, threads, market):
    inv, orders = build(market, backend, threads)
    initial = inv.stock.copy()
    result = inv.reserve(orders)
    check_run(inv, orders, result, initial, under_selling=True)


@PROPERTY
@given(market=markets())
def test_ordered_mode_equals_the_reference(backend, threads, market):
    oracle, orders = build(market, "reference")
    expected = oracle.reserve(orders, ordered=True)
    inv, _ = build(market, backend, threads)
    result = inv.reserve(orders, ordered=True)
    np.testing.assert_array_equal(result.status, expected.status)
    np.testing.assert_array_equal(inv.stock, oracle.stock)
    for field in ("order", "line", "offer", "qty"):
        np.testing.assert_array_equal(getattr(result.fills, field), getattr(expected.fills, field))


@PROPERTY
@given(market=markets())
def test_release_restores_the_initial_stock(backend, threads, market):
    inv, orders = build(market, backend, threads)
    initial = inv.stock.copy()
    result = inv.reserve(orders)
    inv.release(orders, result)
    np.testing.assert_array_equal(inv.stock, initial)


@PROPERTY
@given(market=markets())
def test_a_batch_that_fits_is_accepted_whole_in_every_mode(backend, threads, market):
    # G6.  Without price limits, "the reference accepts every order" means the
    # demand of each SKU fits its stock, so any interleaving accepts all.
    # (With price limits it need not: an order allowed to pay more may take
    # the cheap units a later, stricter order needed; use ordered=True.)
    market = dict(market, max_price=None)
    oracle, orders = build(market, "reference")
    if not oracle.reserve(orders, ordered=True).accepted.all():
        return
    for ordered in (False, True):
        inv, _ = build(market, backend, threads)
        assert inv.reserve(orders, ordered=ordered).accepted.all()
        np.testing.assert_array_equal(inv.stock, oracle.stock)


def test_runs_of_every_length_decide_as_arrival_order(compiled_backend, threads):
    # The flash-sale path finds a run of orders on one SKU (one by one, then
    # four at a time past kernels.pyx's LONG_RUN = 8: _run_end) and decides
    # it with one CAS: runs of 1 to 30 orders, each length several times at
    # random offsets, on 3 SKUs whose stock runs out inside some runs, must
    # decide exactly as one order after another.
    rng = np.random.default_rng(11)
    lengths = np.tile(np.arange(1, 31), 6)
    rng.shuffle(lengths)
    sku = np.repeat(np.arange(lengths.size) % 3, lengths).astype(np.int64)
    qty = rng.integers(1, 4, sku.size).astype(np.int64)
    stock = np.array([300, 900, 5000], np.int64)  # 0 runs out early, 1 midway, 2 never
    orders = kernel.OrderBatch(sku, qty)
    oracle = kernel.Inventory(stock, backend="reference")
    expected = oracle.reserve(orders, ordered=True)
    assert 0 < expected.accepted.sum() < sku.size  # both kinds of decision are made
    for ordered in (True, False):
        inv = kernel.Inventory(stock, backend=compiled_backend, threads=threads)
        result = inv.reserve(orders, ordered=ordered)
        if ordered or threads == 1:  # concurrent on one thread is arrival order too
            np.testing.assert_array_equal(result.status, expected.status)
            np.testing.assert_array_equal(inv.stock, oracle.stock)
        else:
            check_run(inv, orders, result, stock, under_selling=True)
