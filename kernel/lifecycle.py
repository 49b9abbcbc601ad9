"""Tracked orders: the component of an :class:`~kernel.Inventory` that runs
idempotent reserves, per-user caps, and holds that are confirmed, cancelled
or expire.

The kernels are :mod:`kernel.reference.tracked` / :mod:`kernel.reference.one`
and their Cython and Numba mirrors.  :class:`TrackedOrders` validates what
only tracked calls take (ids, users, deadlines), takes the table budgets
before anything changes, runs the kernels, and gives back a budget a call
turns out not to need.  Its whole interface to the inventory is the
constructor: the state arrays, the kernel module, the thread policy and the
number of SKUs.  The public entry points (with their documentation) are the
:class:`~kernel.Inventory` methods that delegate here.
"""

import operator
from typing import NamedTuple

import numpy as np

from . import backends, codes
from .codes import Status
from .inputs import INT64_MAX, as_int64, check_at_least, check_below, check_threads
from .tracking import MAX_ORDER_ID, NO_DEADLINE, NO_LIMIT, CapacityError, as_order_ids, probe

__all__ = ["ReserveReport", "TrackedOrders", "checked_int", "hold_deadlines", "user_sku_pairs"]

_STATUSES = tuple(Status)
_BUDGET_NAMES = {codes.ORDERS_LEFT: "order table (max_orders)", codes.PAIRS_LEFT: "limit table (max_user_skus)",
                 codes.FILLS_LEFT: "fill log (max_fills)"}
_FULL = {codes.ORDER_TABLE_FULL: codes.ORDERS_LEFT, codes.LIMIT_TABLE_FULL: codes.PAIRS_LEFT,
         codes.FILL_LOG_FULL: codes.FILLS_LEFT}
_REFUSED = (Status.OUT_OF_STOCK, Status.LIMIT_EXCEEDED)
_OUT_OF_STOCK8 = np.int8(Status.OUT_OF_STOCK)
# Orders per chunk of claim_and_reserve: a thread claims a chunk, takes its
# fill-log range, then reserves it while the chunk's records are in cache.
TRACKED_CHUNK = 1024
# Work arrays kept for the next call: at most this many sets, each at most
# this many words (2**23: 64 MiB; a bigger batch allocates its own each time).
_SPARE_WORK = 2
_SPARE_WORDS = 1 << 23


class ReserveReport(NamedTuple):
    """What a tracked reserve did, beyond its statuses, for a durable
    inventory's journal (:func:`kernel.journal.effects.reserve_tracked`),
    which reads it right after the call, under its call lock: ``order_slot``
    and ``pair_slot`` are work arrays the next call reuses.

    ``order_slot[i]``: the slot order ``i`` claimed (-1: its id was there
    already).  ``pair_slot[l]``: the limit-table slot line ``l``'s (user,
    SKU) pair got where the kernels counted it (or tried to) against a cap,
    -1 elsewhere.  ``order_fills[i]``: the fills word an accepted order
    ``i``'s record holds (``first << FILL_COUNT_BITS | count``; meaningless
    for the others).  ``rolled_back``: whether any order of the call gave
    back what it took (a rollback): only then can a claimed order have ended
    CANCELLED (a cancel came first, ``publish_or_undo``).  Then the batch as
    the kernels read it: ``order_id``, ``user_id``, ``deadline`` per order,
    ``sku``, ``qty``, ``line_order`` per line (None: one line per order)."""
    order_slot: np.ndarray
    pair_slot: np.ndarray
    order_fills: np.ndarray
    rolled_back: bool
    order_id: np.ndarray
    user_id: np.ndarray
    deadline: np.ndarray
    sku: np.ndarray
    qty: np.ndarray
    line_order: np.ndarray


def checked_int(name, value, low, high):
    """``value`` as a Python int in ``[low, high]``, else ``TypeError`` /
    ``ValueError`` naming it (the message uses the half-open notation of
    every other range error: ``sku = 2 is out of range [0, 2)``)."""
    # The common case (a Python int in range) costs two comparisons.
    if type(value) is not int:
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} = {value!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} = {value} is out of range [{low}, {high + 1})")
    return value


