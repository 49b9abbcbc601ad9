"""Numba kernels: mirrors :mod:`kernel.reference` function for function, with
the same names and arguments (and ``kernel/_cython/kernels.pyx``).

The "Tracked orders" section at the end mirrors the section of that name in
:mod:`kernel.reference` (idempotent order ids, per-user caps, the hold
lifecycle, crash recovery): same constants, same functions, same results
for ``n_threads=1`` down to the hash-table layouts.  Besides the batch
kernels it has :func:`reserve_one`, an ``@njit`` dispatcher that users'
own ``@njit`` code can call (``reserve_one(*state, s, units, max_p,
order_id, user, deadline)``, ``state`` a tuple of the 16 arrays), and
:func:`bind_reserve_one`, the cheapest way to call it from Python.

Every kernel is written once, as a plain Python function using
``numba.prange``, and compiled lazily into two cached dispatchers: a parallel
one (``parallel=True``; ``prange`` runs on the thread pool) and a serial one
(``prange`` is plain ``range``).  The public names are small Python wrappers
that pick one; nothing compiles at import time, and ``cache=True`` means a
second process loads machine code from ``__pycache__`` instead of compiling.

Threads
    ``n_threads > 1`` (and parallel allowed) runs the parallel dispatcher on
    ``min(n_threads, numba.config.NUMBA_NUM_THREADS)`` threads
    (``numba.set_num_threads`` is per calling thread, so concurrent callers do
    not disturb each other); otherwise the serial one runs.

Threading layer
    ``threadsafe`` (TBB, else OpenMP) unless the user set
    ``NUMBA_THREADING_LAYER``: Numba's fallback ``workqueue`` layer is not
    safe when several Python threads launch parallel kernels at once (these
    kernels release the GIL).  :func:`threading_layer` reports what loaded.

Fork safety
    GNU OpenMP's thread pool does not survive ``fork()`` (Numba aborts the
    child).  The facade handles it for every backend: in a child forked after
    a parallel kernel ran, :func:`kernel.backends.resolve_threads` passes
    ``n_threads=1``, so only the serial dispatchers run there.

Errors
    The atomics check bounds before touching memory and raise
    ``IndexError``.  Numba propagates an exception raised in a ``prange``
    body only when it happens on the calling thread (as a ``SystemError``
    caused by it, which the wrappers turn back into the ``IndexError``); one
    raised on a pool worker is lost (numba#9673, numba#6976), though memory is
    still never touched out of bounds.  Kernels do not validate: the facade
    passes only checked indices (batches are validated once, at
    construction), so an out-of-bounds index is a bug, not an input error.
"""

import functools
import os
import types as _pytypes

import numba
import numba.core.cpu
import numpy as np
from numba import njit, prange

from .atomics import (array_at, atomic_add, atomic_cas, atomic_load, atomic_load_acquire, atomic_store_release, load,
                      prefetch_write, store)

__all__ = [
    "ACCEPTED", "OUT_OF_STOCK", "ROLLBACKS",
    "reserve_single", "reserve_single_ordered", "take_exactly", "take_cart", "reserve_carts",
    "reserve_carts_ordered", "take_up_to",
    "line_available", "roll_back_order", "take_order", "reserve_general", "reserve_general_ordered",
    "give_back", "threading_layer",
]

ACCEPTED = 0
OUT_OF_STOCK = 1
ROLLBACKS = 0  # index into ``counters``

# Orders per prange work item.  Big enough that scheduling overhead and the
# run-coalescing boundary effects vanish, small enough to balance 2..8 threads
# on batches of ~100k orders and up.
_CHUNK = 16384
# How many orders ahead to prefetch the stock word (kernels.pyx: PREFETCH_AHEAD,
# where the choice of 64 is explained).
_PREFETCH_AHEAD = 64
# Carts have ~3 lines each, so fewer orders ahead cover as many misses.
_CART_PREFETCH_AHEAD = 6
# The general path does far more work per order, so smaller chunks balance better.
_GENERAL_CHUNK = 1024
# Orders an ordered-path thread sifts at a time (kernels.pyx PART_BLOCK): its
# gathered indices and SKUs (16 KiB each) stay in L1 while it serves them.
_PART_BLOCK = 2048
# Tracked orders ahead whose cache lines reserve_tracked prefetches
# (kernels.pyx: TRACKED_PREFETCH_AHEAD).
_TRACKED_PREFETCH_AHEAD = 8
# Orders sampled to tell whether one part would get (nearly) everything.
_SAMPLE = 1024

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "threadsafe"

# error_model="numpy": no ZeroDivisionError checks around ``%`` / ``//`` in
# the hot loops (no divisor here can be zero).  boundscheck=False explicitly, so
# NUMBA_BOUNDSCHECK cannot slow the kernels down; the atomics check their own
# index regardless (atomics.py).
#
# _nrt=False: no Numba runtime, so no reference counting at all.  With it,
# every array a helper takes is increfed/decrefed around the helper's body
# (out-of-line NRT_incref / NRT_decref calls, a locked add each, on refcount
# words every thread shares), and Numba's refcount pruning gives up on
# helpers whose loops exit early (line_available's ``break``s, take_order's
# ``return``s): take_order paid ~11 such calls per order, line_available 4
# per line, inlined or not.  Cython has no refcounts here; now neither do
# we.  The kernels only read and write caller-owned arrays (the ordered
# paths' gather buffers come from the wrapper, see _scratch), so they need
# no runtime.
# ``_nrt`` is an underscored (undocumented) Numba option: where a Numba
# release drops it, the kernels still compile, with the runtime, and only
# lose the speed described above.
_NO_RUNTIME = {"_nrt": False} if hasattr(numba.core.cpu.CPUTargetOptions, "_nrt") else {}
_jit = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False, **_NO_RUNTIME)
# Helpers called once per order are also inlined at the Numba IR level,
# so the per-order loop is one function, as in kernels.pyx.
_inline = dict(_jit, inline="always")

# --------------------------------------------------------------- thread control

