# Carts (several lines, one offer per SKU) and the general path (several offers
# per SKU, price limits), concurrent and ordered.
#
# Mirrors kernel/reference/general.py function for function (same names, same
# argument lists); kernel/_numba/general.py mirrors the same functions in Numba.
# Included by kernels.pyx (one compiled module): its cimports and codes apply.
# _part_of (single.pxi) splits the ordered general path by SKU as it does there.


cdef enum:
    # Carts have ~3 lines each, so fewer orders ahead cover as many misses
    # (than single.pxi's PREFETCH_AHEAD): on 4M SKUs (32 MB of stock), one
    # thread, 6 / 16 / 40 / 64 ahead ran 27 / 35 / 47.5 / 47.7 M carts/s
    # (the C loop prefetching 128 lines ahead: 63 M).
    CART_PREFETCH_AHEAD = 40
    # ... but only for stocks larger than this many offers (16 MiB of stock
    # words): a smaller stock stays in the last-level cache, where the
    # out-of-order core overlaps the misses by itself and the prefetch loop
    # (a load of the cart ahead's range and SKUs, a hint per line) cost 7-12%
    # (measured in C, kernel/bench/c/baseline.c's header); on 4M-32M SKUs it
    # gained 50-80%.
    CART_PREFETCH_MIN_OFFERS = 1 << 21


cdef inline int8_t take_cart(int64_t *stock, const int64_t *line_start, const int64_t *sku, const int64_t *qty,
                             int64_t *counters, int64_t *rollbacks, Py_ssize_t order) noexcept nogil:
    """One-offer-per-SKU twin of take_order: each line takes exactly qty[line], all or nothing
    (``*rollbacks`` as there)."""
    cdef int64_t first_line = line_start[order], end_line = line_start[order + 1]
    cdef int64_t line, earlier
    # No read-only pre-check (take_order has one): each line is read once,
    # by its take.  A pre-check of the later lines read every stock word
    # twice, and on two threads the first read fetched a line the other
    # core was writing as shared, so the take's CAS had to fetch it again,
    # for ownership.  Dropping it (bench/ab_cython_build.py, 1M carts over
    # 100k SKUs, 11 rounds): carts 1.26x on two threads, 1.07x on one;
    # hot-carts (refusals and rollbacks on every call) 1.09x on one and two.
    # The price: a cart refused on a later line takes its earlier lines and
    # gives them back (a rollback, counted: on several threads the facade
    # then re-runs the refused orders, G4).
    for line in range(first_line, end_line):
        if not take_exactly(stock, sku[line], qty[line]):
            if line == first_line:
                return K_OUT_OF_STOCK  # nothing taken yet: no rollback
            # Hand back the earlier lines (fetch-add: other threads may be
            # CAS-ing the same words).
            for earlier in range(first_line, line):
                atomic_add_i64(&stock[sku[earlier]], qty[earlier])
            atomic_add_i64(&counters[K_ROLLBACKS], 1)
            rollbacks[0] += 1
            return K_OUT_OF_STOCK
    return K_ACCEPTED


cdef inline int64_t _carts_chunk(int64_t *stock, const int64_t *line_start, const int64_t *sku,
                                 const int64_t *qty, const int64_t *order_index, int8_t *status, int64_t *counters,
                                 Py_ssize_t start, Py_ssize_t stop, Py_ssize_t ahead) noexcept nogil:
    # inline, unlike the other chunk functions (noinline_void, machinery.pxi):
    # compiled on its own it spilled a register in the take loop, +2
    # instructions an order (+1.8% on the carts gate cases).  Callers pass
    # ``ahead`` as a constant (_carts_range), so each use compiles to its own
    # loop.  Returns the orders it rolled back (take_cart's count).
    cdef Py_ssize_t k, j
    cdef int64_t order, line, rollbacks = 0
    for k in range(start, stop):
        if ahead != 0 and k + ahead < stop:
            # Prefetch the stock words of a cart a few orders ahead: each line
            # is a random cache miss, and overlapping them is most of the speed
            # once the stock outgrows the cache.
            j = order_index[k + ahead]
            for line in range(line_start[j], line_start[j + 1]):
                prefetch_rw(&stock[sku[line]])
        order = order_index[k]
        status[order] = take_cart(stock, line_start, sku, qty, counters, &rollbacks, order)
    return rollbacks


