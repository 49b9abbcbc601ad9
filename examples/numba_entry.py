"""Calling the kernel's ``reserve_one`` from your own ``@njit`` code.

``kernel._numba.kernels.reserve_one`` is itself an ``@njit`` function: pass it
the 11 arrays of ``Inventory.state_arrays()`` (a tuple; ``*state`` unpacks it
inside compiled code) and one order.  It is the same lock-free code the
facade runs, so compiled callers, Python callers and other processes can
share one inventory.

    python examples/numba_entry.py
"""

import numba
import numpy as np

import kernel
from kernel._numba.kernels import reserve_one

ANY_PRICE = kernel.NO_LIMIT  # INT64_MAX
NO_DEADLINE = kernel.NO_DEADLINE  # INT64_MAX


@numba.njit(nogil=True)
def sell(state, skus, order_ids, users):
    """One unit of ``skus[i]`` for ``users[i]`` under id ``order_ids[i]``;
    returns the kernel.Status code of each (negative: a table is full)."""
    out = np.empty(skus.size, np.int64)
    for i in range(skus.size):
        out[i] = reserve_one(*state, skus[i], 1, ANY_PRICE, order_ids[i], users[i], NO_DEADLINE)
    return out


def main():
    inv = kernel.Inventory([3, 100], max_orders=1000, limit_per_user=2)
    codes = sell(inv.state_arrays(), np.array([0, 0, 0, 0, 1]), np.array([1, 2, 3, 1, 4]), np.array([7, 7, 7, 8, 8]))
    print([kernel.Status(c).name for c in codes])  # ACCEPTED, ACCEPTED, LIMIT_EXCEEDED, DUPLICATE, ACCEPTED
    print(inv.stock.tolist())  # [1, 99]


if __name__ == "__main__":
    main()
