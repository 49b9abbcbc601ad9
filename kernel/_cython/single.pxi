# Single-line orders on one offer per SKU (the flash-sale fast path), concurrent and ordered.
#
# Mirrors kernel/reference/single.py function for function (same names, same
# argument lists); kernel/_numba/single.py mirrors the same functions in Numba.
# Included by kernels.pyx (one compiled module): its cimports and codes apply.


cdef enum:
    # How many orders ahead to prefetch the stock word (see atomics.h): a
    # miss takes ~100 ns and an order ~5 ns, so the hint must be dozens of
    # orders ahead; measured 16 / 32 / 64 / 128 on 10M uniform orders, 64 was
    # best (+25% over 16 on one thread).
    PREFETCH_AHEAD = 64
    # Orders an ordered-path thread sifts at a time: its gathered indices and
    # SKUs (16 KiB each, on its stack) stay in L1 while it serves them.
    PART_BLOCK = 2048
    # Orders sampled to tell whether one part would get (nearly) everything.
    SAMPLE = 1024
    # Orders of a run found one by one before _run_end finds the rest four at
    # a time.  A flash sale's run is a whole chunk, and the one-by-one scan
    # (a compare and two branches an order) was most of Numba's time there.
    # Runs found four at a time from their second order on, with the
    # lone-order test moved ahead of the scan, cost Numba's zipf 3-4% (its
    # runs are short); with the scan as it was for the first LONG_RUN orders,
    # short runs and lone orders run the old code.  Numba, one thread,
    # reserve_single at scale 0.1 (1M orders), 41 interleaved calls, paired
    # medians against the old scan (an identical copy of it as control:
    # 1.003 / 1.016 / 1.000): uniform 1.011, zipf 1.011, flash sale 2.33x
    # (0.64 -> 0.275 ms); with a fresh status array each call, as the facade
    # gives: 1.006 / 0.988 / 2.08x.  Cython (GCC's scan was already about a
    # cycle an order): flash sale 0.36 -> 0.30 ms with a reused status, no
    # change with a fresh one (0.342 ms both: writing its new pages is what
    # takes the time), through the facade 1.014 (quartiles 0.93-1.07).
    LONG_RUN = 8


