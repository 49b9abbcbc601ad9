"""Tracked orders, case by case (worked out by hand), on every backend:
idempotent ids, per-user limits, hold -> confirm / cancel / expire, cancel
before reserve, restock, reserve_one, capacity errors."""

import numpy as np
import pytest

import kernel
from kernel import CapacityError, OrderBatch, OrderState, Outcome, Status
from kernel.invariants import check_tracked

S, O, ST = Status, Outcome, OrderState


def names(codes, enum):
    return [enum(int(c)).name for c in codes]


@pytest.fixture
def shop(backend, threads):
    """Three SKUs (5, 3, 2 units), every user may buy at most 2 of each."""
    return kernel.Inventory([5, 3, 2], backend=backend, threads=threads, max_orders=64, limit_per_user=2)


def reserve(inv, sku, qty, ids, users, **kw):
    return inv.reserve(OrderBatch(sku=sku, qty=qty, order_id=ids, user_id=users), **kw)


def test_ids_seen_before_are_duplicates_in_and_across_batches(shop):
    first = reserve(shop, [0, 1, 0], [1, 1, 1], ids=[10, 11, 10], users=[1, 2, 3])
    # Concurrent mode: either order with id 10 may be the original, never both.
    assert sorted(names(first.status, S)) == ["ACCEPTED", "ACCEPTED", "DUPLICATE"]
    assert shop.stock.tolist() == [4, 2, 2]
    again = reserve(shop, [2, 2], [1, 1], ids=[11, 12], users=[4, 4])
    assert names(again.status, S) == ["DUPLICATE", "ACCEPTED"]
    assert shop.stock.tolist() == [4, 2, 1]
    check_tracked(shop, [5, 3, 2])


def test_refused_ids_are_remembered_too(shop):
    r = reserve(shop, [2, 2], [2, 1], ids=[6, 7], users=[1, 2], ordered=True)
    assert names(r.status, S) == ["ACCEPTED", "OUT_OF_STOCK"]
    assert names(shop.state_of([7]), ST) == ["REFUSED"]
    shop.cancel([6])
    assert names(reserve(shop, [2], [1], ids=[7], users=[2]).status, S) == ["DUPLICATE"]
    assert shop.stock.tolist() == [5, 3, 2]


def test_per_user_limit_counts_across_calls_and_is_all_or_nothing(shop):
    ordered = dict(ordered=True)
    r = reserve(shop, [0, 0, 0], [1, 1, 1], ids=[1, 2, 3], users=[9, 9, 9], **ordered)
    assert names(r.status, S) == ["ACCEPTED", "ACCEPTED", "LIMIT_EXCEEDED"]
    # A cart whose second line breaks the cap takes nothing from its first.
    cart = shop.reserve(OrderBatch(sku=[1, 0], qty=[1, 1], offsets=[0, 2], order_id=[4], user_id=[9]), **ordered)
    assert names(cart.status, S) == ["LIMIT_EXCEEDED"]
    assert shop.stock.tolist() == [3, 3, 2]
    assert shop.limit_used([9, 9], [0, 1]).tolist() == [2, 0]
    # Another user is not affected.
    assert names(reserve(shop, [0], [2], ids=[5], users=[8]).status, S) == ["ACCEPTED"]
    check_tracked(shop, [5, 3, 2])


def test_per_sku_limits_and_uncapped_skus(backend):
    inv = kernel.Inventory([9, 9], backend=backend, max_orders=8, limit_per_user=[1, kernel.NO_LIMIT])
    r = reserve(inv, [0, 0, 1, 1], [1, 1, 4, 4], ids=[1, 2, 3, 4], users=[5, 5, 5, 5], ordered=True)
    assert names(r.status, S) == ["ACCEPTED", "LIMIT_EXCEEDED", "ACCEPTED", "ACCEPTED"]
    assert inv.limit_used([5, 5], [0, 1]).tolist() == [1, 0]


