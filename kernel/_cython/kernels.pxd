# The C-level entry points of kernels.pyx that other Cython modules may
# cimport: one tracked order of one line, start to finish, without Python.
#
#     from kernel._cython.kernels cimport TrackedState, reserve_one_c, tracked_state_from_arrays
#
#     cdef TrackedState st
#     tracked_state_from_arrays(inventory.state_arrays(), &st)   # with the GIL, once
#     with nogil:
#         status = reserve_one_c(&st, sku, units, max_price, order_id, user, deadline)
#
# Build the user module with ``include_path=[kernel._cython.get_include()]``
# (cythonize) so Cython finds this file; no C header or library is needed:
# the functions are imported from the compiled kernels module at run time
# (``kernels.__pyx_capi__``).  Only what is declared here is exported; the
# rest of kernels.pyx stays private to it.
from libc.stdint cimport int64_t


cdef struct TrackedState:
    # Raw pointers into the 16 state arrays, in kernel.state.STATE_NAMES
    # order (= Inventory.state_arrays(); tests/test_mirrors.py checks these
    # fields against it; kernel/reference/tracked.py says what each holds).
    # They do not keep the arrays alive: whoever fills a TrackedState keeps a
    # reference to the arrays for as long as it is used.  The def kernels of
    # tracked.pxi fill one too (machinery.pxi), with NULL for arrays they
    # do not take.
    int64_t *stock
    const int64_t *price
    const int64_t *offer_start
    const int64_t *offer_by_priority
    const int64_t *offer_sku
    const int64_t *limit
    int64_t *limit_key
    int64_t *limit_count
    int64_t *order_word
    int64_t *order_user
    int64_t *order_deadline
    int64_t *order_fill_start
    int64_t *order_fill_end
    int64_t *fill_offer
    int64_t *fill_qty
    int64_t *counters
    # Sizes: n_skus == limit.size (offer_start has n_skus + 1 entries);
    # the two table capacities are powers of two.
    int64_t n_skus
    int64_t order_capacity
    int64_t limit_capacity
    int64_t fill_size


# kernel.reference.reserve_one on the state ``st``: same semantics, same
# return codes (a Status code, or ORDER_TABLE_FULL / LIMIT_TABLE_FULL /
# FILL_LOG_FULL when a budget is spent).  Safe to call from many threads at
# once.  Nothing is validated: ``0 <= s < st.n_skus``, ``units > 0`` and
# ``0 <= order_id <= ID_MASK`` are the caller's to ensure.
cdef int64_t reserve_one_c(TrackedState *st, int64_t s, int64_t units, int64_t max_p, int64_t order_id,
                           int64_t user, int64_t deadline) noexcept nogil

# Fill ``out`` from the 16 state arrays (a tuple, in state_arrays() order):
# checks each is a 1-D C-contiguous int64 array (writable where the kernels
# write) and that the sizes agree; raises ValueError / TypeError otherwise.
cdef int tracked_state_from_arrays(tuple arrays, TrackedState *out) except -1
