"""The facade: ``Inventory`` and ``Result``.

Validation happens here, once; the kernels (:mod:`kernel.reference` and its
Cython and Numba mirrors) trust what they are given.  Every check runs before
the first write, so a bad input raises and changes nothing.
"""

import threading
from dataclasses import dataclass

import numpy as np

from . import backends
from . import reference as spec
from .inputs import INT64_MAX, as_int64, check_at_least, check_sum_fits, check_threads
from .lifecycle import OrderLifecycle
from .orders import OrderBatch
from .state import STATE_NAMES, Block, Layout
from .status import Status
from .tracking import NO_LIMIT

__all__ = ["Inventory", "Result", "Fills"]

_ROLLBACKS = spec.ROLLBACKS  # index of the rollback counter in Inventory._counters
CONTENDED_SKUS = 4096  # fewer SKUs than this: see Inventory._contended


def _readonly(arr):
    view = arr.view()
    view.flags.writeable = False
    return view


def _one_offer_per_sku(stock):
    stock = as_int64("stock", stock)
    check_at_least("stock", stock, 0, ">= 0")
    check_sum_fits("stock", stock)
    n = stock.size
    return stock, np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64), n


def _offers(sku, qty, price, n_skus):
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
    return qty, price, sku, int(n_skus)


def _cross_process_backend(backend):
    kernels = backends.load(backend)
    if backends.backend_name(kernels) == "reference":
        # Its plain read-modify-writes are atomic only under one GIL: two
        # processes on one segment would oversell.
        raise ValueError("backend: 'reference' is the single-process spec, not atomic across processes; use a "
                         "compiled backend for shared or mapped inventories")
    return kernels


def _max_offers_per_sku(offer_sku, n_skus):
    return int(np.bincount(offer_sku, minlength=n_skus).max()) if offer_sku.size else 0


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _power_of_two_at_least(n):
    return 1 << max(1, (int(n) - 1).bit_length())


class _Tracking:
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
        self.max_orders = _positive("max_orders", max_orders)
        self.max_user_skus = _positive("max_user_skus", max_user_skus if max_user_skus is not None else max_orders)
        self.max_fills = None if max_fills is None else _positive("max_fills", max_fills)

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
        return dict(order_capacity=_power_of_two_at_least(2 * self.max_orders) if tracked else 2,
                    limit_capacity=_power_of_two_at_least(2 * self.max_user_skus) if tracked else 2,
                    fill_capacity=max_fills if tracked else 1, tracked=tracked)


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


