"""claim_and_reserve, the facade's one pass over a tracked batch: claims,
fill-log blocks per chunk, reserves; the same word for word in every backend
on one thread, whatever the chunk size, and a Result that reads the log
right when chunks' blocks interleave (several threads)."""

import numpy as np
import pytest

import kernel
from kernel import OrderBatch, OrderState, Status, codes, lifecycle
from kernel.backends import load
from kernel.invariants import check_tracked

FILL_COUNT_MASK = codes.MAX_ORDER_FILLS


def _market(backend):
    """Three SKUs with 2, 1 and 3 offers (so lines take ranges of 1..3 fill
    entries), capped at 4 units per user and SKU."""
    return kernel.Inventory.from_offers(sku=[0, 0, 1, 2, 2, 2], qty=[3, 4, 6, 2, 2, 9],
                                        price=[10, 20, 5, 1, 2, 3], backend=backend, max_orders=64,
                                        limit_per_user=4)


def _batch():
    # Carts with repeated ids (in the batch and across chunks of 3), users
    # that reach their cap, lines that run the stock out.
    return OrderBatch(sku=[0, 2, 1, 0, 2, 2, 1, 0, 1, 2, 0, 2, 1],
                      qty=[2, 3, 1, 3, 2, 4, 5, 1, 1, 1, 2, 2, 1],
                      offsets=[0, 2, 3, 5, 6, 7, 9, 10, 11, 13],
                      order_id=[5, 7, 5, 9, 11, 7, 13, 15, 9],
                      user_id=[1, 2, 1, 3, 1, 2, 4, 1, 3])


