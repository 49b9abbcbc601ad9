"""One line per order, one offer per SKU: the flash-sale fast path,
concurrent and ordered.

Mirrored by ``kernel/_cython/single.pxi`` and ``kernel/_numba/single.py``.
The line's offer id is its SKU id, and there are no price limits, so these
kernels need no ``taken`` slots: an accepted line took its whole ``qty`` from
offer ``sku[line]``.
"""

from ..codes import ACCEPTED, OUT_OF_STOCK
from .stock import take_exactly

def reserve_single(stock, sku, qty, status, n_threads):
    """Concurrent flash-sale path: order ``i`` takes ``qty[i]`` units of offer
    ``sku[i]`` if that many remain, else it is OUT_OF_STOCK.

    Compiled kernels run this on ``n_threads`` threads with a CAS per
    decision; any serial order is a valid outcome, this one is arrival order.
    Never takes partially, so it never rolls back.
    """
    for i in range(len(sku)):
        status[i] = ACCEPTED if take_exactly(stock, sku[i], qty[i]) else OUT_OF_STOCK


def reserve_single_ordered(stock, sku, qty, status, n_threads):
    """Like :func:`reserve_single` but the outcome must equal arrival order.

    Compiled kernels partition orders by ``sku % n_threads``: orders of
    different SKUs never interact, so each thread may serve its SKUs in
    arrival order independently and the result is the serial one.
    """
    reserve_single(stock, sku, qty, status, 1)
