"""Tracked orders: idempotent ids, per-user limits and the hold lifecycle
(reserve, confirm, cancel, expire, crash recovery).

Mirrored by ``kernel/_cython/tracked.pxi`` and ``kernel/_numba/tracked.py``,
down to the hash-table layouts (``n_threads=1`` gives the same state word for
word in every backend).  The state it works on is described below; the
single-order entry point built from these functions is in :mod:`.one`.


State (int64 arrays, zero-filled at creation, so an all-zero block of
shared memory is a valid empty state; kernel/state.py lays them out):

Order table (open addressing, linear probing; its capacity is a power of
two at least twice the ids it may hold, so a probe always ends).  One record
of ORDER_STRIDE (4) words per slot, at ``order_table[4 * slot + ...]``, so
that everything a new order writes shares one cache line (32-byte records,
two per line):
    ``+ ORDER_WORD_AT``         0: empty; else ``state << STATE_SHIFT | order_id``.
                                One word holds the id *and* its state, so a
                                slot is claimed, and every lifecycle step
                                taken, by one CAS: nothing is ever half
                                published, whoever dies when.
    ``+ ORDER_USER_AT``         the buyer (to give the limit back)
    ``+ ORDER_DEADLINE_AT``     end of the hold (INT64_MAX: none)
    ``+ ORDER_FILLS_AT``        the order's range in the fill log, packed:
                                ``first << FILL_COUNT_BITS | count`` (count <=
                                MAX_ORDER_FILLS, first < MAX_FILL_LOG: the
                                facade checks both, so the word is >= 0)
Fill log (append-only; a batch takes one range for its new orders, one
entry per (line, offer of the line's SKU)):
    ``fill_offer[f], fill_qty[f]``  units taken from an offer: logged right
                                after the CAS that took them and zeroed right
                                before they go back, so an entry never
                                claims more than was taken
Limit table (open addressing over (user, SKU) pairs; one pair of
PAIR_STRIDE (2) words per slot, key and count side by side in 16 bytes):
    ``limit[sku]``              per-user cap (NO_LIMIT: none)
    ``limit_table[2 * slot + PAIR_KEY_AT]``    0: empty; else ``user * n_skus + sku + 1``
    ``limit_table[2 * slot + PAIR_COUNT_AT]``  units of that SKU the user holds or bought
Budgets in ``counters`` (taken with :func:`take_budget` before anything
changes, so a full table is an error that changes nothing): ids the order
table may still take, pairs the limit table may still take, fill-log
entries not yet promised; and ``counters[FILL_CURSOR]``, the next free
fill-log entry, which only ever grows (a range, once handed out, is never
handed out again; budgets that turn out unneeded are given back).

Batch arrays beyond the untracked ones: ``order_id``, ``user_id``,
``deadline`` per order; ``order_slot`` per order (from :func:`claim_orders`);
``fill_slot[l]``: line ``l``'s first fill-log entry (its range has one entry
per offer of its SKU, :func:`line_end`; an order's lines are consecutive);
``pair_slot[l]``: the limit-table slot of line ``l``'s (user, SKU) pair,
written by :func:`take_tracked` for each line of a capped SKU whose cap it
counted against (or tried to), untouched for every other line (the facade
fills it with -1 first), so the durable journal knows which pairs a call
changed without probing the table again.

"""

from ..codes import (ACCEPTED, ALREADY_CANCELLED, ALREADY_CONFIRMED, ALREADY_EXPIRED, CANCEL_REQUESTED, CANCELLED,
                     CANCELLED_EARLY, CANCELLED_HOLD, CONFIRMED, DONE, DUPLICATE, EXPIRED, FILL_CURSOR,
                     HASH_MULTIPLIER, HELD, ID_MASK, IN_FLIGHT, LIMIT_EXCEEDED, NEW_PAIR, NO_LIMIT, OUT_OF_STOCK,
                     PENDING, REFUSED, ORDER_DEADLINE_AT, ORDER_FILLS_AT, ORDER_STRIDE, ORDER_USER_AT, ORDER_WORD_AT,
                     FILL_COUNT_BITS, MAX_ORDER_FILLS, PAIR_COUNT_AT, PAIR_KEY_AT, PAIR_STRIDE,
                     REMEMBERED, ROLLBACKS, STATE_SHIFT, TOOK, UINT64_MASK, UNKNOWN, WAS_REFUSED)
