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
from ..codes import Status
from ..reference.tracked import find_order, limit_slot
from . import _fast
from ._fast import probe
from .records import ADD, Effects

FILL = ("fill_offer", "fill_qty")
_ROW_WORDS = np.arange(spec.ORDER_STRIDE)   # an order slot is one record of ORDER_STRIDE words
_PAIR_WORDS = np.arange(spec.PAIR_STRIDE)   # a (user, SKU) slot is PAIR_STRIDE words


def order_words(arrays):
    """The id/state word of every order slot (a strided view of the order table)."""
    return arrays["order_table"][spec.ORDER_WORD_AT::spec.ORDER_STRIDE]


def _row(effects, arrays, slot):
    """The whole record of one order slot: ORDER_STRIDE consecutive words,
    one RANGE (a service's reserve_one, confirm or cancel of one id)."""
    effects.range(("order_table",), slot * spec.ORDER_STRIDE, (slot + 1) * spec.ORDER_STRIDE, arrays)


def _rows(effects, arrays, slots):
    """The whole records of the order slots ``slots``."""
    if slots.size == 1:
        _row(effects, arrays, int(slots[0]))
        return
    effects.indexed(("order_table",), (slots[:, None] * spec.ORDER_STRIDE + _ROW_WORDS).ravel(), arrays)

# Below this many offers the whole stock array is one RANGE section (cheaper
# than finding the distinct offers a batch touched), unless the call touched
# at most _FEW_OFFERS: their words then (a cancel of one order would
# otherwise carry up to 4,096 stock words).
_WHOLE_STOCK = 4096
_FEW_OFFERS = 64


def _stock(effects, arrays, offers):
    stock = arrays["stock"]
    if offers.size <= _FEW_OFFERS:
        effects.indexed(("stock",), offers, arrays)  # repeats are harmless
    elif stock.size <= max(_WHOLE_STOCK, offers.size):
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
# 1) splits at bit 32, its high part being nearly constant.  A tracked
# reserve's pair rows add the cap count's change (ADD) instead of storing it.
ORDER_FIELDS = ((spec.ORDER_WORD_AT, 0), (spec.ORDER_WORD_AT, spec.STATE_SHIFT), (spec.ORDER_USER_AT, 0),
                (spec.ORDER_DEADLINE_AT, 0), (spec.ORDER_FILLS_AT, 0), (spec.ORDER_FILLS_AT, spec.FILL_COUNT_BITS))
PAIR_CHANGE_FIELDS = ((spec.PAIR_KEY_AT, 0), (spec.PAIR_KEY_AT, 32), (spec.PAIR_COUNT_AT | ADD, 0))
_ACCEPTED = np.int8(Status.ACCEPTED)
_OUT_OF_STOCK = np.int8(Status.OUT_OF_STOCK)
_LIMIT_EXCEEDED = np.int8(Status.LIMIT_EXCEEDED)
_CANCELLED = np.int8(Status.CANCELLED)


