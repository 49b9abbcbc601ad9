"""Single-line orders (flash sales): one line per order, one offer per SKU,
concurrent and in arrival order.

Mirrors :mod:`kernel.reference.single` (``reserve_single``,
``reserve_single_ordered``) and ``kernel/_cython/single.pxi``, whose private
helpers (``_single_chunk``, ``_take_run``, ...) have the same names.
Dispatch (parallel / serial, threads, scratch buffers): :mod:`._jit`.
"""

import numpy as np
from numba import prange

from ..codes import ACCEPTED, OUT_OF_STOCK
from ._jit import _CHUNK, _PART_BLOCK, _dispatchers, _inline, _jit, _run, _scratch, _threads, njit
from .atomics import atomic_cas, atomic_load, load, prefetch_write, store
from .stock import take_exactly

__all__ = ["reserve_single", "reserve_single_ordered"]

# How many orders ahead to prefetch the stock word (kernels.pyx: PREFETCH_AHEAD,
# where the choice of 64 is explained).
_PREFETCH_AHEAD = 64
# Orders sampled to tell whether one part would get (nearly) everything.
_SAMPLE = 1024
# Orders of a run found one by one before the rest is found four at a time
# (kernels.pyx: LONG_RUN, where the choice is explained).
_LONG_RUN = 8


@njit(**_inline)
def _take_run(stock, s, qty, status, lo, hi):
    """Orders ``lo:hi`` all want SKU ``s``: decide them greedily in arrival
    order against one snapshot, then commit the run's total with ONE CAS.
    The CAS makes the run a single linearisation point, so the outcome is
    exactly those orders served back to back; on failure, redo with the value
    the CAS saw."""
    seen = atomic_load(stock, s)
    while True:
        left = seen
        for k in range(lo, hi):
            if left == 0:
                # Sold out (every qty is > 0): refuse the rest of the run in
                # one fill instead of one decision per order.
                status[k:hi] = OUT_OF_STOCK
                break
            # Unchecked load/store (atomics.py): lo <= k < hi <= qty.size.
            q = load(qty, k)
            if q <= left:
                left -= q
                store(status, k, ACCEPTED)
            else:
                store(status, k, OUT_OF_STOCK)
        if left == seen:
            return  # nothing taken: no write (sold-out SKUs cost a load)
        old = atomic_cas(stock, s, seen, left)
        if old == seen:
            return
        seen = old


@njit(**_inline)
def _run_end(sku, s, j, stop):
    """The first index from ``j`` on (``stop`` at most) whose SKU is not
    ``s``: the end of a long run (kernels.pyx ``_run_end``)."""
    # Four at a time, one branch for the four (an OR of XORs, no ``and``),
    # then the tail one by one.  Unchecked loads (atomics.py): j < stop.
    while j + 4 <= stop and ((load(sku, j) ^ s) | (load(sku, j + 1) ^ s) | (load(sku, j + 2) ^ s)
                             | (load(sku, j + 3) ^ s)) == 0:
        j += 4
    while j < stop and load(sku, j) == s:
        j += 1
    return j


@njit(**_jit)
def _single_chunk(stock, sku, qty, status, start, stop):
    """Decide orders ``start:stop`` (kernels.pyx ``_single_chunk``)."""
    # Random stock words miss cache and a locked CAS stalls until its line
    # arrives, so consecutive misses would not overlap: prefetch (write
    # intent) the word PREFETCH_AHEAD orders ahead.  First the window itself.
    # Unchecked load/store (atomics.py): every index is in start:stop, a
    # slice of the batch; the SKUs themselves go to the checked atomics.
    for j in range(start, min(start + _PREFETCH_AHEAD, stop)):
        prefetch_write(stock, load(sku, j))
    i = start
    while i < stop:
        if i + _PREFETCH_AHEAD < stop:
            prefetch_write(stock, load(sku, i + _PREFETCH_AHEAD))
        s = load(sku, i)
        j = i + 1
        while j < stop and load(sku, j) == s:
            j += 1
            if j - i == _LONG_RUN:
                j = _run_end(sku, s, j, stop)
                break
        if j == i + 1:
            # Lone order: the common case on a wide catalogue, kept cheap.
            store(status, i, ACCEPTED if take_exactly(stock, s, load(qty, i)) else OUT_OF_STOCK)
        else:
            # A run on one SKU (hot item): one CAS for the run instead of
            # one contended CAS per order.
            _take_run(stock, s, qty, status, i, j)
        i = j


@njit(**_inline)
def _part_of(s, n_parts):
    """``s % n_parts`` for s >= 0; a mask when n_parts is a power of two,
    because a 64-bit division per order dominates the ordered scans."""
    if (n_parts & (n_parts - 1)) == 0:
        return s & (n_parts - 1)
    return s % n_parts


@njit(**_inline)
def _gather_part(sku, start, stop, t, n_parts, mine, mine_sku):
    """Copy, in order, the indices (and SKUs) of orders ``start:stop`` whose
    SKU is in part ``t`` into ``mine`` / ``mine_sku``; return how many."""
    # Branchless: always store, advance only on a match.  ``if part == t``
    # is a coin flip per order on uniform SKUs (2 parts) and its
    # mispredictions cost more than the whole compaction.
    # Unchecked load/store (atomics.py): m <= i - start < _PART_BLOCK.
    m = 0
    for i in range(start, stop):
        s = load(sku, i)
        store(mine, m, i)
        store(mine_sku, m, s)
        m += _part_of(s, n_parts) == t
    return m


