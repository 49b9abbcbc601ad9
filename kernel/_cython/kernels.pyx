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

from libc.stdint cimport int64_t, int8_t, uint64_t
from libc.string cimport memset

from .atomics cimport (atomic_load_i64, atomic_load_acquire_i64, atomic_store_i64, atomic_cas_i64,
                       atomic_add_i64, prefetch_rw)
from ._openmp_helpers cimport KERNEL_HAVE_OPENMP
from .codes cimport *

from cpython.object cimport PyObject, PyTypeObject
from cython.parallel cimport prange
cimport cython

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


# Every code of kernel/codes.py under its own name (the C names in codes.pxd
# carry a K_ prefix); tests/test_mirrors.py checks each against kernel.codes.CODES.
ACCEPTED = K_ACCEPTED
OUT_OF_STOCK = K_OUT_OF_STOCK
DUPLICATE = K_DUPLICATE
LIMIT_EXCEEDED = K_LIMIT_EXCEEDED
CANCELLED = K_CANCELLED
ORDER_TABLE_FULL = K_ORDER_TABLE_FULL
LIMIT_TABLE_FULL = K_LIMIT_TABLE_FULL
FILL_LOG_FULL = K_FILL_LOG_FULL
PENDING = K_PENDING
HELD = K_HELD
CONFIRMED = K_CONFIRMED
CANCELLED_HOLD = K_CANCELLED_HOLD
EXPIRED = K_EXPIRED
REFUSED = K_REFUSED
CANCEL_REQUESTED = K_CANCEL_REQUESTED
CANCELLED_EARLY = K_CANCELLED_EARLY
DONE = K_DONE
ALREADY_CONFIRMED = K_ALREADY_CONFIRMED
ALREADY_CANCELLED = K_ALREADY_CANCELLED
ALREADY_EXPIRED = K_ALREADY_EXPIRED
WAS_REFUSED = K_WAS_REFUSED
UNKNOWN = K_UNKNOWN
IN_FLIGHT = K_IN_FLIGHT
REMEMBERED = K_REMEMBERED
ROLLBACKS = K_ROLLBACKS
ORDERS_LEFT = K_ORDERS_LEFT
PAIRS_LEFT = K_PAIRS_LEFT
FILLS_LEFT = K_FILLS_LEFT
FILL_CURSOR = K_FILL_CURSOR
N_COUNTERS = K_N_COUNTERS
TOOK = K_TOOK
NEW_PAIR = K_NEW_PAIR
STATE_SHIFT = K_STATE_SHIFT
ID_MASK = K_ID_MASK
HASH_MULTIPLIER = K_HASH_MULTIPLIER
UINT64_MASK = K_UINT64_MASK
NO_LIMIT = K_NO_LIMIT


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
    return offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line], enough)


cdef inline int64_t offers_available(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                     const int64_t *offer_by_priority, int64_t s, int64_t max_p,
                                     int64_t enough) noexcept nogil:
    """Units SKU ``s`` has now in offers priced ``<= max_p``, up to ``enough`` (reads only)."""
    cdef int64_t total = 0
    cdef int64_t k, offer, v
    for k in range(offer_start[s], offer_start[s + 1]):
        offer = offer_by_priority[k]
        if price[offer] > max_p:
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


# --------------------------------------------------------------------------
# Tracked orders: idempotent ids, per-user limits and the hold lifecycle
# (kernel/reference.py, "Tracked orders", for the layout and the rules).
#
# Every shared word (stock, order_word, limit_key, limit_count, counters)
# changes only by CAS / fetch-add, or by a release store where one owner is
# guaranteed; records (order_user, order_deadline, order_fill_*) and fill-log
# entries belong to the one thread that owns the order at that moment and are
# published to the others by the CAS that moves its order word.

cdef enum:
    # Tracked orders per unit of parallel work: an order costs several cache
    # misses (order table, limit table, stock, fill log), so smaller chunks
    # than CHUNK still amortise the dynamic schedule's one atomic per chunk.
    TRACKED_CHUNK = 1024
    # Orders ahead whose cache lines _tracked_chunk prefetches.
    TRACKED_PREFETCH_AHEAD = 8


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


cdef inline int64_t claim_order(int64_t *order_word, int64_t mask, int64_t order_id,
                                int64_t state) noexcept nogil:
    """Insert ``order_id`` in ``state`` unless the table has it: its slot if
    this call inserted it, else ``-1 - slot``."""
    cdef int64_t slot = hash_slot(order_id, mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&order_word[slot])
        if seen == 0:
            # CAS 0 -> word; on losing, ``seen`` is the winner's word (a word
            # never returns to 0), examined below like any other.
            if atomic_cas_i64(&order_word[slot], &seen, make_word(state, order_id)):
                return slot
        if (seen & K_ID_MASK) == order_id:
            return -1 - slot
        slot = (slot + 1) & mask


cdef inline int64_t find_order(int64_t *order_word, int64_t mask, int64_t order_id) noexcept nogil:
    """The slot of ``order_id``, or -1 if the table does not have it."""
    cdef int64_t slot = hash_slot(order_id, mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&order_word[slot])
        if seen == 0:
            return -1
        if (seen & K_ID_MASK) == order_id:
            return slot
        slot = (slot + 1) & mask


cdef inline int64_t limit_slot(int64_t *limit_key, int64_t mask, int64_t key, bint insert) noexcept nogil:
    """The slot of the (user, SKU) ``key``: ``slot`` if it was there, ``-2 - slot``
    if this call inserted it (``insert``), -1 if absent."""
    cdef int64_t slot = hash_slot(key, mask)
    cdef int64_t seen
    while True:
        seen = atomic_load_i64(&limit_key[slot])
        if seen == 0:
            if not insert:
                return -1
            # CAS 0 -> key; on losing, look again at what the winner wrote.
            if atomic_cas_i64(&limit_key[slot], &seen, key):
                return -2 - slot
        if seen == key:
            return slot
        slot = (slot + 1) & mask


cdef inline int64_t limit_room(const int64_t *limit, int64_t n_skus, int64_t *limit_key, int64_t limit_mask,
                               int64_t *limit_count, int64_t user, int64_t s) noexcept nogil:
    """Units of SKU ``s`` the user may still take (reads only)."""
    cdef int64_t cap = limit[s]
    if cap == K_NO_LIMIT:
        return K_NO_LIMIT
    cdef int64_t slot = limit_slot(limit_key, limit_mask, user * n_skus + s + 1, False)
    return cap - (atomic_load_i64(&limit_count[slot]) if slot >= 0 else 0)


