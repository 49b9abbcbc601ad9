"""The C loop registry (kernel.bench.cloops) tied to the runner and the
report: every workload shape and mode gets C rows, checked with the kernels'
invariants, and every kernel cell a ratio to the best C loop of its mode at
its thread count.  No timing assertions: figures are only checked to exist
and to be what the report says they are."""

import ctypes

import numpy as np
import pytest

from kernel import OrderBatch
from kernel.bench import cloops
from kernel.bench.report import best_c, c_ratio, c_ratio_rows, html_report, summary_rows
from kernel.bench.runner import run_matrix
from kernel.bench.workloads import Case, make_case
from kernel.invariants import InvariantViolation

TINY = 0.0005

LIB, NOTE = cloops.load()
pytestmark = pytest.mark.skipif(LIB is None, reason=NOTE)


def test_every_c_source_is_package_data():
    """One C source of truth, shipped with the package (pyproject's
    package-data ``c/*.c``), the tracked loops included."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "c/*.c" in data["kernel.bench"] and "c/*.h" in data["kernel.bench"]
    names = {p.name for p in cloops.C_DIR.glob("*.[ch]")}
    assert {"baseline.c", "tracked.c", "general.c", "common.h"} <= names
    assert not list((root / "bench").glob("*.c")), "C loops live in kernel/bench/c/ only"
    for loop in cloops.C_LOOPS:
        assert hasattr(LIB, loop.function), loop.function


@pytest.mark.parametrize("name,shape", [("uniform", "single"), ("flash-sale", "single"), ("carts", "carts"),
                                        ("hot-carts", "carts"), ("marketplace", "general")])
def test_every_shape_and_mode_has_c_loops(name, shape):
    case = make_case(name, TINY)
    assert cloops.shape_of(case) == shape
    for mode in ("concurrent", "ordered", "tracked"):
        loops = cloops.loops_for(case, [mode])
        # A serial loop for every mode; a CAS loop for the modes a concurrent outcome meets.
        assert {loop.parallel for loop in loops} == ({False} if mode == "ordered" else {False, True})
        assert all(mode in loop.modes for loop in loops)


def _marketplace_tiny():
    """Two SKUs with three and two priced offers (given out of price order),
    carts that hit price limits, partial offers, a cart short on its second
    line (rolled back) and a cart naming one SKU twice."""
    offer_sku = np.array([0, 0, 0, 1, 1], np.int64)
    stock = np.array([2, 5, 1, 3, 4], np.int64)
    price = np.array([120, 100, 100, 50, 80], np.int64)
    sku = np.array([0, 1, 0, 1, 0, 0, 1, 0, 1, 1], np.int64)
    qty = np.array([4, 2, 3, 5, 2, 2, 2, 1, 1, 1], np.int64)
    max_price = np.array([120, 60, 100, 100, 100, 100, 100, 200, 79, 80], np.int64)
    offsets = np.array([0, 2, 4, 6, 7, 9, 10], np.int64)
    return Case("tiny-market", offer_sku, stock, price, 2, OrderBatch(sku, qty, offsets, max_price=max_price))


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_seq_general_is_the_reference_ordered_result(seed):
    """seq_general on the inventory's layout leaves exactly what the
    reference's ordered path leaves: statuses, stock per offer and fills."""
    case = _marketplace_tiny() if seed is None else make_case("marketplace", 0.0002, seed=seed)
    loop = next(lp for lp in cloops.C_LOOPS if lp.function == "seq_general")
    c = cloops.cell(LIB, loop, case, 1)
    stock = case.stock.copy()
    c.call(stock)
    c.check(stock)
    inv = case.inventory("reference")
    result = inv.reserve(case.orders, ordered=True)
    assert np.array_equal(c.status, np.asarray(result.status, np.int8) != 0)
    assert np.array_equal(stock, inv.stock)
    fills = result.fills
    want = np.bincount(fills.offer, weights=fills.qty, minlength=stock.size)
    got = np.bincount(c._slot_offer, weights=c._taken, minlength=stock.size)
    assert np.array_equal(want, got)
    if seed is None:
        assert 0 < c.accepted < case.n_orders


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_seq_tracked_general_is_the_reference_tracked_result(seed):
    """seq_tracked_general leaves word for word what the reference's tracked
    path leaves in arrival order (one thread, no re-run): statuses (limit
    exceeded included), stock per offer, the order table (records with their
    fill ranges), the limit table and the fill log, one entry per offer slot
    of each line.  The hand-built case has one buyer for every cart, so caps
    bite, and every cart of _marketplace_tiny's kinds (price limits, partial
    offers, a rollback, a SKU named twice)."""
    case = _marketplace_tiny() if seed is None else make_case("marketplace", 0.0005, seed=seed)
    loop = next(lp for lp in cloops.C_LOOPS if lp.function == "seq_tracked_general")
    c = cloops.cell(LIB, loop, case, 1)
    stock = case.stock.copy()
    c.fresh()
    c.call(stock)
    c.check(stock)
    inv = case.inventory("reference", tracked=True)
    result = inv.reserve(case.tracked_orders(), ordered=True)
    state = inv.state
    assert np.array_equal(c.status, np.asarray(result.status, np.int8))
    assert np.array_equal(stock, inv.stock)
    assert np.array_equal(c._order_table, state.order_table)
    assert np.array_equal(c._limit_table, state.limit_table)
    n = c._fill_qty.size
    assert np.array_equal(c._fill_qty, state.fill_qty[:n]) and not state.fill_qty[n:].any()
    assert np.array_equal(c._fill_offer, state.fill_offer[:n])
    if seed is None:
        assert set(c.status.tolist()) == {0, 1, 3}  # accepted, out of stock and over the cap all happen
    # The one-thread tracked kernel (concurrent rule: refused re-run after a
    # rollback) accepts the same orders (the runner's cross-check).
    one = case.inventory("cython", 1, tracked=True).reserve(case.tracked_orders(), threads=1)
    assert np.array_equal(c.status == 0, np.asarray(one.status) == 0)


