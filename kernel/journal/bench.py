"""Benchmarks of durable inventories (``python -m kernel.journal bench``)
and the ``durable`` mode of the workload runner.

* :func:`durable_round`: a registry workload's tracked orders reserved in
  batches of ``batch_size`` on a durable inventory (one record and, under
  ``"batch"``, one group flush per batch), checked like every round.
* :func:`reserve_one_threads`: ``reserve_one`` from several Python threads
  at once (group commit), orders/s and per-call latency percentiles.
"""

import os
import shutil
import tempfile
import threading
import time

import numpy as np

from ..inventory import Inventory
from ..invariants import InvariantViolation, check_tracked
from ..orders import OrderBatch
from ..codes import OrderState, Status
from ..bench.workloads import TRACKED_LIMIT

DEFAULT_BATCH = 10_000


def _tracked_options(case, sales=1):
    return dict(max_orders=max(1, sales * case.n_orders), limit_per_user=TRACKED_LIMIT,
                max_user_skus=max(1, sales * case.orders.n_lines))


def _batches(orders, batch_size):
    """The tracked batch cut into consecutive batches of ``batch_size`` orders."""
    starts = list(range(0, orders.n_orders, batch_size)) + [orders.n_orders]
    line_start = orders.line_start
    out = []
    for a, b in zip(starts, starts[1:]):
        la, lb = int(line_start[a]), int(line_start[b])
        offsets = None if orders.offsets is None else np.asarray(line_start[a:b + 1]) - la
        out.append(OrderBatch(orders.sku[la:lb], orders.qty[la:lb], offsets,
                              None if orders.max_price is None else orders.max_price[la:lb],
                              order_id=orders.order_id[a:b], user_id=orders.user_id[a:b]))
    return out


def _earlier_sale(inv, batches, n_orders, threads, checkpoints=False):
    """The same batches under ids ``n_orders`` higher, held until 0, then
    expired: every unit and cap count given back, the order table holding
    one sale's ended orders (a long-running inventory's).  ``checkpoints``:
    one after the sale and one after the expiry, so the segment that holds
    the sale's records is the spare the next records recycle."""
    for batch in batches:
        inv.reserve(OrderBatch(batch.sku, batch.qty, batch.offsets, batch.max_price,
                               order_id=batch.order_id + n_orders, user_id=batch.user_id), threads=threads,
                    hold_until=0)
    if checkpoints:
        inv.checkpoint()
    inv.expire(0, threads=threads)
    if checkpoints:
        inv.checkpoint()


def _make(case, backend, threads, directory, fsync, interval_ms, sales=1):
    options = dict(backend=backend, threads=threads, **_tracked_options(case, sales))
    if directory is None:
        if case.offer_sku is None:
            return Inventory(case.stock, **options)
        return Inventory.from_offers(case.offer_sku, case.stock, case.price, case.n_skus, **options)
    if case.offer_sku is None:
        return Inventory.create_durable(directory, case.stock, fsync=fsync, interval_ms=interval_ms, **options)
    return Inventory.create_durable(directory, offers=(case.offer_sku, case.stock, case.price), n_skus=case.n_skus,
                                    fsync=fsync, interval_ms=interval_ms, **options)


