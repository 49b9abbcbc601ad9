"""The Numba backend module (``kernel._numba.kernels``, what
:func:`kernel.backends.load` returns for ``backend="numba"``): every public
kernel of the families, :func:`threading_layer` and every shared code, under
the names and with the arguments of :mod:`kernel.reference` (and of
``kernel/_cython/kernels.pyx``).  It defines nothing itself.

Where things are (same stems as ``kernel/reference/`` and the ``.pxi`` files
of ``kernel/_cython/``):

``stock.py``    take_exactly, take_up_to, offers_available, give_back
``single.py``   reserve_single, reserve_single_ordered (flash sales)
``general.py``  carts and the general path (several offers, price limits)
``tracked.py``  ids, caps, holds, the lifecycle and recovery
``one.py``      reserve_one, the ``@njit`` entry point users call from their
                own ``@njit`` code (``reserve_one(*state, s, units, max_p,
                order_id, user, deadline)``, ``state`` the 16 state arrays),
                and bind_reserve_one, the cheapest way to call it from Python
``_jit.py``     dispatch: jit options, parallel / serial dispatchers, threads,
                the threading layer, the on-disk cache keyed by every source
``atomics.py``  the CPU atomics the kernels are built on

A call from the facade: ``Inventory.reserve`` -> ``kernels.reserve_single``
(a Python wrapper in single.py) -> ``_jit._run`` picks the parallel or the
serial dispatcher of ``single._reserve_single`` -> a plain loop over chunks
of orders, whose helpers (``stock.take_exactly``, ...) Numba inlines.
"""

from ..codes import CODES
from ._jit import threading_layer
from .general import (line_available, reserve_carts, reserve_carts_ordered, reserve_general, reserve_general_ordered,
                      roll_back_order, take_cart, take_order)
from .one import bind_reserve_one, reserve_one
from .single import reserve_single, reserve_single_ordered
from .stock import give_back, offers_available, take_exactly, take_up_to
from .tracked import (cancel_orders, claim_and_reserve, claim_order, claim_orders, clear_record, confirm_orders,
                      expire_orders, find_order, give_back_fills, give_back_limit, hash_slot, limit_room, limit_slot,
                      line_end, outcome_of, publish_or_undo, record_fills, recover_orders, reserve_tracked,
                      settle_refused, settle_refused_slot, take_budget, take_budgets, take_limit, take_line,
                      take_tracked, take_limit_at)

# Every code of kernel.codes, by the same name (tests/test_mirrors.py checks
# the values against the other backends).
globals().update(CODES)

__all__ = [
    "threading_layer",
    # stock
    "take_exactly", "take_up_to", "offers_available", "give_back",
    # single
    "reserve_single", "reserve_single_ordered",
    # general
    "take_cart", "reserve_carts", "reserve_carts_ordered", "line_available", "roll_back_order", "take_order",
    "reserve_general", "reserve_general_ordered",
    # tracked
    "hash_slot", "take_budget", "take_budgets", "claim_order", "find_order", "limit_slot", "limit_room", "take_limit",
    "take_limit_at", "give_back_limit", "record_fills", "clear_record", "give_back_fills", "take_line", "publish_or_undo",
    "settle_refused_slot",
    "line_end", "take_tracked", "claim_and_reserve", "claim_orders", "reserve_tracked", "settle_refused", "outcome_of",
    "confirm_orders", "cancel_orders", "expire_orders", "recover_orders",
    # one
    "reserve_one", "bind_reserve_one",
    *CODES,
]
