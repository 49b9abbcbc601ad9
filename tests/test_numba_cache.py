"""Numba's on-disk cache must notice an edit of any source of the backend.

Numba keys a cached function by its own file and bytecode only; a kernel
that inlines a helper of another module (``general._carts_range`` inlines
``stock.take_exactly``) or freezes a code of ``kernel/codes.py`` into its
machine code would load stale code after that other file changed.
``kernel._numba._jit.BackendSourcesCache`` puts a digest of every backend
source in the key.  These tests copy the package to a temporary directory,
compute with a kernel in fresh processes, edit the copy between runs and
check what the next process computed (and whether it used the cache).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import pytest

import kernel._numba.kernels  # noqa: F401  (imports every family module)
from kernel._numba._jit import BackendSourcesCache, backend_sources

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("stock", "single", "general", "tracked", "one", "_jit", "atomics")
# Seconds a child may take: it imports numba and may compile one kernel
# (a few seconds alone; far more on a shared, busy machine).
CHILD_TIMEOUT = 300

# Three carts of one line on two offers: the first fits, the second takes
# offer 1 exactly (5 of 5), the third finds 1 unit of offer 0 where it wants 2.
CHILD = r"""
import json
import sys

import numpy as np

import kernel
from kernel._numba import general, kernels

assert kernel.__file__.startswith(sys.argv[1]), kernel.__file__  # the copy, not the installed package
stock = np.array([2, 5], np.int64)
line_start = np.array([0, 1, 2, 3], np.int64)
sku = np.array([0, 1, 0], np.int64)
qty = np.array([1, 5, 2], np.int64)
order_index = np.arange(3, dtype=np.int64)
status = np.full(3, -1, np.int8)
counters = np.zeros(8, np.int64)
kernels.reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, 1)
stats = general._carts_range.stats  # the dispatcher reserve_carts_ordered calls from Python
print(json.dumps({"status": status.tolist(), "stock": stock.tolist(), "rollbacks": int(counters[0]),
                  "cache_hits": sum(stats.cache_hits.values()), "cache_misses": sum(stats.cache_misses.values())}))
"""


@pytest.fixture
def package_copy(tmp_path):
    """The ``kernel`` package's sources, copied (no build outputs, no caches)."""
    shutil.copytree(ROOT / "kernel", tmp_path / "kernel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c", "*.cpp", "build"))
    return tmp_path


def compute(where, script=None, **environ):
    """Run ``script`` (CHILD by default) in a fresh process on the package
    copy in ``where``, with ``environ`` added to the environment."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(where / "numba-cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(where), os.environ.get("PYTHONPATH")])), **environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    if "KERNEL_NUMBA_BOUNDSCHECK" not in environ:
        env.pop("KERNEL_NUMBA_BOUNDSCHECK", None)  # unchecked code unless asked
    child = subprocess.run([sys.executable, "-c", script or CHILD, str(where)], cwd=where, env=env,
                           capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def index_files(where):
    """Every cache index under ``where``: path -> (mtime_ns, contents)."""
    return {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in (where / "numba-cache").rglob("*.nbi")}


def edit(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once: update this test"
    path.write_text(text.replace(old, new))


def test_an_unchanged_tree_loads_every_kernel_from_the_cache(package_copy):
    first = compute(package_copy)
    assert first["status"] == [0, 0, 1] and first["stock"] == [1, 0]
    assert first["cache_misses"] == 1 and first["cache_hits"] == 0
    indexes = index_files(package_copy)
    assert any("_carts_range" in path.name for path in indexes), sorted(indexes)
    second = compute(package_copy)
    assert second == {**first, "cache_hits": 1, "cache_misses": 0}
    assert index_files(package_copy) == indexes  # nothing was compiled, so no index was rewritten


@pytest.mark.parametrize("module, old, new, expected", [
    # A code of kernel/codes.py, frozen into the machine code as a constant.
    ("codes.py", "\nOUT_OF_STOCK = 1\n", "\nOUT_OF_STOCK = 9\n", {"status": [0, 0, 9], "stock": [1, 0], "rollbacks": 0}),
    # A helper of stock.py that general._carts_range inlines: an exact fit is now refused.
    ("_numba/stock.py", "while seen >= units:", "while seen > units:",
     {"status": [0, 1, 1], "stock": [1, 5]}),
], ids=["code", "helper"])
def test_an_edit_of_another_backend_module_recompiles_the_kernels_using_it(package_copy, module, old, new, expected):
    before = compute(package_copy)
    assert before["status"] == [0, 0, 1] and before["cache_misses"] == 1
    edit(package_copy / "kernel" / module, old, new)
    after = compute(package_copy)
    assert {key: after[key] for key in expected} == expected  # the edit took effect: the stale code was not loaded
    assert after["cache_hits"] == 0 and after["cache_misses"] == 1
    again = compute(package_copy)
    assert again == {**after, "cache_hits": 1, "cache_misses": 0}  # and the recompiled code is cached in turn


def test_every_dispatcher_of_the_backend_uses_the_backend_wide_cache():
    dispatchers = {}
    for family in FAMILIES:
        module = sys.modules[f"kernel._numba.{family}"]
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.dispatcher.Dispatcher) and obj.py_func.__module__ == module.__name__:
                dispatchers[f"{family}.{name}"] = obj
    assert "general._carts_chunk" in dispatchers and "one.reserve_one" in dispatchers
    plain = sorted(name for name, dispatcher in dispatchers.items()
                   if not isinstance(dispatcher._cache, BackendSourcesCache))
    assert plain == [], "made with numba.njit instead of kernel._numba._jit.njit"


def test_the_cache_key_covers_every_backend_source():
    sources = {path.relative_to(ROOT / "kernel").as_posix() for path in backend_sources()}
    expected = {path.relative_to(ROOT / "kernel").as_posix() for path in (ROOT / "kernel" / "_numba").glob("*.py")}
    assert sources == expected | {"codes.py"}


# A cart whose only line names SKU 7 of a two-word stock: a kernel bug the
# facade can never pass on (it validates SKUs), made here by calling the
# kernel directly.
CHECKED_CHILD = r"""
import json
import sys

