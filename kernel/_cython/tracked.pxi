# Tracked orders: idempotent ids, per-user limits and the hold lifecycle
# (see kernel/reference/tracked.py for the layout and the rules).
#
# Mirrors kernel/reference/tracked.py function for function (same names, same
# argument lists); kernel/_numba/tracked.py mirrors the same functions in Numba.
# Included by kernels.pyx (one compiled module): its cimports and codes apply.
# About 1,000 lines (over the ~700 aim): the 26 public functions of the family,
# their chunk loops and the struct hand-over of their def kernels; it splits
# further only where kernel/reference/tracked.py does, to stay its mirror.
#
# Every shared word (stock, an order record's id/state word, a pair's key and
# count, counters) changes only by CAS / fetch-add, or by a release store where
# one owner is guaranteed; the rest of a record (user, deadline, fill range)
# and fill-log entries belong to the one thread that owns the order at that
# moment and are published to the others by the CAS that moves its order word.
# Tables: order_table[ORDER_STRIDE * slot + ORDER_*_AT], limit_table[PAIR_STRIDE
# * slot + PAIR_*_AT] (kernel/codes.py); ``*_mask`` is slots - 1.


cdef enum:
    # Tracked orders per unit of parallel work: an order costs several cache
    # misses (order table, limit table, stock, fill log), so smaller chunks
    # than CHUNK still amortise the dynamic schedule's one atomic per chunk.
    TRACKED_CHUNK = 1024
    # Orders ahead whose cache lines _tracked_chunk prefetches.
    TRACKED_PREFETCH_AHEAD = 8
    # Ids ahead whose home slot claim_and_reserve's claim loop prefetches, and
    # refused orders ahead whose word _settle_chunk prefetches: loops with one
    # random line per order (and a CAS) keep more misses in flight further
    # ahead.  Flash sale, scale 0.1, 1 thread, 10 interleaved rounds, ms per
    # call (min-max): settle 8 / 32 / 64 / 128 ahead: 10.2 (9.9-10.3) / 5.8
    # (5.6-6.0) / 4.5 (4.4-4.5) / 4.4 (4.4-4.5); claim_and_reserve, claims 8
    # / 12 / 16 / 24 ahead: 31.6 (31.1-32.0) / 30.7 (30.2-32.3) / 28.3
    # (26.3-32.7) / 29.4 (27.3-29.8), uniform 58.5 (57.6-59.4) / 56.4
    # (55.8-59.7) / 54.4 (53.0-55.5) / 55.8 (54.9-64.0).  The reserve loop's
    # 8 stayed: 16 measured 27.6 / 55.0 with claims at 16 (no better).
    CLAIM_PREFETCH_AHEAD = 16
    SETTLE_PREFETCH_AHEAD = 64
    # Statuses _settle_chunk checks at once for a refusal (one OR pass).
    SETTLE_BLOCK = 64


cdef inline int64_t make_word(int64_t state, int64_t order_id) noexcept nogil:
    """An order word: ``state << STATE_SHIFT | order_id`` (in int64: the enum is a C int)."""
    return (state << K_STATE_SHIFT) | order_id


cdef inline int64_t state_of(int64_t word) noexcept nogil:
    return word >> K_STATE_SHIFT


cdef inline int64_t hash_slot(int64_t key, int64_t mask) noexcept nogil:
    """Home slot of ``key``: bits 32 and up of ``key * HASH_MULTIPLIER mod 2**64``, ``& mask``."""
    # In uint64_t the product wraps mod 2**64, exactly the reference's masking
    # (a negative key is its two's complement there too): identical layouts.
    return <int64_t>((<uint64_t>key * K_HASH_MULTIPLIER) >> 32) & mask


cdef inline int64_t take_budget(int64_t *counters, Py_ssize_t index, int64_t amount) noexcept nogil:
    """Subtract ``amount`` from counters[index] unless it would go below zero;
    return the old value, or -1 (changing nothing).  CAS loop."""
    cdef int64_t old = atomic_load_i64(&counters[index])
    while old >= amount:
        # CAS, not fetch-add: a refused take must change nothing (a fetch-add
        # would overshoot below zero, if only for a moment, and others would
        # see it).  A give-back (amount < 0) or the FILL_CURSOR fetch-add
        # succeeds on the first uncontended try.
        if atomic_cas_i64(&counters[index], &old, old - amount):
            return old
    return -1


def take_budgets(int64_t[::1] counters, const int64_t[::1] index, const int64_t[::1] amount, int64_t[::1] old):
    """take_budget for each k in turn, all or nothing: old[k] gets the old
    value; on the first refusal the earlier ones are given back and its k is
    returned, else -1.  (The facade's entry to the budgets.)"""
    cdef Py_ssize_t k, earlier, n = index.shape[0]
    for k in range(n):
        if not 0 <= index[k] < counters.shape[0]:
            raise IndexError(f"budget index {index[k]} out of range")  # before anything is taken
    if n == 0:
        return -1
    cdef int64_t *pcnt = &counters[0]
    for k in range(n):
        old[k] = take_budget(pcnt, index[k], amount[k])
        if old[k] < 0:
            for earlier in range(k):
                take_budget(pcnt, index[earlier], -amount[earlier])
            return k
    return -1


cdef inline int64_t claim_order(int64_t *order_table, int64_t mask, int64_t order_id,
                                int64_t state) noexcept nogil:
    """Insert ``order_id`` in ``state`` unless the table has it: its slot if
    this call inserted it, else ``-1 - slot``."""
    cdef int64_t slot = hash_slot(order_id, mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
        if seen == 0:
            # CAS 0 -> word; on losing, ``seen`` is the winner's word (a word
            # never returns to 0), examined below like any other.
            if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &seen,
                              make_word(state, order_id)):
                return slot
        if (seen & K_ID_MASK) == order_id:
            return -1 - slot
        slot = (slot + 1) & mask


cdef inline int64_t find_order(int64_t *order_table, int64_t mask, int64_t order_id) noexcept nogil:
    """The slot of ``order_id``, or -1 if the table does not have it."""
    cdef int64_t slot = hash_slot(order_id, mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
        if seen == 0:
            return -1
        if (seen & K_ID_MASK) == order_id:
            return slot
        slot = (slot + 1) & mask


cdef inline int64_t limit_slot(int64_t *limit_table, int64_t mask, int64_t key, bint insert) noexcept nogil:
    """The slot of the (user, SKU) ``key``: ``slot`` if it was there, ``-2 - slot``
    if this call inserted it (``insert``), -1 if absent."""
    cdef int64_t slot = hash_slot(key, mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_KEY_AT])
        if seen == 0:
            if not insert:
                return -1
            # CAS 0 -> key; on losing, look again at what the winner wrote.
            if atomic_cas_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_KEY_AT], &seen, key):
                return -2 - slot
        if seen == key:
            return slot
        slot = (slot + 1) & mask


cdef inline int64_t limit_room(const int64_t *limit, int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                               int64_t user, int64_t s) noexcept nogil:
    """Units of SKU ``s`` the user may still take (reads only)."""
    cdef int64_t cap = limit[s]
    if cap == K_NO_LIMIT:
        return K_NO_LIMIT
    cdef int64_t slot = limit_slot(limit_table, limit_mask, user * n_skus + s + 1, False)
    return cap - (atomic_load_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_COUNT_AT]) if slot >= 0 else 0)


