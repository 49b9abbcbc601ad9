"""Lock-free order matching and inventory decrement for flash sales.

>>> import numpy as np, kernel
>>> inv = kernel.Inventory([5, 0, 2])
>>> result = inv.reserve(kernel.OrderBatch(sku=[0, 1, 2, 2], qty=[3, 1, 2, 1]))
>>> [kernel.Status(s).name for s in result.status]
['ACCEPTED', 'OUT_OF_STOCK', 'ACCEPTED', 'OUT_OF_STOCK']
>>> inv.stock.tolist()
[2, 0, 0]
"""

from .backends import available_backends, openmp_enabled
from .inventory import Fills, Inventory, Result
from .orders import OrderBatch
from .status import Status
from .tracking import NO_DEADLINE, NO_LIMIT, CapacityError, OrderState, Outcome

__all__ = ["Inventory", "OrderBatch", "Result", "Fills", "Status", "OrderState", "Outcome", "CapacityError",
           "NO_LIMIT", "NO_DEADLINE", "available_backends", "openmp_enabled"]
__version__ = "0.1.0"
