# cython: language_level=3, boundscheck=False, wraparound=False
"""Calling the kernel's ``reserve_one_c`` from your own Cython code, without
the GIL, from many threads: ``from kernel._cython.tracked cimport ...``.

Build it with ``python build.py build_ext --inplace`` (see build.py)."""

from libc.stdint cimport int64_t, INT64_MAX
from cython.parallel cimport prange

from kernel._cython.tracked cimport TrackedState, reserve_one_c, tracked_state_from_arrays


def sell(tuple state, const int64_t[::1] skus, const int64_t[::1] order_ids, const int64_t[::1] users,
         int64_t[::1] out, int n_threads=1):
    """One unit of ``skus[i]`` for ``users[i]`` under id ``order_ids[i]``:
    ``out[i]`` gets the kernel.Status code (negative: a table is full)."""
    cdef TrackedState st
    # Pointers into the arrays of Inventory.state_arrays(): ``state`` keeps
    # them alive for the whole call.
    tracked_state_from_arrays(state, &st)
    cdef Py_ssize_t i
    for i in prange(skus.shape[0], nogil=True, num_threads=n_threads):
        # INT64_MAX: any price, and a hold without a deadline.
        out[i] = reserve_one_c(&st, skus[i], 1, INT64_MAX, order_ids[i], users[i], INT64_MAX)