cdef inline int64_t take_limit(const int64_t *limit, int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                               int64_t user, int64_t s, int64_t units) noexcept nogil:
    """Count ``units`` of SKU ``s`` against the user's cap, or nothing if that
    would pass it; ``TOOK | NEW_PAIR`` bits.  CAS loop on the count."""
    cdef int64_t cap = limit[s]
    if cap == K_NO_LIMIT:
        return K_TOOK
    cdef int64_t slot = limit_slot(limit_table, limit_mask, user * n_skus + s + 1, True)
    cdef int64_t new = 0
    if slot < -1:
        new = K_NEW_PAIR
        slot = -2 - slot
    cdef int64_t *count = &limit_table[K_PAIR_STRIDE * slot + K_PAIR_COUNT_AT]
    cdef int64_t cur = atomic_load_i64(count)
    # Gives up without writing once the cap is reached, as take_exactly does.
    while cur + units <= cap:
        if atomic_cas_i64(count, &cur, cur + units):
            return K_TOOK | new
    return new


cdef inline int64_t take_limit_at(const int64_t *limit, int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                                  int64_t user, int64_t s, int64_t units, int64_t *pair_slot,
                                  int64_t line) noexcept nogil:
    """take_limit, and for a SKU with a cap pair_slot[line] gets the pair's
    slot, found or inserted, whether it counted or not (the reference says
    why: the durable journal's after-image of the limit table)."""
    cdef int64_t cap = limit[s]
    if cap == K_NO_LIMIT:
        return K_TOOK
    cdef int64_t slot = limit_slot(limit_table, limit_mask, user * n_skus + s + 1, True)
    cdef int64_t new = 0
    if slot < -1:
        new = K_NEW_PAIR
        slot = -2 - slot
    cdef int64_t *count = &limit_table[K_PAIR_STRIDE * slot + K_PAIR_COUNT_AT]
    cdef int64_t cur = atomic_load_i64(count)
    # Stored on each way out, after the CAS, as in the Numba mirror: one
    # store and one reload of pair_slot (spilled) per capped line, +1% of
    # carts/tracked in the gate.  (A C tuple returning the slot cost +5%:
    # GCC merged take_limit's two paths again.)
    while cur + units <= cap:
        if atomic_cas_i64(count, &cur, cur + units):
            pair_slot[line] = slot
            return K_TOOK | new
    pair_slot[line] = slot
    return new


# The cap steps of _take_tracked_line (below): the pre-check remembers where
# its probe stopped and the take starts there.  Copies of limit_slot /
# limit_room / take_limit, not their new bodies: routed through these, the
# general path's code came out different (marketplace/tracked +1.6% in the gate).

cdef inline int64_t _limit_slot_from(int64_t *limit_table, int64_t mask, int64_t key, int64_t slot,
                                    bint insert) noexcept nogil:
    """limit_slot, probing from ``slot`` on: the key's home slot, or a slot at
    or before the key's (or the empty one it would take) in its chain, such as
    where _limit_room_at stopped: slots are never emptied and the slots before
    it hold other keys, so the key can only be there or after it."""
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_KEY_AT])
        if seen == 0:
            if not insert:
                return -1
            # CAS 0 -> key; on losing, look again at what the winner wrote.
            if atomic_cas_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_KEY_AT], &seen, key):
                return -2 - slot
        if seen == key:
            return slot
        slot = (slot + 1) & mask


cdef inline int64_t _limit_room_at(int64_t cap, int64_t key, int64_t *limit_table, int64_t limit_mask,
                                  int64_t *at) noexcept nogil:
    """limit_room of the pair ``key`` under ``cap`` (not NO_LIMIT: the caller
    read it and skips uncapped SKUs); ``*at`` gets the slot where its probe
    stopped (the pair's, or the empty one it would take), for
    _take_limit_from to start there: the take does not hash and walk the chain
    again, nor load the cap and make the key again (uniform, callgrind: fewer
    instructions per order)."""
    cdef int64_t slot = hash_slot(key, limit_mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_KEY_AT])
        if seen == key:
            at[0] = slot
            return cap - atomic_load_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_COUNT_AT])
        if seen == 0:
            at[0] = slot
            return cap
        slot = (slot + 1) & limit_mask


cdef inline int64_t _take_limit_from(int64_t cap, int64_t key, int64_t *limit_table, int64_t limit_mask,
                                    int64_t units, int64_t from_slot, int64_t *pair_slot,
                                    int64_t line) noexcept nogil:
    """take_limit_at of the pair ``key`` under ``cap`` (not NO_LIMIT), its
    probe starting at ``from_slot`` (where _limit_room_at stopped for it)."""
    cdef int64_t slot = _limit_slot_from(limit_table, limit_mask, key, from_slot, True)
    cdef int64_t new = 0
    if slot < -1:
        new = K_NEW_PAIR
        slot = -2 - slot
    cdef int64_t *count = &limit_table[K_PAIR_STRIDE * slot + K_PAIR_COUNT_AT]
    cdef int64_t cur = atomic_load_i64(count)
    # pair_slot[line] on each way out, after the CAS, as take_limit_at.
    while cur + units <= cap:
        if atomic_cas_i64(count, &cur, cur + units):
            pair_slot[line] = slot
            return K_TOOK | new
    pair_slot[line] = slot
    return new


cdef inline void give_back_limit(const int64_t *limit, int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                                 int64_t user, int64_t s, int64_t units) noexcept nogil:
    """Undo take_limit (fetch-add of -units)."""
    cdef int64_t slot
    if limit[s] != K_NO_LIMIT:
        slot = limit_slot(limit_table, limit_mask, user * n_skus + s + 1, False)
        # Always found when the units were counted; the guard only keeps a
        # cap set after the take from writing outside the table.
        if slot >= 0:
            atomic_add_i64(&limit_table[K_PAIR_STRIDE * slot + K_PAIR_COUNT_AT], -units)


cdef inline void record_fills(const int64_t *order_table, int64_t slot, int64_t *user, int64_t *first,
                              int64_t *last) noexcept nogil:
    """``user``, ``first``, ``last`` of the record at ``slot``: whose fills, and
    which fill-log entries (the packed range unpacked).  Plain loads: the
    caller read the word with acquire order (or won it by CAS) first."""
    cdef const int64_t *record = &order_table[K_ORDER_STRIDE * slot]
    cdef int64_t fills = record[K_ORDER_FILLS_AT]
    user[0] = record[K_ORDER_USER_AT]
    first[0] = fills >> K_FILL_COUNT_BITS
    last[0] = first[0] + (fills & K_MAX_ORDER_FILLS)


cdef inline void clear_record(int64_t *order_table, int64_t slot) noexcept nogil:
    """A refused order's record back as its claim left it, once it has given
    everything back (see the reference): plain stores, the order is still
    PENDING and this reserve owns its record."""
    cdef int64_t *record = &order_table[K_ORDER_STRIDE * slot]
    record[K_ORDER_USER_AT] = 0
    record[K_ORDER_DEADLINE_AT] = 0
    record[K_ORDER_FILLS_AT] = 0


cdef inline int64_t give_back_fills(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                    int64_t *limit_table, int64_t limit_mask,
                                    const int64_t *fill_offer, int64_t *fill_qty, int64_t user, int64_t first,
                                    int64_t last) noexcept nogil:
    """Give back the logged fills first..last-1 (stock and the user's limit
    count); returns the units given back."""
    cdef int64_t f, got, offer, units = 0
    for f in range(first, last):
        # A plain look first: untaken offers' entries are 0 and cost no
        # locked instruction.  Then swap the entry out BEFORE its units go
        # back: a process killed in between loses them, it never returns
        # them twice; and when a recovery and a live cancel race for one
        # entry, only the one that swaps out a non-zero quantity returns it.
        if fill_qty[f]:
            got = atomic_exchange_i64(&fill_qty[f], 0)
            if got:
                offer = fill_offer[f]
                atomic_add_i64(&stock[offer], got)
                give_back_limit(limit, n_skus, limit_table, limit_mask, user, offer_sku[offer], got)
                units += got
    return units