def hold_deadlines(hold_until, n_orders):
    """Each order's hold deadline from ``hold_until`` (``None``: no
    deadline; one number for every order; or one per order), checked, as a
    read-only array."""
    if hold_until is None:
        return _constant(NO_DEADLINE, n_orders)
    if np.ndim(hold_until) == 0:
        deadline = np.full(n_orders, as_int64("hold_until", [hold_until])[0], dtype=np.int64)
    else:
        deadline = as_int64("hold_until", hold_until)
        if deadline.size != n_orders:
            raise ValueError(f"hold_until: has {deadline.size} entries but the batch has {n_orders} orders")
    # Read-only like the shared no-deadline array, so a compiled kernel sees
    # one array type (Numba compiles a read-only array apart).
    view = deadline.view()
    view.flags.writeable = False
    return view


_CONSTANTS = {}


def _constant(value, n):
    """A read-only int64 array of ``n`` copies of ``value`` (a view of one
    kept per value, grown as needed, shared by every caller: the kernels only
    read it), for the two values that need one: NO_DEADLINE and 0.  A
    tracked reserve without deadlines (or buyers) passes one per order; a
    new ``np.full`` each call cost a pass over 8 MB per 1M orders and, when
    the allocator handed out fresh pages, their page faults (about 10 ms per
    8 MB on the 2-core VM)."""
    kept = _CONSTANTS.get(value)
    if kept is None or kept.size < n:
        kept = np.full(max(n, 1024), value, dtype=np.int64)
        kept.flags.writeable = False
        _CONSTANTS[value] = kept  # (a race makes two: both right)
    return kept[:n]


def user_sku_pairs(user_ids, skus, n_skus):
    """``(users, skus)`` for :meth:`~kernel.Inventory.limit_used`, checked:
    int64 arrays of equal length, users ``>= 0``, SKUs in ``[0, n_skus)``."""
    users = as_int64("user_ids", user_ids)
    skus = as_int64("skus", skus)
    if users.size != skus.size:
        raise ValueError(f"skus: has {skus.size} entries but user_ids has {users.size}")
    check_at_least("user_ids", users, 0, ">= 0")
    check_at_least("skus", skus, 0, "a SKU id >= 0")
    check_below("skus", skus, n_skus)
    return users, skus


def short_orders(units, orders):
    """Per order: whether some line asks for more than ``units[sku]``, the
    units its SKU has in all (``stock`` itself on a one-offer-per-SKU
    inventory): the kernels' read-only stock pre-check refuses such an order
    before any write."""
    short_line = units[orders.sku] < orders.qty
    if orders.n_lines == orders.n_orders:
        return short_line
    short = np.zeros(orders.n_orders, dtype=bool)
    short[orders.line_order[short_line]] = True
    return short