def threading_layer():
    """The Numba threading layer in use (``None`` until a parallel kernel ran)."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _threads(n_threads):
    """Threads to run on: 1 means use the serial dispatcher."""
    if n_threads > 1:
        return min(int(n_threads), numba.config.NUMBA_NUM_THREADS)
    return 1


def _run(par, ser, nt, args, dynamic=False):
    """Run ``par`` on ``nt`` threads, or ``ser`` when ``nt == 1``.

    ``dynamic``: hand the prange iterations (chunks of orders) out one at a
    time, like kernels.pyx's ``schedule='dynamic'``, instead of Numba's
    default static split into one block per thread: chunk cost varies (runs,
    sold-out SKUs), and on a shared machine a descheduled thread must not
    hold back half the batch.  The chunk size is per calling thread, so it is
    restored afterwards."""
    try:
        if nt > 1:
            numba.set_num_threads(nt)
            if not dynamic:
                return par(*args)
            old = numba.set_parallel_chunksize(1)
            try:
                return par(*args)
            finally:
                numba.set_parallel_chunksize(old)
        return ser(*args)
    except SystemError as exc:  # an IndexError raised inside a prange body
        if isinstance(exc.__cause__, IndexError):
            raise exc.__cause__ from None
        raise


def _scratch(nt):
    """Per-thread gather buffers for the ordered paths (rows ``[t, 0]`` and
    ``[t, 1]``, ``_PART_BLOCK`` int64 each): allocated here rather than with
    ``np.empty`` in the kernel, so the kernels need no NRT at all (see _jit)."""
    return np.empty((nt, 2, _PART_BLOCK), np.int64)


def _clone(fn, suffix):
    # The parallel and serial dispatchers need distinct functions: Numba's
    # on-disk cache is keyed by qualname + bytecode + signature, not by the
    # ``parallel`` flag, so sharing one function would let one variant load
    # the other's machine code.
    g = _pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    g.__doc__ = fn.__doc__
    return g


def _dispatchers(fn):
    return (njit(parallel=True, **_jit)(_clone(fn, "_parallel")),
            njit(**_jit)(_clone(fn, "_serial")))


# ----------------------------------------------------------- per-unit helpers


@njit(**_inline)
def take_exactly(stock, offer, units):
    """Take exactly ``units`` from ``stock[offer]`` or nothing; CAS loop that
    gives up, without writing, once the stock is too small."""
    seen = atomic_load(stock, offer)
    while seen >= units:
        old = atomic_cas(stock, offer, seen, seen - units)
        if old == seen:
            return True
        seen = old  # lost a race: retry against the value that won
    return False


@njit(**_inline)
def take_cart(stock, line_start, sku, qty, counters, order):
    """One-offer-per-SKU twin of :func:`take_order`: every line takes exactly
    its ``qty`` from offer ``sku[line]``, all or nothing."""
    # load(a, i) is a[i] without Numba's negative-index fix-up (atomics.py):
    # ``order`` and every line are valid, the facade checked the batch.
    first = load(line_start, order)
    last = load(line_start, order + 1)
    # Pre-check with reads only, as in take_order: a cart that cannot fit
    # costs loads, and never makes a rollback others could trip over.
    for line in range(first, last):
        if atomic_load(stock, load(sku, line)) < load(qty, line):
            return OUT_OF_STOCK
    for line in range(first, last):
        if not take_exactly(stock, load(sku, line), load(qty, line)):
            # Lost a race after the pre-check: hand back the earlier lines
            # (fetch-add: other threads may be CAS-ing the same words).
            for earlier in range(first, line):
                atomic_add(stock, load(sku, earlier), load(qty, earlier))
            atomic_add(counters, ROLLBACKS, 1)
            return OUT_OF_STOCK
    return ACCEPTED


@njit(**_inline)
def take_up_to(stock, offer, units):
    """Take ``min(stock[offer], units)`` and return it (CAS loop)."""
    seen = atomic_load(stock, offer)
    while seen > 0:
        got = min(seen, units)
        old = atomic_cas(stock, offer, seen, seen - got)
        if old == seen:
            return got
        seen = old
    return 0


@njit(**_inline)
def line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, enough):
    """Units the line could take now from its eligible offers, counted only
    until ``enough`` (read-only: relaxed loads, no writes)."""
    # Both are inlined at the IR level, so this costs nothing: take_order's
    # serial kernel compiles to as many instructions as with the loop inline.
    return offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line], enough)


@njit(**_inline)
def offers_available(stock, price, offer_start, offer_by_priority, s, max_p, enough):
    """Units SKU ``s`` has now in offers priced ``<= max_p``, counted only
    until ``enough`` (read-only: relaxed loads, no writes)."""
    total = 0
    for k in range(offer_start[s], offer_start[s + 1]):
        offer = offer_by_priority[k]
        if price[offer] > max_p:
            break  # offers are in price order: the rest are dearer still
        total += atomic_load(stock, offer)
        if total >= enough:
            break
    return total


@njit(**_jit)
def roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken, counters, order):
    """Give back every unit the order took and clear its ``taken`` slots."""
    for line in range(line_start[order], line_start[order + 1]):
        base = offer_start[sku[line]]
        for j in range(slot_start[line + 1] - slot_start[line]):
            got = taken[slot_start[line] + j]
            if got:
                # fetch-add, not a store: other threads are taking concurrently
                atomic_add(stock, offer_by_priority[base + j], got)
                taken[slot_start[line] + j] = 0  # slots belong to this order only
    atomic_add(counters, ROLLBACKS, 1)


@njit(**_inline)
def take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start, taken,
               counters, order):
    """Fill every line of one order from its SKU's eligible offers in priority
    order, all or nothing; return the order's status."""
    first = line_start[order]
    last = line_start[order + 1]
    # Pre-check with reads only: an order that cannot fit costs loads, not
    # writes (and not a rollback another order could trip over).
    for line in range(first, last):
        if line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, qty[line]) < qty[line]:
            return OUT_OF_STOCK
    for line in range(first, last):
        need = qty[line]
        s = sku[line]
        base = offer_start[s]
        for j in range(offer_start[s + 1] - base):
            offer = offer_by_priority[base + j]
            if price[offer] > max_price[line]:
                break
            got = take_up_to(stock, offer, need)
            taken[slot_start[line] + j] = got
            need -= got
            if need == 0:
                break
        if need:
            roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken, counters, order)
            return OUT_OF_STOCK
    return ACCEPTED


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


# ------------------------------------------------------------------- kernels


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


@njit(**_jit)
def _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, start, stop):
    """Decide orders ``order_index[start:stop]`` (kernels.pyx ``_carts_chunk``)."""
    # Unchecked load/store (atomics.py): k < stop <= order_index.size, and
    # orders and lines were validated by the facade.
    for k in range(start, stop):
        if k + _CART_PREFETCH_AHEAD < stop:
            # Prefetch the stock words of a cart a few orders ahead: each line
            # is a random cache miss, and overlapping them is most of the speed.
            j = load(order_index, k + _CART_PREFETCH_AHEAD)
            for line in range(load(line_start, j), load(line_start, j + 1)):
                prefetch_write(stock, load(sku, line))
        order = load(order_index, k)
        store(status, order, take_cart(stock, line_start, sku, qty, counters, order))


def _reserve_carts(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    n = order_index.size
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, c * _CHUNK,
                     min((c + 1) * _CHUNK, n))


def _reserve_general(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                     order_index, taken, status, counters, n_threads):
    n = order_index.size
    n_chunks = (n + _GENERAL_CHUNK - 1) // _GENERAL_CHUNK
    for c in prange(n_chunks):
        hi = min(n, (c + 1) * _GENERAL_CHUNK)
        for k in range(c * _GENERAL_CHUNK, hi):
            order = order_index[k]
            status[order] = take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                                       slot_start, taken, counters, order)