cdef inline int64_t take_line(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                              const int64_t *offer_by_priority, int64_t *fill_offer, int64_t *fill_qty, int64_t s,
                              int64_t units, int64_t max_p, int64_t first_fill) noexcept nogil:
    """Take ``units`` of SKU ``s`` from its offers priced <= max_p in priority
    order, logging each take at first_fill + rank; return the units missing."""
    cdef int64_t base = offer_start[s]
    cdef int64_t j, offer, got
    for j in range(offer_start[s + 1] - base):
        offer = offer_by_priority[base + j]
        if price[offer] > max_p:
            break
        got = take_up_to(stock, offer, units)
        if got:
            # Logged right after the CAS that took them: an entry never
            # claims more than was taken.
            fill_offer[first_fill + j] = offer
            fill_qty[first_fill + j] = got
            units -= got
            if units == 0:
                break
    return units


cdef inline int8_t publish_or_undo(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                   int64_t *limit_table, int64_t limit_mask,
                                   int64_t *order_table, const int64_t *fill_offer, int64_t *fill_qty,
                                   int64_t *counters, int64_t slot, int64_t user, int64_t first_fill,
                                   int64_t last_fill) noexcept nogil:
    """PENDING -> HELD by CAS; if a cancel got there first (CANCEL_REQUESTED),
    give everything back and end CANCELLED.  Returns the order's status."""
    cdef int64_t order_id = atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT]) & K_ID_MASK
    cdef int64_t expected = make_word(K_PENDING, order_id)
    # The CAS is a release: the record and fill log written before it are
    # visible to whoever loads HELD with acquire (cancel, expire).
    if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &expected, make_word(K_HELD, order_id)):
        return K_ACCEPTED
    give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                    user, first_fill, last_fill)
    atomic_add_i64(&counters[K_ROLLBACKS], 1)
    # Only this reserve moves an order out of CANCEL_REQUESTED: a store.
    atomic_store_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], make_word(K_CANCELLED_HOLD, order_id))
    return K_CANCELLED


cdef inline void settle_refused_slot(int64_t *order_table, int64_t slot) noexcept nogil:
    """PENDING -> REFUSED by CAS; on failure the word is CANCEL_REQUESTED,
    which only this reserve leaves: store CANCELLED_HOLD."""
    cdef int64_t word = atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
    cdef int64_t order_id = word & K_ID_MASK
    cdef int64_t expected = make_word(K_PENDING, order_id)
    if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &expected, make_word(K_REFUSED, order_id)):
        return
    # ``expected`` now holds the word; REFUSED for any state but
    # CANCEL_REQUESTED only mirrors the reference when misused (not PENDING).
    atomic_store_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], make_word(
        K_CANCELLED_HOLD if state_of(expected) == K_CANCEL_REQUESTED else K_REFUSED, order_id))


cdef inline int64_t line_end(const int64_t *offer_start, const int64_t *sku, const int64_t *fill_slot,
                             int64_t line) noexcept nogil:
    """One past the last fill-log entry of ``line`` (one entry per offer of its SKU)."""
    return fill_slot[line] + offer_start[sku[line] + 1] - offer_start[sku[line]]


cdef inline always_inline_int8 _take_tracked_line(int64_t *stock, const int64_t *offer_sku, const int64_t *limit,
                                                  int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                                                  int64_t *order_table, int64_t *fill_offer, int64_t *fill_qty,
                                                  const int64_t *sku, const int64_t *qty, const int64_t *fill_slot,
                                                  int64_t *pair_slot, const int64_t *deadline, int64_t order,
                                                  int64_t slot, int64_t line,
                                                  int64_t user, int64_t *counters,
                                                  int64_t *new_pairs, int64_t *rollbacks) noexcept nogil:
    """take_tracked(direct=True) of an order of one line, ``line`` (uniform
    and flash sale are all such orders): the same steps in the same order,
    as straight-line code.  The loops over lines keep ~20 values live and
    spill them, and load sku / qty / fill_slot again after each store to the
    record and the log (all int64_t: they may alias); here each is loaded
    once, and fill_slot / deadline only once the pre-checks pass.  The cap's
    probe is walked once: the take starts where the read-only pre-check
    stopped (_take_limit_from, which also sets pair_slot[line] as
    take_limit_at does).  ``*rollbacks`` counts a rollback as take_tracked's
    does."""
    cdef int64_t s = sku[line], q = qty[line], f
    cdef int64_t at = -1, took, got
    if atomic_load_i64(&stock[s]) < q:  # relaxed, as in offers_available
        return K_OUT_OF_STOCK
    # The cap and the pair's key once, for the pre-check and the take.
    cdef int64_t cap = limit[s], key = user * n_skus + s + 1
    if cap != K_NO_LIMIT and _limit_room_at(cap, key, limit_table, limit_mask, &at) < q:
        return K_LIMIT_EXCEEDED
    f = fill_slot[line]
    cdef int64_t *record = &order_table[K_ORDER_STRIDE * slot]
    record[K_ORDER_USER_AT] = user
    record[K_ORDER_DEADLINE_AT] = deadline[order]
    record[K_ORDER_FILLS_AT] = (f << K_FILL_COUNT_BITS) | 1
    took = K_TOOK if cap == K_NO_LIMIT else _take_limit_from(cap, key, limit_table, limit_mask, q, at, pair_slot, line)
    new_pairs[0] += took >> 1
    if not (took & K_TOOK):
        # Nothing taken, nothing to give back; counted as take_tracked counts it.
        atomic_add_i64(&counters[K_ROLLBACKS], 1)
        rollbacks[0] += 1
        clear_record(order_table, slot)
        return K_LIMIT_EXCEEDED
    got = take_up_to(stock, s, q)
    if got:
        fill_offer[f] = s
        fill_qty[f] = got
    if got != q:
        give_back_limit(limit, n_skus, limit_table, limit_mask, user, s, q - got)
        give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                        user, f, f + 1)
        atomic_add_i64(&counters[K_ROLLBACKS], 1)
        rollbacks[0] += 1
        clear_record(order_table, slot)
        return K_OUT_OF_STOCK
    return publish_or_undo(stock, offer_sku, limit, n_skus, limit_table, limit_mask, order_table,
                           fill_offer, fill_qty, counters, slot, user, f, f + 1)