cdef inline int64_t _carts_range(int64_t *stock, const int64_t *line_start, const int64_t *sku,
                                 const int64_t *qty, const int64_t *order_index, int8_t *status, int64_t *counters,
                                 Py_ssize_t start, Py_ssize_t stop, bint prefetch) noexcept nogil:
    # One loop with the prefetch, one without (constants after inlining).
    if prefetch:
        return _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, start, stop,
                            CART_PREFETCH_AHEAD)
    return _carts_chunk(stock, line_start, sku, qty, order_index, status, counters, start, stop, 0)


def reserve_carts(int64_t[::1] stock, const int64_t[::1] line_start, const int64_t[::1] sku,
                  const int64_t[::1] qty, const int64_t[::1] order_index, int8_t[::1] status,
                  int64_t[::1] counters, int n_threads):
    """Concurrent multi-line path for one offer per SKU; returns its serial rollbacks (reference)."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t n_chunks = _n_chunks(n, CHUNK)
    cdef Py_ssize_t c
    cdef int64_t rollbacks = 0
    if n == 0:
        return 0
    cdef bint prefetch = stock.shape[0] >= CART_PREFETCH_MIN_OFFERS
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *line_start_p = _const_ptr(line_start)
    cdef const int64_t *sku_p = _const_ptr(sku)
    cdef const int64_t *qty_p = _const_ptr(qty)
    cdef const int64_t *order_index_p = _const_ptr(order_index)
    cdef int8_t *status_p = _ptr8(status)
    cdef int64_t *counters_p = _ptr(counters)
    if n_threads <= 1:
        with nogil:
            rollbacks = _carts_range(stock_p, line_start_p, sku_p, qty_p, order_index_p, status_p, counters_p, 0,
                                     n, prefetch)
    else:
        # dynamic: see reserve_single.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _carts_range(stock_p, line_start_p, sku_p, qty_p, order_index_p, status_p, counters_p, c * CHUNK,
                         min((c + 1) * CHUNK, n), prefetch)
    return rollbacks


def reserve_carts_ordered(int64_t[::1] stock, const int64_t[::1] line_start, const int64_t[::1] sku,
                          const int64_t[::1] qty, const int64_t[::1] order_index, int8_t[::1] status,
                          int64_t[::1] counters, int n_threads):
    """Multi-line path for one offer per SKU, outcome equal to arrival order
    (serial whatever n_threads says: carts span SKUs, so they cannot be split by SKU); returns its
    serial rollbacks (reference)."""
    cdef Py_ssize_t n = order_index.shape[0]
    if n == 0:
        return 0
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *line_start_p = _const_ptr(line_start)
    cdef const int64_t *sku_p = _const_ptr(sku)
    cdef const int64_t *qty_p = _const_ptr(qty)
    cdef const int64_t *order_index_p = _const_ptr(order_index)
    cdef int8_t *status_p = _ptr8(status)
    cdef int64_t *counters_p = _ptr(counters)
    cdef bint prefetch = stock.shape[0] >= CART_PREFETCH_MIN_OFFERS
    cdef int64_t rollbacks
    with nogil:
        rollbacks = _carts_range(stock_p, line_start_p, sku_p, qty_p, order_index_p, status_p, counters_p, 0, n,
                                 prefetch)
    return rollbacks


cdef inline int64_t line_available(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                   const int64_t *offer_by_priority, const int64_t *sku,
                                   const int64_t *max_price, Py_ssize_t line, int64_t enough) noexcept nogil:
    """Units the line could take now from its eligible offers, up to ``enough`` (reads only)."""
    return offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line], enough)


cdef inline void roll_back_order(int64_t *stock, const int64_t *offer_start, const int64_t *offer_by_priority,
                                 const int64_t *line_start, const int64_t *sku, const int64_t *slot_start,
                                 int64_t *taken, int64_t *counters, Py_ssize_t order) noexcept nogil:
    """Give back every unit the order took and clear its ``taken`` slots."""
    cdef int64_t line, base, j, got
    for line in range(line_start[order], line_start[order + 1]):
        base = offer_start[sku[line]]
        for j in range(slot_start[line + 1] - slot_start[line]):
            got = taken[slot_start[line] + j]
            if got:
                # fetch-add, not a store: other threads may be CAS-ing the
                # same word; the units simply become available again.
                atomic_add_i64(&stock[offer_by_priority[base + j]], got)
                taken[slot_start[line] + j] = 0
    # Counted atomically: the facade uses it to detect that a rollback
    # happened during a concurrent batch and re-runs rejected orders serially.
    atomic_add_i64(&counters[K_ROLLBACKS], 1)


cdef inline int8_t take_order(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                              const int64_t *offer_by_priority, const int64_t *line_start, const int64_t *sku,
                              const int64_t *qty, const int64_t *max_price, const int64_t *slot_start,
                              int64_t *taken, int64_t *counters, int64_t *rollbacks, Py_ssize_t order) noexcept nogil:
    """Fill every line of one order in offer priority order, all or nothing.  Adds one to
    ``*rollbacks`` (the caller's own count, beside counters[K_ROLLBACKS] that every call sees)
    where it gave back what it took: the reference's ``rolled back``."""
    cdef int64_t first_line = line_start[order], end_line = line_start[order + 1]
    cdef int64_t line, need, s, base, j, offer, got
    # Pre-check with reads only: an order that cannot fit costs loads, not
    # writes (and not a rollback another order could trip over).
    for line in range(first_line, end_line):
        if line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line,
                          qty[line]) < qty[line]:
            return K_OUT_OF_STOCK
    for line in range(first_line, end_line):
        need = qty[line]
        s = sku[line]
        base = offer_start[s]
        for j in range(offer_start[s + 1] - base):
            offer = offer_by_priority[base + j]
            if price[offer] > max_price[line]:
                break
            got = take_up_to(stock, offer, need)
            taken[slot_start[line] + j] = got
            need -= got
            if need == 0:
                break
        if need:
            # A concurrent order won the race after our pre-check: undo the
            # partial fill so the order leaves no trace (all or nothing).
            roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken,
                            counters, order)
            rollbacks[0] += 1
            return K_OUT_OF_STOCK
    return K_ACCEPTED


