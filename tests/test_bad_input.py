"""Malformed input raises a clear error naming the field and the first bad
position, and changes nothing."""

import numpy as np
import pytest

import kernel
from kernel import OrderBatch

BIG = 2**62


@pytest.fixture
def inv(backend):
    return kernel.Inventory.from_offers(sku=[0, 0, 1, 2], qty=[5, 5, 5, 5], price=[1, 2, 3, 4], backend=backend)


def unchanged_after(inv, call, error, match):
    before = inv.stock.copy()
    with pytest.raises(error, match=match):
        call()
    np.testing.assert_array_equal(inv.stock, before)


@pytest.mark.parametrize("sku, match", [
    ([0, 1, 3, 9], r"sku\[2\] = 3 is out of range \[0, 3\)"),
    ([0, 7, 2, 1], r"sku\[1\] = 7"),
])
def test_reserve_rejects_unknown_skus_before_touching_stock(inv, threads, sku, match):
    # Lines before the bad one would fit: nothing of them may be taken.
    unchanged_after(inv, lambda: inv.reserve(OrderBatch(sku, [1, 1, 1, 1]), threads=threads), ValueError, match)
    unchanged_after(inv, lambda: inv.reserve(OrderBatch(sku, [1, 1, 1, 1]), ordered=True), ValueError, match)


def test_a_batch_owns_its_arrays_so_later_changes_cannot_bypass_checks(inv):
    sku = np.array([0, 1, 2])
    qty = np.array([1, 1, 1])
    orders = OrderBatch(sku, qty)
    sku[1] = 99
    qty[2] = 0
    result = inv.reserve(orders)
    assert result.status.tolist() == [0, 0, 0]
    assert orders.sku.tolist() == [0, 1, 2] and not orders.sku.flags.writeable


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sku=[0, 1], qty=[1, 0]), ValueError, r"qty\[1\] = 0 must be > 0"),
    (dict(sku=[0, 1], qty=[-2, 1]), ValueError, r"qty\[0\] = -2"),
    (dict(sku=[0, -1], qty=[1, 1]), ValueError, r"sku\[1\] = -1"),
    (dict(sku=[0, 1], qty=[1]), ValueError, r"qty: has 1 entries but sku has 2"),
    (dict(sku=[0, 1], qty=[1.0, 2.5]), TypeError, r"qty\[1\] = .*2\.5 is not an integer"),
    (dict(sku=[0, np.nan], qty=[1, 1]), TypeError, r"sku\[1\] = .*nan is not an integer"),
    (dict(sku=[0, 1], qty=[1, np.inf]), TypeError, r"qty\[1\]"),
    (dict(sku=[0, 1], qty=[True, False]), TypeError, r"qty: values of dtype bool"),
    (dict(sku=["a", "b"], qty=[1, 1]), TypeError, r"sku\[0\] = 'a' is not an integer"),
    (dict(sku=[0, 1], qty=[1, "x"]), TypeError, r"qty"),
    (dict(sku=[[0, 1]], qty=[[1, 1]]), ValueError, r"sku: expected a 1-D sequence"),
    (dict(sku=[0, 1], qty=[1, 2**64]), ValueError, r"qty\[1\] = 18446744073709551616 does not fit in int64"),
    (dict(sku=[0, 0, 0], qty=[BIG, BIG, BIG]), ValueError, r"qty\[1\]: the running total .* overflows int64"),
    (dict(sku=[0, 1], qty=[1, 1], offsets=[1, 2]), ValueError, r"offsets\[0\] = 1 must be 0"),
    (dict(sku=[0, 1], qty=[1, 1], offsets=[]), ValueError, r"offsets: needs at least one entry"),
    (dict(sku=[0, 1, 2], qty=[1, 1, 1], offsets=[0, 2, 1, 3]), ValueError, r"offsets\[2\] = 1 decreases"),
    (dict(sku=[0, 1], qty=[1, 1], offsets=[0, 1, 1, 2]), ValueError, r"offsets\[2\] = 1 repeats \(an empty order\)"),
    (dict(sku=[0, 1], qty=[1, 1], offsets=[0, 1]), ValueError, r"offsets\[1\] = 1 must equal the number of lines \(2\)"),
    (dict(sku=[0, 1], qty=[1, 1], offsets=[0, 1, 2.5]), TypeError, r"offsets\[2\]"),
    (dict(sku=[0, 1], qty=[1, 1], max_price=[5]), ValueError, r"max_price: has 1 entries but sku has 2"),
    (dict(sku=[0, 1], qty=[1, 1], max_price=[5, -1]), ValueError, r"max_price\[1\] = -1 must be >= 0"),
    (dict(sku=[0, 1], qty=[1, 1], offsets=[0, 2], order_id=[1, 2]), ValueError,
     r"order_id: has 2 entries but the batch has 1 orders"),
    (dict(sku=[0, 1], qty=[1, 1], user_id=[1.5, 2]), TypeError, r"user_id\[0\]"),
])
def test_malformed_batches_are_refused_with_field_and_position(kwargs, error, match):
    with pytest.raises(error, match=match):
        OrderBatch(**kwargs)


