"""Tracked orders: idempotent ids, per-user limits, the hold lifecycle and
crash recovery.

Mirrors :mod:`kernel.reference.tracked` (the state, the codes and every
function; same results for ``n_threads=1`` down to the hash-table layouts)
and ``kernel/_cython/tracked.pxi`` (private helpers with the same names:
``_claim_chunk``, ``_confirm_chunk``, ...).  The reference is the spec; the
comments here are about what the compiled version adds: which word changes
by which atomic, and why that order.  Every shared word (stock, an order
record's id/state word, a pair's key and count, counters) changes only by
CAS or fetch-add; a record's plain fields (user, deadline, fill range, the fill log) are
written by the one thread that owns them at the time and published by the
CAS that moves the order word on (acq_rel, atomics.py).  Dispatch (parallel
/ serial, threads): :mod:`._jit`.
"""

import numpy as np
from numba import prange

from ..codes import (ACCEPTED, ALREADY_CANCELLED, ALREADY_CONFIRMED, ALREADY_EXPIRED, CANCEL_REQUESTED, CANCELLED,
                     CANCELLED_EARLY, CANCELLED_HOLD, CONFIRMED, DONE, DUPLICATE, EXPIRED, FILL_CURSOR,
                     HASH_MULTIPLIER, HELD, ID_MASK, IN_FLIGHT, LIMIT_EXCEEDED, NEW_PAIR, NO_LIMIT, OUT_OF_STOCK,
                     PENDING, REFUSAL_BITS, REFUSED, FILL_COUNT_BITS, MAX_ORDER_FILLS, ORDER_DEADLINE_AT,
                     ORDER_FILLS_AT, ORDER_STRIDE, ORDER_USER_AT,
                     ORDER_WORD_AT, PAIR_COUNT_AT, PAIR_KEY_AT, PAIR_STRIDE, REMEMBERED, ROLLBACKS, STATE_SHIFT, TOOK,
                     UNKNOWN, WAS_REFUSED)
from ._jit import _GENERAL_CHUNK, _dispatchers, _inline, _jit, _run, _threads, njit
from .atomics import (atomic_add, atomic_cas, atomic_exchange, atomic_load, atomic_load_acquire,
                      atomic_store_release, load, prefetch_write, store)
from .stock import offers_available, take_up_to

__all__ = ["hash_slot", "take_budget", "take_budgets", "claim_order", "find_order", "limit_slot", "limit_room",
           "take_limit", "take_limit_at", "give_back_limit", "record_fills", "clear_record", "give_back_fills",
           "take_line", "publish_or_undo", "settle_refused_slot", "line_end", "take_tracked", "claim_and_reserve",
           "claim_orders", "reserve_tracked", "settle_refused", "outcome_of", "confirm_orders", "cancel_orders",
           "expire_orders", "recover_orders"]

# Tracked orders ahead whose cache lines reserve_tracked prefetches
# (kernels.pyx: TRACKED_PREFETCH_AHEAD).
_TRACKED_PREFETCH_AHEAD = 8
# Ids ahead whose home slot claim_and_reserve's claims prefetch, and refused
# orders ahead whose word settle_refused prefetches (kernels.pyx:
# CLAIM_PREFETCH_AHEAD, SETTLE_PREFETCH_AHEAD; the figures are there).
_CLAIM_PREFETCH_AHEAD = 16
_SETTLE_PREFETCH_AHEAD = 64
# Statuses settle_refused checks at once for a refusal (kernels.pyx: SETTLE_BLOCK).
_SETTLE_BLOCK = 64
# take_tracked's tally: new (user, SKU) pairs in the low bits, its rollback
# (0 or 1) from _ROLLBACK_SHIFT up.  A chunk adds at most ~2**31 pairs
# (its lines), so the two never mix.
_ROLLBACK_SHIFT = 32
_ROLLED_BACK = 1 << _ROLLBACK_SHIFT
_PAIRS_MASK = _ROLLED_BACK - 1
# Ids (claims, confirms, cancels, settles) per prange work item: each is a
# probe or two and a CAS, so chunks are bigger than the general path's.
_ID_CHUNK = 4096
# Slots per work item of the whole-table scans (expiry, recovery): a slot
# that needs nothing costs one load.
_SLOT_CHUNK = 16384


# ------------------------------------------------------------- helpers


@njit(**_inline)
def hash_slot(key, mask):
    """Home slot of ``key`` in a table of ``mask + 1`` slots: bits 32 and up
    of ``key * HASH_MULTIPLIER mod 2**64`` (bit-identical to the reference)."""
    # Both operands uint64: the product wraps mod 2**64, as the reference's
    # mask makes it (Numba types int64 * uint64 as float64); after >> 32 the
    # hash fits an int64 again, for the mask and for indexing.
    h = np.uint64(key) * np.uint64(HASH_MULTIPLIER)
    return np.int64(h >> np.uint64(32)) & mask


@njit(**_inline)
def take_budget(counters, index, amount):
    """Subtract ``amount`` from ``counters[index]`` unless it would go below
    zero; return the old value, or -1 (changing nothing).  CAS loop."""
    old = atomic_load(counters, index)
    while old >= amount:
        seen = atomic_cas(counters, index, old, old - amount)
        if seen == old:
            return old
        old = seen  # another reserve took or gave back meanwhile: decide again
    return -1


@njit(**_jit)
def take_budgets(counters, index, amount, old):
    """:func:`take_budget` for each ``k`` in turn, all or nothing: ``old[k]``
    gets the old value; on the first refusal the earlier ones are given back
    and its ``k`` is returned, else -1.  (The facade's entry to the budgets.)"""
    for k in range(index.size):
        old[k] = take_budget(counters, index[k], amount[k])
        if old[k] < 0:
            for earlier in range(k):
                take_budget(counters, index[earlier], -amount[earlier])
            return k
    return -1


