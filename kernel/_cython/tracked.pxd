# Tracked orders from your own Cython code: reserve one single-line order
# without Python, from any thread.  Usage:
#
#     from libc.stdint cimport int64_t, INT64_MAX
#     from kernel._cython.tracked cimport (TrackedState, reserve_one_c, tracked_state_from_arrays,
#                                          RESERVE_ACCEPTED)
#
#     cdef TrackedState st
#     tracked_state_from_arrays(inventory.state_arrays(), &st)   # with the GIL, once
#     with nogil:
#         status = reserve_one_c(&st, sku, qty, INT64_MAX, order_id, user_id, INT64_MAX)
#
# max_p = INT64_MAX: any price; deadline = INT64_MAX: no deadline.  Keep the
# tuple of arrays (or the inventory) alive while ``st`` is used: it holds raw
# pointers into them.  Build with cythonize(..., include_path=[kernel._cython.get_include()])
# (not needed when kernel is installed in site-packages: Cython searches
# sys.path); no header or library is needed, the functions are imported from
# kernel._cython.kernels at run time.  See kernels.pxd for the details.
from kernel._cython.kernels cimport TrackedState, reserve_one_c, tracked_state_from_arrays

# reserve_one_c's answers (kernel.Status, then the *_FULL codes of
# kernel.codes): a budget is spent when negative, and then nothing changed.
# The values come from codes.pxd, the C mirror of kernel/codes.py.
from kernel._cython.codes cimport (K_ACCEPTED, K_OUT_OF_STOCK, K_DUPLICATE, K_LIMIT_EXCEEDED, K_CANCELLED,
                                   K_ORDER_TABLE_FULL, K_LIMIT_TABLE_FULL, K_FILL_LOG_FULL)

cdef enum:
    RESERVE_ACCEPTED = K_ACCEPTED
    RESERVE_OUT_OF_STOCK = K_OUT_OF_STOCK
    RESERVE_DUPLICATE = K_DUPLICATE
    RESERVE_LIMIT_EXCEEDED = K_LIMIT_EXCEEDED
    RESERVE_CANCELLED = K_CANCELLED
    RESERVE_ORDER_TABLE_FULL = K_ORDER_TABLE_FULL
    RESERVE_LIMIT_TABLE_FULL = K_LIMIT_TABLE_FULL
    RESERVE_FILL_LOG_FULL = K_FILL_LOG_FULL
