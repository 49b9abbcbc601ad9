"""Hand-written C loops as first-class benchmark rows.

The C sources live in ``kernel/bench/c/`` (package data).  :data:`C_LOOPS`
maps each C function to the workload shape and the kernel modes whose
result it reproduces; the runner times every loop that fits a workload
interleaved round by round with the kernels on the same data, checks its
result with the same invariants (no oversell, conservation, all-or-nothing)
and reports each kernel cell's ratio to the best C loop.

Adding a loop is one :class:`CLoop` entry plus a C function following the
calling convention at the top of ``c/baseline.c``; a new ``.c`` file in
``c/`` is compiled too.

Everything is compiled once per process, at run time, into a temporary
directory with ``cc -O3 -march=native -fopenmp``; without a compiler the
loops are left out and :func:`load` says why.
"""

import atexit
import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..invariants import InvariantViolation

__all__ = ["CLoop", "C_LOOPS", "CFLAGS", "load", "loops_for", "shape_of", "cell", "CCell", "GeneralCCell",
           "TrackedCCell", "TrackedGeneralCCell",
           "compiler_version"]

C_DIR = Path(__file__).resolve().parent / "c"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


@dataclass(frozen=True)
class CLoop:
    """One C function and what it reproduces.

    name : row label (``"C seq"``)
    function : the C symbol
    shape : the workload shape it fits (:func:`shape_of`): ``"single"`` (one
        line per order, one offer per SKU, no price limits), ``"carts"``
        (all-or-nothing multi-line orders, one offer per SKU, no price
        limits) or ``"general"`` (several priced offers per SKU and/or price
        limits, carts all or nothing: the marketplace)
    modes : kernel modes whose guarantee the loop's result meets (a serial
        loop in arrival order is a valid ``ordered`` *and* ``concurrent``
        outcome; a CAS loop only a ``concurrent`` one; the tracked loops,
        with ids, caps and holds, only ``tracked``, on any thread count)
    parallel : takes an OpenMP thread count as its last argument
    """

    name: str
    function: str
    shape: str
    modes: tuple
    parallel: bool
    description: str

    @property
    def tracked(self):
        return "tracked" in self.modes


C_LOOPS = [
    CLoop("C seq", "seq_single", "single", ("ordered", "concurrent"), False,
          "one thread, plain loads and stores in arrival order (no atomics: the single-writer upper bound)"),
    CLoop("C CAS", "cas_single", "single", ("concurrent",), True,
          "OpenMP threads, one compare-and-swap per decision"),
    CLoop("C seq runs", "seq_single_runs", "single", ("ordered", "concurrent"), False,
          "one thread, arrival order, each run of orders for one SKU decided against a register and stored once "
          "(the flash sale's shape)"),
    CLoop("C CAS runs", "cas_single_runs", "single", ("concurrent",), True,
          "OpenMP threads, one CAS per run of orders for one SKU (recomputed if the word moved)"),
    CLoop("C seq", "seq_carts", "carts", ("ordered", "concurrent"), False,
          "one thread, carts in arrival order, a line that does not fit rolls the cart back"),
    CLoop("C CAS", "cas_carts", "carts", ("concurrent",), True,
          "OpenMP threads, CAS per line, rollback with atomic adds; refused orders re-run in arrival order "
          "after a rollback (G4)"),
    CLoop("C seq", "seq_general", "general", ("ordered", "concurrent"), False,
          "one thread, carts in arrival order over each SKU's priced offers in priority order (price limit per "
          "line), fills recorded per offer slot, a short line rolls the cart back"),
    CLoop("C CAS", "cas_general", "general", ("concurrent",), True,
          "OpenMP threads, read-only pre-check, CAS per offer taken from, rollback with atomic adds; refused "
          "orders re-run in arrival order after a rollback (G4)"),
    CLoop("C seq", "seq_tracked_single", "single", ("tracked",), False,
          "tracked, one thread, plain loads and stores: id claim in an open-addressing table (32-byte records), "
          "(user, SKU) cap pair, hold record, fill log, stock; prefetch ahead"),
    CLoop("C CAS", "cas_tracked_single", "single", ("tracked",), True,
          "tracked, OpenMP threads, a CAS or fetch-add per shared-word decision; prefetch ahead"),
    CLoop("C seq", "seq_tracked_carts", "carts", ("tracked",), False,
          "tracked carts, one thread, all or nothing (stock and cap pre-checks, rollback of lines taken)"),
    CLoop("C CAS", "cas_tracked_carts", "carts", ("tracked",), True,
          "tracked carts, OpenMP threads, CAS per shared word, rollback with atomic adds"),
    CLoop("C seq", "seq_tracked_general", "general", ("tracked",), False,
          "tracked carts over priced offers, one thread: id claim, (user, SKU) cap pair, hold record, one "
          "fill-log entry per offer slot of each line, offers in priority order within the price limit, all or "
          "nothing (rollback of lines taken)"),
    CLoop("C CAS", "cas_tracked_general", "general", ("tracked",), True,
          "tracked carts over priced offers, OpenMP threads, CAS per shared word and per offer taken from, "
          "rollback with atomic adds"),
]