from .stock import offers_available, take_up_to

def hash_slot(key, mask):
    """Home slot of ``key`` in a table of ``mask + 1`` slots: bits 32 and up
    of ``key * HASH_MULTIPLIER mod 2**64``.  Every backend computes it the
    same way, so every backend lays a table out identically."""
    return (((int(key) * HASH_MULTIPLIER) & UINT64_MASK) >> 32) & mask


def take_budget(counters, index, amount):
    """Subtract ``amount`` from ``counters[index]`` unless it would go below
    zero; return the old value, or -1 (changing nothing).  A negative
    ``amount`` gives back what an earlier call took.  (Compiled: CAS loop.)"""
    old = counters[index]
    if old < amount:
        return -1
    counters[index] = old - amount
    return old


def take_budgets(counters, index, amount, old):
    """:func:`take_budget` for each ``k`` in turn, all or nothing: ``old[k]``
    gets the old value; on the first refusal the earlier ones are given back
    and its ``k`` is returned, else -1.  (The facade's entry to the budgets.)"""
    for k in range(len(index)):
        old[k] = take_budget(counters, index[k], amount[k])
        if old[k] < 0:
            for earlier in range(k):
                take_budget(counters, index[earlier], -amount[earlier])
            return k
    return -1


def claim_order(order_table, order_id, state):
    """Insert ``order_id`` in ``state`` unless the table has it: return its
    slot if this call inserted it, else ``-1 - slot``.  (Compiled: CAS the
    empty word; on losing the race, look again at what the winner wrote.)"""
    mask = order_table.size // ORDER_STRIDE - 1
    slot = hash_slot(order_id, mask)
    while True:
        word = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT]
        if word == 0:
            order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (state << STATE_SHIFT) | order_id
            return slot
        if word & ID_MASK == order_id:
            return -1 - slot
        slot = (slot + 1) & mask


def find_order(order_table, order_id):
    """The slot of ``order_id``, or -1 if the table does not have it."""
    mask = order_table.size // ORDER_STRIDE - 1
    slot = hash_slot(order_id, mask)
    while True:
        word = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT]
        if word == 0:
            return -1
        if word & ID_MASK == order_id:
            return slot
        slot = (slot + 1) & mask


def limit_slot(limit_table, key, insert):
    """The slot of the (user, SKU) ``key``: ``slot`` if it was there,
    ``-2 - slot`` if this call inserted it (``insert``), -1 if absent."""
    mask = limit_table.size // PAIR_STRIDE - 1
    slot = hash_slot(key, mask)
    while True:
        seen = limit_table[PAIR_STRIDE * slot + PAIR_KEY_AT]
        if seen == key:
            return slot
        if seen == 0:
            if not insert:
                return -1
            limit_table[PAIR_STRIDE * slot + PAIR_KEY_AT] = key  # compiled: CAS 0 -> key; on losing, look again
            return -2 - slot
        slot = (slot + 1) & mask


def limit_room(limit, limit_table, user, s):
    """Units of SKU ``s`` the user may still take (read-only)."""
    if limit[s] == NO_LIMIT:
        return NO_LIMIT
    slot = limit_slot(limit_table, user * limit.size + s + 1, False)
    return limit[s] - (limit_table[PAIR_STRIDE * slot + PAIR_COUNT_AT] if slot >= 0 else 0)


