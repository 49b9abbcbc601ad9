# reserve_one: one tracked order of one line, start to finish, from Python
# (reserve_one, bind_reserve_one) or from other Cython code (reserve_one_c,
# declared in kernels.pxd).
#
# Mirrors kernel/reference/one.py function for function (same names, same
# argument lists); kernel/_numba/one.py mirrors the same functions in Numba.
# Included by kernels.pyx (one compiled module): its cimports and codes apply.


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
    cdef int64_t *limit_table = st.limit_table
    cdef int64_t *order_table = st.order_table
    cdef int64_t *fill_offer = st.fill_offer
    cdef int64_t *fill_qty = st.fill_qty
    cdef int64_t *counters = st.counters
    cdef int64_t n_skus = st.n_skus
    cdef int64_t limit_mask = st.limit_capacity - 1
    cdef int64_t order_mask = st.order_capacity - 1
    cdef int64_t n_fills, first_fill, slot, took = 0, missing, status
    cdef int64_t *record
    cdef bint new_pair
    slot = find_order(order_table, order_mask, order_id)
    if slot >= 0:  # ids never leave the table: a duplicate for sure, and it needs no budget
        return (K_CANCELLED
                if state_of(atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])) == K_CANCELLED_EARLY
                else K_DUPLICATE)
    n_fills = offer_start[s + 1] - offer_start[s]
    # Only a (user, SKU) pair not in the table yet needs room there.
    new_pair = (limit[s] != K_NO_LIMIT
                and limit_slot(limit_table, limit_mask, user * n_skus + s + 1, False) == -1)
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
    slot = claim_order(order_table, order_mask, order_id, K_PENDING)
    if slot < 0:  # claimed by someone else since find_order
        take_budget(counters, K_ORDERS_LEFT, -1)
        take_budget(counters, K_FILLS_LEFT, -n_fills)
        if new_pair:
            take_budget(counters, K_PAIRS_LEFT, -1)
        slot = -1 - slot
        return (K_CANCELLED
                if state_of(atomic_load_i64(&order_table[K_ORDER_STRIDE * slot + K_ORDER_WORD_AT])) == K_CANCELLED_EARLY
                else K_DUPLICATE)
    # The budget promised these entries, so the cursor stays in the log.
    first_fill = take_budget(counters, K_FILL_CURSOR, -n_fills)
    status = K_ACCEPTED
    # take_tracked's pre-checks, in its order.
    if offers_available(stock, price, offer_start, offer_by_priority, s, max_p, units) < units:
        status = K_OUT_OF_STOCK
    elif limit_room(limit, n_skus, limit_table, limit_mask, user, s) < units:
        status = K_LIMIT_EXCEEDED
    else:
        # The record is complete before the first unit is taken (see take_tracked).
        record = &order_table[K_ORDER_STRIDE * slot]
        record[K_ORDER_USER_AT] = user
        record[K_ORDER_DEADLINE_AT] = deadline
        record[K_ORDER_FILLS_AT] = (first_fill << K_FILL_COUNT_BITS) | n_fills
        took = take_limit(limit, n_skus, limit_table, limit_mask, user, s, units)
        if not (took & K_TOOK):
            status = K_LIMIT_EXCEEDED
        else:
            missing = take_line(stock, price, offer_start, offer_by_priority, fill_offer, fill_qty, s, units,
                                max_p, first_fill)
            if missing:
                give_back_limit(limit, n_skus, limit_table, limit_mask, user, s, missing)
                give_back_fills(stock, offer_sku, limit, n_skus, limit_table, limit_mask, fill_offer,
                                fill_qty, user, first_fill, first_fill + n_fills)
                atomic_add_i64(&counters[K_ROLLBACKS], 1)
                status = K_OUT_OF_STOCK
            else:
                status = publish_or_undo(stock, offer_sku, limit, n_skus, limit_table, limit_mask,
                                         order_table, fill_offer, fill_qty, counters, slot, user, first_fill,
                                         first_fill + n_fills)
        if status == K_LIMIT_EXCEEDED or status == K_OUT_OF_STOCK:
            clear_record(order_table, slot)  # as take_tracked: a refused record is its id and state only
    if new_pair and not (took & K_NEW_PAIR):
        take_budget(counters, K_PAIRS_LEFT, -1)  # someone else added the pair (or it was not reached)
    if status != K_ACCEPTED and status != K_CANCELLED:
        settle_refused_slot(order_table, slot)
    return status


cdef inline bint _power_of_two(Py_ssize_t n) noexcept:
    return n > 0 and (n & (n - 1)) == 0


cdef int tracked_state_from_arrays(tuple arrays, TrackedState *out) except -1:
    """Fill ``out`` from the 11 state arrays, checking types and sizes once
    (declared in kernels.pxd).  The caller keeps ``arrays`` alive."""
    if arrays is None or len(arrays) != 11:
        raise ValueError("expected a tuple of the 11 tracked-state arrays (Inventory.state_arrays())")
    for i in range(11):
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
    cdef int64_t[::1] limit_table = arrays[6]
    cdef int64_t[::1] order_table = arrays[7]
    cdef int64_t[::1] fill_offer = arrays[8]
    cdef int64_t[::1] fill_qty = arrays[9]
    cdef int64_t[::1] counters = arrays[10]
    cdef Py_ssize_t n_offers = stock.shape[0]
    if price.shape[0] != n_offers or offer_sku.shape[0] != n_offers:
        raise ValueError("stock, price and offer_sku must have one entry per offer")
    if offer_start.shape[0] != limit.shape[0] + 1:
        raise ValueError("offer_start must have n_skus + 1 entries (n_skus = limit.size)")
    if order_table.shape[0] % K_ORDER_STRIDE or not _power_of_two(order_table.shape[0] // K_ORDER_STRIDE):
        raise ValueError(f"order_table must hold a power-of-two number of {K_ORDER_STRIDE}-word records")
    if limit_table.shape[0] % K_PAIR_STRIDE or not _power_of_two(limit_table.shape[0] // K_PAIR_STRIDE):
        raise ValueError(f"limit_table must hold a power-of-two number of {K_PAIR_STRIDE}-word pairs")
    if fill_offer.shape[0] != fill_qty.shape[0]:
        raise ValueError("fill_offer and fill_qty must have the same size")
    if counters.shape[0] <= K_FILL_CURSOR:
        raise ValueError("counters must have at least 5 entries")
    # (The budget counters are not checked here: other processes change them
    # while this one binds, so no two reads of them agree.)
    _state_from_views(out, stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                      fill_offer, fill_qty, counters)
    return 0


def reserve_one(int64_t[::1] stock, const int64_t[::1] price, const int64_t[::1] offer_start,
                const int64_t[::1] offer_by_priority, const int64_t[::1] offer_sku, const int64_t[::1] limit,
                int64_t[::1] limit_table, int64_t[::1] order_table, int64_t[::1] fill_offer, int64_t[::1] fill_qty,
                int64_t[::1] counters, int64_t s, int64_t units, int64_t max_p, int64_t order_id, int64_t user,
                int64_t deadline):
    """One order of one line, start to finish; its status, or a negative
    *_FULL code when a budget is spent (then nothing changed)."""
    cdef TrackedState st
    _state_from_views(&st, stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                      fill_offer, fill_qty, counters)
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


def bind_reserve_one(stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                     fill_offer, fill_qty, counters):
    """reserve_one with the state bound: a callable
    ``(s, units, max_p, order_id, user, deadline) -> status``."""
    return ReserveOne((stock, price, offer_start, offer_by_priority, offer_sku, limit, limit_table, order_table,
                       fill_offer, fill_qty, counters))
