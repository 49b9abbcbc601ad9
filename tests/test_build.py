"""The build is honest: every backend is there, OpenMP is reported truly."""

import sys

import pytest

import kernel
from kernel import OrderBatch
from kernel.backends import BACKENDS


def test_every_registered_backend_is_available():
    # A compiled backend that failed to build must fail the suite, not skip.
    assert kernel.available_backends() == list(BACKENDS)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_openmp_flag_says_whether_the_cython_kernels_link_an_openmp_runtime():
    inv = kernel.Inventory([10] * 100, backend="cython", threads=2)
    inv.reserve(OrderBatch(list(range(100)), [1] * 100))
    with open("/proc/self/maps") as maps:
        # numba's omp layer may load libgomp too: only count it for Cython
        # when numba has not been used in this process.
        mapped = any("libgomp" in line or "libomp" in line for line in maps)
    assert isinstance(kernel.openmp_enabled(), bool)
    if kernel.openmp_enabled():
        assert mapped
    elif "numba" not in sys.modules:
        assert not mapped


def test_auto_picks_the_first_available_backend():
    assert kernel.Inventory([1]).backend == kernel.available_backends()[0]
