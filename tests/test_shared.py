"""One inventory, many processes: POSIX shared memory and memory-mapped
files, reserved from lock-free by several processes at once, a worker killed
with SIGKILL mid-batch, and the errors for missing, foreign, closed and
incompatible segments."""

import multiprocessing
import os
import signal
import time
import uuid

import numpy as np
import pytest

import kernel
from kernel import OrderBatch, OrderState, Status
from kernel.invariants import check_tracked

from conftest import COMPILED_BACKENDS

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() and POSIX shared memory")
FORK = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
HOT_UNITS = 1000


@pytest.fixture
def name():
    """A fresh segment name, unlinked (and checked gone) afterwards."""
    segment = f"kernel-test-{uuid.uuid4().hex[:12]}"
    yield segment
    try:
        kernel.Inventory.attach(segment).unlink()
    except FileNotFoundError:
        pass
    assert not os.path.exists(f"/dev/shm/{segment}")


def _hot_sale(name, backend="auto"):
    # SKU 0 is the hot one; every user may hold at most 2 of it.
    return kernel.Inventory.create_shared(name, [HOT_UNITS, 50, 50], backend=backend, max_orders=20_000,
                                          limit_per_user=[2, kernel.NO_LIMIT, kernel.NO_LIMIT])


def _buyer(name, backend, worker, n_ids, start, results):
    """One worker process: every worker submits every id (so each id races in
    all of them), half one by one, half in batches."""
    inv = kernel.Inventory.attach(name, backend=backend, threads=2)
    start.wait(timeout=300)  # a sibling that died at start-up breaks the barrier, not this worker
    ids = np.arange(n_ids, dtype=np.int64)
    rng = np.random.default_rng(worker)
    ids = rng.permutation(ids)
    users = ids % 700
    statuses = {}
    one_by_one, batched = ids[: n_ids // 2], ids[n_ids // 2:]
    for order_id, user in zip(one_by_one.tolist(), users[: n_ids // 2].tolist()):
        statuses[order_id] = int(inv.reserve_one(0, 1, order_id=order_id, user_id=user))
    for chunk in np.array_split(np.arange(batched.size), 8):
        batch = OrderBatch(sku=np.zeros(chunk.size, np.int64), qty=np.ones(chunk.size, np.int64),
                           order_id=batched[chunk], user_id=users[n_ids // 2:][chunk])
        result = inv.reserve(batch)
        statuses.update(zip(batched[chunk].tolist(), result.status.tolist()))
    inv.close()
    results.put(statuses)


WORKER_MIXES = {f"4x{b}": [b] * 4 for b in COMPILED_BACKENDS}
WORKER_MIXES["mixed"] = [COMPILED_BACKENDS[i % len(COMPILED_BACKENDS)] for i in range(4)]


@pytest.mark.parametrize("backends", WORKER_MIXES.values(), ids=WORKER_MIXES.keys())
def test_four_processes_on_one_hot_sku(name, backends):
    inv = _hot_sale(name)
    n_ids = 3000
    start, results = FORK.Barrier(len(backends)), FORK.Queue()
    workers = [FORK.Process(target=_buyer, args=(name, b, w, n_ids, start, results)) for w, b in enumerate(backends)]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    accepted = [sum(a[i] == Status.ACCEPTED for a in answers) for i in range(n_ids)]
    # Each id is accepted in at most one process; every other process saw a duplicate.
    assert max(accepted) == 1
    assert sum(accepted) == HOT_UNITS  # 3000 ids for 1000 units: all sold, none oversold
    assert inv.stock.tolist() == [0, 50, 50]
    for i in range(n_ids):
        others = {a[i] for a in answers} - {Status.ACCEPTED}
        assert others <= ({Status.DUPLICATE} if accepted[i] else {Status.DUPLICATE, Status.OUT_OF_STOCK,
                                                                 Status.LIMIT_EXCEEDED})
    states = inv.state_of(np.arange(n_ids))
    assert np.count_nonzero(states == OrderState.HELD) == HOT_UNITS
    check_tracked(inv, [HOT_UNITS, 50, 50])  # includes: no user holds more than 2
    inv.unlink()


def _endless_carts(name, backend, ready):
    """Reserve 3-line carts in batches until killed."""
    inv = kernel.Inventory.attach(name, backend=backend, threads=2)
    rng = np.random.default_rng(os.getpid())
    next_id = 1_000_000 * (os.getpid() % 1000)
    while True:
        n = 2000
        batch = OrderBatch(sku=rng.integers(0, 3, 3 * n), qty=rng.integers(1, 3, 3 * n),
                           offsets=np.arange(0, 3 * n + 1, 3), order_id=np.arange(next_id, next_id + n),
                           user_id=rng.integers(0, 100, n))
        next_id += n
        try:
            inv.reserve(batch, hold_until=int(rng.integers(0, 10)))
        except kernel.CapacityError:  # the id table is full: stay alive, the test kills us
            time.sleep(0.01)
        # Expiries give holds back entry by entry: a kill can land inside
        # one too, and recover() must finish that give-back.
        inv.expire(int(rng.integers(0, 10)))
        ready.set()  # after the first batch: the kill below lands while it really reserves
        time.sleep(0.0005)  # pace the ids (the table holds 2M; a batch takes about a millisecond)


@pytest.mark.parametrize("kill_after", [0.05, 0.2, 0.5])
def test_a_worker_killed_mid_batch_leaves_no_half_order(name, compiled_backend, kill_after):
    stock = [10**6, 10**6, 10**6]
    inv = kernel.Inventory.create_shared(name, stock, max_orders=2_000_000, limit_per_user=10**6,
                                         max_user_skus=1000)
    workers, ready = [], []
    for _ in range(2):
        event = FORK.Event()
        worker = FORK.Process(target=_endless_carts, args=(name, compiled_backend, event))
        worker.start()
        workers.append(worker)
        ready.append(event)
    for event in ready:
        assert event.wait(60)
    time.sleep(kill_after)
    # Both are still reserving (a worker that died of an error would make
    # this test check nothing).
    assert all(worker.is_alive() for worker in workers), [worker.exitcode for worker in workers]
    os.kill(workers[0].pid, signal.SIGKILL)  # mid-batch, at an arbitrary instruction
    workers[0].join(timeout=60)
    assert not workers[0].is_alive()
    # The survivor goes on reserving from the same stock after the kill.
    time.sleep(0.1)
    workers[1].terminate()
    workers[1].join(timeout=60)
    assert workers[1].exitcode is not None, "the survivor ignored SIGTERM"
    # While nothing runs: every HELD order is whole, nothing is oversold, and
    # recover() finishes what the dead left (unfinished reserves and
    # unfinished give-backs of expiries).  Each killed process (both were
    # killed mid-call: SIGKILL, then SIGTERM) may have lost one line's units
    # per kernel thread it ran (2 threads x 2 units at most here), see
    # Inventory.recover.
    inv.recover()
    assert inv.state.counters[kernel.codes.ORDERS_LEFT] < 2_000_000, "the workers reserved nothing"
    check_tracked(inv, stock, may_have_lost=2 * 2 * 2)
    inv.unlink()


def test_attach_sees_the_same_state_and_cleanup_removes_it(name):
    creator = _hot_sale(name)
    other = kernel.Inventory.attach(name)
    assert other.kind == "shared" and other.name == name and other.tracks_orders and other.has_limits
    assert creator.reserve_one(0, 2, order_id=1, user_id=5) == Status.ACCEPTED
    assert other.stock.tolist() == [HOT_UNITS - 2, 50, 50]
    assert other.reserve_one(0, 1, order_id=1, user_id=6) == Status.DUPLICATE
    assert other.reserve_one(0, 1, order_id=2, user_id=5) == Status.LIMIT_EXCEEDED
    other.cancel([1])
    assert creator.stock.tolist() == [HOT_UNITS, 50, 50]
    other.close()
    creator.unlink()
    with pytest.raises(FileNotFoundError, match="no shared inventory"):
        kernel.Inventory.attach(name)
    assert creator.reserve_one(0, 1, order_id=3, user_id=1) == Status.ACCEPTED  # still mapped here
    creator.close()


def _reserve_in_file(path, backend):
    inv = kernel.Inventory.open_mapped(path, backend=backend)
    status = inv.reserve(OrderBatch(sku=[0, 1], qty=[1, 1], order_id=[10, 11]), hold_until=100).status.tolist()
    inv.flush()
    inv.close()
    return status


def test_a_mapped_file_survives_a_restart_of_every_worker(tmp_path, compiled_backend):
    backend = compiled_backend
    path = tmp_path / "sale.inventory"
    inv = kernel.Inventory.create_mapped(path, [3, 3], backend=backend, max_orders=100)
    assert inv.reserve_one(0, 2, order_id=1) == Status.ACCEPTED
    inv.close()
    with FORK.Pool(1) as pool:  # a worker that comes and goes
        assert pool.apply(_reserve_in_file, (path, backend)) == [Status.ACCEPTED, Status.ACCEPTED]
    reopened = kernel.Inventory.open_mapped(path, backend=backend)
    assert reopened.kind == "file"
    assert reopened.stock.tolist() == [0, 2]
    assert reopened.state_of([1, 10, 11]).tolist() == [OrderState.HELD] * 3
    assert reopened.reserve_one(1, 1, order_id=10) == Status.DUPLICATE
    assert reopened.expire(100).tolist() == [10, 11]
    assert reopened.stock.tolist() == [1, 3]
    check_tracked(reopened, [3, 3])
    reopened.close()


def test_segment_errors_are_clear(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="no shared inventory"):
        kernel.Inventory.attach(name)
    with pytest.raises(ValueError, match="name"):
        kernel.Inventory.create_shared("bad/name", [1])
    with pytest.raises(TypeError, match="exactly one of stock or offers"):
        kernel.Inventory.create_shared(name, [1], offers=([0], [1], [1]))
    with pytest.raises(ValueError, match="'reference' is the single-process spec"):
        kernel.Inventory.create_shared(name, [1], backend="reference")
    assert not os.path.exists(f"/dev/shm/{name}")  # a refused create leaves nothing behind
    inv = kernel.Inventory.create_shared(name, [1], max_orders=4)
    with pytest.raises(FileExistsError, match="already exists"):
        kernel.Inventory.create_shared(name, [5])
    assert kernel.Inventory.attach(name).stock.tolist() == [1]  # the refused create changed nothing
    with pytest.raises(ValueError, match="'reference' is the single-process spec"):
        kernel.Inventory.attach(name, backend="reference")
    inv.close()
    with pytest.raises(ValueError, match="inventory: is closed"):
        inv.reserve(OrderBatch(sku=[0], qty=[1], order_id=[1]))
    with pytest.raises(ValueError, match="inventory: is closed"):
        inv.reserve_one(0, 1, order_id=1)
    inv.close()  # closing twice is harmless
    kernel.Inventory.attach(name).unlink()

    foreign = tmp_path / "foreign"
    foreign.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="not a kernel inventory"):
        kernel.Inventory.open_mapped(foreign)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"x" * 10)
    with pytest.raises(ValueError, match="too small"):
        kernel.Inventory.open_mapped(tiny)
    real = tmp_path / "real"
    kernel.Inventory.create_mapped(real, [1, 2], max_orders=4).close()
    data = bytearray(real.read_bytes())
    data[8:16] = (99).to_bytes(8, "little")  # another layout version
    (tmp_path / "future").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="layout version 99"):
        kernel.Inventory.open_mapped(tmp_path / "future")
    (tmp_path / "cut").write_bytes(real.read_bytes()[:200])
    with pytest.raises(ValueError, match="header and size disagree"):
        kernel.Inventory.open_mapped(tmp_path / "cut")
    with pytest.raises(FileExistsError, match="already exists"):
        kernel.Inventory.create_mapped(real, [7])
    assert kernel.Inventory.open_mapped(real).stock.tolist() == [1, 2]