def take_limit(limit, limit_table, user, s, units):
    """Count ``units`` of SKU ``s`` against the user's cap, or nothing if
    that would pass it.  Returns ``TOOK | NEW_PAIR`` bits: ``TOOK`` if it
    counted them, ``NEW_PAIR`` if this call added the (user, SKU) pair to the
    table (its count stays 0 if it then refused).  A SKU without a cap
    always takes and counts nothing.  (Compiled: CAS loop on the count.)"""
    return _take_limit(limit, limit_table, user, s, units)[0]


def take_limit_at(limit, limit_table, user, s, units, pair_slot, line):
    """:func:`take_limit` for line ``line`` of a batch (:func:`take_tracked`):
    also, for a SKU with a cap, ``pair_slot[line]`` gets the pair's slot,
    found or inserted, whether the units were counted or not; untouched for
    a SKU without.  (Apart from take_limit so that :func:`.one.reserve_one`
    needs no slot array.)

    Why: the durable journal records the after-image of every limit-table
    slot a reserve changed; the slot is at hand here, and without it the
    journal would probe the table again for every capped line (about 15 ms
    per 1M orders).  A refused count still reports the slot: a new pair
    stays in the table, count 0, and the journal must record it.
    (Compiled: stored after the CAS, on each way out; the Numba mirror says
    why, and why its two functions are separate copies.)"""
    took, slot = _take_limit(limit, limit_table, user, s, units)
    if slot >= 0:
        pair_slot[line] = slot
    return took


def _take_limit(limit, limit_table, user, s, units):
    """:func:`take_limit`'s bits and the pair's slot (-1: no cap)."""
    if limit[s] == NO_LIMIT:
        return TOOK, -1
    slot = limit_slot(limit_table, user * limit.size + s + 1, True)
    new = NEW_PAIR if slot < -1 else 0
    if new:
        slot = -2 - slot
    count_at = PAIR_STRIDE * slot + PAIR_COUNT_AT
    if limit_table[count_at] + units > limit[s]:
        return new, slot
    limit_table[count_at] += units
    return TOOK | new, slot


def give_back_limit(limit, limit_table, user, s, units):
    """Undo :func:`take_limit` (compiled: fetch-add)."""
    if limit[s] != NO_LIMIT:
        slot = limit_slot(limit_table, user * limit.size + s + 1, False)
        if slot >= 0:  # always, unless the state was corrupted
            limit_table[PAIR_STRIDE * slot + PAIR_COUNT_AT] -= units


def record_fills(order_table, slot):
    """``(user, first, last)`` of the record at ``slot``: whose fills, and
    which fill-log entries (the packed range unpacked)."""
    record = ORDER_STRIDE * slot
    fills = order_table[record + ORDER_FILLS_AT]
    first = fills >> FILL_COUNT_BITS
    return order_table[record + ORDER_USER_AT], first, first + (fills & MAX_ORDER_FILLS)


def clear_record(order_table, slot):
    """Put a refused order's record back as its claim left it (user,
    deadline and fills 0; the word keeps its id and state), once everything
    it took is given back: a refused order's record is then its id and state
    only, whichever check refused it, so the durable journal writes it
    without reading it.  Never before the give-back: until it ends, cancel,
    expiry and crash recovery need the fills.  (Compiled: plain stores, the
    order is still PENDING and this reserve owns its record.)"""
    record = ORDER_STRIDE * slot
    order_table[record + ORDER_USER_AT] = 0
    order_table[record + ORDER_DEADLINE_AT] = 0
    order_table[record + ORDER_FILLS_AT] = 0


def give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first, last):
    """Give back the logged fills ``first:last`` (stock and the user's limit
    count); returns the units given back.  Each entry is swapped out (read
    and zeroed in one atomic step) *before* its units go back: a process
    killed in between loses those units, it never returns them twice, and a
    recovery racing a live cancel for one entry returns it once."""
    units = 0
    for f in range(first, last):
        got = fill_qty[f]
        if got:
            fill_qty[f] = 0
            stock[fill_offer[f]] += got
            give_back_limit(limit, limit_table, user, offer_sku[fill_offer[f]], got)
            units += got
    return units


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
            fill_offer[first_fill + j] = offer
            fill_qty[first_fill + j] = got
            units -= got
            if units == 0:
                break
    return units


