"""Multi-line orders: carts (one offer per SKU) and the general path (several
offers per SKU in priority order, price limits), concurrent and in arrival
order.

Mirrors :mod:`kernel.reference.general` function for function and
``kernel/_cython/general.pxi`` (private helpers with the same names:
``_carts_chunk``, ``_general_chunk``, ``_gather_general_part``, ``_general_part``).  Dispatch
(parallel / serial, threads, scratch buffers): :mod:`._jit`.
"""

import numpy as np
from numba import prange

from ..codes import ACCEPTED, OUT_OF_STOCK, ROLLBACKS
from ._jit import _CHUNK, _GENERAL_CHUNK, _PART_BLOCK, _dispatchers, _inline, _jit, _run, _scratch, _threads, njit
from .atomics import atomic_add, atomic_load, load, prefetch_write, store
from .single import _part_of
from .stock import offers_available, take_exactly, take_up_to

__all__ = ["take_cart", "reserve_carts", "reserve_carts_ordered", "line_available", "roll_back_order", "take_order",
           "reserve_general", "reserve_general_ordered"]

# Carts have ~3 lines each, so fewer orders ahead cover as many misses
# (general.pxi CART_PREFETCH_AHEAD: measured on 4M SKUs, 40 ~ 64 > 16 > 6).
_CART_PREFETCH_AHEAD = 40
# ... but only for stocks of at least this many offers (general.pxi
# CART_PREFETCH_MIN_OFFERS: a smaller stock stays in cache, where the
# prefetch loop costs more than it hides).
_CART_PREFETCH_MIN_OFFERS = 1 << 21


# take_cart and take_order count a rollback in ``rollbacks[0]`` (a
# one-element array the caller owns; general.pxi's ``*rollbacks`` pointer),
# touched only on the rollback path.  Returning it with the status instead
# (status + 256, the chunk loop adding ``code >> 8``) kept a sum live across
# the carts loop: LLVM no longer unswitched the loop on ``ahead`` and the
# carts kernels ran 11% more instructions (the gate's carts cases).


def _cart_ahead(stock):
    return _CART_PREFETCH_AHEAD if stock.size >= _CART_PREFETCH_MIN_OFFERS else 0


# ---------------------------------------------------------------- carts


# Not inlined at the IR level, unlike the other per-order helpers (_jit's
# _inline says why they are): as a plain call LLVM is left to decide, and
# the carts kernels ran 14% fewer instructions (the gate's carts/concurrent
# and carts/ordered cases) and faster.  Measured in one process, this
# take_cart and an IR-inlined twin alternating round by round, every round
# checked (``python bench/ab_take_cart.py --scale 0.1 --rounds 31``, 1M
# carts): the twin's time over this one's, median (quartiles), rounds this
# one won: concurrent 1 thread 1.05 (1.01-1.09) 24/31, 2 threads 1.09
# (1.01-1.17) 23/31, ordered 1.08 (0.95-1.12) 21/31 (an earlier run of the
# same comparison: 1.10, 1.11, 1.04).
@njit(**_jit)
def take_cart(stock, line_start, sku, qty, counters, rollbacks, order):
    """One-offer-per-SKU twin of :func:`take_order`: every line takes exactly
    its ``qty`` from offer ``sku[line]``, all or nothing; adds one to
    ``rollbacks[0]`` where it gave back what it took."""
    # load(a, i) is a[i] without Numba's negative-index fix-up (atomics.py):
    # ``order`` and every line are valid, the facade checked the batch.
    first = load(line_start, order)
    last = load(line_start, order + 1)
    # while loops, not ``for line in range(first, last)``: Numba lowers a
    # range loop as a trip count max(0, last - first) counted down beside
    # the index, two induction variables that LLVM does not merge; in this
    # loop the extra register cost spills and reloads per line (objdump:
    # ~24 instructions a taken line against Cython's ~16; with while loops
    # ~19), and the carts kernel ran at 0.91x Cython's on one thread, 1.01x
    # with while loops here (1.05x with the chunk loop's too).
    # No read-only pre-check: each line is read once, by its take
    # (kernel/_cython/general.pxi's take_cart says why and what it measured).
    line = first
    while line < last:
        if not take_exactly(stock, load(sku, line), load(qty, line)):
            if line == first:
                return OUT_OF_STOCK  # nothing taken yet: no rollback
            # Hand back the earlier lines (fetch-add: other threads may be
            # CAS-ing the same words).
            earlier = first
            while earlier < line:
                atomic_add(stock, load(sku, earlier), load(qty, earlier))
                earlier += 1
            atomic_add(counters, ROLLBACKS, 1)
            atomic_add(rollbacks, 0, 1)  # atomic: the threads of a call share it
            return OUT_OF_STOCK
        line += 1
    return ACCEPTED


