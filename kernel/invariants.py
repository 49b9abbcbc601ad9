"""Checks of the kernel's guarantees after a run, used by the tests and by
every benchmark round (a number from a wrong result is a bug, not a figure).

G1 no negative stock, G2 conservation, G3 all-or-nothing with fills only from
eligible offers, G4 no under-selling (optional: it re-runs each refused order
through the reference, so it is for test-sized batches).  For tracked
inventories, :func:`check_tracked` checks the whole state at once.
"""

import numpy as np

from . import codes
from .codes import Status

__all__ = ["InvariantViolation", "check_run", "accepted_alone", "check_tracked"]


class InvariantViolation(AssertionError):
    """A run broke one of the kernel's guarantees."""


def _require(ok, message):
    if not ok:
        raise InvariantViolation(message() if callable(message) else message)


def _sum_by(index, values, size):
    # Exact int64 sums (bincount's float weights would round above 2**53).
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, index, values)
    return out


def check_run(inv, orders, result, initial_stock, *, under_selling=False):
    """Raise :class:`InvariantViolation` unless the run kept G1-G3 (and G4).

    Parameters
    ----------
    inv : Inventory
        The inventory after the run (nothing else may have touched it).
    orders : OrderBatch
    result : Result
    initial_stock : numpy.ndarray
        ``inv.stock`` copied before the run.
    under_selling : bool
        Also check G4 (slow: one reference run per refused order).
    """
    stock = inv.stock.copy()
    status = result.status
    # Tracked inventories also answer DUPLICATE, LIMIT_EXCEEDED and CANCELLED.
    decisions = list(Status) if inv.tracks_orders else [Status.ACCEPTED, Status.OUT_OF_STOCK]
    known = np.isin(status, decisions)
    _require(known.all(), lambda: f"status[{int(np.argmin(known))}] is not a decision")
    _require(stock.size == 0 or stock.min() >= 0, "G1: negative stock")
    fills = result.fills
    _require(fills.qty.size == 0 or fills.qty.min() > 0, "a fill row moved no units")
    taken = _sum_by(fills.offer, fills.qty, inv.n_offers)
    moved = np.flatnonzero(initial_stock != stock + taken)
    _require(moved.size == 0, f"G2: offer {moved[:1]} initial != final + filled")
    _require(result.accepted[fills.order].all(), "G3: a refused order has fills")
    _require(np.array_equal(inv.offer_sku[fills.offer], orders.sku[fills.line]), "a fill from another SKU")
    if orders.max_price is not None:
        _require((inv.price[fills.offer] <= orders.max_price[fills.line]).all(), "a fill above the price limit")
    per_line = _sum_by(fills.line, fills.qty, orders.n_lines)
    line_accepted = result.accepted[orders.line_order]
    _require(np.array_equal(per_line[line_accepted], orders.qty[line_accepted]), "G3: an accepted line is short")
    _require(not per_line[~line_accepted].any(), "G3: a refused line has units")
    if under_selling:
        refused = np.flatnonzero(status == Status.OUT_OF_STOCK)
        if inv.one_offer_per_sku and orders.max_price is None:
            fits = _fits_alone_single_offer(orders, stock)
            _require(not fits[refused].any(),
                     lambda: f"G4: refused order {refused[fits[refused]][0]} fits the final stock")
        else:
            for order in refused:
                _require(not accepted_alone(inv, orders, order, stock),
                         f"G4: refused order {order} fits the final stock")


