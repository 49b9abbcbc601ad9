"""Tracked orders on an :class:`~kernel.Inventory`: idempotent reserves,
per-user caps, and holds that are confirmed, cancelled or expire.

The kernels are the "Tracked orders" functions of :mod:`kernel.reference`
and their Cython and Numba mirrors; this mixin validates, takes the table
budgets before anything changes, and runs them.  A budget a call turns out
not to need is given back afterwards.
"""

import operator

import numpy as np

from . import backends
from . import reference as spec
from .inputs import INT64_MAX, as_int64, check_at_least, check_sum_fits, check_threads
from .status import Status
from .tracking import MAX_ORDER_ID, NO_DEADLINE, NO_LIMIT, CapacityError, as_order_ids, probe

__all__ = ["OrderLifecycle"]

_STATUSES = tuple(Status)
_BUDGET_NAMES = {spec.ORDERS_LEFT: "order table (max_orders)", spec.PAIRS_LEFT: "limit table (max_user_skus)",
                 spec.FILLS_LEFT: "fill log (max_fills)"}
_FULL = {spec.ORDER_TABLE_FULL: spec.ORDERS_LEFT, spec.LIMIT_TABLE_FULL: spec.PAIRS_LEFT,
         spec.FILL_LOG_FULL: spec.FILLS_LEFT}
_REFUSED = (Status.OUT_OF_STOCK, Status.LIMIT_EXCEEDED)


def _checked_int(name, value, low, high):
    # The common case (a Python int in range) costs two comparisons.
    if type(value) is not int:
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} = {value!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} = {value} is out of range [{low}, {high}]")
    return value