@njit(**_inline)
def _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, rollbacks, start, stop, ahead):
    """Decide orders ``order_index[start:stop]`` (kernels.pyx ``_carts_chunk``),
    prefetching ``ahead`` orders ahead (0: none)."""
    # Unchecked load/store (atomics.py): k < stop <= order_index.size, and
    # orders and lines were validated by the facade.  while loops, not range:
    # see take_cart.
    k = start
    while k < stop:
        if ahead != 0 and k + ahead < stop:
            # Prefetch the stock words of a cart a few orders ahead: each line
            # is a random cache miss, and overlapping them is most of the speed
            # once the stock outgrows the cache.
            j = load(order_index, k + ahead)
            line = load(line_start, j)
            end = load(line_start, j + 1)
            while line < end:
                prefetch_write(stock, load(sku, line))
                line += 1
        order = load(order_index, k)
        store(status, order, take_cart(stock, line_start, sku, qty, counters, rollbacks, order))
        k += 1


@njit(**_jit)
def _carts_range(stock, line_start, sku, qty, order_index, status, counters, rollbacks, start, stop, ahead):
    """:func:`_carts_chunk` compiled twice, with and without the prefetch
    (kernels.pyx ``_carts_range``), rather than left to LLVM's loop
    unswitching, which a small change to the loop can turn off: the test of
    ``ahead`` in every order then cost the carts kernels 7-11% more
    instructions."""
    if ahead == 0:
        _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, rollbacks, start, stop, 0)
    else:
        _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, rollbacks, start, stop, ahead)


def _reserve_carts(stock, line_start, sku, qty, order_index, status, counters, rollbacks, n_threads, ahead):
    n = order_index.size
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        _carts_range(stock, line_start, sku, qty, order_index, status, counters, rollbacks, c * _CHUNK,
                     min((c + 1) * _CHUNK, n), ahead)


_reserve_carts_par, _reserve_carts_ser = _dispatchers(_reserve_carts)


def reserve_carts(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Concurrent multi-line path for one offer per SKU (see
    :func:`kernel.reference.reserve_carts`); returns its serial rollbacks."""
    nt = _threads(n_threads)
    rollbacks = np.zeros(1, np.int64)
    _run(_reserve_carts_par, _reserve_carts_ser, nt,
         (stock, line_start, sku, qty, order_index, status, counters, rollbacks, nt, _cart_ahead(stock)), dynamic=True)
    return int(rollbacks[0]) if nt <= 1 else 0  # serial rollbacks: see the reference


def reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Multi-line path for one offer per SKU whose outcome equals arrival order
    (serial whatever ``n_threads`` says: carts span SKUs, so they cannot be
    split by SKU); returns its serial rollbacks."""
    rollbacks = np.zeros(1, np.int64)
    _carts_range(stock, line_start, sku, qty, order_index, status, counters, rollbacks, 0, order_index.size,
                 _cart_ahead(stock))
    return int(rollbacks[0])


# ---------------------------------------------------- the general path


@njit(**_inline)
def line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, enough):
    """Units the line could take now from its eligible offers, counted only
    until ``enough`` (read-only: relaxed loads, no writes)."""
    # Both are inlined at the IR level, so this costs nothing: take_order's
    # serial kernel compiles to as many instructions as with the loop inline.
    return offers_available(stock, price, offer_start, offer_by_priority, load(sku, line), load(max_price, line),
                            enough)


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
               counters, rollbacks, order):
    """Fill every line of one order from its SKU's eligible offers in priority
    order, all or nothing; return the order's status.  Adds one to
    ``rollbacks[0]`` where it gave back what it took."""
    # while loops and unchecked load/store, as in take_cart (the reasons are
    # there): lines, SKUs and slots were validated by the facade, offers and
    # ranges are the inventory's own.  Marketplace, concurrent, one thread,
    # with offers_available's walk likewise (kernel/_numba/stock.py): 0.85x
    # Cython before, 1.0x after through the facade (paired medians); the
    # kernel call alone 0.81-0.85x -> 1.07-1.12x.
    first = load(line_start, order)
    last = load(line_start, order + 1)
    # Pre-check with reads only: an order that cannot fit costs loads, not
    # writes (and not a rollback another order could trip over).
    line = first
    while line < last:
        if line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line,
                          load(qty, line)) < load(qty, line):
            return OUT_OF_STOCK
        line += 1
    line = first
    while line < last:
        need = load(qty, line)
        limit = load(max_price, line)
        slot = load(slot_start, line)
        s = load(sku, line)
        base = load(offer_start, s)
        m = load(offer_start, s + 1) - base
        j = 0
        while j < m:
            offer = load(offer_by_priority, base + j)
            if load(price, offer) > limit:
                break
            got = take_up_to(stock, offer, need)
            store(taken, slot + j, got)
            need -= got
            if need == 0:
                break
            j += 1
        if need:
            roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken, counters, order)
            atomic_add(rollbacks, 0, 1)  # atomic: the threads of a call share it
            return OUT_OF_STOCK
        line += 1
    return ACCEPTED