cdef inline int64_t take_limit(const int64_t *limit, int64_t n_skus, int64_t *limit_key, int64_t limit_mask,
                               int64_t *limit_count, int64_t user, int64_t s, int64_t units) noexcept nogil:
    """Count ``units`` of SKU ``s`` against the user's cap, or nothing if that
    would pass it; ``TOOK | NEW_PAIR`` bits.  CAS loop on the count."""
    cdef int64_t cap = limit[s]
    if cap == K_NO_LIMIT:
        return K_TOOK
    cdef int64_t slot = limit_slot(limit_key, limit_mask, user * n_skus + s + 1, True)
    cdef int64_t new = 0
    if slot < -1:
        new = K_NEW_PAIR
        slot = -2 - slot
    cdef int64_t cur = atomic_load_i64(&limit_count[slot])
    # Gives up without writing once the cap is reached, as take_exactly does.
    while cur + units <= cap:
        if atomic_cas_i64(&limit_count[slot], &cur, cur + units):
            return K_TOOK | new
    return new


cdef inline void give_back_limit(const int64_t *limit, int64_t n_skus, int64_t *limit_key, int64_t limit_mask,
                                 int64_t *limit_count, int64_t user, int64_t s, int64_t units) noexcept nogil:
    """Undo take_limit (fetch-add of -units)."""
    cdef int64_t slot
    if limit[s] != K_NO_LIMIT:
        slot = limit_slot(limit_key, limit_mask, user * n_skus + s + 1, False)
        # Always found when the units were counted; the guard only keeps a
        # cap set after the take from writing outside the table.
        if slot >= 0:
            atomic_add_i64(&limit_count[slot], -units)


cdef inline void give_back_fills(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                 int64_t *limit_key, int64_t limit_mask, int64_t *limit_count,
                                 const int64_t *fill_offer, int64_t *fill_qty, int64_t user, int64_t first,
                                 int64_t last) noexcept nogil:
    """Give back the logged fills first..last-1 (stock and the user's limit count)."""
    cdef int64_t f, got, offer
    for f in range(first, last):
        got = fill_qty[f]
        if got:
            offer = fill_offer[f]
            # Zeroed BEFORE the units go back (the fetch-add is a release, so
            # the zero lands no later): a process killed in between loses
            # them, it never returns them twice.  Only the order's current
            # owner touches its entries, so a plain store is enough.
            fill_qty[f] = 0
            atomic_add_i64(&stock[offer], got)
            give_back_limit(limit, n_skus, limit_key, limit_mask, limit_count, user, offer_sku[offer], got)


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


cdef inline void settle_refused_slot(int64_t *order_word, int64_t slot) noexcept nogil:
    """PENDING -> REFUSED by CAS; on failure the word is CANCEL_REQUESTED,
    which only this reserve leaves: store CANCELLED_HOLD."""
    cdef int64_t word = atomic_load_i64(&order_word[slot])
    cdef int64_t order_id = word & K_ID_MASK
    cdef int64_t expected = make_word(K_PENDING, order_id)
    if atomic_cas_i64(&order_word[slot], &expected, make_word(K_REFUSED, order_id)):
        return
    # ``expected`` now holds the word; REFUSED for any state but
    # CANCEL_REQUESTED only mirrors the reference when misused (not PENDING).
    atomic_store_i64(&order_word[slot], make_word(
        K_CANCELLED_HOLD if state_of(expected) == K_CANCEL_REQUESTED else K_REFUSED, order_id))


cdef inline int8_t publish_or_undo(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                   int64_t *limit_key, int64_t limit_mask, int64_t *limit_count,
                                   int64_t *order_word, const int64_t *fill_offer, int64_t *fill_qty,
                                   int64_t *counters, int64_t slot, int64_t user, int64_t first_fill,
                                   int64_t last_fill) noexcept nogil:
    """PENDING -> HELD by CAS; if a cancel got there first (CANCEL_REQUESTED),
    give everything back and end CANCELLED.  Returns the order's status."""
    cdef int64_t order_id = atomic_load_i64(&order_word[slot]) & K_ID_MASK
    cdef int64_t expected = make_word(K_PENDING, order_id)
    # The CAS is a release: the record and fill log written before it are
    # visible to whoever loads HELD with acquire (cancel, expire).
    if atomic_cas_i64(&order_word[slot], &expected, make_word(K_HELD, order_id)):
        return K_ACCEPTED
    give_back_fills(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count, fill_offer, fill_qty,
                    user, first_fill, last_fill)
    atomic_add_i64(&counters[K_ROLLBACKS], 1)
    # Only this reserve moves an order out of CANCEL_REQUESTED: a store.
    atomic_store_i64(&order_word[slot], make_word(K_CANCELLED_HOLD, order_id))
    return K_CANCELLED