# Stocks of at least this many words: the plain loops' *_pf twins (prefetch
# ahead) are called instead, as the kernels prefetch only then
# (kernel/_cython/general.pxi CART_PREFETCH_MIN_OFFERS).
PREFETCH_MIN_WORDS = 1 << 21

# Carts longer than this do not fit the tracked C cart loops (MAX_CART in c/tracked.c).
TRACKED_MAX_CART = 64


def compiler_version(cc=None):
    """First line of ``cc --version`` (``None`` without a compiler)."""
    cc = cc or os.environ.get("CC", "cc")
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


_LOADED = {}


def load(defines=(), extra_flags=()):
    """``(library or None, note)``: every ``c/*.c`` compiled into one shared
    library in a temporary directory (once per process, ``defines`` and
    ``extra_flags``: the prefetch distances ``SINGLE_AHEAD``, ``CARTS_AHEAD``,
    ``GENERAL_AHEAD``, ``TRACKED_AHEAD`` can be set to build variants;
    ``extra_flags`` follow :data:`CFLAGS` on the command line, e.g.
    ``-mno-avx512f`` for a build that valgrind can run)."""
    key = (tuple(defines), tuple(extra_flags))
    if key in _LOADED:
        return _LOADED[key]
    cc = os.environ.get("CC", "cc")
    sources = sorted(str(p) for p in C_DIR.glob("*.c"))
    lib, note = None, ""
    if shutil.which(cc) is None:
        note = f"C loops skipped: no C compiler ({cc!r} not found; install gcc, e.g. apt-get install gcc)"
    else:
        folder = tempfile.mkdtemp(prefix="kernel-cloops-")
        atexit.register(shutil.rmtree, folder, True)
        out = Path(folder) / "cloops.so"
        flags = [*CFLAGS, *extra_flags]
        cmd = [cc, *flags, *(f"-D{d}" for d in defines), *sources, "-o", str(out)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            lib = ctypes.CDLL(str(out))
            note = f"C loops compiled with: {' '.join([cc, *flags])} ({compiler_version(cc)})"
        except subprocess.CalledProcessError as exc:
            note = f"C loops skipped: {' '.join(cmd)} failed: {exc.stderr.strip()[-300:]}"
        except (OSError, subprocess.SubprocessError) as exc:
            note = f"C loops skipped: {exc}"
    _LOADED[key] = lib, note
    return lib, note


def shape_of(case):
    """``"single"``, ``"carts"`` (one offer per SKU, no price limits) or
    ``"general"`` (several offers per SKU or price limits)."""
    if case.offer_sku is not None or case.orders.max_price is not None:
        return "general"
    return "single" if case.orders.one_line_per_order else "carts"


def loops_for(case, modes=None):
    """The registry entries that fit ``case`` (and meet one of ``modes``)."""
    shape = shape_of(case)
    out = []
    for loop in C_LOOPS:
        if loop.shape != shape or (modes is not None and not set(loop.modes) & set(modes)):
            continue
        if loop.tracked and shape != "single" and np.diff(case.orders.line_start).max() > TRACKED_MAX_CART:
            continue
        out.append(loop)
    return out


def cell(lib, loop, case, threads):
    """The cell class that drives ``loop``'s calling convention."""
    if loop.tracked:
        return (TrackedGeneralCCell if loop.shape == "general" else TrackedCCell)(lib, loop, case, threads)
    if loop.shape == "general":
        return GeneralCCell(lib, loop, case, threads)
    return CCell(lib, loop, case, threads)


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def _power_of_two_at_least(n):
    return 1 << max(0, int(n - 1).bit_length())


class CCell:
    """One C loop on one case at one thread count: ``run()`` is one checked
    call, returning ``(seconds, accepted, threads)`` like the kernel cells.
    This class drives the plain loops (``single`` and ``carts``)."""

    kind = "c"

    def __init__(self, lib, loop, case, threads):
        self.loop, self.case, self.threads = loop, case, threads if loop.parallel else 1
        self.backend, self.mode = loop.name, loop.modes[0]
        big = case.stock.size >= PREFETCH_MIN_WORDS and hasattr(lib, loop.function + "_pf")
        self.function = loop.function + "_pf" if big else loop.function
        self._fn = getattr(lib, self.function)
        self._fn.restype = None
        self._status = np.empty(case.orders.n_orders, np.int8)
        self._setup()

    def _setup(self):
        o = self.case.orders
        args = [_ptr(o.line_start)] if self.loop.shape == "carts" else []
        args += [_ptr(o.sku), _ptr(o.qty), _ptr(self._status), ctypes.c_int64(o.n_orders)]
        self._args = self._threads_arg(args)
        self._sku, self._qty = np.ascontiguousarray(o.sku), np.ascontiguousarray(o.qty)
        self._line_order = o.line_order

    def _threads_arg(self, args):
        return args + [ctypes.c_int(self.threads)] if self.loop.parallel else args

    def run(self):
        stock = self.case.stock.copy()
        self.fresh()
        t0 = time.perf_counter()
        self.call(stock)
        elapsed = time.perf_counter() - t0
        self.check(stock)
        return elapsed, self.accepted, self.threads

    def fresh(self):
        """Fresh per-call state, made before the clock starts (the kernel
        cells build their fresh inventory untimed too)."""

    def call(self, stock):
        """The loop itself on ``stock`` (a fresh copy of the case's stock)."""
        self._fn(_ptr(stock), *self._args)

    @property
    def accepted(self):
        return int(np.count_nonzero(self._status == 0))

    def _fail(self, what):
        raise InvariantViolation(f"{self.loop.function}: {what}")

    def check(self, stock):
        """No oversell, and stock + units of accepted orders == initial stock
        per SKU (conservation; with per-order status it is all-or-nothing
        too: a cart that kept some lines but says refused breaks it)."""
        accepted = self._status == 0
        if not np.all((self._status == 0) | (self._status == 1)):
            self._fail("status not 0/1")
        taken = np.bincount(self._sku, weights=np.where(accepted[self._line_order], self._qty, 0),
                            minlength=stock.size).astype(np.int64)
        if stock.min() < 0:
            self._fail("negative stock (oversell)")
        if not np.array_equal(stock + taken, self.case.stock):
            self._fail("stock + accepted units != initial stock (conservation / all-or-nothing)")

    @property
    def status(self):
        return self._status


class GeneralCCell(CCell):
    """The general loops (several priced offers per SKU): the inventory's own
    layout, a ``taken`` slot per offer of each line's SKU (as the kernel)."""

    def _setup(self):
        case, o = self.case, self.case.orders
        inv = case.inventory("reference")  # the inventory's layout: priority order, offer ranges
        self._price = np.ascontiguousarray(inv.price, np.int64)
        self._offer_start = np.ascontiguousarray(inv.offer_start, np.int64)
        self._by_prio = np.ascontiguousarray(inv.offer_by_priority, np.int64)
        self._line_start = np.ascontiguousarray(o.line_start, np.int64)
        self._sku, self._qty = np.ascontiguousarray(o.sku), np.ascontiguousarray(o.qty)
        self._max_price = np.ascontiguousarray(o.price_limits(), np.int64)
        per_line = self._offer_start[self._sku + 1] - self._offer_start[self._sku]
        self._slot_start = np.zeros(o.n_lines + 1, np.int64)
        np.cumsum(per_line, out=self._slot_start[1:])
        # Slot -> its line and the offer it takes from (for the check).
        self._slot_line = np.repeat(np.arange(o.n_lines), per_line)
        rank = np.arange(self._slot_start[-1]) - self._slot_start[self._slot_line]
        self._slot_offer = self._by_prio[self._offer_start[self._sku[self._slot_line]] + rank]
        self._line_order = o.line_order
        self._taken = np.zeros(self._slot_start[-1], np.int64)
        args = [_ptr(a) for a in (self._price, self._offer_start, self._by_prio, self._line_start, self._sku,
                                  self._qty, self._max_price, self._slot_start, self._taken, self._status)]
        self._args = self._threads_arg(args + [ctypes.c_int64(o.n_orders)])

    def fresh(self):
        self._taken.fill(0)  # fresh slots, as the kernel's np.zeros

    def check(self, stock):
        """No oversell; per offer stock + taken == initial (conservation);
        accepted lines got exactly their qty, refused orders hold nothing
        (all or nothing); nothing taken above a line's price limit."""
        if not np.all((self._status == 0) | (self._status == 1)):
            self._fail("status not 0/1")
        if stock.min() < 0:
            self._fail("negative stock (oversell)")
        taken = self._taken
        if taken.min(initial=0) < 0:
            self._fail("negative fill")
        by_offer = np.bincount(self._slot_offer, weights=taken, minlength=stock.size).astype(np.int64)
        if not np.array_equal(stock + by_offer, self.case.stock):
            self._fail("stock + taken units != initial stock per offer (conservation)")
        per_line = np.bincount(self._slot_line, weights=taken, minlength=self._sku.size).astype(np.int64)
        line_accepted = self._status[self._line_order] == 0
        if not np.array_equal(per_line[line_accepted], self._qty[line_accepted]) or per_line[~line_accepted].any():
            self._fail("an accepted line is short or a refused order kept units (all or nothing)")
        dear = self._price[self._slot_offer] > self._max_price[self._slot_line]
        if taken[dear].any():
            self._fail("units taken from an offer priced above the line's limit")


class TrackedCCell(CCell):
    """The tracked loops: each order with an id and a buyer (the case's
    tracked orders), tables zeroed and prefaulted before the clock starts
    and sized as the kernel sizes its own (power of two, at least twice the
    orders / lines), every user capped at ``TRACKED_LIMIT`` units per SKU."""

    def _setup(self):
        from .workloads import TRACKED_LIMIT

        o = self._orders = self.case.tracked_orders()
        carts = self.loop.shape == "carts"
        self._order_slots = _power_of_two_at_least(2 * o.n_orders)
        self._limit_slots = _power_of_two_at_least(2 * o.n_lines)
        self._order_table = np.zeros(4 * self._order_slots, np.int64)
        self._limit_table = np.zeros(2 * self._limit_slots, np.int64)
        self._fill_offer = np.zeros(o.n_lines, np.int64)
        self._fill_qty = np.zeros(o.n_lines, np.int64)
        self._sku, self._qty = np.ascontiguousarray(o.sku), np.ascontiguousarray(o.qty)
        self._line_order = o.line_order
        self.cap = TRACKED_LIMIT
        i64 = ctypes.c_int64
        args = ([_ptr(o.line_start)] if carts else []) + [
            _ptr(self._sku), _ptr(self._qty), _ptr(self._status), i64(o.n_orders), _ptr(o.order_id),
            _ptr(o.user_id), _ptr(self._order_table), i64(self._order_slots), _ptr(self._limit_table),
            i64(self._limit_slots), _ptr(self._fill_offer), _ptr(self._fill_qty), i64(self.case.n_skus),
            i64(TRACKED_LIMIT)]
        self._args = self._threads_arg(args)

    def fresh(self):
        for a in (self._order_table, self._limit_table, self._fill_offer, self._fill_qty):
            a.fill(0)  # zeroed and prefaulted, as the kernel's tables at creation

    def check(self, stock):
        """No oversell, conservation over accepted (HELD) orders, every id
        claimed once with its final state (HELD accepted, REFUSED
        otherwise), caps honoured: every (user, SKU) count within the cap
        and the counts adding up to the accepted units."""
        status = self._status
        if not np.all((status == 0) | (status == 1) | (status == 3)):
            self._fail("status not accepted / out of stock / limit exceeded (ids are unique here)")
        accepted = status == 0
        line_accepted = accepted[self._line_order]
        taken = np.bincount(self._sku, weights=np.where(line_accepted, self._qty, 0),
                            minlength=stock.size).astype(np.int64)
        if stock.min() < 0:
            self._fail("negative stock (oversell)")
        if not np.array_equal(stock + taken, self.case.stock):
            self._fail("stock + accepted units != initial stock (conservation / all-or-nothing)")
        words = self._order_table[0::4]
        words = words[words != 0]
        state = words >> 56
        if words.size != status.size or np.count_nonzero(state == 2) != np.count_nonzero(accepted) \
                or np.count_nonzero(state == 6) != status.size - np.count_nonzero(accepted):
            self._fail("order table: not one HELD record per accepted order and one REFUSED per refused")
        counts = self._limit_table[1::2]
        if counts.max(initial=0) > self.cap or counts.min(initial=0) < 0:
            self._fail("a (user, SKU) count is past the cap")
        if counts.sum() != taken.sum() or self._fill_qty.sum() != taken.sum():
            self._fail("cap counts / fill log do not add up to the accepted units")


class TrackedGeneralCCell(TrackedCCell):
    """The tracked loops over priced offers (the marketplace): the
    inventory's own layout as :class:`GeneralCCell`, the tables as
    :class:`TrackedCCell`, and a fill log of one entry per offer slot of
    each line (``slot_start``), as the kernels lay it out for a batch."""

    def _setup(self):
        from .workloads import TRACKED_LIMIT

        GeneralCCell._setup(self)  # layout, slot_start (its args are replaced below)
        o = self._orders = self.case.tracked_orders()
        self._order_slots = _power_of_two_at_least(2 * o.n_orders)
        self._limit_slots = _power_of_two_at_least(2 * o.n_lines)
        self._order_table = np.zeros(4 * self._order_slots, np.int64)
        self._limit_table = np.zeros(2 * self._limit_slots, np.int64)
        self._fill_offer = np.zeros(self._slot_start[-1], np.int64)
        self._fill_qty = np.zeros(self._slot_start[-1], np.int64)
        self.cap = TRACKED_LIMIT
        i64 = ctypes.c_int64
        args = [_ptr(a) for a in (self._price, self._offer_start, self._by_prio, self._line_start, self._sku,
                                  self._qty, self._max_price, self._slot_start, self._status)]
        args += [i64(o.n_orders), _ptr(o.order_id), _ptr(o.user_id), _ptr(self._order_table),
                 i64(self._order_slots), _ptr(self._limit_table), i64(self._limit_slots), _ptr(self._fill_offer),
                 _ptr(self._fill_qty), i64(self.case.n_skus), i64(TRACKED_LIMIT)]
        self._args = self._threads_arg(args)

    def check(self, stock):
        """As :meth:`TrackedCCell.check`, per offer: no oversell, stock +
        logged fills == initial per offer (conservation); accepted lines got
        exactly their qty from their slots, refused orders hold nothing; no
        fill above a line's price limit, each logged at its own offer; one
        HELD / REFUSED record per order; caps honoured and adding up."""
        status = self._status
        if not np.all((status == 0) | (status == 1) | (status == 3)):
            self._fail("status not accepted / out of stock / limit exceeded (ids are unique here)")
        if stock.min() < 0:
            self._fail("negative stock (oversell)")
        fills = self._fill_qty
        if fills.min(initial=0) < 0:
            self._fail("negative fill")
        logged = fills != 0
        if not np.array_equal(self._fill_offer[logged], self._slot_offer[logged]):
            self._fail("a fill logged against another offer than its slot's")
        by_offer = np.bincount(self._slot_offer, weights=fills, minlength=stock.size).astype(np.int64)
        if not np.array_equal(stock + by_offer, self.case.stock):
            self._fail("stock + logged fills != initial stock per offer (conservation)")
        per_line = np.bincount(self._slot_line, weights=fills, minlength=self._sku.size).astype(np.int64)
        line_accepted = status[self._line_order] == 0
        if not np.array_equal(per_line[line_accepted], self._qty[line_accepted]) or per_line[~line_accepted].any():
            self._fail("an accepted line is short or a refused order kept units (all or nothing)")
        if fills[self._price[self._slot_offer] > self._max_price[self._slot_line]].any():
            self._fail("units taken from an offer priced above the line's limit")
        words = self._order_table[0::4]
        words = words[words != 0]
        state = words >> 56
        accepted = np.count_nonzero(status == 0)
        if words.size != status.size or np.count_nonzero(state == 2) != accepted \
                or np.count_nonzero(state == 6) != status.size - accepted:
            self._fail("order table: not one HELD record per accepted order and one REFUSED per refused")
        counts = self._limit_table[1::2]
        if counts.max(initial=0) > self.cap or counts.min(initial=0) < 0:
            self._fail("a (user, SKU) count is past the cap")
        if counts.sum() != fills.sum():
            self._fail("cap counts do not add up to the logged fills")