@njit(**_inline)
def claim_order(order_table, order_id, state):
    """Insert ``order_id`` in ``state`` unless the table has it: its slot if
    this call inserted it, else ``-1 - slot``.  CAS 0 -> word."""
    mask = order_table.size // ORDER_STRIDE - 1
    slot = hash_slot(order_id, mask)
    mine = (state << STATE_SHIFT) | order_id
    while True:
        word = atomic_load(order_table, ORDER_STRIDE * slot + ORDER_WORD_AT)
        if word == 0:
            word = atomic_cas(order_table, ORDER_STRIDE * slot + ORDER_WORD_AT, 0, mine)
            if word == 0:
                return slot
            # Lost the slot: look again at what the winner wrote (it may be
            # this very id, claimed by a concurrent duplicate).
        if word & ID_MASK == order_id:
            return -1 - slot
        slot = (slot + 1) & mask


@njit(**_inline)
def find_order(order_table, order_id):
    """The slot of ``order_id``, or -1 if the table does not have it."""
    mask = order_table.size // ORDER_STRIDE - 1
    slot = hash_slot(order_id, mask)
    while True:
        word = atomic_load(order_table, ORDER_STRIDE * slot + ORDER_WORD_AT)
        if word == 0:
            return -1
        if word & ID_MASK == order_id:
            return slot
        slot = (slot + 1) & mask


@njit(**_inline)
def limit_slot(limit_table, key, insert):
    """The slot of the (user, SKU) ``key``: ``slot`` if it was there,
    ``-2 - slot`` if this call inserted it (``insert``), -1 if absent."""
    mask = limit_table.size // PAIR_STRIDE - 1
    slot = hash_slot(key, mask)
    while True:
        seen = atomic_load(limit_table, PAIR_STRIDE * slot + PAIR_KEY_AT)
        if seen == key:
            return slot
        if seen == 0:
            if not insert:
                return -1
            seen = atomic_cas(limit_table, PAIR_STRIDE * slot + PAIR_KEY_AT, 0, key)
            if seen == 0:
                return -2 - slot
            if seen == key:  # lost to a concurrent insert of the same pair
                return slot
        slot = (slot + 1) & mask


@njit(**_inline)
def limit_room(limit, limit_table, user, s):
    """Units of SKU ``s`` the user may still take (read-only)."""
    cap = limit[s]
    if cap == NO_LIMIT:
        return NO_LIMIT
    slot = limit_slot(limit_table, user * limit.size + s + 1, False)
    return cap - (atomic_load(limit_table, PAIR_STRIDE * slot + PAIR_COUNT_AT) if slot >= 0 else 0)


@njit(**_inline)
def take_limit(limit, limit_table, user, s, units):
    """Count ``units`` of SKU ``s`` against the user's cap, or nothing if
    that would pass it; ``TOOK | NEW_PAIR`` bits (see the reference).  CAS
    loop on the count that gives up, without writing, once it would pass."""
    cap = limit[s]
    if cap == NO_LIMIT:
        return TOOK
    slot = limit_slot(limit_table, user * limit.size + s + 1, True)
    new = 0
    if slot < -1:
        new = NEW_PAIR
        slot = -2 - slot
    count_at = PAIR_STRIDE * slot + PAIR_COUNT_AT
    seen = atomic_load(limit_table, count_at)
    while seen + units <= cap:
        old = atomic_cas(limit_table, count_at, seen, seen + units)
        if old == seen:
            return TOOK | new
        seen = old
    return new


# The cap steps of _take_tracked_line: the pre-check remembers where its
# probe stopped and the take starts there (kernels.pyx has the same copies,
# and says why copies rather than new bodies of the three above).


@njit(**_inline)
def _limit_slot_from(limit_table, key, slot, insert):
    """:func:`limit_slot`, probing from ``slot`` on: the key's home slot, or
    where :func:`_limit_room_at` stopped for it (slots are never emptied and
    the slots before that hold other keys: the key is there or after it)."""
    mask = limit_table.size // PAIR_STRIDE - 1
    while True:
        seen = atomic_load(limit_table, PAIR_STRIDE * slot + PAIR_KEY_AT)
        if seen == key:
            return slot
        if seen == 0:
            if not insert:
                return -1
            seen = atomic_cas(limit_table, PAIR_STRIDE * slot + PAIR_KEY_AT, 0, key)
            if seen == 0:
                return -2 - slot
            if seen == key:  # lost to a concurrent insert of the same pair
                return slot
        slot = (slot + 1) & mask


@njit(**_inline)
def _limit_room_at(cap, key, limit_table):
    """``(limit_room, slot where its probe stopped)`` of the pair ``key`` under
    ``cap`` (not NO_LIMIT: the caller skips uncapped SKUs): the pair's slot,
    or the empty one it would take, so that :func:`_take_limit_from` need not
    hash and walk the chain again, nor load the cap and make the key again."""
    mask = limit_table.size // PAIR_STRIDE - 1
    slot = hash_slot(key, mask)
    while True:
        seen = atomic_load(limit_table, PAIR_STRIDE * slot + PAIR_KEY_AT)
        if seen == key:
            return cap - atomic_load(limit_table, PAIR_STRIDE * slot + PAIR_COUNT_AT), slot
        if seen == 0:
            return cap, slot
        slot = (slot + 1) & mask


@njit(**_inline)
def _take_limit_from(cap, key, limit_table, units, from_slot, pair_slot, line):
    """:func:`take_limit_at` of the pair ``key`` under ``cap`` (not
    NO_LIMIT), its probe starting at ``from_slot`` (where
    :func:`_limit_room_at` stopped for it)."""
    slot = _limit_slot_from(limit_table, key, from_slot, True)
    new = 0
    if slot < -1:
        new = NEW_PAIR
        slot = -2 - slot
    count_at = PAIR_STRIDE * slot + PAIR_COUNT_AT
    seen = atomic_load(limit_table, count_at)
    # pair_slot[line] after the CAS, on each way out, as take_limit_at.
    while seen + units <= cap:
        old = atomic_cas(limit_table, count_at, seen, seen + units)
        if old == seen:
            store(pair_slot, line, slot)
            return TOOK | new
        seen = old
    store(pair_slot, line, slot)
    return new


