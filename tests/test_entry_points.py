"""The single-order entry points for users' compiled code, run exactly as
examples/ documents them: an ``@njit`` function calling
``kernel._numba.kernels.reserve_one`` and a Cython module that cimports
``kernel._cython.tracked``.  Both must answer like ``Inventory.reserve_one``
and leave the same state."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernel
from kernel.invariants import check_tracked

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N = 3000


def orders():
    rng = np.random.default_rng(5)
    return rng.integers(0, 3, N), rng.integers(0, N // 2, N), rng.integers(0, 200, N)  # repeated ids, users


def expected(skus, ids, users):
    """The facade's answers, one call at a time (arrival order)."""
    inv = kernel.Inventory([500, 500, 500], backend="reference", max_orders=N, limit_per_user=3)
    codes = [int(inv.reserve_one(int(s), 1, order_id=int(i), user_id=int(u))) for s, i, u in zip(skus, ids, users)]
    return codes, inv


def fresh(backend):
    return kernel.Inventory([500, 500, 500], backend=backend, max_orders=N, limit_per_user=3)


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numba_users_call_reserve_one_from_njit_code():
    sell = load(EXAMPLES / "numba_entry.py", "numba_entry").sell
    skus, ids, users = orders()
    codes, twin = expected(skus, ids, users)
    inv = fresh("numba")
    assert sell(inv.state_arrays(), skus, ids, users).tolist() == codes
    for mine, theirs in zip(inv.state_arrays(), twin.state_arrays()):
        np.testing.assert_array_equal(mine, theirs)


@pytest.fixture(scope="module")
def cython_sell(tmp_path_factory):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.fail("no C compiler: the Cython entry point cannot be built")  # the package itself needed one
    where = tmp_path_factory.mktemp("cython_entry")
    for name in ("sell.pyx", "build.py"):
        shutil.copy(EXAMPLES / "cython_entry" / name, where / name)
    build = subprocess.run([sys.executable, "build.py", "build_ext", "--inplace"], cwd=where, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    sys.path.insert(0, str(where))
    try:
        import sell
    finally:
        sys.path.remove(str(where))
    return sell.sell


def test_cython_users_cimport_reserve_one_c(cython_sell):
    skus, ids, users = orders()
    codes, twin = expected(skus, ids, users)
    inv = fresh("cython")
    out = np.empty(N, np.int64)
    cython_sell(inv.state_arrays(), skus, ids, users, out, 1)
    assert out.tolist() == codes
    for mine, theirs in zip(inv.state_arrays(), twin.state_arrays()):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("threads", [2, 8])
def test_cython_users_may_call_it_from_many_threads(cython_sell, threads):
    skus, ids, users = orders()
    inv = fresh("cython")
    out = np.empty(N, np.int64)
    cython_sell(inv.state_arrays(), skus, ids, users, out, threads)
    accepted = out == kernel.Status.ACCEPTED
    assert np.unique(ids[accepted]).size == accepted.sum()  # no id accepted twice
    check_tracked(inv, [500, 500, 500])  # includes: no user over the cap of 3