cdef inline always_inline_int8 take_tracked(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                const int64_t *offer_by_priority, const int64_t *offer_sku, const int64_t *limit,
                                int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                                int64_t *order_table, int64_t *fill_offer,
                                int64_t *fill_qty, const int64_t *line_start, const int64_t *sku,
                                const int64_t *qty, const int64_t *max_price, const int64_t *fill_slot,
                                int64_t *pair_slot, const int64_t *user_id, const int64_t *deadline,
                                const int64_t *order_slot, int64_t *counters, int64_t order, int64_t *new_pairs,
                                int64_t *rollbacks, bint direct) noexcept nogil:
    """Reserve one claimed (PENDING) order, all or nothing; returns its status
    and adds the (user, SKU) pairs it added to ``*new_pairs``, and 1 to
    ``*rollbacks`` where it gave back what it took (the reference's ``rolled
    back``: not for a cancel that came first); pair_slot[line]
    gets the slot of each capped line's pair it counts (or tries to) against
    (see the reference).  ``direct``:
    offer s is SKU s's only offer and nothing is priced out (see the
    reference): a line reads and takes stock[s] itself, no offer_start /
    offer_by_priority / price loads.  Always inlined and ``direct`` is the
    same for a whole batch, so the branch is a predicted one per line (and
    GCC may unswitch the loops on it)."""
    cdef int64_t slot = order_slot[order]
    cdef int64_t user = user_id[order]
    cdef int64_t first_line = line_start[order], last_line = line_start[order + 1]
    cdef int64_t line, took, missing, undo_to = 0, got, have, last_fill
    cdef int8_t status = K_ACCEPTED
    # Read-only pre-checks: an order that cannot fit costs loads, not writes.
    # Stock first: in a flash sale most orders meet a sold-out SKU, whose
    # word is hot in cache, while the cap count is a cold lookup.
    for line in range(first_line, last_line):
        if direct:
            have = atomic_load_i64(&stock[sku[line]])  # relaxed, as in offers_available
        else:
            have = offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line],
                                    qty[line])
        if have < qty[line]:
            return K_OUT_OF_STOCK
    for line in range(first_line, last_line):
        if limit_room(limit, n_skus, limit_table, limit_mask, user, sku[line]) < qty[line]:
            return K_LIMIT_EXCEEDED
    # The record is complete before the first unit is taken (the CASes that
    # take are releases), so cancel, expiry and recovery find the log.  An
    # order refused above takes nothing and needs no record.
    # direct: one log entry per line, no offer_start loads for the range.
    last_fill = fill_slot[last_line - 1] + 1 if direct else line_end(offer_start, sku, fill_slot, last_line - 1)
    cdef int64_t *record = &order_table[K_ORDER_STRIDE * slot]
    record[K_ORDER_USER_AT] = user
    record[K_ORDER_DEADLINE_AT] = deadline[order]
    record[K_ORDER_FILLS_AT] = (fill_slot[first_line] << K_FILL_COUNT_BITS) | (last_fill - fill_slot[first_line])
    for line in range(first_line, last_line):
        # pair_slot[line]: this line's pair slot, for the durable journal
        # (take_limit_at says why), also when the cap refuses.
        took = take_limit_at(limit, n_skus, limit_table, limit_mask, user, sku[line], qty[line], pair_slot, line)
        new_pairs[0] += took >> 1
        if not (took & K_TOOK):
            status = K_LIMIT_EXCEEDED
            undo_to = fill_slot[line]
            break
        if direct:
            # take_line's one step: offer s at rank 0, logged after the CAS.
            got = take_up_to(stock, sku[line], qty[line])
            if got:
                fill_offer[fill_slot[line]] = sku[line]
                fill_qty[fill_slot[line]] = got
            missing = qty[line] - got
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, sku[line],
                                qty[line], max_price[line], fill_slot[line])
        if missing:
            status = K_OUT_OF_STOCK
            # give_back_fills below returns the cap count of what was filled.
            give_back_limit(limit, n_skus, limit_table, limit_mask, user, sku[line], missing)
            undo_to = fill_slot[line] + 1 if direct else line_end(offer_start, sku, fill_slot, line)
            break
    else:
        return publish_or_undo(stock, offer_sku, limit, n_skus, limit_table, limit_mask, order_table,
                               fill_offer, fill_qty, counters, slot, user, fill_slot[first_line], last_fill)
    give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                    user, fill_slot[first_line], undo_to)
    # Counted atomically, as in roll_back_order: the facade re-runs refused
    # orders of a batch during which a rollback happened (one it did not
    # make itself on one thread: *rollbacks tells it which were its own).
    atomic_add_i64(&counters[K_ROLLBACKS], 1)
    rollbacks[0] += 1
    clear_record(order_table, slot)
    return status


# ---- claim_orders

cdef noinline_void _claim_chunk(int64_t *order_table, int64_t order_mask, const int64_t *order_id,
                                int64_t *order_slot, int8_t *status, Py_ssize_t start, Py_ssize_t stop,
                                int64_t *n_new) noexcept nogil:
    """Claim ids start..stop-1; ``*n_new`` gets how many were new."""
    cdef Py_ssize_t i
    cdef int64_t slot, new = 0
    for i in range(start, stop):
        if i + TRACKED_PREFETCH_AHEAD < stop:
            # The home slot of an id a few ahead: a random line of a big table.
            prefetch_rw(&order_table[K_ORDER_STRIDE * hash_slot(order_id[i + TRACKED_PREFETCH_AHEAD], order_mask)])
        slot = claim_order(order_table, order_mask, order_id[i], K_PENDING)
        if slot >= 0:
            order_slot[i] = slot
            status[i] = K_ACCEPTED
            new += 1
        else:
            order_slot[i] = -1
            # Relaxed: only the state is read, and CANCELLED_EARLY is final.
            status[i] = (K_CANCELLED
                         if state_of(atomic_load_i64(&order_table[K_ORDER_STRIDE * (-1 - slot) + K_ORDER_WORD_AT]))
                         == K_CANCELLED_EARLY
                         else K_DUPLICATE)
    n_new[0] = new