def durable_round(case, backend="auto", threads=None, *, batch_size=DEFAULT_BATCH, fsync="batch", interval_ms=10,
                  durable=True, where=None, callers=1, room=0, after_checkpoint=False):
    """One checked round: ``(seconds, accepted, threads ran on, journal stats)``.

    ``durable=False`` runs the same batches on a plain tracked inventory (the
    baseline).  ``where``: the parent directory of the journal (default: the
    system's temporary directory; it must be a real disk for fsync to mean
    anything).  ``callers``: Python threads taking the batches in turn (a
    service's request threads): with more than one, one batch's fsync
    overlaps the next batch's kernel (group commit).  ``room``: bytes of
    journal zeroed ahead (:meth:`~kernel.journal.DurableInventory.make_room`)
    before the timed calls, as a service would before a peak; 0: only the
    room every segment starts with (the steady state).
    ``after_checkpoint``: the timed batches follow an earlier sale of the
    same orders (other ids, held, then expired: the inventory's capacity is
    twice the orders) and, if durable, a
    :meth:`~kernel.journal.DurableInventory.checkpoint` after the sale and
    one after the expiry, none of it timed: a journal that has run for a
    while, whose records go into the sale's segment, recycled
    (``SegmentWriter._take_spare``).  Its plain baseline runs the same
    earlier sale.
    """
    batches = _batches(case.tracked_orders(), batch_size)
    parent = tempfile.mkdtemp(prefix="kernel-durable-", dir=where)
    try:
        inv = _make(case, backend, threads, os.path.join(parent, "inv") if durable else None, fsync, interval_ms,
                    sales=2 if after_checkpoint else 1)
        if after_checkpoint:
            _earlier_sale(inv, batches, case.n_orders, threads, checkpoints=durable)
        if room:
            inv.make_room(room, timeout=600)
        initial = inv.stock.copy()
        accepted, ran_on = [], set()
        queue = iter(batches)
        taking = threading.Lock()
        errors = []

        def caller():
            try:
                while True:
                    with taking:
                        batch = next(queue, None)
                    if batch is None:
                        return
                    result = inv.reserve(batch, threads=threads)
                    accepted.append(result.n_accepted)
                    ran_on.add(result.threads)
            except BaseException as error:
                errors.append(error)

        before = inv.journal_stats() if durable else {}  # the figures are the timed calls' alone
        t0 = time.perf_counter()
        if callers == 1:
            caller()
        else:
            workers = [threading.Thread(target=caller) for _ in range(callers)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout=600)
        if errors:
            raise errors[0]
        accepted = sum(accepted)
        if durable and fsync != "batch":
            inv.sync()  # the round ends with everything on disk, whatever the policy
        elapsed = time.perf_counter() - t0
        check_tracked(inv, initial)
        stats = inv.journal_stats() if durable else {}
        for key in ("fsyncs", "fsync_seconds", "bytes"):
            if key in stats:
                stats[key] -= before[key]
        live = {name: array.copy() for name, array in inv.state._asdict().items()} if after_checkpoint else None
        inv.close()
        if durable and after_checkpoint:  # the recycled segment's records rebuild exactly the live state
            with Inventory.open_durable(inv.directory, backend=backend) as reopened:
                for name, array in reopened.state._asdict().items():
                    if not np.array_equal(array, live[name]):
                        raise InvariantViolation(f"durable_round after a checkpoint: {name} rebuilt from the "
                                                 f"journal differs from the live state")
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    return elapsed, accepted, max(ran_on, default=1), stats


def _require_state(inv, ids, expected_stock, when):
    """Raise :class:`~kernel.invariants.InvariantViolation` unless every id
    of ``ids`` is HELD and the stock is ``expected_stock`` (``when`` names the
    moment in the message)."""
    held = inv.state_of(ids) == OrderState.HELD
    if not held.all():
        raise InvariantViolation(f"reserve_one_threads, {when}: order {int(ids[held.argmin()])} is not HELD")
    wrong = inv.stock != expected_stock
    if wrong.any():
        sku = int(wrong.argmax())
        raise InvariantViolation(f"reserve_one_threads, {when}: SKU {sku} has {int(inv.stock[sku])} units, "
                                 f"expected {int(expected_stock[sku])}")