def publish_or_undo(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, counters,
                    slot, user, first_fill, last_fill):
    """An order took everything: PENDING -> HELD (compiled: CAS).  If a
    cancel got there first (CANCEL_REQUESTED), give it all back instead and
    end CANCELLED.  Returns the order's status."""
    word = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT]
    if word >> STATE_SHIFT == PENDING:
        order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (HELD << STATE_SHIFT) | (word & ID_MASK)
        return ACCEPTED
    give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user, first_fill, last_fill)
    counters[ROLLBACKS] += 1
    # Only this reserve moves an order out of CANCEL_REQUESTED: a plain store.
    order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (CANCELLED_HOLD << STATE_SHIFT) | (word & ID_MASK)
    return CANCELLED


def settle_refused_slot(order_table, slot):
    """:func:`settle_refused` for one slot (compiled: CAS from PENDING; on
    failure the word is CANCEL_REQUESTED, which only this reserve leaves)."""
    word = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT]
    final = CANCELLED_HOLD if word >> STATE_SHIFT == CANCEL_REQUESTED else REFUSED
    order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (final << STATE_SHIFT) | (word & ID_MASK)


def line_end(offer_start, sku, fill_slot, line):
    """One past the last fill-log entry of ``line``: its first entry plus
    one per offer of its SKU (an order's lines take consecutive ranges)."""
    return fill_slot[line] + offer_start[sku[line] + 1] - offer_start[sku[line]]


def take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                 fill_offer, fill_qty, line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline,
                 order_slot, counters, order, direct):
    """Reserve one claimed (PENDING) order, all or nothing: each line counts
    against the user's cap, then takes stock.  Returns ``(status, new
    (user, SKU) pairs, rolled back)``: ``rolled back`` is 1 where the order
    took (or counted) something and gave it back, adding one to
    ``counters[ROLLBACKS]``, else 0 (a refusal by the read-only pre-checks;
    and a cancel that came first, CANCELLED, though it gave everything back
    too: the caller's G4 rule treats such a call as one with a rollback it
    did not count, and re-runs).  A refused order stays PENDING for
    :func:`settle_refused` (the facade may re-run it first).

    ``pair_slot[line]`` gets the limit-table slot of the line's (user, SKU)
    pair for each line of a capped SKU that reaches :func:`take_limit_at`
    (see the module's batch arrays); other lines' entries are left as they
    were.

    ``direct``: the caller knows SKU ``s``'s one offer is offer ``s`` and
    no line has a price limit, so a line reads and takes ``stock[s]`` and
    logs its one entry at ``fill_slot[line]``: what the general path does on
    such an inventory, without its ``offer_start`` / ``offer_by_priority`` /
    ``price`` loads (random cache lines of big arrays, per line)."""
    slot = order_slot[order]
    user = user_id[order]
    first_line, last_line = line_start[order], line_start[order + 1]
    # Read-only pre-checks: an order that cannot fit costs loads, not writes
    # (and not a rollback another order could trip over).  Stock first: in a
    # flash sale most orders meet a sold-out SKU, whose word is hot in cache,
    # while the user's cap count is a cold lookup.
    for line in range(first_line, last_line):
        if direct:
            have = stock[sku[line]]
        else:
            have = offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line],
                                    qty[line])
        if have < qty[line]:
            return OUT_OF_STOCK, 0, 0
    for line in range(first_line, last_line):
        if limit_room(limit, limit_table, user, sku[line]) < qty[line]:
            return LIMIT_EXCEEDED, 0, 0
    # One past the order's last fill-log entry (direct: one entry per line).
    last_fill = fill_slot[last_line - 1] + 1 if direct else line_end(offer_start, sku, fill_slot, last_line - 1)
    # The record is complete before the first unit is taken, so cancel,
    # expiry and crash recovery always find the log of what it took.  (An
    # order refused above takes nothing and needs no record; one refused
    # below clears it again once it has given everything back.)
    record = ORDER_STRIDE * slot
    order_table[record + ORDER_USER_AT] = user
    order_table[record + ORDER_DEADLINE_AT] = deadline[order]
    order_table[record + ORDER_FILLS_AT] = fill_slot[first_line] << FILL_COUNT_BITS | last_fill - fill_slot[first_line]
    new_pairs = 0
    for line in range(first_line, last_line):
        # pair_slot[line]: this line's pair slot, for the durable journal
        # (take_limit_at says why), also when the cap refuses or the line
        # then runs out of stock; a re-run writes the same slot again.
        took = take_limit_at(limit, limit_table, user, sku[line], qty[line], pair_slot, line)
        new_pairs += took >> 1
        if not took & TOOK:
            status = LIMIT_EXCEEDED
            undo_to = fill_slot[line]
            break
        if direct:
            # take_line's first step, offer s at rank 0 (its only offer).
            got = take_up_to(stock, sku[line], qty[line])
            if got:
                fill_offer[fill_slot[line]] = sku[line]
                fill_qty[fill_slot[line]] = got
            missing = qty[line] - got
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, sku[line],
                                qty[line], max_price[line], fill_slot[line])
        if missing:
            status = OUT_OF_STOCK
            # give_back_fills below returns the cap count of what was filled.
            give_back_limit(limit, limit_table, user, sku[line], missing)
            undo_to = fill_slot[line] + 1 if direct else line_end(offer_start, sku, fill_slot, line)
            break
    else:
        return publish_or_undo(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty,
                               counters, slot, user, fill_slot[first_line], last_fill), new_pairs, 0
    give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty, user,
                    fill_slot[first_line], undo_to)
    counters[ROLLBACKS] += 1
    clear_record(order_table, slot)
    return status, new_pairs, 1


