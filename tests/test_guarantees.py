"""G1-G6 as properties, for every backend and thread count (1, 2 and 8)."""

import numpy as np
import pytest
from conftest import build, markets
from hypothesis import HealthCheck, given, settings

import kernel
from kernel import OrderBatch, Status, codes
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


# Two lines of SKU 0 that each fit alone (3 units) but not together: order 0
# takes 2, misses 2, gives them back (a rollback).  Order 1 fits; order 2 (4
# of SKU 0) is refused before any write (its only line; on the general path
# by the read-only pre-check).  Carts: one offer
# per SKU; general: two priced offers on SKU 0 (every refused order is
# re-run there, no shortcut).
_ROLLING_BACK = dict(sku=[0, 0, 1, 0], qty=[2, 2, 5, 4], offsets=[0, 2, 3, 4])


def _plain_kernels(inv, reran, rollback=None):
    """``inv``'s kernels, appending to ``reran`` the number of orders each
    re-run re-ran; ``rollback`` = ``(offers, units)`` simulates another
    caller's rollback right after the concurrent kernel (the units back,
    the counter moved; no offers: only the counter moves), None: none."""
    real = inv.kernels

    class Kernels:
        def __getattr__(self, name):
            return getattr(real, name)

        def _concurrent(self, name, *args):
            own = getattr(real, name)(*args)
            if rollback is not None:
                offers, units = rollback
                inv.state.stock[offers] += units
                inv.state.counters[codes.ROLLBACKS] += 1
            return own

        def reserve_carts(self, *args):
            return self._concurrent("reserve_carts", *args)

        def reserve_general(self, *args):
            return self._concurrent("reserve_general", *args)

        def reserve_carts_ordered(self, *args):
            reran.append(args[4].size)  # order_index, after stock, line_start, sku, qty
            return real.reserve_carts_ordered(*args)

        def reserve_general_ordered(self, *args):
            reran.append(args[9].size)  # order_index, after the nine arrays of `general`
            return real.reserve_general_ordered(*args)

    return Kernels()


def _rolling_back_inventory(backend, path):
    if path == "carts":
        return kernel.Inventory([3, 5], backend=backend)
    return kernel.Inventory.from_offers(sku=[0, 0, 1], qty=[2, 1, 5], price=[1, 2, 1], backend=backend)


@pytest.mark.parametrize("foreign", [False, True], ids=["own rollback", "another call's too"])
@pytest.mark.parametrize("path", ["carts", "general"])
def test_one_thread_re_runs_only_for_rollbacks_of_other_calls(backend, monkeypatch, path, foreign):
    """G4 on the plain concurrent paths: on one thread an order gives back
    what it took before the next one is decided, so the call's own
    rollbacks refuse nothing wrongly and its refused orders are not re-run
    (the kernel returns its serial rollbacks).  A rollback of another call
    meanwhile (simulated: the counter moves) still re-runs them."""
    inv = _rolling_back_inventory(backend, path)
    reran, none = [], np.zeros(0, np.int64)  # no units back: only the counter moves
    monkeypatch.setattr(inv, "_kernels", _plain_kernels(inv, reran, (none, none) if foreign else None))
    result = inv.reserve(OrderBatch(**_ROLLING_BACK), threads=1)
    assert result.threads == 1
    assert [Status(int(s)).name for s in result.status] == ["OUT_OF_STOCK", "ACCEPTED", "OUT_OF_STOCK"]
    # Order 0's rollback, then (foreign) the simulated one and order 0's again
    # in the re-run; order 2 asks for more of SKU 0 than it has in all, so
    # the facade answers it without a re-run (the short-order shortcut).
    assert inv.state.counters[codes.ROLLBACKS] == (3 if foreign else 1)
    assert reran == ([1] if foreign else [])
    assert inv.state.stock.tolist() == ([3, 0] if path == "carts" else [2, 1, 0])
    check_run(inv, OrderBatch(**_ROLLING_BACK), result, _rolling_back_inventory(backend, path).stock,
              under_selling=True)


