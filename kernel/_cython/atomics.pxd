# Declarations of the lock-free helpers in atomics.h (see the comment there
# for why relaxed loads + ACQ_REL read-modify-writes are enough for stock,
# and where order words need the acquire load / release store).
from libc.stdint cimport int64_t

cdef extern from "atomics.h" nogil:
    int64_t atomic_load_i64(int64_t *p)
    int64_t atomic_load_acquire_i64(int64_t *p)
    void atomic_store_i64(int64_t *p, int64_t v)
    int atomic_cas_i64(int64_t *p, int64_t *expected, int64_t desired)
    int64_t atomic_add_i64(int64_t *p, int64_t v)
    int64_t atomic_exchange_i64(int64_t *p, int64_t v)
    void prefetch_rw(const void *p)