class OrderLifecycle:
    """The tracked-order methods of :class:`kernel.Inventory`."""

    _one = None  # reserve_one's bound kernel, made on first use

    # ------------------------------------------------------------ state views
    def state_arrays(self):
        """The 16 state arrays, in the order the single-order kernels take them.

        For calling ``reserve_one`` from your own compiled code: Numba
        (``kernel._numba.kernels.reserve_one(*state, sku, qty, max_price,
        order_id, user_id, deadline)`` inside ``@njit``) or Cython
        (``kernel/_cython/tracked.pxd``); see the README.  The arrays are live
        views of this inventory's state; use them only through those kernels.
        """
        self._check_open()
        return (self._stock, self._price, self._offer_start, self._offer_by_priority, self._offer_sku, self._limit,
                self._limit_key, self._limit_count, self._order_word, self._order_user, self._order_deadline,
                self._order_fill_start, self._order_fill_end, self._fill_offer, self._fill_qty, self._counters)

    def _give_back_args(self):
        return (self._stock, self._offer_sku, self._limit, self._limit_key, self._limit_count, self._order_word,
                self._order_user)

    def _require_tracking(self, what):
        self._check_open()
        if not self.tracks_orders:
            raise ValueError(f"{what}: this inventory does not track orders (create it with max_orders=...)")


    # --------------------------------------------------------------- budgets
    def _take_budgets(self, wants):
        """Take every ``{counter: amount}`` budget or none (CapacityError)."""
        index = np.fromiter(wants, dtype=np.int64, count=len(wants))
        amount = np.fromiter(wants.values(), dtype=np.int64, count=len(wants))
        old = np.empty(len(wants), dtype=np.int64)
        failed = self._kernels.take_budgets(self._counters, index, amount, old)
        if failed >= 0:
            which = int(index[failed])
            raise CapacityError(f"{_BUDGET_NAMES[which]} is full: {int(amount[failed])} more needed, "
                                f"{int(self._counters[which])} left; nothing changed")
        return old

    def _give_budgets(self, unused):
        unused = {k: v for k, v in unused.items() if v}
        if unused:
            self._take_budgets({k: -v for k, v in unused.items()})

    # ------------------------------------------------------------- reserving
    def _reserve_tracked(self, orders, ordered, n_threads, hold_until):
        from .inventory import Result  # the facade module imports this one

        if orders.order_id is None:
            raise ValueError("order_id: required, this inventory tracks orders")
        ids = as_order_ids("order_id", orders.order_id)
        if orders.user_id is None:
            if self.has_limits:
                raise ValueError("user_id: required, this inventory has per-user limits")
            users = np.zeros(orders.n_orders, dtype=np.int64)
        else:
            users = orders.user_id
            check_at_least("user_id", users, 0, ">= 0")
            if users.size and users.max() > self._max_user:
                pos = int((users > self._max_user).argmax())
                raise ValueError(f"user_id[{pos}] = {users[pos]} must be <= {self._max_user}")
        deadline = self._deadlines(hold_until, orders.n_orders)
        kernels, counters = self._kernels, self._counters
        if ordered:
            n_threads = 1  # ids and caps span SKUs: only arrival order is the serial outcome
        sku = orders.sku
        widths = self._offers_per_sku[sku]
        capped = self._capped[sku]
        budgets = {spec.ORDERS_LEFT: orders.n_orders, spec.PAIRS_LEFT: int(np.count_nonzero(capped)),
                   spec.FILLS_LEFT: int(widths.sum())}
        try:
            self._take_budgets(budgets)
        except CapacityError:
            # Near capacity, count only what could be new: ids and (user,
            # SKU) pairs already in the tables stay there, so those need no
            # room (retries are still answered when the table is full).
            # Every other id might be new.  (Two numpy probes: too slow to
            # do on every call.)
            maybe_new = probe(self._order_word, ids, spec.ID_MASK) < 0
            lines = maybe_new[orders.line_order]
            budgets = {spec.ORDERS_LEFT: int(np.count_nonzero(maybe_new)),
                       spec.PAIRS_LEFT: self._new_pairs_at_most(users[orders.line_order], sku, capped & lines),
                       spec.FILLS_LEFT: int(widths.sum(where=lines))}
            self._take_budgets(budgets)

        status = np.empty(orders.n_orders, dtype=np.int8)
        order_slot = np.empty(orders.n_orders, dtype=np.int64)
        new_ids = kernels.claim_orders(self._order_word, ids, order_slot, status, n_threads)
        claimed = order_slot >= 0
        widths = np.where(claimed[orders.line_order], widths, 0)
        n_fills = int(widths.sum())
        first = int(self._take_budgets({spec.FILL_CURSOR: -n_fills})[0])  # fetch-add: the log's next range
        fill_slot = np.empty(orders.n_lines + 1, dtype=np.int64)
        fill_slot[0] = first
        np.cumsum(widths, out=fill_slot[1:])
        fill_slot[1:] += first

        state = self.state_arrays()
        batch = (orders.line_start, sku, orders.qty, orders.price_limits(), fill_slot, users, deadline, order_slot)
        rollbacks_before = counters[spec.ROLLBACKS]
        new_pairs = kernels.reserve_tracked(*state[:15], *batch, np.flatnonzero(claimed), status, counters,
                                            n_threads)
        # As in Inventory.reserve: after a rollback, re-run the refused one by
        # one, so none is refused for stock (or cap room) there at the end.
        if not ordered and counters[spec.ROLLBACKS] != rollbacks_before:
            retry = np.flatnonzero(claimed & np.isin(status, _REFUSED))
            new_pairs += kernels.reserve_tracked(*state[:15], *batch, retry, status, counters, 1)
        kernels.settle_refused(self._order_word, order_slot, np.flatnonzero(claimed & np.isin(status, _REFUSED)),
                               n_threads)
        self._give_budgets({spec.ORDERS_LEFT: budgets[spec.ORDERS_LEFT] - new_ids,
                            spec.PAIRS_LEFT: budgets[spec.PAIRS_LEFT] - new_pairs,
                            spec.FILLS_LEFT: budgets[spec.FILLS_LEFT] - n_fills})
        # What each accepted line took, as the kernels left the log (later
        # cancels zero the log, not this copy).
        taken = self._fill_qty[first:first + n_fills].copy()
        return Result(self, orders, status, taken, fill_slot - first, n_threads)

    def _new_pairs_at_most(self, users, sku, capped):
        """How many (user, SKU) pairs of these lines could be new to the limit
        table (pairs already there stay there; repeats within the batch are
        counted each time, an over-estimate given back afterwards)."""
        keys = users[capped] * self.n_skus + sku[capped] + 1
        return int(np.count_nonzero(probe(self._limit_key, keys) < 0))

    @staticmethod
    def _deadlines(hold_until, n_orders):
        if hold_until is None:
            return np.full(n_orders, NO_DEADLINE, dtype=np.int64)
        if np.ndim(hold_until) == 0:
            return np.full(n_orders, as_int64("hold_until", [hold_until])[0], dtype=np.int64)
        deadline = as_int64("hold_until", hold_until)
        if deadline.size != n_orders:
            raise ValueError(f"hold_until: has {deadline.size} entries but the batch has {n_orders} orders")
        return deadline

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
        one = self._one or self._bound_reserve_one()
        if max_price is None:
            max_price = NO_LIMIT  # any price
        if hold_until is None:
            hold_until = NO_DEADLINE
        # One fused test for the common case (Python ints in range): the six
        # separate checks below cost more than the kernel itself.
        if not (type(sku) is int and type(qty) is int and type(order_id) is int and type(user_id) is int
                and type(max_price) is int and type(hold_until) is int
                and 0 <= sku < self.n_skus and 0 < qty <= INT64_MAX and 0 <= order_id <= MAX_ORDER_ID
                and 0 <= user_id <= self._max_user and 0 <= max_price <= INT64_MAX
                and -INT64_MAX - 1 <= hold_until <= INT64_MAX):
            sku = _checked_int("sku", sku, 0, self.n_skus - 1)
            qty = _checked_int("qty", qty, 1, INT64_MAX)
            order_id = _checked_int("order_id", order_id, 0, MAX_ORDER_ID)
            user_id = _checked_int("user_id", user_id, 0, self._max_user)
            max_price = _checked_int("max_price", max_price, 0, INT64_MAX)
            hold_until = _checked_int("hold_until", hold_until, -INT64_MAX - 1, INT64_MAX)
        code = one(sku, qty, max_price, order_id, user_id, hold_until)
        if code < 0:
            which = _FULL[code]
            raise CapacityError(f"{_BUDGET_NAMES[which]} is full ({int(self._counters[which])} left); "
                                f"nothing changed")
        return _STATUSES[code]

    def _bound_reserve_one(self):
        """The backend's reserve_one with this inventory's arrays bound once
        (so a call converts no array): ``(sku, qty, max_price, order_id,
        user_id, deadline) -> status code``, unchecked."""
        self._require_tracking("reserve_one")
        if self._one is None:
            self._one = self._kernels.bind_reserve_one(*self.state_arrays())
        return self._one

    # ------------------------------------------------------------- lifecycle
    def _ids_and_threads(self, what, order_ids, threads):
        self._require_tracking(what)
        ids = as_order_ids("order_ids", order_ids)
        n_threads = backends.resolve_threads(self._kernels, check_threads(threads) or self.threads, ids.size)
        return ids, n_threads

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
        ids, n_threads = self._ids_and_threads("confirm", order_ids, threads)
        outcome = np.empty(ids.size, dtype=np.int8)
        self._kernels.confirm_orders(self._order_word, ids, outcome, n_threads)
        return outcome

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
        ids, n_threads = self._ids_and_threads("cancel", order_ids, threads)
        outcome = np.empty(ids.size, dtype=np.int8)
        maybe_new = ids.size
        try:
            self._take_budgets({spec.ORDERS_LEFT: maybe_new})
        except CapacityError:  # as in reserve: known ids need no room
            maybe_new = int(np.count_nonzero(probe(self._order_word, ids, spec.ID_MASK) < 0))
            self._take_budgets({spec.ORDERS_LEFT: maybe_new})
        new = self._kernels.cancel_orders(*self._give_back_args(), self._order_fill_start, self._order_fill_end,
                                          self._fill_offer, self._fill_qty, ids, outcome, n_threads)
        self._give_budgets({spec.ORDERS_LEFT: maybe_new - new})
        return outcome

    def expire(self, now, *, threads=None):
        """End every hold whose deadline (``hold_until``) is ``<= now``,
        giving its stock and cap count back.

        Returns
        -------
        numpy.ndarray of int64
            The ids that expired in this call, ascending.
        """
        self._require_tracking("expire")
        now = _checked_int("now", now, -INT64_MAX - 1, INT64_MAX)
        n_threads = backends.resolve_threads(self._kernels, check_threads(threads) or self.threads,
                                             self._order_word.size)
        expired = np.zeros(self._order_word.size, dtype=np.int8)
        self._kernels.expire_orders(*self._give_back_args(), self._order_deadline, self._order_fill_start,
                                    self._order_fill_end, self._fill_offer, self._fill_qty, now, expired, n_threads)
        return np.sort(self._order_word[np.flatnonzero(expired)] & spec.ID_MASK)

    def recover(self):
        """Finish what processes killed mid-reserve left: give back what each
        unfinished order logged, and end it REFUSED (or CANCELLED).

        Call it only while no reserve runs on this inventory in any process
        (e.g. when a supervisor restarts its workers, or on reopening a
        mapped file): an unfinished order of a live process looks the same.

        Returns
        -------
        int
            How many orders it finished.

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
          line's units per killed process) stay out of stock, and a cap
          count taken for that line stays counted.  Lost, never oversold.
        """
        self._require_tracking("recover")
        return self._kernels.recover_orders(*self._give_back_args(), self._order_fill_start, self._order_fill_end,
                                            self._fill_offer, self._fill_qty, 1)

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
        self._check_open()
        offer = as_int64("offer", np.atleast_1d(offer))
        qty = as_int64("qty", np.atleast_1d(qty))
        if qty.size != offer.size:
            raise ValueError(f"qty: has {qty.size} entries but offer has {offer.size}")
        check_at_least("offer", offer, 0, "an offer id >= 0")
        if offer.size and offer.max() >= self.n_offers:
            pos = int((offer >= self.n_offers).argmax())
            raise ValueError(f"offer[{pos}] = {offer[pos]} is out of range [0, {self.n_offers})")
        check_at_least("qty", qty, 0, ">= 0")
        check_sum_fits("qty", qty)
        added = np.bincount(offer, weights=qty, minlength=self.n_offers)  # float: only a bound
        if (added > 0).any() and (self._stock.astype(np.float64) + added).max() >= 2.0**63:
            pos = int(np.argmax(self._stock.astype(np.float64)[offer] + added[offer] >= 2.0**63))
            raise ValueError(f"qty[{pos}]: offer {offer[pos]} would hold more than int64 allows")
        n_threads = backends.resolve_threads(self._kernels, check_threads(threads) or self.threads, offer.size)
        self._kernels.give_back(self._stock, offer, qty, n_threads)

    # ---------------------------------------------------------- inspecting
    def state_of(self, order_ids):
        """The :class:`kernel.OrderState` of each id (int8 codes; a snapshot)."""
        self._require_tracking("state_of")
        ids = as_order_ids("order_ids", order_ids)
        slot = probe(self._order_word, ids, spec.ID_MASK)
        words = self._order_word[np.maximum(slot, 0)]
        return np.where(slot >= 0, words >> spec.STATE_SHIFT, 0).astype(np.int8)

    def limit_used(self, user_ids, skus):
        """Units of ``skus[k]`` that ``user_ids[k]`` holds or bought (counted
        against a cap; 0 for uncapped SKUs)."""
        self._require_tracking("limit_used")
        users = as_int64("user_ids", user_ids)
        skus = as_int64("skus", skus)
        if users.size != skus.size:
            raise ValueError(f"skus: has {skus.size} entries but user_ids has {users.size}")
        check_at_least("user_ids", users, 0, ">= 0")
        check_at_least("skus", skus, 0, "a SKU id >= 0")
        if skus.size and skus.max() >= self.n_skus:
            pos = int((skus >= self.n_skus).argmax())
            raise ValueError(f"skus[{pos}] = {skus[pos]} is out of range [0, {self.n_skus})")
        slot = probe(self._limit_key, users * self.n_skus + skus + 1)
        return np.where(slot >= 0, self._limit_count[np.maximum(slot, 0)], 0)
