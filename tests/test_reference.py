"""The oracle earns its place: the reference on small hand-computed cases."""

import numpy as np
import pytest

import kernel
from kernel import OrderBatch, Status

A, O = Status.ACCEPTED, Status.OUT_OF_STOCK


def reserve(inv, **batch):
    orders = OrderBatch(**batch)
    return orders, inv.reserve(orders)


def test_single_offer_first_come_first_served():
    inv = kernel.Inventory([5, 0, 2], backend="reference")
    _, result = reserve(inv, sku=[0, 1, 2, 2, 0, 0], qty=[3, 1, 2, 1, 2, 1])
    assert result.status.tolist() == [A, O, A, O, A, O]
    assert inv.stock.tolist() == [0, 0, 0]
    assert result.fills.line.tolist() == [0, 2, 4]
    assert result.fills.offer.tolist() == [0, 2, 0]
    assert result.fills.qty.tolist() == [3, 2, 2]


def test_a_refused_order_does_not_block_a_smaller_later_one():
    inv = kernel.Inventory([4], backend="reference")
    _, result = reserve(inv, sku=[0, 0, 0], qty=[3, 3, 1])
    assert result.status.tolist() == [A, O, A]
    assert inv.stock.tolist() == [0]


def test_offers_match_cheapest_first_then_in_given_order():
    # SKU 0: offer 0 at 200, offer 1 at 100, offer 3 at 100 (given after 1).
    inv = kernel.Inventory.from_offers(sku=[0, 0, 1, 0], qty=[10, 2, 5, 3], price=[200, 100, 50, 100],
                                       backend="reference")
    _, result = reserve(inv, sku=[0], qty=[6])
    assert result.status.tolist() == [A]
    assert result.fills.offer.tolist() == [1, 3, 0]
    assert result.fills.qty.tolist() == [2, 3, 1]
    assert inv.stock.tolist() == [9, 0, 5, 0]


def test_price_limit_excludes_dearer_offers():
    inv = kernel.Inventory.from_offers(sku=[0, 0], qty=[2, 5], price=[100, 200], backend="reference")
    _, result = reserve(inv, sku=[0, 0], qty=[3, 2], max_price=[150, 250])
    assert result.status.tolist() == [O, A]  # only 2 units at <= 150
    assert result.fills.offer.tolist() == [0]
    assert inv.stock.tolist() == [0, 5]


def test_cart_is_all_or_nothing_and_rolls_back():
    inv = kernel.Inventory([3, 1], backend="reference")
    orders, result = reserve(inv, sku=[0, 1, 0, 1], qty=[2, 2, 1, 1], offsets=[0, 2, 4])
    # Order 0 takes 2 of SKU 0, cannot get 2 of SKU 1, gives the 2 back.
    assert result.status.tolist() == [O, A]
    assert inv.stock.tolist() == [2, 0]
    assert result.fills.order.tolist() == [1, 1]
    # No read-only pre-check on the carts path: order 0 took its first line
    # and gave it back, a rollback, counted (general.take_cart says why).
    assert inv.state.counters[kernel.codes.ROLLBACKS] == 1


@pytest.mark.parametrize("ordered", [False, True])
def test_a_cart_refused_on_its_first_line_rolls_nothing_back(backend, ordered):
    # The first line is not pre-checked (the take loop checks it before it
    # takes anything): refusing there is not a rollback, so it must not count
    # as one (a rollback makes the concurrent mode re-run every refusal).
    inv = kernel.Inventory([1, 5], backend=backend)
    orders = OrderBatch(sku=[0, 0, 1, 1, 0], qty=[2, 2, 1, 1, 1], offsets=[0, 1, 3, 5])
    result = inv.reserve(orders, ordered=ordered)
    assert result.status.tolist() == [O, O, A]
    assert inv.stock.tolist() == [0, 4]
    assert inv.state.counters[kernel.codes.ROLLBACKS] == 0


def test_rollback_when_lines_of_one_order_compete():
    inv = kernel.Inventory([3], backend="reference")
    orders = OrderBatch(sku=[0, 0], qty=[2, 2], offsets=[0, 2])
    result = inv.reserve(orders, ordered=True)
    # Each line alone fits (pre-check passes); together they do not.
    assert result.status.tolist() == [O]
    assert inv.stock.tolist() == [3]
    assert inv.state.counters[kernel.codes.ROLLBACKS] == 1


def test_release_gives_back_exactly_what_was_taken():
    inv = kernel.Inventory.from_offers(sku=[0, 0, 1], qty=[2, 5, 3], price=[200, 100, 50], backend="reference")
    orders, result = reserve(inv, sku=[0, 1, 0], qty=[6, 3, 1], offsets=[0, 2, 3], max_price=[300, 50, 150])
    assert result.status.tolist() == [A, O]
    assert inv.stock.tolist() == [1, 0, 0]
    inv.release(orders, result)
    assert inv.stock.tolist() == [2, 5, 3]


def test_empty_batch_is_valid():
    inv = kernel.Inventory([1], backend="reference")
    _, result = reserve(inv, sku=[], qty=[])
    assert result.status.size == 0 and len(result.fills) == 0
    assert inv.stock.tolist() == [1]


@pytest.mark.parametrize("ordered", [False, True])
def test_sku_without_offers_is_out_of_stock(ordered):
    inv = kernel.Inventory.from_offers(sku=[1], qty=[4], price=[10], n_skus=3, backend="reference")
    orders = OrderBatch([0, 1, 2], [1, 1, 1])
    assert inv.reserve(orders, ordered=ordered).status.tolist() == [O, A, O]
    np.testing.assert_array_equal(inv.stock, [3])
