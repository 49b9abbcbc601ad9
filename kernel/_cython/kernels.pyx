# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled kernels: mirrors :mod:`kernel.reference` function for function.

Same names and argument lists as ``kernel/reference/`` (the executable
spec); see that package for the data layout.  One compiled module, its
source split by family with ``include``: ``stock.pxi``, ``single.pxi``,
``general.pxi``, ``tracked.pxi``, ``one.pxi`` mirror the reference (and the
Numba) modules of the same stem; ``machinery.pxi`` holds what mirrors no
reference function; ``codes.pxd`` the codes of :mod:`kernel.codes`.
Arrays arrive validated by the facade (C-contiguous native int64, status
int8): nothing here validates.

Concurrency model: every stock word is an independent counter changed only by
CAS / fetch-add (``atomics.h``), so orders may run on ``n_threads`` OpenMP
threads without locks.  ``n_threads <= 1`` never enters an OpenMP region.
"""

from libc.stdint cimport int64_t, int8_t, uint64_t
from libc.string cimport memset

from .atomics cimport (atomic_load_i64, atomic_load_acquire_i64, atomic_store_i64, atomic_cas_i64, atomic_exchange_i64,
                       atomic_add_i64, prefetch_rw)
from ._openmp_helpers cimport KERNEL_HAVE_OPENMP
from .codes cimport *

from cpython.object cimport PyObject, PyTypeObject
from cython.parallel cimport prange
cimport cython

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
REFUSAL_BITS = K_REFUSAL_BITS
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
JOURNAL_SEQ = K_JOURNAL_SEQ
JOURNAL_SEGMENT = K_JOURNAL_SEGMENT
JOURNAL_BUSY = K_JOURNAL_BUSY
N_COUNTERS = K_N_COUNTERS
TOOK = K_TOOK
NEW_PAIR = K_NEW_PAIR
STATE_SHIFT = K_STATE_SHIFT
ID_MASK = K_ID_MASK
HASH_MULTIPLIER = K_HASH_MULTIPLIER
UINT64_MASK = K_UINT64_MASK
NO_LIMIT = K_NO_LIMIT
ORDER_STRIDE = K_ORDER_STRIDE
ORDER_WORD_AT = K_ORDER_WORD_AT
ORDER_USER_AT = K_ORDER_USER_AT
ORDER_DEADLINE_AT = K_ORDER_DEADLINE_AT
ORDER_FILLS_AT = K_ORDER_FILLS_AT
PAIR_STRIDE = K_PAIR_STRIDE
PAIR_KEY_AT = K_PAIR_KEY_AT
PAIR_COUNT_AT = K_PAIR_COUNT_AT
FILL_COUNT_BITS = K_FILL_COUNT_BITS
MAX_ORDER_FILLS = K_MAX_ORDER_FILLS
MAX_FILL_LOG = K_MAX_FILL_LOG


# The kernels, one file per family (the stems of kernel/reference/ and
# kernel/_numba/); machinery.pxi first: the families share it.
include "machinery.pxi"
include "stock.pxi"
include "single.pxi"
include "general.pxi"
include "tracked.pxi"
include "one.pxi"