@njit(**_inline)
def _gather_general_part(line_start, sku, order_index, start, stop, t, n_parts, mine):
    """:func:`_gather_part` for ``order_index[start:stop]``: the orders whose
    first line's SKU is in part ``t`` (a line-less order goes to part 0)."""
    m = 0
    for k in range(start, stop):
        order = order_index[k]
        first = line_start[order]
        part = _part_of(sku[first], n_parts) if first < line_start[order + 1] else 0
        mine[m] = order
        m += part == t  # branch-free, see _gather_part
    return m


@njit(**_inline)
def _general_part(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                  order_index, taken, status, counters, n, t, n_parts, mine):
    """Serve, in arrival order, the orders whose first line's SKU is in part ``t``."""
    # Only serial-equivalent when each order has one line (the facade passes
    # n_threads=1 otherwise).  Gathered per block (into ``mine``, this
    # thread's scratch row) as in _single_part.
    for b in range((n + _PART_BLOCK - 1) // _PART_BLOCK):
        m = _gather_general_part(line_start, sku, order_index, b * _PART_BLOCK, min((b + 1) * _PART_BLOCK, n),
                                 t, n_parts, mine)
        for k in range(m):
            if take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                          slot_start, taken, counters, mine[k]) != ACCEPTED:
                status[mine[k]] = OUT_OF_STOCK  # pre-filled with ACCEPTED (false sharing)


def _reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                             slot_start, order_index, taken, status, counters, scratch, n_threads):
    # Bucket by the SKU of the order's first line; the serial outcome only
    # when orders have one line (the facade passes n_threads=1 otherwise).
    n = order_index.size
    if n_threads <= 1:
        for k in range(n):
            order = order_index[k]
            status[order] = take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty,
                                       max_price, slot_start, taken, counters, order)
    else:
        for k in range(n):
            status[order_index[k]] = ACCEPTED  # see _serve_gathered
        for t in prange(n_threads):
            # signed part number, see _reserve_single_ordered
            _general_part(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                          slot_start, order_index, taken, status, counters, n, np.int64(t), n_threads,
                          scratch[t, 0])


def _give_back(stock, offer, qty, n_threads):
    for k in prange(offer.size):
        atomic_add(stock, offer[k], qty[k])  # fetch-add: takes may be running concurrently


_reserve_single_par, _reserve_single_ser = _dispatchers(_reserve_single)
_reserve_single_ordered_par, _reserve_single_ordered_ser = _dispatchers(_reserve_single_ordered)
_reserve_carts_par, _reserve_carts_ser = _dispatchers(_reserve_carts)
_reserve_general_par, _reserve_general_ser = _dispatchers(_reserve_general)
_reserve_general_ordered_par, _reserve_general_ordered_ser = _dispatchers(_reserve_general_ordered)
_give_back_par, _give_back_ser = _dispatchers(_give_back)


# ---------------------------------------------------------- public wrappers


def reserve_single(stock, sku, qty, status, n_threads):
    """Concurrent flash-sale path (see :func:`kernel.reference.reserve_single`)."""
    nt = _threads(n_threads)
    _run(_reserve_single_par, _reserve_single_ser, nt, (stock, sku, qty, status, nt), dynamic=True)


def reserve_single_ordered(stock, sku, qty, status, n_threads):
    """Flash-sale path whose outcome equals arrival order."""
    nt = _threads(n_threads)
    _run(_reserve_single_ordered_par, _reserve_single_ordered_ser, nt, (stock, sku, qty, status, _scratch(nt), nt))


def reserve_carts(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Concurrent multi-line path for one offer per SKU (see
    :func:`kernel.reference.reserve_carts`)."""
    nt = _threads(n_threads)
    _run(_reserve_carts_par, _reserve_carts_ser, nt, (stock, line_start, sku, qty, order_index, status, counters, nt),
         dynamic=True)


def reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Multi-line path for one offer per SKU whose outcome equals arrival order
    (serial whatever ``n_threads`` says: carts span SKUs, so they cannot be
    split by SKU)."""
    _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, 0, order_index.size)


def reserve_general(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                    order_index, taken, status, counters, n_threads):
    """Concurrent general path (see :func:`kernel.reference.reserve_general`)."""
    nt = _threads(n_threads)
    _run(_reserve_general_par, _reserve_general_ser, nt,
         (stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
          order_index, taken, status, counters, nt), dynamic=True)


def reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                            slot_start, order_index, taken, status, counters, n_threads):
    """General path whose outcome equals arrival order."""
    nt = _threads(n_threads)
    _run(_reserve_general_ordered_par, _reserve_general_ordered_ser, nt,
         (stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
          order_index, taken, status, counters, _scratch(nt), nt))


def give_back(stock, offer, qty, n_threads):
    """Return ``qty[k]`` units to ``stock[offer[k]]`` for every ``k`` (atomic fetch-add)."""
    nt = _threads(n_threads)
    _run(_give_back_par, _give_back_ser, nt, (stock, offer, qty, nt))


# ============================================================================
# Tracked orders: idempotent ids, per-user limits and the hold lifecycle.
#
# Mirrors the "Tracked orders" section of kernel/reference.py (the state, the
# constants and every function), which is the spec; the comments here are
# about what the compiled version adds: which word changes by which atomic,
# and why that order.  Every shared word (stock, order_word, limit_key,
# limit_count, counters) changes only by CAS or fetch-add; a record's plain
# fields (order_user / deadline / fill range, the fill log) are written by
# the one thread that owns them at the time and published by the CAS that
# moves the order word on (acq_rel, atomics.py).

DUPLICATE = 2
LIMIT_EXCEEDED = 3
CANCELLED = 4

PENDING = 1
HELD = 2
CONFIRMED = 3
CANCELLED_HOLD = 4
EXPIRED = 5
REFUSED = 6
CANCEL_REQUESTED = 7
CANCELLED_EARLY = 8

STATE_SHIFT = 56
ID_MASK = (1 << STATE_SHIFT) - 1
HASH_MULTIPLIER = 0x9E3779B97F4A7C15
NO_LIMIT = (1 << 63) - 1

DONE = 0
ALREADY_CONFIRMED = 1
ALREADY_CANCELLED = 2
ALREADY_EXPIRED = 3
WAS_REFUSED = 4
UNKNOWN = 5
IN_FLIGHT = 6
REMEMBERED = 7

ORDERS_LEFT = 1
PAIRS_LEFT = 2
FILLS_LEFT = 3
FILL_CURSOR = 4

TOOK = 1
NEW_PAIR = 2

ORDER_TABLE_FULL = -1
LIMIT_TABLE_FULL = -2
FILL_LOG_FULL = -3