def test_c_cells_fail_on_a_broken_result():
    """The C rows are checked like the kernel rows: a loop that takes stock
    but says refused is an error, never a number."""
    for name, function in (("marketplace", "seq_general"), ("carts", "seq_tracked_carts"),
                           ("marketplace", "seq_tracked_general"), ("uniform", "seq_single")):
        case = make_case(name, TINY)
        loop = next(lp for lp in cloops.C_LOOPS if lp.function == function)
        c = cloops.cell(LIB, loop, case, 1)
        stock = case.stock.copy()
        c.fresh()
        c.call(stock)
        c.check(stock)
        c.status[np.flatnonzero(c.status == 0)[0]] = 1
        with pytest.raises(InvariantViolation):
            c.check(stock)


@pytest.fixture(scope="module")
def run():
    return run_matrix(["uniform", "carts", "marketplace"], ["cython", "numba"], ["concurrent", "ordered", "tracked"],
                      [1, 2], scale=TINY, rounds=1)


def test_tracked_and_marketplace_have_c_rows(run):
    c = {(m["workload"], m["backend"], m["mode"], m["threads"]) for m in run["measurements"] if m["kind"] == "c"}
    for workload in ("uniform", "carts"):
        assert {(workload, "C seq", "tracked", 1), (workload, "C CAS", "tracked", 1),
                (workload, "C CAS", "tracked", 2)} <= c
    assert {("marketplace", "C seq", "ordered", 1), ("marketplace", "C CAS", "concurrent", 1),
            ("marketplace", "C CAS", "concurrent", 2)} <= c
    assert {("marketplace", "C seq", "tracked", 1), ("marketplace", "C CAS", "tracked", 1),
            ("marketplace", "C CAS", "tracked", 2)} <= c
    general = {c["function"] for c in run["c_loops"]["loops"] if c["shape"] == "general" and "tracked" in c["modes"]}
    assert general == {"seq_tracked_general", "cas_tracked_general"}


def test_serial_c_loops_accept_what_the_kernels_accept(run):
    """Serial C in arrival order: the ordered kernels' count (marketplace
    too); the serial tracked C loop: the tracked kernels' count on one thread
    (the runner raises otherwise; checked here again from the results)."""
    ms = run["measurements"]
    for workload in ("uniform", "carts", "marketplace"):
        seq = next(m for m in ms if (m["workload"], m["backend"], m["mode"]) == (workload, "C seq", "ordered"))
        for backend in ("cython", "numba"):
            ordered = next(m for m in ms if (m["workload"], m["backend"], m["mode"], m["threads"]) ==
                           (workload, backend, "ordered", 1))
            assert seq["accepted"] == ordered["accepted"]
    for workload in ("uniform", "carts", "marketplace"):
        seq = next(m for m in ms if (m["workload"], m["backend"], m["mode"]) == (workload, "C seq", "tracked"))
        assert seq["modes_met"] == ["tracked"]
        for backend in ("cython", "numba"):
            one = next(m for m in ms if (m["workload"], m["backend"], m["mode"], m["threads"]) ==
                       (workload, backend, "tracked", 1))
            assert seq["accepted"] == one["accepted"]