cdef inline int8_t take_tracked(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                const int64_t *offer_by_priority, const int64_t *offer_sku, const int64_t *limit,
                                int64_t n_skus, int64_t *limit_key, int64_t limit_mask, int64_t *limit_count,
                                int64_t *order_word, int64_t *order_user, int64_t *order_deadline,
                                int64_t *order_fill_start, int64_t *order_fill_end, int64_t *fill_offer,
                                int64_t *fill_qty, const int64_t *line_start, const int64_t *sku,
                                const int64_t *qty, const int64_t *max_price, const int64_t *fill_slot,
                                const int64_t *user_id, const int64_t *deadline, const int64_t *order_slot,
                                int64_t *counters, int64_t order, int64_t *new_pairs) noexcept nogil:
    """Reserve one claimed (PENDING) order, all or nothing; returns its status
    and adds the (user, SKU) pairs it added to ``*new_pairs``."""
    cdef int64_t slot = order_slot[order]
    cdef int64_t user = user_id[order]
    cdef int64_t first_line = line_start[order], last_line = line_start[order + 1]
    cdef int64_t line, took, missing, undo_to = 0
    cdef int8_t status = K_ACCEPTED
    # Read-only pre-checks: an order that cannot fit costs loads, not writes.
    # Stock first: in a flash sale most orders meet a sold-out SKU, whose
    # word is hot in cache, while the cap count is a cold lookup.
    for line in range(first_line, last_line):
        if offers_available(stock, price, offer_start, offer_by_priority, sku[line], max_price[line],
                            qty[line]) < qty[line]:
            return K_OUT_OF_STOCK
    for line in range(first_line, last_line):
        if limit_room(limit, n_skus, limit_key, limit_mask, limit_count, user, sku[line]) < qty[line]:
            return K_LIMIT_EXCEEDED
    # The record is complete before the first unit is taken (the CASes that
    # take are releases), so cancel, expiry and recovery find the log.  An
    # order refused above takes nothing and needs no record.
    order_user[slot] = user
    order_deadline[slot] = deadline[order]
    order_fill_start[slot] = fill_slot[first_line]
    order_fill_end[slot] = fill_slot[last_line]
    for line in range(first_line, last_line):
        took = take_limit(limit, n_skus, limit_key, limit_mask, limit_count, user, sku[line], qty[line])
        new_pairs[0] += took >> 1
        if not (took & K_TOOK):
            status = K_LIMIT_EXCEEDED
            undo_to = fill_slot[line]
            break
        missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, sku[line],
                            qty[line], max_price[line], fill_slot[line])
        if missing:
            status = K_OUT_OF_STOCK
            # give_back_fills below returns the cap count of what was filled.
            give_back_limit(limit, n_skus, limit_key, limit_mask, limit_count, user, sku[line], missing)
            undo_to = fill_slot[line + 1]
            break
    else:
        return publish_or_undo(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count, order_word,
                               fill_offer, fill_qty, counters, slot, user, fill_slot[first_line],
                               fill_slot[last_line])
    give_back_fills(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count, fill_offer, fill_qty,
                    user, fill_slot[first_line], undo_to)
    # Counted atomically, as in roll_back_order: the facade re-runs refused
    # orders of a batch during which a rollback happened.
    atomic_add_i64(&counters[K_ROLLBACKS], 1)
    return status


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


# Pointers for the def kernels.  An array may legitimately be empty (no fill
# log, no offers): its pointer is then NULL and never dereferenced.