def claim_orders(int64_t[::1] order_table, const int64_t[::1] order_id, int64_t[::1] order_slot,
                 int8_t[::1] status, int n_threads):
    """Claim every id of the batch in state PENDING; return how many were new."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    cdef int64_t new = 0, chunk_new
    if n == 0:
        return 0
    cdef int64_t *order_table_p = _ptr(order_table)
    cdef int64_t order_mask = order_table.shape[0] // K_ORDER_STRIDE - 1
    cdef const int64_t *order_id_p = _const_ptr(order_id)
    cdef int64_t *order_slot_p = _ptr(order_slot)
    cdef int8_t *status_p = _ptr8(status)
    if n_threads <= 1:
        with nogil:
            _claim_chunk(order_table_p, order_mask, order_id_p, order_slot_p, status_p, 0, n, &new)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _claim_chunk(order_table_p, order_mask, order_id_p, order_slot_p, status_p, c * TRACKED_CHUNK,
                         min((c + 1) * TRACKED_CHUNK, n), &chunk_new)
            new += chunk_new
    return new


# ---- claim_and_reserve

cdef struct FusedBatch:
    # The batch arrays of claim_and_reserve (see the reference), as pointers.
    const int64_t *line_start
    const int64_t *sku
    const int64_t *qty
    const int64_t *max_price
    const int64_t *order_id
    const int64_t *user_id
    const int64_t *deadline
    int64_t *order_slot
    int64_t *fill_slot
    int64_t *pair_slot
    int8_t *status
    int64_t *chunks
    Py_ssize_t chunk
    bint settle


cdef inline always_inline_void _claim_reserve_body(const TrackedState *st, const FusedBatch *b, Py_ssize_t c,
                                                   Py_ssize_t n, bint direct, bint single) noexcept nogil:
    """claim_and_reserve's chunk ``c``: claim its ids, take the fill-log block
    of the claimed lines, reserve them (their records are in cache now).
    Inlined into the three chunk functions below with ``direct`` and
    ``single`` constants.  ``single`` (with ``direct``): every order of the
    batch has one line, so order i's line is i (line_start is 0, 1, .., n:
    orders have at least one line) and line_start is never loaded."""
    # Every pointer in a local: the stores below may alias the structs (the
    # extension builds with -fno-strict-aliasing), which would reload them.
    cdef int64_t *stock = st.stock
    cdef const int64_t *price = st.price
    cdef const int64_t *offer_start = st.offer_start
    cdef const int64_t *offer_by_priority = st.offer_by_priority
    cdef const int64_t *offer_sku = st.offer_sku
    cdef int64_t *fill_offer = st.fill_offer
    cdef int64_t *fill_qty = st.fill_qty
    cdef const int64_t *qty = b.qty
    cdef const int64_t *max_price = b.max_price
    cdef const int64_t *deadline = b.deadline
    cdef bint settle = b.settle
    cdef const int64_t *limit = st.limit
    cdef int64_t *limit_table = st.limit_table
    cdef int64_t *order_table = st.order_table
    cdef int64_t *counters = st.counters
    cdef int64_t n_skus = st.n_skus, limit_mask = st.limit_capacity - 1, order_mask = st.order_capacity - 1
    cdef const int64_t *line_start = b.line_start
    cdef const int64_t *sku = b.sku
    cdef const int64_t *order_id = b.order_id
    cdef const int64_t *user_id = b.user_id
    cdef int64_t *order_slot = b.order_slot
    cdef int64_t *fill_slot = b.fill_slot
    cdef int64_t *pair_slot = b.pair_slot
    cdef int8_t *status = b.status
    cdef Py_ssize_t start = c * b.chunk, stop = min((c + 1) * b.chunk, n), i
    cdef int64_t slot, line, s, used = 0, new = 0, pairs = 0, rollbacks = 0, base, ahead
    cdef int8_t got
    # Claim, prefetching the home slot of an id a few ahead (as _claim_chunk).
    # Only that line: prefetching the reserve's lines here too measured
    # slower (uniform 1M: 0.89x), whereas the reserve loop below finds the
    # chunk's records in L2 and fetches the rest itself.
    for i in range(start, stop):
        if i + CLAIM_PREFETCH_AHEAD < stop:
            ahead = i + CLAIM_PREFETCH_AHEAD
            prefetch_rw(&order_table[K_ORDER_STRIDE * hash_slot(order_id[ahead], order_mask)])
        slot = claim_order(order_table, order_mask, order_id[i], K_PENDING)
        if slot >= 0:
            order_slot[i] = slot
            status[i] = K_ACCEPTED
            new += 1
        else:
            order_slot[i] = -1
            # Relaxed: only the state is read, and CANCELLED_EARLY is final.
            status[i] = (K_CANCELLED
                         if state_of(atomic_load_i64(&order_table[K_ORDER_STRIDE * (-1 - slot) + K_ORDER_WORD_AT]))
                         == K_CANCELLED_EARLY
                         else K_DUPLICATE)
    # The claimed lines' ranges, in order (relative to the chunk's block until
    # it is taken).  A loop of its own: its offer_start loads are independent
    # and overlap here, whereas in the claim loop each would stall the next
    # claim's CAS (a locked instruction waits for every earlier load).
    if single:  # line i, one entry
        for i in range(start, stop):
            fill_slot[i] = used
            used += order_slot[i] >= 0
    elif direct:  # one entry per line
        for i in range(start, stop):
            for line in range(line_start[i], line_start[i + 1]):
                fill_slot[line] = used
                if order_slot[i] >= 0:
                    used += 1
    else:
        for i in range(start, stop):
            for line in range(line_start[i], line_start[i + 1]):
                fill_slot[line] = used
                if order_slot[i] >= 0:
                    used += offer_start[sku[line] + 1] - offer_start[sku[line]]
    # The block: one fetch-add (the facade's budget promised these entries).
    base = atomic_add_i64(&counters[K_FILL_CURSOR], used)
    if single:
        for line in range(start, stop):
            fill_slot[line] += base
    else:
        for line in range(line_start[start], line_start[stop]):
            fill_slot[line] += base
    # Reserve: records, pairs and stock words are in cache from the claim
    # (L2 for a chunk this size); fetching them into L1 a few orders ahead
    # keeps each order's chain of dependent loads and CASes short.
    for i in range(start, stop):
        if i + TRACKED_PREFETCH_AHEAD < stop and order_slot[i + TRACKED_PREFETCH_AHEAD] >= 0:
            ahead = i + TRACKED_PREFETCH_AHEAD
            prefetch_rw(&order_table[K_ORDER_STRIDE * order_slot[ahead]])
            # Every line's (a cart's lines are as cold as its first).
            if single:  # line ``ahead``, no loop
                s = sku[ahead]
                prefetch_rw(&limit_table[K_PAIR_STRIDE * hash_slot(user_id[ahead] * n_skus + s + 1, limit_mask)])
                prefetch_rw(&stock[s])
                prefetch_rw(&limit[s])
            elif direct:  # direct never loads the offer arrays: 3 fewer lines to fetch per line
                for line in range(line_start[ahead], line_start[ahead + 1]):
                    s = sku[line]
                    prefetch_rw(&limit_table[K_PAIR_STRIDE * hash_slot(user_id[ahead] * n_skus + s + 1, limit_mask)])
                    prefetch_rw(&stock[s])
                    prefetch_rw(&limit[s])
            else:
                for line in range(line_start[ahead], line_start[ahead + 1]):
                    s = sku[line]
                    prefetch_rw(&limit_table[K_PAIR_STRIDE * hash_slot(user_id[ahead] * n_skus + s + 1, limit_mask)])
                    prefetch_rw(&stock[s])
                    prefetch_rw(&limit[s])
                    prefetch_rw(&offer_start[s])
                    prefetch_rw(&offer_by_priority[s])
                    prefetch_rw(&price[s])
        if order_slot[i] < 0:
            continue
        # direct one-line orders (uniform, flash sale: all) take the
        # straight-line copy.  Only here: the re-run (_tracked_chunk) is rare,
        # and the copy inlined there too, or on the general path, cost
        # marketplace/tracked +2.6-3.1% in the gate.
        if single:
            got = _take_tracked_line(stock, offer_sku, limit, n_skus, limit_table, limit_mask, order_table,
                                     fill_offer, fill_qty, sku, qty, fill_slot, pair_slot, deadline, i,
                                     order_slot[i], i, user_id[i], counters, &pairs, &rollbacks)
        elif direct and line_start[i + 1] == line_start[i] + 1:
            got = _take_tracked_line(stock, offer_sku, limit, n_skus, limit_table, limit_mask, order_table,
                                     fill_offer, fill_qty, sku, qty, fill_slot, pair_slot, deadline, i,
                                     order_slot[i], line_start[i], user_id[i], counters, &pairs, &rollbacks)
        else:
            got = take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, n_skus,
                               limit_table, limit_mask, order_table, fill_offer, fill_qty, line_start, sku, qty,
                               max_price, fill_slot, pair_slot, user_id, deadline, order_slot, counters, i, &pairs,
                               &rollbacks, direct)
        status[i] = got
        if settle and (got == K_OUT_OF_STOCK or got == K_LIMIT_EXCEEDED):
            settle_refused_slot(order_table, order_slot[i])
    cdef int64_t *out = &b.chunks[5 * c]
    out[0] = base
    out[1] = used
    out[2] = new
    out[3] = pairs
    out[4] = rollbacks


# Three chunk functions, ``direct`` and ``single`` constants in each, so GCC
# folds every test of them away: the general path's code is what it was
# without the flags.  (The direct flag tested at run time cost
# marketplace/tracked +7% instructions in the callgrind gate, +3% still with
# the tests hoisted to once per order.)  The single-line one: uniform tracked
# 252 -> 214 instructions per order in claim_and_reserve (bench/kernel_counts.py).
cdef noinline_void _claim_reserve_chunk(const TrackedState *st, const FusedBatch *b, Py_ssize_t c,
                                        Py_ssize_t n) noexcept nogil:
    _claim_reserve_body(st, b, c, n, False, False)


cdef noinline_void _claim_reserve_chunk_direct(const TrackedState *st, const FusedBatch *b, Py_ssize_t c,
                                               Py_ssize_t n) noexcept nogil:
    _claim_reserve_body(st, b, c, n, True, False)


cdef noinline_void _claim_reserve_chunk_single(const TrackedState *st, const FusedBatch *b, Py_ssize_t c,
                                               Py_ssize_t n) noexcept nogil:
    _claim_reserve_body(st, b, c, n, True, True)


def claim_and_reserve(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                      const int64_t[::1] offer_by_priority, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                      int64_t[::1] limit_table, int64_t[::1] order_table, int64_t[::1] fill_offer,
                      int64_t[::1] fill_qty, const int64_t[::1] line_start, const int64_t[::1] sku,
                      const int64_t[::1] qty, const int64_t[::1] max_price, const int64_t[::1] order_id,
                      const int64_t[::1] user_id, const int64_t[::1] deadline, int64_t[::1] order_slot,
                      int64_t[::1] fill_slot, int64_t[::1] pair_slot, int8_t[::1] status, int64_t[:, ::1] chunks,
                      int64_t[::1] counters, Py_ssize_t chunk, bint settle, bint direct, int n_threads):
    """Claim and reserve the batch, chunk by chunk (see the reference);
    chunks[c] gets (first fill entry, entries, new ids, new pairs, rollbacks)."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = chunks.shape[0]
    if n == 0:
        return
    if chunks.shape[1] != 5 or n_chunks != _n_chunks(n, chunk):
        raise ValueError("chunks: needs one row of 5 per chunk of the batch")
    cdef TrackedState st
    _state_from_views(&st, stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                      order_table, fill_offer, fill_qty, counters)
    # One line per order (orders have at least one): the single-line chunks.
    cdef bint single = direct and sku.shape[0] == n
    cdef FusedBatch batch
    batch.line_start = _const_ptr(line_start)
    batch.sku = _const_ptr(sku)
    batch.qty = _const_ptr(qty)
    batch.max_price = _const_ptr(max_price)
    batch.order_id = _const_ptr(order_id)
    batch.user_id = _const_ptr(user_id)
    batch.deadline = _const_ptr(deadline)
    batch.order_slot = _ptr(order_slot)
    batch.fill_slot = _ptr(fill_slot)
    batch.pair_slot = _ptr(pair_slot)
    batch.status = _ptr8(status)
    batch.chunks = &chunks[0, 0]
    batch.chunk = chunk
    batch.settle = settle
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                if single:
                    _claim_reserve_chunk_single(&st, &batch, c, n)
                elif direct:
                    _claim_reserve_chunk_direct(&st, &batch, c, n)
                else:
                    _claim_reserve_chunk(&st, &batch, c, n)
    else:
        # dynamic: per-chunk cost varies (duplicates, lines, rollbacks).
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            if single:
                _claim_reserve_chunk_single(&st, &batch, c, n)
            elif direct:
                _claim_reserve_chunk_direct(&st, &batch, c, n)
            else:
                _claim_reserve_chunk(&st, &batch, c, n)


