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
    # The opposite, for a per-order helper called from more than one chunk
    # loop: with two call sites GCC stopped inlining take_tracked (one call
    # with 24 arguments per order, +44% instructions on the tracked gate cases).
    ctypedef signed char always_inline_int8 "Py_ALWAYS_INLINE int8_t"
    ctypedef void always_inline_void "Py_ALWAYS_INLINE void"


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
                            const int64_t[::1] limit, int64_t[::1] limit_table, int64_t[::1] order_table,
                            const int64_t[::1] fill_offer, int64_t[::1] fill_qty) noexcept:
    """Point ``st`` at what ending an order touches (the arrays cancel,
    expire and recover take); the other pointers are NULL."""
    st.stock = _ptr(stock)
    st.price = NULL
    st.offer_start = NULL
    st.offer_by_priority = NULL
    st.offer_sku = _const_ptr(offer_sku)
    st.limit = _const_ptr(limit)
    st.limit_table = _ptr(limit_table)
    st.order_table = _ptr(order_table)
    # TrackedState's log pointers are writable (a reserve writes them); the
    # kernels that take fill_offer read-only only read it.
    st.fill_offer = <int64_t *>_const_ptr(fill_offer)
    st.fill_qty = _ptr(fill_qty)
    st.counters = NULL
    st.n_skus = limit.shape[0]
    st.order_capacity = order_table.shape[0] // K_ORDER_STRIDE
    st.limit_capacity = limit_table.shape[0] // K_PAIR_STRIDE
    st.fill_size = fill_qty.shape[0]


cdef void _state_from_views(TrackedState *st, int64_t[::1] stock, const int64_t[::1] price,
                            const int64_t[::1] offer_start, const int64_t[::1] offer_by_priority,
                            const int64_t[::1] offer_sku, const int64_t[::1] limit, int64_t[::1] limit_table,
                            int64_t[::1] order_table, int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                            int64_t[::1] counters) noexcept:
    """Point ``st`` at all 11 state arrays (arguments in STATE_NAMES order)."""
    _holds_from_views(st, stock, offer_sku, limit, limit_table, order_table, fill_offer, fill_qty)
    st.price = _const_ptr(price)
    st.offer_start = _const_ptr(offer_start)
    st.offer_by_priority = _const_ptr(offer_by_priority)
    st.counters = _ptr(counters)