def _read_only(a):
    """``a`` made read-only, as the facade passes every input column: Numba
    compiles one specialization per read-only flag, and a tracked kernel
    takes 35-48 s to compile, so a writable deadline here would compile a
    second one that only these tests use."""
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("chunk", [1, 2, 3, 1024])
@pytest.mark.parametrize("settle", [False, True])
def test_one_thread_is_word_for_word_the_reference_at_any_chunk_size(chunk, settle):
    outs = {}
    for backend in ["reference", "cython", "numba"]:
        if backend not in kernel.available_backends():
            continue
        inv = _market(backend)
        o = _batch()
        k = load(backend)
        status = np.empty(o.n_orders, np.int8)
        order_slot = np.empty(o.n_orders, np.int64)
        fill_slot = np.empty(o.n_lines + 1, np.int64)
        pair_slot = np.full(o.n_lines, -7, np.int64)  # lines no cap count reaches keep it
        chunks = np.empty((-(-o.n_orders // chunk), 5), np.int64)
        deadline = _read_only(np.full(o.n_orders, 77, np.int64))
        inv.state.counters[codes.FILL_CURSOR] = 5  # the log's next free entry is not always 0
        k.claim_and_reserve(*inv.state[:-1], o.line_start, o.sku, o.qty, o.price_limits(), o.order_id, o.user_id,
                            deadline, order_slot, fill_slot, pair_slot, status, chunks, inv.state.counters, chunk,
                            settle, 0, 1)
        outs[backend] = [status, order_slot, fill_slot[:-1], chunks, pair_slot, *(a.copy() for a in inv.state)]
    want = outs.pop("reference")
    for backend, got in outs.items():
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b, err_msg=backend)
    status, order_slot, fill_slot, chunks, pair_slot = want[:5]
    state = want[5:]
    # The blocks follow one another: claimed lines in order, no holes.
    assert chunks[0, 0] == 5 and (chunks[1:, 0] == chunks[:-1, 0] + chunks[:-1, 1]).all()
    assert state[10][codes.FILL_CURSOR] == 5 + chunks[:, 1].sum()
    assert (order_slot >= 0).sum() == chunks[:, 2].sum() == 6  # ids 5, 7, 9, 11, 13, 15
    # Each rollback the call made is reported in its chunk's row too (the
    # facade's G4 rule on one thread: test_one_thread_re_runs_only_for_
    # rollbacks_of_other_calls has some).
    assert chunks[:, 4].sum() == state[10][codes.ROLLBACKS]
    assert [int(s) for s in status[[2, 5, 8]]] == [Status.DUPLICATE] * 3
    # Each slot reported holds its line's (user, SKU) pair; a duplicate's lines are not reached.
    limit_table, hit = state[6], pair_slot >= 0
    assert hit.any()
    keys = limit_table[codes.PAIR_STRIDE * pair_slot[hit] + codes.PAIR_KEY_AT]
    np.testing.assert_array_equal(keys, o.user_id[o.line_order[hit]] * 3 + o.sku[hit] + 1)
    assert (pair_slot[np.isin(o.line_order, [2, 5, 8])] == -7).all() and (pair_slot[~hit] == -7).all()


def _run_claim_and_reserve(backend, inv, o, chunk, settle, direct):
    """One claim_and_reserve call on one thread, as the facade makes it; its
    outputs and a copy of the state after it."""
    k = load(backend)
    status = np.empty(o.n_orders, np.int8)
    order_slot = np.empty(o.n_orders, np.int64)
    fill_slot = np.empty(o.n_lines + 1, np.int64)
    pair_slot = np.full(o.n_lines, -7, np.int64)
    chunks = np.empty((-(-o.n_orders // chunk), 5), np.int64)
    deadline = _read_only(np.arange(o.n_orders, dtype=np.int64) + 100)
    k.claim_and_reserve(*inv.state[:-1], o.line_start, o.sku, o.qty, o.price_limits(), o.order_id, o.user_id,
                        deadline, order_slot, fill_slot, pair_slot, status, chunks, inv.state.counters, chunk,
                        settle, direct, 1)
    return [status, order_slot, fill_slot[:-1], chunks, pair_slot, *(a.copy() for a in inv.state)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 1024])
@pytest.mark.parametrize("settle", [False, True])
@pytest.mark.parametrize("carts", [False, True], ids=["one-line", "carts"])
def test_direct_batches_are_word_for_word_the_reference_at_any_chunk_size(chunk, settle, carts):
    # One offer per SKU, no price limits: the facade's direct path.  A batch
    # of one-line orders only runs the compiled backends' single-line chunks
    # (line i is order i, line_start never read); with carts, the others.
    # Repeated ids (in one chunk and across chunks), a cancelled-early id,
    # users at their cap, SKUs running out.
    sku = [0, 2, 1, 0, 2, 2, 1, 0, 1, 2, 0, 2, 1]
    qty = [2, 3, 1, 3, 2, 4, 5, 1, 1, 1, 2, 2, 1]
    ids = [5, 7, 5, 9, 11, 7, 13, 15, 9, 17, 19, 21, 23]
    users = [1, 2, 1, 3, 1, 2, 4, 1, 3, 1, 1, 1, 2]
    offsets = [0, 2, 3, 5, 6, 7, 9, 10, 11, 13] if carts else None
    if carts:
        ids, users = ids[:9], users[:9]
    outs = {}
    for backend in ["reference", "cython", "numba"]:
        if backend not in kernel.available_backends():
            continue
        inv = kernel.Inventory([3, 6, 3], backend=backend, max_orders=64, limit_per_user=4)
        inv.cancel([19])  # before it is reserved: CANCELLED_EARLY, its reserve answers CANCELLED
        inv.state.counters[codes.FILL_CURSOR] = 5  # the log's next free entry is not always 0
        o = OrderBatch(sku=sku, qty=qty, offsets=offsets, order_id=ids, user_id=users)
        outs[backend] = _run_claim_and_reserve(backend, inv, o, chunk, settle, 1)
    want = outs.pop("reference")
    for backend, got in outs.items():
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b, err_msg=backend)
    status = want[0]
    counts = {Status(int(s)).name for s in status}
    # The batch reaches every outcome the path decides (else it tests less than it says).
    assert {"ACCEPTED", "DUPLICATE", "OUT_OF_STOCK", "LIMIT_EXCEEDED"} <= counts
    assert want[3][:, 4].sum() == want[5 + 10][codes.ROLLBACKS]  # rollbacks reported as counted
    if not carts:
        assert Status(int(status[10])) == Status.CANCELLED


def test_a_repeated_id_in_one_batch_is_a_duplicate_and_takes_no_fill_entries(backend):
    inv = _market(backend)
    r = inv.reserve(OrderBatch(sku=[2, 2, 0], qty=[1, 1, 1], order_id=[3, 3, 4], user_id=[1, 1, 2]), threads=1)
    assert [Status(int(s)).name for s in r.status] == ["ACCEPTED", "DUPLICATE", "ACCEPTED"]
    # SKU 2 has 3 offers, SKU 0 has 2: 5 entries, the duplicate's line none.
    assert inv.state.counters[codes.FILL_CURSOR] == 5
    assert r.fills.line.tolist() == [0, 2] and r.fills.qty.tolist() == [1, 1]
    assert inv.state_of([3, 4]).tolist() == [OrderState.HELD, OrderState.HELD]


def test_ordered_batches_settle_refused_orders_in_the_pass(backend):
    inv = _market(backend)
    r = inv.reserve(OrderBatch(sku=[1, 1, 1], qty=[4, 4, 2], order_id=[1, 2, 3], user_id=[1, 2, 2]), ordered=True)
    assert [Status(int(s)).name for s in r.status] == ["ACCEPTED", "OUT_OF_STOCK", "ACCEPTED"]
    assert inv.state_of([1, 2, 3]).tolist() == [OrderState.HELD, OrderState.REFUSED, OrderState.HELD]


def _check_result_against_the_records(inv, orders, result):
    """Every accepted line's fills add up to its qty, from its SKU's offers,
    and each accepted order's fills are exactly its record's log range."""
    fills = result.fills
    qty_by_line = np.bincount(fills.line, weights=fills.qty, minlength=orders.n_lines)
    accepted_line = (result.status == Status.ACCEPTED)[orders.line_order]
    np.testing.assert_array_equal(qty_by_line, np.where(accepted_line, orders.qty, 0))
    np.testing.assert_array_equal(inv.state.offer_sku[fills.offer], orders.sku[fills.line])
    table = inv.state.order_table.reshape(-1, codes.ORDER_STRIDE)
    slot_of = {int(w) & codes.ID_MASK: s for s, w in enumerate(table[:, codes.ORDER_WORD_AT]) if w}
    logged = 0
    for i in np.flatnonzero(result.status == Status.ACCEPTED)[:2000]:
        record = table[slot_of[int(orders.order_id[i])]]
        first = record[codes.ORDER_FILLS_AT] >> codes.FILL_COUNT_BITS
        count = record[codes.ORDER_FILLS_AT] & FILL_COUNT_MASK
        log = inv.state.fill_qty[first:first + count]
        mine = fills.order == i
        assert log.sum() == fills.qty[mine].sum() == orders.qty[orders.line_start[i]:orders.line_start[i + 1]].sum()
        logged += 1
    assert logged


@pytest.mark.parametrize("chunk", [7, 1024])
def test_results_read_the_log_right_when_chunks_interleave(compiled_backend, monkeypatch, chunk):
    """On two threads chunks take their blocks in any order (and, with ids
    repeated, unevenly): the Result must still map each line to its own
    entries.  Also on one thread, where the blocks are one range."""
    monkeypatch.setattr(lifecycle, "TRACKED_CHUNK", chunk)
    rng = np.random.default_rng(3)
    n = 120_000
    inv = kernel.Inventory.from_offers(sku=np.repeat(np.arange(5000), 2), qty=rng.integers(5, 40, 10_000),
                                       price=np.zeros(10_000, np.int64), backend=compiled_backend, threads=2,
                                       max_orders=2 * n, limit_per_user=3)
    ids = rng.integers(0, n, n)  # about a third repeat
    orders = OrderBatch(sku=rng.integers(0, 5000, n), qty=rng.integers(1, 3, n), order_id=ids,
                        user_id=rng.integers(0, n // 8, n))
    for threads in (2, 1):
        before = int(inv.state.counters[codes.FILL_CURSOR])
        result = inv.reserve(orders, threads=threads)
        assert result.threads == threads
        _check_result_against_the_records(inv, orders, result)
        # Budgets: the log advanced by exactly the claimed lines' entries.
        claimed = np.isin(result.status, [Status.ACCEPTED, Status.OUT_OF_STOCK, Status.LIMIT_EXCEEDED])
        assert inv.state.counters[codes.FILL_CURSOR] - before == 2 * np.count_nonzero(claimed)
        assert (inv.state.counters[codes.FILLS_LEFT] + inv.state.counters[codes.FILL_CURSOR]
                == inv.state.fill_qty.size)
        orders = OrderBatch(sku=orders.sku, qty=orders.qty, order_id=ids + n, user_id=orders.user_id)


def _with_a_rollback(inv, offers, units, reran=None):
    """``inv``'s kernels, with another caller's rollback simulated right
    after claim_and_reserve (``units`` back to ``offers``, the counter
    moved; none where ``offers`` is None); ``reran`` gets the number of
    orders each re-run re-ran."""
    real = inv._tracked.kernels

    class Kernels:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def claim_and_reserve(*args):
            real.claim_and_reserve(*args)
            if offers is not None:
                inv.state.stock[offers] += units
                inv.state.counters[codes.ROLLBACKS] += 1

        @staticmethod
        def reserve_tracked(*args):
            if reran is not None:
                reran.append(args[-5].size)  # order_index
            return real.reserve_tracked(*args)

    return Kernels()


@pytest.mark.parametrize("foreign", [False, True], ids=["own rollback", "another call's too"])
def test_one_thread_re_runs_only_for_rollbacks_of_other_calls(backend, monkeypatch, foreign):
    """On one thread an order gives back what it took before the next one
    is decided, so the call's own rollbacks refuse nothing wrongly: its
    refused orders are not re-run (the kernels report their rollbacks per
    chunk).  A rollback of another call meanwhile (simulated: the counter
    moves) still re-runs them (G4).  Two offers on SKU 0: the general path,
    where every refused order is re-run (no short-order shortcut)."""
    inv = kernel.Inventory.from_offers(sku=[0, 0, 1], qty=[2, 1, 5], price=[1, 2, 1], backend=backend,
                                       max_orders=64)
    reran = []
    none = np.zeros(0, np.int64)  # no units back: only the counter moves
    monkeypatch.setattr(inv._tracked, "kernels", _with_a_rollback(inv, none if foreign else None, none, reran))
    # Order 1's lines pass the read-only pre-check one by one (3 units of
    # SKU 0 within any price) but not together: it takes 2, misses 1, gives
    # them back (a rollback).  Order 3 is refused by the pre-check.
    orders = OrderBatch(sku=[0, 0, 1, 0], qty=[2, 2, 5, 4], offsets=[0, 2, 3, 4], order_id=[1, 2, 3],
                        user_id=[7, 7, 7])
    r = inv.reserve(orders, threads=1)
    assert [Status(int(s)).name for s in r.status] == ["OUT_OF_STOCK", "ACCEPTED", "OUT_OF_STOCK"]
    # Order 1's rollback, then (foreign) the simulated one and order 1's again in the re-run.
    assert inv.state.counters[codes.ROLLBACKS] == (3 if foreign else 1)
    assert reran == ([2] if foreign else [])
    assert inv.state_of([1, 2, 3]).tolist() == [OrderState.REFUSED, OrderState.HELD, OrderState.REFUSED]
    assert inv.stock.tolist() == [2, 1, 0]


def test_an_order_accepted_on_the_rerun_after_a_rollback_stays_held(backend, monkeypatch):
    """A rollback while the batch ran (here: another caller's, simulated by
    units coming back and the counter moving) re-runs the refused orders
    (G4); one accepted then is HELD, and only the still refused are
    settled."""
    inv = kernel.Inventory([1, 0], backend=backend, max_orders=16)
    monkeypatch.setattr(inv._tracked, "kernels", _with_a_rollback(inv, [0], [1]))
    r = inv.reserve(OrderBatch(sku=[0, 0, 1], qty=[1, 1, 1], order_id=[1, 2, 3], user_id=[0, 0, 0]), threads=1)
    assert [Status(int(s)).name for s in r.status] == ["ACCEPTED", "ACCEPTED", "OUT_OF_STOCK"]
    assert inv.state_of([1, 2, 3]).tolist() == [OrderState.HELD, OrderState.HELD, OrderState.REFUSED]
    assert r.fills.line.tolist() == [0, 1]


@pytest.mark.parametrize("carts", [False, True])
def test_the_rerun_answers_short_orders_itself_exactly_as_a_full_rerun_would(backend, monkeypatch, carts):
    """After a rollback, a refused order with a line whose SKU has less than
    its qty left is answered OUT_OF_STOCK by the facade instead of re-run
    (the kernels' stock pre-check would refuse it before any write); the
    statuses, fills and every state word equal a re-run of every refused
    order, with caps refusing some orders and carts repeating SKUs."""
    rng = np.random.default_rng(11)
    n, n_skus = 600, 12
    lines = rng.integers(1, 4, n) if carts else np.ones(n, np.int64)
    offsets = np.concatenate(([0], np.cumsum(lines)))
    orders = OrderBatch(sku=rng.integers(0, n_skus, offsets[-1]), qty=rng.integers(1, 3, offsets[-1]),
                        offsets=offsets if carts else None, order_id=np.arange(n), user_id=rng.integers(0, 40, n))
    stock = np.where(np.arange(n_skus) < 4, 0, rng.integers(5, 60, n_skus))
    # Two SKUs that had none, one that ran out; 1 unit: a qty-1 line fits exactly.
    restocked, units = np.array([0, 1, 5]), np.array([1, 2, 3])
    reran = []

    def run(full_rerun):
        inv = kernel.Inventory(stock, backend=backend, max_orders=2 * n, limit_per_user=3, max_user_skus=4 * n)
        with monkeypatch.context() as patch:
            patch.setattr(inv._tracked, "kernels", _with_a_rollback(inv, restocked, units, reran))
            if full_rerun:
                patch.setattr(lifecycle, "short_orders", lambda stock, orders: np.zeros(orders.n_orders, bool))
            result = inv.reserve(orders, threads=1)
        return result, inv

    skipped, full = run(False), run(True)
    assert 0 < reran[0] < reran[1], "the re-run did not skip the short orders"
    np.testing.assert_array_equal(skipped[0].status, full[0].status)
    for mine, theirs in zip(skipped[1].state_arrays(), full[1].state_arrays()):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(skipped[0].fills.line, full[0].fills.line)
    status = skipped[0].status
    assert (status == Status.OUT_OF_STOCK).sum() > 50 and (status == Status.LIMIT_EXCEEDED).any()
    on_empty = np.zeros(n, bool)  # orders with a line on a SKU that had no stock before the re-run
    on_empty[orders.line_order[np.isin(orders.sku, [0, 1])]] = True
    assert (status[on_empty] == Status.ACCEPTED).any(), "no order was accepted on the re-run"
    restock = np.zeros(n_skus, np.int64)
    restock[restocked] = units
    check_tracked(skipped[1], stock, restocked=restock)


@pytest.mark.parametrize("field, values, message", [
    ("order_id", [2**56, -1, 3], r"order_id\[1\] = -1 must be >= 0"),
    ("order_id", [1, 2**56, 3], r"order_id\[1\] = 72057594037927936 must be < 2\*\*56"),
    ("user_id", [0, 2**62, -5], r"user_id\[2\] = -5 must be >= 0"),
    ("user_id", [0, 2**62, 1], r"user_id\[1\] = 4611686018427387904 must be <= "),
])
def test_ids_and_users_out_of_range_name_the_first_bad_position_and_change_nothing(backend, field, values,
                                                                                  message):
    """The one-pass range check (both bounds at once) still reports what
    the two separate checks did: a negative value first, then a too big one."""
    inv = kernel.Inventory([5, 5, 5], backend=backend, max_orders=16, limit_per_user=3)
    before = [a.copy() for a in inv.state_arrays()]
    fields = {"order_id": [1, 2, 3], "user_id": [0, 1, 2], field: values}
    with pytest.raises(ValueError, match=message):
        inv.reserve(OrderBatch(sku=[0, 1, 2], qty=[1, 1, 1], **fields))
    for a, b in zip(before, inv.state_arrays()):
        np.testing.assert_array_equal(a, b)


def test_budgets_without_per_line_gathers_match_mixed_inventories(backend):
    """Budgets come from the batch size where every SKU has as many offers
    and is capped alike; mixed inventories still count per line.  A batch
    that fits exactly is accepted; one entry more is a CapacityError."""
    uniform = kernel.Inventory([5, 5], backend=backend, max_orders=8, limit_per_user=2, max_fills=3)
    r = uniform.reserve(OrderBatch(sku=[0, 1, 0], qty=[1, 1, 1], order_id=[1, 2, 3], user_id=[0, 0, 1]))
    assert r.n_accepted == 3
    with pytest.raises(kernel.CapacityError, match="fill log"):
        uniform.reserve(OrderBatch(sku=[0], qty=[1], order_id=[4], user_id=[2]))
    mixed = kernel.Inventory.from_offers(sku=[0, 0, 1], qty=[2, 2, 2], price=[1, 2, 1], backend=backend,
                                         max_orders=8, max_fills=3)
    r = mixed.reserve(OrderBatch(sku=[0, 1], qty=[3, 1], order_id=[1, 2]))  # 2 + 1 entries
    assert r.n_accepted == 2 and r.fills.qty.tolist() == [2, 1, 1]
    with pytest.raises(kernel.CapacityError, match="fill log"):
        mixed.reserve(OrderBatch(sku=[1], qty=[1], order_id=[3]))


def _one_offer_batches(rng, n_skus, rounds=3, n_orders=300):
    """Random carts of 1..3 lines on ``n_skus`` SKUs, no price limits, some
    repeated ids (within and across batches), a few users (caps bite)."""
    next_id = 1
    for _ in range(rounds):
        lines = rng.integers(1, 4, n_orders)
        offsets = np.concatenate(([0], np.cumsum(lines)))
        ids = next_id + np.arange(n_orders)
        ids[rng.random(n_orders) < 0.05] = next_id  # some repeats of the batch's first id
        if next_id > 1:
            ids[rng.random(n_orders) < 0.05] = next_id - 1  # and of the last batch's ids
        next_id += n_orders
        yield OrderBatch(sku=rng.integers(0, n_skus, offsets[-1]), qty=rng.integers(1, 5, offsets[-1]),
                         offsets=offsets, order_id=ids, user_id=rng.integers(0, 12, n_orders))


def _spied_direct(inv):
    """Record the ``direct`` argument of every claim_and_reserve call."""
    real, seen = inv._tracked.kernels, []

    class Kernels:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def claim_and_reserve(*args):
            seen.append(args[-2])
            real.claim_and_reserve(*args)

    inv._tracked.kernels = Kernels()
    return seen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_direct_path_is_word_for_word_the_general_path_on_one_offer_inventories(backend, seed):
    """One offer per SKU (offer s is SKU s's) and no price limits: the
    facade passes direct=1, which reads and takes stock[s] without the
    offer arrays; on one thread statuses, stock, order table, limit table
    and fill log are what the general path (direct=0) leaves."""
    outs = {}
    for direct in (1, 0):
        rng = np.random.default_rng(seed)
        n_skus = 40
        stock = rng.integers(0, 40, n_skus)  # some SKUs sell out, some not: every status
        caps = rng.choice([2, 5, kernel.NO_LIMIT], n_skus)
        inv = kernel.Inventory(stock, backend=backend, max_orders=4096, limit_per_user=caps)
        assert inv._tracked.one_offer_per_sku
        inv._tracked.one_offer_per_sku = bool(direct)  # direct=0: the general path on the same inventory
        seen = _spied_direct(inv)
        statuses = []
        for k, orders in enumerate(_one_offer_batches(rng, n_skus)):
            statuses.append(inv.reserve(orders, ordered=bool(k % 2), threads=1).status.copy())
        assert seen and all(d == direct for d in seen)
        outs[direct] = statuses + [a.copy() for a in inv.state_arrays()]
    for a, b in zip(outs[1], outs[0]):
        np.testing.assert_array_equal(a, b)


def test_the_direct_path_keeps_the_invariants_on_two_threads(backend):
    rng = np.random.default_rng(7)
    n_skus = 200
    stock = rng.integers(0, 30, n_skus)
    inv = kernel.Inventory(stock, backend=backend, max_orders=1 << 14, limit_per_user=4)
    seen = _spied_direct(inv)
    for orders in _one_offer_batches(rng, n_skus, n_orders=3000):
        inv.reserve(orders, threads=2)
    assert seen and all(d == 1 for d in seen)
    check_tracked(inv, stock)
    # Priced batches take the general path.
    inv.reserve(OrderBatch(sku=[0, 1], qty=[1, 1], order_id=[10**9, 10**9 + 1], user_id=[1, 2],
                           max_price=[10**6, 10**6]), threads=2)
    assert seen[-1] == 0
    check_tracked(inv, stock)


# A batch on SKUs 0, 2, 3 capped at 4 per user and SKU 1 uncapped, with SKU
# 2 scarce (3 units) and SKU 3 sold out.  Per order: what it meets, and for
# each line whether take_tracked's cap count reaches it (and so must report
# its pair's slot) or not (uncapped, after the failing line, refused by a
# read-only pre-check, a duplicate).
_PAIR_CAPS = [4, codes.NO_LIMIT, 4, 4]
_PAIR_STOCK = [20, 20, 3, 0]
_PAIR_ORDERS = [  # (order id, user, [(sku, qty), ...], status, per line: reached)
    (10, 1, [(0, 2), (1, 1)], Status.ACCEPTED, [True, False]),
    (11, 1, [(0, 3)], Status.LIMIT_EXCEEDED, [False]),                      # pre-check: 2 held, cap 4
    (12, 2, [(0, 3), (0, 3), (2, 1)], Status.LIMIT_EXCEEDED, [True, True, False]),  # the cap refuses line 2
    (13, 3, [(1, 1), (2, 2), (2, 2)], Status.OUT_OF_STOCK, [False, True, True]),   # new pair, then 1 of 2 left
    (14, 4, [(3, 1)], Status.OUT_OF_STOCK, [False]),                        # pre-check: sold out
    (10, 5, [(0, 1)], Status.DUPLICATE, [False]),
    (15, 2, [(2, 1)], Status.ACCEPTED, [True]),
]


def _pair_inventory(backend, direct):
    if direct:  # one offer per SKU: the kernels' direct path
        return kernel.Inventory(_PAIR_STOCK, backend=backend, max_orders=64, limit_per_user=_PAIR_CAPS)
    # Two offers per SKU (the stock split), the general path.
    half = [s // 2 for s in _PAIR_STOCK]
    return kernel.Inventory.from_offers(sku=[0, 0, 1, 1, 2, 2, 3, 3],
                                        qty=[q for s, h in zip(_PAIR_STOCK, half) for q in (h, s - h)],
                                        price=[1, 2] * 4, backend=backend, max_orders=64,
                                        limit_per_user=_PAIR_CAPS)


def _pair_batch():
    lines = [line for _, _, order_lines, _, _ in _PAIR_ORDERS for line in order_lines]
    return OrderBatch(sku=[s for s, _ in lines], qty=[q for _, q in lines],
                      offsets=np.cumsum([0] + [len(order[2]) for order in _PAIR_ORDERS]),
                      order_id=[order[0] for order in _PAIR_ORDERS], user_id=[order[1] for order in _PAIR_ORDERS])


def _pair_slots_are_the_lines_pairs(inv, orders, pair_slot, reached):
    """-1 for each line not reached, else the slot holding its (user, SKU) key."""
    n_skus = len(_PAIR_CAPS)
    keys = orders.user_id[orders.line_order] * n_skus + orders.sku + 1
    table = inv.state.limit_table.reshape(-1, codes.PAIR_STRIDE)
    np.testing.assert_array_equal(pair_slot[~reached], -1)
    np.testing.assert_array_equal(table[pair_slot[reached], codes.PAIR_KEY_AT], keys[reached])


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "general"])
def test_last_pair_slot_is_each_capped_reached_lines_pair_slot(direct):
    """After a tracked reserve, ``last_pair_slot`` holds per line exactly: -1
    for a line of an uncapped SKU or one no cap count reached, else the
    limit-table slot whose key is the line's (user * n_skus + sku + 1), for
    lines the cap refused and lines that then ran out of stock after adding
    their pair too.  On one thread every backend gives the same array."""
    want = None
    reached = np.array([r for order in _PAIR_ORDERS for r in order[4]])
    for backend in kernel.available_backends():
        inv = _pair_inventory(backend, direct)
        inv._tracked.report_slots = True  # as a durable inventory sets it
        orders = _pair_batch()
        result = inv.reserve(orders, threads=1)
        assert [Status(int(s)) for s in result.status] == [order[3] for order in _PAIR_ORDERS], backend
        pair_slot = inv._tracked.last_pair_slot
        assert pair_slot.shape == (orders.n_lines,) and pair_slot.dtype == np.int64
        _pair_slots_are_the_lines_pairs(inv, orders, pair_slot, reached)
        # The rolled-back order 13's new pair stays in the table, count 0:
        # the journal learns of it only from the slot reported.
        table = inv.state.limit_table.reshape(-1, codes.PAIR_STRIDE)
        assert table[pair_slot[7], codes.PAIR_COUNT_AT] == 0 and pair_slot[7] == pair_slot[8]
        assert pair_slot[3] == pair_slot[4]  # one pair, two lines
        if want is None:
            want = pair_slot.copy()
        np.testing.assert_array_equal(pair_slot, want, err_msg=backend)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "general"])
def test_work_arrays_left_by_a_bigger_call_leave_nothing_behind(direct):
    """The facade reuses a finished call's work arrays (the order slots and
    pair slots behind last_order_slot / last_pair_slot, and on the direct
    path the fill slots): given bigger ones full of stale values, a call
    still answers, fills and reports exactly as on fresh ones (each view cut
    to this batch, the pair slots -1 first)."""
    reached = np.array([r for order in _PAIR_ORDERS for r in order[4]])
    want_fills = None
    for backend in kernel.available_backends():
        fresh = _pair_inventory(backend, direct)
        fresh_fills = fresh.reserve(_pair_batch(), threads=1).fills
        inv = _pair_inventory(backend, direct)
        inv._tracked.report_slots = True  # as a durable inventory sets it
        stale = tuple(np.full(100, value, dtype=np.int64) for value in (777, 12345, 4242))
        inv._tracked._spare.append(stale)
        initial = inv.stock.copy()
        orders = _pair_batch()
        result = inv.reserve(orders, threads=1)
        assert [Status(int(s)) for s in result.status] == [order[3] for order in _PAIR_ORDERS], backend
        pair_slot, order_slot = inv._tracked.last_pair_slot, inv._tracked.last_order_slot
        assert pair_slot.shape == (orders.n_lines,) and order_slot.shape == (orders.n_orders,)
        assert np.shares_memory(pair_slot, stale[1])  # the stale arrays were the ones used
        _pair_slots_are_the_lines_pairs(inv, orders, pair_slot, reached)
        claimed = order_slot >= 0
        assert claimed.sum() == 6 and (order_slot[~claimed] == -1).all()  # order 10's repeat claims nothing
        assert OrderState.UNKNOWN not in inv.state_of(orders.order_id[claimed])
        fills = result.fills
        for field in ("order", "line", "offer", "qty"):
            np.testing.assert_array_equal(getattr(fills, field), getattr(fresh_fills, field), err_msg=field)
        if want_fills is None:
            want_fills = fills
        np.testing.assert_array_equal(fills.qty, want_fills.qty, err_msg=backend)
        assert len(fills) > 0
        check_tracked(inv, initial)


def test_last_pair_slot_on_two_threads_names_only_the_lines_pairs(compiled_backend):
    """On two threads which lines a cap count reaches depends on timing, but
    each slot reported holds its line's pair, and lines of uncapped SKUs and
    of duplicates are never reported."""
    rng = np.random.default_rng(8)
    n, n_skus = 20_000, 50
    caps = np.where(np.arange(n_skus) % 4 == 0, codes.NO_LIMIT, 3)
    stock = rng.integers(0, 200, n_skus)
    inv = kernel.Inventory(stock, backend=compiled_backend, threads=2, max_orders=2 * n, limit_per_user=caps,
                           max_user_skus=2 * n)
    lines = rng.integers(1, 4, n)
    n_lines = int(lines.sum())
    ids = rng.integers(0, n, n)  # about a third repeat
    orders = OrderBatch(rng.integers(0, n_skus, n_lines), rng.integers(1, 3, n_lines),
                        np.concatenate(([0], np.cumsum(lines))), order_id=ids, user_id=rng.integers(0, n // 10, n))
    inv._tracked.report_slots = True  # as a durable inventory sets it
    result = inv.reserve(orders, threads=2)
    pair_slot = inv._tracked.last_pair_slot
    reported = pair_slot >= 0
    assert reported.sum() > 1000 and (result.status == Status.ACCEPTED).any()
    claimed = inv._tracked.last_order_slot[orders.line_order] >= 0
    assert not reported[(caps[orders.sku] == codes.NO_LIMIT) | ~claimed].any()
    keys = orders.user_id[orders.line_order] * n_skus + orders.sku + 1
    table = inv.state.limit_table.reshape(-1, codes.PAIR_STRIDE)
    np.testing.assert_array_equal(table[pair_slot[reported], codes.PAIR_KEY_AT], keys[reported])
    check_tracked(inv, stock)


def test_every_refusal_status_has_the_refusal_bits():
    # The compiled settle_refused skips a block of statuses whose OR lacks a
    # bit of REFUSAL_BITS: right only if every refusal has all of them (and
    # there is at least one, or every block would be skipped).
    assert codes.REFUSAL_BITS != 0
    for refusal in (Status.OUT_OF_STOCK, Status.LIMIT_EXCEEDED):
        assert refusal & codes.REFUSAL_BITS == codes.REFUSAL_BITS


def _refusals_at(n, where, rng):
    """Statuses of ``n`` orders: the others drawn from the non-refusals,
    refusals (both kinds) at ``where``."""
    status = rng.choice(np.array([Status.ACCEPTED, Status.DUPLICATE, Status.CANCELLED], np.int8), n)
    status[where] = rng.choice(np.array([Status.OUT_OF_STOCK, Status.LIMIT_EXCEEDED], np.int8), len(where))
    return status


@pytest.mark.parametrize("case", ["none", "edges", "sparse", "dense", "last-only", "dense-clean-sparse"])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 1025, 9000])
def test_settle_refused_is_the_reference_wherever_the_refusals_are(compiled_backend, threads, case, n):
    """The compiled settle_refused checks statuses a block at a time and
    skips blocks without a refusal (looking only after a block whose last
    order was not refused): a refusal on either side of a block's or a
    chunk's edge, alone in the batch, among many, or after a run of blocks
    with some is settled exactly as the reference settles it (PENDING -> REFUSED, CANCEL_REQUESTED ->
    CANCELLED_HOLD), and no other order's word moves."""
    rng = np.random.default_rng(n)
    edges = [i for b in (64, 1024, 4096) for i in (b - 1, b) if i < n] + [0, n - 1]
    where = {"none": [], "edges": edges, "sparse": rng.choice(n, max(1, n // 200), replace=False),
             "dense": rng.choice(n, 9 * n // 10, replace=False), "last-only": [n - 1],
             "dense-clean-sparse": np.concatenate((np.arange(0, n // 3), np.arange(2 * n // 3, n, 97)))}[case]
    status = _read_only(_refusals_at(n, np.asarray(where, dtype=np.int64), rng))
    order_slot = _read_only(rng.permutation(2 * n)[:n].astype(np.int64))  # slots in no particular order
    words = np.zeros((2 * n, codes.ORDER_STRIDE), np.int64)
    states = rng.choice([OrderState.PENDING, codes.CANCEL_REQUESTED], n, p=[0.8, 0.2])
    words[order_slot, codes.ORDER_WORD_AT] = (states.astype(np.int64) << codes.STATE_SHIFT) | np.arange(n)
    want = words.reshape(-1).copy()
    load("reference").settle_refused(want, order_slot, status, 1)
    got = words.reshape(-1).copy()
    load(compiled_backend).settle_refused(got, order_slot, status, threads)
    np.testing.assert_array_equal(got, want)
    refused = (status == Status.OUT_OF_STOCK) | (status == Status.LIMIT_EXCEEDED)
    moved = got[codes.ORDER_STRIDE * order_slot] != words[order_slot, codes.ORDER_WORD_AT]
    np.testing.assert_array_equal(moved, refused)  # the test itself: exactly the refused moved
