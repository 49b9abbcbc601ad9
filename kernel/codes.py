"""Every integer code the kernels and the facade share, defined once.

The reference (:mod:`kernel.reference`) and the Numba kernels import these
names; the Cython kernels mirror them in ``kernel/_cython/codes.pxd`` (a C
compiler needs them as compile-time constants), and so does the ``.pxd``
users ``cimport`` (``kernel/_cython/tracked.pxd``).  ``tests/test_mirrors.py``
checks that every value here has the same value in every backend and in
both ``.pxd`` files.

The public enums (:class:`Status`, :class:`OrderState`, :class:`Outcome`)
are built from the same constants.
"""

from enum import IntEnum


# ---------------------------------------------------------------- statuses
# One per order of a batch (stored as int8): kernel.Status.
ACCEPTED = 0
OUT_OF_STOCK = 1
DUPLICATE = 2
LIMIT_EXCEEDED = 3
CANCELLED = 4
# The bits every refusal status (OUT_OF_STOCK, LIMIT_EXCEEDED) has set: a run
# of statuses whose OR lacks one of them holds no refusal, so settle_refused
# skips it after one vectorized OR (tests/test_claim_and_reserve.py checks it is not 0).
REFUSAL_BITS = OUT_OF_STOCK & LIMIT_EXCEEDED

# reserve_one's answers when a table budget is spent (nothing changed then).
ORDER_TABLE_FULL = -1
LIMIT_TABLE_FULL = -2
FILL_LOG_FULL = -3

# ------------------------------------------------------------ order states
# The top byte of an order word (``state << STATE_SHIFT | order_id``):
# kernel.OrderState.  0 is an empty slot.
PENDING = 1           # claimed by a reserve that is still running
HELD = 2              # reserved, waiting for confirm / cancel / expiry
CONFIRMED = 3         # paid: final
CANCELLED_HOLD = 4    # cancelled (stock and limit given back, if it held any)
EXPIRED = 5           # deadline passed before confirm (stock given back)
REFUSED = 6           # its reserve was refused: nothing held
CANCEL_REQUESTED = 7  # cancel arrived while the reserve ran: it will undo
CANCELLED_EARLY = 8   # cancel arrived before any reserve of this id

# -------------------------------------------------------------- outcomes
# Per id, of confirm / cancel: kernel.Outcome.
DONE = 0
ALREADY_CONFIRMED = 1
ALREADY_CANCELLED = 2
ALREADY_EXPIRED = 3
WAS_REFUSED = 4
UNKNOWN = 5
IN_FLIGHT = 6
REMEMBERED = 7

# -------------------------------------------------------------- counters
# Entries of the ``counters`` state array.
ROLLBACKS = 0    # rollbacks ever made on this inventory (the G4 re-run rule)
ORDERS_LEFT = 1  # ids the order table may still take
PAIRS_LEFT = 2   # (user, SKU) pairs the limit table may still take
FILLS_LEFT = 3   # fill-log entries not yet promised
FILL_CURSOR = 4  # the next free fill-log entry (only grows)
# Durable inventories only (kernel.journal; no kernel reads them):
JOURNAL_SEQ = 5      # sequence number of the last journal record (taken under the journal's lock)
JOURNAL_SEGMENT = 6  # shared durable inventories: first sequence number of the segment being appended to
JOURNAL_BUSY = 7     # shared durable inventories: pid inside the journal's critical section, 0 if none
N_COUNTERS = 8   # words reserved for counters (room to grow)

# take_limit's answer bits.
TOOK = 1
NEW_PAIR = 2

# ------------------------------------------------------------ word layout
STATE_SHIFT = 56
ID_MASK = (1 << STATE_SHIFT) - 1       # order ids live in the low 56 bits of an order word
HASH_MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio (Fibonacci hashing)
UINT64_MASK = (1 << 64) - 1
NO_LIMIT = (1 << 63) - 1               # INT64_MAX: no cap, any price, no deadline

# ---------------------------------------------------------- record layout
# The order table holds one record of ORDER_STRIDE words per slot (32 bytes:
# two records per 64-byte cache line, never straddling one), and the limit
# table one (key, count) pair of PAIR_STRIDE words per slot (16 bytes), so a
# new order touches one line of each.  Word offsets within a record / pair:
ORDER_STRIDE = 4
ORDER_WORD_AT = 0      # state << STATE_SHIFT | order_id: the one word a CAS publishes
ORDER_USER_AT = 1      # the buyer (to give the limit back)
ORDER_DEADLINE_AT = 2  # end of the hold (NO_LIMIT: none)
ORDER_FILLS_AT = 3     # the order's fill-log range: first << FILL_COUNT_BITS | count
PAIR_STRIDE = 2
PAIR_KEY_AT = 0        # 0: empty; else user * n_skus + sku + 1
PAIR_COUNT_AT = 1      # units of that SKU the user holds or bought
FILL_COUNT_BITS = 24
MAX_ORDER_FILLS = (1 << FILL_COUNT_BITS) - 1          # fill-log entries one order may log
MAX_FILL_LOG = 1 << (63 - FILL_COUNT_BITS)            # fill-log entries (the packed word stays >= 0)

# Every shared constant by name, for the mirror test (the enums below are
# views of these, not extra codes).
CODES = {name: value for name, value in dict(globals()).items()
         if name.isupper() and isinstance(value, int) and not name.startswith("_")}
__all__ = [*CODES, "CODES", "Status", "OrderState", "Outcome"]


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

    ACCEPTED = ACCEPTED
    OUT_OF_STOCK = OUT_OF_STOCK
    DUPLICATE = DUPLICATE
    LIMIT_EXCEEDED = LIMIT_EXCEEDED
    CANCELLED = CANCELLED


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
    PENDING = PENDING
    HELD = HELD
    CONFIRMED = CONFIRMED
    CANCELLED = CANCELLED_HOLD
    EXPIRED = EXPIRED
    REFUSED = REFUSED
    CANCEL_REQUESTED = CANCEL_REQUESTED
    CANCELLED_EARLY = CANCELLED_EARLY


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

    DONE = DONE
    ALREADY_CONFIRMED = ALREADY_CONFIRMED
    ALREADY_CANCELLED = ALREADY_CANCELLED
    ALREADY_EXPIRED = ALREADY_EXPIRED
    WAS_REFUSED = WAS_REFUSED
    UNKNOWN = UNKNOWN
    IN_FLIGHT = IN_FLIGHT
    REMEMBERED = REMEMBERED
