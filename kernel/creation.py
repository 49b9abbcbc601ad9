"""What an inventory is created from, checked and sized: its offers (one
stock figure per SKU, or priced offers), its tracking options (table
capacities, per-user limits) and the backend a cross-process state may use.

Every check here runs before any memory is allocated, so a bad argument
raises and creates nothing.
"""

import numpy as np

from . import backends
from .inputs import as_int64, check_at_least, check_below, check_sum_fits
from .tracking import NO_LIMIT

__all__ = ["one_offer_per_sku", "offers", "cross_process_backend", "max_offers_per_sku", "Tracking"]


def one_offer_per_sku(stock):
    stock = as_int64("stock", stock)
    if stock.size == 0:
        raise ValueError("stock: is empty; an inventory needs at least one SKU")
    check_at_least("stock", stock, 0, ">= 0")
    check_sum_fits("stock", stock)
    n = stock.size
    return stock, np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64), n


def offers(sku, qty, price, n_skus):
    sku = as_int64("sku", sku)
    qty = as_int64("qty", qty)
    price = as_int64("price", price)
    for name, arr in (("qty", qty), ("price", price)):
        if arr.size != sku.size:
            raise ValueError(f"{name}: has {arr.size} entries but sku has {sku.size}")
    if n_skus is None:
        n_skus = int(sku.max()) + 1 if sku.size else 0
    elif isinstance(n_skus, bool) or not isinstance(n_skus, (int, np.integer)) or n_skus < 0:
        raise ValueError(f"n_skus must be a non-negative integer, got {n_skus!r}")
    if n_skus == 0:
        raise ValueError("n_skus: is 0 (no offers and no n_skus); an inventory needs at least one SKU")
    check_at_least("sku", sku, 0, "a SKU id >= 0")
    check_below("sku", sku, n_skus)
    check_at_least("qty", qty, 0, ">= 0")
    check_at_least("price", price, 0, ">= 0")
    check_sum_fits("qty", qty)
    return qty, price, sku, int(n_skus)


def cross_process_backend(backend):
    kernels = backends.load(backend)
    if backends.backend_name(kernels) == "reference":
        # Its plain read-modify-writes are atomic only under one GIL: two
        # processes on one segment would oversell.
        raise ValueError("backend: 'reference' is the single-process spec, not atomic across processes; use a "
                         "compiled backend for shared or mapped inventories")
    return kernels


def max_offers_per_sku(offer_sku, n_skus):
    return int(np.bincount(offer_sku, minlength=n_skus).max()) if offer_sku.size else 0


def positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def power_of_two_at_least(n):
    return 1 << max(1, (int(n) - 1).bit_length())


class Tracking:
    """The tracking options of a new inventory, checked."""

    def __init__(self, max_orders, limit_per_user, max_user_skus, max_fills):
        self.limit_per_user = limit_per_user
        if max_orders is None:
            for name, value in (("limit_per_user", limit_per_user), ("max_user_skus", max_user_skus),
                                ("max_fills", max_fills)):
                if value is not None:
                    raise ValueError(f"{name}: needs max_orders (caps, holds and the fill log belong to "
                                     f"tracked orders)")
            self.max_orders = self.max_user_skus = 0
            self.max_fills = None
            return
        self.max_orders = positive("max_orders", max_orders)
        self.max_user_skus = positive("max_user_skus", max_user_skus if max_user_skus is not None else max_orders)
        self.max_fills = None if max_fills is None else positive("max_fills", max_fills)

    def limits(self, n_skus):
        if self.limit_per_user is None:
            return np.full(n_skus, NO_LIMIT, dtype=np.int64)
        if np.ndim(self.limit_per_user) == 0:
            limit = as_int64("limit_per_user", [self.limit_per_user])
            check_at_least("limit_per_user", limit, 0, ">= 0")
            return np.full(n_skus, limit[0], dtype=np.int64)
        limit = as_int64("limit_per_user", self.limit_per_user)
        if limit.size != n_skus:
            raise ValueError(f"limit_per_user: has {limit.size} entries but the inventory has {n_skus} SKUs")
        check_at_least("limit_per_user", limit, 0, ">= 0")
        return limit

    def capacities(self, n_offers_max):
        tracked = self.max_orders > 0
        max_fills = self.max_fills or 4 * self.max_orders * max(1, n_offers_max)
        # Open addressing at most half full: probes stay short and always end.
        return dict(order_capacity=power_of_two_at_least(2 * self.max_orders) if tracked else 2,
                    limit_capacity=power_of_two_at_least(2 * self.max_user_skus) if tracked else 2,
                    fill_capacity=max_fills if tracked else 1, tracked=tracked)