import numpy as np

import kernel
from kernel._numba import atomics, general, kernels

assert kernel.__file__.startswith(sys.argv[1]), kernel.__file__
stock = np.array([2, 5], np.int64)
args = (stock, np.array([0, 1], np.int64), np.array([7], np.int64), np.array([1], np.int64),
        np.arange(1, dtype=np.int64), np.full(1, -1, np.int8), np.zeros(8, np.int64), 1)
try:
    kernels.reserve_carts_ordered(*args)
    raised = None
except IndexError as exc:
    raised = str(exc)
stats = general._carts_range.stats
print(json.dumps({"checked": atomics.CHECK_BOUNDS, "raised": raised, "stock": stock.tolist(),
                  "cache_hits": sum(stats.cache_hits.values()), "cache_misses": sum(stats.cache_misses.values())}))
"""


def test_the_bounds_check_switch_raises_index_error_and_has_its_own_cache_entries(package_copy):
    # Unchecked code first, then checked code in the same cache: the switch
    # must compile its own (a hit here would run unchecked code and write
    # past the stock), and each kind must then load its own from the cache.
    unchecked = compute(package_copy)
    assert unchecked["cache_misses"] == 1

    def checked_run():
        return compute(package_copy, CHECKED_CHILD, KERNEL_NUMBA_BOUNDSCHECK="1")

    first = checked_run()
    assert first["checked"] is True
    assert first["raised"] and "out of bounds" in first["raised"]
    assert first["stock"] == [2, 5]  # nothing was touched before the check
    assert first["cache_misses"] == 1 and first["cache_hits"] == 0
    assert checked_run()["cache_hits"] == 1
    assert compute(package_copy) == {**unchecked, "cache_hits": 1, "cache_misses": 0}


def test_saves_wait_for_the_cache_lock(tmp_path, monkeypatch):
    """Two processes saving two signatures of one kernel at once could leave
    an index naming the other's machine code (numba#10128): the backend's
    cache saves under an exclusive ``flock`` in the cache directory.  Held
    here (another open file description: it conflicts even in-process), a
    compile's save waits for it, and completes once it is released."""
    import fcntl
    import importlib.util
    import threading

    from numba.core.caching import FunctionCache

    from kernel._numba._jit import CACHE_LOCK

    module_path = tmp_path / "lock_probe.py"
    module_path.write_text("from kernel._numba._jit import njit\n\n\n"
                           "@njit(cache=True)\ndef add_one(x):\n    return x + 1\n")
    spec = importlib.util.spec_from_file_location("lock_probe", module_path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    cache = probe.add_one._cache
    assert isinstance(cache, BackendSourcesCache)
    cache_path = Path(cache._cache_path)
    cache_path.mkdir(parents=True, exist_ok=True)

    arrived, saved = threading.Event(), threading.Event()
    ensure = cache._impl.locator.ensure_cache_path
    monkeypatch.setattr(cache._impl.locator, "ensure_cache_path", lambda: (ensure(), arrived.set()))
    numba_save = FunctionCache.save_overload
    monkeypatch.setattr(FunctionCache, "save_overload",
                        lambda self, sig, data: (numba_save(self, sig, data), saved.set()))

    results = []
    with open(cache_path / CACHE_LOCK, "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: results.append(probe.add_one(41)), daemon=True)
        worker.start()
        assert arrived.wait(timeout=CHILD_TIMEOUT), "the compile never reached its save"
        assert not saved.wait(timeout=0.5), "the save went ahead while another holder had the lock"
        assert not list(cache_path.glob("*.nbi")), "an index was written under another holder's lock"
    # Closing the file released the lock.
    worker.join(timeout=CHILD_TIMEOUT)
    assert not worker.is_alive() and results == [42]
    assert saved.is_set() and list(cache_path.glob("lock_probe.add_one-*.nbi"))
