"""One order of one line, start to finish: :func:`reserve_one`, the
``@njit`` entry point users call from their own ``@njit`` code, and
:func:`bind_reserve_one`, the cheapest way to call it from Python.

Mirrors :mod:`kernel.reference.one` and ``kernel/_cython/one.pxi``
(``reserve_one_c``, which users ``cimport``).  It is built from the helpers
of :mod:`.stock` and :mod:`.tracked`, inlined.
"""

import functools

import numba
import numpy as np

from ..codes import (ACCEPTED, CANCELLED, CANCELLED_EARLY, DUPLICATE, FILL_CURSOR, FILL_LOG_FULL, FILLS_LEFT,
                     LIMIT_EXCEEDED, LIMIT_TABLE_FULL, NEW_PAIR, NO_LIMIT, ORDER_TABLE_FULL, ORDERS_LEFT,
                     FILL_COUNT_BITS, ORDER_DEADLINE_AT, ORDER_FILLS_AT, ORDER_STRIDE, ORDER_USER_AT, ORDER_WORD_AT,
                     OUT_OF_STOCK, PAIRS_LEFT, PENDING, ROLLBACKS, STATE_SHIFT, TOOK)
from ._jit import _jit, njit
from .atomics import array_at, atomic_add, atomic_load
from .stock import offers_available
from .tracked import (claim_order, clear_record, find_order, give_back_fills, give_back_limit, limit_room, limit_slot,
                      publish_or_undo, settle_refused_slot, take_budget, take_limit, take_line)

__all__ = ["reserve_one", "bind_reserve_one"]


@njit(**_jit)
def reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                fill_offer, fill_qty, counters, s, units, max_p, order_id, user, deadline):
    """One order of one line, start to finish: budgets, claim, take,
    publish.  Returns its status, or a negative ``*_FULL`` code when a
    budget is spent (then nothing changed).

    The Numba-callable entry point: a serial ``@njit`` dispatcher, so users'
    own ``@njit`` code can call it (``reserve_one(*state, s, units, max_p,
    order_id, user, deadline)`` with ``state`` a tuple of the 11 arrays).
    From Python, :func:`bind_reserve_one` is much cheaper per call."""
    seen = find_order(order_table, order_id)
    if seen >= 0:  # ids never leave the table: a duplicate for sure, and it needs no budget
        early = atomic_load(order_table, ORDER_STRIDE * seen + ORDER_WORD_AT) >> STATE_SHIFT == CANCELLED_EARLY
        return CANCELLED if early else DUPLICATE
    n_fills = offer_start[s + 1] - offer_start[s]
    # Only a (user, SKU) pair not in the table yet needs room there.
    new_pair = limit[s] != NO_LIMIT and limit_slot(limit_table, user * limit.size + s + 1, False) == -1
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
    slot = claim_order(order_table, order_id, PENDING)
    if slot < 0:  # a concurrent reserve of the same id claimed it after find_order
        take_budget(counters, ORDERS_LEFT, -1)
        take_budget(counters, FILLS_LEFT, -n_fills)
        if new_pair:
            take_budget(counters, PAIRS_LEFT, -1)
        early = atomic_load(order_table, ORDER_STRIDE * (-1 - slot) + ORDER_WORD_AT) >> STATE_SHIFT == CANCELLED_EARLY
        return CANCELLED if early else DUPLICATE
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
    elif limit_room(limit, limit_table, user, s) < units:
        status = LIMIT_EXCEEDED
    else:
        # The record, before the first unit is taken (see take_tracked).
        record = ORDER_STRIDE * slot
        order_table[record + ORDER_USER_AT] = user
        order_table[record + ORDER_DEADLINE_AT] = deadline
        order_table[record + ORDER_FILLS_AT] = first_fill << FILL_COUNT_BITS | n_fills
        took = take_limit(limit, limit_table, user, s, units)
        if not took & TOOK:
            status = LIMIT_EXCEEDED
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, s, units, max_p,
                                first_fill)
            if missing:
                give_back_limit(limit, limit_table, user, s, missing)
                give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user,
                                first_fill, first_fill + n_fills)
                atomic_add(counters, ROLLBACKS, 1)
                status = OUT_OF_STOCK
            else:
                status = publish_or_undo(stock, offer_sku, limit, limit_table, order_table, fill_offer,
                                         fill_qty, counters, slot, user, first_fill, first_fill + n_fills)
        if status == LIMIT_EXCEEDED or status == OUT_OF_STOCK:
            clear_record(order_table, slot)  # as take_tracked: a refused record is its id and state only
    if new_pair and not took & NEW_PAIR:
        take_budget(counters, PAIRS_LEFT, -1)  # someone else added the pair (or it was not reached)
    if status != ACCEPTED and status != CANCELLED:
        settle_refused_slot(order_table, slot)
    return status


# The bound reserve_one (below) holds the GIL: its work is tens of ns, and
# releasing and re-taking the GIL around it cost ~50 ns a call (measured).
@njit(**dict(_jit, nogil=False))
def _reserve_one_at(state, s, units, max_p, order_id, user, deadline):
    """:func:`reserve_one` on the state whose 11 arrays are described at the
    address ``state``: 22 int64 words, (data address, size) per array in
    reserve_one's order.  Only plain integers cross the call."""
    t = array_at(state, 22)
    return reserve_one(array_at(t[0], t[1]), array_at(t[2], t[3]), array_at(t[4], t[5]), array_at(t[6], t[7]),
                       array_at(t[8], t[9]), array_at(t[10], t[11]), array_at(t[12], t[13]),
                       array_at(t[14], t[15]), array_at(t[16], t[17]), array_at(t[18], t[19]),
                       array_at(t[20], t[21]), s, units, max_p, order_id, user, deadline)


_ONE_SIGNATURE = (numba.int64,) * 7
_one_entry = None
# reserve_one's arguments that it writes (by position): array_at makes
# writable arrays, so a read-only one must be refused up front.
_ONE_WRITES = (0, 6, 7, 8, 9, 10)


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


def bind_reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                     fill_offer, fill_qty, counters):
    """:func:`reserve_one` with the inventory's state bound: a callable
    ``(s, units, max_p, order_id, user, deadline) -> status`` (positional).

    Calling the dispatcher with 17 arguments costs ~1 us of type dispatch
    and array unboxing a call.  Instead the arrays' addresses and sizes go
    into one 22-word table, once, and the callable is the compiled wrapper
    of ``_reserve_one_at(table_address, <6 ints>)`` with the address bound
    by ``functools.partial``: a call converts 7 ints and nothing else.
    It is compiled once per process (or loaded from the on-disk cache), not
    per binding.  The callable keeps the arrays alive (``.state``).

    Like every kernel it checks nothing per call: the caller passes a valid
    SKU and ``units > 0``; ints are converted as ``int()`` would (no type
    dispatch).  The arrays are checked once, here, because from now on
    nothing but their addresses is used: 1-D C-contiguous native int64,
    writable where reserve_one writes."""
    arrays = (stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table, fill_offer,
              fill_qty, counters)
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
