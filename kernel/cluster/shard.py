"""One shard: a durable inventory of some SKUs, owned by one Ray actor.

The class is plain Python; :mod:`kernel.cluster.sharded` makes it a named
Ray actor with ``max_restarts`` / ``max_task_retries``.  Ray restarts a
killed actor by running this constructor again, which reopens the durable
inventory from its directory (snapshot + journal): the state comes back
with every call the shard acknowledged.  A retried call is safe because
every call is idempotent by order id (a reserve seen before answers
DUPLICATE, a second confirm ALREADY_CONFIRMED, ...).
"""

import fcntl
import json
import os
import shutil
import time

import numpy as np

from ..inventory import Inventory
from ..journal.recovery import MARKER
from ..orders import OrderBatch

__all__ = ["Shard", "CONFIG"]

CONFIG = "cluster.json"  # the cluster's description, written once by ShardedInventory.create


class Shard:
    """A shard's durable inventory and the calls the coordinator makes on it.

    Parameters
    ----------
    cluster_directory : str
        The cluster's directory (``cluster.json``; this shard's journal in
        ``shard-K``), on the node the actor runs on.
    index : int
        This shard's number K.

    The constructor takes only these two small arguments and reads the
    rest from ``cluster.json``: Ray keeps a restartable actor's arguments
    for its restarts, and a large argument would live in the object store,
    where it can be lost with the process that made it.
    """

    def __init__(self, cluster_directory, index):
        self.busy_s = 0.0  # seconds spent inside this shard's inventory calls
        self.calls = 0
        with open(os.path.join(cluster_directory, CONFIG)) as f:
            config = json.load(f)
        directory = os.path.join(cluster_directory, f"shard-{index}")
        # One writer per journal: if Ray starts a new incarnation while the
        # old process still lives (a node it wrongly declared dead), the new
        # one waits for the old one's lock instead of appending beside it.
        self._owner = _take_ownership(directory + ".owner")
        options = dict(backend=config["backend"], threads=config["threads"], fsync=config["fsync"])
        if os.path.exists(os.path.join(directory, MARKER)):
            self.inv = Inventory.open_durable(directory, **options)
            self.reopened = True
        else:
            if os.path.isdir(directory):
                # A creation cut short (the marker is written last): nothing
                # was ever acknowledged from it.
                shutil.rmtree(directory)
            self.inv = Inventory.create_durable(directory, **options, **config["specs"][index])
            self.reopened = False

    # ------------------------------------------------------------ helpers
    def _timed(self, call):
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.busy_s += time.perf_counter() - start
            self.calls += 1

    # ---------------------------------------------------------- reserving
    def reserve(self, singles, single_hold, tries, try_deadline, ordered=False):
        """Single-shard orders first, then the carts' tries (held until
        ``try_deadline``).  Returns ``(single_status, try_status,
        try_state)``; ``try_state`` is the OrderState of each try answered
        DUPLICATE (0 elsewhere): a try retried by Ray after its first run
        held the lines answers DUPLICATE with state HELD.

        The singles run first so that a try later cancelled never refused
        one of them (see the README: what holds across shards)."""
        inv = self.inv

        def run():
            single_status = try_status = try_state = None
            if singles is not None:
                single_status = inv.reserve(OrderBatch(**singles), ordered=ordered, hold_until=single_hold).status
            if tries is not None:
                try_status = inv.reserve(OrderBatch(**tries), ordered=ordered, hold_until=try_deadline).status
                dup = np.flatnonzero(try_status == 2)  # Status.DUPLICATE
                try_state = np.zeros(try_status.size, dtype=np.int8)
                if dup.size:
                    try_state[dup] = inv.state_of(np.asarray(tries["order_id"])[dup])
            return single_status, try_status, try_state

        return self._timed(run)

    def reserve_one(self, sku, qty, order_id, user_id, max_price, hold_until):
        return int(self._timed(lambda: self.inv.reserve_one(sku, qty, order_id=order_id, user_id=user_id,
                                                            max_price=max_price, hold_until=hold_until)))

    def finish(self, confirm_ids, cancel_ids):
        """The second phase on this shard: confirm the committed carts' parts,
        cancel the others'.  Returns both outcome arrays."""
        def run():
            done = self.inv.confirm(confirm_ids) if confirm_ids.size else np.zeros(0, np.int8)
            undone = self.inv.cancel(cancel_ids) if cancel_ids.size else np.zeros(0, np.int8)
            return done, undone
        return self._timed(run)

    # ----------------------------------------------------------- lifecycle
    def confirm(self, ids):
        return self._timed(lambda: self.inv.confirm(ids))

    def cancel(self, ids):
        return self._timed(lambda: self.inv.cancel(ids))

    def expire(self, now):
        return self._timed(lambda: self.inv.expire(now))

    def restock(self, offers, qty):
        return self._timed(lambda: self.inv.restock(offers, qty))

    def state_of(self, ids):
        return self.inv.state_of(ids)

    def limit_used(self, users, skus):
        return self.inv.limit_used(users, skus)

    def stock(self):
        return np.array(self.inv.stock)

    def checkpoint(self):
        return self.inv.checkpoint()

    def make_room(self, nbytes, timeout):
        return self.inv.make_room(nbytes, timeout=timeout)

    # ------------------------------------------------------- introspection
    def info(self):
        """``pid``, the Ray node it runs on, whether this incarnation reopened
        the journal, busy seconds and calls since it started, and the
        journal's statistics."""
        import ray

        return dict(pid=os.getpid(), node=ray.get_runtime_context().get_node_id(), reopened=self.reopened,
                    busy_s=self.busy_s, calls=self.calls, journal=self.inv.journal_stats())

    def stall(self, seconds):
        """Block this shard for ``seconds`` (tests: an unreachable shard)."""
        time.sleep(seconds)


OWNER_WAIT_S = 30  # then the constructor fails and Ray tries the restart again


def _take_ownership(path):
    """An exclusive ``flock`` on ``path``, held for the process's life (the
    OS drops it when the process dies); waits up to OWNER_WAIT_S."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    give_up = time.monotonic() + OWNER_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > give_up:
                os.close(fd)
                raise RuntimeError(f"{path!r} is still locked by another live incarnation of this shard") from None
            time.sleep(0.05)
