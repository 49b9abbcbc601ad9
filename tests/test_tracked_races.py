"""Races of tracked orders between Python threads (more of them than cores),
each call itself on several kernel threads: confirm vs expire, cancel vs
reserve, one id submitted everywhere at once, per-user limits under
contention.  Invariants are checked after every run.  (Compiled backends
only: the reference is the serial spec, not thread-safe.)"""

import threading

import numpy as np
import pytest

import kernel
from kernel import OrderBatch, OrderState, Outcome, Status
from kernel.invariants import check_tracked

N_THREADS = 8  # > the 2 cores of CI on purpose


def run_together(*jobs):
    """Run the callables on their own threads, released at once; re-raise
    the first error."""
    start = threading.Barrier(len(jobs))
    errors = []

    def wrap(job):
        try:
            start.wait(timeout=120)
            job()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive(), "a racing thread did not finish in 10 minutes"
    if errors:
        raise errors[0]


def test_one_id_everywhere_is_accepted_once(compiled_backend, threads):
    inv = kernel.Inventory([100_000], backend=compiled_backend, threads=threads, max_orders=10_000)
    ids = np.arange(2000)
    answers = [None] * N_THREADS

    def submit(k):
        def job():
            mine = np.random.default_rng(k).permutation(ids)
            if k % 2:
                answers[k] = dict(zip(mine.tolist(), inv.reserve(OrderBatch(np.zeros(ids.size, np.int64),
                                                                            np.ones(ids.size, np.int64),
                                                                            order_id=mine)).status.tolist()))
            else:
                answers[k] = {i: int(inv.reserve_one(0, 1, order_id=i)) for i in mine[:500].tolist()}
        return job

    run_together(*[submit(k) for k in range(N_THREADS)])
    for i in ids.tolist():
        got = [a[i] for a in answers if i in a]
        assert got.count(Status.ACCEPTED) == 1 and set(got) <= {Status.ACCEPTED, Status.DUPLICATE}
    assert inv.stock.tolist() == [100_000 - ids.size]
    check_tracked(inv, [100_000])


def test_per_user_limit_holds_under_contention(compiled_backend, threads):
    inv = kernel.Inventory([10**6], backend=compiled_backend, threads=threads, max_orders=50_000, limit_per_user=3)
    n_users = 50

    def buyer(k):
        def job():
            rng = np.random.default_rng(k)
            for round_ in range(4):
                n = 500
                ids = k * 10_000 + round_ * n + np.arange(n)
                inv.reserve(OrderBatch(np.zeros(n, np.int64), rng.integers(1, 3, n), order_id=ids,
                                       user_id=rng.integers(0, n_users, n)))
        return job

    run_together(*[buyer(k) for k in range(N_THREADS)])
    used = inv.limit_used(np.arange(n_users), np.zeros(n_users, np.int64))
    assert used.max() <= 3 and used.sum() == 10**6 - inv.stock[0]
    assert (used >= 2).all()  # every user got near the cap: contention really happened
    check_tracked(inv, [10**6])


def test_confirm_racing_expiry_has_exactly_one_winner(compiled_backend, threads):
    inv = kernel.Inventory([5000], backend=compiled_backend, threads=threads, max_orders=10_000)
    ids = np.arange(5000)
    inv.reserve(OrderBatch(np.zeros(ids.size, np.int64), np.ones(ids.size, np.int64), order_id=ids), hold_until=1)
    confirmed, expired = [], []

    def confirmer(part):
        return lambda: confirmed.append(ids[part][inv.confirm(ids[part]) == Outcome.DONE])

    def expirer():
        expired.append(inv.expire(1))

    parts = np.array_split(np.random.default_rng(0).permutation(ids.size), N_THREADS - 2)
    run_together(*[confirmer(p) for p in parts], expirer, expirer)
    won_by_confirm, won_by_expiry = np.concatenate(confirmed), np.concatenate(expired)
    assert np.intersect1d(won_by_confirm, won_by_expiry).size == 0
    assert np.union1d(won_by_confirm, won_by_expiry).tolist() == ids.tolist()
    states = inv.state_of(ids)
    assert (states[won_by_confirm] == OrderState.CONFIRMED).all()
    assert (states[won_by_expiry] == OrderState.EXPIRED).all()
    assert inv.stock.tolist() == [won_by_expiry.size]  # each expiry gave back exactly once
    check_tracked(inv, [5000])


def test_cancel_racing_reserve_never_leaves_a_hold(compiled_backend, threads):
    """Every id is both reserved and cancelled, in any interleaving: before
    (remembered), during (the reserve undoes itself) or after (given back).
    Whatever happened, nothing stays held and all stock comes back."""
    inv = kernel.Inventory([3000, 3000], backend=compiled_backend, threads=threads, max_orders=20_000, limit_per_user=5)
    ids = np.arange(6000)
    rng = np.random.default_rng(1)
    sku, users = rng.integers(0, 2, ids.size), rng.integers(0, 300, ids.size)
    parts = np.array_split(rng.permutation(ids.size), N_THREADS // 2)
    answers = []

    def reserver(part):
        return lambda: answers.append(inv.reserve(OrderBatch(sku[part], np.ones(part.size, np.int64),
                                                             order_id=ids[part], user_id=users[part])))

    def canceller(part):
        return lambda: inv.cancel(ids[part[::-1]])

    run_together(*[reserver(p) for p in parts], *[canceller(p) for p in parts])
    states = inv.state_of(ids)
    assert np.isin(states, [OrderState.CANCELLED, OrderState.CANCELLED_EARLY, OrderState.REFUSED]).all()
    assert inv.stock.tolist() == [3000, 3000]
    assert (inv.limit_used(users, sku) == 0).all()
    check_tracked(inv, [3000, 3000])


def test_restock_during_traffic_is_never_lost(compiled_backend, threads):
    inv = kernel.Inventory([0], backend=compiled_backend, threads=threads, max_orders=100_000)

    def restocker():
        for _ in range(200):
            inv.restock(0, 5)

    def buyer(k):
        return lambda: [inv.reserve(OrderBatch(np.zeros(100, np.int64), np.ones(100, np.int64),
                                               order_id=k * 10_000 + r * 100 + np.arange(100)))
                        for r in range(10)]

    run_together(restocker, restocker, *[buyer(k) for k in range(N_THREADS - 2)])
    check_tracked(inv, [0], restocked=np.array([2000]))
