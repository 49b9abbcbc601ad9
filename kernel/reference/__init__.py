"""The executable spec: readable Python for every kernel function.

One module per kernel family, with the same file stem in every backend:

====================  ==========================  ==========================
reference             Cython (in kernels.pyx)     Numba
====================  ==========================  ==========================
``stock.py``          ``_cython/stock.pxi``       ``_numba/stock.py``
``single.py``         ``_cython/single.pxi``      ``_numba/single.py``
``general.py``        ``_cython/general.pxi``     ``_numba/general.py``
``tracked.py``        ``_cython/tracked.pxi``     ``_numba/tracked.py``
``one.py``            ``_cython/one.pxi``         ``_numba/one.py``
====================  ==========================  ==========================

Every function has the same name and arguments in all three
(``tests/test_mirrors.py`` checks it), and every code comes from
:mod:`kernel.codes`.  This package re-exports them all, so
``kernel.reference.take_order`` is the spec of ``take_order`` everywhere.  It
processes orders one at a time in arrival order, which is one valid
linearisation of what the concurrent kernels do, so it is also the oracle the
tests compare them with.

Data layout (all arrays are 1-D, C-contiguous, native ``int64`` unless noted;
the facade in :mod:`kernel.inventory` validates and converts, kernels never
validate):

Inventory
    ``stock[o]``            remaining units of offer ``o`` (mutated atomically)
    ``price[o]``            unit price of offer ``o``
    ``offer_start[s]``      CSR over SKUs: the offers of SKU ``s`` in priority
                            order are ``offer_by_priority[offer_start[s]:offer_start[s + 1]]``
    ``counters[ROLLBACKS]`` number of rollbacks ever made on this inventory

Batch
    ``line_start[i]``       CSR over orders: order ``i`` owns lines
                            ``line_start[i]:line_start[i + 1]``
    ``sku[l], qty[l]``      the line's SKU and quantity (``qty > 0``)
    ``max_price[l]``        highest acceptable unit price (INT64_MAX: any)
    ``slot_start[l]``       the line's slots in ``taken``: one per offer of
                            its SKU, in priority order
    ``taken[slot]``         output: units the line took from that offer
    ``status[i]``           output (``int8``): a :class:`kernel.Status` code
    ``order_index``         the orders to process, in arrival order

The single-offer functions are the fast paths for one offer per SKU (offer
id == SKU id) and no price limits: ``*_single*`` for one line per order (the
flash sale), ``*_carts*`` for several.  They need no ``taken`` slots: an
accepted line took its whole ``qty`` from offer ``sku[line]``.
"""

from ..codes import *  # noqa: F401,F403  (the codes are part of the spec)
from ..codes import CODES
from . import general, one, single, stock, tracked
from .general import (line_available, reserve_carts, reserve_carts_ordered, reserve_general,  # noqa: F401
                      reserve_general_ordered, roll_back_order, take_cart, take_order)
from .one import bind_reserve_one, reserve_one  # noqa: F401
from .single import reserve_single, reserve_single_ordered  # noqa: F401
from .stock import give_back, offers_available, take_exactly, take_up_to  # noqa: F401
from .tracked import (cancel_orders, claim_and_reserve, claim_order, claim_orders, clear_record,  # noqa: F401
                      confirm_orders, expire_orders, find_order, give_back_fills, give_back_limit, hash_slot,
                      limit_room, limit_slot, line_end, outcome_of, publish_or_undo, record_fills, recover_orders,
                      reserve_tracked, settle_refused, settle_refused_slot, take_budget, take_budgets, take_limit,
                      take_limit_at, take_line, take_tracked)

# The kernel families, in dependency order: stem -> module.
FAMILIES = {"stock": stock, "single": single, "general": general, "tracked": tracked, "one": one}


def functions(family):
    """The public kernel functions of ``family`` (a stem of :data:`FAMILIES`),
    by name: what every backend must define under the same names."""
    module = FAMILIES[family]
    return {name: obj for name, obj in vars(module).items()
            if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__}


__all__ = [*CODES, *(name for family in FAMILIES for name in functions(family)), "FAMILIES", "functions"]