def test_hold_confirm_cancel_expire_outcomes(shop):
    reserve(shop, [0, 0, 1, 2], [1, 1, 1, 1], ids=[1, 2, 3, 4], users=[1, 2, 3, 4], hold_until=[10, 20, 10, 10])
    assert shop.stock.tolist() == [3, 2, 1]
    assert names(shop.confirm([1, 99]), O) == ["DONE", "UNKNOWN"]
    assert names(shop.cancel([2]), O) == ["DONE"]
    assert shop.stock.tolist() == [4, 2, 1]  # the cancel gave its unit back
    # Expiry at t=10 ends the two holds due then that are still held (3, 4),
    # not the confirmed 1, nor 2 (cancelled, and due at 20).
    assert shop.expire(9).tolist() == []
    assert shop.expire(10).tolist() == [3, 4]
    assert shop.stock.tolist() == [4, 3, 2]
    assert shop.expire(100).tolist() == []  # nothing is held any more
    assert names(shop.state_of([1, 2, 3, 4, 5]), ST) == ["CONFIRMED", "CANCELLED", "EXPIRED", "EXPIRED", "UNKNOWN"]
    # Every later call answers what already happened, and changes nothing.
    assert names(shop.confirm([1, 2, 3]), O) == ["ALREADY_CONFIRMED", "ALREADY_CANCELLED", "ALREADY_EXPIRED"]
    assert names(shop.cancel([1, 2, 3]), O) == ["ALREADY_CONFIRMED", "ALREADY_CANCELLED", "ALREADY_EXPIRED"]
    assert shop.stock.tolist() == [4, 3, 2]
    check_tracked(shop, [5, 3, 2])


def test_cancel_and_expiry_give_the_limit_back(shop):
    reserve(shop, [0], [2], ids=[1], users=[7], hold_until=5)
    assert names(reserve(shop, [0], [1], ids=[2], users=[7]).status, S) == ["LIMIT_EXCEEDED"]
    shop.expire(5)
    assert shop.limit_used([7], [0]).tolist() == [0]
    assert names(reserve(shop, [0], [2], ids=[3], users=[7]).status, S) == ["ACCEPTED"]
    shop.cancel([3])
    assert names(reserve(shop, [0], [2], ids=[4], users=[7]).status, S) == ["ACCEPTED"]
    check_tracked(shop, [5, 3, 2])


def test_refused_orders_answer_was_refused(shop):
    reserve(shop, [2], [5], ids=[1], users=[1])
    assert names(shop.confirm([1]), O) == ["WAS_REFUSED"]
    assert names(shop.cancel([1]), O) == ["WAS_REFUSED"]


def test_cancel_before_reserve_is_remembered(shop):
    assert names(shop.cancel([42]), O) == ["REMEMBERED"]
    assert names(shop.cancel([42]), O) == ["ALREADY_CANCELLED"]
    late = reserve(shop, [0, 0], [1, 1], ids=[42, 43], users=[1, 2])
    assert names(late.status, S) == ["CANCELLED", "ACCEPTED"]
    assert shop.reserve_one(0, 1, order_id=42, user_id=1) == Status.CANCELLED
    assert shop.stock.tolist() == [4, 3, 2]
    assert names(shop.state_of([42]), ST) == ["CANCELLED_EARLY"]


def test_reserve_one_matches_the_batch_semantics(shop):
    assert shop.reserve_one(1, 2, order_id=1, user_id=3, hold_until=50) == Status.ACCEPTED
    assert shop.reserve_one(1, 1, order_id=1, user_id=4) == Status.DUPLICATE
    assert shop.reserve_one(1, 1, order_id=2, user_id=3) == Status.LIMIT_EXCEEDED
    assert shop.reserve_one(1, 2, order_id=3, user_id=4) == Status.OUT_OF_STOCK
    assert shop.reserve_one(1, 1, order_id=4, user_id=4) == Status.ACCEPTED
    assert shop.stock.tolist() == [5, 0, 2]
    assert shop.expire(50).tolist() == [1]
    assert shop.stock.tolist() == [5, 2, 2]
    check_tracked(shop, [5, 3, 2])


def test_reserve_one_takes_offers_by_price_and_respects_max_price(backend):
    inv = kernel.Inventory.from_offers(sku=[0, 0, 0], qty=[1, 2, 5], price=[300, 100, 200], backend=backend,
                                       max_orders=8)
    assert inv.reserve_one(0, 4, order_id=1, max_price=200) == Status.ACCEPTED
    assert inv.stock.tolist() == [1, 0, 3]  # 2 at 100, then 2 at 200
    assert inv.reserve_one(0, 4, order_id=2, max_price=200) == Status.OUT_OF_STOCK  # 3 left at <= 200
    assert inv.reserve_one(0, 4, order_id=3) == Status.ACCEPTED
    assert inv.stock.tolist() == [0, 0, 0]
    inv.cancel([1])
    assert inv.stock.tolist() == [0, 2, 2]
    check_tracked(inv, [1, 2, 5])