# ---- reserve_tracked

cdef struct TrackedBatch:
    # The batch arrays of reserve_tracked (see the reference), as pointers.
    const int64_t *line_start
    const int64_t *sku
    const int64_t *qty
    const int64_t *max_price
    const int64_t *fill_slot
    int64_t *pair_slot
    const int64_t *user_id
    const int64_t *deadline
    const int64_t *order_slot
    const int64_t *order_index
    int8_t *status
    bint direct


cdef inline int64_t _tracked_chunk(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                   const int64_t *offer_by_priority, const int64_t *offer_sku, const int64_t *limit,
                                   int64_t n_skus, int64_t *limit_table, int64_t limit_mask,
                                   int64_t *order_table, int64_t *fill_offer,
                                   int64_t *fill_qty, const int64_t *line_start, const int64_t *sku,
                                   const int64_t *qty, const int64_t *max_price, const int64_t *fill_slot,
                                   int64_t *pair_slot, const int64_t *user_id, const int64_t *deadline,
                                   const int64_t *order_slot, const int64_t *order_index, int8_t *status,
                                   int64_t *counters,
                                   Py_ssize_t start, Py_ssize_t stop, bint direct) noexcept nogil:
    cdef Py_ssize_t k
    cdef int64_t order, pairs = 0, ahead, slot, s, pair
    cdef int64_t rollbacks = 0  # take_tracked's count: not needed by a re-run
    for k in range(start, stop):
        if k + TRACKED_PREFETCH_AHEAD < stop:
            # A tracked order touches several random cache lines: its record
            # (one line), its (user, SKU) pair (one line), its SKU's
            # offer_start / offer / price / stock / cap words.
            # On a big sale each is a miss; fetching them for an order a few
            # ahead overlaps those misses instead of paying them one after
            # another.  The offer words are guessed at index s (one offer per
            # SKU: offer id == SKU id); a wrong guess is a useless hint.
            # (Written out here, not in a helper: GCC finds such a helper
            # side-effect free and deletes the call.)
            ahead = order_index[k + TRACKED_PREFETCH_AHEAD]
            slot = order_slot[ahead]
            s = sku[line_start[ahead]]
            pair = hash_slot(user_id[ahead] * n_skus + s + 1, limit_mask)
            prefetch_rw(&order_table[K_ORDER_STRIDE * slot])
            prefetch_rw(&limit_table[K_PAIR_STRIDE * pair])
            prefetch_rw(&stock[s])
            prefetch_rw(&limit[s])
            if not direct:  # direct never loads these
                prefetch_rw(&offer_start[s])
                prefetch_rw(&offer_by_priority[s])
                prefetch_rw(&price[s])
        order = order_index[k]
        if direct:  # two copies, ``direct`` a constant in each (see _claim_reserve_chunk)
            status[order] = take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, n_skus,
                                         limit_table, limit_mask, order_table, fill_offer, fill_qty, line_start, sku,
                                         qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                                         counters, order, &pairs, &rollbacks, True)
        else:
            status[order] = take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, n_skus,
                                         limit_table, limit_mask, order_table, fill_offer, fill_qty, line_start, sku,
                                         qty, max_price, fill_slot, pair_slot, user_id, deadline, order_slot,
                                         counters, order, &pairs, &rollbacks, False)
    return pairs


cdef inline int64_t _tracked_chunk_at(const TrackedState *st, const TrackedBatch *batch, Py_ssize_t start,
                                      Py_ssize_t stop) noexcept nogil:
    """_tracked_chunk on the state ``st`` and the batch ``batch`` (both paths of reserve_tracked)."""
    return _tracked_chunk(st.stock, st.price, st.offer_start, st.offer_by_priority, st.offer_sku, st.limit, st.n_skus,
                          st.limit_table, st.limit_capacity - 1, st.order_table, st.fill_offer, st.fill_qty,
                          batch.line_start, batch.sku, batch.qty, batch.max_price, batch.fill_slot, batch.pair_slot,
                          batch.user_id, batch.deadline, batch.order_slot, batch.order_index, batch.status,
                          st.counters, start, stop, batch.direct)


