"""Shared registry of what the tests run over: every backend x thread count,
and hypothesis strategies for inventories and batches."""

import importlib.metadata
import os

import numpy as np
import pytest
from hypothesis import strategies as st

import kernel
from kernel.backends import BACKENDS
from kernel.bench.warm import every_dispatcher

# Compiled backends must be built: a missing one is a test failure (see
# test_build.py), never a silent skip, so the registry lists them all.
ALL_BACKENDS = list(BACKENDS)
COMPILED_BACKENDS = [name for name in ALL_BACKENDS if name != "reference"]
# 8 > the 2 cores of CI on purpose: oversubscription shakes out races.
THREAD_COUNTS = [1, 2, 8]


def _installed_copy(here):
    """Where a non-editable install of this project keeps ``kernel`` (other
    than ``here``), or None.  Every copy of the metadata is looked at: an
    in-tree build leaves a ``*.egg-info`` in the checkout that is found first."""
    for dist in importlib.metadata.distributions(name="double11-kernel"):
        where = os.path.realpath(dist.locate_file("kernel/__init__.py"))
        if where != here and os.path.isfile(where):  # an editable install lists no such file
            return where
    return None


def pytest_collection(session):
    """Stop at once, with one message, when the compiled backends do not
    import (instead of a hundred failures and a test waiting on workers that
    died at import).  The usual cause: ``pip install .`` (not ``-e``) and
    pytest run inside the checkout, whose ``./kernel`` (no compiled
    extension) shadows the installed package."""
    missing = [name for name in COMPILED_BACKENDS if name not in kernel.available_backends()]
    if not missing:
        return
    errors = []
    for name in missing:
        try:
            kernel.backends.load(name)
        except ImportError as exc:
            errors.append(f"  {name}: {exc}")
    here = os.path.realpath(kernel.__file__)
    installed = _installed_copy(here)
    if installed:
        cause = (f"The tests import the source tree's kernel ({os.path.dirname(here)}), which shadows the "
                 f"installed, non-editable package ({os.path.dirname(installed)}); the source tree has no "
                 "compiled extension.\nInstall the checkout in editable mode instead: pip install -e '.[test]'")
    else:
        cause = (f"kernel is imported from {os.path.dirname(here)}, where they are not built.\n"
                 "Build them in place with: pip install -e '.[test]'")
    pytest.exit(f"compiled backend(s) {', '.join(missing)} cannot be imported:\n" + "\n".join(errors)
                + "\n" + cause, returncode=pytest.ExitCode.USAGE_ERROR)


# ---------------------------------------------------------------- warm-up
# Compiling the Numba kernels is about 300 of the 460 s a cold run of the
# whole suite takes on the 2-core VM, one kernel after another on one core,
# wherever a test first reaches each.  So a session of many numba tests
# first compiles them ahead on every core: `python -m kernel.bench.warm` in
# two processes, one per kernel family (single-line orders; carts and
# offers), which fill Numba's on-disk cache (their saves queue on its lock:
# kernel._numba._jit.BackendSourcesCache.save_overload); the tests then load
# the machine code.  Measured cold (empty NUMBA_CACHE_DIR): the two took 124
# and 154 s side by side, and the whole run 345 s, against 459-471 s when
# the tests compiled for themselves.  With a warm cache they finish in a few
# seconds.  A small session (a file, -k) does not start them.  Whether they
# finish changes no result, only who compiles.  KERNEL_TEST_WARM=0 turns it
# off.
# WARM_PARTS: (workloads, options) per process.  The lifecycle kernels (and
# the journal's) are the same for every workload, so one part compiles them:
# the one that is otherwise done sooner.
WARM_PARTS = ((("carts", "hot-carts", "marketplace"), ("--no-lifecycle",)), (("uniform", "zipf", "flash-sale"), ()))
WARM_MIN_NUMBA_TESTS = 100  # numba-parametrized tests a session needs to warm first
WARM_TIMEOUT = 900  # seconds: past this, stop the warm-up; the tests compile what they need themselves
_warm = {}


