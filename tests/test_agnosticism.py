"""Results that must not depend on thread count, backend, or input form."""

import numpy as np
import pytest

import kernel
from kernel.bench.workloads import make_case

from conftest import ALL_BACKENDS, THREAD_COUNTS


def ordered_outcome(case, backend, threads, orders=None):
    inv = case.inventory(backend, threads)
    result = inv.reserve(orders or case.orders, ordered=True)
    return result.status.copy(), inv.stock.copy()


@pytest.mark.parametrize("workload", ["zipf", "hot-carts", "marketplace"])
def test_ordered_result_is_the_same_for_every_backend_and_thread_count(workload):
    case = make_case(workload, scale=0.0005, seed=3)
    expected_status, expected_stock = ordered_outcome(case, "reference", 1)
    for backend in ALL_BACKENDS:
        for threads in THREAD_COUNTS:
            status, stock = ordered_outcome(case, backend, threads)
            np.testing.assert_array_equal(status, expected_status, f"{backend} x {threads}")
            np.testing.assert_array_equal(stock, expected_stock, f"{backend} x {threads}")


@pytest.mark.parametrize("workload", ["uniform", "flash-sale", "carts"])
def test_concurrent_totals_do_not_depend_on_threads(compiled_backend, workload):
    # Where demand and stock decide the totals (each SKU is either
    # oversubscribed by single-unit orders or not at all), any interleaving
    # sells the same units.
    case = make_case(workload, scale=0.002, seed=1)
    outcomes = set()
    for threads in THREAD_COUNTS:
        inv = case.inventory(compiled_backend, threads)
        result = inv.reserve(case.orders)
        outcomes.add((result.n_accepted, inv.stock.tobytes()))
    assert len(outcomes) == 1


def input_forms(values):
    """The same integers as int32, big-endian, strided, read-only, float and list."""
    base = np.asarray(values, dtype=np.int64)
    strided = np.zeros(base.size * 2, dtype=np.int64)[::2]
    strided[:] = base
    readonly = base.copy()
    readonly.flags.writeable = False
    return {
        "int64": base, "int32": base.astype(np.int32), "big-endian": base.astype(">i8"), "strided": strided,
        "read-only": readonly, "whole floats": base.astype(np.float64), "list": base.tolist(),
        "uint32": base.astype(np.uint32),
    }


@pytest.mark.parametrize("form", list(input_forms([0])))
def test_input_dtype_and_layout_do_not_change_the_answer(backend, form):
    case = make_case("marketplace", scale=0.0002, seed=5)
    orders = case.orders
    expected_status, expected_stock = ordered_outcome(case, "reference", 1)
    converted = kernel.OrderBatch(
        input_forms(orders.sku)[form], input_forms(orders.qty)[form], input_forms(orders.offsets)[form],
        max_price=input_forms(orders.max_price)[form])
    status, stock = ordered_outcome(case, backend, 2, converted)
    np.testing.assert_array_equal(status, expected_status)
    np.testing.assert_array_equal(stock, expected_stock)
    inv = kernel.Inventory(input_forms([3, 0, 7])[form], backend=backend)
    np.testing.assert_array_equal(inv.stock, [3, 0, 7])
