# Machinery that mirrors no reference function: how work is cut into chunks,
# and how the def kernels turn typed memoryviews into raw pointers (one
# array at a time, or the tracked state at once, as a TrackedState).
# Included by kernels.pyx before the family files, which all use it.

cdef enum:
    # Orders per unit of parallel work: large enough to amortise scheduling,
    # small enough that the tail of a static schedule stays balanced.
    CHUNK = 16384


# A hot loop inlined into its def wrapper shares the registers with the
# wrapper's argument handling, and what the compiler spills or inlines there
# shifts with unrelated edits elsewhere in the module (measured: the claim
# loop of claim_orders gained 2 instructions an order, +1.1% in a gate case,
# and cancel_orders stopped inlining give_back_fills, +7%, from edits that
# did not touch them).  A chunk function returning ``noinline_void`` is
# compiled on its own and keeps its code; one that must return a count
# writes it through a pointer instead.  (_carts_chunk and the expire /
# recover / reserve_tracked loops measured as well or better inline.)
cdef extern from *:
    ctypedef void noinline_void "Py_NO_INLINE void"  # Py_NO_INLINE: CPython's pyport.h


cdef inline int64_t _n_chunks(Py_ssize_t n, Py_ssize_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk


# The data pointer of a 1-D array, as the nogil code takes it.  An array may
# legitimately be empty (no lines, no fill log, no offers): its pointer is
# then NULL and never dereferenced.

cdef inline int64_t *_ptr(int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline const int64_t *_const_ptr(const int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline int8_t *_ptr8(int8_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


# The tracked state as one TrackedState (kernels.pxd): the def kernels of
# tracked.pxi and one.pxi fill one from their memoryview arguments here, and
# pass ``&st`` on instead of a dozen pointers.  Nothing is checked (the facade
# validated the arrays; tracked_state_from_arrays checks for other callers).

cdef void _holds_from_views(TrackedState *st, int64_t[::1] stock, const int64_t[::1] offer_sku,
                            const int64_t[::1] limit, int64_t[::1] limit_key, int64_t[::1] limit_count,
                            int64_t[::1] order_word, const int64_t[::1] order_user,
                            const int64_t[::1] order_fill_start, const int64_t[::1] order_fill_end,
                            const int64_t[::1] fill_offer, int64_t[::1] fill_qty) noexcept:
    """Point ``st`` at what ending an order touches (the arrays cancel,
    expire and recover take); the other pointers are NULL."""
    st.stock = _ptr(stock)
    st.price = NULL
    st.offer_start = NULL
    st.offer_by_priority = NULL
    st.offer_sku = _const_ptr(offer_sku)
    st.limit = _const_ptr(limit)
    st.limit_key = _ptr(limit_key)
    st.limit_count = _ptr(limit_count)
    st.order_word = _ptr(order_word)
    # TrackedState's record and log pointers are writable (a reserve writes
    # them); the kernels that take these arrays read-only only read them.
    st.order_user = <int64_t *>_const_ptr(order_user)
    st.order_deadline = NULL
    st.order_fill_start = <int64_t *>_const_ptr(order_fill_start)
    st.order_fill_end = <int64_t *>_const_ptr(order_fill_end)
    st.fill_offer = <int64_t *>_const_ptr(fill_offer)
    st.fill_qty = _ptr(fill_qty)
    st.counters = NULL
    st.n_skus = limit.shape[0]
    st.order_capacity = order_word.shape[0]
    st.limit_capacity = limit_key.shape[0]
    st.fill_size = fill_qty.shape[0]


cdef void _state_from_views(TrackedState *st, int64_t[::1] stock, const int64_t[::1] price,
                            const int64_t[::1] offer_start, const int64_t[::1] offer_by_priority,
                            const int64_t[::1] offer_sku, const int64_t[::1] limit, int64_t[::1] limit_key,
                            int64_t[::1] limit_count, int64_t[::1] order_word, int64_t[::1] order_user,
                            int64_t[::1] order_deadline, int64_t[::1] order_fill_start,
                            int64_t[::1] order_fill_end, int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                            int64_t[::1] counters) noexcept:
    """Point ``st`` at all 16 state arrays (arguments in STATE_NAMES order)."""
    _holds_from_views(st, stock, offer_sku, limit, limit_key, limit_count, order_word, order_user,
                      order_fill_start, order_fill_end, fill_offer, fill_qty)
    st.price = _const_ptr(price)
    st.offer_start = _const_ptr(offer_start)
    st.offer_by_priority = _const_ptr(offer_by_priority)
    st.order_deadline = _ptr(order_deadline)
    st.counters = _ptr(counters)