def order_rows(report, status):
    """``(accepted slots, their rows, other claimed slots, their rows or
    None, derived)``: the order records a tracked reserve's claimed orders
    hold after it, from the batch and the report alone (no load from the
    order table; the tests compare them with the table).

    * Accepted: ``HELD << STATE_SHIFT | id``, the user, the deadline and the
      fills word (``take_tracked`` and ``publish_or_undo`` write exactly
      these).
    * The others, when every one is refused (OUT_OF_STOCK, LIMIT_EXCEEDED;
      ``derived``): a refused order's record holds its id in state REFUSED
      and nothing else (zeros: refused by a read-only pre-check, it never
      wrote them; refused later, it cleared them once it had given
      everything back, ``clear_record``).  Otherwise (a cancel ended one
      during the call) their rows are None: the caller reads them from the
      table.

    Compiled for big calls (:func:`kernel.journal._fast.order_rows`, the
    same arrays)."""
    fast = _fast.order_rows(report, status)
    if fast is not None:
        return fast
    claimed = report.order_slot >= 0
    accepted = claimed & (status == _ACCEPTED)
    rows = np.empty((int(np.count_nonzero(accepted)), spec.ORDER_STRIDE), dtype=np.int64)
    rows[:, spec.ORDER_WORD_AT] = (np.int64(spec.HELD) << spec.STATE_SHIFT) | report.order_id[accepted]
    rows[:, spec.ORDER_USER_AT] = report.user_id[accepted]
    rows[:, spec.ORDER_DEADLINE_AT] = report.deadline[accepted]
    rows[:, spec.ORDER_FILLS_AT] = report.order_fills[accepted]
    others = claimed & ~accepted
    refused = others & ((status == _OUT_OF_STOCK) | (status == _LIMIT_EXCEEDED))
    derived = bool(np.array_equal(refused, others))
    other_rows = None
    if derived:
        other_rows = np.zeros((int(np.count_nonzero(others)), spec.ORDER_STRIDE), dtype=np.int64)
        other_rows[:, spec.ORDER_WORD_AT] = (np.int64(spec.REFUSED) << spec.STATE_SHIFT) | report.order_id[others]
    return report.order_slot[accepted], rows, report.order_slot[others], other_rows, derived


def pair_changes(report, status, n_skus):
    """``(slots, rows)`` of the (user, SKU) pairs a tracked reserve counted
    lines against: each line's pair key, and what its line added to the
    pair's cap count: its qty where its order was accepted, else 0 (a refused
    line gave back all it counted).  Repeats add up at replay.  Compiled for
    big calls (:func:`kernel.journal._fast.pair_rows`)."""
    fast = _fast.pair_rows(report, status, n_skus)
    if fast is not None:
        return fast
    counted = report.pair_slot >= 0
    owner = np.flatnonzero(counted) if report.line_order is None else report.line_order[counted]
    rows = np.empty((int(np.count_nonzero(counted)), spec.PAIR_STRIDE), dtype=np.int64)
    rows[:, spec.PAIR_KEY_AT] = report.user_id[owner] * np.int64(n_skus) + report.sku[counted] + 1
    rows[:, spec.PAIR_COUNT_AT] = np.where(status[owner] == _ACCEPTED, report.qty[counted], 0)
    return report.pair_slot[counted], rows