def reserve_one_threads(n_threads=8, calls_per_thread=500, *, backend="auto", fsync="batch", where=None):
    """``reserve_one`` from ``n_threads`` Python threads on a durable
    inventory: ``{"orders_per_s", "p50_us", "p99_us", "fsyncs", ...}``.

    Checked like every round: the live state after the run, then the state
    :meth:`Inventory.open_durable` rebuilds from the journal, must hold every
    order and have each SKU down by exactly its orders
    (:class:`~kernel.invariants.InvariantViolation` if not).
    ``fsync_ms_each`` is wall time around ``os.fdatasync``, the GIL's
    re-acquisition after it included: with many threads running Python it
    grows with them, the disk's part does not."""
    parent = tempfile.mkdtemp(prefix="kernel-durable-", dir=where)
    try:
        n = n_threads * calls_per_thread
        n_skus = 64
        initial = np.full(n_skus, n, np.int64)  # nothing sells out
        directory = os.path.join(parent, "inv")
        inv = Inventory.create_durable(directory, initial, backend=backend, max_orders=n, fsync=fsync)
        latency = np.zeros(n)
        errors = []
        start = threading.Barrier(n_threads + 1, timeout=60)

        def work(t):
            try:
                start.wait()
                for i in range(calls_per_thread):
                    k = t * calls_per_thread + i
                    t0 = time.perf_counter()
                    status = inv.reserve_one(k % n_skus, 1, order_id=k)
                    latency[k] = time.perf_counter() - t0
                    assert status == Status.ACCEPTED
            except BaseException as error:
                errors.append(error)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join(timeout=600)
        elapsed = time.perf_counter() - t0
        if errors:
            raise errors[0]
        # The timed run's result, checked before its figure counts: every id
        # held once, each SKU down by exactly its orders, the whole state
        # consistent; then what a restart rebuilds from the journal must be
        # that same state (each call returned only once its record was
        # durable, or written, for the other policies, before the close).
        ids = np.arange(n, dtype=np.int64)
        expected = initial - np.bincount(ids % n_skus, minlength=n_skus)
        check_tracked(inv, initial)
        _require_state(inv, ids, expected, "after the run")
        stats = inv.journal_stats()
        inv.close()
        with Inventory.open_durable(directory, backend=backend, fsync=fsync) as reopened:
            _require_state(reopened, ids, expected, "rebuilt from the journal")
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    return {"threads": n_threads, "calls": n, "orders_per_s": n / elapsed, "p50_us": np.percentile(latency, 50) * 1e6,
            "p99_us": np.percentile(latency, 99) * 1e6, "fsyncs": stats["fsyncs"],
            "fsync_ms_each": 1e3 * stats["fsync_seconds"] / max(1, stats["fsyncs"])}