__all__ += [
    "DUPLICATE", "LIMIT_EXCEEDED", "CANCELLED",
    "PENDING", "HELD", "CONFIRMED", "CANCELLED_HOLD", "EXPIRED", "REFUSED", "CANCEL_REQUESTED", "CANCELLED_EARLY",
    "STATE_SHIFT", "ID_MASK", "HASH_MULTIPLIER", "NO_LIMIT",
    "DONE", "ALREADY_CONFIRMED", "ALREADY_CANCELLED", "ALREADY_EXPIRED", "WAS_REFUSED", "UNKNOWN", "IN_FLIGHT",
    "REMEMBERED",
    "ORDERS_LEFT", "PAIRS_LEFT", "FILLS_LEFT", "FILL_CURSOR", "TOOK", "NEW_PAIR",
    "ORDER_TABLE_FULL", "LIMIT_TABLE_FULL", "FILL_LOG_FULL",
    "hash_slot", "take_budget", "take_budgets", "claim_order", "find_order", "limit_slot", "limit_room", "take_limit",
    "give_back_limit", "give_back_fills", "take_line", "publish_or_undo", "take_tracked", "settle_refused_slot",
    "outcome_of", "offers_available",
    "claim_orders", "reserve_tracked", "settle_refused", "confirm_orders", "cancel_orders", "expire_orders",
    "recover_orders", "reserve_one", "bind_reserve_one",
]

# Ids (claims, confirms, cancels, settles) per prange work item: each is a
# probe or two and a CAS, so chunks are bigger than the general path's.
_ID_CHUNK = 4096
# Slots per work item of the whole-table scans (expiry, recovery): a slot
# that needs nothing costs one load.
_SLOT_CHUNK = 16384


# ----------------------------------------------------------- tracked helpers


@njit(**_inline)
def hash_slot(key, mask):
    """Home slot of ``key`` in a table of ``mask + 1`` slots: bits 32 and up
    of ``key * HASH_MULTIPLIER mod 2**64`` (bit-identical to the reference)."""
    # Both operands uint64: the product wraps mod 2**64, as the reference's
    # mask makes it (Numba types int64 * uint64 as float64); after >> 32 the
    # hash fits an int64 again, for the mask and for indexing.
    h = np.uint64(key) * np.uint64(HASH_MULTIPLIER)
    return np.int64(h >> np.uint64(32)) & mask


@njit(**_inline)
def take_budget(counters, index, amount):
    """Subtract ``amount`` from ``counters[index]`` unless it would go below
    zero; return the old value, or -1 (changing nothing).  CAS loop."""
    old = atomic_load(counters, index)
    while old >= amount:
        seen = atomic_cas(counters, index, old, old - amount)
        if seen == old:
            return old
        old = seen  # another reserve took or gave back meanwhile: decide again
    return -1


@njit(**_jit)
def take_budgets(counters, index, amount, old):
    """:func:`take_budget` for each ``k`` in turn, all or nothing: ``old[k]``
    gets the old value; on the first refusal the earlier ones are given back
    and its ``k`` is returned, else -1.  (The facade's entry to the budgets.)"""
    for k in range(index.size):
        old[k] = take_budget(counters, index[k], amount[k])
        if old[k] < 0:
            for earlier in range(k):
                take_budget(counters, index[earlier], -amount[earlier])
            return k
    return -1


@njit(**_inline)
def claim_order(order_word, order_id, state):
    """Insert ``order_id`` in ``state`` unless the table has it: its slot if
    this call inserted it, else ``-1 - slot``.  CAS 0 -> word."""
    mask = order_word.size - 1
    slot = hash_slot(order_id, mask)
    mine = (state << STATE_SHIFT) | order_id
    while True:
        word = atomic_load(order_word, slot)
        if word == 0:
            word = atomic_cas(order_word, slot, 0, mine)
            if word == 0:
                return slot
            # Lost the slot: look again at what the winner wrote (it may be
            # this very id, claimed by a concurrent duplicate).
        if word & ID_MASK == order_id:
            return -1 - slot
        slot = (slot + 1) & mask


@njit(**_inline)
def find_order(order_word, order_id):
    """The slot of ``order_id``, or -1 if the table does not have it."""
    mask = order_word.size - 1
    slot = hash_slot(order_id, mask)
    while True:
        word = atomic_load(order_word, slot)
        if word == 0:
            return -1
        if word & ID_MASK == order_id:
            return slot
        slot = (slot + 1) & mask


@njit(**_inline)
def limit_slot(limit_key, key, insert):
    """The slot of the (user, SKU) ``key``: ``slot`` if it was there,
    ``-2 - slot`` if this call inserted it (``insert``), -1 if absent."""
    mask = limit_key.size - 1
    slot = hash_slot(key, mask)
    while True:
        seen = atomic_load(limit_key, slot)
        if seen == key:
            return slot
        if seen == 0:
            if not insert:
                return -1
            seen = atomic_cas(limit_key, slot, 0, key)
            if seen == 0:
                return -2 - slot
            if seen == key:  # lost to a concurrent insert of the same pair
                return slot
        slot = (slot + 1) & mask


@njit(**_inline)
def limit_room(limit, limit_key, limit_count, user, s):
    """Units of SKU ``s`` the user may still take (read-only)."""
    cap = limit[s]
    if cap == NO_LIMIT:
        return NO_LIMIT
    slot = limit_slot(limit_key, user * limit.size + s + 1, False)
    return cap - (atomic_load(limit_count, slot) if slot >= 0 else 0)


@njit(**_inline)
def take_limit(limit, limit_key, limit_count, user, s, units):
    """Count ``units`` of SKU ``s`` against the user's cap, or nothing if
    that would pass it; ``TOOK | NEW_PAIR`` bits (see the reference).  CAS
    loop on the count that gives up, without writing, once it would pass."""
    cap = limit[s]
    if cap == NO_LIMIT:
        return TOOK
    slot = limit_slot(limit_key, user * limit.size + s + 1, True)
    new = 0
    if slot < -1:
        new = NEW_PAIR
        slot = -2 - slot
    seen = atomic_load(limit_count, slot)
    while seen + units <= cap:
        old = atomic_cas(limit_count, slot, seen, seen + units)
        if old == seen:
            return TOOK | new
        seen = old
    return new


@njit(**_inline)
def give_back_limit(limit, limit_key, limit_count, user, s, units):
    """Undo :func:`take_limit` (fetch-add of ``-units``)."""
    if limit[s] != NO_LIMIT:
        # The pair is there (take_limit inserted it); a missing one would be
        # index -1, which the checked atomic refuses (IndexError).
        atomic_add(limit_count, limit_slot(limit_key, user * limit.size + s + 1, False), -units)


@njit(**_inline)
def give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty, user, first, last):
    """Give back the logged fills ``first:last`` (stock and the user's limit
    count), zeroing each entry *before* its units go back."""
    for f in range(first, last):
        got = fill_qty[f]
        if got:
            # Zero first: a process killed between the two loses the units,
            # it never returns them twice.  The release half of the fetch-add
            # below keeps this plain store ahead of it.
            fill_qty[f] = 0
            offer = fill_offer[f]
            atomic_add(stock, offer, got)
            give_back_limit(limit, limit_key, limit_count, user, offer_sku[offer], got)


