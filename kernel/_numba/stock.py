"""Stock words: take exactly, take up to, count what is available, give back.

Mirrors :mod:`kernel.reference.stock` function for function (same names,
same arguments) and ``kernel/_cython/stock.pxi``.  The helpers are inlined
into the kernels of the other families at the Numba IR level (``_inline``);
:func:`give_back` is a batch kernel (dispatch: :mod:`._jit`).
"""

from numba import prange

from ._jit import _dispatchers, _inline, _run, _threads, njit
from .atomics import atomic_add, atomic_cas, atomic_load, load

__all__ = ["take_exactly", "take_up_to", "offers_available", "give_back"]


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
def offers_available(stock, price, offer_start, offer_by_priority, s, max_p, enough):
    """Units SKU ``s`` has now in offers priced ``<= max_p``, counted only
    until ``enough`` (read-only: relaxed loads, no writes)."""
    # A while loop, not range(): a Numba range loop keeps a trip count
    # beside the index (two induction variables, spills); and unchecked
    # loads (atomics.py load) inside, where k and offer come from the
    # inventory's own ranges.  offer_start[s] stays a[i]: reserve_one's
    # @njit entry passes s unchecked.  With take_order's loops likewise
    # (kernel/_numba/general.py, the figures there) the general path's
    # kernel call went 0.81-0.85x -> 1.07-1.12x Cython's.
    total = 0
    k = offer_start[s]
    end = offer_start[s + 1]
    while k < end:
        offer = load(offer_by_priority, k)
        if load(price, offer) > max_p:
            break  # offers are in price order: the rest are dearer still
        total += atomic_load(stock, offer)
        if total >= enough:
            break
        k += 1
    return total


def _give_back(stock, offer, qty, n_threads):
    for k in prange(offer.size):
        atomic_add(stock, offer[k], qty[k])  # fetch-add: takes may be running concurrently


_give_back_par, _give_back_ser = _dispatchers(_give_back)


def give_back(stock, offer, qty, n_threads):
    """Return ``qty[k]`` units to ``stock[offer[k]]`` for every ``k`` (atomic fetch-add)."""
    nt = _threads(n_threads)
    _run(_give_back_par, _give_back_ser, nt, (stock, offer, qty, nt))