@njit(**_inline)
def take_limit_at(limit, limit_table, user, s, units, pair_slot, line):
    """:func:`take_limit`, and for a SKU with a cap ``pair_slot[line]`` gets
    the pair's slot (see the reference)."""
    cap = load(limit, s)  # unchecked: only take_tracked calls it, on a checked batch
    if cap == NO_LIMIT:
        return TOOK
    slot = limit_slot(limit_table, user * limit.size + s + 1, True)
    new = 0
    if slot < -1:
        new = NEW_PAIR
        slot = -2 - slot
    count_at = PAIR_STRIDE * slot + PAIR_COUNT_AT
    seen = atomic_load(limit_table, count_at)
    # The slot is stored after the CAS, on each way out, not before it: a
    # plain store may alias any array, and LLVM then reloads values it kept
    # in registers (stored before the CAS, or after a shared return, the
    # gate counted 5-6% more instructions on carts/tracked; here about 3%).
    while seen + units <= cap:
        old = atomic_cas(limit_table, count_at, seen, seen + units)
        if old == seen:
            store(pair_slot, line, slot)
            return TOOK | new
        seen = old
    store(pair_slot, line, slot)
    return new


@njit(**_inline)
def give_back_limit(limit, limit_table, user, s, units):
    """Undo :func:`take_limit` (fetch-add of ``-units``)."""
    if limit[s] != NO_LIMIT:
        slot = limit_slot(limit_table, user * limit.size + s + 1, False)
        if slot >= 0:  # always, unless the state was corrupted
            atomic_add(limit_table, PAIR_STRIDE * slot + PAIR_COUNT_AT, -units)


@njit(**_inline)
def record_fills(order_table, slot):
    """``(user, first, last)`` of the record at ``slot``: whose fills, and
    which fill-log entries (the packed range unpacked).  Plain loads: the
    caller read the word with acquire order (or won it by CAS) first."""
    record = ORDER_STRIDE * slot
    fills = order_table[record + ORDER_FILLS_AT]
    first = fills >> FILL_COUNT_BITS
    return order_table[record + ORDER_USER_AT], first, first + (fills & MAX_ORDER_FILLS)


@njit(**_inline)
def clear_record(order_table, slot):
    """A refused order's record back as its claim left it, once it has given
    everything back (see the reference): plain stores, the order is still
    PENDING and this reserve owns its record."""
    record = ORDER_STRIDE * slot
    order_table[record + ORDER_USER_AT] = 0
    order_table[record + ORDER_DEADLINE_AT] = 0
    order_table[record + ORDER_FILLS_AT] = 0


@njit(**_inline)
def give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first, last):
    """Give back the logged fills ``first:last`` (stock and the user's limit
    count), swapping each entry out *before* its units go back; returns the
    units given back."""
    units = 0
    for f in range(first, last):
        # A plain look first: untaken offers' entries are 0 and cost no
        # locked instruction.  Then swap the entry out: a process killed
        # after the swap loses those units (never returns them twice), and
        # when a recovery and a live cancel race for the same entry, only
        # the one that swaps out a non-zero quantity gives it back.
        if fill_qty[f]:
            got = atomic_exchange(fill_qty, f, 0)
            if got:
                offer = fill_offer[f]
                atomic_add(stock, offer, got)
                give_back_limit(limit, limit_table, user, offer_sku[offer], got)
                units += got
    return units


@njit(**_inline)
def take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, s, units, max_p, first_fill):
    """Take ``units`` of SKU ``s`` from its offers priced ``<= max_p`` in
    priority order, logging each take at ``first_fill + rank``; return the
    units still missing (the caller gives back what was taken)."""
    base = offer_start[s]
    for j in range(offer_start[s + 1] - base):
        offer = offer_by_priority[base + j]
        if price[offer] > max_p:
            break
        got = take_up_to(stock, offer, units)
        if got:
            # Logged right after the CAS that took them: an entry never
            # claims more than was taken (a crash in between loses units).
            fill_offer[first_fill + j] = offer
            fill_qty[first_fill + j] = got
            units -= got
            if units == 0:
                break
    return units


@njit(**_inline)
def publish_or_undo(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, counters,
                    slot, user, first_fill, last_fill):
    """An order took everything: CAS PENDING -> HELD.  If a cancel got there
    first (CANCEL_REQUESTED), give it all back and end CANCELLED."""
    at = ORDER_STRIDE * slot + ORDER_WORD_AT
    word = atomic_load(order_table, at)
    ident = word & ID_MASK
    # The CAS's release half publishes the record and the fill log with HELD.
    if atomic_cas(order_table, at, (PENDING << STATE_SHIFT) | ident, (HELD << STATE_SHIFT) | ident) \
            == (PENDING << STATE_SHIFT) | ident:
        return ACCEPTED
    # Failed: the word is CANCEL_REQUESTED (the only other way out of PENDING
    # while this reserve runs).
    give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first_fill, last_fill)
    atomic_add(counters, ROLLBACKS, 1)
    # Only this reserve moves an order out of CANCEL_REQUESTED: no CAS, but an
    # atomic store, as confirm / cancel may be loading the word right now.
    atomic_store_release(order_table, at, (CANCELLED_HOLD << STATE_SHIFT) | ident)
    return CANCELLED


@njit(**_inline)
def settle_refused_slot(order_table, slot):
    """PENDING -> REFUSED, or -> CANCELLED_HOLD where the word is
    CANCEL_REQUESTED.  CAS from the word read, re-deciding on failure."""
    at = ORDER_STRIDE * slot + ORDER_WORD_AT
    word = atomic_load(order_table, at)
    while True:
        final = CANCELLED_HOLD if word >> STATE_SHIFT == CANCEL_REQUESTED else REFUSED
        # First try is PENDING -> REFUSED; it fails only when a cancel made the
        # word CANCEL_REQUESTED, which only this reserve leaves, so the retry
        # (-> CANCELLED_HOLD) succeeds.
        seen = atomic_cas(order_table, at, word, (final << STATE_SHIFT) | (word & ID_MASK))
        if seen == word:
            return
        word = seen


@njit(**_inline)
def line_end(offer_start, sku, fill_slot, line):
    """One past the last fill-log entry of ``line`` (one entry per offer of its SKU)."""
    s = load(sku, line)
    return load(fill_slot, line) + load(offer_start, s + 1) - load(offer_start, s)


