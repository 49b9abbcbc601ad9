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

__all__ = ["CLoop", "C_LOOPS", "CFLAGS", "load", "loops_for", "CCell", "compiler_version"]

C_DIR = Path(__file__).resolve().parent / "c"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


@dataclass(frozen=True)
class CLoop:
    """One C function and what it reproduces.

    name : row label (``"C seq"``)
    function : the C symbol
    shape : ``"single"`` (one line per order) or ``"carts"`` (all-or-nothing
        multi-line orders); single-offer, unpriced workloads only
    modes : kernel modes whose guarantee the loop's result meets (a serial
        loop in arrival order is a valid ``ordered`` *and* ``concurrent``
        outcome; a CAS loop only a ``concurrent`` one)
    parallel : takes an OpenMP thread count as its last argument
    """

    name: str
    function: str
    shape: str
    modes: tuple
    parallel: bool
    description: str


C_LOOPS = [
    CLoop("C seq", "seq_single", "single", ("ordered", "concurrent"), False,
          "one thread, plain loads and stores in arrival order (no atomics: the single-writer upper bound)"),
    CLoop("C CAS", "cas_single", "single", ("concurrent",), True,
          "OpenMP threads, one compare-and-swap per decision"),
    CLoop("C seq", "seq_carts", "carts", ("ordered", "concurrent"), False,
          "one thread, carts in arrival order, a line that does not fit rolls the cart back"),
    CLoop("C CAS", "cas_carts", "carts", ("concurrent",), True,
          "OpenMP threads, CAS per line, rollback with atomic adds"),
]


def compiler_version(cc=None):
    """First line of ``cc --version`` (``None`` without a compiler)."""
    cc = cc or os.environ.get("CC", "cc")
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


_LOADED = {}


def load():
    """``(library or None, note)``: every ``c/*.c`` compiled into one shared
    library in a temporary directory (once per process)."""
    if "lib" in _LOADED:
        return _LOADED["lib"], _LOADED["note"]
    cc = os.environ.get("CC", "cc")
    sources = sorted(str(p) for p in C_DIR.glob("*.c"))
    lib, note = None, ""
    if shutil.which(cc) is None:
        note = f"C loops skipped: no C compiler ({cc!r} not found; install gcc, e.g. apt-get install gcc)"
    else:
        folder = tempfile.mkdtemp(prefix="kernel-cloops-")
        atexit.register(shutil.rmtree, folder, True)
        out = Path(folder) / "cloops.so"
        cmd = [cc, *CFLAGS, *sources, "-o", str(out)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            lib = ctypes.CDLL(str(out))
            note = f"C loops compiled with: {' '.join([cc, *CFLAGS])} ({compiler_version(cc)})"
        except subprocess.CalledProcessError as exc:
            note = f"C loops skipped: {' '.join(cmd)} failed: {exc.stderr.strip()[-300:]}"
        except (OSError, subprocess.SubprocessError) as exc:
            note = f"C loops skipped: {exc}"
    _LOADED.update(lib=lib, note=note)
    return lib, note


def shape_of(case):
    """``"single"``, ``"carts"`` or ``None`` (offers or prices: no C loop)."""
    if case.offer_sku is not None or case.orders.max_price is not None:
        return None
    return "single" if case.orders.one_line_per_order else "carts"


def loops_for(case):
    """The registry entries that fit ``case``."""
    shape = shape_of(case)
    return [loop for loop in C_LOOPS if loop.shape == shape]


class CCell:
    """One C loop on one case at one thread count: ``run()`` is one checked
    call, returning ``(seconds, accepted, threads)`` like the kernel cells."""

    kind = "c"

    def __init__(self, lib, loop, case, threads):
        self.loop, self.case, self.threads = loop, case, threads if loop.parallel else 1
        self.backend, self.mode = loop.name, loop.modes[0]
        o = case.orders
        self._fn = getattr(lib, loop.function)
        self._fn.restype = None
        self._status = np.empty(o.n_orders, np.int8)
        ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        self._ptr = ptr
        args = [ptr(o.line_start)] if loop.shape == "carts" else []
        args += [ptr(o.sku), ptr(o.qty), ptr(self._status), ctypes.c_int64(o.n_orders)]
        if loop.parallel:
            args.append(ctypes.c_int(self.threads))
        self._args = args
        self._sku, self._qty = np.ascontiguousarray(o.sku), np.ascontiguousarray(o.qty)
        self._line_order = o.line_order

    def run(self):
        stock = self.case.stock.copy()
        t0 = time.perf_counter()
        self.call(stock)
        elapsed = time.perf_counter() - t0
        self.check(stock)
        return elapsed, self.accepted, self.threads

    def call(self, stock):
        """The loop itself on ``stock`` (a fresh copy of the case's stock)."""
        self._fn(self._ptr(stock), *self._args)

    @property
    def accepted(self):
        return int(np.count_nonzero(self._status == 0))

    def check(self, stock):
        """No oversell, and stock + units of accepted orders == initial stock
        per SKU (conservation; with per-order status it is all-or-nothing
        too: a cart that kept some lines but says refused breaks it)."""
        accepted = self._status == 0
        if not np.all((self._status == 0) | (self._status == 1)):
            raise InvariantViolation(f"{self.loop.function}: status not 0/1")
        taken = np.bincount(self._sku, weights=np.where(accepted[self._line_order], self._qty, 0),
                            minlength=stock.size).astype(np.int64)
        if stock.min() < 0:
            raise InvariantViolation(f"{self.loop.function}: negative stock (oversell)")
        if not np.array_equal(stock + taken, self.case.stock):
            raise InvariantViolation(f"{self.loop.function}: stock + accepted units != initial stock "
                                     "(conservation / all-or-nothing)")

    @property
    def status(self):
        return self._status