cdef inline int64_t *_wp(int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline const int64_t *_rp(const int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline int8_t *_wp8(int8_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline int64_t _n_chunks(Py_ssize_t n, Py_ssize_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk


# ---- claim_orders

cdef inline int64_t _claim_chunk(int64_t *order_word, int64_t mask, const int64_t *order_id, int64_t *order_slot,
                                 int8_t *status, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t slot, new = 0
    for i in range(start, stop):
        if i + TRACKED_PREFETCH_AHEAD < stop:
            # The home slot of an id a few ahead: a random line of a big table.
            prefetch_rw(&order_word[hash_slot(order_id[i + TRACKED_PREFETCH_AHEAD], mask)])
        slot = claim_order(order_word, mask, order_id[i], K_PENDING)
        if slot >= 0:
            order_slot[i] = slot
            status[i] = K_ACCEPTED
            new += 1
        else:
            order_slot[i] = -1
            # Relaxed: only the state is read, and CANCELLED_EARLY is final.
            status[i] = (K_CANCELLED if state_of(atomic_load_i64(&order_word[-1 - slot])) == K_CANCELLED_EARLY
                         else K_DUPLICATE)
    return new


def claim_orders(int64_t[::1] order_word, const int64_t[::1] order_id, int64_t[::1] order_slot,
                 int8_t[::1] status, int n_threads):
    """Claim every id of the batch in state PENDING; return how many were new."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    cdef int64_t new = 0
    if n == 0:
        return 0
    cdef int64_t *pword = &order_word[0]
    cdef int64_t mask = order_word.shape[0] - 1
    cdef const int64_t *pid = &order_id[0]
    cdef int64_t *pslot = &order_slot[0]
    cdef int8_t *pstatus = &status[0]
    if n_threads <= 1:
        with nogil:
            new = _claim_chunk(pword, mask, pid, pslot, pstatus, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            new += _claim_chunk(pword, mask, pid, pslot, pstatus, c * TRACKED_CHUNK,
                                min((c + 1) * TRACKED_CHUNK, n))
    return new


# ---- reserve_tracked

cdef inline int64_t _tracked_chunk(int64_t *stock, const int64_t *price, const int64_t *offer_start,
                                   const int64_t *offer_by_priority, const int64_t *offer_sku, const int64_t *limit,
                                   int64_t n_skus, int64_t *limit_key, int64_t limit_mask, int64_t *limit_count,
                                   int64_t *order_word, int64_t *order_user, int64_t *order_deadline,
                                   int64_t *order_fill_start, int64_t *order_fill_end, int64_t *fill_offer,
                                   int64_t *fill_qty, const int64_t *line_start, const int64_t *sku,
                                   const int64_t *qty, const int64_t *max_price, const int64_t *fill_slot,
                                   const int64_t *user_id, const int64_t *deadline, const int64_t *order_slot,
                                   const int64_t *order_index, int8_t *status, int64_t *counters,
                                   Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t k
    cdef int64_t order, pairs = 0, ahead, slot, s, pair
    for k in range(start, stop):
        if k + TRACKED_PREFETCH_AHEAD < stop:
            # A tracked order touches a dozen random cache lines: its record
            # (five words in five arrays), its SKU's offer_start / offer /
            # price / stock / cap words, its (user, SKU) pair's key and count.
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
            prefetch_rw(&order_word[slot])
            prefetch_rw(&order_user[slot])
            prefetch_rw(&order_deadline[slot])
            prefetch_rw(&order_fill_start[slot])
            prefetch_rw(&order_fill_end[slot])
            prefetch_rw(&limit_key[pair])
            prefetch_rw(&limit_count[pair])
            prefetch_rw(&stock[s])
            prefetch_rw(&limit[s])
            prefetch_rw(&offer_start[s])
            prefetch_rw(&offer_by_priority[s])
            prefetch_rw(&price[s])
        order = order_index[k]
        status[order] = take_tracked(stock, price, offer_start, offer_by_priority, offer_sku, limit, n_skus,
                                     limit_key, limit_mask, limit_count, order_word, order_user, order_deadline,
                                     order_fill_start, order_fill_end, fill_offer, fill_qty, line_start, sku, qty,
                                     max_price, fill_slot, user_id, deadline, order_slot, counters, order, &pairs)
    return pairs


def reserve_tracked(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                    const int64_t[::1] offer_by_priority, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                    int64_t[::1] limit_key, int64_t[::1] limit_count, int64_t[::1] order_word,
                    int64_t[::1] order_user, int64_t[::1] order_deadline, int64_t[::1] order_fill_start,
                    int64_t[::1] order_fill_end, int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                    const int64_t[::1] line_start, const int64_t[::1] sku, const int64_t[::1] qty,
                    const int64_t[::1] max_price, const int64_t[::1] fill_slot, const int64_t[::1] user_id,
                    const int64_t[::1] deadline, const int64_t[::1] order_slot, const int64_t[::1] order_index,
                    int8_t[::1] status, int64_t[::1] counters, int n_threads):
    """Run take_tracked for the claimed orders order_index; return how many
    (user, SKU) pairs the limit table gained."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    cdef int64_t new_pairs = 0
    if n == 0:
        return 0
    cdef int64_t *pstock = _wp(stock)
    cdef const int64_t *pprice = _rp(price)
    cdef const int64_t *pos = _rp(offer_start)
    cdef const int64_t *pobp = _rp(offer_by_priority)
    cdef const int64_t *posku = _rp(offer_sku)
    cdef const int64_t *plimit = _rp(limit)
    cdef int64_t n_skus = limit.shape[0]
    cdef int64_t *plkey = _wp(limit_key)
    cdef int64_t lmask = limit_key.shape[0] - 1
    cdef int64_t *plcount = _wp(limit_count)
    cdef int64_t *pword = _wp(order_word)
    cdef int64_t *puser = _wp(order_user)
    cdef int64_t *pdl = _wp(order_deadline)
    cdef int64_t *pfs = _wp(order_fill_start)
    cdef int64_t *pfe = _wp(order_fill_end)
    cdef int64_t *pfo = _wp(fill_offer)
    cdef int64_t *pfq = _wp(fill_qty)
    cdef const int64_t *pls = _rp(line_start)
    cdef const int64_t *psku = _rp(sku)
    cdef const int64_t *pqty = _rp(qty)
    cdef const int64_t *pmax = _rp(max_price)
    cdef const int64_t *pfslot = _rp(fill_slot)
    cdef const int64_t *puid = _rp(user_id)
    cdef const int64_t *pdeadline = _rp(deadline)
    cdef const int64_t *poslot = _rp(order_slot)
    cdef const int64_t *poi = _rp(order_index)
    cdef int8_t *pstatus = _wp8(status)
    cdef int64_t *pcnt = _wp(counters)
    if n_threads <= 1:
        with nogil:
            new_pairs = _tracked_chunk(pstock, pprice, pos, pobp, posku, plimit, n_skus, plkey, lmask, plcount,
                                       pword, puser, pdl, pfs, pfe, pfo, pfq, pls, psku, pqty, pmax, pfslot, puid,
                                       pdeadline, poslot, poi, pstatus, pcnt, 0, n)
    else:
        # dynamic: per-order cost varies (lines, offers, rollbacks); see reserve_single.
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            new_pairs += _tracked_chunk(pstock, pprice, pos, pobp, posku, plimit, n_skus, plkey, lmask, plcount,
                                        pword, puser, pdl, pfs, pfe, pfo, pfq, pls, psku, pqty, pmax, pfslot, puid,
                                        pdeadline, poslot, poi, pstatus, pcnt, c * TRACKED_CHUNK,
                                        min((c + 1) * TRACKED_CHUNK, n))
    return new_pairs


# ---- settle_refused

cdef inline void _settle_chunk(int64_t *order_word, const int64_t *order_slot, const int64_t *order_index,
                               Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(start, stop):
        if k + TRACKED_PREFETCH_AHEAD < stop:  # as in _claim_chunk
            prefetch_rw(&order_word[order_slot[order_index[k + TRACKED_PREFETCH_AHEAD]]])
        settle_refused_slot(order_word, order_slot[order_index[k]])


def settle_refused(int64_t[::1] order_word, const int64_t[::1] order_slot, const int64_t[::1] order_index,
                   int n_threads):
    """PENDING -> REFUSED for the refused orders order_index (CAS), or
    CANCELLED where a cancel asked for it meanwhile."""
    cdef Py_ssize_t n = order_index.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    if n == 0:
        return
    cdef int64_t *pword = &order_word[0]
    cdef const int64_t *poslot = &order_slot[0]
    cdef const int64_t *poi = &order_index[0]
    if n_threads <= 1:
        with nogil:
            _settle_chunk(pword, poslot, poi, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _settle_chunk(pword, poslot, poi, c * TRACKED_CHUNK, min((c + 1) * TRACKED_CHUNK, n))


# ---- confirm_orders

cdef inline void _confirm_chunk(int64_t *order_word, int64_t mask, const int64_t *order_id, int8_t *outcome,
                                Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t slot, word
    for i in range(start, stop):
        slot = find_order(order_word, mask, order_id[i])
        if slot < 0:
            outcome[i] = K_UNKNOWN
            continue
        # Relaxed: confirm reads no record, and the CAS checks the state.
        word = atomic_load_i64(&order_word[slot])
        while True:
            if state_of(word) != K_HELD:
                outcome[i] = outcome_of(state_of(word))
                break
            # One CAS decides a confirm racing an expiry or a cancel; on
            # losing, ``word`` is the winner's and we decide again.
            if atomic_cas_i64(&order_word[slot], &word, make_word(K_CONFIRMED, order_id[i])):
                outcome[i] = K_DONE
                break


def confirm_orders(int64_t[::1] order_word, const int64_t[::1] order_id, int8_t[::1] outcome, int n_threads):
    """HELD -> CONFIRMED for each id (one CAS each); outcome[i] says what happened."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    if n == 0:
        return
    cdef int64_t *pword = &order_word[0]
    cdef int64_t mask = order_word.shape[0] - 1
    cdef const int64_t *pid = &order_id[0]
    cdef int8_t *pout = &outcome[0]
    if n_threads <= 1:
        with nogil:
            _confirm_chunk(pword, mask, pid, pout, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            _confirm_chunk(pword, mask, pid, pout, c * TRACKED_CHUNK, min((c + 1) * TRACKED_CHUNK, n))


# ---- cancel_orders

cdef inline int64_t _cancel_chunk(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                  int64_t *limit_key, int64_t limit_mask, int64_t *limit_count, int64_t *order_word,
                                  int64_t mask, const int64_t *order_user, const int64_t *order_fill_start,
                                  const int64_t *order_fill_end, const int64_t *fill_offer, int64_t *fill_qty,
                                  const int64_t *order_id, int8_t *outcome, Py_ssize_t start,
                                  Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t slot, word, state, oid, new = 0
    for i in range(start, stop):
        oid = order_id[i]
        slot = claim_order(order_word, mask, oid, K_CANCELLED_EARLY)
        if slot >= 0:
            outcome[i] = K_REMEMBERED
            new += 1
            continue
        slot = -1 - slot
        # Acquire: the record read below is the one published with HELD (the
        # winning CAS is an acquire too; this keeps the pairing explicit).
        word = atomic_load_acquire_i64(&order_word[slot])
        while True:
            state = state_of(word)
            if state == K_HELD:
                # Win the hold first (against confirm / expiry), then give back.
                if atomic_cas_i64(&order_word[slot], &word, make_word(K_CANCELLED_HOLD, oid)):
                    give_back_fills(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count,
                                    fill_offer, fill_qty, order_user[slot], order_fill_start[slot],
                                    order_fill_end[slot])
                    outcome[i] = K_DONE
                    break
            elif state == K_PENDING:
                # The running reserve sees this and undoes itself.
                if atomic_cas_i64(&order_word[slot], &word, make_word(K_CANCEL_REQUESTED, oid)):
                    outcome[i] = K_DONE
                    break
            else:
                outcome[i] = outcome_of(state)
                break
            # CAS lost: ``word`` is the new state, decide again.
    return new


def cancel_orders(int64_t[::1] stock, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                  int64_t[::1] limit_key, int64_t[::1] limit_count, int64_t[::1] order_word,
                  const int64_t[::1] order_user, const int64_t[::1] order_fill_start,
                  const int64_t[::1] order_fill_end, const int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                  const int64_t[::1] order_id, int8_t[::1] outcome, int n_threads):
    """Cancel each id (see the reference); return how many ids were new to the table."""
    cdef Py_ssize_t n = order_id.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, TRACKED_CHUNK)
    cdef int64_t new = 0
    if n == 0:
        return 0
    cdef int64_t *pstock = _wp(stock)
    cdef const int64_t *posku = _rp(offer_sku)
    cdef const int64_t *plimit = _rp(limit)
    cdef int64_t n_skus = limit.shape[0]
    cdef int64_t *plkey = _wp(limit_key)
    cdef int64_t lmask = limit_key.shape[0] - 1
    cdef int64_t *plcount = _wp(limit_count)
    cdef int64_t *pword = _wp(order_word)
    cdef int64_t mask = order_word.shape[0] - 1
    cdef const int64_t *puser = _rp(order_user)
    cdef const int64_t *pfs = _rp(order_fill_start)
    cdef const int64_t *pfe = _rp(order_fill_end)
    cdef const int64_t *pfo = _rp(fill_offer)
    cdef int64_t *pfq = _wp(fill_qty)
    cdef const int64_t *pid = _rp(order_id)
    cdef int8_t *pout = _wp8(outcome)
    if n_threads <= 1:
        with nogil:
            new = _cancel_chunk(pstock, posku, plimit, n_skus, plkey, lmask, plcount, pword, mask, puser, pfs,
                                pfe, pfo, pfq, pid, pout, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='dynamic'):
            new += _cancel_chunk(pstock, posku, plimit, n_skus, plkey, lmask, plcount, pword, mask, puser, pfs,
                                 pfe, pfo, pfq, pid, pout, c * TRACKED_CHUNK, min((c + 1) * TRACKED_CHUNK, n))
    return new


# ---- expire_orders

cdef inline int64_t _expire_chunk(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                  int64_t *limit_key, int64_t limit_mask, int64_t *limit_count, int64_t *order_word,
                                  const int64_t *order_user, const int64_t *order_deadline,
                                  const int64_t *order_fill_start, const int64_t *order_fill_end,
                                  const int64_t *fill_offer, int64_t *fill_qty, int64_t now, int8_t *expired,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t slot
    cdef int64_t word, count = 0
    for slot in range(start, stop):
        # Acquire: the deadline read next is the one published with HELD.
        word = atomic_load_acquire_i64(&order_word[slot])
        while state_of(word) == K_HELD and order_deadline[slot] <= now:
            # One CAS decides an expiry racing a confirm or a cancel; on
            # losing, ``word`` is the winner's (no longer HELD): the loop ends.
            if atomic_cas_i64(&order_word[slot], &word, make_word(K_EXPIRED, word & K_ID_MASK)):
                give_back_fills(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count, fill_offer,
                                fill_qty, order_user[slot], order_fill_start[slot], order_fill_end[slot])
                expired[slot] = 1
                count += 1
                break
    return count


def expire_orders(int64_t[::1] stock, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                  int64_t[::1] limit_key, int64_t[::1] limit_count, int64_t[::1] order_word,
                  const int64_t[::1] order_user, const int64_t[::1] order_deadline,
                  const int64_t[::1] order_fill_start, const int64_t[::1] order_fill_end,
                  const int64_t[::1] fill_offer, int64_t[::1] fill_qty, int64_t now, int8_t[::1] expired,
                  int n_threads):
    """HELD -> EXPIRED for every hold whose deadline is <= now, giving its
    stock and cap count back; expired[slot] = 1 marks them.  Returns how many."""
    cdef Py_ssize_t n = order_word.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, CHUNK)
    cdef int64_t count = 0
    if n == 0:
        return 0
    cdef int64_t *pstock = _wp(stock)
    cdef const int64_t *posku = _rp(offer_sku)
    cdef const int64_t *plimit = _rp(limit)
    cdef int64_t n_skus = limit.shape[0]
    cdef int64_t *plkey = _wp(limit_key)
    cdef int64_t lmask = limit_key.shape[0] - 1
    cdef int64_t *plcount = _wp(limit_count)
    cdef int64_t *pword = _wp(order_word)
    cdef const int64_t *puser = _rp(order_user)
    cdef const int64_t *pdl = _rp(order_deadline)
    cdef const int64_t *pfs = _rp(order_fill_start)
    cdef const int64_t *pfe = _rp(order_fill_end)
    cdef const int64_t *pfo = _rp(fill_offer)
    cdef int64_t *pfq = _wp(fill_qty)
    cdef int8_t *pexp = _wp8(expired)
    if n_threads <= 1:
        with nogil:
            count = _expire_chunk(pstock, posku, plimit, n_skus, plkey, lmask, plcount, pword, puser, pdl, pfs,
                                  pfe, pfo, pfq, now, pexp, 0, n)
    else:
        # static: a slot costs about the same everywhere (a load, rarely a give-back).
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='static'):
            count += _expire_chunk(pstock, posku, plimit, n_skus, plkey, lmask, plcount, pword, puser, pdl, pfs,
                                   pfe, pfo, pfq, now, pexp, c * CHUNK, min((c + 1) * CHUNK, n))
    return count


# ---- recover_orders

cdef inline int64_t _recover_chunk(int64_t *stock, const int64_t *offer_sku, const int64_t *limit, int64_t n_skus,
                                   int64_t *limit_key, int64_t limit_mask, int64_t *limit_count,
                                   int64_t *order_word, const int64_t *order_user, const int64_t *order_fill_start,
                                   const int64_t *order_fill_end, const int64_t *fill_offer, int64_t *fill_qty,
                                   Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t slot
    cdef int64_t word, state, count = 0
    for slot in range(start, stop):
        # Acquire: the record read below is at least as new as the word.
        word = atomic_load_acquire_i64(&order_word[slot])
        state = state_of(word)
        if state == K_PENDING or state == K_CANCEL_REQUESTED:
            # Give back first, as the reference does: entries are zeroed as
            # they go, so a recovery killed here and re-run gives nothing twice.
            give_back_fills(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count, fill_offer,
                            fill_qty, order_user[slot], order_fill_start[slot], order_fill_end[slot])
            # CAS loop: a cancel may still turn PENDING into CANCEL_REQUESTED.
            while not atomic_cas_i64(&order_word[slot], &word, make_word(
                    K_CANCELLED_HOLD if state_of(word) == K_CANCEL_REQUESTED else K_REFUSED,
                    word & K_ID_MASK)):
                pass
            count += 1
    return count


def recover_orders(int64_t[::1] stock, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                   int64_t[::1] limit_key, int64_t[::1] limit_count, int64_t[::1] order_word,
                   const int64_t[::1] order_user, const int64_t[::1] order_fill_start,
                   const int64_t[::1] order_fill_end, const int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                   int n_threads):
    """While no reserve runs: give back what every unfinished order logged and
    end it REFUSED (CANCELLED if a cancel asked).  Returns how many."""
    cdef Py_ssize_t n = order_word.shape[0]
    cdef Py_ssize_t c, n_chunks = _n_chunks(n, CHUNK)
    cdef int64_t count = 0
    if n == 0:
        return 0
    cdef int64_t *pstock = _wp(stock)
    cdef const int64_t *posku = _rp(offer_sku)
    cdef const int64_t *plimit = _rp(limit)
    cdef int64_t n_skus = limit.shape[0]
    cdef int64_t *plkey = _wp(limit_key)
    cdef int64_t lmask = limit_key.shape[0] - 1
    cdef int64_t *plcount = _wp(limit_count)
    cdef int64_t *pword = _wp(order_word)
    cdef const int64_t *puser = _rp(order_user)
    cdef const int64_t *pfs = _rp(order_fill_start)
    cdef const int64_t *pfe = _rp(order_fill_end)
    cdef const int64_t *pfo = _rp(fill_offer)
    cdef int64_t *pfq = _wp(fill_qty)
    if n_threads <= 1:
        with nogil:
            count = _recover_chunk(pstock, posku, plimit, n_skus, plkey, lmask, plcount, pword, puser, pfs, pfe,
                                   pfo, pfq, 0, n)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='static'):
            count += _recover_chunk(pstock, posku, plimit, n_skus, plkey, lmask, plcount, pword, puser, pfs, pfe,
                                    pfo, pfq, c * CHUNK, min((c + 1) * CHUNK, n))
    return count


# ---- reserve_one: one order of one line, start to finish

cdef int64_t reserve_one_c(TrackedState *st, int64_t s, int64_t units, int64_t max_p, int64_t order_id,
                           int64_t user, int64_t deadline) noexcept nogil:
    """reference.reserve_one on ``st`` (declared in kernels.pxd for other
    Cython modules): budgets, claim, take, publish."""
    cdef int64_t *stock = st.stock
    cdef const int64_t *price = st.price
    cdef const int64_t *offer_start = st.offer_start
    cdef const int64_t *offer_by_priority = st.offer_by_priority
    cdef const int64_t *offer_sku = st.offer_sku
    cdef const int64_t *limit = st.limit
    cdef int64_t *limit_key = st.limit_key
    cdef int64_t *limit_count = st.limit_count
    cdef int64_t *order_word = st.order_word
    cdef int64_t *fill_offer = st.fill_offer
    cdef int64_t *fill_qty = st.fill_qty
    cdef int64_t *counters = st.counters
    cdef int64_t n_skus = st.n_skus
    cdef int64_t limit_mask = st.limit_capacity - 1
    cdef int64_t order_mask = st.order_capacity - 1
    cdef int64_t n_fills, first_fill, slot, took = 0, missing, status
    cdef bint new_pair
    slot = find_order(order_word, order_mask, order_id)
    if slot >= 0:  # ids never leave the table: a duplicate for sure, and it needs no budget
        return (K_CANCELLED if state_of(atomic_load_i64(&order_word[slot])) == K_CANCELLED_EARLY
                else K_DUPLICATE)
    n_fills = offer_start[s + 1] - offer_start[s]
    # Only a (user, SKU) pair not in the table yet needs room there.
    new_pair = (limit[s] != K_NO_LIMIT
                and limit_slot(limit_key, limit_mask, user * n_skus + s + 1, False) == -1)
    if take_budget(counters, K_ORDERS_LEFT, 1) < 0:
        return K_ORDER_TABLE_FULL
    if new_pair and take_budget(counters, K_PAIRS_LEFT, 1) < 0:
        take_budget(counters, K_ORDERS_LEFT, -1)
        return K_LIMIT_TABLE_FULL
    if take_budget(counters, K_FILLS_LEFT, n_fills) < 0:
        take_budget(counters, K_ORDERS_LEFT, -1)
        if new_pair:
            take_budget(counters, K_PAIRS_LEFT, -1)
        return K_FILL_LOG_FULL
    slot = claim_order(order_word, order_mask, order_id, K_PENDING)
    if slot < 0:  # claimed by someone else since find_order
        take_budget(counters, K_ORDERS_LEFT, -1)
        take_budget(counters, K_FILLS_LEFT, -n_fills)
        if new_pair:
            take_budget(counters, K_PAIRS_LEFT, -1)
        return (K_CANCELLED if state_of(atomic_load_i64(&order_word[-1 - slot])) == K_CANCELLED_EARLY
                else K_DUPLICATE)
    # The budget promised these entries, so the cursor stays in the log.
    first_fill = take_budget(counters, K_FILL_CURSOR, -n_fills)
    status = K_ACCEPTED
    # take_tracked's pre-checks, in its order.
    if offers_available(stock, price, offer_start, offer_by_priority, s, max_p, units) < units:
        status = K_OUT_OF_STOCK
    elif limit_room(limit, n_skus, limit_key, limit_mask, limit_count, user, s) < units:
        status = K_LIMIT_EXCEEDED
    else:
        # The record is complete before the first unit is taken (see take_tracked).
        st.order_user[slot] = user
        st.order_deadline[slot] = deadline
        st.order_fill_start[slot] = first_fill
        st.order_fill_end[slot] = first_fill + n_fills
        took = take_limit(limit, n_skus, limit_key, limit_mask, limit_count, user, s, units)
        if not (took & K_TOOK):
            status = K_LIMIT_EXCEEDED
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, s, units,
                                max_p, first_fill)
            if missing:
                give_back_limit(limit, n_skus, limit_key, limit_mask, limit_count, user, s, missing)
                give_back_fills(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count, fill_offer,
                                fill_qty, user, first_fill, first_fill + n_fills)
                atomic_add_i64(&counters[K_ROLLBACKS], 1)
                status = K_OUT_OF_STOCK
            else:
                status = publish_or_undo(stock, offer_sku, limit, n_skus, limit_key, limit_mask, limit_count,
                                         order_word, fill_offer, fill_qty, counters, slot, user, first_fill,
                                         first_fill + n_fills)
    if new_pair and not (took & K_NEW_PAIR):
        take_budget(counters, K_PAIRS_LEFT, -1)  # someone else added the pair (or it was not reached)
    if status != K_ACCEPTED and status != K_CANCELLED:
        settle_refused_slot(order_word, slot)
    return status


cdef int _state_from_views(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                           const int64_t[::1] offer_by_priority, const int64_t[::1] offer_sku,
                           const int64_t[::1] limit, int64_t[::1] limit_key, int64_t[::1] limit_count,
                           int64_t[::1] order_word, int64_t[::1] order_user, int64_t[::1] order_deadline,
                           int64_t[::1] order_fill_start, int64_t[::1] order_fill_end, int64_t[::1] fill_offer,
                           int64_t[::1] fill_qty, int64_t[::1] counters, TrackedState *out) except -1:
    """Point ``out`` at the arrays' data (no checks: see tracked_state_from_arrays)."""
    out.stock = _wp(stock)
    out.price = _rp(price)
    out.offer_start = _rp(offer_start)
    out.offer_by_priority = _rp(offer_by_priority)
    out.offer_sku = _rp(offer_sku)
    out.limit = _rp(limit)
    out.limit_key = _wp(limit_key)
    out.limit_count = _wp(limit_count)
    out.order_word = _wp(order_word)
    out.order_user = _wp(order_user)
    out.order_deadline = _wp(order_deadline)
    out.order_fill_start = _wp(order_fill_start)
    out.order_fill_end = _wp(order_fill_end)
    out.fill_offer = _wp(fill_offer)
    out.fill_qty = _wp(fill_qty)
    out.counters = _wp(counters)
    out.n_skus = limit.shape[0]
    out.order_capacity = order_word.shape[0]
    out.limit_capacity = limit_key.shape[0]
    out.fill_size = fill_qty.shape[0]
    return 0


cdef inline bint _power_of_two(Py_ssize_t n) noexcept:
    return n > 0 and (n & (n - 1)) == 0


cdef int tracked_state_from_arrays(tuple arrays, TrackedState *out) except -1:
    """Fill ``out`` from the 16 state arrays, checking types and sizes once
    (declared in kernels.pxd).  The caller keeps ``arrays`` alive."""
    if arrays is None or len(arrays) != 16:
        raise ValueError("expected a tuple of the 16 tracked-state arrays (Inventory.state_arrays())")
    for i in range(16):
        if arrays[i] is None:  # a typed memoryview would take None for an empty array
            raise TypeError(f"state array {i} is None")
    # Typed memoryviews check dtype (int64), ndim (1), C-contiguity and, for
    # the non-const ones, writability; a mismatch raises here, not later.
    cdef int64_t[::1] stock = arrays[0]
    cdef const int64_t[::1] price = arrays[1]
    cdef const int64_t[::1] offer_start = arrays[2]
    cdef const int64_t[::1] offer_by_priority = arrays[3]
    cdef const int64_t[::1] offer_sku = arrays[4]
    cdef const int64_t[::1] limit = arrays[5]
    cdef int64_t[::1] limit_key = arrays[6]
    cdef int64_t[::1] limit_count = arrays[7]
    cdef int64_t[::1] order_word = arrays[8]
    cdef int64_t[::1] order_user = arrays[9]
    cdef int64_t[::1] order_deadline = arrays[10]
    cdef int64_t[::1] order_fill_start = arrays[11]
    cdef int64_t[::1] order_fill_end = arrays[12]
    cdef int64_t[::1] fill_offer = arrays[13]
    cdef int64_t[::1] fill_qty = arrays[14]
    cdef int64_t[::1] counters = arrays[15]
    cdef Py_ssize_t n_offers = stock.shape[0], cap = order_word.shape[0]
    if price.shape[0] != n_offers or offer_sku.shape[0] != n_offers:
        raise ValueError("stock, price and offer_sku must have one entry per offer")
    if offer_start.shape[0] != limit.shape[0] + 1:
        raise ValueError("offer_start must have n_skus + 1 entries (n_skus = limit.size)")
    if not _power_of_two(cap):
        raise ValueError("the order table's capacity must be a power of two")
    if (order_user.shape[0] != cap or order_deadline.shape[0] != cap or order_fill_start.shape[0] != cap
            or order_fill_end.shape[0] != cap):
        raise ValueError("order_user, order_deadline and order_fill_start/end must match order_word")
    if not _power_of_two(limit_key.shape[0]) or limit_count.shape[0] != limit_key.shape[0]:
        raise ValueError("limit_key and limit_count must have the same power-of-two size")
    if fill_offer.shape[0] != fill_qty.shape[0]:
        raise ValueError("fill_offer and fill_qty must have the same size")
    if counters.shape[0] <= K_FILL_CURSOR:
        raise ValueError("counters must have at least 5 entries")
    # (The budget counters are not checked here: other processes change them
    # while this one binds, so no two reads of them agree.)
    return _state_from_views(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                             order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer,
                             fill_qty, counters, out)


def reserve_one(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                const int64_t[::1] offer_by_priority, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                int64_t[::1] limit_key, int64_t[::1] limit_count, int64_t[::1] order_word,
                int64_t[::1] order_user, int64_t[::1] order_deadline, int64_t[::1] order_fill_start,
                int64_t[::1] order_fill_end, int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                int64_t[::1] counters, int64_t s, int64_t units, int64_t max_p, int64_t order_id, int64_t user,
                int64_t deadline):
    """One order of one line, start to finish; its status, or a negative
    *_FULL code when a budget is spent (then nothing changed)."""
    cdef TrackedState st
    _state_from_views(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                      order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer,
                      fill_qty, counters, &st)
    return reserve_one_c(&st, s, units, max_p, order_id, user, deadline)


cdef extern from *:
    """
    /* A ReserveOne instance is called through vectorcall (PEP 590), like a
     * builtin function: CPython then passes the six arguments as an array
     * instead of packing them in a tuple for tp_call (about 25 ns a call).
     * Cython gives no cdef class an instance vectorcall slot, so the type
     * gets one here; where vectorcall is not available the type keeps its
     * plain tp_call (__call__), which takes the same arguments. */
    #if CYTHON_COMPILING_IN_CPYTHON && !CYTHON_COMPILING_IN_LIMITED_API && PY_VERSION_HEX >= 0x03090000
    static int kernel_enable_instance_vectorcall(PyTypeObject *tp, Py_ssize_t offset) {
        tp->tp_vectorcall_offset = offset;
        tp->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
        return 1;
    }
    #else
    static int kernel_enable_instance_vectorcall(PyTypeObject *tp, Py_ssize_t offset) {
        (void)tp; (void)offset;
        return 0;
    }
    #define PyVectorcall_NARGS(n) ((Py_ssize_t)((n) & ~((size_t)1 << (8 * sizeof(size_t) - 1))))
    #endif
    typedef PyObject *(*kernel_vectorcallfunc)(PyObject *, PyObject *const *, size_t, PyObject *);
    """
    ctypedef PyObject *(*kernel_vectorcallfunc)(PyObject *, PyObject **, size_t, PyObject *)
    int kernel_enable_instance_vectorcall(PyTypeObject *tp, Py_ssize_t offset)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)


cdef bint _reserve_one_vectorcall_on = False


@cython.final  # no subclass: the vectorcall offset set below is this type's layout
cdef class ReserveOne:
    """reserve_one with the inventory's state bound (bind_reserve_one's
    answer): ``f(s, units, max_p, order_id, user, deadline) -> status``.

    The arrays were checked and their pointers taken once, so a call converts
    six integers and runs the kernel.  It keeps the GIL: the kernel takes tens
    of nanoseconds, less than releasing and re-taking it would cost.
    """
    cdef kernel_vectorcallfunc _vectorcall  # the instance's vectorcall slot
    cdef TrackedState st
    cdef readonly tuple arrays  # keeps the arrays alive while st points into them

    def __cinit__(self, tuple arrays):
        global _reserve_one_vectorcall_on
        tracked_state_from_arrays(arrays, &self.st)
        self.arrays = arrays
        self._vectorcall = <kernel_vectorcallfunc>_reserve_one_vectorcall
        if not _reserve_one_vectorcall_on:
            # Once, before any instance can be called: where the slot sits.
            kernel_enable_instance_vectorcall((<PyObject *>self).ob_type,
                                              <char *>&self._vectorcall - <char *><PyObject *>self)
            _reserve_one_vectorcall_on = True

    cdef inline object _run(self, int64_t s, int64_t units, int64_t max_p, int64_t order_id, int64_t user,
                            int64_t deadline):
        # The one check that guards memory: the SKU indexes offer_start / limit.
        if <uint64_t>s >= <uint64_t>self.st.n_skus:
            raise IndexError(f"SKU {s} out of range [0, {self.st.n_skus})")
        return reserve_one_c(&self.st, s, units, max_p, order_id, user, deadline)

    def __call__(self, int64_t s, int64_t units, int64_t max_p, int64_t order_id, int64_t user,
                 int64_t deadline):
        return self._run(s, units, max_p, order_id, user, deadline)


cdef object _reserve_one_vectorcall(PyObject *callable, PyObject **args, size_t nargsf, PyObject *kwnames):
    """ReserveOne's vectorcall: six positional ints straight from the caller's
    array; anything else (keywords, another count) goes to __call__, which
    parses and reports errors as usual."""
    cdef Py_ssize_t i, nargs = PyVectorcall_NARGS(nargsf)
    cdef ReserveOne self = <ReserveOne>callable
    if kwnames == NULL and nargs == 6:
        return self._run(<object>args[0], <object>args[1], <object>args[2], <object>args[3], <object>args[4],
                         <object>args[5])
    # __call__ here is the slot wrapper of tp_call: no vectorcall, no recursion.
    cdef tuple names = <tuple>kwnames if kwnames != NULL else ()
    return self.__call__(*[<object>args[i] for i in range(nargs)],
                         **{names[i]: <object>args[nargs + i] for i in range(len(names))})


def bind_reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                     order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer, fill_qty,
                     counters):
    """reserve_one with the state bound: a callable
    ``(s, units, max_p, order_id, user, deadline) -> status``."""
    return ReserveOne((stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_key, limit_count,
                       order_word, order_user, order_deadline, order_fill_start, order_fill_end, fill_offer,
                       fill_qty, counters))