def reserve_tracked(arrays, report, status, cursor_before):
    """A tracked reserve: ``report`` is the facade's
    :class:`~kernel.lifecycle.ReserveReport` of the call, ``status`` its
    statuses.  Nothing here loads a record or a pair from the tables: the
    rows a call writes are known from the batch and the report, and gathering
    them back (random cache lines, 2 per order) was most of the capture's
    time (about 20 of 35 ms per 1M orders in batches of 10,000).  They are
    derived when the record is packed, after the call lock
    (:meth:`~kernel.journal.records.Effects.rows_later`): under it, only the
    two work arrays the next call reuses are copied.

    * Order rows, in two sections (a refused order's row is mostly zeros:
      kept apart, each column's range stays narrow): the accepted orders'
      and the rest of the claimed ones, which are the refused ones' id and
      state, except where a cancel ended an order during the call: those
      rows are read from the table (:func:`order_rows`).
    * Stock: not an after-image but a SUBTRACT section over the fill-log
      range, which the record carries anyway (what each accepted line took;
      a rolled-back take is zeroed in the log before its units go back).
    * (user, SKU) pairs (:func:`pair_changes`): every line of a capped SKU
      that counted (or tried to count) against its cap got its pair's slot
      from the kernels, found or inserted, so no key is probed again.  The
      key is stored and the count's change added.  Only those lines can
      change a pair; a line the kernel never reached, refused by a read-only
      pre-check, changed nothing.  Where two new pairs collide, which one
      got the first slot depends on the kernel threads' timing, so the slots
      come from the kernels, never from probing again at replay.  A slot
      repeats where a pair has several lines.
    """
    effects = Effects()
    n_skus = arrays["limit"].size
    # Nothing the rows are derived from is state: copy the two work arrays
    # the next call reuses, and derive the rows when the record is packed,
    # after the call lock (the batch is the caller's, ``status`` the
    # Result's: neither changes before the call returns, which is after the
    # packing).
    kept = report._replace(order_slot=report.order_slot.copy(), pair_slot=report.pair_slot.copy())
    derived = []

    def order_section(which):
        if not derived:
            derived.append(order_rows(kept, status))
        slots, rows, other_slots, other_rows, _ = derived[0]
        return (slots, rows) if which == 0 else (other_slots, other_rows)
    effects.rows_later("order_table", spec.ORDER_STRIDE, ORDER_FIELDS, lambda: order_section(0))
    # Only a call with a rollback can have a claimed order a cancel ended
    # (publish_or_undo gives its takes back): the others' records are then
    # read from the table, now, under the lock.
    if report.rolled_back and np.any((status == _CANCELLED) & (report.order_slot >= 0)):
        others = report.order_slot[(report.order_slot >= 0) & (status != _ACCEPTED)]
        effects.rows("order_table", spec.ORDER_STRIDE, others, ORDER_FIELDS, arrays)
    else:
        effects.rows_later("order_table", spec.ORDER_STRIDE, ORDER_FIELDS, lambda: order_section(1))
    cursor_after = int(arrays["counters"][spec.FILL_CURSOR])
    effects.range(FILL, cursor_before, cursor_after, arrays)
    effects.subtract("stock", "fill_offer", "fill_qty", cursor_before, cursor_after)
    effects.rows_later("limit_table", spec.PAIR_STRIDE, PAIR_CHANGE_FIELDS, lambda: pair_changes(kept, status, n_skus))
    _counters(effects, arrays)
    return effects


def reserve_one(arrays, order_id, user, sku, cursor_before):
    """One order: its row, its fill-log range, the stock of its SKU's
    offers, its (user, SKU) pair if the SKU is capped, counters.

    Scalar throughout (the reference's probes, contiguous slices): every
    section is a few words, where the vectorised helpers the batch calls
    use (numpy probes, index arithmetic, the whole stock array below
    ``_WHOLE_STOCK`` offers) cost ~100 us of numpy calls per order and made
    ``reserve_one`` from several threads CPU-bound before group commit could
    help."""
    effects = Effects()
    slot = find_order(arrays["order_table"], order_id)
    if slot >= 0:
        _row(effects, arrays, slot)
    cursor_after = int(arrays["counters"][spec.FILL_CURSOR])
    effects.range(FILL, cursor_before, cursor_after, arrays)
    offer_start = arrays["offer_start"]
    _stock(effects, arrays, arrays["offer_by_priority"][int(offer_start[sku]):int(offer_start[sku + 1])])
    limit = arrays["limit"]
    if limit[sku] != spec.NO_LIMIT:
        pair = limit_slot(arrays["limit_table"], user * limit.size + sku + 1, False)
        if pair >= 0:
            effects.range(("limit_table",), pair * spec.PAIR_STRIDE, (pair + 1) * spec.PAIR_STRIDE, arrays)
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
    if slots.size == 1:  # one id (a service's cancel): its fill entries are one RANGE
        first, stop = int(starts[0]), int(starts[0] + lengths[0])
        effects.range(FILL, first, stop, arrays)
        offers = arrays["fill_offer"][first:stop]
        owner_user = np.full(offers.size, records[0, spec.ORDER_USER_AT])
    else:
        entry = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        effects.indexed(FILL, entry, arrays)
        offers = arrays["fill_offer"][entry]
        owner_user = np.repeat(records[:, spec.ORDER_USER_AT], lengths)
    _stock(effects, arrays, offers)
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