@njit(**_inline)
def take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, s, units, max_p, first_fill):
    """Take ``units`` of SKU ``s`` from its offers priced ``<= max_p`` in
    priority order, logging each take at ``first_fill + rank``; return the
    units still missing (the caller gives back what was taken)."""
    base = offer_start[s]
    for j in range(offer_start[s + 1] - base):
        offer = offer_by_priority[base + j]
        if price[offer] > max_p:
            break
        got = take_up_to(stock, offer, units)
        if got:
            # Logged right after the CAS that took them: an entry never
            # claims more than was taken (a crash in between loses units).
            fill_offer[first_fill + j] = offer
            fill_qty[first_fill + j] = got
            units -= got
            if units == 0:
                break
    return units


@njit(**_inline)
def publish_or_undo(stock, offer_sku, limit, limit_key, limit_count, order_word, fill_offer, fill_qty, counters,
                    slot, user, first_fill, last_fill):
    """An order took everything: CAS PENDING -> HELD.  If a cancel got there
    first (CANCEL_REQUESTED), give it all back and end CANCELLED."""
    word = atomic_load(order_word, slot)
    ident = word & ID_MASK
    # The CAS's release half publishes the record and the fill log with HELD.
    if atomic_cas(order_word, slot, (PENDING << STATE_SHIFT) | ident, (HELD << STATE_SHIFT) | ident) \
            == (PENDING << STATE_SHIFT) | ident:
        return ACCEPTED
    # Failed: the word is CANCEL_REQUESTED (the only other way out of PENDING
    # while this reserve runs).
    give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty, user, first_fill, last_fill)
    atomic_add(counters, ROLLBACKS, 1)
    # Only this reserve moves an order out of CANCEL_REQUESTED: no CAS, but an
    # atomic store, as confirm / cancel may be loading the word right now.
    atomic_store_release(order_word, slot, (CANCELLED_HOLD << STATE_SHIFT) | ident)
    return CANCELLED


@njit(**_inline)
def take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                 order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                 line_start, sku, qty, max_price, fill_slot, user_id, deadline, order_slot, counters, order):
    """Reserve one claimed (PENDING) order, all or nothing; returns
    ``(status, new (user, SKU) pairs)``.  A refused order stays PENDING."""
    slot = order_slot[order]
    user = user_id[order]
    first_line = line_start[order]
    last_line = line_start[order + 1]
    # Read-only pre-checks: an order that cannot fit costs loads, not writes.
    # Stock first: in a flash sale most orders meet a sold-out SKU, whose
    # word is hot in cache, while the cap count is a cold lookup.
    for line in range(first_line, last_line):
        if offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line],
                            qty[line]) < qty[line]:
            return OUT_OF_STOCK, 0
    for line in range(first_line, last_line):
        if limit_room(limit, limit_key, limit_count, user, sku[line]) < qty[line]:
            return LIMIT_EXCEEDED, 0
    # Plain stores: while the word is PENDING this reserve owns the record;
    # the CAS to HELD publishes it (cancel / expiry read it after that).  An
    # order refused above takes nothing and needs no record.
    order_user[slot] = user
    order_deadline[slot] = deadline[order]
    order_fill_start[slot] = fill_slot[first_line]
    order_fill_end[slot] = fill_slot[last_line]
    new_pairs = 0
    status = ACCEPTED
    undo_to = 0
    for line in range(first_line, last_line):
        took = take_limit(limit, limit_key, limit_count, user, sku[line], qty[line])
        new_pairs += took >> 1
        if not took & TOOK:
            status = LIMIT_EXCEEDED
            undo_to = fill_slot[line]
            break
        missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, sku[line],
                            qty[line], max_price[line], fill_slot[line])
        if missing:
            status = OUT_OF_STOCK
            # give_back_fills below returns the cap count of what was filled.
            give_back_limit(limit, limit_key, limit_count, user, sku[line], missing)
            undo_to = fill_slot[line + 1]
            break
    if status == ACCEPTED:
        return publish_or_undo(stock, offer_sku, limit, limit_key, limit_count, order_word, fill_offer, fill_qty,
                               counters, slot, user, fill_slot[first_line], fill_slot[last_line]), new_pairs
    give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty, user,
                    fill_slot[first_line], undo_to)
    atomic_add(counters, ROLLBACKS, 1)
    return status, new_pairs


@njit(**_inline)
def settle_refused_slot(order_word, slot):
    """PENDING -> REFUSED, or -> CANCELLED_HOLD where the word is
    CANCEL_REQUESTED.  CAS from the word read, re-deciding on failure."""
    word = atomic_load(order_word, slot)
    while True:
        final = CANCELLED_HOLD if word >> STATE_SHIFT == CANCEL_REQUESTED else REFUSED
        # First try is PENDING -> REFUSED; it fails only when a cancel made the
        # word CANCEL_REQUESTED, which only this reserve leaves, so the retry
        # (-> CANCELLED_HOLD) succeeds.
        seen = atomic_cas(order_word, slot, word, (final << STATE_SHIFT) | (word & ID_MASK))
        if seen == word:
            return
        word = seen


@njit(**_inline)
def outcome_of(state):
    """What confirm / cancel answer for an order already in ``state``."""
    if state == PENDING:
        return IN_FLIGHT
    if state == CONFIRMED:
        return ALREADY_CONFIRMED
    if state == EXPIRED:
        return ALREADY_EXPIRED
    if state == REFUSED:
        return WAS_REFUSED
    return ALREADY_CANCELLED  # CANCELLED_HOLD, CANCEL_REQUESTED, CANCELLED_EARLY


# ----------------------------------------------------- tracked chunk bodies


@njit(**_inline)
def _claim_chunk(order_word, order_id, order_slot, status, start, stop):
    """:func:`claim_orders` for ids ``start:stop``; returns how many were new."""
    new = 0
    mask = order_word.size - 1
    for i in range(start, stop):
        if i + _TRACKED_PREFETCH_AHEAD < stop:
            # The home slot of an id a few ahead: a random line of a big table.
            prefetch_write(order_word, hash_slot(order_id[i + _TRACKED_PREFETCH_AHEAD], mask))
        slot = claim_order(order_word, order_id[i], PENDING)
        if slot >= 0:
            order_slot[i] = slot
            status[i] = ACCEPTED
            new += 1
        else:
            order_slot[i] = -1
            early = atomic_load(order_word, -1 - slot) >> STATE_SHIFT == CANCELLED_EARLY
            status[i] = CANCELLED if early else DUPLICATE
    return new


