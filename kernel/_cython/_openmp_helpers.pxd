# Tiny OpenMP stub (in the spirit of scikit-learn's _openmp_helpers): lets
# kernels.pyx compile with and without -fopenmp.  prange itself already
# degrades to a serial loop without OpenMP; this only exposes, honestly,
# whether the C compiler actually compiled the OpenMP pragmas (_OPENMP is
# defined by the compiler itself under -fopenmp / /openmp).
cdef extern from *:
    """
    #ifdef _OPENMP
    #define KERNEL_HAVE_OPENMP 1
    #else
    #define KERNEL_HAVE_OPENMP 0
    #endif
    """
    const int KERNEL_HAVE_OPENMP
