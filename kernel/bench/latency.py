"""Latency: per-batch and per-call, closed and open loop.

* **Per batch**: a workload served as consecutive batches of
  ``batch_orders`` orders on one inventory (as a service that batches its
  requests would); each ``inv.reserve(batch)`` call is timed, every batch
  checked.
* **Per call, closed loop**: ``inv.reserve_one`` from 1 and several Python
  threads, each call timed (``perf_counter_ns`` around the call).
* **Per call, open loop**: one sender with a fixed offered rate: call ``i``
  is due at ``t0 + i / rate`` and its latency is measured from that
  intended time, so a slow call also counts against the calls queued behind
  it (no coordinated omission).

Every figure goes into a :class:`Histogram`: HdrHistogram-style buckets
(128 linear sub-buckets per power of two: any recorded value is off by at
most 1/128 = 0.8%), bounded in size whatever the number of samples.
"""

import math
import threading
import time

import numpy as np

from ..inventory import Inventory
from ..invariants import check_run, check_tracked
from ..orders import OrderBatch
from ..codes import OrderState

__all__ = ["Histogram", "batch_latency", "reserve_one_latency", "open_loop_latency", "measure_all",
           "PERCENTILES"]

PERCENTILES = (50, 90, 99, 99.9, 99.99)
_SUB_BITS = 7  # 128 sub-buckets per power of two
_HALF, _LINEAR = 1 << _SUB_BITS, 2 << _SUB_BITS


class Histogram:
    """Counts of non-negative integer values (nanoseconds) in log-linear buckets."""

    def __init__(self, counts=None):
        self.counts = {} if counts is None else {int(k): int(v) for k, v in counts.items()}
        self.max = max((self.value_of(k) for k in self.counts), default=0)
        self.exact_max = None

    @staticmethod
    def bucket_of(values):
        """Values below 256 have a bucket each; above, [2^k, 2^(k+1)) is cut
        into 128 equal sub-buckets."""
        v = np.maximum(np.asarray(values, np.int64), 0)
        _, e = np.frexp(np.maximum(v, 1).astype(np.float64))  # v < 2^e
        shift = np.maximum(e.astype(np.int64) - 1 - _SUB_BITS, 0)
        return np.where(shift == 0, v, _LINEAR + (shift - 1) * _HALF + (v >> shift) - _HALF)

    @staticmethod
    def value_of(bucket):
        """The largest value of ``bucket`` (so percentiles never under-report)."""
        bucket = int(bucket)
        if bucket < _LINEAR:
            return bucket
        shift, sub = divmod(bucket - _LINEAR, _HALF)
        return ((_HALF + sub + 1) << (shift + 1)) - 1

    def record(self, values):
        values = np.asarray(values, np.int64)
        if values.size == 0:
            return self
        keys, counts = np.unique(self.bucket_of(values), return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist()):
            self.counts[k] = self.counts.get(k, 0) + c
        top = int(values.max())
        self.exact_max = top if self.exact_max is None else max(self.exact_max, top)
        self.max = max(self.max, top)
        return self

    def merge(self, other):
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        self.max = max(self.max, other.max)
        return self

    @property
    def count(self):
        return sum(self.counts.values())

    def percentile(self, p):
        """The value at or below which ``p`` percent of the samples lie."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(total * p / 100))
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= rank:
                return min(self.value_of(k), self.max)
        return self.max

    def summary(self):
        """``{'count', 'p50', ..., 'max'}`` in nanoseconds; percentiles that
        need more samples than were taken (p99.99 of 1,000) are left out."""
        out = {"count": self.count}
        for p in PERCENTILES:
            if self.count * (100 - p) >= 100 - 1e-9:  # enough samples for this percentile
                out[f"p{p:g}"] = self.percentile(p)
        out["max"] = self.max
        return out

    def as_dict(self):
        return {"counts": {str(k): v for k, v in sorted(self.counts.items())}, **self.summary()}


def _slice(orders, o0, o1):
    """Orders ``o0:o1`` of a batch as a batch of their own."""
    start = orders.line_start
    l0, l1 = int(start[o0]), int(start[o1])
    offsets = None if orders.one_line_per_order else start[o0:o1 + 1] - l0
    pick = lambda a: None if a is None else a[o0:o1]  # noqa: E731
    return OrderBatch(orders.sku[l0:l1], orders.qty[l0:l1], offsets,
                      None if orders.max_price is None else orders.max_price[l0:l1],
                      order_id=pick(orders.order_id), user_id=pick(orders.user_id))


def batch_latency(case, backend, mode="concurrent", threads=None, batch_orders=1000, max_batches=1000):
    """Per-batch latency of ``case`` served as consecutive batches on one
    inventory: ``{'histogram', 'batches', 'batch_orders', ...}``."""
    tracked = mode == "tracked"
    orders = case.tracked_orders() if tracked else case.orders
    n_batches = max(1, min(max_batches, orders.n_orders // batch_orders))
    batches = [_slice(orders, k * batch_orders, min(orders.n_orders, (k + 1) * batch_orders))
               for k in range(n_batches)]
    # Warm-up (Numba compile or cache load) on a throw-away inventory.
    case.inventory(backend, threads, tracked=tracked).reserve(batches[0], ordered=mode == "ordered")
    inv = case.inventory(backend, threads, tracked=tracked)
    initial = inv.stock.copy()
    ns = np.empty(n_batches, np.int64)
    for k, batch in enumerate(batches):
        before = inv.stock.copy()
        t0 = time.perf_counter_ns()
        result = inv.reserve(batch, ordered=mode == "ordered")
        ns[k] = time.perf_counter_ns() - t0
        check_run(inv, batch, result, before)
    if tracked:
        check_tracked(inv, initial)
    return {"workload": case.name, "backend": backend, "mode": mode, "threads": threads,
            "batch_orders": batch_orders, "batches": n_batches, "histogram": Histogram().record(ns).as_dict()}


def _reserve_one_inventory(backend, calls):
    return Inventory([calls], backend=backend, max_orders=2 * calls, limit_per_user=8)


def _check_one(inv, calls):
    """Every single-unit call accepted: the stock is gone, each id held."""
    assert inv.stock.tolist() == [0], f"stock {inv.stock.tolist()} after {calls} single-unit calls"
    held = int(np.count_nonzero(inv.state_of(np.arange(calls)) == OrderState.HELD))
    assert held == calls, f"{held} of {calls} orders held"
    check_tracked(inv, [calls])


def reserve_one_latency(backend, calls=50_000, threads=1):
    """Closed loop: ``threads`` Python threads each call ``inv.reserve_one``
    back to back (``calls`` in all), every call timed."""
    inv = _reserve_one_inventory(backend, calls)
    inv.reserve_one(0, 0 + 1, order_id=calls + 1, user_id=10**9)  # warm-up (Numba compile), then give it back
    inv.cancel([calls + 1])
    per = [range(t, calls, threads) for t in range(threads)]
    out = [np.empty(len(r), np.int64) for r in per]
    barrier = threading.Barrier(threads)

    def work(t):
        reserve_one, clock, lat = inv.reserve_one, time.perf_counter_ns, out[t]
        barrier.wait()
        for j, order_id in enumerate(per[t]):
            t0 = clock()
            reserve_one(0, 1, order_id=order_id, user_id=order_id >> 2)
            lat[j] = clock() - t0

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    _check_one(inv, calls)
    hist = Histogram()
    for lat in out:
        hist.record(lat)
    return {"backend": backend, "kind": "closed", "threads": threads, "calls": calls,
            "calls_per_s": calls / wall, "histogram": hist.as_dict()}


def open_loop_latency(backend, rate, calls=50_000):
    """Open loop at ``rate`` calls/s from one thread: latency from each
    call's intended send time (no coordinated omission)."""
    inv = _reserve_one_inventory(backend, calls)
    inv.reserve_one(0, 1, order_id=calls + 1, user_id=10**9)
    inv.cancel([calls + 1])
    lat = np.empty(calls, np.int64)
    reserve_one, clock = inv.reserve_one, time.perf_counter_ns
    gap = 1e9 / rate
    start = clock() + 1_000_000
    late = 0
    for i in range(calls):
        due = start + int(i * gap)
        now = clock()
        if now < due:
            if due - now > 200_000:
                time.sleep((due - now - 100_000) / 1e9)
            while clock() < due:
                pass
        else:
            late += 1
        reserve_one(0, 1, order_id=i, user_id=i >> 2)
        lat[i] = clock() - due
    wall = (clock() - start) / 1e9
    _check_one(inv, calls)
    return {"backend": backend, "kind": "open", "threads": 1, "calls": calls, "offered_per_s": rate,
            "achieved_per_s": calls / wall, "sent_late": late, "histogram": Histogram().record(lat).as_dict()}


