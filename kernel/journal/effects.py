"""Which state words each call changed: the payload of its record.

Every record carries the counters (among them the record's own sequence
number, ``JOURNAL_SEQ``).  Every function runs right after the kernel call, while the journal's lock
keeps every other state-changing call of this inventory out, so the current
value of a word is its value at this record's place in the sequence.  A
record may carry words that did not change (their value is then the one
replay already has); it must never miss one that did.  The tests check that
replaying the journal rebuilds the live state word for word.

What a call can write (see the tracked kernels in :mod:`kernel.reference`):

=================  ==============================================================
reserve (tracked)  the order-table rows of its ids, the fill-log range it took
                   (counter FILL_CURSOR before/after), the stock of the offers in
                   that range, the (user, SKU) pairs of its capped lines, counters
reserve_one        the same for one id (the offers of its SKU)
reserve (plain)    the stock of the offers its accepted orders took from, counters
release, restock   the stock of the offers named
confirm            the rows of its ids
cancel, expire,    the rows of its ids, their fill-log entries, the stock of the
recover            offers in those entries, the pairs of their capped SKUs, counters
=================  ==============================================================

Cost: a few numpy passes over the call's ids and fills (hash probes to find
the rows); no pass over the whole state.
"""

import numpy as np

from .. import codes as spec
from ._fast import probe
from .records import Effects

FILL = ("fill_offer", "fill_qty")
_ROW_WORDS = np.arange(spec.ORDER_STRIDE)   # an order slot is one record of ORDER_STRIDE words
_PAIR_WORDS = np.arange(spec.PAIR_STRIDE)   # a (user, SKU) slot is PAIR_STRIDE words


def order_words(arrays):
    """The id/state word of every order slot (a strided view of the order table)."""
    return arrays["order_table"][spec.ORDER_WORD_AT::spec.ORDER_STRIDE]


def _rows(effects, arrays, slots):
    """The whole records of the order slots ``slots``."""
    effects.indexed(("order_table",), (slots[:, None] * spec.ORDER_STRIDE + _ROW_WORDS).ravel(), arrays)

# Below this many offers the whole stock array is one RANGE section (cheaper
# than finding the distinct offers a batch touched).
_WHOLE_STOCK = 4096


def _stock(effects, arrays, offers):
    stock = arrays["stock"]
    if stock.size <= max(_WHOLE_STOCK, offers.size):
        effects.range(("stock",), 0, stock.size, arrays)
    elif 16 * offers.size > stock.size:
        touched = np.zeros(stock.size, dtype=bool)  # distinct offers without a sort
        touched[offers] = True
        effects.indexed(("stock",), np.flatnonzero(touched), arrays)
    else:
        effects.indexed(("stock",), offers, arrays)  # repeats are harmless (and cheaper than finding them)


def _pairs(effects, arrays, users, skus):
    """The limit-table slots of the (user, SKU) pairs of capped SKUs."""
    limit = arrays["limit"]
    capped = limit[skus] != spec.NO_LIMIT
    if capped.any():
        keys = users[capped] * limit.size + skus[capped] + 1
        pair_keys = arrays["limit_table"][spec.PAIR_KEY_AT::spec.PAIR_STRIDE]
        slots = probe(pair_keys, keys)  # repeated pairs repeat a slot: harmless
        slots = slots[slots >= 0]
        effects.indexed(("limit_table",), (slots[:, None] * spec.PAIR_STRIDE + _PAIR_WORDS).ravel(), arrays)


def _counters(effects, arrays):
    effects.range(("counters",), 0, arrays["counters"].size, arrays)


def reserve_tracked(arrays, ids, users, skus, line_order, cursor_before):
    effects = Effects()
    slots = probe(order_words(arrays), ids, spec.ID_MASK)
    _rows(effects, arrays, slots[slots >= 0])
    cursor_after = int(arrays["counters"][spec.FILL_CURSOR])
    effects.range(FILL, cursor_before, cursor_after, arrays)
    _stock(effects, arrays, arrays["fill_offer"][cursor_before:cursor_after])
    if users is not None:
        _pairs(effects, arrays, users[line_order], skus)
    _counters(effects, arrays)
    return effects


def reserve_one(arrays, order_id, user, sku, cursor_before):
    effects = Effects()
    slot = probe(order_words(arrays), np.array([order_id], dtype=np.int64), spec.ID_MASK)
    _rows(effects, arrays, slot[slot >= 0])
    cursor_after = int(arrays["counters"][spec.FILL_CURSOR])
    effects.range(FILL, cursor_before, cursor_after, arrays)
    offer_start = arrays["offer_start"]
    _stock(effects, arrays, arrays["offer_by_priority"][offer_start[sku]:offer_start[sku + 1]])
    _pairs(effects, arrays, np.array([user], dtype=np.int64), np.array([sku], dtype=np.int64))
    _counters(effects, arrays)
    return effects


def stock_only(arrays, offers):
    """reserve (untracked), release, restock."""
    effects = Effects()
    _stock(effects, arrays, np.asarray(offers, dtype=np.int64))
    _counters(effects, arrays)
    return effects


def rows(arrays, ids):
    """confirm: only the order words change (the whole row is cheap)."""
    effects = Effects()
    slots = probe(order_words(arrays), ids, spec.ID_MASK)
    _rows(effects, arrays, slots[slots >= 0])
    _counters(effects, arrays)
    return effects


def rows_and_fills(arrays, slots):
    """cancel, expire, recover: rows that may have given their fills back."""
    effects = Effects()
    slots = slots[slots >= 0]
    _rows(effects, arrays, slots)
    records = arrays["order_table"].reshape(-1, spec.ORDER_STRIDE)[slots]
    fills = records[:, spec.ORDER_FILLS_AT]  # first << FILL_COUNT_BITS | count
    starts = fills >> spec.FILL_COUNT_BITS
    lengths = fills & spec.MAX_ORDER_FILLS
    entry = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    effects.indexed(FILL, entry, arrays)
    offers = arrays["fill_offer"][entry]
    _stock(effects, arrays, offers)
    owner_user = np.repeat(records[:, spec.ORDER_USER_AT], lengths)
    _pairs(effects, arrays, owner_user, arrays["offer_sku"][offers])
    _counters(effects, arrays)
    return effects


def unfinished_slots(arrays):
    """Slots ``recover`` will finish (read before it runs): unfinished orders,
    and ended (CANCELLED / EXPIRED) ones whose fill entries a process killed
    inside cancel or expire left logged."""
    state = order_words(arrays) >> spec.STATE_SHIFT
    unfinished = (state == spec.PENDING) | (state == spec.CANCEL_REQUESTED)
    ended = np.flatnonzero((state == spec.CANCELLED_HOLD) | (state == spec.EXPIRED))
    if ended.size:
        fills = arrays["order_table"][ended * spec.ORDER_STRIDE + spec.ORDER_FILLS_AT]
        first, count = fills >> spec.FILL_COUNT_BITS, fills & spec.MAX_ORDER_FILLS
        # Logged entries before each range's end minus before its start.
        logged = np.concatenate(([0], np.cumsum(arrays["fill_qty"] != 0)))
        unfinished[ended[logged[first + count] > logged[first]]] = True
    return np.flatnonzero(unfinished)