def test_every_kernel_cell_has_a_ratio_at_its_thread_count(run):
    serial = {c["name"] for c in run["c_loops"]["loops"] if not c["parallel"]}
    for m in run["measurements"]:
        if m["kind"] != "kernel":
            continue
        c = best_c(run, m["workload"], m["mode"], m["threads"])
        assert c is not None and m["mode"] in c["modes_met"]
        assert c["threads"] == m["threads"] or c["backend"] in serial
        # The best of the serial loop and the CAS loop at that very count.
        rivals = [x for x in run["measurements"] if x["kind"] == "c" and x["workload"] == m["workload"]
                  and m["mode"] in x["modes_met"] and (x["threads"] == m["threads"] or x["backend"] in serial)]
        assert c["orders_per_s"] == max(x["orders_per_s"] for x in rivals)
        assert c_ratio(run, m) == pytest.approx(m["orders_per_s"] / c["orders_per_s"])
    header, rows = c_ratio_rows(run)
    assert header[:4] == ["workload", "mode", "best C, 1t", "best C, 2t"]
    by = {(r[0], r[1]): r for r in rows}
    for workload in ("uniform", "carts", "marketplace"):
        assert all(x != "-" for x in by[(workload, "tracked")][2:])
    assert all(x != "-" for x in by[("marketplace", "concurrent")][2:])
    for workload in ("uniform", "marketplace"):
        tracked = next(r for r in summary_rows(run) if (r["workload"], r["mode"]) == (workload, "tracked"))
        assert tracked["x_c"] is not None and "tracked" in tracked["c_same"]["modes_met"]
    page = html_report(run)
    assert "best C, 2t" in page and "seq_tracked_single" in page and "cas_general" in page
    assert "seq_tracked_general" in page


def test_big_stocks_get_the_prefetching_twins():
    """Past the cache the plain loops prefetch, as the kernels do: a stock of
    PREFETCH_MIN_WORDS words runs the *_pf twin, with the same result."""
    n_skus = cloops.PREFETCH_MIN_WORDS
    rng = np.random.default_rng(3)
    offsets = np.array([0, 2, 3, 6, 7, 9], np.int64)
    for orders in (OrderBatch(rng.integers(0, n_skus, 5), rng.integers(1, 4, 5)),
                   OrderBatch(rng.integers(0, n_skus, 9), rng.integers(1, 4, 9), offsets)):
        big = Case("big", None, np.full(n_skus, 2, np.int64), None, n_skus, orders)
        small = Case("small", None, big.stock[:orders.max_sku + 1].copy(), None, orders.max_sku + 1, orders)
        for loop in cloops.loops_for(big, ["concurrent"]):
            if loop.function.endswith("_runs"):
                continue
            b, s = cloops.cell(LIB, loop, big, 1), cloops.cell(LIB, loop, small, 1)
            assert b.function == loop.function + "_pf" and s.function == loop.function
            b.run()
            s.run()
            assert np.array_equal(b.status, s.status)


def test_extra_flags_build_a_library_of_their_own():
    """``extra_flags`` (kernel_counts' ``-mno-avx512f`` for valgrind) make a
    build of their own, named in its note, beside the plain one: the same
    functions, the same results."""
    lib, note = cloops.load(extra_flags=("-fno-tree-vectorize",))
    assert lib is not None, note
    assert "-fno-tree-vectorize" in note and "-fno-tree-vectorize" not in NOTE
    assert cloops.load() == (LIB, NOTE)  # the plain build is still the one cached
    case = make_case("uniform", TINY, seed=3)
    loop = next(lp for lp in cloops.loops_for(case, ["concurrent"]) if lp.function == "seq_single")
    stocks = []
    for library in (LIB, lib):
        cell = cloops.cell(library, loop, case, 1)
        stock = case.stock.copy()
        cell.fresh()
        cell.call(stock)
        cell.check(stock)
        stocks.append(stock)
    assert np.array_equal(stocks[0], stocks[1]) and not np.array_equal(stocks[0], case.stock)