def main(workload="uniform", scale=0.1, backend="auto", threads=None, batch_sizes=(1_000, 10_000, 100_000),
         policies=("batch", "interval", "none"), rounds=3, where=None, out=print, callers=(1, 2)):
    """Print the durable-vs-plain table and the reserve_one thread table.

    Rounds are interleaved (each round runs plain, then every durable path,
    one after the other), so a change in the machine's load hits them alike;
    ``vs plain`` is the median over rounds of that round's plain time over
    the path's time, with the lowest and highest in brackets.  With
    ``"batch"``, a "room ahead" row times one caller into room made before
    the timed calls (:meth:`~kernel.journal.DurableInventory.make_room`, a
    quarter more than the same round's one-caller ``"batch"`` run wrote): a
    burst into a journal prepared for it, where the other rows are the
    steady state of a new journal (the room its first segment starts with,
    as big as the state up to 64 MiB, then what the writer keeps by
    itself).  And an "after ckpt" row: one caller
    whose records go into the segment a checkpoint recycled, after an
    earlier sale of the same orders (``durable_round(after_checkpoint=True)``:
    the steady state of a journal that has run for a while), against its own
    plain baseline with the same earlier sale ("tracked, after a sale").
    """
    from ..bench.workloads import make_case

    case = make_case(workload, scale)
    out(f"workload {workload} scale {scale}: {case.n_orders} tracked orders, backend {backend}, kernel threads "
        f"{threads or 'all'}, journal under {where or tempfile.gettempdir()}; {rounds} interleaved rounds, medians")
    out(f"{'path':<26} {'batch':>7} {'orders/s':>12} {'vs plain (min-max)':>20} {'fsyncs':>7} {'fsync ms':>9} "
        f"{'MB':>7} {'B/order':>7}")
    paths = [(policy, n) for policy in policies for n in (callers if policy == "batch" else (1,))]
    ahead = ("batch", 1) in paths  # then also the "after a checkpoint" row and its own plain baseline
    # One untimed round of every path first, on a tenth of the workload:
    # a process's first durable round loads the capture's compiled passes
    # (Numba's cache) and first runs every code path, which a running
    # service has long done.  Without it the first round's ratio came out
    # 0.07x against 0.48x for the median (7 rounds, batch 10,000).
    warm = make_case(workload, scale / 10)
    warm_size = min(max(batch_sizes), warm.n_orders)
    durable_round(warm, backend, threads, batch_size=warm_size, where=where, durable=False)
    for policy, n in paths:
        durable_round(warm, backend, threads, batch_size=warm_size, where=where, fsync=policy, callers=n)
    if ahead:
        durable_round(warm, backend, threads, batch_size=warm_size, where=where, room=1 << 20)
        for durable in (False, True):
            durable_round(warm, backend, threads, batch_size=warm_size, where=where, durable=durable,
                          after_checkpoint=True)
    extra = ["ahead", "plain after", "after"] if ahead else []
    for size in batch_sizes:
        runs = {path: [] for path in [None] + paths + extra}
        for _ in range(rounds):
            runs[None].append(durable_round(case, backend, threads, batch_size=size, where=where, durable=False))
            for policy, n in paths:
                runs[(policy, n)].append(durable_round(case, backend, threads, batch_size=size, where=where,
                                                       fsync=policy, callers=n))
            if ahead:
                room = int(1.25 * runs[("batch", 1)][-1][3]["bytes"]) + (1 << 20)
                runs["ahead"].append(durable_round(case, backend, threads, batch_size=size, where=where, room=room))
                for path, durable in (("plain after", False), ("after", True)):
                    runs[path].append(durable_round(case, backend, threads, batch_size=size, where=where,
                                                    durable=durable, after_checkpoint=True))
        plain = [r[0] for r in runs[None]]
        out(f"{'tracked (not durable)':<26} {size:>7} {case.n_orders / np.median(plain):>12,.0f} {'1.00x':>20}")
        for path in paths + extra:
            seconds = [r[0] for r in runs[path]]
            if path == "plain after":
                out(f"{'tracked, after a sale':<26} {size:>7} {case.n_orders / np.median(seconds):>12,.0f} "
                    f"{'1.00x':>20}")
                continue
            baseline = [r[0] for r in runs["plain after"]] if path == "after" else plain
            ratios = [p / d for p, d in zip(baseline, seconds)]
            stats = runs[path][int(np.argsort(seconds)[len(seconds) // 2])][3]  # the median round's
            if path == "ahead":
                label = "durable batch, room ahead"
            elif path == "after":
                label = "durable batch, after ckpt"
            else:
                policy, n = path
                label = f"durable {policy}" + (f", {n} callers" if n > 1 else "")
            spread = f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            out(f"{label:<26} {size:>7} {case.n_orders / np.median(seconds):>12,.0f} {spread:>20} "
                f"{stats['fsyncs']:>7} {1e3 * stats['fsync_seconds']:>9.1f} {stats['bytes'] / 1e6:>7.1f} "
                f"{stats['bytes'] / case.n_orders:>7.1f}")
            if path == "after":  # its untimed checkpoints (the stats before the timed calls)
                held = [r[3]["checkpoint_pause_seconds"] / r[3]["checkpoints"] for r in runs[path]]
                took = [r[3]["checkpoint_seconds"] / r[3]["checkpoints"] for r in runs[path]]
                out(f"{'  its checkpoints':<26} {size:>7}   calls held back {1e3 * np.median(held):.0f} ms of "
                    f"{1e3 * np.median(took):.0f} ms each (medians)")
    out("")
    out(f"{'reserve_one':<26} {'threads':>7} {'orders/s':>12} {'p50 us':>9} {'p99 us':>9} {'fsyncs':>7} "
        f"{'ms/fsync':>9}")
    for n_threads, calls in ((1, 400), (8, 400)):
        r = reserve_one_threads(n_threads, calls, backend=backend, where=where)
        out(f"{'durable batch':<26} {n_threads:>7} {r['orders_per_s']:>12,.0f} {r['p50_us']:>9.0f} "
            f"{r['p99_us']:>9.0f} {r['fsyncs']:>7} {r['fsync_ms_each']:>9.2f}")