@njit(**_jit)
def _general_chunk(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                   order_index, taken, status, counters, rollbacks, start, stop):
    """Decide orders ``order_index[start:stop]`` (kernels.pyx ``_general_chunk``)."""
    k = start
    while k < stop:  # while, and unchecked load/store: see take_order
        order = load(order_index, k)
        store(status, order, take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty,
                                        max_price, slot_start, taken, counters, rollbacks, order))
        k += 1


def _reserve_general(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                     order_index, taken, status, counters, rollbacks, n_threads):
    n = order_index.size
    n_chunks = (n + _GENERAL_CHUNK - 1) // _GENERAL_CHUNK
    for c in prange(n_chunks):
        _general_chunk(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                       order_index, taken, status, counters, rollbacks, c * _GENERAL_CHUNK,
                       min(n, (c + 1) * _GENERAL_CHUNK))


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
                  order_index, taken, status, counters, rollbacks, n, t, n_parts, mine):
    """Serve, in arrival order, the orders whose first line's SKU is in part ``t``."""
    # Only serial-equivalent when each order has one line (the facade passes
    # n_threads=1 otherwise).  Gathered per block (into ``mine``, this
    # thread's scratch row) as in _single_part.
    for b in range((n + _PART_BLOCK - 1) // _PART_BLOCK):
        m = _gather_general_part(line_start, sku, order_index, b * _PART_BLOCK, min((b + 1) * _PART_BLOCK, n),
                                 t, n_parts, mine)
        for k in range(m):
            if take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                          slot_start, taken, counters, rollbacks, mine[k]) != ACCEPTED:
                status[mine[k]] = OUT_OF_STOCK  # pre-filled with ACCEPTED (false sharing)


def _reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                             slot_start, order_index, taken, status, counters, rollbacks, scratch, n_threads):
    # Bucket by the SKU of the order's first line; the serial outcome only
    # when orders have one line (the facade passes n_threads=1 otherwise).
    n = order_index.size
    if n_threads <= 1:
        _general_chunk(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                       order_index, taken, status, counters, rollbacks, 0, n)
        return
    for k in range(n):
        status[order_index[k]] = ACCEPTED  # see _serve_gathered
    for t in prange(n_threads):
        # signed part number, see _reserve_single_ordered
        _general_part(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                      order_index, taken, status, counters, rollbacks, n, np.int64(t), n_threads, scratch[t, 0])


_reserve_general_par, _reserve_general_ser = _dispatchers(_reserve_general)
_reserve_general_ordered_par, _reserve_general_ordered_ser = _dispatchers(_reserve_general_ordered)


def reserve_general(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                    order_index, taken, status, counters, n_threads):
    """Concurrent general path (see :func:`kernel.reference.reserve_general`);
    returns its serial rollbacks."""
    nt = _threads(n_threads)
    rollbacks = np.zeros(1, np.int64)
    _run(_reserve_general_par, _reserve_general_ser, nt,
         (stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
          order_index, taken, status, counters, rollbacks, nt), dynamic=True)
    return int(rollbacks[0]) if nt <= 1 else 0  # serial rollbacks: see the reference


def reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                            slot_start, order_index, taken, status, counters, n_threads):
    """General path whose outcome equals arrival order; returns its serial
    rollbacks."""
    nt = _threads(n_threads)
    rollbacks = np.zeros(1, np.int64)
    _run(_reserve_general_ordered_par, _reserve_general_ordered_ser, nt,
         (stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
          order_index, taken, status, counters, rollbacks, _scratch(nt), nt))
    return int(rollbacks[0]) if nt <= 1 else 0  # serial rollbacks: see the reference
