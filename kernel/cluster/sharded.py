"""``ShardedInventory``: a tracked inventory sharded by SKU over Ray actors,
with carts across shards decided by try-confirm-cancel.

The caller's process is the coordinator: it checks every input, splits a
batch by shard, sends the per-shard parts in parallel (one actor call per
shard), and runs the try-confirm-cancel rounds of carts that span shards,
logging each round's carts and its decision (:mod:`.decisions`) before it
acts on them.  Each shard is a named Ray actor (:mod:`.shard`) owning a
durable inventory.  See the README section "A cluster of shards".
"""

import contextlib
import json
import os
import threading
import time
import uuid
import warnings

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from ..inputs import INT64_MAX, as_int64, check_at_least, check_sum_fits, check_threads
from ..codes import OrderState, Outcome, Status
from ..creation import offers as checked_offers
from ..creation import one_offer_per_sku
from ..lifecycle import checked_int, user_sku_pairs
from ..tracking import MAX_ORDER_ID, NO_DEADLINE, NO_LIMIT, as_order_ids
from .decisions import DecisionLog, LogBusy, LogFailed
from .routing import ShardMap, SplitBatch
from .shard import CONFIG, Shard

__all__ = ["ShardedInventory", "ShardUnavailable", "NAMESPACE"]

NAMESPACE = "kernel.cluster"  # the Ray namespace of every shard actor
# A shard actor's second thread (a Ray concurrency group): its checkpoints
# run there, beside the calls of the default group (one at a time, as
# before), since a checkpoint holds the shard's calls back only while it
# copies the state and then writes the snapshot for up to seconds.
MAINTENANCE = "maintenance"
_STATUSES = tuple(Status)


class ShardUnavailable(RuntimeError):
    """A shard did not answer in time (or its actor is gone for good).

    What the call did on the other shards stands (every call is idempotent
    by order id: retrying the same call is safe).  Carts that touched the
    shard were cancelled, or are finished by :meth:`ShardedInventory.recover`
    once the shard answers again.

    Attributes
    ----------
    shards : list of int
        The shards that did not answer.
    """

    def __init__(self, message, shards):
        super().__init__(message)
        self.shards = shards


