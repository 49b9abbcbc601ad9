"""Lock-free order matching and inventory decrement for flash sales.

>>> import numpy as np, kernel
>>> inv = kernel.Inventory([5, 0, 2])
>>> result = inv.reserve(kernel.OrderBatch(sku=[0, 1, 2, 2], qty=[3, 1, 2, 1]))
>>> [kernel.Status(s).name for s in result.status]
['ACCEPTED', 'OUT_OF_STOCK', 'ACCEPTED', 'OUT_OF_STOCK']
>>> inv.stock.tolist()
[2, 0, 0]

Map of the package
------------------
Facade (what a service imports; validation happens here, once):

* ``inventory.py``  :class:`Inventory`: building (private, shared memory,
  mapped file), views, ``reserve`` / ``release`` / ``restock``, and the
  documented tracked-order entry points;
* ``lifecycle.py``  :class:`~kernel.lifecycle.TrackedOrders`, the component an
  inventory that tracks orders owns: ids, caps, holds, confirm / cancel /
  expire / recover, ``reserve_one``;
* ``result.py``     :class:`Result`, :class:`Fills`;
* ``orders.py``     :class:`OrderBatch` (columnar; checked once, at construction);
* ``inputs.py``     coercion and the shared error messages;
* ``tracking.py``   :class:`CapacityError`, ``NO_LIMIT`` / ``NO_DEADLINE``, table probes;
* ``codes.py``      every integer code, once (:class:`Status`, :class:`OrderState`,
  :class:`Outcome`, counters, word layout);
* ``state.py``      the state block: ``STATE_ARRAYS`` (the one order of the 16
  arrays), private / shared / mapped;
* ``backends.py``   registry (name -> kernel module), thread policy, the G4 re-run rule.

Kernels, one semantics in three implementations, one file stem per family
(``stock``, ``single``, ``general``, ``tracked``, ``one``) in each:

* ``reference/``    readable Python: the spec and the test oracle;
* ``_cython/``      ``kernels.pyx`` includes ``<family>.pxi``; ``codes.pxd``,
  ``atomics.h``; ``kernels.pxd`` / ``tracked.pxd`` for users' Cython;
* ``_numba/``       ``<family>.py`` as plain loops; ``_jit.py`` holds the
  dispatch, threads and cache machinery; ``kernels.py`` is the backend module.

Checkers and tools: ``invariants.py`` (G1-G4 and the whole tracked state,
run after every benchmark round), ``bench/`` (workloads, runner, report,
gate).

How a call flows: ``Inventory.reserve(batch)`` checks the batch against the
inventory, picks a thread count (``backends.resolve_threads``), and calls the
backend module's kernel for the batch's shape (``reserve_single`` for one line
per order and one offer per SKU, ``reserve_carts`` for carts,
``reserve_general`` for several offers or price limits, or, on a tracked
inventory, ``TrackedOrders.reserve``: ``claim_and_reserve``, one pass that
claims and reserves chunk by chunk, then ``settle_refused``).  The kernel changes stock only by CAS / fetch-add;
after a concurrent batch that saw a rollback, refused orders are re-run one by
one (G4).  The statuses and the kernel's record of what each line took become
a :class:`Result`.
"""

from .backends import available_backends, openmp_enabled
from .codes import OrderState, Outcome, Status
from .inventory import Inventory
from .orders import OrderBatch
from .result import Fills, Result
from .tracking import NO_DEADLINE, NO_LIMIT, CapacityError

__all__ = ["Inventory", "OrderBatch", "Result", "Fills", "Status", "OrderState", "Outcome", "CapacityError",
           "NO_LIMIT", "NO_DEADLINE", "available_backends", "openmp_enabled"]
__version__ = "0.1.0"
