"""kernel.cluster on a local Ray cluster (2 CPUs, 127.0.0.1 only): random
tracked batches with carts across shards, a shard actor SIGKILLed
mid-stream, a coordinator SIGKILLed before and after its decision, bad
input, an unreachable shard, the coordinator's log, and the import without
Ray.  Every wait is bounded; nothing asserts on timing."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

# Before Ray is imported: every Ray server binds 127.0.0.1 (the node's
# address is the loopback one), nothing listens on other interfaces.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402  (CI installs the 'ray' extra; see pyproject's test extra)

import kernel  # noqa: E402
from kernel import OrderBatch, OrderState, Outcome, Status  # noqa: E402
from kernel.cluster import DecisionLog, LogBusy, LogFailed, ShardedInventory, ShardUnavailable  # noqa: E402

N_SKUS = 24
CAP = 4
TIMEOUT_S = 60  # every shard call: long enough for an actor restart on a busy 2-core machine


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def cluster(ray_address, tmp_path):
    made = []

    def make(shards=3, stock=None, **kw):
        if "offers" not in kw:
            stock = [30] * N_SKUS if stock is None else stock
        kw.setdefault("limit_per_user", CAP)
        inv = ShardedInventory.create(tmp_path / f"c{len(made)}", stock, shards=shards, max_orders=20_000,
                                      backend="cython", call_timeout_s=TIMEOUT_S, **kw)
        made.append(inv)
        return inv

    yield make
    for inv in made:
        inv.shutdown()


# ------------------------------------------------------------------ helpers
class Orders:
    """Every order ever sent, by id: its lines and buyer (a retry resends
    the same order), and what each call answered."""

    def __init__(self, rng):
        self.rng = rng
        self.lines = {}  # id -> (skus, qtys, user)
        self.accepted = {}  # id -> how many calls answered ACCEPTED
        self.released = set()  # ids the test cancelled
        self.next_id = 1

    def batch(self, n, retry_share=0.1, max_lines=3):
        rng, rows = self.rng, []
        for _ in range(n):
            if self.lines and rng.random() < retry_share:
                oid = int(rng.choice(list(self.lines)))
            else:
                oid = self.next_id
                self.next_id += 1
                k = int(rng.integers(1, max_lines + 1))
                self.lines[oid] = (rng.choice(N_SKUS, k, replace=False), rng.integers(1, 3, k),
                                   int(rng.integers(0, 20)))
            rows.append(oid)
        if n > 3:
            rows[-1] = rows[0]  # a repeat inside the batch
        sku = np.concatenate([self.lines[o][0] for o in rows])
        qty = np.concatenate([self.lines[o][1] for o in rows])
        offsets = np.cumsum([0] + [self.lines[o][0].size for o in rows])
        return OrderBatch(sku=sku, qty=qty, offsets=offsets, order_id=rows, user_id=[self.lines[o][2] for o in rows])

    def record(self, batch, status):
        for oid, st in zip(batch.order_id.tolist(), status.tolist()):
            if st == Status.ACCEPTED:
                self.accepted[oid] = self.accepted.get(oid, 0) + 1


def check(inv, orders, initial):
    """No oversell, conservation per SKU across shards, every cart wholly
    held or wholly absent, ids accepted once, caps exact per (user, SKU)."""
    ids = np.array(sorted(orders.lines), dtype=np.int64)
    per_shard = inv._states(ids)
    merged = inv.state_of(ids)
    stock = inv.stock
    assert (stock >= 0).all()
    assert max(orders.accepted.values(), default=1) == 1, "an id was accepted twice"
    holding = np.isin(merged, (OrderState.HELD, OrderState.CONFIRMED))
    taken = np.zeros(N_SKUS, dtype=np.int64)
    used = {}
    for k, oid in enumerate(ids.tolist()):
        skus, qtys, user = orders.lines[oid]
        shards = np.unique(inv.map.sku_shard[skus])
        if shards.size > 1:  # a cart across shards: all parts final, or none holding
            parts = per_shard[shards, k]
            assert (parts == OrderState.CONFIRMED).all() or not np.isin(
                parts, (OrderState.HELD, OrderState.CONFIRMED)).any(), (oid, parts)
        if holding[k]:
            np.add.at(taken, skus, qtys)
            for s, q in zip(skus.tolist(), qtys.tolist()):
                used[(user, s)] = used.get((user, s), 0) + q
        if orders.accepted.get(oid) and oid not in orders.released:
            assert holding[k], f"acknowledged order {oid} is {OrderState(merged[k]).name}"
    np.testing.assert_array_equal(stock + taken, initial)
    if used:
        pairs = np.array(list(used))
        np.testing.assert_array_equal(inv.limit_used(pairs[:, 0], pairs[:, 1]), list(used.values()))
        assert max(used.values()) <= CAP


# -------------------------------------------------------------------- tests
def test_random_batches_with_carts(cluster):
    inv = cluster(shards=3)
    with pytest.raises(ValueError, match="nbytes = -1 is out of range"):
        inv.make_room(-1)
    assert all(ready >= 1 << 20 for ready in inv.make_room(1 << 20))  # every shard's journal, before the load
    orders = Orders(np.random.default_rng(11))
    initial = np.array([30] * N_SKUS)
    for round_ in range(6):
        batch = orders.batch(150)
        status = inv.reserve(batch, hold_until=inv.clock() + 600_000, ordered=bool(round_ % 2))
        orders.record(batch, status)
        check(inv, orders, initial)
        if round_ == 2:  # some holds end: cancelled and confirmed, the stock goes back / stays taken
            held = [o for o in orders.accepted if inv.state_of([o])[0] == OrderState.HELD]
            assert (inv.cancel(held[::2]) == Outcome.DONE).all()
            orders.released.update(held[::2])
            assert (inv.confirm(held[1::2]) == Outcome.DONE).all()
            check(inv, orders, initial)
    retried = inv.reserve(batch)
    assert (retried == Status.DUPLICATE).all()
    carts = [o for o, (skus, _, _) in orders.lines.items() if np.unique(inv.map.sku_shard[skus]).size > 1]
    assert carts and any(orders.accepted.get(o) for o in carts)  # the workload did exercise carts
    assert inv.split_carts == []
    # A cancel that comes first is remembered on every shard: the late cart is refused there.
    late = orders.next_id + 1000
    assert inv.cancel([late]).tolist() == [Outcome.REMEMBERED]
    assert inv.reserve(OrderBatch(sku=[0, 1], qty=[1, 1], offsets=[0, 2], order_id=[late], user_id=[3])).tolist() \
        == [Status.CANCELLED]
    assert inv.state_of([late]).tolist() == [OrderState.CANCELLED_EARLY]
    sold = [o for o in carts if orders.accepted.get(o)]
    assert (inv.confirm(sold) == Outcome.ALREADY_CONFIRMED).all()  # a cart across shards is final
    assert (inv.cancel(sold) == Outcome.ALREADY_CONFIRMED).all()
    check(inv, orders, initial)


@pytest.mark.parametrize("kind", ["carts, ample stock", "single-shard orders, scarce stock"])
def test_agrees_with_one_inventory(cluster, kind):
    """Where the semantics say they must agree (README): statuses, stock and
    caps equal a single-node Inventory in ordered mode."""
    rng = np.random.default_rng(5)
    carts = kind.startswith("carts")
    stock = [1000] * N_SKUS if carts else rng.integers(0, 8, N_SKUS).tolist()
    # Caps bind in the scarce case only (one line per order: the same order of checks on one shard).
    cap = 1000 if carts else CAP
    inv = cluster(shards=2, stock=stock, sku_shard=np.arange(N_SKUS) // (N_SKUS // 2), limit_per_user=cap)
    one = kernel.Inventory(stock, max_orders=20_000, limit_per_user=cap, backend="cython")
    orders = Orders(rng)
    for _ in range(3):
        batch = orders.batch(200, max_lines=3 if carts else 1)
        got = inv.reserve(batch, ordered=True)
        want = one.reserve(batch, ordered=True).status
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(inv.stock, one.stock)
    ids = np.array(sorted(orders.lines))
    states, single = inv.state_of(ids), one.state_of(ids)
    spans = np.array([np.unique(inv.map.sku_shard[orders.lines[o][0]]).size > 1 for o in ids])
    # The one difference: a cart across shards is final (CONFIRMED) once accepted.
    np.testing.assert_array_equal(states[~spans], single[~spans])
    assert ((states[spans] == OrderState.CONFIRMED) == (single[spans] == OrderState.HELD)).all()
    assert spans.any() == carts


def test_offers_with_prices_agree_with_one_inventory(cluster):
    """Several offers per SKU (global offer ids, local numbering per shard),
    price limits, ordered mode, restock by global offer id."""
    rng = np.random.default_rng(9)
    sku = np.repeat(np.arange(8), 2)
    qty, price = rng.integers(0, 6, 16), rng.integers(50, 150, 16)
    inv = cluster(shards=3, stock=None, offers=(sku, qty, price), n_skus=8, sku_shard=[2, 0, 1, 2, 0, 1, 1, 0])
    one = kernel.Inventory.from_offers(sku, qty, price, 8, max_orders=20_000, limit_per_user=CAP, backend="cython")
    for k in range(3):
        n = 60
        batch = OrderBatch(sku=rng.integers(0, 8, n), qty=rng.integers(1, 3, n), max_price=rng.integers(40, 160, n),
                           order_id=np.arange(k * n, (k + 1) * n), user_id=rng.integers(0, 10, n))
        np.testing.assert_array_equal(inv.reserve(batch, ordered=True), one.reserve(batch, ordered=True).status)
        np.testing.assert_array_equal(inv.stock, one.stock)
        inv.restock([3, 10], [2, 1])
        one.restock([3, 10], [2, 1])
    np.testing.assert_array_equal(inv.stock, one.stock)


def test_a_try_retried_by_ray_counts_as_held(cluster):
    """Ray reruns a call whose actor died after the call's journal record
    but before its answer: the try then answers DUPLICATE with state HELD,
    and the round counts that part as held (it commits the cart)."""
    inv = cluster(shards=2, sku_shard=np.arange(N_SKUS) // 12)
    first_run = dict(sku=[0], qty=[1], offsets=[0, 1], max_price=None, order_id=[5], user_id=[1])
    ray.get(inv.actors[0].reserve.remote(None, None, first_run, inv.clock() + 60_000), timeout=TIMEOUT_S)
    cart = OrderBatch(sku=[0, 12], qty=[1, 1], offsets=[0, 2], order_id=[5], user_id=[1])
    assert inv.reserve(cart).tolist() == [Status.ACCEPTED]
    assert (inv._states(np.array([5])) == OrderState.CONFIRMED).all()
    assert inv.stock.sum() == 30 * N_SKUS - 2
    assert inv.reserve(cart).tolist() == [Status.DUPLICATE]


def test_under_selling_across_shards_is_what_the_readme_says(cluster):
    """SKUs 0 and 1 (shard 0) have 1 unit each; SKU 12 (shard 1) has 2.
    Cart 1 wants SKU 0 and 5 of SKU 12: it is doomed on shard 1.

    * A call's single-shard orders run before its tries: order 2 (SKU 0)
      is accepted, as on one node, not refused for cart 1's doomed try.
    * Between carts of one call it is the documented under-sell: cart 3
      (SKU 1 + 5 of SKU 12) holds SKU 1 on shard 0 in its try, so cart 4
      (SKU 1 + SKU 13) is refused there; cart 3 then gives the unit back.
      One node accepts cart 4.  A new id for it is accepted afterwards."""
    stock = [30] * N_SKUS
    stock[0], stock[1], stock[12] = 1, 1, 2
    inv = cluster(shards=2, stock=stock, sku_shard=np.arange(N_SKUS) // 12)
    one = kernel.Inventory(stock, max_orders=100, limit_per_user=CAP, backend="cython")
    first = OrderBatch(sku=[0, 12, 0], qty=[1, 5, 1], offsets=[0, 2, 3], order_id=[1, 2], user_id=[1, 2])
    want = [Status.OUT_OF_STOCK, Status.ACCEPTED]
    assert one.reserve(first, ordered=True).status.tolist() == want
    assert inv.reserve(first, ordered=True).tolist() == want
    carts = OrderBatch(sku=[1, 12, 1, 13], qty=[1, 5, 1, 1], offsets=[0, 2, 4], order_id=[3, 4], user_id=[3, 4])
    assert one.reserve(carts, ordered=True).status.tolist() == [Status.OUT_OF_STOCK, Status.ACCEPTED]
    assert inv.reserve(carts, ordered=True).tolist() == [Status.OUT_OF_STOCK, Status.OUT_OF_STOCK]
    assert inv.stock[[0, 1, 12, 13]].tolist() == [0, 1, 2, 30]  # the unit cart 4 missed is back on the shelf
    again = OrderBatch(sku=[1, 13], qty=[1, 1], offsets=[0, 2], order_id=[5], user_id=[4])
    assert inv.reserve(again).tolist() == [Status.ACCEPTED]


def test_shard_killed_mid_stream(cluster):
    """SIGKILL a shard actor's process while batches stream: Ray restarts it
    from its journal, the call in flight is retried, nothing acknowledged is
    lost, nothing is oversold, a resent batch answers DUPLICATE."""
    inv = cluster(shards=2)
    orders = Orders(np.random.default_rng(7))
    initial = np.array([30] * N_SKUS)
    victim = inv.shard_info()[0]["pid"]
    started = threading.Event()

    def kill():
        if started.wait(timeout=TIMEOUT_S):
            os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    sent = []
    for k in range(8):
        batch = orders.batch(120, retry_share=0)
        if k == 3:
            started.set()
        status = inv.reserve(batch)
        orders.record(batch, status)
        sent.append((batch, status))
    killer.join(timeout=TIMEOUT_S)
    info = inv.shard_info()[0]
    assert info["pid"] != victim and info["reopened"]
    check(inv, orders, initial)
    for batch, status in sent:  # every call again: answered from the journal
        again = inv.reserve(batch)
        assert (again == Status.DUPLICATE).all()
    check(inv, orders, initial)


COORDINATOR = textwrap.dedent("""
    import os, sys
    import numpy as np
    import ray
    from kernel import OrderBatch
    from kernel.cluster import DecisionLog, ShardedInventory
    address, directory, when = sys.argv[1:4]
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    inv = ShardedInventory.open(directory, coordinator="doomed", call_timeout_s=60)
    decide = DecisionLog.decide
    def crash(log, tx, committed):
        if when == "after":
            decide(log, tx, committed)
        os.kill(os.getpid(), 9)   # SIGKILL: no cleanup, no flush
    DecisionLog.decide = crash
    ids = list(range(1, 41))
    sku = [s for k in range(40) for s in (k % 12, 12 + k % 12)]
    inv.reserve(OrderBatch(sku=sku, qty=[1] * 80, offsets=list(range(0, 81, 2)), order_id=ids, user_id=ids))