@njit(**_inline)
def _confirm_chunk(order_word, order_id, outcome, start, stop):
    """:func:`confirm_orders` for ids ``start:stop``."""
    for i in range(start, stop):
        slot = find_order(order_word, order_id[i])
        if slot < 0:
            outcome[i] = UNKNOWN
            continue
        word = atomic_load(order_word, slot)
        while True:
            state = word >> STATE_SHIFT
            if state != HELD:
                outcome[i] = outcome_of(state)
                break
            # One CAS decides a confirm racing a cancel or an expiry: exactly
            # one of them moves the word out of HELD; a loser re-decides.
            seen = atomic_cas(order_word, slot, word, (CONFIRMED << STATE_SHIFT) | (word & ID_MASK))
            if seen == word:
                outcome[i] = DONE
                break
            word = seen


@njit(**_inline)
def _cancel_chunk(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                  order_fill_end, fill_offer, fill_qty, order_id, outcome, start, stop):
    """:func:`cancel_orders` for ids ``start:stop``; returns how many were new."""
    new = 0
    for i in range(start, stop):
        slot = claim_order(order_word, order_id[i], CANCELLED_EARLY)
        if slot >= 0:
            outcome[i] = REMEMBERED
            new += 1
            continue
        slot = -1 - slot
        word = atomic_load_acquire(order_word, slot)  # the CAS below acquires too; this is for clarity
        while True:
            state = word >> STATE_SHIFT
            if state == HELD:
                seen = atomic_cas(order_word, slot, word, (CANCELLED_HOLD << STATE_SHIFT) | (word & ID_MASK))
                if seen == word:
                    # Won: only this call gives the hold back.  The successful
                    # CAS (acquire) read the word the reserve published, so its
                    # record and fill log are visible here.
                    give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty,
                                    order_user[slot], order_fill_start[slot], order_fill_end[slot])
                    outcome[i] = DONE
                    break
                word = seen  # confirmed / expired / cancelled meanwhile: decide again
            elif state == PENDING:
                seen = atomic_cas(order_word, slot, word, (CANCEL_REQUESTED << STATE_SHIFT) | (word & ID_MASK))
                if seen == word:
                    outcome[i] = DONE  # the running reserve undoes itself
                    break
                word = seen  # the reserve published or was refused meanwhile
            else:
                outcome[i] = outcome_of(state)
                break
    return new


@njit(**_inline)
def _expire_chunk(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_deadline,
                  order_fill_start, order_fill_end, fill_offer, fill_qty, now, expired, start, stop):
    """:func:`expire_orders` for slots ``start:stop``; returns how many expired."""
    count = 0
    for slot in range(start, stop):
        # Acquire: the deadline read next is the one published with HELD.
        word = atomic_load_acquire(order_word, slot)
        if word >> STATE_SHIFT == HELD and order_deadline[slot] <= now:
            # No retry loop needed: a failed CAS means a confirm or cancel
            # won, and no word ever goes back to HELD, so re-deciding would
            # always skip it.
            if atomic_cas(order_word, slot, word, (EXPIRED << STATE_SHIFT) | (word & ID_MASK)) == word:
                give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty,
                                order_user[slot], order_fill_start[slot], order_fill_end[slot])
                expired[slot] = 1
                count += 1
    return count


@njit(**_inline)
def _recover_chunk(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                   order_fill_end, fill_offer, fill_qty, start, stop):
    """:func:`recover_orders` for slots ``start:stop``; returns how many it finished."""
    count = 0
    for slot in range(start, stop):
        word = atomic_load_acquire(order_word, slot)
        state = word >> STATE_SHIFT
        if state == PENDING or state == CANCEL_REQUESTED:
            # Give back first, then end the word: a recovery killed in
            # between finds the word unfinished and the log zeroed, so a
            # second recovery returns nothing twice.
            give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty,
                            order_user[slot], order_fill_start[slot], order_fill_end[slot])
            while True:
                final = CANCELLED_HOLD if state == CANCEL_REQUESTED else REFUSED
                seen = atomic_cas(order_word, slot, word, (final << STATE_SHIFT) | (word & ID_MASK))
                if seen == word:
                    count += 1
                    break
                # A cancel may still run: PENDING -> CANCEL_REQUESTED meanwhile.
                word = seen
                state = word >> STATE_SHIFT
                if state != PENDING and state != CANCEL_REQUESTED:
                    break  # (a reserve running during recovery: outside the spec)
    return count


# ------------------------------------------------------------ tracked kernels

# Counts (new ids, new pairs, expired, recovered) are summed per chunk into
# ``per_chunk`` (one word per prange work item, from the wrapper) and added
# up after the loop.  Not a prange reduction: Numba allocates a reduction's
# per-thread partials with np.empty, which needs the runtime these kernels
# are compiled without (_nrt=False, see _jit); each chunk owns its word, so
# no atomics are needed either, and the join publishes them.


@njit(**_inline)
def _n_chunks(n, chunk):
    return (n + chunk - 1) // chunk


def _per_chunk(n, chunk):
    return np.zeros((n + chunk - 1) // chunk, np.int64)


@njit(**_jit)
def _total(per_chunk):
    """Sum of ``per_chunk``, as a plain loop: ``per_chunk.sum()`` in a
    parallel function would become a reduction too (and need np.empty)."""
    total = 0
    for c in range(per_chunk.size):
        total += per_chunk[c]
    return total


def _claim_orders(order_word, order_id, order_slot, status, per_chunk, n_threads):
    n = order_id.size
    for c in prange(per_chunk.size):
        per_chunk[c] = _claim_chunk(order_word, order_id, order_slot, status, c * _ID_CHUNK,
                                    min((c + 1) * _ID_CHUNK, n))
    return _total(per_chunk)


def _reserve_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                     order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                     line_start, sku, qty, max_price, fill_slot, user_id, deadline, order_slot, order_index,
                     status, counters, per_chunk, n_threads):
    n = order_index.size
    n_skus = limit.size
    limit_mask = limit_key.size - 1
    for c in prange(per_chunk.size):
        pairs = 0
        stop = min(n, (c + 1) * _GENERAL_CHUNK)
        for k in range(c * _GENERAL_CHUNK, stop):
            if k + _TRACKED_PREFETCH_AHEAD < stop:
                # The cache lines of an order a few ahead (kernels.pyx,
                # _tracked_chunk, says which and why).
                ahead = order_index[k + _TRACKED_PREFETCH_AHEAD]
                slot = order_slot[ahead]
                s = sku[line_start[ahead]]
                pair = hash_slot(user_id[ahead] * n_skus + s + 1, limit_mask)
                prefetch_write(order_word, slot)
                prefetch_write(order_user, slot)
                prefetch_write(order_deadline, slot)
                prefetch_write(order_fill_start, slot)
                prefetch_write(order_fill_end, slot)
                prefetch_write(limit_key, pair)
                prefetch_write(limit_count, pair)
                prefetch_write(stock, s)
                prefetch_write(limit, s)
                prefetch_write(offer_start, s)
                prefetch_write(offer_by_priority, s)
                prefetch_write(price, s)
            order = order_index[k]
            order_status, order_pairs = take_tracked(
                stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                line_start, sku, qty, max_price, fill_slot, user_id, deadline, order_slot, counters, order)
            status[order] = order_status
            pairs += order_pairs
        per_chunk[c] = pairs
    return _total(per_chunk)


