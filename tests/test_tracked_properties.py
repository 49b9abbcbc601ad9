"""Property tests of tracked orders: random sequences of reserve,
reserve_one, confirm, cancel, expire and restock (each batch also checked for
G1-G4 as it returns).

In arrival order (``ordered=True``, one thread) every backend must leave
exactly the reference's state, word for word (hash layouts included).
Concurrently, on any thread count, the whole state must stay consistent
(:func:`kernel.invariants.check_tracked`)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernel
from kernel import OrderBatch
from kernel.invariants import check_run, check_tracked

from conftest import ALL_BACKENDS, COMPILED_BACKENDS

IDS = st.integers(0, 30)  # a small pool, so ids repeat: duplicates, cancels of known ids
USERS = st.integers(0, 4)
TIMES = st.integers(0, 5)


@st.composite
def shops(draw):
    n_skus = draw(st.integers(1, 4))
    per_sku = draw(st.lists(st.integers(0, 3), min_size=n_skus, max_size=n_skus))
    offer_sku = np.repeat(np.arange(n_skus), per_sku).astype(np.int64)
    qty = np.array(draw(st.lists(st.integers(0, 8), min_size=offer_sku.size, max_size=offer_sku.size)), np.int64)
    price = np.array(draw(st.lists(st.integers(0, 4), min_size=offer_sku.size, max_size=offer_sku.size)), np.int64)
    caps = draw(st.one_of(st.none(), st.integers(1, 4),
                          st.lists(st.sampled_from([1, 2, 3, kernel.NO_LIMIT]), min_size=n_skus, max_size=n_skus)))
    return dict(offers=(offer_sku, qty, price, n_skus), limit_per_user=caps)


@st.composite
def operations(draw, n_skus, n_offers):
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["reserve", "reserve", "one", "confirm", "cancel", "expire", "restock"]))
        if kind == "reserve":
            n = draw(st.integers(0, 8))
            lines = [draw(st.integers(1, 3)) for _ in range(n)]
            n_lines = sum(lines)
            ops.append((kind, dict(
                sku=draw(st.lists(st.integers(0, n_skus - 1), min_size=n_lines, max_size=n_lines)),
                qty=draw(st.lists(st.integers(1, 3), min_size=n_lines, max_size=n_lines)),
                offsets=np.concatenate(([0], np.cumsum(lines))).astype(np.int64),
                max_price=draw(st.one_of(st.none(), st.lists(st.integers(0, 5), min_size=n_lines, max_size=n_lines))),
                order_id=draw(st.lists(IDS, min_size=n, max_size=n)),
                user_id=draw(st.lists(USERS, min_size=n, max_size=n))), draw(st.one_of(st.none(), TIMES))))
        elif kind == "one":
            ops.append((kind, draw(st.integers(0, n_skus - 1)), draw(st.integers(1, 3)), draw(IDS), draw(USERS),
                        draw(st.one_of(st.none(), st.integers(0, 5))), draw(st.one_of(st.none(), TIMES))))
        elif kind in ("confirm", "cancel"):
            ops.append((kind, draw(st.lists(IDS, max_size=6))))
        elif kind == "expire":
            ops.append((kind, draw(TIMES)))
        elif n_offers:
            ops.append((kind, draw(st.integers(0, n_offers - 1)), draw(st.integers(0, 4))))
    return ops


def play(shop, ops, backend, threads, ordered):
    """Run ``ops`` on a new inventory; return it, every answer, and the units restocked."""
    inv = kernel.Inventory.from_offers(*shop["offers"], backend=backend, threads=threads, max_orders=64,
                                       limit_per_user=shop["limit_per_user"])
    answers, restocked = [], np.zeros(inv.n_offers, np.int64)
    for op in ops:
        kind = op[0]
        if kind == "reserve":
            before = inv.stock.copy()
            batch = OrderBatch(**op[1])
            result = inv.reserve(batch, ordered=ordered, hold_until=op[2])
            # G1-G3 for the batch, and G4: no order refused for stock that
            # would fit what is left.
            check_run(inv, batch, result, before, under_selling=True)
            answers.append(result.status.tolist())
        elif kind == "one":
            _, sku, qty, order_id, user, max_price, hold = op
            answers.append(int(inv.reserve_one(sku, qty, order_id=order_id, user_id=user, max_price=max_price,
                                               hold_until=hold)))
        elif kind == "confirm":
            answers.append(inv.confirm(op[1]).tolist())
        elif kind == "cancel":
            answers.append(inv.cancel(op[1]).tolist())
        elif kind == "expire":
            answers.append(inv.expire(op[1]).tolist())
        else:
            inv.restock(op[1], op[2])
            restocked[op[1]] += op[2]
    return inv, answers, restocked


@st.composite
def scenarios(draw):
    shop = draw(shops())
    offer_sku, _, _, n_skus = shop["offers"]
    return shop, draw(operations(n_skus, offer_sku.size))


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenario=scenarios())
def test_in_arrival_order_every_backend_leaves_the_reference_state(scenario):
    shop, ops = scenario
    expected, expected_answers, restocked = play(shop, ops, "reference", 1, ordered=True)
    check_tracked(expected, shop["offers"][1], restocked=restocked)
    for backend in COMPILED_BACKENDS:
        inv, answers, _ = play(shop, ops, backend, 1, ordered=True)
        assert answers == expected_answers, backend
        for mine, theirs in zip(inv.state_arrays(), expected.state_arrays()):
            np.testing.assert_array_equal(mine, theirs, backend)


@SETTINGS
@given(scenario=scenarios(), threads=st.sampled_from([2, 8]), backend=st.sampled_from(ALL_BACKENDS))
def test_concurrently_the_state_stays_consistent(scenario, threads, backend):
    shop, ops = scenario
    inv, _, restocked = play(shop, ops, backend, threads, ordered=False)
    check_tracked(inv, shop["offers"][1], restocked=restocked)
