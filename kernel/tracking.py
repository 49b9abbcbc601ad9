"""Names and read-only lookups for tracked orders (see :mod:`kernel.reference.tracked`
for the state they describe)."""

import numpy as np

from . import codes
from .inputs import as_int64, check_at_least

__all__ = ["CapacityError", "NO_LIMIT", "NO_DEADLINE", "MAX_ORDER_ID", "as_order_ids", "probe"]

NO_LIMIT = codes.NO_LIMIT  # INT64_MAX: no per-user cap (limit_per_user), any price (max_price)
NO_DEADLINE = codes.NO_LIMIT  # INT64_MAX too: a hold that never expires
MAX_ORDER_ID = codes.ID_MASK  # order ids live in the low 56 bits of an order word


class CapacityError(RuntimeError):
    """A table sized at creation (order ids, (user, SKU) pairs, fill log)
    cannot take what a call needs; the call changed nothing."""


def as_order_ids(name, values):
    """``values`` as int64 order ids in ``[0, MAX_ORDER_ID]``."""
    ids = as_int64(name, values)
    # One pass for both bounds (a negative id is huge as uint64); the
    # messages come from the checks below, which only a bad batch runs.
    if ids.size and ids.view(np.uint64).max() > MAX_ORDER_ID:
        check_at_least(name, ids, 0, ">= 0")
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
    home = (keys.astype(np.uint64) * np.uint64(codes.HASH_MULTIPLIER)) >> np.uint64(32)
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