def claim_orders(order_table, order_id, order_slot, status, n_threads):
    """Claim every id of the batch in state PENDING.

    ``order_slot[i]`` gets the slot of order ``i``, or -1 if its id was
    there already; ``status[i]`` gets ACCEPTED (for now), DUPLICATE, or
    CANCELLED if a cancel of that id came first.  Returns how many ids were
    new.  Compiled kernels claim on ``n_threads`` threads: of two orders with
    one id, whichever claims first is the original.
    """
    new = 0
    for i in range(len(order_id)):
        new += _claim_into(order_table, order_id, order_slot, status, i) >= 0
    return new


def _claim_into(order_table, order_id, order_slot, status, i):
    """Claim order ``i``'s id (PENDING): set ``order_slot[i]`` and
    ``status[i]`` as :func:`claim_orders` says; return the claimed slot, or
    a negative value when the id was there already."""
    slot = claim_order(order_table, order_id[i], PENDING)
    if slot >= 0:
        order_slot[i] = slot
        status[i] = ACCEPTED
    else:
        order_slot[i] = -1
        early = order_table[ORDER_STRIDE * (-1 - slot) + ORDER_WORD_AT] >> STATE_SHIFT == CANCELLED_EARLY
        status[i] = CANCELLED if early else DUPLICATE
    return slot


