"""Per-order outcome codes shared by every backend (stored as ``int8``)."""

from enum import IntEnum

__all__ = ["Status"]


class Status(IntEnum):
    """Outcome of one order in a batch.

    Attributes
    ----------
    ACCEPTED
        Every line was filled; the stock is reserved.
    OUT_OF_STOCK
        At least one line could not be filled from the eligible offers of its
        SKU (price <= the line's ``max_price``); the order left no trace.
    DUPLICATE
        Tracked inventories: the order id was seen before (in this batch or
        an earlier call, in any process); nothing changed.
    LIMIT_EXCEEDED
        Tracked inventories: the order would take its user past the
        per-user limit of one of its SKUs; the order left no trace.
    CANCELLED
        Tracked inventories: the order id was cancelled before its reserve
        arrived, or while it ran; it holds nothing.
    """

    ACCEPTED = 0
    OUT_OF_STOCK = 1
    DUPLICATE = 2
    LIMIT_EXCEEDED = 3
    CANCELLED = 4
