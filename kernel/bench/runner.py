"""Timing the kernels over the workload registry, every round checked.

A call builds a fresh inventory (untimed), times only
``inv.reserve(case.orders, ...)`` with :func:`time.perf_counter`, then runs
:func:`kernel.invariants.check_run` on the outcome.  A call that breaks an
invariant raises :class:`~kernel.invariants.InvariantViolation`: a wrong
result is an error, never a number.  A timed round is as many such calls as
it takes to last ``min_round_s`` (calibrated on the warm-up call, at most
``MAX_REPEATS``); the hand-written C loops of :mod:`kernel.bench.cloops`
are timed and checked the same way, interleaved round by round with the
kernels on the same data.

Rates come in two flavours:

* *decided* orders/s: every order of the batch, accepted or refused;
* *accepted* orders/s: only the accepted ones.  The Tmall peaks of
  :mod:`kernel.bench.peaks` count orders *created*, so the headline ratios
  (``ratio_2020``, ``ratio_2009``) use accepted orders/s only.
"""

import math
import statistics
import time
from dataclasses import asdict, dataclass, field

from .. import backends as _backends
from ..invariants import InvariantViolation, check_run, check_tracked
from . import cloops, peaks
from .disturbance import OTHER_CPU_WARN, STEAL_WARN, CpuMonitor
from .machine import machine_info
from .workloads import make_case

__all__ = ["Measurement", "measure", "timed_round", "numba_warmup_seconds", "run_matrix", "warnings",
           "REFERENCE_MAX_ORDERS", "MAX_REPEATS", "KernelCell"]

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

# Calls per timed round are calibrated up to this many (each on a fresh
# inventory, checked), so that a round lasts at least --min-round-ms.
MAX_REPEATS = 64
# Round-time spread (max-min over median) above which a cell is flagged.
SPREAD_WARN = 0.20


@dataclass
class Measurement:
    """The timed rounds of one (workload, backend, mode, threads) cell.

    ``backend`` is a kernel backend, a C loop (``"C seq"``, ``"C CAS"``,
    ``kind="c"``) or a peer (``"Redis+Lua"``, ``"PostgreSQL"``,
    ``kind="peer"``).  A round is ``repeats`` checked calls on fresh state
    (calibrated so a round lasts at least ``min_round_s`` where it can);
    ``seconds`` holds each round's summed call times.
    """

    workload: str
    backend: str
    mode: str
    threads: int
    n_orders: int
    accepted: int
    seconds: list
    accepted_rounds: list = field(default_factory=list)
    threads_label: str = ""
    repeats: int = 1
    ran_on: int = 0
    kind: str = "kernel"
    modes_met: list = field(default_factory=list)
    note: str = ""

    def __post_init__(self):
        if not self.threads_label:
            self.threads_label = str(self.threads)
        if not self.ran_on:
            self.ran_on = self.threads
        if not self.modes_met:
            self.modes_met = [self.mode]

    @property
    def median_seconds(self):
        """Median round time over its calls: seconds per call."""
        return statistics.median(self.seconds) / self.repeats

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
        lo, hi = min(self.seconds) / self.repeats, max(self.seconds) / self.repeats
        return {"min_rate": self.n_orders / hi, "max_rate": self.n_orders / lo,
                "relative_range": (hi - lo) / self.median_seconds}

    @property
    def round_seconds(self):
        """Median length of a timed round (all its calls)."""
        return statistics.median(self.seconds)

    @property
    def ratio_2020(self):
        """Accepted orders/s over the 2020 Double 11 peak (orders created/s)."""
        return self.accepted_per_s / peaks.PEAK_2020

    @property
    def ratio_2009(self):
        return self.accepted_per_s / peaks.PEAK_2009

    def as_dict(self):
        out = asdict(self)
        for name in ("median_seconds", "orders_per_s", "accepted_per_s", "spread", "round_seconds",
                     "ratio_2020", "ratio_2009"):
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


class KernelCell:
    """One kernel (workload, backend, mode, threads): ``run()`` is one checked call."""

    kind = "kernel"

    def __init__(self, case, backend, mode, threads):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.case, self.backend, self.mode, self.threads = case, backend, mode, threads

    def run(self):
        return timed_round(self.case, self.backend, self.mode, self.threads)