cdef noinline_void _general_chunk(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                   const int64_t *offer_by_priority, const int64_t *line_start, const int64_t *sku,
                                   const int64_t *qty, const int64_t *max_price, const int64_t *slot_start,
                                   const int64_t *order_index, int64_t *taken, int8_t *status, int64_t *counters,
                                   int64_t *rollbacks, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # Adds the orders it rolled back to *rollbacks (noinline_void: a count
    # goes out through a pointer, machinery.pxi).
    cdef Py_ssize_t k
    cdef int64_t order, mine = 0
    for k in range(start, stop):
        order = order_index[k]
        status[order] = take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty,
                                   max_price, slot_start, taken, counters, &mine, order)
    rollbacks[0] += mine


def reserve_general(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                    const int64_t[::1] offer_by_priority, const int64_t[::1] line_start, const int64_t[::1] sku,
                    const int64_t[::1] qty, const int64_t[::1] max_price, const int64_t[::1] slot_start,
                    const int64_t[::1] order_index, int64_t[::1] taken, int8_t[::1] status,
                    int64_t[::1] counters, int n_threads):
    """Concurrent general path: multi-offer SKUs, multi-line orders, price limits; returns its
    serial rollbacks (reference)."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t n_chunks = _n_chunks(n, CHUNK)
    cdef Py_ssize_t c
    cdef int64_t rollbacks = 0, chunk_rollbacks
    if n == 0:
        return 0
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *price_p = _const_ptr(price)
    cdef const int64_t *offer_start_p = _const_ptr(offer_start)
    cdef const int64_t *offer_by_priority_p = _const_ptr(offer_by_priority)
    cdef const int64_t *line_start_p = _const_ptr(line_start)
    cdef const int64_t *sku_p = _const_ptr(sku)
    cdef const int64_t *qty_p = _const_ptr(qty)
    cdef const int64_t *max_price_p = _const_ptr(max_price)
    cdef const int64_t *slot_start_p = _const_ptr(slot_start)
    cdef const int64_t *order_index_p = _const_ptr(order_index)
    cdef int64_t *taken_p = _ptr(taken)
    cdef int8_t *status_p = _ptr8(status)
    cdef int64_t *counters_p = _ptr(counters)
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _general_chunk(stock_p, price_p, offer_start_p, offer_by_priority_p, line_start_p, sku_p, qty_p,
                               max_price_p, slot_start_p, order_index_p, taken_p, status_p, counters_p, &rollbacks,
                               c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        # dynamic: per-order cost varies (lines, offers, rollbacks); see reserve_single.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            # Thread-private (assigned in the prange body) and not summed: on
            # several threads the re-run is needed whoever rolled back (the
            # reference's reserve_general).
            chunk_rollbacks = 0
            _general_chunk(stock_p, price_p, offer_start_p, offer_by_priority_p, line_start_p, sku_p, qty_p,
                           max_price_p, slot_start_p, order_index_p, taken_p, status_p, counters_p,
                           &chunk_rollbacks, c * CHUNK, min((c + 1) * CHUNK, n))
    return rollbacks


cdef inline Py_ssize_t _gather_general_part(const int64_t *line_start, const int64_t *sku,
                                            const int64_t *order_index, Py_ssize_t start, Py_ssize_t stop,
                                            int64_t t, int64_t n_parts, int64_t *mine) noexcept nogil:
    """_gather_part for order_index[start..stop-1]: the orders whose first
    line's SKU is in part ``t`` (a line-less order goes to part 0)."""
    cdef Py_ssize_t k, m = 0
    cdef int64_t order, first, part
    for k in range(start, stop):
        order = order_index[k]
        first = line_start[order]
        part = _part_of(sku[first], n_parts) if first < line_start[order + 1] else 0
        mine[m] = order
        m += part == t  # branch-free, see _gather_part
    return m