@njit(**_inline)
def _take_tracked_line(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, sku, qty, fill_slot,
                       pair_slot, deadline, order, slot, line, user, counters):
    """:func:`take_tracked` (``direct``) of an order of one line, ``line``
    (uniform and flash sale are all such orders): the same steps in the same
    order, straight-line code (kernels.pyx _take_tracked_line says why), each
    batch word loaded once, unchecked (the facade checked the batch), and
    fill_slot / deadline only once the pre-checks pass; the cap's probe is
    walked once (the take starts where the read-only pre-check stopped).
    Returns what take_tracked returns."""
    s = load(sku, line)
    q = load(qty, line)
    if atomic_load(stock, s) < q:  # relaxed, as offers_available's load
        return OUT_OF_STOCK, 0
    # The cap (unchecked: the facade checked the batch's SKUs) and the pair's
    # key once, for the pre-check and the take.
    cap = load(limit, s)
    key = user * limit.size + s + 1
    at = -1
    if cap != NO_LIMIT:
        room, at = _limit_room_at(cap, key, limit_table)
        if room < q:
            return LIMIT_EXCEEDED, 0
    f = load(fill_slot, line)
    record = ORDER_STRIDE * slot
    store(order_table, record + ORDER_USER_AT, user)
    store(order_table, record + ORDER_DEADLINE_AT, load(deadline, order))
    store(order_table, record + ORDER_FILLS_AT, f << FILL_COUNT_BITS | 1)
    took = TOOK if cap == NO_LIMIT else _take_limit_from(cap, key, limit_table, q, at, pair_slot, line)
    new_pairs = took >> 1
    if not took & TOOK:
        # Nothing taken, nothing to give back; counted as take_tracked counts it.
        atomic_add(counters, ROLLBACKS, 1)
        clear_record(order_table, slot)
        return LIMIT_EXCEEDED, new_pairs + _ROLLED_BACK
    got = take_up_to(stock, s, q)
    if got:
        store(fill_offer, f, s)
        store(fill_qty, f, got)
    if got != q:
        give_back_limit(limit, limit_table, user, s, q - got)
        give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, f, f + 1)
        atomic_add(counters, ROLLBACKS, 1)
        clear_record(order_table, slot)
        return OUT_OF_STOCK, new_pairs + _ROLLED_BACK
    return publish_or_undo(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty,
                           counters, slot, user, f, f + 1), new_pairs


@njit(**_inline)
def take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                 order_table, fill_offer, fill_qty,
                 line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters,
                 order, direct):
    """Reserve one claimed (PENDING) order, all or nothing; returns
    ``(status, tally)``: the reference's ``(status, new (user, SKU) pairs,
    rolled back)`` with the last two in one word, ``new pairs + rolled back
    << _ROLLBACK_SHIFT`` (one sum per chunk adds both up; a third value
    cost the carts and flash-sale tracked cases of the gate 1.3-1.8%
    instructions).  A refused order stays PENDING.
    ``pair_slot[line]`` gets the slot of each capped line's pair it counts
    (or tries to) against (see the reference).
    ``direct``: offer ``s`` is SKU ``s``'s only one and nothing is priced
    out, so a line reads / takes ``stock[s]`` itself (the reference says why)."""
    # Unchecked loads (atomics.py load): ``order`` indexes the checked batch,
    # and a[i] would add the negative-index wraparound to each.
    slot = load(order_slot, order)
    user = load(user_id, order)
    first_line = load(line_start, order)
    last_line = load(line_start, order + 1)
    # Read-only pre-checks: an order that cannot fit costs loads, not writes.
    # Stock first: in a flash sale most orders meet a sold-out SKU, whose
    # word is hot in cache, while the cap count is a cold lookup.
    for line in range(first_line, last_line):
        if direct:
            have = atomic_load(stock, load(sku, line))  # relaxed, as offers_available's load
        else:
            have = offers_available(stock, price, offer_start, offer_by_priority, load(sku, line), load(max_price, line),
                                    load(qty, line))
        if have < load(qty, line):
            return OUT_OF_STOCK, 0
    for line in range(first_line, last_line):
        if limit_room(limit, limit_table, user, load(sku, line)) < load(qty, line):
            return LIMIT_EXCEEDED, 0
    # Plain stores: while the word is PENDING this reserve owns the record;
    # the CAS to HELD publishes it (cancel / expiry read it after that).  An
    # order refused above takes nothing and needs no record.
    # direct: one entry per line, so no offer_start loads for the range.
    last_fill = load(fill_slot, last_line - 1) + 1 if direct else line_end(offer_start, sku, fill_slot, last_line - 1)
    record = ORDER_STRIDE * slot
    store(order_table, record + ORDER_USER_AT, user)
    store(order_table, record + ORDER_DEADLINE_AT, load(deadline, order))
    first_fill = load(fill_slot, first_line)
    store(order_table, record + ORDER_FILLS_AT, first_fill << FILL_COUNT_BITS | last_fill - first_fill)
    new_pairs = 0
    status = ACCEPTED
    undo_to = 0
    for line in range(first_line, last_line):
        # pair_slot[line]: this line's pair slot, for the durable journal
        # (the reference's take_limit_at says why).
        took = take_limit_at(limit, limit_table, user, load(sku, line), load(qty, line), pair_slot, line)
        new_pairs += took >> 1
        if not took & TOOK:
            status = LIMIT_EXCEEDED
            undo_to = load(fill_slot, line)
            break
        if direct:
            # take_line's one step: offer s, rank 0, logged after the CAS.
            s = load(sku, line)
            got = take_up_to(stock, s, load(qty, line))
            if got:
                store(fill_offer, load(fill_slot, line), s)
                store(fill_qty, load(fill_slot, line), got)
            missing = load(qty, line) - got
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, load(sku, line),
                                load(qty, line), load(max_price, line), load(fill_slot, line))
        if missing:
            status = OUT_OF_STOCK
            # give_back_fills below returns the cap count of what was filled.
            give_back_limit(limit, limit_table, user, load(sku, line), missing)
            undo_to = load(fill_slot, line) + 1 if direct else line_end(offer_start, sku, fill_slot, line)
            break
    if status == ACCEPTED:
        return publish_or_undo(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty,
                               counters, slot, user, first_fill, last_fill), new_pairs
    give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user,
                    first_fill, undo_to)
    atomic_add(counters, ROLLBACKS, 1)
    clear_record(order_table, slot)
    return status, new_pairs + _ROLLED_BACK