def _settle_refused(order_word, order_slot, order_index, n_threads):
    n = order_index.size
    for c in prange(_n_chunks(n, _ID_CHUNK)):
        stop = min(n, (c + 1) * _ID_CHUNK)
        for k in range(c * _ID_CHUNK, stop):
            if k + _TRACKED_PREFETCH_AHEAD < stop:  # as in _claim_chunk
                prefetch_write(order_word, order_slot[order_index[k + _TRACKED_PREFETCH_AHEAD]])
            settle_refused_slot(order_word, order_slot[order_index[k]])


def _confirm_orders(order_word, order_id, outcome, n_threads):
    n = order_id.size
    for c in prange(_n_chunks(n, _ID_CHUNK)):
        _confirm_chunk(order_word, order_id, outcome, c * _ID_CHUNK, min((c + 1) * _ID_CHUNK, n))


def _cancel_orders(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                   order_fill_end, fill_offer, fill_qty, order_id, outcome, per_chunk, n_threads):
    n = order_id.size
    for c in prange(per_chunk.size):
        per_chunk[c] = _cancel_chunk(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user,
                                     order_fill_start, order_fill_end, fill_offer, fill_qty, order_id, outcome,
                                     c * _ID_CHUNK, min((c + 1) * _ID_CHUNK, n))
    return _total(per_chunk)


def _expire_orders(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_deadline,
                   order_fill_start, order_fill_end, fill_offer, fill_qty, now, expired, per_chunk, n_threads):
    n = order_word.size
    for c in prange(per_chunk.size):
        per_chunk[c] = _expire_chunk(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user,
                                     order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty, now,
                                     expired, c * _SLOT_CHUNK, min((c + 1) * _SLOT_CHUNK, n))
    return _total(per_chunk)


def _recover_orders(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                    order_fill_end, fill_offer, fill_qty, per_chunk, n_threads):
    n = order_word.size
    for c in prange(per_chunk.size):
        per_chunk[c] = _recover_chunk(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user,
                                      order_fill_start, order_fill_end, fill_offer, fill_qty,
                                      c * _SLOT_CHUNK, min((c + 1) * _SLOT_CHUNK, n))
    return _total(per_chunk)


_claim_orders_par, _claim_orders_ser = _dispatchers(_claim_orders)
_reserve_tracked_par, _reserve_tracked_ser = _dispatchers(_reserve_tracked)
_settle_refused_par, _settle_refused_ser = _dispatchers(_settle_refused)
_confirm_orders_par, _confirm_orders_ser = _dispatchers(_confirm_orders)
_cancel_orders_par, _cancel_orders_ser = _dispatchers(_cancel_orders)
_expire_orders_par, _expire_orders_ser = _dispatchers(_expire_orders)
_recover_orders_par, _recover_orders_ser = _dispatchers(_recover_orders)


def claim_orders(order_word, order_id, order_slot, status, n_threads):
    """Claim every id of the batch in state PENDING; return how many were new
    (see :func:`kernel.reference.claim_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_claim_orders_par, _claim_orders_ser, nt,
                    (order_word, order_id, order_slot, status, _per_chunk(order_id.size, _ID_CHUNK), nt)))


def reserve_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                    order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                    line_start, sku, qty, max_price, fill_slot, user_id, deadline, order_slot, order_index,
                    status, counters, n_threads):
    """Reserve the claimed orders ``order_index``; return how many (user, SKU)
    pairs the limit table gained (see :func:`kernel.reference.reserve_tracked`)."""
    nt = _threads(n_threads)
    return int(_run(_reserve_tracked_par, _reserve_tracked_ser, nt,
                    (stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                     order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                     line_start, sku, qty, max_price, fill_slot, user_id, deadline, order_slot, order_index,
                     status, counters, _per_chunk(order_index.size, _GENERAL_CHUNK), nt), dynamic=True))


def settle_refused(order_word, order_slot, order_index, n_threads):
    """PENDING -> REFUSED (or CANCELLED where a cancel asked) for the refused
    orders ``order_index``."""
    nt = _threads(n_threads)
    _run(_settle_refused_par, _settle_refused_ser, nt, (order_word, order_slot, order_index, nt))


def confirm_orders(order_word, order_id, outcome, n_threads):
    """HELD -> CONFIRMED for each id (see :func:`kernel.reference.confirm_orders`)."""
    nt = _threads(n_threads)
    _run(_confirm_orders_par, _confirm_orders_ser, nt, (order_word, order_id, outcome, nt))


def cancel_orders(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                  order_fill_end, fill_offer, fill_qty, order_id, outcome, n_threads):
    """Cancel each id; return how many ids were new to the table (see
    :func:`kernel.reference.cancel_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_cancel_orders_par, _cancel_orders_ser, nt,
                    (stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                     order_fill_end, fill_offer, fill_qty, order_id, outcome, _per_chunk(order_id.size, _ID_CHUNK),
                     nt)))


def expire_orders(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_deadline,
                  order_fill_start, order_fill_end, fill_offer, fill_qty, now, expired, n_threads):
    """HELD -> EXPIRED for every hold whose deadline is ``<= now``; return how
    many (see :func:`kernel.reference.expire_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_expire_orders_par, _expire_orders_ser, nt,
                    (stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_deadline,
                     order_fill_start, order_fill_end, fill_offer, fill_qty, now, expired,
                     _per_chunk(order_word.size, _SLOT_CHUNK), nt)))


