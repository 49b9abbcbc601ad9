"""The facade: :class:`Inventory`, what a service imports.

Validation happens here, once; the kernels (:mod:`kernel.reference` and its
Cython and Numba mirrors) trust what they are given.  Every check runs before
the first write, so a bad input raises and changes nothing.

Over 700 lines on purpose: it is the whole public surface of an inventory
(every constructor and entry point with its numpydoc); the work behind them
lives in :mod:`kernel.creation`, :mod:`kernel.lifecycle`, :mod:`kernel.result`
and :mod:`kernel.journal`.
"""

import numpy as np

from . import backends, codes
from .codes import Status
from .inputs import as_int64, check_at_least, check_below, check_sum_fits, check_threads
from .lifecycle import TrackedOrders, short_orders
from . import creation
from .orders import OrderBatch
from .result import Fills, Result, readonly
from .state import Block, Layout
from .tracking import NO_LIMIT

__all__ = ["Inventory", "Result", "Fills"]

_OUT_OF_STOCK = (Status.OUT_OF_STOCK,)  # what the untracked paths refuse for stock
CONTENDED_SKUS = 4096  # fewer SKUs than this: see Inventory._contended


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
        self._build(creation.one_offer_per_sku(stock), backend, threads,
                    creation.Tracking(max_orders, limit_per_user, max_user_skus, max_fills), Block.private)

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
        self._build(creation.offers(sku, qty, price, n_skus), backend, threads,
                    creation.Tracking(max_orders, limit_per_user, max_user_skus, max_fills), Block.private)
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
                           creation.Tracking(max_orders, limit_per_user, max_user_skus, max_fills))

    @classmethod
    def create_mapped(cls, path, stock=None, *, offers=None, n_skus=None, backend="auto", threads=None,
                      max_orders=None, limit_per_user=None, max_user_skus=None, max_fills=None):
        """Like :meth:`create_shared`, in a memory-mapped file at ``path``:
        the state survives every process (reopen it with :meth:`open_mapped`;
        :meth:`flush` forces it to disk)."""
        return cls._create(lambda layout: Block.create_file(path, layout), stock, offers, n_skus, backend, threads,
                           creation.Tracking(max_orders, limit_per_user, max_user_skus, max_fills))

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
        kernels = creation.cross_process_backend(backend)
        self._bind(Block.attach_shared(name), kernels, threads)
        return self

    @classmethod
    def open_mapped(cls, path, *, backend="auto", threads=None):
        """Open the file-backed inventory at ``path`` (see :meth:`attach`)."""
        self = cls.__new__(cls)
        kernels = creation.cross_process_backend(backend)
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

        Notes
        -----
        Disk: with ``fsync="batch"`` (not shared) every journal segment
        starts as a file of zeros, written and synced before it is used, as
        big as the state (up to 64 MiB: about 40 ms on the 2-core VM), so
        the records' ``fdatasync`` flushes no file size or extents; the one
        a checkpoint ends is kept as the spare for the next.  ``close()``
        cuts the unused zeros off the newest.  A disk too full for them
        raises :class:`kernel.journal.JournalError` here (nothing is left
        in ``directory``) or from :meth:`~kernel.journal.DurableInventory.checkpoint`.
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
            market = creation.one_offer_per_sku(stock)
        else:
            if not isinstance(offers, (tuple, list)) or len(offers) != 3:
                raise TypeError("offers: must be a tuple (sku, qty, price)")
            market = creation.offers(*offers, n_skus)
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

    @property
    def closed(self):
        """Whether :meth:`close` detached this inventory from its state."""
        return self._state is None

    def flush(self):
        """Force a file-backed inventory's state to disk (``msync``)."""
        self._check_open()
        self._block.flush()

    def close(self):
        """Detach this process from the state; the inventory is unusable
        afterwards (every call raises ``ValueError``).  Other processes, and
        the segment or file, are unaffected."""
        if self._state is None:
            return
        self._state = self._tracked = None  # both hold views of the block
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
        if self._state is None:
            raise ValueError("inventory: is closed")
        return self._state

    # --------------------------------------------------------------- building
    def _build(self, market, backend, threads, tracking, make_block):
        stock, price, offer_sku, n_skus = market
        # Before anything is created: a bad backend changes nothing.
        kernels = backends.load(backend) if make_block == Block.private else creation.cross_process_backend(backend)
        check_threads(threads)
        limit = tracking.limits(n_skus)
        layout = Layout(n_skus, stock.size, **tracking.capacities(creation.max_offers_per_sku(offer_sku, n_skus)))
        block = make_block(layout)
        try:
            block.prefault()
            state = block.arrays()
            state.stock[:] = stock
            state.price[:] = price
            state.offer_sku[:] = offer_sku
            # Priority order: by SKU, then price ascending, then as given (stable).
            state.offer_by_priority[:] = np.lexsort((np.arange(stock.size), price, offer_sku))
            np.cumsum(np.bincount(offer_sku, minlength=n_skus), out=state.offer_start[1:])
            state.limit[:] = limit
            state.counters[codes.ORDERS_LEFT] = tracking.max_orders
            state.counters[codes.PAIRS_LEFT] = tracking.max_user_skus
            state.counters[codes.FILLS_LEFT] = layout.sizes["fill_capacity"]
            del state
            block.publish()
        except BaseException:
            block.close()
            block.unlink()
            raise
        self._bind(block, kernels, threads)

    def _bind(self, block, backend, threads):
        """Attach to ``block`` with ``backend`` (a name, or a kernel module)."""
        self._kernels = kernels = backends.load(backend)
        self.backend = backends.backend_name(kernels)
        self.threads = check_threads(threads)
        self._block = block
        self._state = state = block.arrays()
        sizes = block.layout.sizes
        self.n_skus = sizes["n_skus"]
        self.tracks_orders = bool(sizes["tracked"])
        # The tracked-order component exists only where orders are tracked:
        # its absence is what refuses tracked calls on a plain inventory.
        # It holds nothing of the inventory (calls hand it their threads):
        # a reference back, as its thread policy once was, made a cycle, and
        # a dropped inventory, state block and all (160 MB for 1M tracked
        # orders), stayed until the garbage collector's next pass.  Memory
        # handed back and taken again late is slow on a VM (the host backs
        # it anew): a benchmark making an inventory per round ran its
        # tracked call in 100-110 ms instead of 58-62 while the dropped ones
        # piled up.
        self._tracked = TrackedOrders(state, kernels, self.n_skus) if self.tracks_orders else None
        self.has_limits = bool(np.any(state.limit != NO_LIMIT))
        # One offer per SKU whose id is the SKU id: the flash-sale fast path.
        self._one_offer_per_sku = (state.stock.size == self.n_skus
                                   and bool(np.all(state.offer_sku == np.arange(self.n_skus))))

    def _threads_or_default(self, threads):
        """A call's ``threads`` argument, else the inventory's default
        (checked where the policy is applied)."""
        return self.threads if threads is None else threads

    def _threads_for(self, threads, work, contended=False):
        """The thread policy (:func:`kernel.backends.resolve_threads`) for a
        call of ``work`` lines whose ``threads`` argument was given."""
        return backends.resolve_threads(self._kernels, check_threads(threads) or self.threads, work, contended)

    # ------------------------------------------------------------------ views
    @property
    def stock(self):
        """Remaining units per offer (read-only ``int64`` view, live)."""
        return readonly(self._check_open().stock)

    @property
    def price(self):
        """Unit price per offer (read-only)."""
        return readonly(self._check_open().price)

    @property
    def offer_sku(self):
        """The SKU of each offer (read-only)."""
        return readonly(self._check_open().offer_sku)

    @property
    def offer_start(self):
        """CSR over SKUs (read-only, ``n_skus + 1`` entries): the offers of
        SKU ``s`` in priority order are ``offer_by_priority[offer_start[s]:offer_start[s + 1]]``."""
        return readonly(self._check_open().offer_start)

    @property
    def offer_by_priority(self):
        """Offer ids grouped by SKU, each SKU's in priority order (price
        ascending, then as given); read-only."""
        return readonly(self._check_open().offer_by_priority)

    @property
    def n_offers(self):
        """Number of offers."""
        return self._check_open().stock.size

    @property
    def one_offer_per_sku(self):
        """Whether offer ``s`` is the only offer of SKU ``s`` (an inventory
        built from one stock figure per SKU): the fast paths that need no
        per-offer matching apply."""
        return self._one_offer_per_sku

    @property
    def kernels(self):
        """The backend's kernel module (what ``backend=`` resolved to)."""
        return self._kernels

    @property
    def state(self):
        """The 11 state arrays as a :class:`kernel.state.StateArrays` named
        tuple of live views (``inv.state.order_table``, ...), for checkers
        such as :mod:`kernel.invariants`.  What each array holds is
        documented in :mod:`kernel.reference.tracked`.  Read them; write to
        them only through the kernels."""
        return self._check_open()

    def state_arrays(self):
        """The 11 state arrays as a plain tuple, in the order the kernels take
        them (:data:`kernel.state.STATE_NAMES`).

        For calling ``reserve_one`` from your own compiled code: Numba
        (``kernel._numba.kernels.reserve_one(*state, sku, qty, max_price,
        order_id, user_id, deadline)`` inside ``@njit``; Numba unpacks a
        plain tuple, not a named one) or Cython
        (``kernel/_cython/tracked.pxd``); see the README.  The arrays are live
        views of this inventory's state; use them only through those kernels.
        """
        return tuple(self._check_open())

    def __repr__(self):
        if self._state is None:
            return f"Inventory(closed, n_skus={self.n_skus}, backend={self.backend!r})"
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
        state = self._check_open()
        if orders.max_sku >= self.n_skus:  # the batch's max, computed once at construction: no pass here
            check_below("sku", orders.sku, self.n_skus)  # names the first bad line
        kernels = self._kernels
        n_threads = self._threads_for(threads, orders.n_lines, contended=self._contended(orders))
        offer_map = dict(offer_start=state.offer_start, offer_by_priority=state.offer_by_priority)
        if self.tracks_orders:
            status, taken, slot_start = self._tracked.reserve(orders, ordered, n_threads, hold_until)
            return Result(self, orders, status, n_threads, taken=taken, slot_start=slot_start, **offer_map)
        for name, value in (("order_id", orders.order_id), ("hold_until", hold_until)):
            if value is not None:
                raise ValueError(f"{name}: this inventory does not track orders (create it with max_orders=...)")
        status = np.empty(orders.n_orders, dtype=np.int8)
        if orders.n_orders == 0:
            return Result(self, orders, status, n_threads)  # no lines: no fills either way
        rollbacks_before = state.counters[codes.ROLLBACKS]  # for the G4 re-run rule, see backends
        everyone = orders.all_orders()
        if self._one_offer_per_sku and orders.max_price is None:
            # One offer per SKU and no price limits: no `taken` slots needed,
            # an accepted line took all its qty from offer sku[line].
            carts = (state.stock, orders.line_start, orders.sku, orders.qty)
            if orders.one_line_per_order:
                run = kernels.reserve_single_ordered if ordered else kernels.reserve_single
                run(state.stock, orders.sku, orders.qty, status, n_threads)
            elif ordered:
                kernels.reserve_carts_ordered(*carts, everyone, status, state.counters, 1)
            else:
                own = kernels.reserve_carts(*carts, everyone, status, state.counters, n_threads)
                backends.rerun_refused_after_rollback(
                    state.counters, rollbacks_before, status, _OUT_OF_STOCK,
                    lambda refused: self._rerun(kernels.reserve_carts_ordered, carts, (status, state.counters),
                                                refused, state.stock, orders),
                    own_serial=own)
            return Result(self, orders, status, n_threads)

        slot_start = self._slot_start(orders)
        taken = np.zeros(slot_start[-1], dtype=np.int64)
        general = (state.stock, state.price, state.offer_start, state.offer_by_priority, orders.line_start,
                   orders.sku, orders.qty, orders.price_limits(), slot_start)
        if ordered:
            # Splitting orders by SKU keeps arrival order only for one-line orders.
            kernels.reserve_general_ordered(*general, everyone, taken, status, state.counters,
                                            n_threads if orders.one_line_per_order else 1)
        else:
            # `own`: the kernel's serial rollbacks (on one thread; 0 on more),
            # which need no re-run (backends says why; a marketplace call at
            # one thread spent ~27% of its time re-running for them).
            own = kernels.reserve_general(*general, everyone, taken, status, state.counters, n_threads)
            backends.rerun_refused_after_rollback(
                state.counters, rollbacks_before, status, _OUT_OF_STOCK,
                lambda refused: self._rerun(kernels.reserve_general_ordered, general,
                                            (taken, status, state.counters), refused, self._units_per_sku(), orders),
                own_serial=own)
        return Result(self, orders, status, n_threads, taken=taken, slot_start=slot_start, **offer_map)

    @staticmethod
    def _rerun(ordered_kernel, head, tail, refused, units, orders):
        """The G4 re-run of a plain concurrent batch: ``ordered_kernel(*head,
        order_index, *tail, 1)`` on the refused orders of mask ``refused``,
        in arrival order, less those with a line asking for more than its
        SKU's ``units`` in all: the kernels would refuse them again (stock
        only shrinks during the re-run; the general path's read-only
        pre-check before any write, the carts path at that line, after
        taking and giving back the lines before it), and their status
        already says OUT_OF_STOCK.  On the marketplace one
        rollback re-ran every refused order, ~167k of 200k (3.9 ms, as long
        as the 2-thread kernel call), nearly all for sold-out SKUs."""
        refused &= ~short_orders(units, orders)
        again = backends.arrival_order(refused)
        if again.size:
            ordered_kernel(*head, again, *tail, 1)

    def _units_per_sku(self):
        """Units in stock per SKU, over all its offers (any price)."""
        state = self._state
        if self._one_offer_per_sku:
            return state.stock
        # Cumulative sums, not np.add.reduceat: a SKU without offers has an
        # empty range, which reduceat would give the next offer's units.
        running = np.zeros(state.offer_by_priority.size + 1, dtype=np.int64)
        np.cumsum(state.stock[state.offer_by_priority], out=running[1:])
        return running[state.offer_start[1:]] - running[state.offer_start[:-1]]

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

    def _slot_start(self, orders):
        # Each line gets one `taken` slot per offer of its SKU, in priority order.
        offer_start = self._state.offer_start
        per_line = offer_start[orders.sku + 1] - offer_start[orders.sku]
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
        state = self._check_open()
        if result.inventory is not self:
            raise ValueError("result: comes from another inventory")
        if result.orders is not orders:
            raise ValueError("orders: is not the batch this result was computed for")
        if self.tracks_orders:
            raise ValueError("release: tracked orders are given back with cancel(order_ids)")
        fills = result.fills
        n_threads = self._threads_for(threads, len(fills))
        if not result.mark_released():
            raise ValueError("result: was already released")
        self._kernels.give_back(state.stock, fills.offer, fills.qty, n_threads)

    # ---------------------------------------------------------- tracked orders
    # The work is done by the TrackedOrders component (kernel.lifecycle);
    # these are the documented entry points.
    def _require_tracking(self, what):
        self._check_open()
        if not self.tracks_orders:
            raise ValueError(f"{what}: this inventory does not track orders (create it with max_orders=...)")
        return self._tracked

    def reserve_one(self, sku, qty=1, *, order_id, user_id=0, max_price=None, hold_until=None):
        """Reserve one single-line order: the lowest-overhead call there is.

        Parameters
        ----------
        sku, qty : int
            The SKU and units wanted (``qty >= 1``).
        order_id : int
            The order's id, ``0 <= order_id < 2**56``: an id seen before gets
            ``Status.DUPLICATE`` and changes nothing.
        user_id : int
            The buyer, for per-user limits.
        max_price : int, optional
            Highest acceptable unit price; ``None``: any.
        hold_until : int, optional
            Deadline of the hold, in the caller's clock (the unit
            :meth:`expire` is called with); ``None``: held until confirmed
            or cancelled.

        Returns
        -------
        Status

        Raises
        ------
        ValueError, TypeError
            A bad argument (named); nothing changes.
        CapacityError
            A table sized at creation is full; nothing changes.
        """
        tracked = self._tracked or self._require_tracking("reserve_one")
        return tracked.reserve_one(sku, qty, order_id, user_id, max_price, hold_until)

    def reserve_one_unchecked(self):
        """The backend's ``reserve_one`` kernel with this inventory's arrays
        bound: a callable ``(sku, qty, max_price, order_id, user_id,
        deadline) -> int`` (a :class:`Status` code, or a negative ``*_FULL``
        code of :mod:`kernel.codes` when a table is full).

        No argument is checked: out-of-range values corrupt the state.  For
        benchmarks of the kernel alone (``python -m kernel.bench.single``)
        and for callers that validated already; :meth:`reserve_one` is the
        safe entry point.
        """
        return self._require_tracking("reserve_one_unchecked").bound_reserve_one()

    def confirm(self, order_ids, *, threads=None):
        """Confirm (pay for) held orders: HELD -> CONFIRMED, final.

        Parameters
        ----------
        order_ids : array_like of int
        threads : int, optional

        Returns
        -------
        numpy.ndarray of int8
            One :class:`kernel.Outcome` per id: ``DONE``, or why not (already
            confirmed / cancelled / expired, refused, unknown, in flight).
            A confirm racing an expiry or a cancel has exactly one winner.
        """
        return self._require_tracking("confirm").confirm(order_ids, self._threads_or_default(threads))

    def cancel(self, order_ids, *, threads=None):
        """Cancel orders: a hold gives its stock and cap count back.

        An id whose reserve is still running is cancelled when that reserve
        ends (it answers ``Status.CANCELLED``); an id not seen yet is
        remembered, and its late reserve is refused.  Confirmed orders are
        final and stay confirmed.

        Returns
        -------
        numpy.ndarray of int8
            One :class:`kernel.Outcome` per id.

        Raises
        ------
        CapacityError
            Remembering the unseen ids could overflow the order table;
            nothing changes.
        """
        return self._require_tracking("cancel").cancel(order_ids, self._threads_or_default(threads))

    def expire(self, now, *, threads=None):
        """End every hold whose deadline (``hold_until``) is ``<= now``,
        giving its stock and cap count back.

        Returns
        -------
        numpy.ndarray of int64
            The ids that expired in this call, ascending.
        """
        return self._require_tracking("expire").expire(now, self._threads_or_default(threads))

    def recover(self):
        """Finish what processes killed mid-call left: give back what each
        unfinished order logged, and end it REFUSED (or CANCELLED); finish
        the give-back of orders a killed cancel or expiry had ended.

        Call it only while no reserve runs on this inventory in any process
        (e.g. when a supervisor restarts its workers, or on reopening a
        mapped file): an unfinished order of a live process looks the same.

        Returns
        -------
        int
            How many orders it finished (unfinished orders ended, and ended
            orders whose give-back it completed).

        Notes
        -----
        What a process killed at any instruction can leave:

        * no order is ever half visible: an order is HELD (every unit taken)
          or not, by one CAS of its word; confirm / cancel / expire steps are
          single CASes too;
        * no oversell, ever: stock only moves by CAS, and the fill log never
          claims more than was taken (logged after the take, zeroed before
          a give-back);
        * every accepted (HELD / CONFIRMED) reservation survives intact;
        * the killed process's unfinished order stays PENDING until
          ``recover`` gives back what it logged;
        * what it cannot give back: units taken in the few instructions
          between a successful stock CAS and its log entry (at most one
          line's units per kernel thread of the killed process) stay out of
          stock, and a cap count taken for that line stays counted.  Lost,
          never oversold;
        * a process killed inside ``cancel`` or ``expire`` leaves the order
          CANCELLED / EXPIRED with some fill entries not yet given back:
          ``recover`` gives them back (each entry is swapped out atomically,
          so a live cancel racing the recovery never returns one twice); only
          the units of the one entry swapped out and not yet returned when
          the kill landed are lost (at most one line's units per kernel
          thread, as above).
        """
        return self._require_tracking("recover").recover()

    def state_of(self, order_ids):
        """The :class:`kernel.OrderState` of each id (int8 codes; a snapshot)."""
        return self._require_tracking("state_of").state_of(order_ids)

    def limit_used(self, user_ids, skus):
        """Units of ``skus[k]`` that ``user_ids[k]`` holds or bought (counted
        against a cap; 0 for uncapped SKUs)."""
        return self._require_tracking("limit_used").limit_used(user_ids, skus)

    # ------------------------------------------------------------- restocking
    def restock(self, offer, qty, *, threads=None):
        """Add units to offers, safely while orders are being reserved.

        Parameters
        ----------
        offer, qty : int or array_like of int
            Offer ids (SKU ids for an inventory made from ``stock``) and the
            units to add (``>= 0``).

        Raises
        ------
        ValueError
            Unknown offer, negative qty, or a stock that would overflow,
            naming the first bad position; nothing changes.
        """
        state = self._check_open()
        offer = as_int64("offer", np.atleast_1d(offer))
        qty = as_int64("qty", np.atleast_1d(qty))
        if qty.size != offer.size:
            raise ValueError(f"qty: has {qty.size} entries but offer has {offer.size}")
        check_at_least("offer", offer, 0, "an offer id >= 0")
        check_below("offer", offer, self.n_offers)
        check_at_least("qty", qty, 0, ">= 0")
        check_sum_fits("qty", qty)
        stock = state.stock
        added = np.bincount(offer, weights=qty, minlength=self.n_offers)  # float: only a bound
        if (added > 0).any() and (stock.astype(np.float64) + added).max() >= 2.0**63:
            pos = int(np.argmax(stock.astype(np.float64)[offer] + added[offer] >= 2.0**63))
            raise ValueError(f"qty[{pos}]: offer {offer[pos]} would hold more than int64 allows")
        self._kernels.give_back(stock, offer, qty, self._threads_for(threads, offer.size))
