"""What a batch reserve returns: :class:`Result` (statuses) and its
:class:`Fills` (who took how much from which offer).

A ``Result`` needs nothing private from the inventory: it is handed the
offer map (``offer_start``, ``offer_by_priority``, both read-only) when it is
made, and keeps the inventory only to tell, on release, that it came from it.
"""

import threading
from dataclasses import dataclass

import numpy as np

from .codes import Status

__all__ = ["Result", "Fills"]


def readonly(arr):
    """A read-only view of ``arr``."""
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
    orders : OrderBatch
        The batch this result answers.
    inventory : Inventory
        The inventory that decided it.
    """

    def __init__(self, inventory, orders, status, threads, *, taken=None, slot_start=None, offer_start=None,
                 offer_by_priority=None):
        """Made by the facade.  ``taken[slot_start[line] + rank]`` is what a
        line took from the offer of that priority rank of its SKU (``None``
        on the one-offer-per-SKU paths: an accepted line took its whole qty
        from offer ``sku[line]``); ``offer_start`` / ``offer_by_priority``
        map a rank to an offer id."""
        self.threads = threads
        self.inventory = inventory
        self.orders = orders
        self.status = readonly(status)
        self._taken = taken
        self._slot_start = slot_start
        self._offer_start = offer_start
        self._offer_by_priority = offer_by_priority
        self._fills = None
        self._released = False
        self._release_lock = threading.Lock()

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

    def mark_released(self):
        """Record that this result's units went back; ``False`` if they
        already had (so a result is released at most once, whoever races)."""
        with self._release_lock:
            if self._released:
                return False
            self._released = True
            return True

    @property
    def fills(self):
        """The :class:`Fills` of the accepted orders (computed on first use)."""
        if self._fills is None:
            self._fills = self._make_fills()
        return self._fills

    def _make_fills(self):
        orders = self.orders
        line_order = orders.line_order
        if self._taken is None:  # one offer per SKU: an accepted line took all of its qty
            line = np.flatnonzero(self.status[line_order] == Status.ACCEPTED)
            return Fills(order=line_order[line], line=line, offer=orders.sku[line].copy(), qty=orders.qty[line].copy())
        slot = np.flatnonzero(self._taken)
        slots_per_line = np.diff(self._slot_start)
        line = np.repeat(np.arange(orders.n_lines, dtype=np.int64), slots_per_line)[slot]
        rank = slot - self._slot_start[line]
        offer = self._offer_by_priority[self._offer_start[orders.sku[line]] + rank]
        return Fills(order=line_order[line], line=line, offer=offer, qty=self._taken[slot].copy())

    def __repr__(self):
        return f"Result(n_orders={self.status.size}, n_accepted={self.n_accepted})"