def test_tracked_fills_report_what_each_line_took(backend):
    inv = kernel.Inventory.from_offers(sku=[0, 0, 1], qty=[2, 5, 3], price=[100, 200, 50], backend=backend,
                                       max_orders=8)
    r = inv.reserve(OrderBatch(sku=[0, 1, 0], qty=[4, 1, 9], offsets=[0, 2, 3], order_id=[1, 2]), ordered=True)
    assert names(r.status, S) == ["ACCEPTED", "OUT_OF_STOCK"]
    f = r.fills
    assert (f.order.tolist(), f.line.tolist(), f.offer.tolist(), f.qty.tolist()) == ([0, 0, 0], [0, 0, 1],
                                                                                     [0, 1, 2], [2, 2, 1])


def test_tracked_direct_and_general_paths_report_the_same_fills(backend):
    """On one offer per SKU the direct path hands the Result no copy of the
    fill log (an accepted line took its whole qty from offer ``sku[line]``);
    a price limit on every line sends the same batch down the general path,
    which does: both give the same statuses and fills, duplicates, refusals
    and carts included, and cancelling the accepted gives all stock back."""
    rng = np.random.default_rng(11)
    n, n_skus = 3000, 40
    stock = rng.integers(0, 60, n_skus)
    lines = rng.integers(1, 4, n)
    n_lines = int(lines.sum())
    sku, qty = rng.integers(0, n_skus, n_lines), rng.integers(1, 4, n_lines)
    offsets = np.concatenate(([0], np.cumsum(lines)))
    ids, users = rng.integers(0, 2 * n, n), rng.integers(0, 300, n)
    outcomes = []
    for max_price in (None, np.full(n_lines, 10**9)):
        inv = kernel.Inventory(stock, backend=backend, max_orders=2 * n, limit_per_user=5, max_user_skus=n_lines)
        r = inv.reserve(OrderBatch(sku, qty, offsets, max_price, order_id=ids, user_id=users), threads=1)
        f = r.fills
        assert len(f) > 0 and (r.status == Status.OUT_OF_STOCK).any() and (r.status == Status.DUPLICATE).any()
        outcomes.append((r.status.copy(), [getattr(f, k).copy() for k in ("order", "line", "offer", "qty")]))
        np.testing.assert_array_equal(stock - inv.stock, np.bincount(f.offer, f.qty, minlength=n_skus))
        inv.cancel(ids[r.status == Status.ACCEPTED])
        np.testing.assert_array_equal(inv.stock, stock)
    (direct_status, direct_fills), (general_status, general_fills) = outcomes
    np.testing.assert_array_equal(direct_status, general_status)
    for a, b in zip(direct_fills, general_fills):
        np.testing.assert_array_equal(a, b)


def test_only_a_durable_inventory_reports_pair_slots(tmp_path):
    """``last_order_slot`` and ``last_pair_slot`` are for the journal's
    capture: a plain inventory reports neither, a durable one reports both,
    and another inventory's calls never touch them."""
    batch = OrderBatch([0, 1], [1, 1], order_id=[1, 2], user_id=[3, 4])
    plain = kernel.Inventory([5, 5], max_orders=8, limit_per_user=2, max_user_skus=8)
    plain.reserve(batch)
    assert plain._tracked.last_pair_slot is None and plain._tracked.last_order_slot is None
    durable = kernel.Inventory.create_durable(str(tmp_path / "inv"), [5, 5], max_orders=8, limit_per_user=2,
                                              max_user_skus=8)
    try:
        durable.reserve(batch)
        pair_slot, order_slot = durable._tracked.last_pair_slot, durable._tracked.last_order_slot
        assert pair_slot.shape == (2,) and (pair_slot >= 0).all() and (order_slot >= 0).all()
        kept = pair_slot.copy(), order_slot.copy()
        plain.reserve(OrderBatch([0, 1], [1, 1], order_id=[5, 6], user_id=[5, 6]))
        np.testing.assert_array_equal(durable._tracked.last_pair_slot, kept[0])  # never the durable's
        np.testing.assert_array_equal(durable._tracked.last_order_slot, kept[1])
    finally:
        durable.close()