@njit(**_inline)
def _take_gathered_run(stock, s, qty, status, mine, lo, hi):
    """:func:`_take_run` for the gathered orders ``mine[lo:hi]`` (all on
    offer ``s``), writing only rejections (status is pre-filled ACCEPTED)."""
    seen = atomic_load(stock, s)
    while True:
        left = seen
        for k in range(lo, hi):
            # Unchecked (atomics.py): k < m and mine[k] is a batch index.
            order = load(mine, k)
            q = load(qty, order)
            if q <= left:
                left -= q
            else:
                store(status, order, OUT_OF_STOCK)
        if left == seen:
            return
        old = atomic_cas(stock, s, seen, left)
        if old == seen:
            return
        # Lost to a concurrent batch (no other thread of this call owns
        # ``s``): undo our rejections and re-decide against the fresh value.
        for k in range(lo, hi):
            store(status, load(mine, k), ACCEPTED)
        seen = old


@njit(**_inline)
def _serve_gathered(stock, qty, status, mine, mine_sku, m):
    """:func:`_single_chunk` over the gathered orders: same prefetch, same
    run coalescing."""
    # Unchecked load/store (atomics.py): indices below m were gathered
    # from the batch by _gather_part.
    for j in range(min(_PREFETCH_AHEAD, m)):
        prefetch_write(stock, load(mine_sku, j))
    k = 0
    while k < m:
        if k + _PREFETCH_AHEAD < m:
            prefetch_write(stock, load(mine_sku, k + _PREFETCH_AHEAD))
        s = load(mine_sku, k)
        j = k + 1
        while j < m and load(mine_sku, j) == s:
            j += 1
            if j - k == _LONG_RUN:
                j = _run_end(mine_sku, s, j, m)
                break
        if j == k + 1:
            # Only rejections are written: neighbouring status bytes belong
            # to the other threads and every write bounces the cache line.
            order = load(mine, k)
            if not take_exactly(stock, s, load(qty, order)):
                store(status, order, OUT_OF_STOCK)
        else:
            _take_gathered_run(stock, s, qty, status, mine, k, j)
        k = j


@njit(**_inline)
def _single_part(stock, sku, qty, status, n, t, n_parts, mine, mine_sku):
    """Serve, in arrival order, the orders whose SKU belongs to part ``t``."""
    # Every thread scans all orders but only touches its own SKUs, so each
    # SKU sees its orders in arrival order: the result is the serial one.
    # Per block: gather our orders (branch-free), then serve them like the
    # serial path does (prefetch ahead, one CAS per same-SKU run).  The
    # buffers (``_PART_BLOCK`` each) are this thread's rows of the caller's
    # scratch array, kernels.pyx's stack arrays.  Inlined into the prange body:
    # as a separate njit function the general twin ran ~2x slower (refcount
    # calls around its out-of-line helpers).
    for b in range((n + _PART_BLOCK - 1) // _PART_BLOCK):
        m = _gather_part(sku, b * _PART_BLOCK, min((b + 1) * _PART_BLOCK, n), t, n_parts, mine, mine_sku)
        _serve_gathered(stock, qty, status, mine, mine_sku, m)


@njit(**_jit)
def _mostly_one_part(sku, n, n_parts):
    """True when over 3/4 of a strided sample of orders fall in one part."""
    # Then one thread would do (nearly) all the work and the others only
    # the gathering, which costs more than it saves (flash sale: 1 SKU):
    # the serial path is faster.  Majority vote, then a count: no table.
    step = n // _SAMPLE if n > _SAMPLE else 1
    n_sample = (n + step - 1) // step
    votes = 0
    candidate = 0
    for k in range(n_sample):
        p = _part_of(sku[k * step], n_parts)
        if votes == 0:
            candidate = p
        votes += 1 if p == candidate else -1
    count = 0
    for k in range(n_sample):
        count += _part_of(sku[k * step], n_parts) == candidate
    return 4 * count > 3 * n_sample


def _reserve_single(stock, sku, qty, status, n_threads):
    n = sku.size
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        _single_chunk(stock, sku, qty, status, c * _CHUNK, min((c + 1) * _CHUNK, n))


def _reserve_single_ordered(stock, sku, qty, status, scratch, n_threads):
    n = sku.size
    if n_threads <= 1 or _mostly_one_part(sku, n, n_threads):
        # Serially, coalesced runs decide exactly as arrival order does.
        n_chunks = (n + _CHUNK - 1) // _CHUNK
        for c in range(n_chunks):
            _single_chunk(stock, sku, qty, status, c * _CHUNK, min((c + 1) * _CHUNK, n))
    else:
        # Thread t serves SKUs with sku % n_threads == t in arrival order:
        # orders of different SKUs never interact, so the outcome is the
        # serial one.  Scanning the whole batch per thread is cheap next to
        # the CAS traffic.
        status[:] = ACCEPTED  # see _serve_gathered
        for t in prange(n_threads):
            # prange's index is unsigned; comparing it with a signed part
            # number would be done in float64 (Numba's int64/uint64 rule).
            _single_part(stock, sku, qty, status, n, np.int64(t), n_threads, scratch[t, 0], scratch[t, 1])


_reserve_single_par, _reserve_single_ser = _dispatchers(_reserve_single)
_reserve_single_ordered_par, _reserve_single_ordered_ser = _dispatchers(_reserve_single_ordered)


def reserve_single(stock, sku, qty, status, n_threads):
    """Concurrent flash-sale path (see :func:`kernel.reference.reserve_single`)."""
    nt = _threads(n_threads)
    _run(_reserve_single_par, _reserve_single_ser, nt, (stock, sku, qty, status, nt), dynamic=True)


def reserve_single_ordered(stock, sku, qty, status, n_threads):
    """Flash-sale path whose outcome equals arrival order."""
    nt = _threads(n_threads)
    _run(_reserve_single_ordered_par, _reserve_single_ordered_ser, nt, (stock, sku, qty, status, _scratch(nt), nt))
