"""``OrderBatch``: a columnar batch of orders, validated once at construction."""

import numpy as np

from .inputs import INT64_MAX, as_int64, check_at_least, check_sum_fits

__all__ = ["OrderBatch"]


def _readonly(arr):
    view = arr.view()
    view.flags.writeable = False
    return view


class OrderBatch:
    """A batch of orders in columnar (structure-of-arrays) form.

    Parameters
    ----------
    sku, qty : array_like of int
        One entry per order line: the SKU id and the units wanted (``> 0``).
    offsets : array_like of int, optional
        CSR row pointers: order ``i`` owns lines ``offsets[i]:offsets[i + 1]``.
        ``None`` means one line per order (the flash-sale fast path).
    max_price : array_like of int, optional
        Per line, the highest unit price (minor units) the buyer accepts.
        ``None`` means any price.
    order_id, user_id : array_like of int, optional
        Carried per order for idempotency and per-user limits.

    Raises
    ------
    ValueError, TypeError
        On malformed input, naming the field and the first bad position.

    Attributes
    ----------
    sku, qty, offsets, max_price, order_id, user_id : numpy.ndarray or None
        Read-only ``int64`` copies of the inputs.
    n_orders, n_lines : int
    max_sku : int
        The largest SKU id named (``-1`` for an empty batch).

    Notes
    -----
    The batch copies its inputs (one pass, at construction) and is immutable,
    so a reservation only checks ``max_sku`` against the inventory: the
    per-line checks are done once, here.
    """

    def __init__(self, sku, qty, offsets=None, max_price=None, order_id=None, user_id=None):
        # Copies: a batch owns its arrays, so what was validated here is what
        # the kernels read (a SKU id changed later could send them out of bounds).
        sku = as_int64("sku", sku, copy=True)
        qty = as_int64("qty", qty, copy=True)
        n_lines = sku.size
        if qty.size != n_lines:
            raise ValueError(f"qty: has {qty.size} entries but sku has {n_lines}")
        check_at_least("sku", sku, 0, "a SKU id >= 0")
        check_at_least("qty", qty, 1, "> 0")
        check_sum_fits("qty", qty)

        if offsets is None:
            n_orders = n_lines
            line_start = None
        else:
            line_start = as_int64("offsets", offsets, copy=True)
            if line_start.size == 0:
                raise ValueError("offsets: needs at least one entry (offsets[0] = 0)")
            if line_start[0] != 0:
                raise ValueError(f"offsets[0] = {line_start[0]} must be 0")
            steps = np.diff(line_start)
            if steps.size and steps.min() <= 0:
                pos = int((steps <= 0).argmax()) + 1
                what = "decreases" if line_start[pos] < line_start[pos - 1] else "repeats (an empty order)"
                raise ValueError(f"offsets[{pos}] = {line_start[pos]} {what}: orders need at least one line")
            if line_start[-1] != n_lines:
                raise ValueError(f"offsets[{line_start.size - 1}] = {line_start[-1]} must equal the number "
                                 f"of lines ({n_lines})")
            n_orders = line_start.size - 1

        if max_price is not None:
            max_price = as_int64("max_price", max_price, copy=True)
            if max_price.size != n_lines:
                raise ValueError(f"max_price: has {max_price.size} entries but sku has {n_lines}")
            check_at_least("max_price", max_price, 0, ">= 0")
        ids = {}
        for name, values in (("order_id", order_id), ("user_id", user_id)):
            if values is not None:
                values = as_int64(name, values, copy=True)
                if values.size != n_orders:
                    raise ValueError(f"{name}: has {values.size} entries but the batch has {n_orders} orders")
                values = _readonly(values)
            ids[name] = values

        self.sku = _readonly(sku)
        self.qty = _readonly(qty)
        self.offsets = None if line_start is None else _readonly(line_start)
        self.max_price = None if max_price is None else _readonly(max_price)
        self.order_id = ids["order_id"]
        self.user_id = ids["user_id"]
        self.n_orders = n_orders
        self.n_lines = n_lines
        self.max_sku = int(sku.max()) if n_lines else -1
        self._unsigned_max = {name: int(values.view(np.uint64).max()) if values is not None and values.size else 0
                              for name, values in ids.items()}
        self._derived = {}

    def __len__(self):
        return self.n_orders

    def __repr__(self):
        return f"OrderBatch(n_orders={self.n_orders}, n_lines={self.n_lines})"

    @property
    def one_line_per_order(self):
        """True when every order has exactly one line."""
        return self.n_orders == self.n_lines

    # Kernel-ready arrays derived on first use and kept: the batch is immutable.
    def _cached(self, key, make):
        value = self._derived.get(key)
        if value is None:
            value = self._derived[key] = _readonly(make())
        return value

    @property
    def line_start(self):
        """CSR row pointers (``offsets``, or ``0..n`` for one line per order)."""
        if self.offsets is not None:
            return self.offsets
        return self._cached("line_start", lambda: np.arange(self.n_orders + 1, dtype=np.int64))

    @property
    def line_order(self):
        """The order each line belongs to."""
        return self._cached("line_order", lambda: np.repeat(np.arange(self.n_orders, dtype=np.int64),
                                                             np.diff(self.line_start)))

    def price_limits(self):
        """``max_price`` with ``None`` spelled as INT64_MAX for the kernels."""
        if self.max_price is not None:
            return self.max_price
        return self._cached("max_price", lambda: np.full(self.n_lines, INT64_MAX, dtype=np.int64))

    def unsigned_max(self, name):
        """The largest value of the column ``name`` (``"order_id"`` or
        ``"user_id"``) read as uint64, so a negative value counts as huge:
        one compare checks both bounds of a range.  Computed at construction,
        as ``max_sku`` (the batch is immutable): a tracked inventory checks
        ids and buyers on every call, and this saves it a pass over each."""
        return self._unsigned_max[name]

    def all_orders(self):
        """``0..n_orders-1``: the kernels' ``order_index`` for a whole batch."""
        return self._cached("order_index", lambda: np.arange(self.n_orders, dtype=np.int64))