@pytest.mark.parametrize("stock, error, match", [
    ([3, -1, -2], ValueError, r"stock\[1\] = -1 must be >= 0"),
    ([3, 0.5], TypeError, r"stock\[1\] = .*0\.5 is not an integer"),
    ([BIG, BIG, BIG], ValueError, r"stock\[1\]: the running total"),
])
def test_bad_stock_is_refused(backend, stock, error, match):
    with pytest.raises(error, match=match):
        kernel.Inventory(stock, backend=backend)


@pytest.mark.parametrize("offers, error, match", [
    (dict(sku=[0, 1], qty=[1, 1], price=[1, -5]), ValueError, r"price\[1\] = -5 must be >= 0"),
    (dict(sku=[0, 1], qty=[1, -1], price=[1, 1]), ValueError, r"qty\[1\] = -1 must be >= 0"),
    (dict(sku=[0, 4], qty=[1, 1], price=[1, 1], n_skus=3), ValueError, r"sku\[1\] = 4 is out of range \[0, 3\)"),
    (dict(sku=[0, 1], qty=[1, 1], price=[1]), ValueError, r"price: has 1 entries but sku has 2"),
    (dict(sku=[0, 1], qty=[1, 1], price=[1, 1], n_skus=-1), ValueError, r"n_skus must be a non-negative integer"),
])
def test_bad_offers_are_refused(offers, error, match):
    with pytest.raises(error, match=match):
        kernel.Inventory.from_offers(**offers)


def test_unknown_backend_and_bad_thread_counts_are_refused(inv):
    with pytest.raises(ValueError, match="backend must be one of"):
        kernel.Inventory([1], backend="fortran")
    for threads in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            kernel.Inventory([1], threads=threads)
        unchanged_after(inv, lambda: inv.reserve(OrderBatch([0], [1]), threads=threads), ValueError, "threads")
    unchanged_after(inv, lambda: inv.reserve({"sku": [0], "qty": [1]}), TypeError, "orders must be an OrderBatch")


def test_release_refuses_foreign_results_other_batches_and_double_release(backend):
    inv = kernel.Inventory([5, 5], backend=backend)
    other = kernel.Inventory([5, 5], backend=backend)
    orders = OrderBatch([0, 1], [2, 3])
    result = inv.reserve(orders)
    unchanged_after(inv, lambda: other.release(orders, result), ValueError, "result: comes from another inventory")
    np.testing.assert_array_equal(other.stock, [5, 5])
    unchanged_after(inv, lambda: inv.release(OrderBatch([0, 1], [2, 3]), result), ValueError,
                    "orders: is not the batch this result was computed for")
    unchanged_after(inv, lambda: inv.release(orders, "result"), TypeError, "result must be a Result")
    inv.release(orders, result)
    np.testing.assert_array_equal(inv.stock, [5, 5])
    assert result.released
    unchanged_after(inv, lambda: inv.release(orders, result), ValueError, "result: was already released")


def test_stock_view_is_read_only(inv):
    with pytest.raises(ValueError):
        inv.stock[0] = 100


@pytest.mark.parametrize("make, match", [
    (lambda backend: kernel.Inventory([], backend=backend), "stock: is empty; an inventory needs at least one SKU"),
    (lambda backend: kernel.Inventory.from_offers([], [], [], backend=backend), "n_skus: is 0"),
    (lambda backend: kernel.Inventory.from_offers([], [], [], n_skus=0, backend=backend), "n_skus: is 0"),
])
def test_an_inventory_without_skus_is_refused(backend, make, match):
    with pytest.raises(ValueError, match=match):
        make(backend)


def test_skus_without_offers_are_valid_and_always_out_of_stock(backend):
    inv = kernel.Inventory.from_offers([], [], [], n_skus=2, backend=backend)
    assert inv.n_offers == 0
    assert inv.reserve(OrderBatch([1, 0], [1, 1])).status.tolist() == [kernel.Status.OUT_OF_STOCK] * 2


@pytest.mark.parametrize("tracked", [False, True])
def test_a_closed_inventory_raises_value_error_everywhere_and_still_has_a_repr(backend, tracked):
    inv = kernel.Inventory([3, 4], backend=backend, max_orders=8 if tracked else None)
    inv.close()
    assert inv.closed
    assert repr(inv) == f"Inventory(closed, n_skus=2, backend={backend!r})"
    views = ["stock", "price", "offer_sku", "offer_start", "offer_by_priority", "n_offers", "state"]
    for view in views:
        with pytest.raises(ValueError, match="inventory: is closed"):
            getattr(inv, view)
    calls = [lambda: inv.state_arrays(), lambda: inv.reserve(OrderBatch([0], [1])), lambda: inv.restock([0], [1]),
             lambda: inv.confirm([1]), lambda: inv.cancel([1]), lambda: inv.expire(0), lambda: inv.recover(),
             lambda: inv.state_of([1]), lambda: inv.reserve_one(0, 1, order_id=1), lambda: inv.flush()]
    for call in calls:
        with pytest.raises(ValueError, match="inventory: is closed"):
            call()