# -------------------------------------------------------- batch kernels

# Counts (new ids, new pairs, expired, recovered) are summed per chunk into
# ``per_chunk`` (one word per prange work item, from the wrapper) and added
# up after the loop.  Not a prange reduction: Numba allocates a reduction's
# per-thread partials with np.empty, which needs the runtime these kernels
# are compiled without (_nrt=False, see _jit); each chunk owns its word, so
# no atomics are needed either, and the join publishes them.


@njit(**_inline)
def _n_chunks(n, chunk):
    return (n + chunk - 1) // chunk


def _per_chunk(n, chunk):
    return np.zeros((n + chunk - 1) // chunk, np.int64)


@njit(**_jit)
def _total(per_chunk):
    """Sum of ``per_chunk``, as a plain loop: ``per_chunk.sum()`` in a
    parallel function would become a reduction too (and need np.empty)."""
    total = 0
    for c in range(per_chunk.size):
        total += per_chunk[c]
    return total


@njit(**_inline)
def _claim_chunk(order_table, order_id, order_slot, status, start, stop):
    """:func:`claim_orders` for ids ``start:stop``; returns how many were new."""
    new = 0
    mask = order_table.size // ORDER_STRIDE - 1
    for i in range(start, stop):
        if i + _TRACKED_PREFETCH_AHEAD < stop:
            # The home slot of an id a few ahead: a random line of a big table.
            prefetch_write(order_table, ORDER_STRIDE * hash_slot(order_id[i + _TRACKED_PREFETCH_AHEAD], mask))
        slot = claim_order(order_table, order_id[i], PENDING)
        if slot >= 0:
            order_slot[i] = slot
            status[i] = ACCEPTED
            new += 1
        else:
            order_slot[i] = -1
            early = (atomic_load(order_table, ORDER_STRIDE * (-1 - slot) + ORDER_WORD_AT) >> STATE_SHIFT
                     == CANCELLED_EARLY)
            status[i] = CANCELLED if early else DUPLICATE
    return new


def _claim_orders(order_table, order_id, order_slot, status, per_chunk, n_threads):
    n = order_id.size
    for c in prange(per_chunk.size):
        per_chunk[c] = _claim_chunk(order_table, order_id, order_slot, status, c * _ID_CHUNK,
                                    min((c + 1) * _ID_CHUNK, n))
    return _total(per_chunk)


_claim_orders_par, _claim_orders_ser = _dispatchers(_claim_orders)


def claim_orders(order_table, order_id, order_slot, status, n_threads):
    """Claim every id of the batch in state PENDING; return how many were new
    (see :func:`kernel.reference.claim_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_claim_orders_par, _claim_orders_ser, nt,
                    (order_table, order_id, order_slot, status, _per_chunk(order_id.size, _ID_CHUNK), nt)))


@njit(**_inline)
def _claim_reserve_chunk(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                         order_table, fill_offer, fill_qty, line_start, sku, qty, max_price, order_id, user_id,
                         deadline, order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle, direct,
                         single, c):
    """:func:`claim_and_reserve`'s chunk ``c``: claim its ids, take the
    fill-log block of the claimed lines, reserve them (their records are in
    cache now).  kernels.pyx's _claim_reserve_body is the same loop.
    ``single`` (a constant, with ``direct``): every order has one line, order
    i's line is i, and ``line_start`` is never loaded (kernels.pyx says why)."""
    n = order_id.size
    n_skus = limit.size
    order_mask = order_table.size // ORDER_STRIDE - 1
    limit_mask = limit_table.size // PAIR_STRIDE - 1
    start = c * chunk
    stop = min(n, start + chunk)
    used = 0
    new = 0
    for i in range(start, stop):
        if i + _CLAIM_PREFETCH_AHEAD < stop:
            # Claims prefetch the home slot of an id a few ahead, only that
            # (kernels.pyx, _claim_reserve_chunk, says why).
            prefetch_write(order_table, ORDER_STRIDE * hash_slot(load(order_id, i + _CLAIM_PREFETCH_AHEAD),
                                                                 order_mask))
        slot = claim_order(order_table, load(order_id, i), PENDING)
        if slot >= 0:
            store(order_slot, i, slot)
            store(status, i, ACCEPTED)
            new += 1
        else:
            store(order_slot, i, -1)
            early = (atomic_load(order_table, ORDER_STRIDE * (-1 - slot) + ORDER_WORD_AT) >> STATE_SHIFT
                     == CANCELLED_EARLY)
            store(status, i, CANCELLED if early else DUPLICATE)
        if single:
            store(fill_slot, i, used)  # relative to the chunk's block until it is taken
            if slot >= 0:
                used += 1
            continue
        for line in range(load(line_start, i), load(line_start, i + 1)):
            store(fill_slot, line, used)  # relative to the chunk's block until it is taken
            if slot >= 0:
                if direct:
                    used += 1
                else:
                    s = load(sku, line)
                    used += load(offer_start, s + 1) - load(offer_start, s)
    # The block: one fetch-add (the facade's budget promised these entries).
    base = atomic_add(counters, FILL_CURSOR, used)
    first_line, stop_line = (start, stop) if single else (load(line_start, start), load(line_start, stop))
    for line in range(first_line, stop_line):
        store(fill_slot, line, load(fill_slot, line) + base)
    tally = 0  # (user, SKU) pairs added + rollbacks << _ROLLBACK_SHIFT (see take_tracked)
    for i in range(start, stop):
        if i + _TRACKED_PREFETCH_AHEAD < stop and load(order_slot, i + _TRACKED_PREFETCH_AHEAD) >= 0:
            # The cache lines of an order a few ahead, into L1 (the chunk's
            # records are in L2 from the claims; kernels.pyx says which).
            ahead = i + _TRACKED_PREFETCH_AHEAD
            prefetch_write(order_table, ORDER_STRIDE * load(order_slot, ahead))
            user = load(user_id, ahead)
            # The flag tested per order, not per line (kernels.pyx says why).
            if single:  # line ``ahead``, no loop
                s = load(sku, ahead)
                prefetch_write(limit_table, PAIR_STRIDE * hash_slot(user * n_skus + s + 1, limit_mask))
                prefetch_write(stock, s)
                prefetch_write(limit, s)
            elif direct:  # direct never loads the offer arrays
                for line in range(load(line_start, ahead), load(line_start, ahead + 1)):  # every line's
                    s = load(sku, line)
                    prefetch_write(limit_table, PAIR_STRIDE * hash_slot(user * n_skus + s + 1, limit_mask))
                    prefetch_write(stock, s)
                    prefetch_write(limit, s)
            else:
                for line in range(load(line_start, ahead), load(line_start, ahead + 1)):  # every line's
                    s = load(sku, line)
                    prefetch_write(limit_table, PAIR_STRIDE * hash_slot(user * n_skus + s + 1, limit_mask))
                    prefetch_write(stock, s)
                    prefetch_write(limit, s)
                    prefetch_write(offer_start, s)
                    prefetch_write(offer_by_priority, s)
                    prefetch_write(price, s)
        if load(order_slot, i) < 0:
            continue
        # Two inlined copies, ``direct`` a constant LLVM folds in each: the
        # general path stays as it was without the flag (kernels.pyx says why).
        if single:
            got, got_tally = _take_tracked_line(stock, offer_sku, limit, limit_table, order_table, fill_offer,
                                                fill_qty, sku, qty, fill_slot, pair_slot, deadline, i,
                                                load(order_slot, i), i, load(user_id, i), counters)
        elif direct:
            if load(line_start, i + 1) == load(line_start, i) + 1:
                # One line: the straight-line copy (kernels.pyx, _claim_reserve_body, says why only here).
                got, got_tally = _take_tracked_line(stock, offer_sku, limit, limit_table, order_table, fill_offer,
                                                    fill_qty, sku, qty, fill_slot, pair_slot, deadline, i,
                                                    load(order_slot, i), load(line_start, i), load(user_id, i),
                                                    counters)
            else:
                got, got_tally = take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit,
                                              limit_table, order_table, fill_offer, fill_qty, line_start, sku, qty,
                                              max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                                              counters, i, True)
        else:
            got, got_tally = take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit,
                                          limit_table, order_table, fill_offer, fill_qty, line_start, sku, qty,
                                          max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters,
                                          i, False)
        store(status, i, got)
        tally += got_tally
        if settle and (got == OUT_OF_STOCK or got == LIMIT_EXCEEDED):
            settle_refused_slot(order_table, load(order_slot, i))
    chunks[c, 0] = base
    chunks[c, 1] = used
    chunks[c, 2] = new
    chunks[c, 3] = tally & _PAIRS_MASK
    chunks[c, 4] = tally >> _ROLLBACK_SHIFT