cdef inline void _general_part(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                               const int64_t *offer_by_priority, const int64_t *line_start, const int64_t *sku,
                               const int64_t *qty, const int64_t *max_price, const int64_t *slot_start,
                               const int64_t *order_index, int64_t *taken, int8_t *status, int64_t *counters,
                               Py_ssize_t n, int64_t t, int64_t n_parts) noexcept nogil:
    """Serve, in arrival order, the orders whose first line's SKU is in part ``t``."""
    # Only serial-equivalent when each order has one line (the facade ensures
    # that before passing n_threads > 1).  Gathered per block as in _single_part.
    cdef int64_t mine[PART_BLOCK]
    cdef int64_t rollbacks = 0  # not counted on several threads (reserve_general)
    cdef Py_ssize_t b, m, k
    for b in range((n + PART_BLOCK - 1) // PART_BLOCK):
        m = _gather_general_part(line_start, sku, order_index, b * PART_BLOCK, min((b + 1) * PART_BLOCK, n),
                                 t, n_parts, mine)
        for k in range(m):
            if take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                          slot_start, taken, counters, &rollbacks, mine[k]) != K_ACCEPTED:
                # status pre-filled with ACCEPTED (false sharing, see _serve_gathered)
                status[mine[k]] = K_OUT_OF_STOCK


def reserve_general_ordered(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                            const int64_t[::1] offer_by_priority, const int64_t[::1] line_start,
                            const int64_t[::1] sku, const int64_t[::1] qty, const int64_t[::1] max_price,
                            const int64_t[::1] slot_start, const int64_t[::1] order_index, int64_t[::1] taken,
                            int8_t[::1] status, int64_t[::1] counters, int n_threads):
    """General path whose outcome equals arrival order; returns its serial rollbacks (reference)."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t k
    cdef int t
    cdef int64_t rollbacks = 0
    if n == 0:
        return 0
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *price_p = _const_ptr(price)
    cdef const int64_t *offer_start_p = _const_ptr(offer_start)
    cdef const int64_t *offer_by_priority_p = _const_ptr(offer_by_priority)
    cdef const int64_t *line_start_p = _const_ptr(line_start)
    cdef const int64_t *sku_p = _const_ptr(sku)
    cdef const int64_t *qty_p = _const_ptr(qty)
    cdef const int64_t *max_price_p = _const_ptr(max_price)
    cdef const int64_t *slot_start_p = _const_ptr(slot_start)
    cdef const int64_t *order_index_p = _const_ptr(order_index)
    cdef int64_t *taken_p = _ptr(taken)
    cdef int8_t *status_p = _ptr8(status)
    cdef int64_t *counters_p = _ptr(counters)
    if n_threads <= 1:
        with nogil:
            _general_chunk(stock_p, price_p, offer_start_p, offer_by_priority_p, line_start_p, sku_p, qty_p,
                           max_price_p, slot_start_p, order_index_p, taken_p, status_p, counters_p, &rollbacks, 0,
                           n)
    else:
        with nogil:
            for k in range(n):
                status_p[order_index_p[k]] = K_ACCEPTED  # see _serve_gathered
        for t in prange(n_threads, nogil=True, num_threads=n_threads, schedule='static'):
            _general_part(stock_p, price_p, offer_start_p, offer_by_priority_p, line_start_p, sku_p, qty_p,
                          max_price_p, slot_start_p, order_index_p, taken_p, status_p, counters_p, n, t, n_threads)
    return rollbacks