def pytest_collection_finish(session):
    if os.environ.get("KERNEL_TEST_WARM", "1") == "0" or "numba" not in kernel.available_backends():
        return
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: its controller decides
        return
    if sum("numba" in item.nodeid for item in session.items) < WARM_MIN_NUMBA_TESTS:
        return
    import subprocess
    import sys
    import tempfile
    import time
    t0 = time.monotonic()
    parts = []
    for workloads, options in WARM_PARTS:
        log = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen([sys.executable, "-m", "kernel.bench.warm", "--workloads", ",".join(workloads),
                                    *options],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        parts.append((process, log))
    _warm["parts"] = parts
    for process, _ in parts:
        try:
            process.wait(timeout=max(1.0, WARM_TIMEOUT - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            _stop(process)
    _warm["seconds"] = time.monotonic() - t0


def _stop(process):
    """End a warm-up process and its group (by pid)."""
    import signal
    import subprocess
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def pytest_sessionfinish(session):
    for process, _ in _warm.get("parts", ()):  # (an interrupted wait leaves them running)
        _stop(process)


def pytest_terminal_summary(terminalreporter):
    outcomes = []
    for (process, log), (workloads, _) in zip(_warm.get("parts", ()), WARM_PARTS):
        log.seek(0)
        lines = log.read().splitlines()
        log.close()
        if process.returncode == 0:
            outcomes.append(f"{','.join(workloads)}: {lines[-1] if lines else 'done'}")
        else:  # the tests compiled what they needed themselves; say why it did not finish
            outcomes.append(f"{','.join(workloads)}: exit {process.returncode}: " + " | ".join(lines[-5:]))
    if outcomes:
        terminalreporter.write_line(f"numba warm-up before the tests ({_warm.get('seconds', 0):.0f} s, "
                                    f"python -m kernel.bench.warm): " + "; ".join(outcomes))


@pytest.fixture(autouse=True)
def parallel_even_for_tiny_batches():
    """Tests use small batches on few SKUs: let them run on every thread
    they ask for (the production policy would run them serially), as the
    warm-up does."""
    with every_dispatcher():
        yield


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    return request.param


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"{n}threads")
def threads(request):
    return request.param


@st.composite
def markets(draw, max_skus=6, max_orders=40):
    """An inventory spec and a batch of orders as plain arrays.

    Returns a dict with ``offers`` (None for one offer per SKU, else
    (sku, qty, price, n_skus)), ``stock`` and the batch fields.
    """
    n_skus = draw(st.integers(1, max_skus))
    if draw(st.booleans()):
        offers = None
        stock = np.array(draw(st.lists(st.integers(0, 12), min_size=n_skus, max_size=n_skus)), np.int64)
    else:
        per_sku = draw(st.lists(st.integers(0, 3), min_size=n_skus, max_size=n_skus))
        offer_sku = np.repeat(np.arange(n_skus), per_sku).astype(np.int64)
        n_offers = offer_sku.size
        stock = np.array(draw(st.lists(st.integers(0, 12), min_size=n_offers, max_size=n_offers)), np.int64)
        price = np.array(draw(st.lists(st.integers(0, 5), min_size=n_offers, max_size=n_offers)), np.int64)
        perm = np.array(draw(st.permutations(range(n_offers))), np.int64)  # offers in any order
        offers = (offer_sku[perm], stock[perm], price[perm], n_skus)
        stock = stock[perm]
    n_orders = draw(st.integers(0, max_orders))
    multi_line = draw(st.booleans())
    lines_per_order = [draw(st.integers(1, 4)) if multi_line else 1 for _ in range(n_orders)]
    n_lines = sum(lines_per_order)
    sku = draw(st.lists(st.integers(0, n_skus - 1), min_size=n_lines, max_size=n_lines))
    qty = draw(st.lists(st.integers(1, 5), min_size=n_lines, max_size=n_lines))
    max_price = None
    if offers is not None and draw(st.booleans()):
        max_price = draw(st.lists(st.integers(0, 6), min_size=n_lines, max_size=n_lines))
    offsets = np.concatenate(([0], np.cumsum(lines_per_order))).astype(np.int64) if multi_line else None
    return dict(offers=offers, stock=stock, sku=np.array(sku, np.int64), qty=np.array(qty, np.int64),
                offsets=offsets, max_price=None if max_price is None else np.array(max_price, np.int64))


def build(market, backend="reference", threads=None):
    """Inventory and OrderBatch for a ``markets()`` example."""
    if market["offers"] is None:
        inv = kernel.Inventory(market["stock"], backend=backend, threads=threads)
    else:
        inv = kernel.Inventory.from_offers(*market["offers"], backend=backend, threads=threads)
    orders = kernel.OrderBatch(market["sku"], market["qty"], offsets=market["offsets"],
                               max_price=market["max_price"])
    return inv, orders