@pytest.mark.parametrize("kind", ["plain", "tracked", "durable", "durable shared"])
def test_a_dropped_inventory_is_freed_at_once(tmp_path, kind):
    """With the garbage collector off, the last reference to an inventory
    (closed, where it has a journal) frees it and its state block: nothing
    in it refers back to it.  A cycle (the tracked component's thread
    policy, the journal writer's lock) kept a 1M-order block, 160 MB, until
    the collector's next pass."""
    import gc
    import uuid
    import weakref

    batch = OrderBatch([0, 1], [1, 1], order_id=[1, 2], user_id=[3, 4])
    name = f"kernel-test-freed-{uuid.uuid4().hex[:12]}" if kind == "durable shared" else None
    gc.collect()
    gc.disable()
    try:
        if kind == "plain":
            inv = kernel.Inventory([5, 5])
            inv.reserve(OrderBatch([0, 1], [1, 1]))
        elif kind == "tracked":
            inv = kernel.Inventory([5, 5], max_orders=8, limit_per_user=2, max_user_skus=8)
            inv.reserve(batch)
        else:
            inv = kernel.Inventory.create_durable(str(tmp_path / "inv"), [5, 5], max_orders=8, limit_per_user=2,
                                                  max_user_skus=8, shared=name,
                                                  backend="auto" if name is None else "cython")
            inv.reserve(batch)
        block = inv._block.words
        words = weakref.ref(block.base if block.base is not None else block)
        del block
        if kind.startswith("durable"):
            inv.close()
        gone = weakref.ref(inv)
        del inv
        assert gone() is None, f"{kind}: the inventory outlived its last reference"
        assert words() is None, f"{kind}: its state block outlived it"
    finally:
        gc.enable()
        if name is not None:
            try:
                kernel.Inventory.attach(name).unlink()
            except FileNotFoundError:
                pass


def test_restock_during_a_sale(shop):
    reserve(shop, [2, 2], [1, 1], ids=[1, 2], users=[1, 2])
    assert names(reserve(shop, [2], [1], ids=[3], users=[3]).status, S) == ["OUT_OF_STOCK"]
    shop.restock([2, 0], [3, 1])
    assert shop.stock.tolist() == [6, 3, 3]
    assert names(reserve(shop, [2], [1], ids=[4], users=[3]).status, S) == ["ACCEPTED"]
    check_tracked(shop, [5, 3, 2], restocked=np.array([1, 0, 3]))


def test_a_full_order_table_raises_and_changes_nothing(backend):
    inv = kernel.Inventory([10], backend=backend, max_orders=3)
    reserve(inv, [0, 0], [1, 1], ids=[1, 2], users=[0, 0])
    before = [a.copy() for a in inv.state_arrays()]
    with pytest.raises(CapacityError, match="order table"):
        reserve(inv, [0, 0], [1, 1], ids=[3, 4], users=[0, 0])
    with pytest.raises(CapacityError, match="order table"):
        inv.cancel([5, 6])
    for a, b in zip(before, inv.state_arrays()):
        np.testing.assert_array_equal(a, b)
    # Duplicates need no room: their budget comes back.
    assert names(reserve(inv, [0, 0], [1, 1], ids=[1, 3], users=[0, 0]).status, S) == ["DUPLICATE", "ACCEPTED"]
    with pytest.raises(CapacityError, match="order table"):
        inv.reserve_one(0, 1, order_id=4)
    assert inv.reserve_one(0, 1, order_id=3) == Status.DUPLICATE


def test_full_limit_table_and_fill_log_raise_and_change_nothing(backend):
    inv = kernel.Inventory([10, 10], backend=backend, max_orders=100, limit_per_user=5, max_user_skus=2,
                           max_fills=3)
    reserve(inv, [0, 1], [1, 1], ids=[1, 2], users=[1, 1])
    before = [a.copy() for a in inv.state_arrays()]
    with pytest.raises(CapacityError, match="limit table"):
        reserve(inv, [0, 0, 0], [1, 1, 1], ids=[3, 4, 5], users=[2, 3, 4])
    for a, b in zip(before, inv.state_arrays()):
        np.testing.assert_array_equal(a, b)
    # Pairs already in the table need no room.
    assert inv.reserve_one(0, 1, order_id=6, user_id=1) == Status.ACCEPTED
    with pytest.raises(CapacityError, match="fill log"):
        reserve(inv, [0, 1], [1, 1], ids=[7, 8], users=[1, 1])


