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
        Reserved for idempotent order ids (the id was seen before).
    LIMIT_EXCEEDED
        Reserved for per-user purchase limits.
    """

    ACCEPTED = 0
    OUT_OF_STOCK = 1
    DUPLICATE = 2
    LIMIT_EXCEEDED = 3
