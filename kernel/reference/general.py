"""Carts (several lines per order, all or nothing), several offers per SKU and
per-line price limits.

Mirrored by ``kernel/_cython/general.pxi`` and ``kernel/_numba/general.py``.
``*_carts*`` are the one-offer-per-SKU twins without price limits: every line
takes exactly its ``qty`` from offer ``sku[line]``.  ``*_general*`` match each
line to its SKU's eligible offers in priority order and record what they took
in ``taken`` (one slot per offer of the line's SKU, from ``slot_start``).
"""

from ..codes import ACCEPTED, OUT_OF_STOCK, ROLLBACKS
from .stock import offers_available, take_exactly, take_up_to

def take_cart(stock, line_start, sku, qty, counters, order):
    """One-offer-per-SKU twin of :func:`take_order`: every line takes exactly
    its ``qty`` from offer ``sku[line]``, all or nothing.  Returns
    ``(status, rolled back)`` as :func:`take_order` does."""
    lines = range(line_start[order], line_start[order + 1])
    # No read-only pre-check (take_order has one): each line is read once,
    # by its take, and a line that does not fit gives back the lines before
    # it (a rollback).  Why: kernel/_cython/general.pxi's take_cart.
    for line in lines:
        if not take_exactly(stock, sku[line], qty[line]):
            if line == lines.start:
                return OUT_OF_STOCK, 0  # nothing taken yet: no rollback
            for earlier in range(line_start[order], line):
                stock[sku[earlier]] += qty[earlier]
            counters[ROLLBACKS] += 1
            return OUT_OF_STOCK, 1
    return ACCEPTED, 0


def reserve_carts(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Concurrent multi-line path for one offer per SKU (see
    :func:`reserve_general` for the rollback and re-run rule and what it
    returns)."""
    rolled_back = reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, 1)
    return rolled_back if n_threads <= 1 else 0


def reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Multi-line path for one offer per SKU whose outcome equals arrival
    order.  Runs serially whatever ``n_threads`` says: orders with lines on
    several SKUs cannot be split by SKU without changing the outcome.
    Returns the number of orders it rolled back (always serial)."""
    rolled_back = 0
    for order in order_index:
        status[order], rollback = take_cart(stock, line_start, sku, qty, counters, order)
        rolled_back += rollback
    return rolled_back


def line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, enough):
    """Units the line could take now from its eligible offers, counted only
    until ``enough`` (a read-only pre-check: it writes nothing)."""
    return offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line], enough)


def roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken, counters, order):
    """Give back every unit the order took and clear its ``taken`` slots."""
    for line in range(line_start[order], line_start[order + 1]):
        base = offer_start[sku[line]]
        for j in range(slot_start[line + 1] - slot_start[line]):
            got = taken[slot_start[line] + j]
            if got:
                stock[offer_by_priority[base + j]] += got
                taken[slot_start[line] + j] = 0
    counters[ROLLBACKS] += 1


def take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start, taken,
               counters, order):
    """Fill every line of one order from its SKU's eligible offers in priority
    order, all or nothing.  Returns ``(status, rolled back)``: ``rolled
    back`` is 1 where the order took something and gave it back (adding one
    to ``counters[ROLLBACKS]``), else 0: two lines of one SKU that each
    passed the pre-check alone, or another thread or call that took first.
    A batch run on one thread counts its own so that the facade's G4 rule
    re-runs nothing for them (an order gives back before the next of the
    batch is decided; :func:`kernel.backends.rerun_refused_after_rollback`)."""
    lines = range(line_start[order], line_start[order + 1])
    # Pre-check with reads only: an order that cannot fit costs loads, not
    # writes (and not a rollback another order could trip over).
    for line in lines:
        if line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, qty[line]) < qty[line]:
            return OUT_OF_STOCK, 0
    for line in lines:
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
            return OUT_OF_STOCK, 1
    return ACCEPTED, 0


def reserve_general(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                    order_index, taken, status, counters, n_threads):
    """Concurrent general path: several offers per SKU, several lines per
    order, price limits.  Compiled kernels run the orders of ``order_index``
    on ``n_threads`` threads; the facade re-runs, in arrival order, the
    rejected orders of any batch during which a rollback happened (so a
    rollback never makes another order fail for stock that is there at the
    end).

    Returns its *serial rollbacks*: the number of orders it rolled back
    where it ran on one thread (``n_threads <= 1``), else 0.  The facade's
    re-run skips those (see :func:`take_order`); rollbacks on several
    threads are not counted, since there an order's units held for a
    moment may have refused an order of another thread, and the re-run is
    needed whoever rolled back.
    """
    rolled_back = reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty,
                                          max_price, slot_start, order_index, taken, status, counters, 1)
    return rolled_back if n_threads <= 1 else 0


def reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                            slot_start, order_index, taken, status, counters, n_threads):
    """General path whose outcome equals arrival order.

    Compiled kernels partition orders by ``sku[line_start[order]] % n_threads``;
    that is only the serial outcome when every order has one line, so the
    facade passes ``n_threads=1`` for batches with multi-line orders.
    Returns its serial rollbacks (:func:`reserve_general`).
    """
    rolled_back = 0
    for order in order_index:
        status[order], rollback = take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty,
                                             max_price, slot_start, taken, counters, order)
        rolled_back += rollback
    return rolled_back if n_threads <= 1 else 0