@pytest.mark.parametrize("path", ["carts", "general"])
def test_the_plain_kernels_return_their_serial_rollbacks(backend, path):
    """Every backend's concurrent kernel returns the orders it rolled back
    where it ran on one thread, and 0 on several (where the facade re-runs
    for every rollback): the one value the facade's G4 rule reads."""
    for n_threads, expected in ((1, 1), (2, 0)):
        inv = _rolling_back_inventory(backend, path)
        orders = OrderBatch(**_ROLLING_BACK)
        state, k = inv.state, inv.kernels
        status = np.empty(orders.n_orders, np.int8)
        everyone = orders.all_orders()
        if path == "carts":
            got = k.reserve_carts(state.stock, orders.line_start, orders.sku, orders.qty, everyone, status,
                                  state.counters, n_threads)
        else:
            slot_start = np.array([0, 2, 4, 5, 7], np.int64)  # two slots per line of SKU 0, one for SKU 1
            got = k.reserve_general(state.stock, state.price, state.offer_start, state.offer_by_priority,
                                    orders.line_start, orders.sku, orders.qty, orders.price_limits(), slot_start,
                                    everyone, np.zeros(7, np.int64), status, state.counters, n_threads)
        assert got == expected
        assert status.tolist() == [Status.OUT_OF_STOCK, Status.ACCEPTED, Status.OUT_OF_STOCK]
        assert state.counters[codes.ROLLBACKS] == 1


@pytest.mark.parametrize("path", ["carts", "general"])
def test_the_plain_rerun_answers_short_orders_itself_exactly_as_a_full_rerun_would(backend, monkeypatch, path):
    """After a rollback the facade re-runs only the refused orders whose
    every line's SKU has, over all its offers, at least the line's qty: the
    others would be refused again (stock only shrinks meanwhile).  Statuses,
    stock and fills equal a re-run of every refused order, with SKUs sold
    out, restocked meanwhile (another caller's rollback, simulated) and
    repeated within carts, on one and two offers per SKU."""
    rng = np.random.default_rng(5)
    n, n_skus = 500, 12
    offsets = np.concatenate(([0], np.cumsum(rng.integers(1, 4, n))))
    lines = offsets[-1]
    price_limits = rng.integers(1, 4, lines) if path == "general" else None
    orders = OrderBatch(sku=rng.integers(0, n_skus, lines), qty=rng.integers(1, 3, lines), offsets=offsets,
                        max_price=price_limits)
    stock = np.where(np.arange(n_skus) < 4, 0, rng.integers(5, 40, n_skus))
    restocked, units = np.array([0, 1, 5]), np.array([1, 2, 3])  # SKU 0 gets 1 unit: a qty-1 line fits exactly
    reran = []

    def run(full_rerun):
        if path == "carts":
            inv = kernel.Inventory(stock, backend=backend)
        else:  # two offers per SKU, prices 1 and 3
            inv = kernel.Inventory.from_offers(sku=np.repeat(np.arange(n_skus), 2), qty=np.repeat((stock + 1) // 2, 2),
                                               price=np.tile([1, 3], n_skus), backend=backend)
        offers = restocked if path == "carts" else 2 * restocked
        initial = inv.stock.copy()
        initial[offers] += units
        with monkeypatch.context() as patch:
            patch.setattr(inv, "_kernels", _plain_kernels(inv, reran, (offers, units)))
            if full_rerun:
                patch.setattr(kernel.inventory, "short_orders", lambda units, orders: np.zeros(orders.n_orders, bool))
            result = inv.reserve(orders, threads=1)
        check_run(inv, orders, result, initial, under_selling=True)
        return result, inv.state.stock.copy()

    (full, full_stock), (fast, fast_stock) = run(True), run(False)
    assert reran[1] < reran[0]  # the shortcut answered some refused orders itself
    np.testing.assert_array_equal(fast.status, full.status)
    np.testing.assert_array_equal(fast_stock, full_stock)
    for field in ("order", "line", "offer", "qty"):
        np.testing.assert_array_equal(getattr(fast.fills, field), getattr(full.fills, field))