def claim_and_reserve(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                      order_table, fill_offer, fill_qty,
                      line_start, sku, qty, max_price, order_id, user_id, deadline,
                      order_slot, fill_slot, pair_slot, status, chunks, counters, chunk, settle, direct, n_threads):
    """Claim and reserve a batch in one pass over it, ``chunk`` orders at a
    time (the facade's path; :func:`claim_orders` then :func:`reserve_tracked`
    for each chunk, while its records are still in cache).

    Per chunk ``c`` (orders ``c * chunk`` up to ``(c + 1) * chunk``): claim
    each id as :func:`claim_orders` does (``order_slot``, ``status``), giving
    each line of a newly claimed order its range of the fill log, in order
    (``fill_slot[l]``: its first entry; a line of an order not claimed gets
    the next free one and no entries); take those ranges with one fetch-add
    of ``counters[FILL_CURSOR]``; then :func:`take_tracked` each claimed
    order, and with ``settle`` end a refused one REFUSED right away
    (:func:`settle_refused`; without it, it stays PENDING for the facade's
    re-run and settle).  ``chunks[c]`` gets ``(first fill entry, entries
    taken, new ids, new (user, SKU) pairs, rollbacks)``: the last, the
    rollbacks :func:`take_tracked` reported (each one also counted in
    ``counters[ROLLBACKS]``), tells the facade, on one thread, whether every
    rollback during the call was the call's own.  ``pair_slot``: as for
    :func:`take_tracked` (untouched for lines it does not reach).
    ``direct``: as for :func:`take_tracked` (each claimed line takes one
    entry).

    Every chunk's ranges are one block, so with ``n_threads=1`` (and no other
    caller meanwhile) the batch's ranges are consecutive, claimed orders in
    order, exactly as one fetch-add for the whole batch would lay them out.
    Compiled kernels run chunks on ``n_threads`` threads, as
    :func:`reserve_tracked`.
    """
    n = len(order_id)
    for c in range(len(chunks)):
        start, stop = c * chunk, min(n, (c + 1) * chunk)
        used = new = pairs = rollbacks = 0
        for i in range(start, stop):
            slot = _claim_into(order_table, order_id, order_slot, status, i)
            new += slot >= 0
            for line in range(line_start[i], line_start[i + 1]):
                fill_slot[line] = used  # relative to the chunk's block until it is taken
                if slot >= 0:
                    used += 1 if direct else offer_start[sku[line] + 1] - offer_start[sku[line]]
        base = take_budget(counters, FILL_CURSOR, -used)  # fetch-add: the budget promised these entries
        for line in range(line_start[start], line_start[stop]):
            fill_slot[line] += base
        for i in range(start, stop):
            if order_slot[i] >= 0:
                status[i], got, rolled_back = take_tracked(
                    stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                    order_table, fill_offer, fill_qty,
                    line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters,
                    i, direct)
                pairs += got
                rollbacks += rolled_back
                if settle and (status[i] == OUT_OF_STOCK or status[i] == LIMIT_EXCEEDED):
                    settle_refused_slot(order_table, order_slot[i])
        chunks[c, 0], chunks[c, 1], chunks[c, 2], chunks[c, 3], chunks[c, 4] = base, used, new, pairs, rollbacks


def reserve_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                    order_table, fill_offer, fill_qty,
                    line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                    order_index, status, counters, direct, n_threads):
    """Run :func:`take_tracked` for the claimed orders ``order_index``;
    return how many (user, SKU) pairs the limit table gained (``direct``: as
    for :func:`take_tracked`; a re-run passes what its claim_and_reserve got,
    ``pair_slot`` included: it writes the same slot again for a line it
    reaches and leaves the first run's slots of the others, whose pairs a
    rolled-back line may have inserted).

    Compiled kernels run on ``n_threads`` threads (any serial order is a
    valid outcome, and the facade re-runs refused orders after a rollback as
    for :func:`reserve_general`); ``n_threads=1`` is arrival order.
    """
    new_pairs = 0
    for order in order_index:
        status[order], pairs, _ = take_tracked(
            stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
            order_table, fill_offer, fill_qty,
            line_start, sku, qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters, order,
            direct)
        new_pairs += pairs
    return new_pairs


def settle_refused(order_table, order_slot, status, n_threads):
    """PENDING -> REFUSED (compiled: CAS), or CANCELLED where a cancel asked
    for it meanwhile, for every order whose ``status`` is a refusal
    (OUT_OF_STOCK, LIMIT_EXCEEDED).  The facade settles after any re-run,
    so the statuses say which are still refused."""
    for order in range(status.size):
        if status[order] == OUT_OF_STOCK or status[order] == LIMIT_EXCEEDED:
            settle_refused_slot(order_table, order_slot[order])


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


