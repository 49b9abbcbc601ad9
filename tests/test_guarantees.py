"""G1-G6 as properties, for every backend and thread count (1, 2 and 8)."""

import numpy as np
from conftest import build, markets
from hypothesis import HealthCheck, given, settings

from kernel.invariants import check_run

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(market=markets())
def test_concurrent_mode_keeps_g1_to_g4(backend, threads, market):
    inv, orders = build(market, backend, threads)
    initial = inv.stock.copy()
    result = inv.reserve(orders)
    check_run(inv, orders, result, initial, under_selling=True)


@PROPERTY
@given(market=markets())
def test_ordered_mode_equals_the_reference(backend, threads, market):
    oracle, orders = build(market, "reference")
    expected = oracle.reserve(orders, ordered=True)
    inv, _ = build(market, backend, threads)
    result = inv.reserve(orders, ordered=True)
    np.testing.assert_array_equal(result.status, expected.status)
    np.testing.assert_array_equal(inv.stock, oracle.stock)
    for field in ("order", "line", "offer", "qty"):
        np.testing.assert_array_equal(getattr(result.fills, field), getattr(expected.fills, field))


@PROPERTY
@given(market=markets())
def test_release_restores_the_initial_stock(backend, threads, market):
    inv, orders = build(market, backend, threads)
    initial = inv.stock.copy()
    result = inv.reserve(orders)
    inv.release(orders, result)
    np.testing.assert_array_equal(inv.stock, initial)


@PROPERTY
@given(market=markets())
def test_a_batch_that_fits_is_accepted_whole_in_every_mode(backend, threads, market):
    # G6.  Without price limits, "the reference accepts every order" means the
    # demand of each SKU fits its stock, so any interleaving accepts all.
    # (With price limits it need not: an order allowed to pay more may take
    # the cheap units a later, stricter order needed; use ordered=True.)
    market = dict(market, max_price=None)
    oracle, orders = build(market, "reference")
    if not oracle.reserve(orders, ordered=True).accepted.all():
        return
    for ordered in (False, True):
        inv, _ = build(market, backend, threads)
        assert inv.reserve(orders, ordered=ordered).accepted.all()
        np.testing.assert_array_equal(inv.stock, oracle.stock)