class Inventory(OrderLifecycle):
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
    max_orders : int, optional
        Track orders by id (idempotency, holds, confirm / cancel / expire),
        for up to this many distinct ids over the inventory's life.  Sized
        here, once: a call that could pass it raises
        :class:`kernel.CapacityError` and changes nothing.  ``None``: orders
        are not tracked (plain reserve / release, the fastest paths).
    limit_per_user : int or array_like of int, optional
        Units of each SKU one user may hold or buy (one number for every
        SKU, or one per SKU; :data:`kernel.NO_LIMIT` for none).  Needs
        ``max_orders``.
    max_user_skus : int, optional
        Distinct (user, capped SKU) pairs the limit table holds; default
        ``max_orders``.
    max_fills : int, optional
        Fill-log entries: each line of a tracked order with a new id takes
        one per offer of its SKU, accepted or not; default
        ``4 * max_orders * (most offers of one SKU)``.

    Notes
    -----
    An ``Inventory`` may be shared by any number of Python threads calling
    :meth:`reserve` and :meth:`release` at once: the kernels release the GIL
    and change stock only through atomic compare-and-swap and fetch-add.
    :meth:`create_shared` and :meth:`create_mapped` put the same state in
    shared memory or a file, for many processes.
    """

    def __init__(self, stock, *, backend="auto", threads=None, max_orders=None, limit_per_user=None,
                 max_user_skus=None, max_fills=None):
        self._build(_one_offer_per_sku(stock), backend, threads,
                    _Tracking(max_orders, limit_per_user, max_user_skus, max_fills), Block.private)

    @classmethod
    def from_offers(cls, sku, qty, price, n_skus=None, *, backend="auto", threads=None, max_orders=None,
                    limit_per_user=None, max_user_skus=None, max_fills=None):
        """An inventory with any number of offers per SKU.

        Parameters
        ----------
        sku, qty, price : array_like of int
            One entry per offer: its SKU, units (``>= 0``) and unit price in
            minor units (``>= 0``).  The offer id is the position here.
        n_skus : int, optional
            Number of SKUs (ids ``0..n_skus-1``); default ``max(sku) + 1``.
            SKUs without offers are valid and always out of stock.
        backend, threads, max_orders, limit_per_user, max_user_skus, max_fills
            As for :class:`Inventory`.

        Notes
        -----
        Within a SKU, offers are matched by price ascending, then in the
        order given here.
        """
        self = cls.__new__(cls)
        self._build(_offers(sku, qty, price, n_skus), backend, threads,
                    _Tracking(max_orders, limit_per_user, max_user_skus, max_fills), Block.private)
        return self

    # ------------------------------------------------- shared and file-backed
    @classmethod
    def create_shared(cls, name, stock=None, *, offers=None, n_skus=None, backend="auto", threads=None,
                      max_orders=None, limit_per_user=None, max_user_skus=None, max_fills=None):
        """A new inventory in POSIX shared memory, for many processes.

        Parameters
        ----------
        name : str
            Segment name (1-200 characters from ``A-Z a-z 0-9 _ . -``);
            other processes pass it to :meth:`attach`.
        stock : array_like of int, optional
            Units per SKU, as for :class:`Inventory`.
        offers : tuple of array_like, optional
            ``(sku, qty, price)`` as for :meth:`from_offers` (give this or
            ``stock``); ``n_skus`` as there.
        backend, threads, max_orders, limit_per_user, max_user_skus, max_fills
            As for :class:`Inventory` (backend and threads are this
            process's choice; each attaching process makes its own).

        Returns
        -------
        Inventory
            Attached to the new segment.  The segment outlives every process
            until :meth:`unlink` removes its name.

        Raises
        ------
        FileExistsError
            A segment of that name exists; nothing changes.

        Notes
        -----
        Every process reserves from the segment lock-free, with the same
        atomic operations threads use; no server or lock sits in between.
        What a process killed mid-call can and cannot leave behind is
        described under :meth:`recover`.
        """
        return cls._create(lambda layout: Block.create_shared(name, layout), stock, offers, n_skus, backend, threads,
                           _Tracking(max_orders, limit_per_user, max_user_skus, max_fills))

    @classmethod
    def create_mapped(cls, path, stock=None, *, offers=None, n_skus=None, backend="auto", threads=None,
                      max_orders=None, limit_per_user=None, max_user_skus=None, max_fills=None):
        """Like :meth:`create_shared`, in a memory-mapped file at ``path``:
        the state survives every process (reopen it with :meth:`open_mapped`;
        :meth:`flush` forces it to disk)."""
        return cls._create(lambda layout: Block.create_file(path, layout), stock, offers, n_skus, backend, threads,
                           _Tracking(max_orders, limit_per_user, max_user_skus, max_fills))

    @classmethod
    def attach(cls, name, *, backend="auto", threads=None):
        """Attach to the shared inventory ``name`` made by :meth:`create_shared`.

        Raises
        ------
        FileNotFoundError
            No segment has that name.
        ValueError
            The segment is not a kernel inventory, or one of another layout
            version.
        """
        self = cls.__new__(cls)
        kernels = _cross_process_backend(backend)
        self._bind(Block.attach_shared(name), kernels, threads)
        return self

    @classmethod
    def open_mapped(cls, path, *, backend="auto", threads=None):
        """Open the file-backed inventory at ``path`` (see :meth:`attach`)."""
        self = cls.__new__(cls)
        kernels = _cross_process_backend(backend)
        self._bind(Block.open_file(path), kernels, threads)
        return self

    # --- journal hook (issue 10): durable inventories live in kernel/journal/ ---
    @classmethod
    def create_durable(cls, directory, stock=None, *, offers=None, n_skus=None, backend="auto", threads=None,
                       max_orders=None, limit_per_user=None, max_user_skus=None, max_fills=None, fsync="batch",
                       interval_ms=10, shared=None):
        """A new inventory whose every state-changing call is journaled to
        ``directory`` before it returns (a write-ahead journal with group
        commit, and snapshots).

        Parameters
        ----------
        directory : str or os.PathLike
            A directory that does not exist yet, or an empty one.
        stock, offers, n_skus, backend, threads, max_orders, limit_per_user, max_user_skus, max_fills
            As for :meth:`create_shared`.
        fsync : {"batch", "interval", "none"}
            ``"batch"`` (default): a call returns only once its record is on
            disk; concurrent calls share one ``fdatasync`` (group commit).
            ``"interval"``: records are written at once and synced every
            ``interval_ms`` (a power loss loses at most the calls of the last
            ``interval_ms`` plus one sync; a killed process loses nothing).
            ``"none"``: never synced but at :meth:`checkpoint` and close.
        interval_ms : float
            The sync period of ``"interval"``.
        shared : str, optional
            Keep the state in POSIX shared memory under this name, for
            several processes (each opens it with ``open_durable(directory,
            shared=name)``); their calls are serialized by a lock on the
            journal and appended to one log.

        Returns
        -------
        kernel.journal.DurableInventory
            An :class:`Inventory` with ``checkpoint()``, ``sync()`` and
            journal statistics; see :mod:`kernel.journal` for the format and
            the failure semantics (fail-stop).
        """
        from .journal import create_durable
        return create_durable(directory, stock, offers=offers, n_skus=n_skus, backend=backend, threads=threads,
                              max_orders=max_orders, limit_per_user=limit_per_user, max_user_skus=max_user_skus,
                              max_fills=max_fills, fsync=fsync, interval_ms=interval_ms, shared=shared)

    @classmethod
    def open_durable(cls, directory, *, backend="auto", threads=None, fsync="batch", interval_ms=10, shared=None):
        """Reopen a durable inventory: load its newest valid snapshot, replay
        the journal after it (cutting off a record torn by a crash), and go
        on appending.  ``shared``: the shared-memory name given to
        :meth:`create_durable`; a process attaches to the live segment if it
        exists, else rebuilds it from disk.

        Raises
        ------
        kernel.journal.JournalCorrupt
            Damage a crash cannot explain (a bad record before the tail),
            naming the segment and offset; nothing is changed on disk.
        kernel.journal.JournalError
            Not a durable inventory, another format or layout version, or a
            missing segment.
        """
        from .journal import open_durable
        return open_durable(directory, backend=backend, threads=threads, fsync=fsync, interval_ms=interval_ms,
                            shared=shared)
    # --- end of journal hook ---

    @classmethod
    def _create(cls, make_block, stock, offers, n_skus, backend, threads, tracking):
        if (stock is None) == (offers is None):
            raise TypeError("give exactly one of stock or offers=(sku, qty, price)")
        if stock is not None:
            if n_skus is not None:
                raise TypeError("n_skus: only with offers= (stock has one entry per SKU)")
            market = _one_offer_per_sku(stock)
        else:
            if not isinstance(offers, (tuple, list)) or len(offers) != 3:
                raise TypeError("offers: must be a tuple (sku, qty, price)")
            market = _offers(*offers, n_skus)
        self = cls.__new__(cls)
        self._build(market, backend, threads, tracking, make_block)
        return self

    @property
    def kind(self):
        """Where the state lives: ``"private"``, ``"shared"`` or ``"file"``."""
        return self._block.kind

    @property
    def name(self):
        """The shared segment's name or the file's path (``None`` if private)."""
        return self._block.where

    def flush(self):
        """Force a file-backed inventory's state to disk (``msync``)."""
        self._check_open()
        self._block.flush()

    def close(self):
        """Detach this process from the state; the inventory is unusable
        afterwards.  Other processes, and the segment or file, are unaffected."""
        if self._block.words is None:
            return
        for name in STATE_NAMES:
            setattr(self, "_" + name, None)
        self._one = None  # it holds the arrays too
        self._block.close()

    def unlink(self):
        """Remove the shared segment's name (or the mapped file).  Processes
        attached keep working on it until they close; nobody new can attach."""
        self._block.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        if self._block.words is None:
            raise ValueError("inventory: is closed")

    # --------------------------------------------------------------- building
    def _build(self, market, backend, threads, tracking, make_block):
        stock, price, offer_sku, n_skus = market
        # Before anything is created: a bad backend changes nothing.
        kernels = backends.load(backend) if make_block == Block.private else _cross_process_backend(backend)
        check_threads(threads)
        limit = tracking.limits(n_skus)
        layout = Layout(n_skus, stock.size, **tracking.capacities(_max_offers_per_sku(offer_sku, n_skus)))
        block = make_block(layout)
        try:
            block.prefault()
            arrays = block.arrays()
            arrays["stock"][:] = stock
            arrays["price"][:] = price
            arrays["offer_sku"][:] = offer_sku
            # Priority order: by SKU, then price ascending, then as given (stable).
            arrays["offer_by_priority"][:] = np.lexsort((np.arange(stock.size), price, offer_sku))
            np.cumsum(np.bincount(offer_sku, minlength=n_skus), out=arrays["offer_start"][1:])
            arrays["limit"][:] = limit
            counters = arrays["counters"]
            counters[spec.ORDERS_LEFT] = tracking.max_orders
            counters[spec.PAIRS_LEFT] = tracking.max_user_skus
            counters[spec.FILLS_LEFT] = layout.sizes["fill_capacity"]
            del arrays, counters
            block.publish()
        except BaseException:
            block.close()
            block.unlink()
            raise
        self._bind(block, kernels, threads)

    def _bind(self, block, backend, threads):
        self._kernels = backend if not isinstance(backend, str) else backends.load(backend)
        self.backend = backends.backend_name(self._kernels)
        self.threads = check_threads(threads)
        self._block = block
        for name, view in block.arrays().items():
            setattr(self, "_" + name, view)
        sizes = block.layout.sizes
        self.n_skus = sizes["n_skus"]
        # A (user, SKU) pair is keyed by user * n_skus + sku + 1, which must fit int64.
        self._max_user = (INT64_MAX - self.n_skus) // max(self.n_skus, 1)
        self.tracks_orders = bool(sizes["tracked"])
        self._capped = self._limit != NO_LIMIT
        self.has_limits = bool(self._capped.any())
        # One offer per SKU whose id is the SKU id: the flash-sale fast path.
        self._single_offer = (self._stock.size == self.n_skus
                              and bool(np.all(self._offer_sku == np.arange(self.n_skus))))
        self._offers_per_sku = np.diff(self._offer_start)
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
    def reserve(self, orders, *, ordered=False, threads=None, hold_until=None):
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
        hold_until : int or array_like of int, optional
            Tracked inventories only: the deadline of each accepted order's
            hold (one for all, or one per order), in the clock :meth:`expire`
            is called with.  ``None``: held until confirmed or cancelled.

        Returns
        -------
        Result

        Raises
        ------
        TypeError
            ``orders`` is not an :class:`OrderBatch`.
        ValueError
            A line names a SKU this inventory does not have, naming the
            first such line; a tracked inventory got orders without
            ``order_id`` (or without ``user_id`` where it has per-user
            limits), an untracked one got ``order_id``; nothing changes.
        CapacityError
            Tracked inventories: the batch could overflow a table sized at
            creation; nothing changes.

        Notes
        -----
        On a tracked inventory (``max_orders``) each order also gets
        ``Status.DUPLICATE`` when its ``order_id`` was seen before (in this
        batch or any earlier call, in any process), ``Status.LIMIT_EXCEEDED``
        when it would take its user past a per-user limit, and
        ``Status.CANCELLED`` when its id was cancelled first; accepted orders
        are held until :meth:`confirm`, :meth:`cancel` or :meth:`expire`.
        """
        if not isinstance(orders, OrderBatch):
            raise TypeError(f"orders must be an OrderBatch, got {type(orders).__name__}")
        self._check_open()
        if orders.max_sku >= self.n_skus:
            pos = int((orders.sku >= self.n_skus).argmax())
            raise ValueError(f"sku[{pos}] = {orders.sku[pos]} is out of range [0, {self.n_skus})")
        kernels = self._kernels
        n_threads = backends.resolve_threads(kernels, check_threads(threads) or self.threads, orders.n_lines,
                                             contended=self._contended(orders))
        if self.tracks_orders:
            return self._reserve_tracked(orders, ordered, n_threads, hold_until)
        for name, value in (("order_id", orders.order_id), ("hold_until", hold_until)):
            if value is not None:
                raise ValueError(f"{name}: this inventory does not track orders (create it with max_orders=...)")
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
        if self.tracks_orders:
            raise ValueError("release: tracked orders are given back with cancel(order_ids)")
        fills = result.fills
        n_threads = backends.resolve_threads(self._kernels, check_threads(threads) or self.threads, len(fills))
        with self._release_lock:
            if result._released:
                raise ValueError("result: was already released")
            result._released = True
        self._kernels.give_back(self._stock, fills.offer, fills.qty, n_threads)
