"""The workload registry: seeded, reproducible order streams.

One entry per workload; the quick script, the CLI (``python -m kernel.bench``),
the pytest-benchmark suite, the regression gate and the stress tests all read
``WORKLOADS``.  ``scale=1.0`` is the full size named in the description (10M
orders); sizes shrink or grow linearly with ``scale``.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..inventory import Inventory
from ..orders import OrderBatch

__all__ = ["WORKLOADS", "Workload", "Case", "make_case", "TRACKED_LIMIT"]

# Per-user cap of every SKU in tracked rounds (qty is 1-3 per line, so it bites
# only for buyers who come back).
TRACKED_LIMIT = 6
_TRACKED = {}  # id(orders) -> (orders, its tracked twin); the orders are kept alive by the entry


@dataclass(frozen=True)
class Case:
    """One generated workload instance: offers and a batch of orders."""

    name: str
    offer_sku: Optional[np.ndarray]  # None: one offer per SKU, ids == SKU ids
    stock: np.ndarray
    price: Optional[np.ndarray]
    n_skus: int
    orders: OrderBatch

    def inventory(self, backend="auto", threads=None, tracked=False):
        """A fresh inventory holding this case's initial stock.

        ``tracked``: one that tracks orders (room for this case's ids) and
        caps every user at ``TRACKED_LIMIT`` units per SKU, for
        :meth:`tracked_orders`.
        """
        options = {}
        if tracked:
            options = dict(max_orders=max(1, self.n_orders), limit_per_user=TRACKED_LIMIT,
                           max_user_skus=max(1, self.orders.n_lines))
        if self.offer_sku is None:
            return Inventory(self.stock, backend=backend, threads=threads, **options)
        return Inventory.from_offers(self.offer_sku, self.stock, self.price, self.n_skus,
                                     backend=backend, threads=threads, **options)

    def tracked_orders(self):
        """This case's orders as a flash-sale service sends them: each with
        its own id and a buyer from a pool of a quarter as many users (so
        users come back, and some reach their cap).  Made once, then kept."""
        batch = _TRACKED.get(id(self.orders))
        if batch is None or batch[0] is not self.orders:
            orders = self.orders
            users = np.random.default_rng(1).integers(0, max(1, orders.n_orders // 4), orders.n_orders)
            batch = _TRACKED[id(orders)] = (orders, OrderBatch(
                orders.sku, orders.qty, orders.offsets, orders.max_price,
                order_id=np.arange(orders.n_orders, dtype=np.int64), user_id=users))
        return batch[1]

    @property
    def n_orders(self):
        return self.orders.n_orders


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    generate: Callable[[float, np.random.Generator], Case]


def _count(full, scale, minimum=1):
    return max(minimum, int(round(full * scale)))


def _uniform(scale, rng):
    n_skus, n = _count(1_000_000, scale), _count(10_000_000, scale)
    sku = rng.integers(0, n_skus, n, dtype=np.int64)
    qty = rng.integers(1, 4, n, dtype=np.int64)
    return Case("uniform", None, np.full(n_skus, 1000, np.int64), None, n_skus, OrderBatch(sku, qty))


def _zipf_skus(rng, n_skus, n, exponent):
    # Inverse-CDF sampling of a Zipf law truncated to n_skus ranks, then a
    # random permutation so the hot SKUs are scattered over memory.
    weights = np.arange(1, n_skus + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    rank = np.minimum(np.searchsorted(cdf, rng.random(n)), n_skus - 1)
    return rng.permutation(n_skus).astype(np.int64)[rank]


def _zipf(scale, rng):
    n_skus, n = _count(1_000_000, scale), _count(10_000_000, scale)
    sku = _zipf_skus(rng, n_skus, n, 1.1)
    qty = rng.integers(1, 4, n, dtype=np.int64)
    return Case("zipf", None, np.full(n_skus, 1000, np.int64), None, n_skus, OrderBatch(sku, qty))


def _flash_sale(scale, rng):
    n = _count(10_000_000, scale, minimum=10)
    units = max(1, n // 10)
    orders = OrderBatch(np.zeros(n, np.int64), np.ones(n, np.int64))
    return Case("flash-sale", None, np.array([units], np.int64), None, 1, orders)


def _cart_offsets(rng, n_orders, low, high):
    lines = rng.integers(low, high + 1, n_orders, dtype=np.int64)
    offsets = np.zeros(n_orders + 1, np.int64)
    np.cumsum(lines, out=offsets[1:])
    return offsets


def _carts(scale, rng):
    n_skus, n = _count(1_000_000, scale), _count(10_000_000, scale)
    offsets = _cart_offsets(rng, n, 1, 5)
    n_lines = int(offsets[-1])
    sku = rng.integers(0, n_skus, n_lines, dtype=np.int64)
    qty = rng.integers(1, 4, n_lines, dtype=np.int64)
    return Case("carts", None, np.full(n_skus, 1000, np.int64), None, n_skus, OrderBatch(sku, qty, offsets))


def _hot_carts(scale, rng):
    # Few SKUs, stock for about half the demand: heavy contention, many
    # partial fills rolled back.
    n_skus, n = 64, _count(1_000_000, scale, minimum=10)
    offsets = _cart_offsets(rng, n, 1, 5)
    n_lines = int(offsets[-1])
    sku = rng.integers(0, n_skus, n_lines, dtype=np.int64)
    qty = rng.integers(1, 4, n_lines, dtype=np.int64)
    stock = np.full(n_skus, max(1, int(qty.sum()) // (2 * n_skus)), np.int64)
    return Case("hot-carts", None, stock, None, n_skus, OrderBatch(sku, qty, offsets))


def _marketplace(scale, rng):
    n_skus, n = _count(100_000, scale), _count(2_000_000, scale)
    offers_per_sku = rng.integers(1, 5, n_skus)
    offer_sku = np.repeat(np.arange(n_skus, dtype=np.int64), offers_per_sku)
    base = rng.integers(500, 50_000, n_skus)  # cents
    price = (base[offer_sku] * rng.uniform(0.8, 1.3, offer_sku.size)).astype(np.int64)
    stock = rng.integers(0, 200, offer_sku.size, dtype=np.int64)
    offsets = _cart_offsets(rng, n, 1, 3)
    n_lines = int(offsets[-1])
    sku = _zipf_skus(rng, n_skus, n_lines, 1.1)
    qty = rng.integers(1, 6, n_lines, dtype=np.int64)
    max_price = (base[sku] * rng.uniform(0.9, 1.5, n_lines)).astype(np.int64)
    orders = OrderBatch(sku, qty, offsets, max_price=max_price)
    return Case("marketplace", offer_sku, stock, price, n_skus, orders)


WORKLOADS = {w.name: w for w in [
    Workload("uniform", "single-line orders, 10M over 1M SKUs, stock 1,000 each, qty 1-3, uniform", _uniform),
    Workload("zipf", "as uniform with Zipf(1.1) SKU popularity (hot items)", _zipf),
    Workload("flash-sale", "one SKU, 1M units, 10M single-unit orders (10x oversubscribed)", _flash_sale),
    Workload("carts", "10M carts of 1-5 lines (mean 3) over 1M SKUs, qty 1-3, all-or-nothing", _carts),
    Workload("marketplace", "2M carts of 1-3 lines over 100k SKUs with 1-4 priced offers each, "
             "per-line price limits, Zipf(1.1) popularity", _marketplace),
    Workload("hot-carts", "1M carts of 1-5 lines over 64 SKUs stocked for half the demand "
             "(contention and rollbacks)", _hot_carts),
]}


def make_case(name, scale=1.0, seed=0):
    """Generate workload ``name`` at ``scale`` with a fixed ``seed``.

    Raises
    ------
    KeyError
        Unknown workload name (the message lists the known ones).
    """
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return WORKLOADS[name].generate(scale, np.random.default_rng(seed))