class TrackedOrders:
    """The tracked-order operations on one inventory's state.

    Parameters
    ----------
    state : kernel.state.StateArrays
        The inventory's state arrays (live views).
    kernels : module
        The backend's kernel module.
    n_skus : int

    The lifecycle calls take ``threads`` as the inventory resolved it (the
    call's argument, else the inventory's default) and apply the thread
    policy (:func:`kernel.backends.resolve_threads`) to their size here: the
    component holds no reference back to its inventory.
    """

    def __init__(self, state, kernels, n_skus):
        self.state = state
        self.kernels = kernels
        self.n_skus = n_skus
        # A (user, SKU) pair is keyed by user * n_skus + sku + 1, which must fit int64.
        self.max_user = (INT64_MAX - n_skus) // max(n_skus, 1)
        self.capped = state.limit != NO_LIMIT
        self.has_limits = bool(self.capped.any())
        self.offers_per_sku = np.diff(state.offer_start)
        # Where every SKU has as many offers (is capped or not alike), a
        # batch's budgets need no per-line gather: those values, else None.
        same = self.offers_per_sku.size and (self.offers_per_sku == self.offers_per_sku[0]).all()
        self.same_width = int(self.offers_per_sku[0]) if same else None
        self.all_capped = int(self.capped[0]) if self.capped.size and (self.capped == self.capped[0]).all() else None
        # Offer s is the one offer of SKU s (the inventory's one_offer_per_sku):
        # then an unpriced batch may take the kernels' ``direct`` path, which
        # reads stock[s] instead of offer_start / offer_by_priority / price
        # (three random lines of big arrays per line on a big sale).
        self.one_offer_per_sku = (state.stock.size == n_skus
                                  and bool(np.all(state.offer_sku == np.arange(n_skus))))
        self._bound_one = None  # reserve_one's kernel with the arrays bound, made on first use
        self.last_reserve = None  # a ReserveReport: see the end of reserve
        # Whether reserve reports last_reserve (a durable inventory reads it
        # right after the call, under its journal lock, before its next call
        # can reuse the work arrays in it).  Only then are the pair slots
        # filled with -1 first: a pass over 8 MB per 1M lines that nothing
        # else needs (the kernels write only the entries of capped lines they
        # reach).
        self.report_slots = False
        self._spare = []  # work arrays of finished calls (_work_arrays)

    def _work_arrays(self, n_orders, n_lines):
        """``(order slots, pair slots, fill slots)`` with room for a batch
        (``n_lines + 1`` fill slots): a set a finished call of this inventory
        left (``list.pop`` is atomic, so concurrent callers never share one),
        or new ones.  A new ``np.empty`` per call meant fresh pages whenever
        the allocator had given the last ones back to the OS: on the 2-core
        VM their page faults cost a 1M-order call up to ~45 ms inside the
        kernels, on top of their ~60 ms.  (Kept per inventory, not in one
        pool for the process: a pool let a new inventory's first call find
        warm pages, 104.6 -> 60.4 ms median when the allocator had given its
        pages back, but measured 5-10% slower on one thread in the
        benchmark's rounds, a new inventory each, where the allocator still
        had them: 65-75 against 62-70 ms, alternating processes.)"""
        try:
            work = self._spare.pop()
        except IndexError:
            work = None
        if work is None or work[0].size < n_orders or work[1].size < n_lines:
            work = (np.empty(n_orders, dtype=np.int64), np.empty(n_lines, dtype=np.int64),
                    np.empty(n_lines + 1, dtype=np.int64))
        return work

    def _give_back_args(self):
        s = self.state
        return (s.stock, s.offer_sku, s.limit, s.limit_table, s.order_table, s.fill_offer, s.fill_qty)

    @property
    def pair_keys(self):
        """The limit table's (user, SKU) keys (a strided view)."""
        return self.state.limit_table[codes.PAIR_KEY_AT::codes.PAIR_STRIDE]

    @property
    def order_words(self):
        """The order table's id/state words (a strided view)."""
        return self.state.order_table[codes.ORDER_WORD_AT::codes.ORDER_STRIDE]

    # --------------------------------------------------------------- budgets
    def _take_budgets(self, wants):
        """Take every ``{counter: amount}`` budget or none (CapacityError)."""
        counters = self.state.counters
        index = np.fromiter(wants, dtype=np.int64, count=len(wants))
        amount = np.fromiter(wants.values(), dtype=np.int64, count=len(wants))
        old = np.empty(len(wants), dtype=np.int64)
        failed = self.kernels.take_budgets(counters, index, amount, old)
        if failed >= 0:
            which = int(index[failed])
            raise CapacityError(f"{_BUDGET_NAMES[which]} is full: {int(amount[failed])} more needed, "
                                f"{int(counters[which])} left; nothing changed")
        return old

    def _give_budgets(self, unused):
        unused = {k: v for k, v in unused.items() if v}
        if unused:
            self._take_budgets({k: -v for k, v in unused.items()})

    # ------------------------------------------------------------- reserving
    def reserve(self, orders, ordered, n_threads, hold_until):
        """Reserve a checked batch (SKUs in range): ``(status, taken,
        slot_start)`` for :class:`kernel.Result` (``taken`` is what each line
        took from each of its SKU's offers, as the log held it; both
        ``None`` on the direct path, where an accepted line took its whole
        qty from offer ``sku[line]``, as on the plain one-offer paths)."""
        if orders.order_id is None:
            raise ValueError("order_id: required, this inventory tracks orders")
        ids = orders.order_id
        if orders.unsigned_max("order_id") > MAX_ORDER_ID:  # the batch's, computed once: no pass here
            as_order_ids("order_id", ids)  # names the first bad id
        if orders.user_id is None:
            if self.has_limits:
                raise ValueError("user_id: required, this inventory has per-user limits")
            users = _constant(0, orders.n_orders)
        else:
            users = orders.user_id
            if orders.unsigned_max("user_id") > self.max_user:  # one pass for both bounds, once per batch
                check_at_least("user_id", users, 0, ">= 0")
                pos = int((users > self.max_user).argmax())
                raise ValueError(f"user_id[{pos}] = {users[pos]} must be <= {self.max_user}")
        deadline = hold_deadlines(hold_until, orders.n_orders)
        state, kernels = self.state, self.kernels
        counters = state.counters
        if ordered:
            n_threads = 1  # ids and caps span SKUs: only arrival order is the serial outcome
        sku = orders.sku
        # Per-line offers and caps: no gather where every SKU has the same.
        widths = self.offers_per_sku[sku] if self.same_width is None else None
        capped = self.capped[sku] if self.all_capped is None else None
        budgets = {codes.ORDERS_LEFT: orders.n_orders,
                   codes.PAIRS_LEFT: (int(np.count_nonzero(capped)) if capped is not None
                                      else orders.n_lines * self.all_capped),
                   codes.FILLS_LEFT: int(widths.sum()) if widths is not None else orders.n_lines * self.same_width}
        if budgets[codes.FILLS_LEFT] > codes.MAX_ORDER_FILLS and orders.n_lines > orders.n_orders:
            if widths is None:
                widths = self.offers_per_sku[sku]
            # An order record packs its fill-log range in one word (codes.ORDER_FILLS_AT).
            upto = np.concatenate(([0], np.cumsum(widths)))
            per_order = upto[orders.line_start[1:]] - upto[orders.line_start[:-1]]
            if per_order.max() > codes.MAX_ORDER_FILLS:
                pos = int(per_order.argmax())
                raise ValueError(f"order {pos}: its lines name {int(per_order[pos])} offers, a tracked order "
                                 f"may name at most {codes.MAX_ORDER_FILLS}")
        try:
            self._take_budgets(budgets)
        except CapacityError:
            # Near capacity, count only what could be new: ids and (user,
            # SKU) pairs already in the tables stay there, so those need no
            # room (retries are still answered when the table is full).
            # Every other id might be new.  (Two numpy probes: too slow to
            # do on every call.)
            maybe_new = probe(self.order_words, ids, codes.ID_MASK) < 0
            lines = maybe_new[orders.line_order]
            widths, capped = self.offers_per_sku[sku], self.capped[sku]
            budgets = {codes.ORDERS_LEFT: int(np.count_nonzero(maybe_new)),
                       codes.PAIRS_LEFT: self._new_pairs_at_most(users[orders.line_order], sku, capped & lines),
                       codes.FILLS_LEFT: int(widths.sum(where=lines))}
            self._take_budgets(budgets)

        n_orders, n_lines = orders.n_orders, orders.n_lines
        status = np.empty(n_orders, dtype=np.int8)
        # Both conditions: a price limit needs the price check, which direct skips.
        direct = int(self.one_offer_per_sku and orders.max_price is None)
        # Work arrays that outlive the call only as last_order_slot /
        # last_pair_slot: reused (see _work_arrays).  Per line, the
        # limit-table slot of its (user, SKU) pair, where the kernels counted
        # (or tried to count) it against a cap; -1 elsewhere (when reported).
        work = self._work_arrays(n_orders, n_lines)
        order_slot, pair_slot = work[0][:n_orders], work[1][:n_lines]
        if self.report_slots:
            pair_slot.fill(-1)
        # Each line's first fill-log entry.  The direct path hands the Result
        # no log copy (an accepted line took its qty from offer sku[line]),
        # so its fill slots are work too: reused, like the slots above (a new
        # 8 MB array and an 8 MB copy of the log per 1M lines cost 15-35 ms
        # when their pages were fresh: see _work_arrays).  The general path
        # gives them to the Result (its slot_start): new ones.
        fill_slot = work[2][:n_lines + 1] if direct else np.empty(n_lines + 1, dtype=np.int64)
        chunks = np.empty((-(-n_orders // TRACKED_CHUNK), 5), dtype=np.int64)
        batch = (orders.line_start, sku, orders.qty, orders.price_limits())
        rollbacks_before = counters[codes.ROLLBACKS]
        # One pass: claim, take this chunk's fill-log range, reserve (and in
        # ordered mode settle the refused, which are never re-run there).
        kernels.claim_and_reserve(*state[:-1], *batch, ids, users, deadline, order_slot, fill_slot, pair_slot, status,
                                  chunks, counters, TRACKED_CHUNK, ordered, direct, n_threads)
        new_ids, new_pairs = int(chunks[:, 2].sum()), int(chunks[:, 3].sum())
        used = chunks[:, 1]
        n_fills = int(used.sum())
        if not ordered:
            # A refused order is still PENDING: re-run (G4), then settle the
            # still refused, which the statuses say (the kernel scans them:
            # no index of the refused, 7 MB of fresh pages per 1M orders in
            # a flash sale).
            def rerun_refused(refused):
                if direct:
                    # An order with a line whose SKU has less than its qty
                    # left is refused again at the read-only stock pre-check,
                    # before any write, as OUT_OF_STOCK (stock only shrinks
                    # during the re-run): answer it so here.  A flash sale on
                    # 2 threads re-ran ~900k sold-out orders per 1M in a
                    # third of its calls, 6-10 ms each.  (Masks throughout:
                    # selecting through an index of the refused took 11.7 ms
                    # per 1M-order flash sale, these 2.6.)
                    short = short_orders(state.stock, orders)
                    status[refused & short] = _OUT_OF_STOCK8
                    refused &= ~short
                again = backends.arrival_order(refused)
                if again.size == 0:
                    return 0
                return kernels.reserve_tracked(*state[:-1], *batch, fill_slot, pair_slot, users, deadline,
                                               order_slot, again, status, counters, direct, 1)

            # On one thread the kernel's own rollbacks need no re-run
            # (backends says why): a marketplace batch of carts whose lines
            # compete re-ran its refused orders on every call, ~20% of a
            # one-thread call.
            own_serial = int(chunks[:, 4].sum()) if n_threads <= 1 else 0
            rerun = backends.rerun_refused_after_rollback(counters, rollbacks_before, status, _REFUSED,
                                                          rerun_refused, own_serial)
            if rerun is not None:
                new_pairs += rerun
            kernels.settle_refused(state.order_table, order_slot, status, n_threads)
        self._give_budgets({codes.ORDERS_LEFT: budgets[codes.ORDERS_LEFT] - new_ids,
                            codes.PAIRS_LEFT: budgets[codes.PAIRS_LEFT] - new_pairs,
                            codes.FILLS_LEFT: budgets[codes.FILLS_LEFT] - n_fills})
        # What each accepted line took, as the kernels left the log (later
        # cancels zero the log, not this copy), laid out claimed lines in
        # order: each chunk's range follows the one before.
        # The slot each order claimed (-1: its id was there already) and the
        # limit-table slot each line's pair got (-1: an uncapped SKU, or a
        # line no take reached): a durable inventory reads them right after
        # this call, under its call lock, to journal the rows without
        # probing every id and pair again.  (A rerun above wrote the same
        # slots again and kept the first run's others: a rolled-back line's
        # pair stays in the table, count 0.)
        if self.report_slots:
            self.last_reserve = ReserveReport(
                order_slot, pair_slot, self._order_fills(orders, fill_slot, direct, widths),
                bool(counters[codes.ROLLBACKS] != rollbacks_before), ids, users, deadline, sku, orders.qty,
                None if orders.one_line_per_order else orders.line_order)
        if len(self._spare) < _SPARE_WORK and sum(a.size for a in work) <= _SPARE_WORDS:
            self._spare.append(work)
        if direct:
            return status, None, None
        shift = chunks[:, 0] - (np.cumsum(used) - used)  # log entry - position in ``taken``, per chunk
        if n_orders == 0 or (shift == shift[0]).all():  # one block (one thread, no other caller meanwhile)
            first = int(shift[0]) if n_orders else 0
            taken = state.fill_qty[first:first + n_fills].copy()
            fill_slot[-1] = first + n_fills
            fill_slot -= first
            return status, taken, fill_slot
        taken = state.fill_qty[np.repeat(shift, used) + np.arange(n_fills)]
        chunk_lines = np.diff(orders.line_start[np.minimum(np.arange(chunks.shape[0] + 1) * TRACKED_CHUNK, n_orders)])
        fill_slot[:-1] -= np.repeat(shift, chunk_lines)
        fill_slot[-1] = n_fills
        return status, taken, fill_slot

    @property
    def last_order_slot(self):
        """``last_reserve.order_slot`` (None before a reported reserve)."""
        return None if self.last_reserve is None else self.last_reserve.order_slot

    @property
    def last_pair_slot(self):
        """``last_reserve.pair_slot`` (None before a reported reserve)."""
        return None if self.last_reserve is None else self.last_reserve.pair_slot

    def _order_fills(self, orders, fill_slot, direct, widths):
        """The fills word each order's record gets if it is accepted, from
        the lines' first fill-log entries (``fill_slot``, before reserve
        makes them relative to the Result's copy): what ``take_tracked``
        writes, ``fill_slot[first line] << FILL_COUNT_BITS | entries``, the
        entries running to the end of the order's last line (one per line
        on the direct path, else one per offer of the line's SKU: ``widths``
        per line, reserve's, or None where every SKU has ``same_width``)."""
        width = 1 if direct else (self.same_width if widths is None else widths)
        if orders.one_line_per_order:
            first = last = fill_slot[:orders.n_orders]
            last_width = width
        else:
            first = fill_slot[orders.line_start[:-1]]
            last_line = orders.line_start[1:] - 1
            last = fill_slot[last_line]
            last_width = width[last_line] if np.ndim(width) else width
        return first << codes.FILL_COUNT_BITS | (last + last_width - first)

    def _new_pairs_at_most(self, users, sku, capped):
        """How many (user, SKU) pairs of these lines could be new to the limit
        table: the distinct pairs not in it yet (pairs already there stay
        there).  Counting repeats within the batch each time would refuse a
        batch whose few users come back on many lines, although the table
        has room for every pair it adds."""
        keys = np.unique(users[capped] * self.n_skus + sku[capped] + 1)
        return int(np.count_nonzero(probe(self.pair_keys, keys) < 0))

    def reserve_one(self, sku, qty, order_id, user_id, max_price, hold_until):
        """One single-line order (arguments as for Inventory.reserve_one)."""
        one = self._bound_one or self.bound_reserve_one()
        if max_price is None:
            max_price = NO_LIMIT  # any price
        if hold_until is None:
            hold_until = NO_DEADLINE
        # One fused test for the common case (Python ints in range): the six
        # separate checks below cost more than the kernel itself.
        if not (type(sku) is int and type(qty) is int and type(order_id) is int and type(user_id) is int
                and type(max_price) is int and type(hold_until) is int
                and 0 <= sku < self.n_skus and 0 < qty <= INT64_MAX and 0 <= order_id <= MAX_ORDER_ID
                and 0 <= user_id <= self.max_user and 0 <= max_price <= INT64_MAX
                and -INT64_MAX - 1 <= hold_until <= INT64_MAX):
            sku = checked_int("sku", sku, 0, self.n_skus - 1)
            qty = checked_int("qty", qty, 1, INT64_MAX)
            order_id = checked_int("order_id", order_id, 0, MAX_ORDER_ID)
            user_id = checked_int("user_id", user_id, 0, self.max_user)
            max_price = checked_int("max_price", max_price, 0, INT64_MAX)
            hold_until = checked_int("hold_until", hold_until, -INT64_MAX - 1, INT64_MAX)
        code = one(sku, qty, max_price, order_id, user_id, hold_until)
        if code < 0:
            which = _FULL[code]
            raise CapacityError(f"{_BUDGET_NAMES[which]} is full ({int(self.state.counters[which])} left); "
                                f"nothing changed")
        return _STATUSES[code]

    def bound_reserve_one(self):
        """The backend's reserve_one with the arrays bound once (so a call
        converts no array): ``(sku, qty, max_price, order_id, user_id,
        deadline) -> status code``, unchecked."""
        if self._bound_one is None:
            self._bound_one = self.kernels.bind_reserve_one(*self.state)
        return self._bound_one

    # ------------------------------------------------------------- lifecycle
    def _threads_for(self, threads, work):
        return backends.resolve_threads(self.kernels, check_threads(threads), work)

    def _ids_and_threads(self, order_ids, threads):
        ids = as_order_ids("order_ids", order_ids)
        return ids, self._threads_for(threads, ids.size)

    def confirm(self, order_ids, threads):
        ids, n_threads = self._ids_and_threads(order_ids, threads)
        outcome = np.empty(ids.size, dtype=np.int8)
        self.kernels.confirm_orders(self.state.order_table, ids, outcome, n_threads)
        return outcome

    def cancel(self, order_ids, threads):
        ids, n_threads = self._ids_and_threads(order_ids, threads)
        outcome = np.empty(ids.size, dtype=np.int8)
        maybe_new = ids.size
        try:
            self._take_budgets({codes.ORDERS_LEFT: maybe_new})
        except CapacityError:  # as in reserve: known ids need no room
            maybe_new = int(np.count_nonzero(probe(self.order_words, ids, codes.ID_MASK) < 0))
            self._take_budgets({codes.ORDERS_LEFT: maybe_new})
        new = self.kernels.cancel_orders(*self._give_back_args(), ids, outcome, n_threads)
        self._give_budgets({codes.ORDERS_LEFT: maybe_new - new})
        return outcome

    def expire(self, now, threads):
        now = checked_int("now", now, -INT64_MAX - 1, INT64_MAX)
        words = self.order_words
        n_threads = self._threads_for(threads, words.size)
        expired = np.zeros(words.size, dtype=np.int8)
        self.kernels.expire_orders(*self._give_back_args(), now, expired, n_threads)
        return np.sort(words[np.flatnonzero(expired)] & codes.ID_MASK)

    def recover(self):
        return self.kernels.recover_orders(*self._give_back_args(), 1)

    # ---------------------------------------------------------- inspecting
    def state_of(self, order_ids):
        ids = as_order_ids("order_ids", order_ids)
        words = self.order_words
        slot = probe(words, ids, codes.ID_MASK)
        return np.where(slot >= 0, words[np.maximum(slot, 0)] >> codes.STATE_SHIFT, 0).astype(np.int8)

    def limit_used(self, user_ids, skus):
        users, skus = user_sku_pairs(user_ids, skus, self.n_skus)
        slot = probe(self.pair_keys, users * self.n_skus + skus + 1)
        counts = self.state.limit_table[codes.PAIR_COUNT_AT::codes.PAIR_STRIDE]
        return np.where(slot >= 0, counts[np.maximum(slot, 0)], 0)
