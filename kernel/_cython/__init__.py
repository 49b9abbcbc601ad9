"""Cython backend: compiled kernels mirroring :mod:`kernel.reference`."""