def reserve_tracked(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                    const int64_t[::1] offer_by_priority, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                    int64_t[::1] limit_table, int64_t[::1] order_table, int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                    const int64_t[::1] line_start, const int64_t[::1] sku, const int64_t[::1] qty,
                    const int64_t[::1] max_price, const int64_t[::1] fill_slot, int64_t[::1] pair_slot,
                    const int64_t[::1] user_id, const int64_t[::1] deadline, const int64_t[::1] order_slot,
                    const int64_t[::1] order_index, int8_t[::1] status, int64_t[::1] counters, bint direct,
                    int n_threads):
    """Run take_tracked for the claimed orders order_index; return how many
    (user, SKU) pairs the limit table gained (pair_slot: as for take_tracked)."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    cdef int64_t new_pairs = 0
    if n == 0:
        return 0
    cdef TrackedState st
    _state_from_views(&st, stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table,
                      order_table, fill_offer, fill_qty,
                      counters)
    cdef TrackedBatch batch
    batch.line_start = _const_ptr(line_start)
    batch.sku = _const_ptr(sku)
    batch.qty = _const_ptr(qty)
    batch.max_price = _const_ptr(max_price)
    batch.fill_slot = _const_ptr(fill_slot)
    batch.pair_slot = _ptr(pair_slot)
    batch.user_id = _const_ptr(user_id)
    batch.deadline = _const_ptr(deadline)
    batch.order_slot = _const_ptr(order_slot)
    batch.order_index = _const_ptr(order_index)
    batch.status = _ptr8(status)
    batch.direct = direct
    if n_threads <= 1:
        with nogil:
            new_pairs = _tracked_chunk_at(&st, &batch, 0, n)
    else:
        # dynamic: per-order cost varies (lines, offers, rollbacks); see reserve_single.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            new_pairs += _tracked_chunk_at(&st, &batch, c * TRACKED_CHUNK, min((c + 1) * TRACKED_CHUNK, n))
    return new_pairs


# ---- settle_refused

cdef noinline_void _settle_chunk(int64_t *order_table, const int64_t *order_slot, const int8_t *status,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t block = start, end, i
    cdef int8_t seen
    cdef bint check = True
    while block < stop:
        end = min(block + SETTLE_BLOCK, stop)
        # Skip a block with no refusal, found by OR-ing its statuses: a
        # refusal's status has every bit of REFUSAL_BITS set (codes.py's
        # OUT_OF_STOCK and LIMIT_EXCEEDED are odd; checked in
        # tests/test_claim_and_reserve.py), so a block whose OR lacks one
        # has none.  GCC vectorizes the OR (16 statuses an instruction).
        # The per-order test it replaces (two compares and a branch, and the
        # prefetch look-ahead's) was 14 of uniform/tracked's 223.5
        # instructions an order (bench/kernel_counts.py; now 1.1), nearly
        # every order there being accepted: this pass over 10M accepted
        # statuses took 1.06 ns an order, now 0.05 (Numba's 0.82 -> 0.07),
        # ~2% of a one-thread tracked reserve.
        # Only after a block whose last order was not refused (``check``):
        # where refusals are dense (a flash sale) the next block has some
        # too, and the OR and its reduction cost 1-1.4 instructions an order
        # there (the gate's flash-sale/tracked +1.0-1.3%) for nothing.  (A
        # flag set by each settle instead cost the per-order loop more.)
        if check:
            seen = 0
            for i in range(block, end):
                seen = seen | status[i]
            if (seen & K_REFUSAL_BITS) != K_REFUSAL_BITS:
                block = end
                continue
        for i in range(block, end):
            if i + SETTLE_PREFETCH_AHEAD < stop and (status[i + SETTLE_PREFETCH_AHEAD] == K_OUT_OF_STOCK
                                                     or status[i + SETTLE_PREFETCH_AHEAD] == K_LIMIT_EXCEEDED):
                prefetch_rw(&order_table[K_ORDER_STRIDE * order_slot[i + SETTLE_PREFETCH_AHEAD]])  # as in _claim_chunk
            if status[i] == K_OUT_OF_STOCK or status[i] == K_LIMIT_EXCEEDED:
                settle_refused_slot(order_table, order_slot[i])
        check = not (status[end - 1] == K_OUT_OF_STOCK or status[end - 1] == K_LIMIT_EXCEEDED)
        block = end


def settle_refused(int64_t[::1] order_table, const int64_t[::1] order_slot, const int8_t[::1] status,
                   int n_threads):
    """PENDING -> REFUSED (CAS), or CANCELLED where a cancel asked for it
    meanwhile, for every order whose status is a refusal."""
    # A pass over the statuses (1 byte an order), not over an index of the
    # refused orders: in a flash sale (9 in 10 refused) the facade's
    # np.flatnonzero made a 7 MB index per 1M orders, ~15-19 ms in fresh
    # pages on the 2-core VM, three times this pass.
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    if n == 0:
        return
    cdef int64_t *order_table_p = _ptr(order_table)
    cdef const int64_t *order_slot_p = _const_ptr(order_slot)
    cdef const int8_t *status_p = &status[0]
    if n_threads <= 1:
        with nogil:
            _settle_chunk(order_table_p, order_slot_p, status_p, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _settle_chunk(order_table_p, order_slot_p, status_p, c * TRACKED_CHUNK, min((c + 1) * TRACKED_CHUNK, n))


cdef inline int8_t outcome_of(int64_t state) noexcept nogil:
    """What confirm / cancel answer for an order already in ``state``."""
    if state == K_PENDING:
        return K_IN_FLIGHT
    if state == K_CONFIRMED:
        return K_ALREADY_CONFIRMED
    if state == K_EXPIRED:
        return K_ALREADY_EXPIRED
    if state == K_REFUSED:
        return K_WAS_REFUSED
    return K_ALREADY_CANCELLED  # CANCELLED_HOLD, CANCEL_REQUESTED, CANCELLED_EARLY


# ---- confirm_orders

cdef noinline_void _confirm_chunk(int64_t *order_table, int64_t order_mask, const int64_t *order_id, int8_t *outcome,
                                   Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t slot, word
    for i in range(start, stop):
        slot = find_order(order_table, order_mask, order_id[i])
        if slot < 0:
            outcome[i] = K_UNKNOWN
            continue
        # Relaxed: confirm reads no record, and the CAS checks the state.
        word = atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
        while True:
            if state_of(word) != K_HELD:
                outcome[i] = outcome_of(state_of(word))
                break
            # One CAS decides a confirm racing an expiry or a cancel; on
            # losing, ``word`` is the winner's and we decide again.
            if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &word,
                              make_word(K_CONFIRMED, order_id[i])):
                outcome[i] = K_DONE
                break


def confirm_orders(int64_t[::1] order_table, const int64_t[::1] order_id, int8_t[::1] outcome, int n_threads):
    """HELD -> CONFIRMED for each id (one CAS each); outcome[i] says what happened."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    if n == 0:
        return
    cdef int64_t *order_table_p = _ptr(order_table)
    cdef int64_t order_mask = order_table.shape[0] // K_ORDER_STRIDE - 1
    cdef const int64_t *order_id_p = _const_ptr(order_id)
    cdef int8_t *outcome_p = _ptr8(outcome)
    if n_threads <= 1:
        with nogil:
            _confirm_chunk(order_table_p, order_mask, order_id_p, outcome_p, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _confirm_chunk(order_table_p, order_mask, order_id_p, outcome_p, c * TRACKED_CHUNK,
                           min((c + 1) * TRACKED_CHUNK, n))


# ---- cancel, expire, recover: ending orders that hold (or may hold) units.
# Their def kernels fill a TrackedState with _holds_from_views (machinery.pxi);
# each *_chunk_at below hands its fields to the chunk loop, once per chunk.
# (A loop that read them from the struct, or gave back through a helper
# taking the struct, ran 7% (cancel) to 19% (expire) more instructions.)

cdef noinline_void _cancel_chunk(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                 int64_t *limit_table, int64_t limit_mask, int64_t *order_table, int64_t order_mask,
                                 const int64_t *fill_offer, int64_t *fill_qty,
                                 const int64_t *order_id, int8_t *outcome, Py_ssize_t start, Py_ssize_t stop,
                                 int64_t *n_new) noexcept nogil:
    """Cancel ids start..stop-1; ``*n_new`` gets how many were new to the table."""
    cdef Py_ssize_t i
    cdef int64_t slot, word, state, oid, user, first, last, new = 0
    for i in range(start, stop):
        oid = order_id[i]
        slot = claim_order(order_table, order_mask, oid, K_CANCELLED_EARLY)
        if slot >= 0:
            outcome[i] = K_REMEMBERED
            new += 1
            continue
        slot = -1 - slot
        # Acquire: the record read below is the one published with HELD (the
        # winning CAS is an acquire too; this keeps the pairing explicit).
        word = atomic_load_acquire_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
        while True:
            state = state_of(word)
            if state == K_HELD:
                # Win the hold first (against confirm / expiry), then give back.
                if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &word,
                                  make_word(K_CANCELLED_HOLD, oid)):
                    record_fills(order_table, slot, &user, &first, &last)
                    give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                                    user, first, last)
                    outcome[i] = K_DONE
                    break
            elif state == K_PENDING:
                # The running reserve sees this and undoes itself.
                if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &word,
                                  make_word(K_CANCEL_REQUESTED, oid)):
                    outcome[i] = K_DONE
                    break
            else:
                outcome[i] = outcome_of(state)
                break
            # CAS lost: ``word`` is the new state, decide again.
    n_new[0] = new