def _claim_and_reserve(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                       order_table, fill_offer, fill_qty, line_start, sku, qty, max_price, order_id, user_id,
                       deadline, order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle, direct,
                       n_threads):
    for c in prange(chunks.shape[0]):
        _claim_reserve_chunk(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                             order_table, fill_offer, fill_qty, line_start, sku, qty, max_price, order_id, user_id,
                             deadline, order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle,
                             direct, False, c)


_claim_and_reserve_par, _claim_and_reserve_ser = _dispatchers(_claim_and_reserve)


def _claim_and_reserve_single(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                              order_table, fill_offer, fill_qty, line_start, sku, qty, max_price, order_id, user_id,
                              deadline, order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle,
                              n_threads):
    # Direct, one line per order: _claim_reserve_chunk with both flags
    # constant, a dispatcher of its own (kernels.pyx's third chunk function).
    for c in prange(chunks.shape[0]):
        _claim_reserve_chunk(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                             order_table, fill_offer, fill_qty, line_start, sku, qty, max_price, order_id, user_id,
                             deadline, order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle,
                             True, True, c)


_claim_and_reserve_single_par, _claim_and_reserve_single_ser = _dispatchers(_claim_and_reserve_single)


def claim_and_reserve(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                      order_table, fill_offer, fill_qty, line_start, sku, qty, max_price, order_id, user_id,
                      deadline, order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle, direct,
                      n_threads):
    """Claim and reserve the batch, chunk by chunk (see
    :func:`kernel.reference.claim_and_reserve`)."""
    n = order_id.size
    if n == 0:
        return
    if chunks.ndim != 2 or chunks.shape[1] != 5 or chunks.shape[0] != (n + chunk - 1) // chunk:
        raise ValueError("chunks: needs one row of 5 per chunk of the batch")
    nt = _threads(n_threads)
    args = (stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table, fill_offer,
            fill_qty, line_start, sku, qty, max_price, order_id, user_id, deadline, order_slot, fill_slot, pair_slot,
            status, chunks, counters, np.int64(chunk), bool(settle))
    if direct and sku.size == n:  # one line per order (orders have at least one)
        _run(_claim_and_reserve_single_par, _claim_and_reserve_single_ser, nt, args + (nt,), dynamic=True)
    else:
        _run(_claim_and_reserve_par, _claim_and_reserve_ser, nt, args + (bool(direct), nt), dynamic=True)


