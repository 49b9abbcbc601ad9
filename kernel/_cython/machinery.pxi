# Machinery that mirrors no reference function: how work is cut into chunks
# and how the def kernels turn typed memoryviews into raw pointers.
# Included by kernels.pyx before the family files, which all use it.

cdef enum:
    # Orders per unit of parallel work: large enough to amortise scheduling,
    # small enough that the tail of a static schedule stays balanced.
    CHUNK = 16384


cdef inline int64_t _n_chunks(Py_ssize_t n, Py_ssize_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk


# Pointers for the def kernels.  An array may legitimately be empty (no fill
# log, no offers): its pointer is then NULL and never dereferenced.

cdef inline int64_t *_wp(int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline const int64_t *_rp(const int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


cdef inline int8_t *_wp8(int8_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL
