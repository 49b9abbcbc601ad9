"""Timing the kernels over the workload registry, every round checked.

A round builds a fresh inventory (untimed), times only
``inv.reserve(case.orders, ...)`` with :func:`time.perf_counter`, then runs
:func:`kernel.invariants.check_run` on the outcome.  A round that breaks an
invariant raises :class:`~kernel.invariants.InvariantViolation`: a wrong
result is an error, never a number.

Rates come in two flavours:

* *decided* orders/s: every order of the batch, accepted or refused;
* *accepted* orders/s: only the accepted ones.  The Tmall peaks of
  :mod:`kernel.bench.peaks` count orders *created*, so the headline ratios
  (``ratio_2020``, ``ratio_2009``) use accepted orders/s; the decided
  ratios are given too.
"""

import statistics
import time
from dataclasses import asdict, dataclass, field

from .. import backends as _backends
from ..invariants import check_run, check_tracked
from . import peaks
from .machine import machine_info
from .workloads import make_case

__all__ = ["Measurement", "measure", "timed_round", "numba_warmup_seconds", "run_matrix",
           "REFERENCE_MAX_ORDERS"]

# concurrent / ordered: the plain batch paths; tracked: the service path
# (ids, caps and holds; concurrent).
MODES = ("concurrent", "ordered", "tracked")
# durable (opt-in: it writes to disk, so not a default): the tracked path in
# batches of 10,000 through a journal with fsync="batch" (kernel.journal.bench).
OPT_IN_MODES = ("durable",)

# The reference backend is the pure-Python oracle (a few hundred thousand
# orders/s at best): it is only timed on workloads of at most this many
# orders, and only on one thread (it ignores ``threads``).
REFERENCE_MAX_ORDERS = 200_000


@dataclass
class Measurement:
    """The timed rounds of one (workload, backend, mode, threads) cell."""

    workload: str
    backend: str
    mode: str
    threads: int
    n_orders: int
    accepted: int
    seconds: list
    accepted_rounds: list = field(default_factory=list)
    threads_label: str = ""

    def __post_init__(self):
        if not self.threads_label:
            self.threads_label = str(self.threads)

    @property
    def median_seconds(self):
        return statistics.median(self.seconds)

    @property
    def orders_per_s(self):
        """Decided orders (accepted or refused) per second, median round."""
        return self.n_orders / self.median_seconds

    @property
    def accepted_per_s(self):
        """Accepted orders per second, median round."""
        return self.accepted / self.median_seconds

    @property
    def spread(self):
        """Decided orders/s of the slowest and fastest round, and the range of
        the round times relative to their median."""
        lo, hi = min(self.seconds), max(self.seconds)
        return {"min_rate": self.n_orders / hi, "max_rate": self.n_orders / lo,
                "relative_range": (hi - lo) / self.median_seconds}

    @property
    def ratio_2020(self):
        """Accepted orders/s over the 2020 Double 11 peak (orders created/s)."""
        return self.accepted_per_s / peaks.PEAK_2020

    @property
    def ratio_2009(self):
        return self.accepted_per_s / peaks.PEAK_2009

    @property
    def decided_ratio_2020(self):
        return self.orders_per_s / peaks.PEAK_2020

    @property
    def decided_ratio_2009(self):
        return self.orders_per_s / peaks.PEAK_2009

    def as_dict(self):
        out = asdict(self)
        for name in ("median_seconds", "orders_per_s", "accepted_per_s", "spread", "ratio_2020",
                     "ratio_2009", "decided_ratio_2020", "decided_ratio_2009"):
            out[name] = getattr(self, name)
        return out


def timed_round(case, backend, mode, threads):
    """One checked round: (seconds, accepted count, threads the kernel ran on).

    ``mode="tracked"`` times the service path: every order with an id and a
    buyer (idempotency table, per-user caps, holds), then checks the whole
    tracked state too.
    """
    if mode == "durable":  # checked there too (check_tracked)
        from ..journal.bench import durable_round
        return durable_round(case, backend, threads)[:3]
    tracked = mode == "tracked"
    inv = case.inventory(backend, threads, tracked=tracked)
    orders = case.tracked_orders() if tracked else case.orders
    initial = inv.stock.copy()
    t0 = time.perf_counter()
    result = inv.reserve(orders, ordered=mode == "ordered", threads=threads)
    elapsed = time.perf_counter() - t0
    check_run(inv, orders, result, initial)
    if tracked:
        check_tracked(inv, initial)
    return elapsed, result.n_accepted, result.threads