cdef inline void _cancel_chunk_at(const TrackedState *st, const int64_t *order_id, int8_t *outcome,
                                  Py_ssize_t start, Py_ssize_t stop, int64_t *n_new) noexcept nogil:
    _cancel_chunk(st.stock, st.offer_sku, st.limit, st.n_skus, st.limit_table, st.limit_capacity - 1,
                  st.order_table, st.order_capacity - 1, st.fill_offer, st.fill_qty, order_id, outcome, start, stop,
                  n_new)


def cancel_orders(int64_t[::1] stock, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                  int64_t[::1] limit_table, int64_t[::1] order_table, const int64_t[::1] fill_offer,
                  int64_t[::1] fill_qty,
                  const int64_t[::1] order_id, int8_t[::1] outcome, int n_threads):
    """Cancel each id (see the reference); return how many ids were new to the table."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    cdef int64_t new = 0, chunk_new
    if n == 0:
        return 0
    cdef TrackedState st
    _holds_from_views(&st, stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty)
    cdef const int64_t *order_id_p = _const_ptr(order_id)
    cdef int8_t *outcome_p = _ptr8(outcome)
    if n_threads <= 1:
        with nogil:
            _cancel_chunk_at(&st, order_id_p, outcome_p, 0, n, &new)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _cancel_chunk_at(&st, order_id_p, outcome_p, c * TRACKED_CHUNK, min((c + 1) * TRACKED_CHUNK, n),
                             &chunk_new)
            new += chunk_new
    return new


cdef inline int64_t _expire_chunk(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                  int64_t *limit_table, int64_t limit_mask, int64_t *order_table,
                                  const int64_t *fill_offer, int64_t *fill_qty, int64_t now, int8_t *expired,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t slot
    cdef int64_t word, user, first, last, count = 0
    for slot in range(start, stop):
        # Acquire: the deadline read next is the one published with HELD.
        word = atomic_load_acquire_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
        while state_of(word) == K_HELD and order_table[K_ORDER_STRIDE * slot + K_ORDER_DEADLINE_AT] <= now:
            # One CAS decides an expiry racing a confirm or a cancel; on
            # losing, ``word`` is the winner's (no longer HELD): the loop ends.
            if atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &word,
                              make_word(K_EXPIRED, word & K_ID_MASK)):
                record_fills(order_table, slot, &user, &first, &last)
                give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                                user, first, last)
                expired[slot] = 1
                count += 1
                break
    return count


cdef inline int64_t _expire_chunk_at(const TrackedState *st, int64_t now, int8_t *expired, Py_ssize_t start,
                                     Py_ssize_t stop) noexcept nogil:
    return _expire_chunk(st.stock, st.offer_sku, st.limit, st.n_skus, st.limit_table, st.limit_capacity - 1,
                         st.order_table, st.fill_offer, st.fill_qty, now, expired, start, stop)


def expire_orders(int64_t[::1] stock, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                  int64_t[::1] limit_table, int64_t[::1] order_table,
                  const int64_t[::1] fill_offer, int64_t[::1] fill_qty, int64_t now, int8_t[::1] expired,
                  int n_threads):
    """HELD -> EXPIRED for every hold whose deadline is <= now, giving its
    stock and cap count back; expired[slot] = 1 marks them.  Returns how many."""
    cdef Py_ssize_t n = order_table.shape[0] // K_ORDER_STRIDE
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, CHUNK)
    cdef int64_t count = 0
    if n == 0:
        return 0
    cdef TrackedState st
    _holds_from_views(&st, stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty)
    cdef int8_t *expired_p = _ptr8(expired)
    if n_threads <= 1:
        with nogil:
            count = _expire_chunk_at(&st, now, expired_p, 0, n)
    else:
        # static: a slot costs about the same everywhere (a load, rarely a give-back).
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='static'):
            count += _expire_chunk_at(&st, now, expired_p, c * CHUNK, min((c + 1) * CHUNK, n))
    return count


cdef inline int64_t _recover_chunk(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                   int64_t *limit_table, int64_t limit_mask,
                                   int64_t *order_table,
                                   const int64_t *fill_offer, int64_t *fill_qty,
                                   Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t slot
    cdef int64_t word, state, user, first, last, count = 0
    for slot in range(start, stop):
        # Acquire: the record read below is at least as new as the word.
        word = atomic_load_acquire_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])
        state = state_of(word)
        if state == K_CANCELLED_HOLD or state == K_EXPIRED:
            # Ended, but a process killed inside cancel / expire may have
            # left entries logged: finish that give-back (a live cancel of
            # the same order may run: the swaps decide each entry once).
            record_fills(order_table, slot, &user, &first, &last)
            if give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                               user, first, last):
                count += 1
        elif state == K_PENDING or state == K_CANCEL_REQUESTED:
            # Give back first, as the reference does: entries are zeroed as
            # they go, so a recovery killed here and re-run gives nothing twice.
            record_fills(order_table, slot, &user, &first, &last)
            give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer, fill_qty,
                            user, first, last)
            # CAS loop: a cancel may still turn PENDING into CANCEL_REQUESTED.
            while not atomic_cas_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT], &word, make_word(
                    K_CANCELLED_HOLD if state_of(word) == K_CANCEL_REQUESTED else K_REFUSED,
                    word & K_ID_MASK)):
                pass
            count += 1
    return count


cdef inline int64_t _recover_chunk_at(const TrackedState *st, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    return _recover_chunk(st.stock, st.offer_sku, st.limit, st.n_skus, st.limit_table, st.limit_capacity - 1,
                          st.order_table,
                          st.fill_offer, st.fill_qty, start, stop)


def recover_orders(int64_t[::1] stock, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                   int64_t[::1] limit_table, int64_t[::1] order_table, const int64_t[::1] fill_offer,
                  int64_t[::1] fill_qty,
                   int n_threads):
    """While no reserve runs: give back what every unfinished order logged and
    end it REFUSED (CANCELLED if a cancel asked), and finish the give-back of
    CANCELLED / EXPIRED orders a killed process left.  Returns how many."""
    cdef Py_ssize_t n = order_table.shape[0] // K_ORDER_STRIDE
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, CHUNK)
    cdef int64_t count = 0
    if n == 0:
        return 0
    cdef TrackedState st
    _holds_from_views(&st, stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty)
    if n_threads <= 1:
        with nogil:
            count = _recover_chunk_at(&st, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='static'):
            count += _recover_chunk_at(&st, c * CHUNK, min((c + 1) * CHUNK, n))
    return count
