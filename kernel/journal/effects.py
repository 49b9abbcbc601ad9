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
reserve (tracked)  the order-table rows of the slots it claimed, the fill-log
                   range it took (counter FILL_CURSOR before/after), the stock
                   decrement that range implies (a SUBTRACT section, not an
                   after-image), the (user, SKU) pair slots the kernels
                   counted its capped lines against, counters
reserve_one        the same for one id (the offers of its SKU)
reserve (plain)    the stock of the offers its accepted orders took from, counters
release, restock   the stock of the offers named
confirm            the rows of its ids
cancel, expire,    the rows of its ids, their fill-log entries, the stock of the
recover            offers in those entries, the pairs of their capped SKUs, counters
=================  ==============================================================

Cost: a few numpy passes over the call's ids and fills (hash probes to find
the rows, except for a tracked reserve, whose order and pair slots the
kernels reported to the facade); no pass over the whole state.
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


# Column layouts of whole rows (records.Effects.rows): each column gets its own
# frame of reference, so a word is split where its parts vary apart.  An
# order word is state << STATE_SHIFT | id (1 byte + 2-4 bytes, not 8); a fills
# word is first << FILL_COUNT_BITS | count; a pair key (user * n_skus + sku +
# 1) splits at bit 32, its high part being nearly constant.
ORDER_FIELDS = ((spec.ORDER_WORD_AT, 0), (spec.ORDER_WORD_AT, spec.STATE_SHIFT), (spec.ORDER_USER_AT, 0),
                (spec.ORDER_DEADLINE_AT, 0), (spec.ORDER_FILLS_AT, 0), (spec.ORDER_FILLS_AT, spec.FILL_COUNT_BITS))
PAIR_FIELDS = ((spec.PAIR_KEY_AT, 0), (spec.PAIR_KEY_AT, 32), (spec.PAIR_COUNT_AT, 0))


def reserve_tracked(arrays, order_slot, pair_slot, accepted, cursor_before):
    """A tracked reserve: ``order_slot`` is the slot each order claimed (-1:
    a duplicate, which changed nothing), ``pair_slot`` the limit-table slot
    each line's (user, SKU) pair got (-1: none), ``accepted`` which orders
    were: the facade's ``last_order_slot`` and ``last_pair_slot``.

    * Order rows: the claimed slots' whole rows, accepted and refused ones in
      two sections (a refused order's row is mostly zeros: kept apart, each
      column's range stays narrow).  The slots come from the facade's claim,
      so no id is probed again.
    * Stock: not an after-image but a SUBTRACT section over the fill-log
      range, which the record carries anyway (what each accepted line took;
      a rolled-back take is zeroed in the log before its units go back).  No
      pass over the touched offers here, no bytes in the record.
    * (user, SKU) pairs: after-images of the limit-table slots the kernels
      reported: every line of a capped SKU that counted (or tried to count)
      against its cap gets its pair's slot, found or inserted, so no key is
      probed again (probing cost about 15 ms per 1M orders).  Only those
      lines can change a pair; a line the kernel never reached, refused by
      a read-only pre-check, changed nothing.  Why not deltas of the cap
      counts from the fills: a line refused by its cap (or out of stock
      after counting) still leaves its pair in the table with count 0, and
      where two new pairs collide, which one got the first slot depends on
      the kernel threads' timing; re-inserting at replay could then put a
      pair in another slot, and replay must rebuild the table word for word.
      A slot repeats where a pair has several lines (harmless).
    """
    effects = Effects()
    claimed = order_slot >= 0
    effects.rows("order_table", spec.ORDER_STRIDE, order_slot[claimed & accepted], ORDER_FIELDS, arrays)
    effects.rows("order_table", spec.ORDER_STRIDE, order_slot[claimed & ~accepted], ORDER_FIELDS, arrays)
    cursor_after = int(arrays["counters"][spec.FILL_CURSOR])
    effects.range(FILL, cursor_before, cursor_after, arrays)
    effects.subtract("stock", "fill_offer", "fill_qty", cursor_before, cursor_after)
    effects.rows("limit_table", spec.PAIR_STRIDE, pair_slot[pair_slot >= 0], PAIR_FIELDS, arrays)
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
