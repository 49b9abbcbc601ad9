"""Stock primitives every family builds on: take exactly, take up to, count
what is available, give back.

Mirrored by ``kernel/_cython/stock.pxi`` and ``kernel/_numba/stock.py`` (same
names, same arguments).  Compiled, each change of a stock word is one CAS or
fetch-add; here, one statement.
"""

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