def confirm_orders(order_table, order_id, outcome, n_threads):
    """HELD -> CONFIRMED for each id.  One CAS decides it, so a confirm
    racing an expiry or a cancel has exactly one winner; ``outcome[i]`` says
    what happened."""
    for i in range(len(order_id)):
        slot = find_order(order_table, order_id[i])
        if slot < 0:
            outcome[i] = UNKNOWN
            continue
        state = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] >> STATE_SHIFT
        if state == HELD:
            order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (CONFIRMED << STATE_SHIFT) | order_id[i]
            outcome[i] = DONE
        else:
            outcome[i] = outcome_of(state)


def cancel_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, order_id, outcome,
                  n_threads):
    """Cancel each id.  HELD -> CANCELLED gives its stock and cap count back;
    PENDING -> CANCEL_REQUESTED makes the running reserve undo itself; an id
    not seen yet is remembered (CANCELLED_EARLY), so its late reserve is
    refused.  Returns how many ids were new to the table."""
    new = 0
    for i in range(len(order_id)):
        slot = claim_order(order_table, order_id[i], CANCELLED_EARLY)
        if slot >= 0:
            outcome[i] = REMEMBERED
            new += 1
            continue
        slot = -1 - slot
        state = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] >> STATE_SHIFT
        if state == HELD:
            order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (CANCELLED_HOLD << STATE_SHIFT) | order_id[i]
            give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty,
                            *record_fills(order_table, slot))
            outcome[i] = DONE
        elif state == PENDING:
            order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (CANCEL_REQUESTED << STATE_SHIFT) | order_id[i]
            outcome[i] = DONE
        else:
            outcome[i] = outcome_of(state)
    return new


def expire_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, now, expired,
                  n_threads):
    """HELD -> EXPIRED for every hold whose deadline is ``<= now``, giving
    its stock and cap count back; ``expired[slot] = 1`` marks them.  Returns
    how many.  (Compiled: the word is loaded with acquire order before the
    deadline is read, so the deadline seen is the one published with HELD.)"""
    count = 0
    for slot in range(order_table.size // ORDER_STRIDE):
        word = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT]
        if word >> STATE_SHIFT == HELD and order_table[ORDER_STRIDE * slot + ORDER_DEADLINE_AT] <= now:
            order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (EXPIRED << STATE_SHIFT) | (word & ID_MASK)
            give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty,
                            *record_fills(order_table, slot))
            expired[slot] = 1
            count += 1
    return count


def recover_orders(stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty, n_threads):
    """After a process died mid-call, while no reserve runs: give back what
    every unfinished (PENDING or CANCEL_REQUESTED) order logged and end it
    REFUSED (CANCELLED if a cancel asked); give back what a CANCELLED or
    EXPIRED order still logs (a process killed inside cancel / expire, after
    the CAS that ended the order).  Returns how many orders it finished."""
    count = 0
    for slot in range(order_table.size // ORDER_STRIDE):
        word = order_table[ORDER_STRIDE * slot + ORDER_WORD_AT]
        state = word >> STATE_SHIFT
        if state == CANCELLED_HOLD or state == EXPIRED:
            if give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty,
                               *record_fills(order_table, slot)):
                count += 1
        elif state == PENDING or state == CANCEL_REQUESTED:
            give_back_fills(stock, offer_sku, limit, limit_table, fill_offer, fill_qty,
                            *record_fills(order_table, slot))
            final = CANCELLED_HOLD if state == CANCEL_REQUESTED else REFUSED
            order_table[ORDER_STRIDE * slot + ORDER_WORD_AT] = (final << STATE_SHIFT) | (word & ID_MASK)
            count += 1
    return count