def measure_all(cases, backends, progress=None, calls=50_000, threads=(1, 2, 4), open_fractions=(0.1, 0.5, 0.9),
                batch_orders=1000, max_batches=1000, batch_threads=None):
    """Every latency figure of a run (compiled backends only).

    ``open_fractions``: offered rates as fractions of the single-thread
    closed-loop rate measured just before.
    """
    backends = [b for b in backends if b != "reference"]
    out = {"batch": [], "per_call": [], "config": {"calls": calls, "threads": list(threads),
                                                   "open_fractions": list(open_fractions),
                                                   "batch_orders": batch_orders, "max_batches": max_batches}}
    for case in cases:
        for backend in backends:
            for mode in ("concurrent", "tracked"):
                if progress:
                    progress(0, 1, f"latency {case.name} {backend} {mode} batches")
                out["batch"].append(batch_latency(case, backend, mode, batch_threads, batch_orders, max_batches))
    for backend in backends:
        closed = []
        for t in threads:
            if progress:
                progress(0, 1, f"latency {backend} reserve_one x{t} threads")
            closed.append(reserve_one_latency(backend, calls, t))
        out["per_call"] += closed
        for f in open_fractions:
            rate = f * closed[0]["calls_per_s"]
            if progress:
                progress(0, 1, f"latency {backend} reserve_one open loop {rate:,.0f}/s")
            out["per_call"].append(open_loop_latency(backend, rate, calls) | {"fraction": f})
    return out