""")


@pytest.mark.parametrize("when", ["before", "after"])
def test_coordinator_killed_between_try_and_confirm(cluster, ray_address, when):
    inv = cluster(shards=2, sku_shard=np.arange(N_SKUS) // 12)
    proc = subprocess.run([sys.executable, "-c", COORDINATOR, ray_address, inv.directory, when],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ids = np.arange(1, 41)
    parts = inv._states(ids)
    assert (parts == OrderState.HELD).all()  # tried everywhere, in doubt
    assert inv.stock.sum() == 30 * N_SKUS - 80
    done = inv.recover()
    assert done == dict(rounds=1, confirmed=40 if when == "after" else 0, cancelled=0 if when == "after" else 40)
    want = OrderState.CONFIRMED if when == "after" else OrderState.CANCELLED
    assert (inv._states(ids) == want).all()
    assert inv.stock.sum() == 30 * N_SKUS - (80 if when == "after" else 0)
    assert inv.recover() == dict(rounds=0, confirmed=0, cancelled=0)  # finished once
    # The client's retry of the round's batch is answered DUPLICATE.
    sku = [s for k in range(40) for s in (k % 12, 12 + k % 12)]
    retry = OrderBatch(sku=sku, qty=[1] * 80, offsets=list(range(0, 81, 2)), order_id=ids, user_id=ids)
    assert (inv.reserve(retry) == Status.DUPLICATE).all()


def test_holds_of_a_dead_round_are_bounded_by_their_deadline(cluster, ray_address):
    """Even with no recovery at all, each shard's own expiry past the try
    deadline frees every unit a dead coordinator's round held; a later
    recovery then finds nothing left to give back."""
    inv = cluster(shards=2, sku_shard=np.arange(N_SKUS) // 12)
    proc = subprocess.run([sys.executable, "-c", COORDINATOR, ray_address, inv.directory, "before"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    now = inv.clock() + inv.try_timeout_ms
    expired = ray.get([actor.expire.remote(now) for actor in inv.actors], timeout=TIMEOUT_S)
    assert [e.tolist() for e in expired] == [list(range(1, 41))] * 2
    assert inv.stock.sum() == 30 * N_SKUS
    assert inv.recover()["rounds"] == 1
    assert (inv._states(np.arange(1, 41)) == OrderState.EXPIRED).all()
    assert inv.stock.sum() == 30 * N_SKUS


def _bad_calls():
    ok = dict(sku=[0, 13], qty=[1, 1], offsets=[0, 2], order_id=[1], user_id=[1])
    return [
        ("not a batch", lambda inv: inv.reserve([1, 2])),
        ("sku out of range", lambda inv: inv.reserve(OrderBatch(**{**ok, "sku": [0, N_SKUS]}))),
        ("no order_id", lambda inv: inv.reserve(OrderBatch(**{**ok, "order_id": None}))),
        ("no user_id", lambda inv: inv.reserve(OrderBatch(**{**ok, "user_id": None}))),
        ("id too big", lambda inv: inv.reserve(OrderBatch(**{**ok, "order_id": [2**56]}))),
        ("negative user", lambda inv: inv.reserve(OrderBatch(**{**ok, "user_id": [-1]}))),
        ("user too big", lambda inv: inv.reserve(OrderBatch(**{**ok, "user_id": [2**62]}))),
        ("hold_until size", lambda inv: inv.reserve(OrderBatch(**ok), hold_until=[1, 2])),
        ("hold_until float", lambda inv: inv.reserve(OrderBatch(**ok), hold_until=[1.5])),
        ("threads", lambda inv: inv.reserve(OrderBatch(**ok), threads=0)),
        ("threads before ids", lambda inv: inv.reserve(OrderBatch(**{**ok, "order_id": None}), threads=-1)),
        ("reserve_one sku", lambda inv: inv.reserve_one(N_SKUS, 1, order_id=5, user_id=1)),
        ("reserve_one qty", lambda inv: inv.reserve_one(0, 0, order_id=5, user_id=1)),
        ("reserve_one id", lambda inv: inv.reserve_one(0, 1, order_id=-1, user_id=1)),
        ("reserve_one type", lambda inv: inv.reserve_one(0, 1.5, order_id=5, user_id=1)),
        ("confirm ids", lambda inv: inv.confirm([1, -2])),
        ("cancel ids", lambda inv: inv.cancel([[1]])),
        ("state_of ids", lambda inv: inv.state_of(["x"])),
        ("expire now", lambda inv: inv.expire("soon")),
        ("restock offer", lambda inv: inv.restock([0, N_SKUS], [1, 1])),
        ("restock qty", lambda inv: inv.restock([0], [-1])),
        ("restock sizes", lambda inv: inv.restock([0, 1], [1])),
        ("restock overflow", lambda inv: inv.restock([0], [2**63 - 1])),
        ("limit_used sku", lambda inv: inv.limit_used([1], [N_SKUS])),
    ]


def test_bad_input_same_errors_and_nothing_sent(cluster):
    inv = cluster(shards=2)
    one = kernel.Inventory([30] * N_SKUS, max_orders=20_000, limit_per_user=CAP, backend="cython")
    calls_before = [info["calls"] for info in inv.shard_info()]
    stock_before = inv.stock
    for name, call in _bad_calls():
        with pytest.raises((TypeError, ValueError)) as single:
            call(one)
        with pytest.raises(type(single.value)) as sharded:
            call(inv)
        assert str(sharded.value) == str(single.value), name
    assert [info["calls"] for info in inv.shard_info()] == calls_before  # no call reached a shard
    np.testing.assert_array_equal(inv.stock, stock_before)
    with pytest.raises(ValueError, match="shards must be"):
        ShardedInventory.create(inv.directory + "-bad", [1, 2], shards=0, max_orders=10)
    with pytest.raises(ValueError, match=r"sku_shard\[1\] = 5 is out of range \[0, 2\)"):
        ShardedInventory.create(inv.directory + "-bad", [1, 2], shards=2, sku_shard=[0, 5], max_orders=10)
    with pytest.raises(FileExistsError):
        ShardedInventory.create(inv.directory, [1, 2], shards=2, max_orders=10)
    with pytest.raises(FileNotFoundError, match="not a sharded inventory"):
        ShardedInventory.open(inv.directory + "-missing")
    with pytest.raises(LogBusy):
        ShardedInventory.open(inv.directory)  # coordinator "main" is alive in this process


def test_unreachable_shard_raises_in_bounded_time(cluster):
    inv = cluster(shards=2, sku_shard=np.arange(N_SKUS) // 12)
    impatient = ShardedInventory.open(inv.directory, coordinator="impatient", call_timeout_s=1)
    try:
        stall = impatient.actors[1].stall.remote(4)
        cart = OrderBatch(sku=[0, 12, 1], qty=[1, 1, 1], offsets=[0, 2, 3], order_id=[1, 2], user_id=[1, 1])
        with pytest.raises(ShardUnavailable, match="shard 1 did not answer within 1 s") as error:
            impatient.reserve(cart)
        assert error.value.shards == [1], str(error.value)
        ray.get(stall, timeout=TIMEOUT_S)
        assert impatient.recover()["rounds"] == 1  # the cart's round: cancelled once shard 1 answers
        assert inv.state_of([1]).tolist() == [OrderState.CANCELLED]
        assert inv.state_of([2]).tolist() == [OrderState.HELD]  # single-shard order on shard 0 stands
        assert inv.reserve(cart).tolist() == [Status.DUPLICATE, Status.DUPLICATE]  # the retry is safe
    finally:
        impatient.close()
    ray.kill(inv.actors[1], no_restart=True)  # gone for good (the kill lands asynchronously)
    give_up = time.monotonic() + TIMEOUT_S
    with pytest.raises(ShardUnavailable, match="shard 1 is unavailable"):
        for order_id in range(100, 10_000):
            assert time.monotonic() < give_up, "the killed shard kept answering"
            inv.reserve_one(12, 1, order_id=order_id, user_id=1)
    with pytest.raises(ShardUnavailable):
        inv.stock


def test_a_shard_checkpoints_beside_its_calls(cluster):
    """A checkpoint runs on the shard's maintenance thread: it completes
    while a call in the default group is still running (a stall of 20 s,
    where the checkpoint would otherwise queue behind it), and the shards
    go on answering afterwards, with a snapshot holding what they had."""
    inv = cluster(shards=2)
    assert inv.reserve(OrderBatch(sku=[0, 1], qty=[1, 1], order_id=[1, 2], user_id=[1, 2])).tolist() == \
        [Status.ACCEPTED, Status.ACCEPTED]
    stall = inv.actors[0].stall.remote(20)
    checkpoints = inv.checkpoint()
    assert all(seq > 0 for seq in checkpoints), checkpoints
    ready, _ = ray.wait([stall], timeout=0)
    assert not ready, "the checkpoint waited for the stalled call (the default group)"
    ray.get(stall, timeout=TIMEOUT_S)
    assert inv.state_of([1, 2]).tolist() == [OrderState.HELD, OrderState.HELD]


def test_decision_log(tmp_path):
    path = str(tmp_path / "c.log")
    log = DecisionLog(path)
    with pytest.raises(LogBusy):
        DecisionLog(path)
    a = log.begin(100, [1, 2, 3], [3, 3, 5])
    log.decide(a, [2])
    b = log.begin(200, [4], [6])
    c = log.begin(300, [5], [3])
    log.decide(c, [])
    log.end(c)
    log.close()
    with open(path, "ab") as f:
        f.write(b"\x4f\x4f\x43\x4b\x02\x00")  # a record torn by a crash
    log = DecisionLog(path)
    rounds = log.unfinished()
    assert [r.tx for r in rounds] == [a, b]
    assert rounds[0].committed.tolist() == [2] and rounds[0].masks.tolist() == [3, 3, 5]
    assert rounds[1].committed is None and rounds[1].deadline == 200
    assert log.begin(1, [9], [1]) == c + 1
    log.close()


def test_decision_log_fails_stop(tmp_path, monkeypatch):
    """An fsync error: the decision may or may not be on disk, so the log
    refuses every later record; reopened, it follows what is on disk."""
    import errno

    path = str(tmp_path / "c.log")
    log = DecisionLog(path)
    tx = log.begin(100, [1, 2], [3, 3])

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    with pytest.raises(LogFailed, match="Input/output error"):
        log.decide(tx, [1])
    monkeypatch.undo()
    with pytest.raises(LogFailed, match="failed earlier"):
        log.end(tx)
    log.close()
    again = DecisionLog(path)
    assert [(r.tx, r.committed.tolist()) for r in again.unfinished()] == [(tx, [1])]  # the write did land
    again.close()


def test_import_without_ray_says_how_to_install():
    code = textwrap.dedent("""
        import sys
        class NoRay:
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ImportError("No module named 'ray'")
        sys.meta_path.insert(0, NoRay())
        import kernel
        try:
            import kernel.cluster
        except ImportError as error:
            print(error)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'double11-kernel[ray]'" in out.stdout, out.stderr


