"""Numba kernels: mirrors :mod:`kernel.reference` function for function, with
the same names and arguments (and ``kernel/_cython/kernels.pyx``).

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

import os
import types as _pytypes

import numba
import numba.core.cpu
import numpy as np
from numba import njit, prange

from .atomics import atomic_add, atomic_cas, atomic_load, load, prefetch_write, store

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
    total = 0
    s = sku[line]
    for k in range(offer_start[s], offer_start[s + 1]):
        offer = offer_by_priority[k]
        if price[offer] > max_price[line]:
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