# ---- recover() after a process was killed inside cancel / expire
# The state such a process leaves is made here by hand: the CAS that ended
# the order done, its fill entries given back only up to some entry (with
# the reference's own give_back_fills, the step the kill interrupted).

def _slot_of(inv, order_id):
    words = inv.state.order_table[kernel.codes.ORDER_WORD_AT::kernel.codes.ORDER_STRIDE]
    slot = np.flatnonzero((words & kernel.codes.ID_MASK) == order_id)
    assert slot.size == 1
    return int(slot[0])


def _killed_inside_give_back(inv, order_id, ended, entries_done):
    """Order ``order_id`` (HELD) left ``ended`` with only ``entries_done`` of its
    fill entries given back."""
    st = inv.state
    slot = _slot_of(inv, order_id)
    record = st.order_table[kernel.codes.ORDER_STRIDE * slot:kernel.codes.ORDER_STRIDE * (slot + 1)]
    assert record[kernel.codes.ORDER_WORD_AT] >> kernel.codes.STATE_SHIFT == kernel.codes.HELD
    record[kernel.codes.ORDER_WORD_AT] = (ended << kernel.codes.STATE_SHIFT) | order_id
    user, first, last = kernel.reference.record_fills(st.order_table, slot)
    assert last - first >= 2, "the order should log several entries"
    kernel.reference.give_back_fills(st.stock, st.offer_sku, st.limit, st.limit_table, st.fill_offer,
                                     st.fill_qty, user, first, first + entries_done)
    return first, last


@pytest.mark.parametrize("ended", ["CANCELLED_HOLD", "EXPIRED"])
@pytest.mark.parametrize("entries_done", [0, 1])
def test_recover_finishes_a_give_back_a_killed_cancel_or_expire_left(backend, ended, entries_done):
    offers = [4, 3, 5]
    inv = kernel.Inventory.from_offers(sku=[0, 0, 1], qty=offers, price=[100, 200, 50], backend=backend,
                                       max_orders=16, limit_per_user=10)
    # Order 1 takes from all three offers (4 + 2 of SKU 0, 1 of SKU 1); order 2 stays HELD.
    r = inv.reserve(OrderBatch(sku=[0, 1, 1], qty=[6, 1, 2], offsets=[0, 2, 3], order_id=[1, 2],
                               user_id=[7, 8]), ordered=True)
    assert names(r.status, S) == ["ACCEPTED", "ACCEPTED"]
    first, last = _killed_inside_give_back(inv, 1, getattr(kernel.codes, ended), entries_done)
    assert inv.state.fill_qty[first:last].any(), "units still logged: lost until recover() finishes"
    assert inv.stock.tolist() != [4, 3, 3]
    assert inv.recover() == 1
    # Everything order 1 took is back, its cap count too; order 2 is untouched.
    assert inv.stock.tolist() == [4, 3, 3]
    assert inv.limit_used([7, 7, 8], [0, 1, 1]).tolist() == [0, 0, 2]
    assert not inv.state.fill_qty[first:last].any()
    assert names(inv.state_of([1, 2]), ST) == [ended.replace("_HOLD", ""), "HELD"]
    assert inv.recover() == 0  # nothing is given back twice
    assert inv.stock.tolist() == [4, 3, 3]
    check_tracked(inv, offers)


def test_recover_ends_an_order_a_killed_reserve_left_pending(backend):
    inv = kernel.Inventory.from_offers(sku=[0, 0, 1], qty=[4, 3, 5], price=[100, 200, 50], backend=backend,
                                       max_orders=16, limit_per_user=10)
    inv.reserve(OrderBatch(sku=[0, 1], qty=[6, 1], offsets=[0, 2], order_id=[1], user_id=[7]), ordered=True)
    slot = _slot_of(inv, 1)
    # As a reserve killed after its takes and before the CAS that publishes HELD leaves it.
    inv.state.order_table[kernel.codes.ORDER_STRIDE * slot] = (kernel.codes.PENDING << kernel.codes.STATE_SHIFT) | 1
    assert inv.recover() == 1
    assert inv.stock.tolist() == [4, 3, 5]
    assert inv.limit_used([7, 7], [0, 1]).tolist() == [0, 0]
    assert names(inv.state_of([1]), ST) == ["REFUSED"]
    assert inv.recover() == 0
    check_tracked(inv, [4, 3, 5])