def _fits_alone_single_offer(orders, stock):
    # With one offer per SKU and no price limits an order fits alone iff, for
    # every SKU it names, its total quantity of that SKU fits the stock.
    key = orders.line_order * stock.size + orders.sku
    groups, group_of_line = np.unique(key, return_inverse=True)
    demand = _sum_by(group_of_line, orders.qty, groups.size)
    short = demand > stock[groups % stock.size]
    fits = np.ones(orders.n_orders, dtype=bool)
    fits[groups[short] // stock.size] = False
    return fits


def accepted_alone(inv, orders, order, stock):
    """Would the reference accept ``order`` alone against ``stock``?"""
    from .inventory import Inventory
    from .orders import OrderBatch

    lines = slice(int(orders.line_start[order]), int(orders.line_start[order + 1]))
    alone = Inventory.from_offers(inv.offer_sku, stock, inv.price, inv.n_skus, backend="reference")
    batch = OrderBatch(orders.sku[lines], orders.qty[lines], [0, lines.stop - lines.start],
                       max_price=None if orders.max_price is None else orders.max_price[lines])
    return bool(alone.reserve(batch).accepted[0])


def check_tracked(inv, initial_stock, *, restocked=None, may_have_lost=0):
    """Raise :class:`InvariantViolation` unless a tracked inventory's whole
    state is consistent (call it when no call is running on it).

    Checks: no negative stock; no id in two slots; no order left unfinished
    (PENDING / CANCEL_REQUESTED); conservation per offer: ``initial_stock +
    restocked == stock + units that HELD and CONFIRMED orders took`` (or up
    to ``may_have_lost`` units fewer in stock, for processes killed
    mid-order, see :meth:`Inventory.recover`); orders that hold nothing
    logged nothing; and every (user, SKU) cap count equals what that user's
    HELD and CONFIRMED orders took of the SKU, and is within the cap.
    """
    state = inv.state
    stock = inv.stock.copy()
    words = state.order_word.copy()
    _require(stock.min(initial=0) >= 0, lambda: f"G1: negative stock at offer {int(stock.argmin())}")
    used = np.flatnonzero(words)
    ids, states = words[used] & codes.ID_MASK, words[used] >> codes.STATE_SHIFT
    _require(np.unique(ids).size == ids.size, "an order id sits in two slots")
    unfinished = np.isin(states, (codes.PENDING, codes.CANCEL_REQUESTED))
    _require(not unfinished.any(), lambda: f"order {ids[unfinished.argmax()]} is unfinished")
    holding = used[np.isin(states, (codes.HELD, codes.CONFIRMED))]
    entry, owner = _log_entries(state, holding)
    qty, offer = state.fill_qty[entry], state.fill_offer[entry]
    moved = qty > 0
    qty, offer, owner = qty[moved], offer[moved], owner[moved]
    held = _sum_by(offer, qty, stock.size)
    expected = np.asarray(initial_stock, dtype=np.int64) + (0 if restocked is None else restocked)
    gap = expected - stock - held
    _require(gap.min(initial=0) >= 0, lambda: f"G2: offer {int(gap.argmin())} has more units than it should")
    _require(gap.sum() <= may_have_lost, lambda: f"G2: {int(gap.sum())} units went missing "
                                                  f"(at most {may_have_lost} may)")
    idle_entry, _ = _log_entries(state, used[~np.isin(states, (codes.HELD, codes.CONFIRMED))])
    _require(not state.fill_qty[idle_entry].any(), "an order that holds nothing still logs fills")
    if inv.has_limits and may_have_lost == 0:
        sku = inv.offer_sku[offer]
        capped = state.limit[sku] != codes.NO_LIMIT
        key = state.order_user[holding][owner[capped]] * inv.n_skus + sku[capped] + 1
        held_keys, where = np.unique(key, return_inverse=True)
        held_units = _sum_by(where, qty[capped], held_keys.size)
        counted = state.limit_key != 0
        keys, counts = state.limit_key[counted], state.limit_count[counted]
        order = np.argsort(keys)
        keys, counts = keys[order], counts[order]
        # Every pair that holds units is in the table, with exactly that count.
        _require(np.isin(held_keys, keys).all(), "an order holds capped units its user's pair does not count")
        expected_counts = np.zeros(keys.size, dtype=np.int64)
        expected_counts[np.searchsorted(keys, held_keys)] = held_units
        bad = np.flatnonzero(counts != expected_counts)
        _require(bad.size == 0, lambda: f"cap count of pair key {keys[bad[0]]} is {counts[bad[0]]}, its orders "
                                        f"hold {expected_counts[bad[0]]}")
        over = counts > state.limit[(keys - 1) % inv.n_skus]
        _require(not over.any(), lambda: f"pair key {keys[over.argmax()]} is over its cap")


def _log_entries(state, slots):
    """The fill-log entries of the orders in ``slots`` and, per entry, the
    position in ``slots`` of its order."""
    starts, ends = state.order_fill_start[slots], state.order_fill_end[slots]
    lengths = ends - starts
    owner = np.repeat(np.arange(slots.size), lengths)
    within = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + within, owner