def _reserve_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                     order_table, fill_offer, fill_qty,
                     line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                     order_index, status, counters, direct, per_chunk, n_threads):
    # Unchecked loads and stores (atomics.py load): the facade's checked
    # batch and its own order indices.
    n = order_index.size
    n_skus = limit.size
    limit_mask = limit_table.size // PAIR_STRIDE - 1
    for c in prange(per_chunk.size):
        pairs = 0
        stop = min(n, (c + 1) * _GENERAL_CHUNK)
        for k in range(c * _GENERAL_CHUNK, stop):
            if k + _TRACKED_PREFETCH_AHEAD < stop:
                # The cache lines of an order a few ahead (kernels.pyx,
                # _tracked_chunk, says which and why).
                ahead = load(order_index, k + _TRACKED_PREFETCH_AHEAD)
                slot = load(order_slot, ahead)
                s = load(sku, load(line_start, ahead))
                pair = hash_slot(load(user_id, ahead) * n_skus + s + 1, limit_mask)
                prefetch_write(order_table, ORDER_STRIDE * slot)
                prefetch_write(limit_table, PAIR_STRIDE * pair)
                prefetch_write(stock, s)
                prefetch_write(limit, s)
                if not direct:
                    prefetch_write(offer_start, s)
                    prefetch_write(offer_by_priority, s)
                    prefetch_write(price, s)
            order = load(order_index, k)
            if direct:  # two copies, as in _claim_reserve_chunk
                order_status, order_tally = take_tracked(
                    stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                    order_table, fill_offer, fill_qty,
                    line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters,
                    order, True)
            else:
                order_status, order_tally = take_tracked(
                    stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                    order_table, fill_offer, fill_qty,
                    line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters,
                    order, False)
            store(status, order, order_status)
            pairs += order_tally & _PAIRS_MASK
        per_chunk[c] = pairs
    return _total(per_chunk)


_reserve_tracked_par, _reserve_tracked_ser = _dispatchers(_reserve_tracked)


def reserve_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                    order_table, fill_offer, fill_qty,
                    line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                    order_index, status, counters, direct, n_threads):
    """Reserve the claimed orders ``order_index``; return how many (user, SKU)
    pairs the limit table gained (see :func:`kernel.reference.reserve_tracked`)."""
    nt = _threads(n_threads)
    return int(_run(_reserve_tracked_par, _reserve_tracked_ser, nt,
                    (stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                     order_table, fill_offer, fill_qty,
                     line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                     order_index, status, counters, bool(direct), _per_chunk(order_index.size, _GENERAL_CHUNK), nt),
                    dynamic=True))


def _settle_refused(order_table, order_slot, status, n_threads):
    # A pass over the statuses, not over an index of the refused: that index
    # was 7 MB of fresh pages per 1M flash-sale orders (see kernels.pyx).
    # Unchecked loads (atomics.py load): i < status.size, and a refused
    # order's slot is its claim's.
    n = status.size
    for c in prange(_n_chunks(n, _ID_CHUNK)):
        stop = min(n, (c + 1) * _ID_CHUNK)
        check = True
        for block in range(c * _ID_CHUNK, stop, _SETTLE_BLOCK):
            end = min(block + _SETTLE_BLOCK, stop)
            # A block whose statuses' OR lacks a bit of REFUSAL_BITS holds no
            # refusal: skipped after one vectorized pass, looked for only
            # after a block whose last order was not refused (kernels.pyx,
            # _settle_chunk, says why both, and what they saved).
            if check:
                seen = np.int8(0)
                for i in range(block, end):
                    seen |= load(status, i)
                if seen & REFUSAL_BITS != REFUSAL_BITS:
                    continue
            for i in range(block, end):
                ahead = i + _SETTLE_PREFETCH_AHEAD
                if ahead < stop:
                    refused = load(status, ahead)
                    if refused == OUT_OF_STOCK or refused == LIMIT_EXCEEDED:
                        prefetch_write(order_table, ORDER_STRIDE * load(order_slot, ahead))  # as in _claim_chunk
                got = load(status, i)
                if got == OUT_OF_STOCK or got == LIMIT_EXCEEDED:
                    settle_refused_slot(order_table, load(order_slot, i))
            last = load(status, end - 1)
            check = not (last == OUT_OF_STOCK or last == LIMIT_EXCEEDED)


_settle_refused_par, _settle_refused_ser = _dispatchers(_settle_refused)


def settle_refused(order_table, order_slot, status, n_threads):
    """PENDING -> REFUSED (or CANCELLED where a cancel asked) for every order
    whose ``status`` is a refusal."""
    nt = _threads(n_threads)
    _run(_settle_refused_par, _settle_refused_ser, nt, (order_table, order_slot, status, nt))


@njit(**_inline)
def outcome_of(state):
    """What confirm / cancel answer for an order already in ``state``."""
    if state == PENDING:
        return IN_FLIGHT
    if state == CONFIRMED:
        return ALREADY_CONFIRMED
    if state == EXPIRED:
        return ALREADY_EXPIRED
    if state == REFUSED:
        return WAS_REFUSED
    return ALREADY_CANCELLED  # CANCELLED_HOLD, CANCEL_REQUESTED, CANCELLED_EARLY


@njit(**_inline)
def _confirm_chunk(order_table, order_id, outcome, start, stop):
    """:func:`confirm_orders` for ids ``start:stop``."""
    for i in range(start, stop):
        slot = find_order(order_table, order_id[i])
        if slot < 0:
            outcome[i] = UNKNOWN
            continue
        at = ORDER_STRIDE * slot + ORDER_WORD_AT
        word = atomic_load(order_table, at)
        while True:
            state = word >> STATE_SHIFT
            if state != HELD:
                outcome[i] = outcome_of(state)
                break
            # One CAS decides a confirm racing a cancel or an expiry: exactly
            # one of them moves the word out of HELD; a loser re-decides.
            seen = atomic_cas(order_table, at, word, (CONFIRMED << STATE_SHIFT) | (word & ID_MASK))
            if seen == word:
                outcome[i] = DONE
                break
            word = seen


def _confirm_orders(order_table, order_id, outcome, n_threads):
    n = order_id.size
    for c in prange(_n_chunks(n, _ID_CHUNK)):
        _confirm_chunk(order_table, order_id, outcome, c * _ID_CHUNK, min((c + 1) * _ID_CHUNK, n))


_confirm_orders_par, _confirm_orders_ser = _dispatchers(_confirm_orders)


def confirm_orders(order_table, order_id, outcome, n_threads):
    """HELD -> CONFIRMED for each id (see :func:`kernel.reference.confirm_orders`)."""
    nt = _threads(n_threads)
    _run(_confirm_orders_par, _confirm_orders_ser, nt, (order_table, order_id, outcome, nt))