cdef inline void _take_run(int64_t *stock, int64_t s, const int64_t *qty, int8_t *status,
                           Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Orders start..stop-1 all want offer ``s``: decide them greedily, in
    arrival order, against one snapshot, then publish with ONE CAS."""
    # Equivalent to applying take_exactly to each order back to back (the
    # greedy rule is exactly the serial rule), but one contended write per
    # run instead of one per order: this is what makes a hot SKU scale.
    cdef int64_t cur = atomic_load_i64(&stock[s])
    cdef int64_t remaining, q
    cdef Py_ssize_t k
    while True:
        remaining = cur
        for k in range(start, stop):
            if remaining == 0:
                # Sold out (every qty is > 0): the rest of the run is refused
                # in one memset instead of one decision per order.
                memset(&status[k], K_OUT_OF_STOCK, stop - k)
                break
            q = qty[k]
            if q <= remaining:
                remaining -= q
                status[k] = K_ACCEPTED
            else:
                status[k] = K_OUT_OF_STOCK
        if remaining == cur:
            return  # nothing taken: no write at all
        # Someone changed the word since our snapshot: the decisions may be
        # wrong, so recompute them all against the fresh value (cur).
        if atomic_cas_i64(&stock[s], &cur, remaining):
            return


cdef inline Py_ssize_t _run_end(const int64_t *sku, int64_t s, Py_ssize_t j, Py_ssize_t stop) noexcept nogil:
    """The first index from ``j`` on (``stop`` at most) whose SKU is not
    ``s``: the end of a long run (see LONG_RUN)."""
    # Four at a time, one branch for the four (an OR of XORs, no ``and``:
    # GCC made the ``&`` of four compares three branches), then the tail one
    # by one.
    while j + 4 <= stop and ((sku[j] ^ s) | (sku[j + 1] ^ s) | (sku[j + 2] ^ s) | (sku[j + 3] ^ s)) == 0:
        j += 4
    while j < stop and sku[j] == s:
        j += 1
    return j


cdef noinline_void _single_chunk(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i = start, j
    cdef int64_t s
    # Prefetch the first window so the loop's hints start already ahead.
    for j in range(start, min(start + PREFETCH_AHEAD, stop)):
        prefetch_rw(&stock[sku[j]])
    while i < stop:
        if i + PREFETCH_AHEAD < stop:
            prefetch_rw(&stock[sku[i + PREFETCH_AHEAD]])
        s = sku[i]
        j = i + 1
        while j < stop and sku[j] == s:
            j += 1
            if j - i == LONG_RUN:
                j = _run_end(sku, s, j, stop)
                break
        if j == i + 1:
            # Common (uniform) case: one load, and a CAS only if it fits.
            status[i] = K_ACCEPTED if take_exactly(stock, s, qty[i]) else K_OUT_OF_STOCK
        else:
            _take_run(stock, s, qty, status, i, j)
        i = j


def reserve_single(int64_t[::1] stock, const int64_t[::1] sku, const int64_t[::1] qty, int8_t[::1] status,
                   int n_threads):
    """Concurrent flash-sale path: order i takes qty[i] of offer sku[i] or is OUT_OF_STOCK."""
    cdef Py_ssize_t n = sku.shape[0]
    cdef Py_ssize_t n_chunks = _n_chunks(n, CHUNK)
    cdef Py_ssize_t c
    if n == 0:
        return
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *sku_p = _const_ptr(sku)
    cdef const int64_t *qty_p = _const_ptr(qty)
    cdef int8_t *status_p = _ptr8(status)
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _single_chunk(stock_p, sku_p, qty_p, status_p, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        # dynamic, not static: chunk cost varies (runs, sold-out SKUs) and on
        # a shared machine a descheduled thread must not hold back half the
        # batch; one atomic per 16384 orders is free.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _single_chunk(stock_p, sku_p, qty_p, status_p, c * CHUNK, min((c + 1) * CHUNK, n))


cdef inline int64_t _part_of(int64_t s, int64_t n_parts) noexcept nogil:
    """``s % n_parts`` for s >= 0; a mask when n_parts is a power of two,
    because a 64-bit division per order dominates the ordered scans."""
    if (n_parts & (n_parts - 1)) == 0:
        return s & (n_parts - 1)
    return s % n_parts


cdef inline Py_ssize_t _gather_part(const int64_t *sku, Py_ssize_t start, Py_ssize_t stop, int64_t t,
                                    int64_t n_parts, int64_t *mine, int64_t *mine_sku) noexcept nogil:
    """Copy, in order, the indices (and SKUs) of orders start..stop-1 whose SKU
    is in part ``t`` into mine / mine_sku; return how many."""
    # Branchless: always store, advance only on a match.  ``if part == t``
    # is a coin flip per order on uniform SKUs (2 parts) and its
    # mispredictions cost more than the whole compaction.
    cdef Py_ssize_t i, m = 0
    cdef int64_t s
    for i in range(start, stop):
        s = sku[i]
        mine[m] = i
        mine_sku[m] = s
        m += _part_of(s, n_parts) == t
    return m


cdef inline bint _take_gathered_run(int64_t *stock, int64_t s, const int64_t *qty, int8_t *status,
                                    const int64_t *mine, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """_take_run for the gathered orders mine[lo..hi-1] (all on offer ``s``),
    writing only rejections (status is pre-filled with ACCEPTED)."""
    cdef int64_t cur = atomic_load_i64(&stock[s])
    cdef int64_t remaining, q
    cdef Py_ssize_t k
    while True:
        remaining = cur
        for k in range(lo, hi):
            q = qty[mine[k]]
            if q <= remaining:
                remaining -= q
            else:
                status[mine[k]] = K_OUT_OF_STOCK
        if remaining == cur or atomic_cas_i64(&stock[s], &cur, remaining):
            return True
        # Lost to a concurrent batch (no other thread of this call owns
        # ``s``): undo our rejections and re-decide against the fresh value.
        for k in range(lo, hi):
            status[mine[k]] = K_ACCEPTED


cdef inline void _serve_gathered(int64_t *stock, const int64_t *qty, int8_t *status, const int64_t *mine,
                                 const int64_t *mine_sku, Py_ssize_t m) noexcept nogil:
    """_single_chunk over the gathered orders: same prefetch, same run coalescing."""
    cdef Py_ssize_t k = 0, j
    cdef int64_t s
    for j in range(min(PREFETCH_AHEAD, m)):
        prefetch_rw(&stock[mine_sku[j]])
    while k < m:
        if k + PREFETCH_AHEAD < m:
            prefetch_rw(&stock[mine_sku[k + PREFETCH_AHEAD]])
        s = mine_sku[k]
        j = k + 1
        while j < m and mine_sku[j] == s:
            j += 1
            if j - k == LONG_RUN:
                j = _run_end(mine_sku, s, j, m)
                break
        if j == k + 1:
            # Only rejections are written: neighbouring status bytes belong
            # to the other threads and every write bounces the cache line.
            if not take_exactly(stock, s, qty[mine[k]]):
                status[mine[k]] = K_OUT_OF_STOCK
        else:
            _take_gathered_run(stock, s, qty, status, mine, k, j)
        k = j


cdef inline void _single_part(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status,
                              Py_ssize_t n, int64_t t, int64_t n_parts) noexcept nogil:
    """Serve, in arrival order, the orders whose SKU belongs to part ``t``."""
    # Every thread scans all orders but only touches its own SKUs, so each
    # SKU sees its orders in arrival order: the result is the serial one.
    # Per block: gather our orders (branch-free), then serve them like the
    # serial path does (prefetch ahead, one CAS per same-SKU run).
    cdef int64_t mine[PART_BLOCK]
    cdef int64_t mine_sku[PART_BLOCK]
    cdef Py_ssize_t b, m
    for b in range((n + PART_BLOCK - 1) // PART_BLOCK):
        m = _gather_part(sku, b * PART_BLOCK, min((b + 1) * PART_BLOCK, n), t, n_parts, mine, mine_sku)
        _serve_gathered(stock, qty, status, mine, mine_sku, m)


cdef inline bint _mostly_one_part(const int64_t *sku, Py_ssize_t n, int64_t n_parts) noexcept nogil:
    """True when over 3/4 of a strided sample of orders fall in one part."""
    # Then one thread would do (nearly) all the work and the others only
    # the gathering, which costs more than it saves (flash sale: 1 SKU):
    # the serial path is faster.  Majority vote, then a count: no table.
    cdef Py_ssize_t k, step = n // SAMPLE if n > SAMPLE else 1
    cdef Py_ssize_t n_sample = (n + step - 1) // step, votes = 0, count = 0
    cdef int64_t p, candidate = 0
    for k in range(n_sample):
        p = _part_of(sku[k * step], n_parts)
        if votes == 0:
            candidate = p
        votes += 1 if p == candidate else -1
    for k in range(n_sample):
        count += _part_of(sku[k * step], n_parts) == candidate
    return 4 * count > 3 * n_sample


def reserve_single_ordered(int64_t[::1] stock, const int64_t[::1] sku, const int64_t[::1] qty,
                           int8_t[::1] status, int n_threads):
    """Like reserve_single but the outcome equals arrival order."""
    cdef Py_ssize_t n = sku.shape[0]
    cdef Py_ssize_t n_chunks = _n_chunks(n, CHUNK)
    cdef Py_ssize_t c
    cdef int t
    if n == 0:
        return
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *sku_p = _const_ptr(sku)
    cdef const int64_t *qty_p = _const_ptr(qty)
    cdef int8_t *status_p = _ptr8(status)
    if n_threads <= 1 or _mostly_one_part(sku_p, n, n_threads):
        with nogil:
            # Serially, coalesced runs decide exactly as arrival order does.
            for c in range(n_chunks):
                _single_chunk(stock_p, sku_p, qty_p, status_p, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        with nogil:
            memset(status_p, K_ACCEPTED, n * sizeof(int8_t))  # see _serve_gathered
        for t in prange(n_threads, nogil=True, num_threads=n_threads, schedule='static'):
            _single_part(stock_p, sku_p, qty_p, status_p, n, t, n_threads)
