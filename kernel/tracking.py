"""Names and read-only lookups for tracked orders (see the "Tracked orders"
section of :mod:`kernel.reference` for the state they describe)."""

from enum import IntEnum

import numpy as np

from . import reference as spec
from .inputs import as_int64, check_at_least

__all__ = ["OrderState", "Outcome", "CapacityError", "NO_LIMIT", "NO_DEADLINE", "MAX_ORDER_ID"]

NO_LIMIT = spec.NO_LIMIT  # INT64_MAX: no per-user cap (limit_per_user), any price (max_price)
NO_DEADLINE = spec.NO_LIMIT  # INT64_MAX too: a hold that never expires
MAX_ORDER_ID = spec.ID_MASK  # order ids live in the low 56 bits of an order word


class OrderState(IntEnum):
    """Where an order id is in its lifecycle (:meth:`Inventory.state_of`).

    Attributes
    ----------
    UNKNOWN
        The inventory has never seen the id.
    PENDING
        A reserve of it is running (in this or another process).
    HELD
        Reserved, waiting for :meth:`~Inventory.confirm`, :meth:`~Inventory.cancel`
        or :meth:`~Inventory.expire`.
    CONFIRMED
        Paid: final.
    CANCELLED
        Cancelled: whatever it held went back.
    EXPIRED
        Its hold ran out before it was confirmed: its stock went back.
    REFUSED
        Its reserve was refused (out of stock, or over a per-user limit).
    CANCEL_REQUESTED
        Cancelled while its reserve ran; that reserve ends it CANCELLED.
    CANCELLED_EARLY
        Cancelled before any reserve of it arrived; a late reserve is refused.
    """

    UNKNOWN = 0
    PENDING = spec.PENDING
    HELD = spec.HELD
    CONFIRMED = spec.CONFIRMED
    CANCELLED = spec.CANCELLED_HOLD
    EXPIRED = spec.EXPIRED
    REFUSED = spec.REFUSED
    CANCEL_REQUESTED = spec.CANCEL_REQUESTED
    CANCELLED_EARLY = spec.CANCELLED_EARLY


class Outcome(IntEnum):
    """Per-id answer of :meth:`Inventory.confirm` and :meth:`Inventory.cancel`.

    Attributes
    ----------
    DONE
        This call made the transition (HELD -> CONFIRMED, or -> CANCELLED).
    ALREADY_CONFIRMED, ALREADY_CANCELLED, ALREADY_EXPIRED
        An earlier call (or expiry) got there first; nothing changed.
    WAS_REFUSED
        Its reserve was refused: it holds nothing to confirm or cancel.
    UNKNOWN
        confirm only: the inventory has never seen the id.
    IN_FLIGHT
        confirm only: its reserve is still running; ask again.
    REMEMBERED
        cancel only: no reserve of the id has arrived yet; when one does, it
        is refused (Status.CANCELLED).
    """

    DONE = spec.DONE
    ALREADY_CONFIRMED = spec.ALREADY_CONFIRMED
    ALREADY_CANCELLED = spec.ALREADY_CANCELLED
    ALREADY_EXPIRED = spec.ALREADY_EXPIRED
    WAS_REFUSED = spec.WAS_REFUSED
    UNKNOWN = spec.UNKNOWN
    IN_FLIGHT = spec.IN_FLIGHT
    REMEMBERED = spec.REMEMBERED


class CapacityError(RuntimeError):
    """A table sized at creation (order ids, (user, SKU) pairs, fill log)
    cannot take what a call needs; the call changed nothing."""


def as_order_ids(name, values):
    """``values`` as int64 order ids in ``[0, MAX_ORDER_ID]``."""
    ids = as_int64(name, values)
    check_at_least(name, ids, 0, ">= 0")
    if ids.size and ids.max() > MAX_ORDER_ID:
        pos = int((ids > MAX_ORDER_ID).argmax())
        raise ValueError(f"{name}[{pos}] = {ids[pos]} must be < 2**56")
    return ids


def probe(table, keys, id_mask=-1):
    """Vectorised :func:`kernel.reference.find_order` / ``limit_slot``
    lookup: the slot of each key (``table[slot] & id_mask == key``), or -1.

    Read-only; the words may change while it runs (each answer is one that
    was true at some point during the call).
    """
    mask = table.size - 1
    home = (keys.astype(np.uint64) * np.uint64(spec.HASH_MULTIPLIER)) >> np.uint64(32)
    slot = (home & np.uint64(mask)).astype(np.int64)
    found = np.full(keys.size, -1, dtype=np.int64)
    todo = np.arange(keys.size)
    while todo.size:  # linear probing, all keys a step at a time
        word = table[slot[todo]]
        hit = (word != 0) & ((word & id_mask) == keys[todo])
        found[todo[hit]] = slot[todo[hit]]
        todo = todo[~hit & (word != 0)]
        slot[todo] = (slot[todo] + 1) & mask
    return found
