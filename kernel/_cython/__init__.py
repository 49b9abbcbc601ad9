"""Cython backend: compiled kernels mirroring :mod:`kernel.reference`."""

import os


def get_include():
    """The directory to put on Cython's include path to ``cimport``
    ``kernel._cython.tracked`` (or ``kernel._cython.kernels``): the one that
    holds the ``kernel`` package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