class _Timing:
    """The rounds of one cell while they are being collected."""

    def __init__(self, cell, label, modes_met=None, note=""):
        self.cell, self.label, self.modes_met, self.note = cell, label, modes_met, note
        self.repeats, self.seconds, self.accepted, self.used = 1, [], [], set()

    def calibrate(self, seconds_per_call, min_round_s):
        # Enough calls per round that a round lasts min_round_s, at most MAX_REPEATS.
        need = math.ceil(min_round_s / max(seconds_per_call, 1e-9)) if min_round_s > 0 else 1
        self.repeats = max(1, min(MAX_REPEATS, need))

    def round(self):
        total = 0.0
        for _ in range(self.repeats):
            elapsed, n_accepted, ran_on = self.cell.run()
            total += elapsed
            self.accepted.append(n_accepted)
            self.used.add(ran_on)
        self.seconds.append(total)

    def measurement(self):
        cell = self.cell
        label = self.label
        if cell.kind == "kernel" and self.used != {cell.threads} and cell.backend != "reference":
            # The thread policy chose fewer threads (small batch, few SKUs): say so.
            label = f"{label} (ran on {'/'.join(map(str, sorted(self.used)))})"
        if cell.mode == "ordered" or (cell.kind == "c" and not cell.loop.parallel):
            # Arrival order fixes the outcome (a serial C loop runs in it).
            assert len(set(self.accepted)) == 1, \
                f"{cell.backend} {cell.mode} accepted different counts per call: {sorted(set(self.accepted))}"
        backend = cell.backend if cell.kind == "kernel" else cell.loop.name
        mode = cell.mode if cell.kind == "kernel" else self.modes_met[0]
        return Measurement(cell.case.name, backend, mode, int(cell.threads), cell.case.n_orders,
                           int(statistics.median_low(self.accepted)), self.seconds, self.accepted, label,
                           repeats=self.repeats, ran_on=max(self.used), kind=cell.kind,
                           modes_met=list(self.modes_met or [mode]), note=self.note)