def wall_ms():
    """The cluster's default clock: wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


class ShardedInventory:
    """A tracked inventory split by SKU over ``shards`` Ray actors.

    Use :meth:`create` (a new cluster in ``directory``) or :meth:`open`
    (an existing one, e.g. from another coordinator process or after a
    crash).  Both need ``ray.init`` to have run in this process.

    It answers like a tracked :class:`kernel.Inventory`: ``reserve``,
    ``reserve_one``, ``confirm``, ``cancel``, ``expire``, ``restock``,
    ``state_of``, ``limit_used``, ``stock``; the README says exactly what
    holds across shards and what does not.

    Notes
    -----
    A cart whose lines span shards is **final when accepted**: its parts
    are held on every shard (the try), then confirmed (CONFIRMED) once all
    held.  Single-shard orders are held until :meth:`confirm`,
    :meth:`cancel` or :meth:`expire`, as on one node.
    """

    # ------------------------------------------------------------ creating
    @classmethod
    def create(cls, directory, stock=None, *, offers=None, n_skus=None, shards, sku_shard=None, backend="auto",
               threads=1, max_orders, limit_per_user=None, max_user_skus=None, max_fills=None, fsync="batch",
               **options):
        """A new sharded inventory whose state lives under ``directory``.

        Parameters
        ----------
        directory : str or os.PathLike
            A directory that does not exist yet, or an empty one.  Each
            shard keeps its durable inventory in ``directory/shard-K`` (on
            the node its actor runs on: a shared or per-node disk), and each
            coordinator its log in ``directory/coordinators``.
        stock, offers, n_skus, backend, max_orders, limit_per_user, max_user_skus, max_fills, fsync
            As for :meth:`kernel.Inventory.create_durable`; SKU ids and
            offer ids are global, and every shard gets the same table sizes
            (``max_orders`` ids per shard).  ``max_orders`` is required:
            a cluster tracks its orders.
        shards : int
            Number of shard actors (1-62).
        sku_shard : array_like of int, optional
            The shard of each SKU (default ``sku % shards``).  A SKU never
            spans shards, so a hot SKU stays in one.
        threads : int
            Kernel threads per shard call (default 1: the shards share the
            machine's cores).
        **options
            As for :meth:`open` (``coordinator``, ``call_timeout_s``,
            ``try_timeout_ms``, ``clock``, ``actor_options``).
        """
        directory = os.path.abspath(os.fspath(directory))
        if (stock is None) == (offers is None):
            raise TypeError("give exactly one of stock or offers=(sku, qty, price)")
        if stock is not None:
            if n_skus is not None:
                raise TypeError("n_skus: only with offers= (stock has one entry per SKU)")
            qty, price, offer_sku, n = one_offer_per_sku(stock)
        else:
            if not isinstance(offers, (tuple, list)) or len(offers) != 3:
                raise TypeError("offers: must be a tuple (sku, qty, price)")
            qty, price, offer_sku, n = checked_offers(*offers, n_skus)
        if max_orders is None:
            raise ValueError("max_orders: required, a sharded inventory tracks its orders")
        check_threads(threads)
        shard_map = ShardMap(n, offer_sku, shards, sku_shard)
        if limit_per_user is not None and np.ndim(limit_per_user) != 0:
            limit = as_int64("limit_per_user", limit_per_user)
            if limit.size != n:
                raise ValueError(f"limit_per_user: has {limit.size} entries but the inventory has {n} SKUs")
            check_at_least("limit_per_user", limit, 0, ">= 0")
        else:
            limit = limit_per_user
        if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
            raise FileExistsError(f"directory: {directory!r} exists and is not an empty directory (open a "
                                  f"sharded inventory with ShardedInventory.open)")
        specs = []
        for s in range(shard_map.shards):
            mine = shard_map.shard_offers[s]
            spec = dict(max_orders=max_orders, max_user_skus=max_user_skus, max_fills=max_fills,
                        limit_per_user=limit if limit is None or np.ndim(limit) == 0
                        else limit[shard_map.shard_skus[s]].tolist())
            if stock is not None:
                spec["stock"] = qty[mine].tolist()
            else:
                spec["offers"] = (shard_map.sku_local[offer_sku[mine]].tolist(), qty[mine].tolist(),
                                  price[mine].tolist())
                spec["n_skus"] = int(shard_map.shard_skus[s].size)
            specs.append(spec)
        os.makedirs(os.path.join(directory, "coordinators"), exist_ok=True)
        config = dict(kind="kernel sharded inventory", format=1, name=uuid.uuid4().hex[:12], shards=shard_map.shards,
                      n_skus=n, offer_sku=offer_sku.tolist(), sku_shard=shard_map.sku_shard.tolist(),
                      has_limits=bool(limit is not None and np.any(np.asarray(limit) != NO_LIMIT)),
                      backend=backend, threads=threads, fsync=fsync, specs=specs)
        path = os.path.join(directory, CONFIG)
        with open(path + ".tmp", "w") as f:
            json.dump(config, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)  # last: before it, the directory is not a cluster
        return cls.open(directory, **options)

    @classmethod
    def open(cls, directory, *, coordinator="main", call_timeout_s=60.0, try_timeout_ms=10_000, clock=wall_ms,
             actor_options=None):
        """Connect to the sharded inventory in ``directory`` as coordinator
        ``coordinator``: start its shard actors (or find them running), take
        this coordinator's log, and finish every round a crash left open.

        Parameters
        ----------
        coordinator : str
            This coordinator's name: one live process per name (its log is
            locked); several coordinators may run at once under
            different names.
        call_timeout_s : float
            The longest any shard call may take (it covers an actor's
            restart); past it the call raises :class:`ShardUnavailable`.
        try_timeout_ms : int
            The deadline of a cart's holds (the try), in ``clock`` units
            from the start of its round: no unit stays held by a round a
            crash cut short for longer than this plus the next
            :meth:`expire`.  A round commits only when it decided within the
            first half of it, so that its confirms arrive before anyone may
            expire the holds.
        clock : callable
            Returns the current time in the unit ``hold_until`` and
            :meth:`expire` use (default: wall-clock milliseconds).
        actor_options : dict, optional
            Extra Ray options for the shard actors (default
            ``{"num_cpus": 0}``; on a real cluster e.g. one CPU each and a
            node-affinity or ``"SPREAD"`` scheduling strategy).
        """
        directory = os.path.abspath(os.fspath(directory))
        try:
            with open(os.path.join(directory, CONFIG)) as f:
                config = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{directory!r} is not a sharded inventory (no {CONFIG}; create one with "
                                    f"ShardedInventory.create)") from None
        if not ray.is_initialized():
            raise RuntimeError("ray is not initialized in this process: call ray.init(...) first")
        if not isinstance(coordinator, str) or not coordinator.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"coordinator must be a name of letters, digits, '-' and '_', got {coordinator!r}")
        self = cls.__new__(cls)
        self.directory = directory
        self.name = config["name"]
        self.n_skus = config["n_skus"]
        self.has_limits = config["has_limits"]
        self.map = ShardMap(self.n_skus, np.asarray(config["offer_sku"], dtype=np.int64), config["shards"],
                            config["sku_shard"])
        self.shards = self.map.shards
        self.n_offers = self.map.n_offers
        self.call_timeout_s = float(call_timeout_s)
        self.try_timeout_ms = checked_int("try_timeout_ms", try_timeout_ms, 1, INT64_MAX // 4)
        self.clock = clock
        self.split_carts = []  # carts whose second phase found a part not HELD (README: when that can happen)
        self._lock = threading.RLock()  # one round at a time in this process; lifecycle calls wait for it
        options = {"num_cpus": 0, **(actor_options or {})}
        remote = ray.remote(concurrency_groups={MAINTENANCE: 1})(Shard)  # (not an .options() setting)
        self.actors = []
        for s in range(self.shards):
            self.actors.append(remote.options(
                name=f"kernel-{self.name}-shard-{s}", namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                max_restarts=-1, max_task_retries=-1, **options,
            ).remote(directory, s))
        self._log = None
        self._all("info")  # every shard up (or ShardUnavailable), before this coordinator takes its log
        self._log = DecisionLog(self._log_path(coordinator))
        self.coordinator = coordinator
        self.recover()
        return self

    def _log_path(self, coordinator):
        return os.path.join(self.directory, "coordinators", f"{coordinator}.log")

    # ------------------------------------------------------------- calling
    def _gather(self, calls):
        """Run ``{shard: ObjectRef}`` to completion; returns ``({shard:
        value}, {shard: error})``.  Every wait is bounded by
        ``call_timeout_s``: a shard that does not answer is an error, never
        a hang."""
        if not calls:
            return {}, {}
        refs = list(calls.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.call_timeout_s)
        ready = set(ready)
        values, errors = {}, {}
        for shard, ref in calls.items():
            if ref not in ready:
                errors[shard] = ShardUnavailable(f"shard {shard} did not answer within {self.call_timeout_s:g} s",
                                                 [shard])
                continue
            try:
                values[shard] = ray.get(ref, timeout=self.call_timeout_s)
            except RayTaskError as error:  # the shard raised: hand on its exception
                errors[shard] = error.cause if isinstance(error.cause, Exception) else error
            except (RayActorError, GetTimeoutError) as error:
                errors[shard] = ShardUnavailable(f"shard {shard} is unavailable: {error}", [shard])
        return values, errors

    def _all(self, method, *args, concurrency_group=None):
        """``method(*args)`` on every shard (in the actor's
        ``concurrency_group``, default: its calls' thread); raises the first
        error."""
        group = {} if concurrency_group is None else {"concurrency_group": concurrency_group}
        values, errors = self._gather({s: getattr(a, method).options(**group).remote(*args)
                                       for s, a in enumerate(self.actors)})
        _raise(errors)
        return [values[s] for s in range(self.shards)]

    def _each(self, method, args_by_shard):
        values, errors = self._gather({s: getattr(self.actors[s], method).remote(*args)
                                       for s, args in args_by_shard.items()})
        _raise(errors)
        return values

    # ----------------------------------------------------------- reserving
    def reserve(self, orders, *, ordered=False, threads=None, hold_until=None):
        """Reserve a tracked batch across the shards.

        Parameters and errors are those of :meth:`kernel.Inventory.reserve`
        (checked here, before anything is sent), plus
        :class:`ShardUnavailable`.  ``threads`` is accepted for symmetry;
        each shard runs the threads it was created with.

        Returns
        -------
        numpy.ndarray of int8
            One :class:`kernel.Status` per order.  Single-shard orders are
            held until ``hold_until``; carts across shards are ACCEPTED only
            once every part is confirmed (final).
        """
        split = SplitBatch(orders, self.map, self.has_limits, hold_until, threads)
        status = np.full(split.n_orders, Status.DUPLICATE, dtype=np.int8)  # later repeats of an id in the batch
        if split.n_orders == 0:
            return status
        carts = split.carts
        # Only rounds need the lock (one at a time per log; lifecycle calls
        # wait for them): a batch without carts runs beside anything.
        with self._lock if carts.size else contextlib.nullcontext():
            tx = None
            deadline = 0
            if carts.size:
                deadline = int(self.clock()) + self.try_timeout_ms
                tx = self._log.begin(deadline, split.ids[carts], split.cart_mask[carts])
            calls = {}
            for s in range(self.shards):
                single, tries = split.singles[s], split.tries[s]
                if single is None and tries is None:
                    continue
                calls[s] = self.actors[s].reserve.remote(
                    None if single is None else single[1], None if single is None else split.hold[single[0]],
                    None if tries is None else tries[1], deadline, bool(ordered))
            values, errors = self._gather(calls)
            for s, (single_status, _, _) in values.items():
                if single_status is not None:
                    status[split.singles[s][0]] = single_status
            if tx is not None:
                status[carts] = self._round(tx, split, values, errors)
        _raise(errors)
        return status

    def _round(self, tx, split, values, errors):
        """Decide, log and finish the carts of round ``tx`` (their tries ran);
        returns their statuses."""
        carts = split.carts
        pos = np.full(split.n_orders, -1, dtype=np.int64)
        pos[carts] = np.arange(carts.size)
        held = np.ones(carts.size, dtype=bool)
        answer = np.zeros(carts.size, dtype=np.int64)  # the refusal that wins, by rank (see _RANK)
        for s in range(self.shards):
            tries = split.tries[s]
            if tries is None:
                continue
            at = pos[tries[0]]
            if s not in values:  # no answer: the cart cannot commit
                held[at] = False
                answer[at] = np.maximum(answer[at], _RANK[Status.CANCELLED])
                continue
            _, try_status, try_state = values[s]
            mine = (try_status == Status.ACCEPTED) | ((try_status == Status.DUPLICATE) & (try_state == OrderState.HELD))
            held[at] &= mine
            answer[at] = np.maximum(answer[at], np.where(mine, 0, _RANK_OF[try_status]))
        # Commit only with half the try window left: the confirms must land
        # before anyone may expire the holds (README: what holds).
        if int(self.clock()) > self._log.rounds[tx].deadline - self.try_timeout_ms // 2:
            answer[held] = _RANK[Status.CANCELLED]
            held[:] = False
        committed = split.ids[carts[held]]
        self._log.decide(tx, committed)
        # The decision is on disk: from here the committed carts are ACCEPTED
        # whatever happens (a shard that misses its confirm gets it from
        # recover()).
        errors.update(self._finish(self._log, tx, committed, split.ids[carts[~held]], split.cart_mask[carts[~held]],
                                   split.cart_mask[carts[held]]))
        return np.where(held, Status.ACCEPTED, _BY_RANK[answer]).astype(np.int8)

    def _finish(self, log, tx, commit_ids, cancel_ids, cancel_masks, commit_masks):
        """The second phase of round ``tx`` of ``log``: confirm ``commit_ids``
        and cancel ``cancel_ids`` on every shard in their masks; END once
        every shard answered (else the round stays open for
        :meth:`recover`).  Returns the shards' errors."""
        args = {}
        for s in range(self.shards):
            bit = np.int64(1) << s
            confirm = commit_ids[(commit_masks & bit) != 0]
            cancel = cancel_ids[(cancel_masks & bit) != 0]
            if confirm.size or cancel.size:
                args[s] = (confirm, cancel)
        values, errors = self._gather({s: self.actors[s].finish.remote(*a) for s, a in args.items()})
        good = np.ones(commit_ids.size, dtype=bool)
        for s, (done, _) in values.items():
            bit = np.int64(1) << s
            part = np.flatnonzero((commit_masks & bit) != 0)
            bad = ~np.isin(done, (Outcome.DONE, Outcome.ALREADY_CONFIRMED))
            good[part[bad]] = False
        if not good.all():
            split = commit_ids[~good]
            self.split_carts.extend(split.tolist())
            warnings.warn(f"round {tx}: {split.size} committed cart(s) found a part no longer HELD (expired or "
                          f"cancelled past the try window): ids {split[:10].tolist()}", RuntimeWarning, stacklevel=3)
        if not errors:
            log.end(tx)
        return errors

    def reserve_one(self, sku, qty=1, *, order_id, user_id=0, max_price=None, hold_until=None):
        """One single-line order, on its SKU's shard (one actor call).
        Arguments and errors as :meth:`kernel.Inventory.reserve_one`."""
        sku = checked_int("sku", sku, 0, self.n_skus - 1)
        qty = checked_int("qty", qty, 1, INT64_MAX)
        order_id = checked_int("order_id", order_id, 0, MAX_ORDER_ID)
        user_id = checked_int("user_id", user_id, 0, (INT64_MAX - self.n_skus) // max(self.n_skus, 1))
        max_price = NO_LIMIT if max_price is None else checked_int("max_price", max_price, 0, INT64_MAX)
        hold_until = NO_DEADLINE if hold_until is None else checked_int("hold_until", hold_until, -INT64_MAX - 1,
                                                                          INT64_MAX)
        s = int(self.map.sku_shard[sku])
        code = self._each("reserve_one", {s: (int(self.map.sku_local[sku]), qty, order_id, int(user_id), max_price,
                                              hold_until)})[s]
        return _STATUSES[code]

    # ----------------------------------------------------------- lifecycle
    def _states(self, ids):
        """The OrderState of each id on every shard: shape (shards, ids)."""
        return np.stack(self._all("state_of", ids)) if ids.size else np.zeros((self.shards, 0), np.int8)

    def state_of(self, order_ids):
        """The :class:`kernel.OrderState` of each id across the shards.

        A single-shard order has one shard's state.  A cart has the same
        state on every shard it touches, except inside its round (then
        PENDING).  A cancel of an unseen id is remembered on every shard
        (CANCELLED_EARLY where nothing else is known)."""
        ids = as_order_ids("order_ids", order_ids)
        return _merge_states(self._states(ids))

    def confirm(self, order_ids):
        """Confirm held single-shard orders (as :meth:`kernel.Inventory.confirm`).

        A cart across shards is confirmed by its own round: confirming it
        answers ALREADY_CONFIRMED (or IN_FLIGHT while its round runs in
        another coordinator)."""
        ids = as_order_ids("order_ids", order_ids)
        with self._lock:
            states = self._states(ids)
            seen = states != 0
            outcome = np.full(ids.size, Outcome.UNKNOWN, dtype=np.int8)
            in_round = (seen.sum(axis=0) > 1) & (states == OrderState.HELD).any(axis=0)
            outcome[in_round] = Outcome.IN_FLIGHT
            send = {s: np.flatnonzero(seen[s] & ~in_round) for s in range(self.shards)}
            answers = self._each("confirm", {s: (ids[w],) for s, w in send.items() if w.size})
            for s in sorted(answers, reverse=True):  # the lowest shard's answer wins (parts agree)
                outcome[send[s]] = answers[s]
        return outcome

    def cancel(self, order_ids):
        """Cancel orders (as :meth:`kernel.Inventory.cancel`).

        An id no shard has seen is remembered on every shard, so its late
        reserve is refused wherever its lines live.  A cart across shards
        is final once accepted (ALREADY_CONFIRMED); inside its round in
        another coordinator it answers IN_FLIGHT (ask again).

        Raises
        ------
        CapacityError
            Remembering unseen ids could overflow a shard's order table;
            only that shard's part is refused.
        """
        ids = as_order_ids("order_ids", order_ids)
        with self._lock:
            states = self._states(ids)
            seen = states != 0
            unseen = ~seen.any(axis=0)
            in_round = (seen.sum(axis=0) > 1) & (states == OrderState.HELD).any(axis=0)
            outcome = np.full(ids.size, Outcome.REMEMBERED, dtype=np.int8)
            outcome[in_round] = Outcome.IN_FLIGHT
            send = {s: np.flatnonzero((seen[s] | unseen) & ~in_round) for s in range(self.shards)}
            answers = self._each("cancel", {s: (ids[w],) for s, w in send.items() if w.size})
            for s in sorted(answers, reverse=True):
                w, answer = send[s], answers[s]
                # An unseen id answers REMEMBERED everywhere, unless its
                # reserve reached a shard meanwhile: that shard's answer wins.
                take = seen[s, w] | (answer != Outcome.REMEMBERED)
                outcome[w[take]] = answer[take]
        return outcome

    def expire(self, now):
        """End every hold whose deadline is ``<= now`` on every shard (as
        :meth:`kernel.Inventory.expire`); returns the expired ids, ascending.

        Rounds of dead coordinators are finished first, so an expiry never
        overtakes a cart whose commit is already on disk."""
        now = checked_int("now", now, -INT64_MAX - 1, INT64_MAX)
        with self._lock:
            self.recover()
            expired = self._all("expire", now)
        return np.unique(np.concatenate(expired)) if expired else np.zeros(0, np.int64)

    def restock(self, offer, qty):
        """Add units to offers (global offer ids; as :meth:`kernel.Inventory.restock`)."""
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
        added = np.bincount(offer, weights=qty, minlength=self.n_offers)
        if (added > 0).any():  # the single node's overflow check, on the shards' current stock
            stock = self.stock.astype(np.float64)
            if (stock + added).max() >= 2.0**63:
                pos = int(np.argmax(stock[offer] + added[offer] >= 2.0**63))
                raise ValueError(f"qty[{pos}]: offer {offer[pos]} would hold more than int64 allows")
        where = self.map.offer_shard[offer]
        self._each("restock", {s: (self.map.offer_local[offer[where == s]], qty[where == s])
                               for s in np.unique(where).tolist()})

    @property
    def log_fsync_seconds(self):
        """Seconds this coordinator has spent in fsync of its decision log."""
        return self._log.fsync_seconds

    @property
    def stock(self):
        """Remaining units per (global) offer: a snapshot gathered from every shard."""
        stock = np.empty(self.n_offers, dtype=np.int64)
        for s, part in enumerate(self._all("stock")):
            stock[self.map.shard_offers[s]] = part
        return stock

    def limit_used(self, user_ids, skus):
        """Units of ``skus[k]`` that ``user_ids[k]`` holds or bought (each
        (user, SKU) pair lives on its SKU's shard)."""
        users, skus = user_sku_pairs(user_ids, skus, self.n_skus)
        used = np.zeros(users.size, dtype=np.int64)
        where = self.map.sku_shard[skus]
        parts = self._each("limit_used", {s: (users[where == s], self.map.sku_local[skus[where == s]])
                                          for s in np.unique(where).tolist()})
        for s, part in parts.items():
            used[where == s] = part
        return used

    # ------------------------------------------------------------ recovery
    def recover(self):
        """Finish every round a crash left open: this coordinator's, and those
        of coordinators whose process is gone (their log is unlocked).
        A round with a decision on disk is confirmed (its committed carts)
        and cancelled (the rest); a round without one is cancelled whole.

        Returns
        -------
        dict
            ``{"rounds", "confirmed", "cancelled"}``: what was finished.

        Raises
        ------
        ShardUnavailable
            A shard did not answer; the rounds stay open (call again).
        """
        done = dict(rounds=0, confirmed=0, cancelled=0)
        with self._lock:
            logs = [self._log]
            folder = os.path.dirname(self._log.path)
            for name in sorted(os.listdir(folder)):
                path = os.path.join(folder, name)
                if not name.endswith(".log") or path == self._log.path:
                    continue
                try:
                    logs.append(DecisionLog(path))  # a live coordinator keeps its lock: skipped
                except LogBusy:
                    continue
            try:
                for log in logs:
                    if log.failed is not None:
                        raise LogFailed(f"coordinator log {log.path!r} failed earlier ({log.failed}); close this "
                                        f"coordinator and open it again: its recovery follows what is on disk")
                    for r in log.unfinished():
                        committed = r.committed if r.committed is not None else np.zeros(0, np.int64)
                        won = np.isin(r.ids, committed)
                        errors = self._finish(log, r.tx, r.ids[won], r.ids[~won], r.masks[~won], r.masks[won])
                        if errors:
                            raise ShardUnavailable(f"recovery of round {r.tx} in {log.path!r}: shard(s) "
                                                   f"{sorted(errors)} did not answer; call recover() again",
                                                   sorted(errors))
                        done["rounds"] += 1
                        done["confirmed"] += int(won.sum())
                        done["cancelled"] += int((~won).sum())
            finally:
                for log in logs[1:]:
                    log.close()
        return done

    # ------------------------------------------------------------ managing
    def checkpoint(self):
        """Snapshot every shard's durable inventory (drops its older journal).

        Each shard checkpoints on a thread of its own (the actor's
        ``MAINTENANCE`` concurrency group), so its other calls wait only
        while its state is copied, not while the snapshot is written
        (:meth:`kernel.journal.DurableInventory.checkpoint`)."""
        return self._all("checkpoint", concurrency_group=MAINTENANCE)

    def make_room(self, nbytes):
        """Zero and sync ``nbytes`` of journal ahead of the records on every
        shard, in parallel, before a peak
        (:meth:`kernel.journal.DurableInventory.make_room`).

        Returns the room ready per shard, in bytes.  A bad ``nbytes`` raises
        before anything is sent; shards with ``fsync`` other than
        ``"batch"`` keep no room and raise ``ValueError`` from the shard.  A
        shard waits for its room at most ``call_timeout_s`` (then
        ``TimeoutError``, and its room goes on being made).
        """
        nbytes = checked_int("nbytes", nbytes, 0, INT64_MAX)
        return self._all("make_room", nbytes, self.call_timeout_s)

    def shard_info(self):
        """Per shard: its actor's ``pid``, whether it reopened its journal,
        busy seconds, calls and journal statistics."""
        return self._all("info")

    def close(self):
        """Release this coordinator's log (the shards keep running)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def shutdown(self):
        """Stop every shard actor (their directories stay) and close."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"ShardedInventory({self.directory!r}, shards={self.shards}, n_skus={self.n_skus})"


# The refusal a cart answers when not every part held: the id seen before
# wins, then a cancel that came first, then stock (checked before caps, as
# on one node), then the cap.
_ORDER = (Status.ACCEPTED, Status.LIMIT_EXCEEDED, Status.OUT_OF_STOCK, Status.CANCELLED, Status.DUPLICATE)
_RANK = {s: k for k, s in enumerate(_ORDER)}
_RANK_OF = np.array([_RANK[Status(code)] for code in range(len(Status))], dtype=np.int64)
_BY_RANK = np.array([int(s) for s in _ORDER], dtype=np.int8)


def _merge_states(states):
    """One OrderState per id from the shards' states (shape (shards, ids))."""
    real = (states != 0) & (states != OrderState.CANCELLED_EARLY)
    out = np.where((states == OrderState.CANCELLED_EARLY).any(axis=0), OrderState.CANCELLED_EARLY, 0)
    first = np.where(real, states, 0).max(axis=0)
    low = np.where(real, states, 127).min(axis=0)
    out = np.where(real.any(axis=0), np.where(first == low, first, OrderState.PENDING), out)
    return out.astype(np.int8)


def _raise(errors):
    if not errors:
        return
    down = sorted(s for s, e in errors.items() if isinstance(e, ShardUnavailable))
    if down:
        raise ShardUnavailable("; ".join(str(errors[s]) for s in down) + " (what the other shards did stands; "
                               "retrying the same call is safe)", down)
    raise next(iter(errors.values()))
