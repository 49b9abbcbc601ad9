"""Where each SKU, offer and order line lives: the SKU-to-shard map, the
caller-side checks of a batch, and its split into per-shard sub-batches.

Nothing here needs Ray: it is plain NumPy on the caller's side, run before
anything is sent, so a bad input raises here and no shard sees it.
"""

import numpy as np

from ..inputs import INT64_MAX, as_int64, check_at_least, check_threads
from ..lifecycle import hold_deadlines
from ..orders import OrderBatch
from ..tracking import as_order_ids

__all__ = ["ShardMap", "SplitBatch", "MAX_SHARDS"]

MAX_SHARDS = 62  # a cart's shards are one bit each in an int64 mask (the coordinator's log)


class ShardMap:
    """The SKU-to-shard map and the global <-> local numbering of SKUs and offers.

    Parameters
    ----------
    n_skus : int
        SKUs of the whole inventory (ids ``0..n_skus-1``).
    offer_sku : numpy.ndarray
        The SKU of each offer (global offer ids are positions here).
    shards : int
        Number of shards (``1..62``).
    sku_shard : array_like of int, optional
        The shard of each SKU.  Default ``sku % shards``.  A SKU lives in one
        shard, with all its offers: a hot SKU is never split.
    """

    def __init__(self, n_skus, offer_sku, shards, sku_shard=None):
        if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be an integer in [1, {MAX_SHARDS}], got {shards!r}")
        self.shards = int(shards)
        self.n_skus = int(n_skus)
        if sku_shard is None:
            sku_shard = np.arange(self.n_skus, dtype=np.int64) % self.shards
        else:
            sku_shard = as_int64("sku_shard", sku_shard, copy=True)
            if sku_shard.size != self.n_skus:
                raise ValueError(f"sku_shard: has {sku_shard.size} entries but the inventory has {self.n_skus} SKUs")
            check_at_least("sku_shard", sku_shard, 0, "a shard id >= 0")
            if sku_shard.size and sku_shard.max() >= self.shards:
                pos = int((sku_shard >= self.shards).argmax())
                raise ValueError(f"sku_shard[{pos}] = {sku_shard[pos]} is out of range [0, {self.shards})")
        self.sku_shard = sku_shard
        self.sku_local = _rank_within(sku_shard, self.shards)
        self.shard_skus = [np.flatnonzero(sku_shard == s) for s in range(self.shards)]
        offer_sku = np.asarray(offer_sku, dtype=np.int64)
        self.offer_shard = sku_shard[offer_sku]
        self.offer_local = _rank_within(self.offer_shard, self.shards)
        self.shard_offers = [np.flatnonzero(self.offer_shard == s) for s in range(self.shards)]
        self.n_offers = offer_sku.size


def _rank_within(group, n_groups):
    """Position of each element among the elements of its group (stable)."""
    rank = np.empty(group.size, dtype=np.int64)
    for g in range(n_groups):
        members = np.flatnonzero(group == g)
        rank[members] = np.arange(members.size)
    return rank


def check_user_ids(users, n_skus):
    """The single-node bound on user ids: a (user, SKU) key must fit int64
    for the whole inventory's SKU count (stricter than any shard's)."""
    check_at_least("user_id", users, 0, ">= 0")
    max_user = (INT64_MAX - n_skus) // max(n_skus, 1)
    if users.size and users.max() > max_user:
        pos = int((users > max_user).argmax())
        raise ValueError(f"user_id[{pos}] = {users[pos]} must be <= {max_user}")


class SplitBatch:
    """A checked tracked batch split by shard.

    An order whose lines all live in one shard is *single*: it goes to that
    shard as it is.  An order whose lines span shards is a *cart*: each shard
    it touches gets the cart's lines there as one sub-order with the cart's
    id (one sub-order per (cart, shard); each shard has its own id table).
    A later occurrence of an id already in the batch is answered DUPLICATE
    here and sent nowhere (as the single-node kernel answers it).

    Raises the single-node facade's errors, with its messages, before
    anything is sent.
    """

    def __init__(self, orders, shard_map, has_limits, hold_until, threads=None):
        if not isinstance(orders, OrderBatch):
            raise TypeError(f"orders must be an OrderBatch, got {type(orders).__name__}")
        n_skus = shard_map.n_skus
        if orders.max_sku >= n_skus:
            pos = int((orders.sku >= n_skus).argmax())
            raise ValueError(f"sku[{pos}] = {orders.sku[pos]} is out of range [0, {n_skus})")
        check_threads(threads)  # where the facade checks it: a batch with two faults names the same one
        if orders.order_id is None:
            raise ValueError("order_id: required, this inventory tracks orders")
        ids = as_order_ids("order_id", orders.order_id)
        if orders.user_id is None:
            if has_limits:
                raise ValueError("user_id: required, this inventory has per-user limits")
            users = np.zeros(orders.n_orders, dtype=np.int64)
        else:
            users = np.asarray(orders.user_id)
            check_user_ids(users, n_skus)
        self.hold = hold_deadlines(hold_until, orders.n_orders)  # the facade's checks and messages
        self.orders, self.ids, self.users, self.map = orders, ids, users, shard_map
        n = orders.n_orders
        self.n_orders = n
        # Later repeats of an id in this batch: DUPLICATE, as the kernel says.
        first = np.zeros(n, dtype=bool)
        if n:
            first[np.unique(ids, return_index=True)[1]] = True
        self.repeat = ~first
        line_order = orders.line_order
        line_shard = shard_map.sku_shard[orders.sku]
        self.line_shard = line_shard
        if n:
            starts = orders.line_start[:-1]
            low = np.minimum.reduceat(line_shard, starts)
            high = np.maximum.reduceat(line_shard, starts)
            self.cart_mask = np.bitwise_or.reduceat(np.left_shift(np.int64(1), line_shard), starts)
        else:
            low = high = self.cart_mask = np.zeros(0, dtype=np.int64)
        self.is_cart = (low != high) & first
        self.home = np.where(low == high, low, -1)  # the shard of a single order
        live_line = first[line_order]
        cart_line = self.is_cart[line_order]
        self.singles, self.tries = [], []  # per shard: (order positions, sub-batch arrays) or None
        for s in range(shard_map.shards):
            on_s = (line_shard == s) & live_line
            self.singles.append(self._sub(on_s & ~cart_line))
            self.tries.append(self._sub(on_s & cart_line))
        self.carts = np.flatnonzero(self.is_cart)

    def _sub(self, line_mask):
        lines = np.flatnonzero(line_mask)
        if lines.size == 0:
            return None
        orders = self.orders
        counts = np.bincount(orders.line_order[lines], minlength=self.n_orders)
        which = np.flatnonzero(counts)
        offsets = np.zeros(which.size + 1, dtype=np.int64)
        np.cumsum(counts[which], out=offsets[1:])
        arrays = dict(sku=self.map.sku_local[orders.sku[lines]], qty=np.asarray(orders.qty)[lines], offsets=offsets,
                      max_price=None if orders.max_price is None else np.asarray(orders.max_price)[lines],
                      order_id=self.ids[which], user_id=self.users[which])
        return which, arrays
