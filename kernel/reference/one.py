"""One order of one line, start to finish, with the least overhead: the
function behind ``Inventory.reserve_one`` and the entry point compiled code
calls (``kernel._numba.kernels.reserve_one`` from ``@njit`` code,
``reserve_one_c`` from Cython).

Mirrored by ``kernel/_cython/one.pxi`` and ``kernel/_numba/one.py``.  It is
:func:`.tracked.claim_orders` + :func:`.tracked.take_tracked` +
:func:`.tracked.settle_refused` for a batch of one, with the budgets taken
per call.
"""

import functools

from ..codes import (ACCEPTED, CANCELLED, CANCELLED_EARLY, DUPLICATE, FILL_LOG_FULL, FILLS_LEFT, FILL_CURSOR,
                     LIMIT_EXCEEDED, LIMIT_TABLE_FULL, NEW_PAIR, NO_LIMIT, ORDER_TABLE_FULL, ORDERS_LEFT,
                     ORDER_DEADLINE_AT, ORDER_FILLS_AT, ORDER_STRIDE, ORDER_USER_AT, ORDER_WORD_AT, FILL_COUNT_BITS,
                     OUT_OF_STOCK, PAIRS_LEFT, PENDING, ROLLBACKS, STATE_SHIFT, TOOK)
from .stock import offers_available
from .tracked import (claim_order, clear_record, find_order, give_back_fills, give_back_limit, limit_room, limit_slot,
                      publish_or_undo, settle_refused_slot, take_budget, take_limit, take_line)

def reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                order_table, fill_offer, fill_qty, counters, s, units, max_p, order_id, user, deadline):
    """One order of one line, start to finish: budgets, claim, take,
    publish.  Returns its status, or a negative ``*_FULL`` code when a
    budget is spent (then nothing changed)."""
    seen = find_order(order_table, order_id)
    if seen >= 0:  # ids never leave the table: a duplicate for sure, and it needs no budget
        early = order_table[ORDER_STRIDE * seen + ORDER_WORD_AT] >> STATE_SHIFT == CANCELLED_EARLY
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
    if slot < 0:
        take_budget(counters, ORDERS_LEFT, -1)
        take_budget(counters, FILLS_LEFT, -n_fills)
        if new_pair:
            take_budget(counters, PAIRS_LEFT, -1)
        early = order_table[ORDER_STRIDE * (-1 - slot) + ORDER_WORD_AT] >> STATE_SHIFT == CANCELLED_EARLY
        return CANCELLED if early else DUPLICATE
    # The budget promised these entries, so the cursor stays in the log
    # (take_budget with a negative amount is a fetch-add returning the old value).
    first_fill = take_budget(counters, FILL_CURSOR, -n_fills)
    status = ACCEPTED
    took = 0
    if offers_available(stock, price, offer_start, offer_by_priority, s, max_p, units) < units:
        status = OUT_OF_STOCK  # the pre-checks of take_tracked, in its order
    elif limit_room(limit, limit_table, user, s) < units:
        status = LIMIT_EXCEEDED
    else:
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
                counters[ROLLBACKS] += 1
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


def bind_reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                     order_table, fill_offer, fill_qty, counters):
    """:func:`reserve_one` with the inventory's state bound: a callable
    ``(s, units, max_p, order_id, user, deadline) -> status``.  (Compiled
    backends bind the arrays once, so a call converts no array.)"""
    return functools.partial(reserve_one, stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                             order_table, fill_offer, fill_qty, counters)