def test_bench_cell_runs(ray_address, tmp_path):
    """The benchmark's cell (python -m kernel.cluster.bench) on a tiny batch."""
    from kernel.cluster.bench import run_cell, table

    row = run_cell("cross-shard", 2, 300, 1, str(tmp_path))
    assert 0 < row["cross"] < 1 and row["orders_per_s"] > 0 and 0 <= row["ray_share"] <= 1
    assert "cross-shard" in table([row])


def test_node_removed_from_a_two_node_cluster(ray_address, tmp_path):
    """Its own Ray cluster (ray.cluster_utils.Cluster) in a subprocess: the
    node both shards run on is removed mid-stream and a replacement joins;
    Ray restarts the shards there and they reopen their journals."""
    script = os.path.join(os.path.dirname(__file__), "cluster_node_removal.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path / "c")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == dict(placed_on_worker=[True, True], moved=[True, True], reopened=[True, True],
                         acknowledged_kept=True, accepted=found["accepted"], conserved=True, no_oversell=True,
                         duplicates=True, split_carts=0), found
    assert found["accepted"] > 0


def test_one_incarnation_of_a_shard_writes_its_journal(tmp_path, monkeypatch):
    """A new incarnation waits for the old one's lock (then fails, and Ray
    tries the restart again) instead of appending beside it."""
    from kernel.cluster import shard

    monkeypatch.setattr(shard, "OWNER_WAIT_S", 0.2)
    path = str(tmp_path / "shard-0.owner")
    old = shard._take_ownership(path)
    with pytest.raises(RuntimeError, match="still locked by another live incarnation"):
        shard._take_ownership(path)
    os.close(old)  # the old process died
    os.close(shard._take_ownership(path))
