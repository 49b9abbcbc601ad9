"""The facade: ``Inventory`` and ``Result``.

Validation happens here, once; the kernels (:mod:`kernel.reference` and its
Cython and Numba mirrors) trust what they are given.  Every check runs before
the first write, so a bad input raises and changes nothing.
"""

import threading
from dataclasses import dataclass

import numpy as np

from . import backends
from .inputs import INT64_MAX, as_int64, check_at_least, check_sum_fits, check_threads
from .orders import OrderBatch
from .status import Status

__all__ = ["Inventory", "Result", "Fills"]

_ROLLBACKS = 0  # index of the rollback counter in Inventory._counters
CONTENDED_SKUS = 4096  # fewer SKUs than this: see Inventory._contended


def _readonly(arr):
    view = arr.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class Fills:
    """Which offer served how much of which line, for accepted orders only.

    One row per (line, offer) pair that moved units, sorted by line and then
    by the offer's priority.  All fields are ``int64`` arrays of equal length.

    Attributes
    ----------
    order : numpy.ndarray
        The order (position in the batch) the line belongs to.
    line : numpy.ndarray
        The line (position in ``OrderBatch.sku``).
    offer : numpy.ndarray
        The offer that served it (position in the inventory's offers; equals
        the SKU id for an inventory built from one stock figure per SKU).
    qty : numpy.ndarray
        Units taken from that offer (``> 0``).
    """

    order: np.ndarray
    line: np.ndarray
    offer: np.ndarray
    qty: np.ndarray

    def __len__(self):
        return self.qty.size


class Result:
    """The outcome of :meth:`Inventory.reserve` for one batch.

    Attributes
    ----------
    status : numpy.ndarray of int8
        One :class:`Status` code per order (read-only).
    threads : int
        Threads the kernel actually ran on (the thread policy may use fewer
        than asked for: small batches, few contended SKUs, forked children).
    """

    def __init__(self, inventory, orders, status, taken, slot_start, threads):
        self.threads = threads
        self._inventory = inventory
        self._orders = orders
        self._taken = taken  # None on the single-offer fast path
        self._slot_start = slot_start
        self._fills = None
        self._released = False
        self.status = _readonly(status)

    @property
    def accepted(self):
        """Boolean mask: ``True`` where the order was accepted."""
        return self.status == Status.ACCEPTED

    @property
    def n_accepted(self):
        """Number of accepted orders."""
        return int(np.count_nonzero(self.status == Status.ACCEPTED))

    @property
    def released(self):
        """Whether :meth:`Inventory.release` already gave this result back."""
        return self._released

    @property
    def fills(self):
        """The :class:`Fills` of the accepted orders (computed on first use)."""
        if self._fills is None:
            self._fills = self._make_fills()
        return self._fills

    def _make_fills(self):
        orders, inv = self._orders, self._inventory
        line_order = orders.line_order
        if self._taken is None:  # one offer per SKU: an accepted line took all of its qty
            line = np.flatnonzero(self.status[line_order] == Status.ACCEPTED)
            return Fills(order=line_order[line], line=line, offer=orders.sku[line].copy(), qty=orders.qty[line].copy())
        slot = np.flatnonzero(self._taken)
        slots_per_line = np.diff(self._slot_start)
        line = np.repeat(np.arange(orders.n_lines, dtype=np.int64), slots_per_line)[slot]
        rank = slot - self._slot_start[line]
        offer = inv._offer_by_priority[inv._offer_start[orders.sku[line]] + rank]
        return Fills(order=line_order[line], line=line, offer=offer, qty=self._taken[slot].copy())

    def __repr__(self):
        return f"Result(n_orders={self.status.size}, n_accepted={self.n_accepted})"