def measure(case, backend, mode, threads, rounds, warmup=1, threads_label=""):
    """Time ``rounds`` checked rounds of ``case`` after ``warmup`` untimed ones.

    Raises
    ------
    InvariantViolation
        A round (warm-up included) broke a guarantee of the kernel.
    """
    if mode not in MODES + OPT_IN_MODES:
        raise ValueError(f"mode must be one of {MODES + OPT_IN_MODES}, got {mode!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    ordered = mode == "ordered"
    for _ in range(warmup):
        timed_round(case, backend, mode, threads)
    seconds, accepted, used = [], [], set()
    for _ in range(rounds):
        elapsed, n_accepted, ran_on = timed_round(case, backend, mode, threads)
        seconds.append(elapsed)
        accepted.append(n_accepted)
        used.add(ran_on)
    if used != {threads} and backend != "reference":
        # The thread policy chose fewer threads (small batch, few SKUs): say so.
        threads_label = f"{threads_label or threads} (ran on {'/'.join(map(str, sorted(used)))})"
    if ordered:  # arrival order fixes the outcome
        assert len(set(accepted)) == 1, f"ordered mode accepted different counts per round: {accepted}"
    return Measurement(case.name, backend, mode, int(threads), case.n_orders,
                       int(statistics.median_low(accepted)), seconds, accepted, threads_label)


def numba_warmup_seconds(case, mode="concurrent", threads=1):
    """Seconds of one (checked) numba reserve of ``case``.

    Called before any other numba call of that kernel in the process it
    times JIT compilation or the load from Numba's on-disk cache, which the
    timed rounds of :func:`measure` must not include.
    """
    return timed_round(case, "numba", mode, threads)[0]


def resolve_thread_counts(thread_counts):
    """``[(threads, label)]``: ``'all'`` becomes :func:`default_threads`; a
    count listed twice is kept once, with both labels (``'2 (all)'``)."""
    cores = _backends.default_threads()
    out = {}
    for t in thread_counts:
        n, label = (cores, f"{cores} (all)") if str(t) == "all" else (int(t), str(int(t)))
        if n < 1:
            raise ValueError(f"thread counts must be >= 1 or 'all', got {t!r}")
        out[n] = label if n not in out or "all" in label else out[n]
    return sorted(out.items())


def _plan(cases, backend_list, modes, threads):
    """The cells to run, in order: (case, backend, mode, threads, label, skip reason)."""
    for case in cases:
        for backend in backend_list:
            skip = None
            if backend == "reference" and case.n_orders > REFERENCE_MAX_ORDERS:
                skip = f"skipped (too slow): reference is the pure-Python oracle, run only up to " \
                       f"{REFERENCE_MAX_ORDERS:,} orders"
            # The reference ignores threads: one thread count is enough.
            cells = threads[:1] if backend == "reference" else threads
            for mode in modes:
                for n, label in cells:
                    yield case, backend, mode, n, ("1" if backend == "reference" else label), skip


def scaling(measurements):
    """Per (workload, backend, mode): decided orders/s by thread count and the
    parallel efficiency ``rate(t) / (t * rate(1))`` (``None`` without t=1)."""
    groups = {}
    for m in measurements:
        groups.setdefault(f"{m.workload}/{m.backend}/{m.mode}", []).append(m)
    out = {}
    for key, ms in groups.items():
        base = next((m.orders_per_s for m in ms if m.threads == 1), None)
        out[key] = [{"threads": m.threads, "label": m.threads_label, "orders_per_s": m.orders_per_s,
                     "efficiency": None if base is None else m.orders_per_s / (m.threads * base)}
                    for m in sorted(ms, key=lambda m: m.threads)]
    return out


def run_matrix(workloads, backends, modes, thread_counts, scale, rounds, seed=0, progress=None):
    """Measure every workload x backend x mode x thread count.

    Parameters
    ----------
    workloads, backends, modes : list of str
    thread_counts : list of int or ``'all'``
    scale : float
        Workload size (1.0 = 10M orders, see :mod:`kernel.bench.workloads`).
    rounds : int
        Timed rounds per cell (after one untimed warm-up round).
    progress : callable, optional
        Called as ``progress(done, total, label)`` before each cell and once
        at the end.

    Returns
    -------
    dict
        JSON-serialisable: ``machine``, ``config``, ``peaks``,
        ``measurements`` (list of :meth:`Measurement.as_dict`), ``skipped``,
        ``warmup`` (numba first-call seconds) and ``scaling``.
    """
    threads = resolve_thread_counts(thread_counts)
    cases = [make_case(name, scale, seed) for name in workloads]
    plan = list(_plan(cases, backends, modes, threads))
    measurements, skipped = [], []
    warmup = {"numba_first_call_seconds": {}, "note": "first numba reserve per workload/mode/"
              "dispatcher in this process (JIT compile or cache load); not part of the timed rounds"}
    for done, (case, backend, mode, n, label, skip) in enumerate(plan):
        tag = f"{case.name} {backend} {mode} x{label}"
        if progress:
            progress(done, len(plan), tag)
        if skip:
            skipped.append({"workload": case.name, "backend": backend, "mode": mode, "threads": n, "reason": skip})
            continue
        key = f"{case.name}/{mode}/{'parallel' if n > 1 else 'serial'}"
        if backend == "numba" and key not in warmup["numba_first_call_seconds"]:
            warmup["numba_first_call_seconds"][key] = numba_warmup_seconds(case, mode, n)
        measurements.append(measure(case, backend, mode, n, rounds, threads_label=label))
    if progress:
        progress(len(plan), len(plan), "done")
    return {
        "machine": machine_info(),
        "config": {"workloads": list(workloads), "backends": list(backends), "modes": list(modes),
                   "threads": [label for _, label in threads], "scale": scale, "rounds": rounds,
                   "seed": seed, "reference_max_orders": REFERENCE_MAX_ORDERS,
                   "n_orders": {c.name: c.n_orders for c in cases}},
        "peaks": {"2020": peaks.PEAK_2020, "2009": peaks.PEAK_2009, "source": peaks.SOURCE},
        "measurements": [m.as_dict() for m in measurements],
        "skipped": skipped,
        "warmup": warmup,
        "scaling": scaling(measurements),
    }