@njit(**_inline)
def _cancel_chunk(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, order_id, outcome, start,
                  stop):
    """:func:`cancel_orders` for ids ``start:stop``; returns how many were new."""
    new = 0
    for i in range(start, stop):
        slot = claim_order(order_table, order_id[i], CANCELLED_EARLY)
        if slot >= 0:
            outcome[i] = REMEMBERED
            new += 1
            continue
        at = ORDER_STRIDE * (-1 - slot) + ORDER_WORD_AT
        word = atomic_load_acquire(order_table, at)  # the CAS below acquires too; this is for clarity
        while True:
            state = word >> STATE_SHIFT
            if state == HELD:
                seen = atomic_cas(order_table, at, word, (CANCELLED_HOLD << STATE_SHIFT) | (word & ID_MASK))
                if seen == word:
                    # Won: only this call gives the hold back.  The successful
                    # CAS (acquire) read the word the reserve published, so its
                    # record and fill log are visible here.
                    user, first, last = record_fills(order_table, -1 - slot)
                    give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first, last)
                    outcome[i] = DONE
                    break
                word = seen  # confirmed / expired / cancelled meanwhile: decide again
            elif state == PENDING:
                seen = atomic_cas(order_table, at, word, (CANCEL_REQUESTED << STATE_SHIFT) | (word & ID_MASK))
                if seen == word:
                    outcome[i] = DONE  # the running reserve undoes itself
                    break
                word = seen  # the reserve published or was refused meanwhile
            else:
                outcome[i] = outcome_of(state)
                break
    return new


def _cancel_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, order_id, outcome,
                   per_chunk, n_threads):
    n = order_id.size
    for c in prange(per_chunk.size):
        per_chunk[c] = _cancel_chunk(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty,
                                     order_id, outcome, c * _ID_CHUNK, min((c + 1) * _ID_CHUNK, n))
    return _total(per_chunk)


_cancel_orders_par, _cancel_orders_ser = _dispatchers(_cancel_orders)


def cancel_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, order_id, outcome,
                  n_threads):
    """Cancel each id; return how many ids were new to the table (see
    :func:`kernel.reference.cancel_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_cancel_orders_par, _cancel_orders_ser, nt,
                    (stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, order_id, outcome,
                     _per_chunk(order_id.size, _ID_CHUNK), nt)))


@njit(**_inline)
def _expire_chunk(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, now, expired, start, stop):
    """:func:`expire_orders` for slots ``start:stop``; returns how many expired."""
    count = 0
    for slot in range(start, stop):
        at = ORDER_STRIDE * slot + ORDER_WORD_AT
        # Acquire: the deadline read next is the one published with HELD.
        word = atomic_load_acquire(order_table, at)
        if word >> STATE_SHIFT == HELD and order_table[ORDER_STRIDE * slot + ORDER_DEADLINE_AT] <= now:
            # No retry loop needed: a failed CAS means a confirm or cancel
            # won, and no word ever goes back to HELD, so re-deciding would
            # always skip it.
            if atomic_cas(order_table, at, word, (EXPIRED << STATE_SHIFT) | (word & ID_MASK)) == word:
                user, first, last = record_fills(order_table, slot)
                give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first, last)
                expired[slot] = 1
                count += 1
    return count


def _expire_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, now, expired, per_chunk,
                   n_threads):
    n = order_table.size // ORDER_STRIDE
    for c in prange(per_chunk.size):
        per_chunk[c] = _expire_chunk(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, now,
                                     expired, c * _SLOT_CHUNK, min((c + 1) * _SLOT_CHUNK, n))
    return _total(per_chunk)


_expire_orders_par, _expire_orders_ser = _dispatchers(_expire_orders)


def expire_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, now, expired, n_threads):
    """HELD -> EXPIRED for every hold whose deadline is ``<= now``; return how
    many (see :func:`kernel.reference.expire_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_expire_orders_par, _expire_orders_ser, nt,
                    (stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, now, expired,
                     _per_chunk(order_table.size // ORDER_STRIDE, _SLOT_CHUNK), nt)))


@njit(**_inline)
def _recover_chunk(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, start, stop):
    """:func:`recover_orders` for slots ``start:stop``; returns how many it finished."""
    count = 0
    for slot in range(start, stop):
        at = ORDER_STRIDE * slot + ORDER_WORD_AT
        word = atomic_load_acquire(order_table, at)
        state = word >> STATE_SHIFT
        if state == CANCELLED_HOLD or state == EXPIRED:
            # Ended, but a process killed inside cancel / expire may have
            # left entries logged: finish that give-back (a live cancel of
            # the same order may run: the swaps decide each entry once).
            user, first, last = record_fills(order_table, slot)
            if give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first, last):
                count += 1
        elif state == PENDING or state == CANCEL_REQUESTED:
            # Give back first, then end the word: a recovery killed in
            # between finds the word unfinished and the log zeroed, so a
            # second recovery returns nothing twice.
            user, first, last = record_fills(order_table, slot)
            give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first, last)
            while True:
                final = CANCELLED_HOLD if state == CANCEL_REQUESTED else REFUSED
                seen = atomic_cas(order_table, at, word, (final << STATE_SHIFT) | (word & ID_MASK))
                if seen == word:
                    count += 1
                    break
                # A cancel may still run: PENDING -> CANCEL_REQUESTED meanwhile.
                word = seen
                state = word >> STATE_SHIFT
                if state != PENDING and state != CANCEL_REQUESTED:
                    break  # (a reserve running during recovery: outside the spec)
    return count


def _recover_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, per_chunk, n_threads):
    n = order_table.size // ORDER_STRIDE
    for c in prange(per_chunk.size):
        per_chunk[c] = _recover_chunk(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty,
                                      c * _SLOT_CHUNK, min((c + 1) * _SLOT_CHUNK, n))
    return _total(per_chunk)


_recover_orders_par, _recover_orders_ser = _dispatchers(_recover_orders)


def recover_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, n_threads):
    """After a crash, while no reserve runs: finish every unfinished order;
    return how many (see :func:`kernel.reference.recover_orders`)."""
    nt = _threads(n_threads)
    return int(_run(_recover_orders_par, _recover_orders_ser, nt,
                    (stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty,
                     _per_chunk(order_table.size // ORDER_STRIDE, _SLOT_CHUNK), nt)))
