# Stock words: take, look, give back (the atomic operations every family uses).
#
# Mirrors kernel/reference/stock.py function for function (same names, same
# argument lists); kernel/_numba/stock.py mirrors the same functions in Numba.
# Included by kernels.pyx (one compiled module): its cimports and codes apply.


cdef inline bint take_exactly(int64_t *stock, int64_t offer, int64_t units) noexcept nogil:
    """Take exactly ``units`` from stock[offer] or nothing."""
    # Relaxed load is only a guess; the CAS validates it.  On CAS failure
    # ``cur`` is refreshed with the real value, so we re-decide without a
    # second load.  Once stock < units we give up WITHOUT writing: a sold-out
    # offer costs readers a load, never a cache-line-stealing write.
    #
    # The first try is inline and the retry loop (a lost race) is out of
    # line.  With the loop inline, GCC kept the word's address live around
    # it and, in the carts take loop (general.pxi), spilled the line range's
    # end to the stack for it: a store and a load on every line.  Counted
    # (python bench/kernel_counts.py --workload carts --mode concurrent,
    # callgrind, per line): 27.4 -> 25.1 instructions, 7.0 -> 6.3 loads,
    # 3.0 -> 2.3 stores; the gate's Cython carts cases -8.4%, zipf -1.1%.
    # Not done for take_up_to (below: -1 to -3% on the general and tracked
    # single-line cases, +0.8% on carts/tracked, and no clear wall-time
    # win) nor for the tracked cap count's CAS loop (+3% on uniform/tracked).
    cdef int64_t *word = &stock[offer]
    cdef int64_t cur = atomic_load_i64(word)
    if cur < units:
        return False
    if atomic_cas_i64(word, &cur, cur - units):
        return True
    return _take_exactly_retry(word, cur, units)


cdef bint _take_exactly_retry(int64_t *word, int64_t cur, int64_t units) noexcept nogil:
    """take_exactly after its first CAS lost a race (``cur``: the winner's value)."""
    while cur >= units:
        if atomic_cas_i64(word, &cur, cur - units):
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


cdef noinline_void _give_back_chunk(int64_t *stock, const int64_t *offer, const int64_t *qty,
                                     Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(start, stop):
        # fetch-add: concurrent reservations may be CAS-ing the same word.
        atomic_add_i64(&stock[offer[k]], qty[k])


def give_back(int64_t[::1] stock, const int64_t[::1] offer, const int64_t[::1] qty, int n_threads):
    """Return qty[k] units to stock[offer[k]] for every k (atomic fetch-add)."""
    cdef Py_ssize_t n = offer.shape[0]
    cdef Py_ssize_t n_chunks = _n_chunks(n, CHUNK)
    cdef Py_ssize_t c
    if n == 0:
        return
    cdef int64_t *stock_p = _ptr(stock)
    cdef const int64_t *offer_p = _const_ptr(offer)
    cdef const int64_t *qty_p = _const_ptr(qty)
    if n_threads <= 1:
        with nogil:
            for c in range(n_chunks):
                _give_back_chunk(stock_p, offer_p, qty_p, c * CHUNK, min((c + 1) * CHUNK, n))
    else:
        for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule='static'):
            _give_back_chunk(stock_p, offer_p, qty_p, c * CHUNK, min((c + 1) * CHUNK, n))
