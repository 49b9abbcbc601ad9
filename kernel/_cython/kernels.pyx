# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled kernels: mirrors :mod:`kernel.reference` function for function.

Same names and argument lists as ``kernel/reference.py`` (the executable
spec); see that module for the data layout.  Arrays arrive validated by the
facade (C-contiguous native int64, status int8): nothing here validates.

Concurrency model: every stock word is an independent counter changed only by
CAS / fetch-add (``atomics.h``), so orders may run on ``n_threads`` OpenMP
threads without locks.  ``n_threads <= 1`` never enters an OpenMP region.
"""

from libc.stdint cimport int64_t, int8_t
from libc.string cimport memset

from .atomics cimport atomic_load_i64, atomic_cas_i64, atomic_add_i64, prefetch_rw
from ._openmp_helpers cimport KERNEL_HAVE_OPENMP

from cython.parallel cimport prange

cdef enum:
    # Orders per unit of parallel work: large enough to amortise scheduling,
    # small enough that the tail of a static schedule stays balanced.
    CHUNK = 16384
    # How many orders ahead to prefetch the stock word (see atomics.h): a
    # miss takes ~100 ns and an order ~5 ns, so the hint must be dozens of
    # orders ahead; measured 16 / 32 / 64 / 128 on 10M uniform orders, 64 was
    # best (+25% over 16 on one thread).
    PREFETCH_AHEAD = 64
    # Carts have ~3 lines each, so fewer orders ahead cover as many misses.
    CART_PREFETCH_AHEAD = 6
    # Orders an ordered-path thread sifts at a time: its gathered indices and
    # SKUs (16 KiB each, on its stack) stay in L1 while it serves them.
    PART_BLOCK = 2048
    # Orders sampled to tell whether one part would get (nearly) everything.
    SAMPLE = 1024
    K_ACCEPTED = 0
    K_OUT_OF_STOCK = 1
    K_ROLLBACKS = 0

ACCEPTED = K_ACCEPTED
OUT_OF_STOCK = K_OUT_OF_STOCK
ROLLBACKS = K_ROLLBACKS


cdef extern from *:
    """
    #ifndef KERNEL_CYTHON_VERSION
    #define KERNEL_CYTHON_VERSION "unknown"
    #endif
    """
    const char *KERNEL_CYTHON_VERSION


def build_info():
    """How this module was built: the Cython version and whether OpenMP is in."""
    return {"cython": KERNEL_CYTHON_VERSION.decode(), "openmp": bool(KERNEL_HAVE_OPENMP)}


def openmp_enabled():
    """True iff this module was compiled with OpenMP (else prange is serial)."""
    return bool(KERNEL_HAVE_OPENMP)


# --------------------------------------------------------------------------
# Atomic stock operations

cdef inline bint take_exactly(int64_t *stock, int64_t offer, int64_t units) noexcept nogil:
    """Take exactly ``units`` from stock[offer] or nothing."""
    # Relaxed load is only a guess; the CAS validates it.  On CAS failure
    # ``cur`` is refreshed with the real value, so we re-decide without a
    # second load.  Once stock < units we give up WITHOUT writing: a sold-out
    # offer costs readers a load, never a cache-line-stealing write.
    cdef int64_t cur = atomic_load_i64(&stock[offer])
    while cur >= units:
        if atomic_cas_i64(&stock[offer], &cur, cur - units):
            return True
    return False


cdef inline int64_t take_up_to(int64_t *stock, int64_t offer, int64_t units) noexcept nogil:
    """Take min(stock[offer], units) and return it (CAS loop)."""
    cdef int64_t cur = atomic_load_i64(&stock[offer])
    cdef int64_t got
    while cur > 0:
        got = units if units < cur else cur
        if atomic_cas_i64(&stock[offer], &cur, cur - got):
            return got
    return 0


cdef inline int64_t line_available(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                   const int64_t *offer_by_priority, const int64_t *sku,
                                   const int64_t *max_price, Py_ssize_t line, int64_t enough) noexcept nogil:
    """Units the line could take now from its eligible offers, up to ``enough`` (reads only)."""
    cdef int64_t total = 0
    cdef int64_t s = sku[line]
    cdef int64_t k, offer, v
    for k in range(offer_start[s], offer_start[s + 1]):
        offer = offer_by_priority[k]
        if price[offer] > max_price[line]:
            break  # offers are in price order: the rest are dearer still
        v = atomic_load_i64(&stock[offer])
        if v > 0:
            total += v
        if total >= enough:
            break
    return total


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
                              int64_t *taken, int64_t *counters, Py_ssize_t order) noexcept nogil:
    """Fill every line of one order in offer priority order, all or nothing."""
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
            return K_OUT_OF_STOCK
    return K_ACCEPTED


# --------------------------------------------------------------------------
# Single-offer fast path

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


cdef inline void _single_chunk(int64_t *stock, const int64_t *sku, const int64_t *qty, int8_t *status,
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
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c
    if n == 0:
        return
    cdef int64_t *pstock = &stock[0]
    cdef const int64_t *psku = &sku[0]
    cdef const int64_t *pqty = &qty[0]
    cdef int8_t *pstatus = &status[0]
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _single_chunk(pstock, psku, pqty, pstatus, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        # dynamic, not static: chunk cost varies (runs, sold-out SKUs) and on
        # a shared machine a descheduled thread must not hold back half the
        # batch; one atomic per 16384 orders is free.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _single_chunk(pstock, psku, pqty, pstatus, c * CHUNK, min((c + 1) * CHUNK, n))


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
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c
    cdef int t
    if n == 0:
        return
    cdef int64_t *pstock = &stock[0]
    cdef const int64_t *psku = &sku[0]
    cdef const int64_t *pqty = &qty[0]
    cdef int8_t *pstatus = &status[0]
    if n_threads <= 1 or _mostly_one_part(psku, n, n_threads):
        with nogil:
            # Serially, coalesced runs decide exactly as arrival order does.
            for c in range(n_chunks):
                _single_chunk(pstock, psku, pqty, pstatus, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        with nogil:
            memset(pstatus, K_ACCEPTED, n * sizeof(int8_t))  # see _serve_gathered
        for t in prange(n_threads, nogil=True, num_threads=n_threads, schedule='static'):
            _single_part(pstock, psku, pqty, pstatus, n, t, n_threads)


# --------------------------------------------------------------------------
# Single-offer carts

cdef inline int8_t take_cart(int64_t *stock, const int64_t *line_start, const int64_t *sku, const int64_t *qty,
                             int64_t *counters, Py_ssize_t order) noexcept nogil:
    """One-offer-per-SKU twin of take_order: each line takes exactly qty[line], all or nothing."""
    cdef int64_t first_line = line_start[order], end_line = line_start[order + 1]
    cdef int64_t line, earlier
    # Pre-check with reads only, as in take_order: a cart that cannot fit
    # costs loads, and never makes a rollback others could trip over.
    for line in range(first_line, end_line):
        if atomic_load_i64(&stock[sku[line]]) < qty[line]:
            return K_OUT_OF_STOCK
    for line in range(first_line, end_line):
        if not take_exactly(stock, sku[line], qty[line]):
            # Lost a race after the pre-check: hand back the earlier lines
            # (fetch-add: other threads may be CAS-ing the same words).
            for earlier in range(first_line, line):
                atomic_add_i64(&stock[sku[earlier]], qty[earlier])
            atomic_add_i64(&counters[K_ROLLBACKS], 1)
            return K_OUT_OF_STOCK
    return K_ACCEPTED


cdef inline void _carts_chunk(int64_t *stock, const int64_t *line_start, const int64_t *sku, const int64_t *qty,
                              const int64_t *order_index, int8_t *status, int64_t *counters,
                              Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t k, j
    cdef int64_t order, line
    for k in range(start, stop):
        if k + CART_PREFETCH_AHEAD < stop:
            # Prefetch the stock words of a cart a few orders ahead: each line
            # is a random cache miss, and overlapping them is most of the speed.
            j = order_index[k + CART_PREFETCH_AHEAD]
            for line in range(line_start[j], line_start[j + 1]):
                prefetch_rw(&stock[sku[line]])
        order = order_index[k]
        status[order] = take_cart(stock, line_start, sku, qty, counters, order)


def reserve_carts(int64_t[::1] stock, const int64_t[::1] line_start, const int64_t[::1] sku,
                  const int64_t[::1] qty, const int64_t[::1] order_index, int8_t[::1] status,
                  int64_t[::1] counters, int n_threads):
    """Concurrent multi-line path for one offer per SKU."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c
    if n == 0:
        return
    cdef int64_t *pstock = &stock[0]
    cdef const int64_t *pls = &line_start[0]
    cdef const int64_t *psku = &sku[0]
    cdef const int64_t *pqty = &qty[0]
    cdef const int64_t *poi = &order_index[0]
    cdef int8_t *pstatus = &status[0]
    cdef int64_t *pcnt = &counters[0]
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _carts_chunk(pstock, pls, psku, pqty, poi, pstatus, pcnt, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        # dynamic: see reserve_single.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _carts_chunk(pstock, pls, psku, pqty, poi, pstatus, pcnt, c * CHUNK, min((c + 1) * CHUNK, n))


def reserve_carts_ordered(int64_t[::1] stock, const int64_t[::1] line_start, const int64_t[::1] sku,
                          const int64_t[::1] qty, const int64_t[::1] order_index, int8_t[::1] status,
                          int64_t[::1] counters, int n_threads):
    """Multi-line path for one offer per SKU, outcome equal to arrival order
    (serial whatever n_threads says: carts span SKUs, so they cannot be split by SKU)."""
    cdef Py_ssize_t n = order_index.shape[0]
    if n == 0:
        return
    cdef int64_t *pstock = &stock[0]
    cdef const int64_t *pls = &line_start[0]
    cdef const int64_t *psku = &sku[0]
    cdef const int64_t *pqty = &qty[0]
    cdef const int64_t *poi = &order_index[0]
    cdef int8_t *pstatus = &status[0]
    cdef int64_t *pcnt = &counters[0]
    with nogil:
        _carts_chunk(pstock, pls, psku, pqty, poi, pstatus, pcnt, 0, n)


# --------------------------------------------------------------------------
# General path

cdef inline void _general_chunk(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                const int64_t *offer_by_priority, const int64_t *line_start, const int64_t *sku,
                                const int64_t *qty, const int64_t *max_price, const int64_t *slot_start,
                                const int64_t *order_index, int64_t *taken, int8_t *status, int64_t *counters,
                                Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t k
    cdef int64_t order
    for k in range(start, stop):
        order = order_index[k]
        status[order] = take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty,
                                   max_price, slot_start, taken, counters, order)


def reserve_general(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                    const int64_t[::1] offer_by_priority, const int64_t[::1] line_start, const int64_t[::1] sku,
                    const int64_t[::1] qty, const int64_t[::1] max_price, const int64_t[::1] slot_start,
                    const int64_t[::1] order_index, int64_t[::1] taken, int8_t[::1] status,
                    int64_t[::1] counters, int n_threads):
    """Concurrent general path: multi-offer SKUs, multi-line orders, price limits."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c
    if n == 0:
        return
    # Some arrays may legitimately be empty (no lines / no slots); take their
    # address only when they are not, a NULL is never dereferenced then.
    cdef int64_t *pstock = &stock[0] if stock.shape[0] else NULL
    cdef const int64_t *pprice = &price[0] if price.shape[0] else NULL
    cdef const int64_t *pos = &offer_start[0]
    cdef const int64_t *pobp = &offer_by_priority[0] if offer_by_priority.shape[0] else NULL
    cdef const int64_t *pls = &line_start[0]
    cdef const int64_t *psku = &sku[0] if sku.shape[0] else NULL
    cdef const int64_t *pqty = &qty[0] if qty.shape[0] else NULL
    cdef const int64_t *pmax = &max_price[0] if max_price.shape[0] else NULL
    cdef const int64_t *pslot = &slot_start[0]
    cdef const int64_t *poi = &order_index[0]
    cdef int64_t *ptaken = &taken[0] if taken.shape[0] else NULL
    cdef int8_t *pstatus = &status[0]
    cdef int64_t *pcnt = &counters[0]
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _general_chunk(pstock, pprice, pos, pobp, pls, psku, pqty, pmax, pslot, poi, ptaken, pstatus,
                               pcnt, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        # dynamic: per-order cost varies (lines, offers, rollbacks); see reserve_single.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _general_chunk(pstock, pprice, pos, pobp, pls, psku, pqty, pmax, pslot, poi, ptaken, pstatus,
                           pcnt, c * CHUNK, min((c + 1) * CHUNK, n))


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
    cdef Py_ssize_t b, m, k
    for b in range((n + PART_BLOCK - 1) // PART_BLOCK):
        m = _gather_general_part(line_start, sku, order_index, b * PART_BLOCK, min((b + 1) * PART_BLOCK, n),
                                 t, n_parts, mine)
        for k in range(m):
            if take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                          slot_start, taken, counters, mine[k]) != K_ACCEPTED:
                # status pre-filled with ACCEPTED (false sharing, see _serve_gathered)
                status[mine[k]] = K_OUT_OF_STOCK


def reserve_general_ordered(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                            const int64_t[::1] offer_by_priority, const int64_t[::1] line_start,
                            const int64_t[::1] sku, const int64_t[::1] qty, const int64_t[::1] max_price,
                            const int64_t[::1] slot_start, const int64_t[::1] order_index, int64_t[::1] taken,
                            int8_t[::1] status, int64_t[::1] counters, int n_threads):
    """General path whose outcome equals arrival order."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t k
    cdef int t
    if n == 0:
        return
    cdef int64_t *pstock = &stock[0] if stock.shape[0] else NULL
    cdef const int64_t *pprice = &price[0] if price.shape[0] else NULL
    cdef const int64_t *pos = &offer_start[0]
    cdef const int64_t *pobp = &offer_by_priority[0] if offer_by_priority.shape[0] else NULL
    cdef const int64_t *pls = &line_start[0]
    cdef const int64_t *psku = &sku[0] if sku.shape[0] else NULL
    cdef const int64_t *pqty = &qty[0] if qty.shape[0] else NULL
    cdef const int64_t *pmax = &max_price[0] if max_price.shape[0] else NULL
    cdef const int64_t *pslot = &slot_start[0]
    cdef const int64_t *poi = &order_index[0]
    cdef int64_t *ptaken = &taken[0] if taken.shape[0] else NULL
    cdef int8_t *pstatus = &status[0]
    cdef int64_t *pcnt = &counters[0]
    if n_threads <= 1:
        with nogil:
            _general_chunk(pstock, pprice, pos, pobp, pls, psku, pqty, pmax, pslot, poi, ptaken, pstatus,
                           pcnt, 0, n)
    else:
        with nogil:
            for k in range(n):
                pstatus[poi[k]] = K_ACCEPTED  # see _serve_gathered
        for t in prange(n_threads, nogil=True, num_threads=n_threads, schedule='static'):
            _general_part(pstock, pprice, pos, pobp, pls, psku, pqty, pmax, pslot, poi, ptaken, pstatus,
                          pcnt, n, t, n_threads)


# --------------------------------------------------------------------------
# give_back

cdef inline void _give_back_chunk(int64_t *stock, const int64_t *offer, const int64_t *qty,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(start, stop):
        # fetch-add: concurrent reservations may be CAS-ing the same word.
        atomic_add_i64(&stock[offer[k]], qty[k])


def give_back(int64_t[::1] stock, const int64_t[::1] offer, const int64_t[::1] qty, int n_threads):
    """Return qty[k] units to stock[offer[k]] for every k (atomic fetch-add)."""
    cdef Py_ssize_t n = offer.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c
    if n == 0:
        return
    cdef int64_t *pstock = &stock[0]
    cdef const int64_t *poffer = &offer[0]
    cdef const int64_t *pqty = &qty[0]
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _give_back_chunk(pstock, poffer, pqty, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='static'):
            _give_back_chunk(pstock, poffer, pqty, c * CHUNK, min((c + 1) * CHUNK, n))