class Inventory:
    """Stock of every offer, reserved lock-free by batches of orders.

    Parameters
    ----------
    stock : array_like of int
        Units per SKU (``>= 0``); SKU ids are ``0..len(stock)-1`` and each SKU
        has one offer whose id equals the SKU id.
    backend : {"auto", "cython", "numba", "reference"}
        Kernel implementation; ``"auto"`` takes the first available in that
        order (see :func:`kernel.available_backends`).
    threads : int, optional
        Threads per call; ``None`` means every core this process may use.

    Notes
    -----
    An ``Inventory`` may be shared by any number of Python threads calling
    :meth:`reserve` and :meth:`release` at once: the kernels release the GIL
    and change stock only through atomic compare-and-swap and fetch-add.
    """

    def __init__(self, stock, *, backend="auto", threads=None):
        stock = as_int64("stock", stock)
        check_at_least("stock", stock, 0, ">= 0")
        check_sum_fits("stock", stock)
        n = stock.size
        ids = np.arange(n, dtype=np.int64)
        self._setup(stock.copy(), price=np.zeros(n, dtype=np.int64), offer_sku=ids, n_skus=n,
                    backend=backend, threads=threads)

    @classmethod
    def from_offers(cls, sku, qty, price, n_skus=None, *, backend="auto", threads=None):
        """An inventory with any number of offers per SKU.

        Parameters
        ----------
        sku, qty, price : array_like of int
            One entry per offer: its SKU, units (``>= 0``) and unit price in
            minor units (``>= 0``).  The offer id is the position here.
        n_skus : int, optional
            Number of SKUs (ids ``0..n_skus-1``); default ``max(sku) + 1``.
            SKUs without offers are valid and always out of stock.
        backend, threads
            As for :class:`Inventory`.

        Notes
        -----
        Within a SKU, offers are matched by price ascending, then in the
        order given here.
        """
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
        check_at_least("sku", sku, 0, "a SKU id >= 0")
        if sku.size and sku.max() >= n_skus:
            pos = int((sku >= n_skus).argmax())
            raise ValueError(f"sku[{pos}] = {sku[pos]} is out of range [0, {n_skus})")
        check_at_least("qty", qty, 0, ">= 0")
        check_at_least("price", price, 0, ">= 0")
        check_sum_fits("qty", qty)
        self = cls.__new__(cls)
        self._setup(qty.copy(), price=price.copy(), offer_sku=sku.copy(), n_skus=int(n_skus),
                    backend=backend, threads=threads)
        return self

    def _setup(self, stock, price, offer_sku, n_skus, backend, threads):
        self._kernels = backends.load(backend)
        self.backend = backends.backend_name(self._kernels)
        self.threads = check_threads(threads)
        self.n_skus = n_skus
        self._stock = stock
        self._price = price
        self._offer_sku = offer_sku
        # Priority order: by SKU, then price ascending, then as given (stable).
        self._offer_by_priority = np.lexsort((np.arange(stock.size), price, offer_sku)).astype(np.int64)
        counts = np.bincount(offer_sku, minlength=n_skus)
        self._offer_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        # One offer per SKU whose id is the SKU id: the flash-sale fast path.
        self._single_offer = stock.size == n_skus and bool(np.all(offer_sku == np.arange(n_skus)))
        self._counters = np.zeros(8, dtype=np.int64)
        self._release_lock = threading.Lock()  # guards Result._released; never held in a kernel

    # ------------------------------------------------------------------ views
    @property
    def stock(self):
        """Remaining units per offer (read-only ``int64`` view, live)."""
        return _readonly(self._stock)

    @property
    def price(self):
        """Unit price per offer (read-only)."""
        return _readonly(self._price)

    @property
    def offer_sku(self):
        """The SKU of each offer (read-only)."""
        return _readonly(self._offer_sku)

    @property
    def n_offers(self):
        """Number of offers."""
        return self._stock.size

    def __repr__(self):
        return (f"Inventory(n_skus={self.n_skus}, n_offers={self.n_offers}, backend={self.backend!r}, "
                f"threads={self.threads})")

    # -------------------------------------------------------------- reserving
    def reserve(self, orders, *, ordered=False, threads=None):
        """Reserve stock for a batch, each order all-or-nothing.

        Parameters
        ----------
        orders : OrderBatch
        ordered : bool
            ``False`` (default): orders are decided concurrently on all
            threads; the outcome equals *some* serial order (no oversell, no
            under-selling).  ``True``: the outcome equals processing the
            orders one by one in arrival order (still parallel across SKUs
            for one-line orders).
        threads : int, optional
            Overrides the inventory's thread count for this call.

        Returns
        -------
        Result

        Raises
        ------
        TypeError
            ``orders`` is not an :class:`OrderBatch`.
        ValueError
            A line names a SKU this inventory does not have, naming the
            first such line; nothing changes.
        """
        if not isinstance(orders, OrderBatch):
            raise TypeError(f"orders must be an OrderBatch, got {type(orders).__name__}")
        if orders.max_sku >= self.n_skus:
            pos = int((orders.sku >= self.n_skus).argmax())
            raise ValueError(f"sku[{pos}] = {orders.sku[pos]} is out of range [0, {self.n_skus})")
        kernels = self._kernels
        n_threads = backends.resolve_threads(kernels, check_threads(threads) or self.threads, orders.n_lines,
                                             contended=self._contended(orders))
        status = np.empty(orders.n_orders, dtype=np.int8)
        if orders.n_orders == 0:
            return Result(self, orders, status, None, None, n_threads)  # no lines: no fills either way
        # A rollback hands units back after other orders may have been refused
        # for lack of them.  So when one happened while the batch ran (in it,
        # or in another batch on this inventory), its refused orders are run
        # again one by one: every order still refused then was refused against
        # stock that only shrinks from there on, so no order is refused for
        # stock that is there at the end (G4, no under-selling).
        rollbacks_before = self._counters[_ROLLBACKS]
        everyone = orders.all_orders()
        if self._single_offer and orders.max_price is None:
            # One offer per SKU and no price limits: no `taken` slots needed,
            # an accepted line took all its qty from offer sku[line].
            carts = (self._stock, orders.line_start, orders.sku, orders.qty)
            if orders.one_line_per_order:
                run = kernels.reserve_single_ordered if ordered else kernels.reserve_single
                run(self._stock, orders.sku, orders.qty, status, n_threads)
            elif ordered:
                kernels.reserve_carts_ordered(*carts, everyone, status, self._counters, 1)
            else:
                kernels.reserve_carts(*carts, everyone, status, self._counters, n_threads)
            if not ordered and self._counters[_ROLLBACKS] != rollbacks_before:
                kernels.reserve_carts_ordered(*carts, self._refused(status), status, self._counters, 1)
            return Result(self, orders, status, None, None, n_threads)

        slot_start = self._slot_start(orders)
        taken = np.zeros(slot_start[-1], dtype=np.int64)
        general = (self._stock, self._price, self._offer_start, self._offer_by_priority, orders.line_start,
                   orders.sku, orders.qty, orders.price_limits(), slot_start)
        if ordered:
            # Splitting orders by SKU keeps arrival order only for one-line orders.
            kernels.reserve_general_ordered(*general, everyone, taken, status, self._counters,
                                            n_threads if orders.one_line_per_order else 1)
        else:
            kernels.reserve_general(*general, everyone, taken, status, self._counters, n_threads)
            if self._counters[_ROLLBACKS] != rollbacks_before:
                kernels.reserve_general_ordered(*general, self._refused(status), taken, status, self._counters, 1)
        return Result(self, orders, status, taken, slot_start, n_threads)

    def _contended(self, orders):
        """Would threads mostly fight over the same stock cache lines?

        Few SKUs means few cache lines of stock words; measured on 2 cores,
        64 SKUs ran 30-40% slower on 2 threads than on 1, 4096 SKUs broke
        even.  Runs of orders for one SKU are coalesced into one CAS per run,
        so a batch whose neighbours mostly share a SKU (a flash sale) still
        scales: the rule looks at the first lines.
        """
        if self.n_skus >= CONTENDED_SKUS:
            return False
        head = orders.sku[:4096]
        return head.size > 1 and np.count_nonzero(head[1:] == head[:-1]) < 0.9 * (head.size - 1)

    @staticmethod
    def _refused(status):
        return np.flatnonzero(status == Status.OUT_OF_STOCK).astype(np.int64)

    def _slot_start(self, orders):
        # Each line gets one `taken` slot per offer of its SKU, in priority order.
        per_line = self._offer_start[orders.sku + 1] - self._offer_start[orders.sku]
        slot_start = np.empty(orders.n_lines + 1, dtype=np.int64)
        slot_start[0] = 0
        np.cumsum(per_line, out=slot_start[1:])
        return slot_start

    # -------------------------------------------------------------- releasing
    def release(self, orders, result, *, threads=None):
        """Give back exactly what the accepted orders of ``result`` took.

        Parameters
        ----------
        orders : OrderBatch
            The batch ``result`` was computed for.
        result : Result
            A result of :meth:`reserve` on this inventory, not yet released.
        threads : int, optional
            Overrides the inventory's thread count for this call.

        Raises
        ------
        ValueError
            ``result`` comes from another inventory or another batch, or was
            already released; nothing changes.
        """
        if not isinstance(result, Result):
            raise TypeError(f"result must be a Result, got {type(result).__name__}")
        if result._inventory is not self:
            raise ValueError("result: comes from another inventory")
        if result._orders is not orders:
            raise ValueError("orders: is not the batch this result was computed for")
        fills = result.fills
        n_threads = backends.resolve_threads(self._kernels, check_threads(threads) or self.threads, len(fills))
        with self._release_lock:
            if result._released:
                raise ValueError("result: was already released")
            result._released = True
        self._kernels.give_back(self._stock, fills.offer, fills.qty, n_threads)
