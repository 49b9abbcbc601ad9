"""Bad input to the tracked-order API: a clear error naming the field (and
the first bad position), and no change to any part of the state."""

import numpy as np
import pytest

import kernel
from kernel import OrderBatch


@pytest.fixture
def shop(backend):
    inv = kernel.Inventory([5, 5], backend=backend, max_orders=16, limit_per_user=3)
    inv.reserve(OrderBatch(sku=[0, 1], qty=[1, 2], order_id=[1, 2], user_id=[7, 7]), hold_until=10)
    return inv


def batch(**fields):
    base = dict(sku=[0, 1], qty=[1, 1], order_id=[3, 4], user_id=[1, 2])
    base.update(fields)
    return OrderBatch(**{k: v for k, v in base.items() if v is not None})


CALLS = {
    "reserve without order ids": (lambda inv: inv.reserve(batch(order_id=None)), ValueError, "order_id: required"),
    "reserve without user ids": (lambda inv: inv.reserve(batch(user_id=None)), ValueError, "user_id: required"),
    "negative order id": (lambda inv: inv.reserve(batch(order_id=[3, -1])), ValueError, r"order_id\[1\] = -1"),
    "order id too big": (lambda inv: inv.reserve(batch(order_id=[2**56, 3])), ValueError, r"order_id\[0\].*2\*\*56"),
    "negative user id": (lambda inv: inv.reserve(batch(user_id=[-4, 1])), ValueError, r"user_id\[0\] = -4"),
    "user id too big": (lambda inv: inv.reserve(batch(user_id=[1, 2**62])), ValueError, r"user_id\[1\]"),
    "hold_until wrong length": (lambda inv: inv.reserve(batch(), hold_until=[1, 2, 3]), ValueError,
                                "hold_until: has 3 entries"),
    "hold_until fractional": (lambda inv: inv.reserve(batch(), hold_until=[1, 2.5]), TypeError,
                              r"hold_until\[1\] = 2.5"),
    "confirm non-integers": (lambda inv: inv.confirm([1, "a"]), TypeError, r"order_ids\[1\] = 'a'"),
    "cancel negative id": (lambda inv: inv.cancel([-3]), ValueError, r"order_ids\[0\] = -3"),
    "state_of 2-D ids": (lambda inv: inv.state_of([[1]]), ValueError, "order_ids: expected a 1-D"),
    "expire at a non-time": (lambda inv: inv.expire("soon"), TypeError, "now = 'soon'"),
    "negative restock": (lambda inv: inv.restock([0, 1], [2, -5]), ValueError, r"qty\[1\] = -5 must be >= 0"),
    "restock unknown offer": (lambda inv: inv.restock([9], [1]), ValueError, r"offer\[0\] = 9 is out of range"),
    "restock overflowing": (lambda inv: inv.restock([0], [2**63 - 3]), ValueError, r"qty\[0\].*int64"),
    "restock mismatched": (lambda inv: inv.restock([0, 1], [1]), ValueError, "qty: has 1 entries"),
    # One notation for every range: half-open, as the batch messages (sku[2] = 3 is out of range [0, 3)).
    "reserve_one unknown sku": (lambda inv: inv.reserve_one(2, 1, order_id=9), ValueError,
                                r"sku = 2 is out of range \[0, 2\)"),
    "reserve_one zero qty": (lambda inv: inv.reserve_one(0, 0, order_id=9), ValueError,
                             r"qty = 0 is out of range \[1, 9223372036854775808\)"),
    "reserve_one fractional qty": (lambda inv: inv.reserve_one(0, 1.5, order_id=9), TypeError,
                                   "qty = 1.5 is not an integer"),
    "reserve_one text id": (lambda inv: inv.reserve_one(0, 1, order_id="x"), TypeError, "order_id = 'x'"),
    "reserve_one negative user": (lambda inv: inv.reserve_one(0, 1, order_id=9, user_id=-1), ValueError,
                                  "user_id = -1"),
    "reserve_one negative price": (lambda inv: inv.reserve_one(0, 1, order_id=9, max_price=-1), ValueError,
                                   "max_price = -1"),
}


@pytest.mark.parametrize("case", CALLS, ids=list(CALLS))
def test_bad_input_names_the_field_and_changes_nothing(shop, case):
    call, error, match = CALLS[case]
    before = [a.copy() for a in shop.state_arrays()]
    with pytest.raises(error, match=match):
        call(shop)
    assert_unchanged(before, shop)


def assert_unchanged(before, inv):
    for name, a, b in zip(("stock", "price", "offer_start", "offer_by_priority", "offer_sku", "limit", "limit_key",
                           "limit_count", "order_word", "order_user", "order_deadline", "order_fill_start",
                           "order_fill_end", "fill_offer", "fill_qty", "counters"), before, inv.state_arrays()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_tracked_results_are_not_released_but_cancelled(shop):
    orders = batch()
    result = shop.reserve(orders)
    before = [a.copy() for a in shop.state_arrays()]
    with pytest.raises(ValueError, match="cancel"):
        shop.release(orders, result)
    assert_unchanged(before, shop)


@pytest.mark.parametrize("call, match", [
    (lambda inv: inv.reserve(OrderBatch([0], [1], order_id=[1])), "order_id: this inventory does not track"),
    (lambda inv: inv.reserve(OrderBatch([0], [1]), hold_until=5), "hold_until: this inventory does not track"),
    (lambda inv: inv.confirm([1]), "confirm: this inventory does not track"),
    (lambda inv: inv.reserve_one(0, 1, order_id=1), "reserve_one: this inventory does not track"),
])
def test_tracking_calls_on_an_untracked_inventory(backend, call, match):
    inv = kernel.Inventory([5], backend=backend)
    with pytest.raises(ValueError, match=match):
        call(inv)
    assert inv.stock.tolist() == [5]


@pytest.mark.parametrize("options, match", [
    (dict(limit_per_user=2), "limit_per_user: needs max_orders"),
    (dict(max_orders=0), "max_orders must be a positive integer"),
    (dict(max_orders=4, limit_per_user=-1), r"limit_per_user\[0\] = -1"),
    (dict(max_orders=4, limit_per_user=[1, 2, 3]), "limit_per_user: has 3 entries"),
    (dict(max_orders=4, max_fills=0), "max_fills must be a positive integer"),
])
def test_bad_tracking_options(options, match):
    with pytest.raises(ValueError, match=match):
        kernel.Inventory([5, 5], backend="reference", **options)
