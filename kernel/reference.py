"""The executable spec: readable Python for every kernel function.

``kernel/_cython/kernels.pyx`` and ``kernel/_numba/kernels.py`` mirror this
module function for function, with the same names and arguments.  This module
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

ACCEPTED = 0
OUT_OF_STOCK = 1
ROLLBACKS = 0  # index into ``counters``


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


def take_exactly(stock, offer, units):
    """Take exactly ``units`` from ``stock[offer]`` or nothing; return whether
    it took (compiled: CAS loop that gives up, without writing, once the
    stock is too small)."""
    if stock[offer] < units:
        return False
    stock[offer] -= units
    return True


def take_cart(stock, line_start, sku, qty, counters, order):
    """One-offer-per-SKU twin of :func:`take_order`: every line takes exactly
    its ``qty`` from offer ``sku[line]``, all or nothing."""
    lines = range(line_start[order], line_start[order + 1])
    for line in lines:  # read-only pre-check, as in take_order
        if stock[sku[line]] < qty[line]:
            return OUT_OF_STOCK
    for line in lines:
        if not take_exactly(stock, sku[line], qty[line]):
            for earlier in range(line_start[order], line):
                stock[sku[earlier]] += qty[earlier]
            counters[ROLLBACKS] += 1
            return OUT_OF_STOCK
    return ACCEPTED


def reserve_carts(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Concurrent multi-line path for one offer per SKU (see
    :func:`reserve_general` for the rollback and re-run rule)."""
    reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, 1)


def reserve_carts_ordered(stock, line_start, sku, qty, order_index, status, counters, n_threads):
    """Multi-line path for one offer per SKU whose outcome equals arrival
    order.  Runs serially whatever ``n_threads`` says: orders with lines on
    several SKUs cannot be split by SKU without changing the outcome."""
    for order in order_index:
        status[order] = take_cart(stock, line_start, sku, qty, counters, order)


def take_up_to(stock, offer, units):
    """Take ``min(stock[offer], units)`` and return it (compiled: CAS loop)."""
    got = min(stock[offer], units)
    stock[offer] -= got
    return got


def line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, enough):
    """Units the line could take now from its eligible offers, counted only
    until ``enough`` (a read-only pre-check: it writes nothing)."""
    total = 0
    s = sku[line]
    for k in range(offer_start[s], offer_start[s + 1]):
        offer = offer_by_priority[k]
        if price[offer] > max_price[line]:
            break  # offers are in price order: the rest are dearer still
        total += stock[offer]
        if total >= enough:
            break
    return total


def roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken, counters, order):
    """Give back every unit the order took and clear its ``taken`` slots."""
    for line in range(line_start[order], line_start[order + 1]):
        base = offer_start[sku[line]]
        for j in range(slot_start[line + 1] - slot_start[line]):
            got = taken[slot_start[line] + j]
            if got:
                stock[offer_by_priority[base + j]] += got
                taken[slot_start[line] + j] = 0
    counters[ROLLBACKS] += 1


def take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start, taken,
               counters, order):
    """Fill every line of one order from its SKU's eligible offers in priority
    order, all or nothing; return the order's status."""
    lines = range(line_start[order], line_start[order + 1])
    # Pre-check with reads only: an order that cannot fit costs loads, not
    # writes (and not a rollback another order could trip over).
    for line in lines:
        if line_available(stock, price, offer_start, offer_by_priority, sku, max_price, line, qty[line]) < qty[line]:
            return OUT_OF_STOCK
    for line in lines:
        need = qty[line]
        s = sku[line]
        base = offer_start[s]
        for j in range(offer_start[s + 1] - base):
            offer = offer_by_priority[base + j]
            if price[offer] > max_price[line]:
                break
            got = take_up_to(stock, offer, need)
            taken[slot_start[line] + j] = got
            need -= got
            if need == 0:
                break
        if need:
            roll_back_order(stock, offer_start, offer_by_priority, line_start, sku, slot_start, taken, counters, order)
            return OUT_OF_STOCK
    return ACCEPTED


def reserve_general(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price, slot_start,
                    order_index, taken, status, counters, n_threads):
    """Concurrent general path: several offers per SKU, several lines per
    order, price limits.  Compiled kernels run the orders of ``order_index``
    on ``n_threads`` threads; the facade re-runs, in arrival order, the
    rejected orders of any batch during which a rollback happened (so a
    rollback never makes another order fail for stock that is there at the
    end)."""
    reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                            slot_start, order_index, taken, status, counters, 1)


def reserve_general_ordered(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                            slot_start, order_index, taken, status, counters, n_threads):
    """General path whose outcome equals arrival order.

    Compiled kernels partition orders by ``sku[line_start[order]] % n_threads``;
    that is only the serial outcome when every order has one line, so the
    facade passes ``n_threads=1`` for batches with multi-line orders.
    """
    for order in order_index:
        status[order] = take_order(stock, price, offer_start, offer_by_priority, line_start, sku, qty, max_price,
                                   slot_start, taken, counters, order)


def give_back(stock, offer, qty, n_threads):
    """Return ``qty[k]`` units to ``stock[offer[k]]`` for every ``k``
    (compiled: atomic fetch-add)."""
    for k in range(len(offer)):
        stock[offer[k]] += qty[k]
