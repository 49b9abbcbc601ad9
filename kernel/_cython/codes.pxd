# Every shared integer code of kernel/codes.py, as C compile-time constants
# for the Cython kernels (kernels.pyx cimports them, and so does the users'
# tracked.pxd).  One name here per name of kernel.codes.CODES: ``K_`` + the
# kernel/codes.py name (the prefix keeps the C names apart from the Python
# attributes kernels.pyx exports under the plain names), same value.
# tests/test_mirrors.py checks the values against kernel/codes.py.
from libc.stdint cimport int64_t, uint64_t

cdef enum:
    # Statuses, one per order of a batch (kernel.Status).
    K_ACCEPTED = 0
    K_OUT_OF_STOCK = 1
    K_DUPLICATE = 2
    K_LIMIT_EXCEEDED = 3
    K_CANCELLED = 4
    K_REFUSAL_BITS = 1  # K_OUT_OF_STOCK & K_LIMIT_EXCEEDED: bits every refusal status has
    # reserve_one's answers when a table budget is spent (nothing changed then).
    K_ORDER_TABLE_FULL = -1
    K_LIMIT_TABLE_FULL = -2
    K_FILL_LOG_FULL = -3
    # Order states: the top byte of an order word (kernel.OrderState; 0 is an empty slot).
    K_PENDING = 1
    K_HELD = 2
    K_CONFIRMED = 3
    K_CANCELLED_HOLD = 4
    K_EXPIRED = 5
    K_REFUSED = 6
    K_CANCEL_REQUESTED = 7
    K_CANCELLED_EARLY = 8
    # Outcomes of confirm / cancel, per id (kernel.Outcome).
    K_DONE = 0
    K_ALREADY_CONFIRMED = 1
    K_ALREADY_CANCELLED = 2
    K_ALREADY_EXPIRED = 3
    K_WAS_REFUSED = 4
    K_UNKNOWN = 5
    K_IN_FLIGHT = 6
    K_REMEMBERED = 7
    # Entries of the ``counters`` state array.
    K_ROLLBACKS = 0
    K_ORDERS_LEFT = 1
    K_PAIRS_LEFT = 2
    K_FILLS_LEFT = 3
    K_FILL_CURSOR = 4
    K_JOURNAL_SEQ = 5      # durable inventories (kernel/journal): no kernel reads them
    K_JOURNAL_SEGMENT = 6
    K_JOURNAL_BUSY = 7
    K_N_COUNTERS = 8
    # take_limit's answer bits.
    K_TOOK = 1
    K_NEW_PAIR = 2
    # Word layout: an order word is ``state << STATE_SHIFT | order_id``.
    K_STATE_SHIFT = 56
    # Record layout (kernel/codes.py): words per order-table slot / limit-table
    # pair, and each field's offset within one.
    K_ORDER_STRIDE = 4
    K_ORDER_WORD_AT = 0
    K_ORDER_USER_AT = 1
    K_ORDER_DEADLINE_AT = 2
    K_ORDER_FILLS_AT = 3
    K_PAIR_STRIDE = 2
    K_PAIR_KEY_AT = 0
    K_PAIR_COUNT_AT = 1
    K_FILL_COUNT_BITS = 24
    K_MAX_ORDER_FILLS = 16777215


cdef extern from *:
    """
    #define K_ID_MASK ((int64_t)0x00FFFFFFFFFFFFFFLL)
    #define K_HASH_MULTIPLIER ((uint64_t)0x9E3779B97F4A7C15ULL)
    #define K_UINT64_MASK ((uint64_t)0xFFFFFFFFFFFFFFFFULL)
    #define K_NO_LIMIT ((int64_t)0x7FFFFFFFFFFFFFFFLL)
    #define K_MAX_FILL_LOG ((int64_t)0x0000008000000000LL)
    """
    # 64-bit constants: a Cython enum is a C int, too narrow for these.
    const int64_t K_ID_MASK            # (1 << STATE_SHIFT) - 1: order ids live in the low 56 bits
    const uint64_t K_HASH_MULTIPLIER   # 2**64 / golden ratio (Fibonacci hashing)
    const uint64_t K_UINT64_MASK       # (1 << 64) - 1
    const int64_t K_NO_LIMIT           # INT64_MAX: no cap, any price, no deadline
    const int64_t K_MAX_FILL_LOG       # 1 << (63 - FILL_COUNT_BITS): fill-log entries at most