def measure(case, backend, mode, threads, rounds, warmup=1, threads_label="", min_round_s=0.0):
    """Time ``rounds`` checked rounds of ``case`` after ``warmup`` untimed calls.

    Raises
    ------
    InvariantViolation
        A round (warm-up included) broke a guarantee of the kernel.
    """
    if mode not in MODES + OPT_IN_MODES:
        raise ValueError(f"mode must be one of {MODES + OPT_IN_MODES}, got {mode!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    timing = _Timing(KernelCell(case, backend, mode, threads), threads_label or str(threads))
    first = None
    for _ in range(warmup):
        first = timing.cell.run()[0]
    if first is not None:
        timing.calibrate(first, min_round_s)
    for _ in range(rounds):
        timing.round()
    return timing.measurement()


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
    """The kernel cells to run, in order: (case, backend, mode, threads, label, skip reason)."""
    for case in cases:
        for backend in backend_list:
            skip = None
            if backend == "reference" and case.n_orders > REFERENCE_MAX_ORDERS:
                skip = f"too slow: reference is the pure-Python oracle, run only up to {REFERENCE_MAX_ORDERS:,} orders"
            # The reference ignores threads: one thread count is enough.
            cells = threads[:1] if backend == "reference" else threads
            for mode in modes:
                for n, label in cells:
                    yield case, backend, mode, n, ("1" if backend == "reference" else label), skip


def _c_timings(lib, case, modes, threads):
    """A timing per C loop that fits ``case`` and reproduces a mode being run
    (the tracked loops for mode ``tracked``): a serial loop once, on one
    thread; a parallel one at every thread count."""
    out = []
    for loop in cloops.loops_for(case, modes):
        for n, label in (threads if loop.parallel else [(1, "1")]):
            out.append(_Timing(cloops.cell(lib, loop, case, n), label, list(loop.modes), loop.description))
    return out


def scaling(measurements):
    """Per (workload, backend, mode): decided orders/s by thread count and the
    speedup over one thread, plotted at the thread count the cell ran on."""
    groups = {}
    for m in measurements:
        if m.kind != "peer":
            groups.setdefault(f"{m.workload}/{m.backend}/{m.mode}", []).append(m)
    out = {}
    for key, ms in groups.items():
        base = next((m.orders_per_s for m in ms if m.threads == 1), None)
        out[key] = [{"threads": m.threads, "ran_on": m.ran_on, "label": m.threads_label,
                     "orders_per_s": m.orders_per_s,
                     "speedup": None if base is None else m.orders_per_s / base,
                     "efficiency": None if base is None else m.orders_per_s / (m.ran_on * base)}
                    for m in sorted(ms, key=lambda m: m.threads)]
    return out


def _cross_check_c(case, timings):
    """A serial C loop in arrival order must accept exactly what the kernel's
    ordered mode accepts on the same data; a serial tracked C loop (single
    lines, carts, or carts over priced offers: the marketplace) exactly what
    the kernel's tracked mode accepts when it ran on one thread."""
    ordered = {t.cell.backend: t.accepted[0] for t in timings
               if t.cell.kind == "kernel" and t.cell.mode == "ordered" and t.accepted}
    tracked = {t.cell.backend: t.accepted[0] for t in timings
               if t.cell.kind == "kernel" and t.cell.mode == "tracked" and t.accepted and t.used == {1}}
    for t in timings:
        if t.cell.kind != "c" or t.cell.loop.parallel or not t.accepted:
            continue
        want = tracked if t.cell.loop.tracked else ordered if "ordered" in t.modes_met else {}
        for backend, count in want.items():
            if count != t.accepted[0]:
                raise InvariantViolation(
                    f"{case.name}: {t.cell.loop.function} accepted {t.accepted[0]} orders in arrival "
                    f"order, {backend} {'tracked mode on one thread' if t.cell.loop.tracked else 'ordered mode'} "
                    f"{count}")


def run_matrix(workloads, backends, modes, thread_counts, scale, rounds, seed=0, progress=None,
               min_round_s=0.0, c_loops=True, peers=None, latency=None, argv=None):
    """Measure every workload x backend x mode x thread count, plus the C
    loops and (optionally) the peers and latency figures.

    Parameters
    ----------
    workloads, backends, modes : list of str
    thread_counts : list of int or ``'all'``
    scale : float
        Workload size (1.0 = 10M orders, see :mod:`kernel.bench.workloads`).
    rounds : int
        Timed rounds per cell (after one untimed warm-up call).  Rounds are
        interleaved: round r of every cell of a workload runs before round
        r + 1 of any, so a noisy neighbour slows them all alike.
    progress : callable, optional
        Called as ``progress(done, total, label)`` before each step and once
        at the end.
    min_round_s : float
        Calibrate calls per round so that a round lasts at least this long
        (at most ``MAX_REPEATS`` calls; 0: one call per round).
    c_loops : bool
        Time the hand-written C loops of :mod:`kernel.bench.cloops` too.
    peers : list of str, optional
        Peers to measure (``"redis"``, ``"postgresql"``; see
        :mod:`kernel.bench.peers`).
    latency : dict, optional
        Options for :func:`kernel.bench.latency.measure_all` (``None``: no
        latency figures).

    Returns
    -------
    dict
        JSON-serialisable: ``machine``, ``config``, ``peaks``,
        ``measurements`` (list of :meth:`Measurement.as_dict`), ``skipped``,
        ``warmup``, ``scaling``, ``c_loops``, ``peers``, ``latency``,
        ``disturbance`` and ``warnings``.
    """
    t_start = time.perf_counter()
    threads = resolve_thread_counts(thread_counts)
    cases = [make_case(name, scale, seed) for name in workloads]
    lib, c_note = cloops.load() if c_loops else (None, "C loops not requested")
    by_case, skipped = [], []
    for case in cases:
        timings = []
        for _, backend, mode, n, label, skip in _plan([case], backends, modes, threads):
            if skip:
                skipped.append({"workload": case.name, "backend": backend, "mode": mode, "threads": n,
                                "reason": skip})
            else:
                timings.append(_Timing(KernelCell(case, backend, mode, n), label))
        if lib is not None:
            timings += _c_timings(lib, case, modes, threads)
        by_case.append((case, timings))
    total = sum(len(ts) * (rounds + 1) for _, ts in by_case)
    done = 0
    warmup = {"numba_first_call_seconds": {}, "note": "first numba reserve per workload/mode/"
              "dispatcher in this process (JIT compile or cache load); not part of the timed rounds"}
    measurements, blocks = [], {}
    for case, timings in by_case:
        with CpuMonitor() as monitor:
            for t in timings:  # warm-up call per cell; it also sets the calls per round
                if progress:
                    progress(done, total, f"{case.name} warm-up {t.cell.backend} {t.cell.mode} x{t.label}")
                done += 1
                if t.cell.kind == "kernel" and t.cell.backend == "numba":
                    key = f"{case.name}/{t.cell.mode}/{'parallel' if t.cell.threads > 1 else 'serial'}"
                    if key not in warmup["numba_first_call_seconds"]:
                        warmup["numba_first_call_seconds"][key] = numba_warmup_seconds(
                            case, t.cell.mode, t.cell.threads)
                t.calibrate(t.cell.run()[0], min_round_s)
            for r in range(rounds):
                for t in timings:
                    if progress:
                        progress(done, total, f"{case.name} round {r + 1}/{rounds} {t.cell.backend} "
                                              f"{t.cell.mode} x{t.label}")
                    done += 1
                    t.round()
        blocks[case.name] = monitor.result()
        _cross_check_c(case, timings)
        measurements += [t.measurement() for t in timings]
    # Peers and latency report their steps on the same bar, just short of its end.
    extra = None if progress is None else (lambda _d, _t, label: progress(max(0, total - 1), total, label))
    peer_results = {}
    if peers:
        from . import peers as _peers
        peer_results = _peers.measure_peers(peers, workloads, modes, scale, seed, rounds=max(1, min(rounds, 3)),
                                            progress=extra)
        measurements += [Measurement(**m) for m in peer_results.pop("measurements")]
    latency_results = None
    if latency is not None:
        from . import latency as _latency
        latency_results = _latency.measure_all(cases, backends, progress=extra, **latency)
    if progress:
        progress(total, total, "done")
    run = {
        "machine": machine_info(argv=argv),
        "config": {"workloads": list(workloads), "backends": list(backends), "modes": list(modes),
                   "threads": [label for _, label in threads], "scale": scale, "rounds": rounds,
                   "seed": seed, "reference_max_orders": REFERENCE_MAX_ORDERS, "min_round_s": min_round_s,
                   "max_repeats": MAX_REPEATS, "n_orders": {c.name: c.n_orders for c in cases}},
        "peaks": {"2020": peaks.PEAK_2020, "2009": peaks.PEAK_2009, "source": peaks.SOURCE},
        "measurements": [m.as_dict() for m in measurements],
        "skipped": skipped,
        "warmup": warmup,
        "scaling": scaling(measurements),
        "c_loops": {"note": c_note, "flags": cloops.CFLAGS,
                    "loops": [asdict(loop) for loop in cloops.C_LOOPS]},
        "peers": peer_results,
        "latency": latency_results,
        "disturbance": {"blocks": blocks},
        "wall_seconds": time.perf_counter() - t_start,
    }
    run["warnings"] = warnings(run)
    return run


def warnings(run):
    """Plain-words warnings where the figures may not be trusted."""
    out = []
    for name, b in run["disturbance"]["blocks"].items():
        if b.get("other_share") is not None and b["other_share"] > OTHER_CPU_WARN:
            out.append(f"{name}: other processes took {b['other_cpu_s']:.1f} CPU s "
                       f"({b['other_share']:.0%} of the machine) while it was timed: figures may be low "
                       f"and spreads wide (load average {b['load_average']}).")
        if b.get("steal_share") is not None and b["steal_share"] > STEAL_WARN:
            out.append(f"{name}: the hypervisor stole {b['steal_s']:.1f} CPU s ({b['steal_share']:.0%}) "
                       "while it was timed.")
    ms = run["measurements"]
    wide = sorted((m for m in ms if m["kind"] != "peer" and m["spread"]["relative_range"] > SPREAD_WARN),
                  key=lambda m: -m["spread"]["relative_range"])
    if wide:
        worst = ", ".join(f"{m['workload']} {m['backend']} {m['mode']} x{m['threads_label']} "
                          f"({m['spread']['relative_range']:.0%})" for m in wide[:5])
        out.append(f"{len(wide)} of {len(ms)} cells have round times spread over {SPREAD_WARN:.0%} of their "
                   f"median; the widest: {worst} (every cell's spread is in the table of all cells).")
    slower = [f"{key.replace('/', ' ')} {b['ran_on']} vs {a['ran_on']} ({b['orders_per_s'] / a['orders_per_s']:.2f}x)"
              for key, pts in run["scaling"].items() for a, b in zip(pts, pts[1:])
              if b["ran_on"] > a["ran_on"] and b["orders_per_s"] < a["orders_per_s"]]
    if slower:
        out.append(f"{len(slower)} cells ran slower on more threads than on fewer (contention, or another job on "
                   f"the machine): {', '.join(slower)}.")
    short = [m for m in ms if m["kind"] != "peer" and run["config"]["min_round_s"] > 0
             and m["round_seconds"] < 0.5 * run["config"]["min_round_s"]]
    if short:
        out.append(f"{len(short)} cells have rounds under half of {run['config']['min_round_s'] * 1e3:.0f} ms "
                   f"(calls per round capped at {MAX_REPEATS}, each call on a fresh inventory); their "
                   "spread is the better guide.")
    return out