def recover_orders(stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                   order_fill_end, fill_offer, fill_qty, n_threads):
    """After a crash, while no reserve runs: finish every unfinished order;
    return how many (see :func:`kernel.reference.recover_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_recover_orders_par, _recover_orders_ser, nt,
                    (stock, offer_sku, limit, limit_key, limit_count, order_word, order_user, order_fill_start,
                     order_fill_end, fill_offer, fill_qty, _per_chunk(order_word.size, _SLOT_CHUNK), nt)))


# ---------------------------------------------------------------- reserve_one


@njit(**_jit)
def reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                counters, s, units, max_p, order_id, user, deadline):
    """One order of one line, start to finish: budgets, claim, take,
    publish.  Returns its status, or a negative ``*_FULL`` code when a
    budget is spent (then nothing changed).

    The Numba-callable entry point: a serial ``@njit`` dispatcher, so users'
    own ``@njit`` code can call it (``reserve_one(*state, s, units, max_p,
    order_id, user, deadline)`` with ``state`` a tuple of the 16 arrays).
    From Python, :func:`bind_reserve_one` is much cheaper per call."""
    seen = find_order(order_word, order_id)
    if seen >= 0:  # ids never leave the table: a duplicate for sure, and it needs no budget
        return CANCELLED if atomic_load(order_word, seen) >> STATE_SHIFT == CANCELLED_EARLY else DUPLICATE
    n_fills = offer_start[s + 1] - offer_start[s]
    # Only a (user, SKU) pair not in the table yet needs room there.
    new_pair = limit[s] != NO_LIMIT and limit_slot(limit_key, user * limit.size + s + 1, False) == -1
    if take_budget(counters, ORDERS_LEFT, 1) < 0:
        return ORDER_TABLE_FULL
    if new_pair and take_budget(counters, PAIRS_LEFT, 1) < 0:
        take_budget(counters, ORDERS_LEFT, -1)
        return LIMIT_TABLE_FULL
    if take_budget(counters, FILLS_LEFT, n_fills) < 0:
        take_budget(counters, ORDERS_LEFT, -1)
        if new_pair:
            take_budget(counters, PAIRS_LEFT, -1)
        return FILL_LOG_FULL
    slot = claim_order(order_word, order_id, PENDING)
    if slot < 0:  # a concurrent reserve of the same id claimed it after find_order
        take_budget(counters, ORDERS_LEFT, -1)
        take_budget(counters, FILLS_LEFT, -n_fills)
        if new_pair:
            take_budget(counters, PAIRS_LEFT, -1)
        return CANCELLED if atomic_load(order_word, -1 - slot) >> STATE_SHIFT == CANCELLED_EARLY else DUPLICATE
    # The reference's take_budget(counters, FILL_CURSOR, -n_fills): with a
    # negative amount that is a fetch-add returning the old value (the cursor
    # is never negative), so it is done as one: no CAS retries on the word
    # every reserve_one bumps.
    first_fill = atomic_add(counters, FILL_CURSOR, n_fills)
    status = ACCEPTED
    took = 0
    # take_tracked's pre-checks, in its order.
    if offers_available(stock, price, offer_start, offer_by_priority, s, max_p, units) < units:
        status = OUT_OF_STOCK
    elif limit_room(limit, limit_key, limit_count, user, s) < units:
        status = LIMIT_EXCEEDED
    else:
        # The record, before the first unit is taken (see take_tracked).
        order_user[slot] = user
        order_deadline[slot] = deadline
        order_fill_start[slot] = first_fill
        order_fill_end[slot] = first_fill + n_fills
        took = take_limit(limit, limit_key, limit_count, user, s, units)
        if not took & TOOK:
            status = LIMIT_EXCEEDED
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, s, units, max_p,
                                first_fill)
            if missing:
                give_back_limit(limit, limit_key, limit_count, user, s, missing)
                give_back_fills(stock, offer_sku, limit, limit_key, limit_count, fill_offer, fill_qty, user,
                                first_fill, first_fill + n_fills)
                atomic_add(counters, ROLLBACKS, 1)
                status = OUT_OF_STOCK
            else:
                status = publish_or_undo(stock, offer_sku, limit, limit_key, limit_count, order_word, fill_offer,
                                         fill_qty, counters, slot, user, first_fill, first_fill + n_fills)
    if new_pair and not took & NEW_PAIR:
        take_budget(counters, PAIRS_LEFT, -1)  # someone else added the pair (or it was not reached)
    if status != ACCEPTED and status != CANCELLED:
        settle_refused_slot(order_word, slot)
    return status



# The bound reserve_one (below) holds the GIL: its work is tens of ns, and
# releasing and re-taking the GIL around it cost ~50 ns a call (measured).
@njit(**dict(_jit, nogil=False))
def _reserve_one_at(state, s, units, max_p, order_id, user, deadline):
    """:func:`reserve_one` on the state whose 16 arrays are described at the
    address ``state``: 32 int64 words, (data address, size) per array in
    reserve_one's order.  Only plain integers cross the call."""
    t = array_at(state, 32)
    return reserve_one(array_at(t[0], t[1]), array_at(t[2], t[3]), array_at(t[4], t[5]), array_at(t[6], t[7]),
                       array_at(t[8], t[9]), array_at(t[10], t[11]), array_at(t[12], t[13]),
                       array_at(t[14], t[15]), array_at(t[16], t[17]), array_at(t[18], t[19]),
                       array_at(t[20], t[21]), array_at(t[22], t[23]), array_at(t[24], t[25]),
                       array_at(t[26], t[27]), array_at(t[28], t[29]), array_at(t[30], t[31]),
                       s, units, max_p, order_id, user, deadline)


_ONE_SIGNATURE = (numba.int64,) * 7
_one_entry = None
# reserve_one's arguments that it writes (by position): array_at makes
# writable arrays, so a read-only one must be refused up front.
_ONE_WRITES = (0, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)


def _reserve_one_entry():
    """The compiled wrapper of ``_reserve_one_at(int64 x 7)``: what the
    dispatcher calls once it has picked the overload, without the picking."""
    global _one_entry
    if _one_entry is None:
        _reserve_one_at.compile(_ONE_SIGNATURE)  # loads from the on-disk cache when there
        try:
            _one_entry = _reserve_one_at.overloads[_ONE_SIGNATURE].entry_point
        except (AttributeError, KeyError):  # a Numba without it: the dispatcher, ~200 ns slower
            _one_entry = _reserve_one_at
    return _one_entry


def bind_reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                     order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                     counters):
    """:func:`reserve_one` with the inventory's state bound: a callable
    ``(s, units, max_p, order_id, user, deadline) -> status`` (positional).

    Calling the dispatcher with 22 arguments costs ~1 us of type dispatch
    and array unboxing a call.  Instead the arrays' addresses and sizes go
    into one 32-word table, once, and the callable is the compiled wrapper
    of ``_reserve_one_at(table_address, <6 ints>)`` with the address bound
    by ``functools.partial``: a call converts 7 ints and nothing else.
    It is compiled once per process (or loaded from the on-disk cache), not
    per binding.  The callable keeps the arrays alive (``.state``).

    Like every kernel it checks nothing per call: the caller passes a valid
    SKU and ``units > 0``; ints are converted as ``int()`` would (no type
    dispatch).  The arrays are checked once, here, because from now on
    nothing but their addresses is used: 1-D C-contiguous native int64,
    writable where reserve_one writes."""
    arrays = (stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
              order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
              counters)
    table = np.empty(2 * len(arrays), np.int64)
    for k, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype == np.int64 and a.dtype.isnative
                and a.flags.c_contiguous and (a.flags.writeable or k not in _ONE_WRITES)):
            raise TypeError("bind_reserve_one: argument %d must be a 1-D C-contiguous native int64 array%s"
                            % (k, ", writable" if k in _ONE_WRITES else ""))
        table[2 * k] = a.ctypes.data
        table[2 * k + 1] = a.size
    call = functools.partial(_reserve_one_entry(), table.ctypes.data)
    call.state = (arrays, table)  # the table and what it points into live as long as the callable
    return call
