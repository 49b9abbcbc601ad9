"""Stock primitives every family builds on: take exactly, take up to, count
what is available, give back; and answer the orders no stock can fill.

Mirrored by ``kernel/_cython/stock.pxi`` and ``kernel/_numba/stock.py`` (same
names, same arguments).  Compiled, each change of a stock word is one CAS or
fetch-add; here, one statement.
"""

from ..codes import OUT_OF_STOCK

def take_exactly(stock, offer, units):
    """Take exactly ``units`` from ``stock[offer]`` or nothing; return whether
    it took (compiled: CAS loop that gives up, without writing, once the
    stock is too small)."""
    if stock[offer] < units:
        return False
    stock[offer] -= units
    return True


def take_up_to(stock, offer, units):
    """Take ``min(stock[offer], units)`` and return it (compiled: CAS loop)."""
    got = min(stock[offer], units)
    stock[offer] -= got
    return got


def offers_available(stock, price, offer_start, offer_by_priority, s, max_p, enough):
    """Units SKU ``s`` has now in offers priced ``<= max_p``, counted only
    until ``enough`` (read-only)."""
    total = 0
    for k in range(offer_start[s], offer_start[s + 1]):
        offer = offer_by_priority[k]
        if price[offer] > max_p:
            break  # offers are in price order: the rest are dearer still
        total += stock[offer]
        if total >= enough:
            break
    return total


def give_back(stock, offer, qty, n_threads):
    """Return ``qty[k]`` units to ``stock[offer[k]]`` for every ``k``
    (compiled: atomic fetch-add)."""
    for k in range(len(offer)):
        stock[offer[k]] += qty[k]


def answer_short_orders(units, line_start, sku, qty, refused, status):
    """Answer the orders no stock can fill: each order ``i`` with
    ``refused[i]`` set and a line asking for more than ``units[sku[line]]``
    (the units its SKU has over every offer, any price) gets
    ``status[i] = OUT_OF_STOCK`` and ``refused[i]`` cleared.  Returns how
    many it answered.

    For the G4 re-run of refused orders (:func:`kernel.backends.rerun_refused_after_rollback`):
    the kernels' read-only stock pre-check, which comes before any write,
    would refuse such an order again as ``OUT_OF_STOCK``, since stock only
    shrinks while the re-run runs; so the re-run skips it.  Read-only in
    ``units``; one thread.  (Compiled: one pass over the refused orders'
    lines, where numpy gathered and compared every line of the batch and
    scattered the result to the orders.)"""
    if len(line_start) < len(refused) + 1:
        raise ValueError(f"line_start: {len(line_start)} entries for {len(refused)} orders")
    answered = 0
    for i in range(len(refused)):
        if not refused[i]:
            continue
        for line in range(line_start[i], line_start[i + 1]):
            if units[sku[line]] < qty[line]:
                refused[i] = False
                status[i] = OUT_OF_STOCK
                answered += 1
                break
    return answered
