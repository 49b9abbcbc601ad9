"""Performance-regression gate on a deterministic metric.

Wall-clock time on a shared 2-core CI runner swings 10-20% between runs, so
the gate counts instructions instead: ``valgrind --tool=callgrind`` runs the
hot kernels of each backend on small fixed workloads, on one thread, and
counts only the instructions executed inside kernel calls (a probe toggles
collection around each call the facade makes; Python start-up, imports,
data generation and checks are not counted).  Counts are compared with the
committed baseline ``bench/gate-baseline.json``; a rise above the threshold
is a REGRESSION and fails the run.

    python -m kernel.bench.gate                 # measure, compare, report
    python -m kernel.bench.gate --update        # refresh the baseline on purpose

Counts are only comparable on the same toolchain (Python, NumPy, Numba,
llvmlite, Cython, compiler); Numba is told to compile for a generic x86-64
CPU (``NUMBA_CPU_NAME=generic``) so the host CPU model does not matter.  The
baseline records the toolchain; when it differs, the report says so and the
counts are shown but not judged (refresh the baseline on that toolchain).
"""

import argparse
import gc
import html
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GATE_CASES", "DEFAULT_THRESHOLD", "compare", "markdown_report", "html_report", "load_baseline",
           "save_baseline", "main"]

DEFAULT_THRESHOLD = 0.01  # 1%: repeated runs of an unchanged tree agree far closer than this
GATE_BACKENDS = ("cython", "numba")
BASELINE = Path(__file__).resolve().parents[2] / "bench" / "gate-baseline.json"
PROBE_C = r"""
#include <valgrind/callgrind.h>
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


@dataclass(frozen=True)
class GateCase:
    workload: str
    scale: float
    mode: str  # one of runner.MODES

    @property
    def name(self):
        return f"{self.workload}/{self.mode}"


# Small fixed workloads (about 20k orders each): every kernel the facade
# dispatches to is covered (single-line, carts, general with price limits).
GATE_CASES = (
    GateCase("uniform", 0.002, "concurrent"),
    GateCase("uniform", 0.002, "ordered"),
    GateCase("zipf", 0.002, "concurrent"),
    GateCase("flash-sale", 0.002, "concurrent"),
    GateCase("carts", 0.002, "concurrent"),
    GateCase("carts", 0.002, "ordered"),
    GateCase("marketplace", 0.01, "concurrent"),
    GateCase("marketplace", 0.01, "ordered"),
    GateCase("flash-sale", 0.002, "tracked"),
    GateCase("carts", 0.002, "tracked"),
    GateCase("marketplace", 0.01, "tracked"),
)


# ---------------------------------------------------------------- measuring
def toolchain():
    """What the counts depend on besides the code under test."""
    import llvmlite
    import numba
    import numpy

    from .._cython import kernels as cython_kernels

    compiler = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "cython": cython_kernels.build_info()["cython"], "machine": platform.machine(),
            "cc": compiler[0] if compiler else "unknown"}


class _Probe:
    """Stands in for a kernel module: counts instructions only inside calls."""

    def __init__(self, kernels, lib):
        self._kernels = kernels
        self._lib = lib
        self.__name__ = kernels.__name__  # stands for that backend (kernel.backends.backend_name)

    def __getattr__(self, name):
        fn = getattr(self._kernels, name)

        def counted(*args):
            self._lib.cg_toggle()
            try:
                return fn(*args)
            finally:
                self._lib.cg_toggle()
        return counted


def _run_cases(lib):
    """Body of the process valgrind runs: one dump per (backend, case)."""
    from .. import backends
    from ..invariants import check_run, check_tracked
    from .workloads import make_case

    for case in GATE_CASES:
        data = make_case(case.workload, case.scale, seed=0)
        tracked = case.mode == "tracked"
        orders = data.tracked_orders() if tracked else data.orders
        for backend in GATE_BACKENDS:
            ordered = case.mode == "ordered"
            data.inventory(backend, 1, tracked).reserve(orders, ordered=ordered)  # warm: dispatch, caches
            kernels = backends.load(backend)
            inv = data.inventory(_Probe(kernels, lib) if lib else kernels, 1, tracked)
            initial = inv.stock.copy()
            # No garbage collection inside the counted calls: where a GC pass
            # lands depends on every allocation the process made before, so a
            # change anywhere in Python code would move tens of thousands of
            # instructions in or out of a kernel's count.
            gc.collect()
            gc.disable()
            if lib:
                lib.cg_zero()
            result = inv.reserve(orders, ordered=ordered)
            if lib:
                lib.cg_dump(f"{backend}:{case.name}".encode())
            gc.enable()
            check_run(inv, orders, result, initial)
            if tracked:
                check_tracked(inv, initial)


def _build_probe(workdir):
    src = Path(workdir) / "probe.c"
    out = Path(workdir) / "probe.so"
    src.write_text(PROBE_C)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(src), "-o", str(out)], check=True)
    return out


def _gate_env():
    env = dict(os.environ)
    env.update(PYTHONHASHSEED="0", NUMBA_CPU_NAME="generic", OMP_NUM_THREADS="1")
    return env


def measure(workdir=None):
    """Run the gate cases under callgrind; return ``{"backend:case": Ir}``.

    Raises
    ------
    RuntimeError
        valgrind or a C compiler with valgrind's headers is missing, or the
        measured process failed.
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="kernel-gate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        probe = _build_probe(workdir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"cannot build the callgrind probe (needs cc and valgrind's headers): {exc}") from exc
    env = _gate_env()
    # Warm the Numba cache outside valgrind: compiling under it takes minutes
    # and would be counted as nothing useful anyway.
    subprocess.run([sys.executable, "-m", "kernel.bench.gate", "--_run-cases"], env=env, check=True)
    out = workdir / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, "-m", "kernel.bench.gate", "--_run-cases", "--probe", str(probe)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise RuntimeError(f"valgrind is not installed: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return parse_dumps(workdir.glob("callgrind.out*"))


def parse_dumps(paths):
    """Read callgrind dump files: ``{label: total instructions}``."""
    counts = {}
    for path in paths:
        text = Path(path).read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        total = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if label and total:
            counts[label.group(1).strip()] = int(total.group(1))
    return counts


# -------------------------------------------------------------- judging
def load_baseline(path=BASELINE):
    """The committed baseline, or ``None`` when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def save_baseline(counts, path=BASELINE, threshold=DEFAULT_THRESHOLD, env=None):
    """Write ``counts`` as the new baseline (a deliberate act: see --update)."""
    data = {"threshold": threshold, "toolchain": env if env is not None else toolchain(),
            "instructions": dict(sorted(counts.items()))}
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return data


def compare(counts, baseline, threshold=None, env=None):
    """Judge current counts against a baseline.

    Returns
    -------
    dict
        ``rows`` (case, current, baseline, change, verdict), ``failed``
        (bool), ``threshold`` and ``note``.  Verdicts: ``REGRESSION``
        (above +threshold), ``improved`` (below -threshold: refresh the
        baseline to lock it in), ``ok``, ``new`` (no baseline figure),
        ``missing`` (in the baseline, not measured: fails, a kernel path lost
        its coverage), ``not compared`` (the toolchain differs).
    """
    if baseline is None:
        return {"rows": [dict(case=k, current=v, baseline=None, change=None, verdict="new")
                         for k, v in sorted(counts.items())],
                "failed": True, "threshold": threshold or DEFAULT_THRESHOLD,
                "note": "no baseline file: run `python -m kernel.bench.gate --update` and commit it"}
    threshold = threshold if threshold is not None else baseline.get("threshold", DEFAULT_THRESHOLD)
    same_toolchain = env is None or baseline.get("toolchain") == env
    base = baseline.get("instructions", {})
    rows = []
    for case in sorted(set(counts) | set(base)):
        current, before = counts.get(case), base.get(case)
        change = None if current is None or before is None else current / before - 1
        if current is None:
            verdict = "missing"
        elif before is None:
            verdict = "new"
        elif not same_toolchain:
            verdict = "not compared"
        elif change > threshold:
            verdict = "REGRESSION"
        elif change < -threshold:
            verdict = "improved"
        else:
            verdict = "ok"
        rows.append(dict(case=case, current=current, baseline=before, change=change, verdict=verdict))
    note = "" if same_toolchain else (
        "the baseline was recorded on another toolchain; counts are shown but not judged: "
        f"baseline {baseline.get('toolchain')}, now {env}")
    failed = any(r["verdict"] in ("REGRESSION", "missing") for r in rows)
    return {"rows": rows, "failed": failed, "threshold": threshold, "note": note}


def _fmt_count(n):
    return "-" if n is None else f"{n:,}"


def _fmt_change(change):
    return "-" if change is None else f"{change:+.2%}"


def markdown_report(verdict):
    """The gate's verdict as a Markdown summary."""
    lines = ["## Performance gate (callgrind instructions, 1 thread)", "",
             f"Threshold: +{verdict['threshold']:.1%} over `bench/gate-baseline.json`. "
             f"Result: **{'FAIL' if verdict['failed'] else 'pass'}**.", ""]
    if verdict["note"]:
        lines += [f"> {verdict['note']}", ""]
    lines += ["| backend | case | instructions | baseline | change | verdict |", "|---|---|---:|---:|---:|---|"]
    for r in verdict["rows"]:
        backend, _, case = r["case"].partition(":")
        lines.append(f"| {backend} | {case} | {_fmt_count(r['current'])} | {_fmt_count(r['baseline'])} | "
                     f"{_fmt_change(r['change'])} | {r['verdict']} |")
    lines += ["", "Refresh the baseline on purpose with `python -m kernel.bench.gate --update`."]
    return "\n".join(lines) + "\n"


def html_report(verdict):
    """The gate's verdict as a self-contained HTML page."""
    rows = []
    for r in verdict["rows"]:
        colour = {"REGRESSION": "#c62828", "missing": "#c62828", "improved": "#2e7d32"}.get(r["verdict"], "#333")
        backend, _, case = r["case"].partition(":")
        cells = [backend, case, _fmt_count(r["current"]), _fmt_count(r["baseline"]), _fmt_change(r["change"])]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                    + f'<td style="color:{colour};font-weight:bold">{html.escape(r["verdict"])}</td></tr>')
    status = "FAIL" if verdict["failed"] else "pass"
    note = f"<p><em>{html.escape(verdict['note'])}</em></p>" if verdict["note"] else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Performance gate: {status}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:nth-child(-n+2){{text-align:left}}</style>
</head><body><h1>Performance gate: {status}</h1>
<p>Instructions counted by callgrind inside the kernel calls, one thread; threshold
+{verdict['threshold']:.1%} over the committed baseline.</p>{note}
<table><tr><th>backend</th><th>case</th><th>instructions</th><th>baseline</th><th>change</th><th>verdict</th></tr>
{''.join(rows)}</table>
<p>Refresh the baseline on purpose with <code>python -m kernel.bench.gate --update</code>.</p></body></html>
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description="Instruction-count performance gate (callgrind).")
    parser.add_argument("--update", action="store_true", help="write the measured counts as the new baseline")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--threshold", type=float, default=None, help="relative rise that fails (default: baseline's)")
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="folder for gate.md and gate.html")
    parser.add_argument("--_run-cases", dest="run_cases", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_cases:
        import ctypes

        _run_cases(ctypes.CDLL(args.probe) if args.probe else None)
        return 0
    counts = measure()
    env = toolchain()
    if args.update:
        save_baseline(counts, args.baseline, args.threshold or DEFAULT_THRESHOLD, env)
        print(f"baseline written to {args.baseline} ({len(counts)} cases)")
        return 0
    verdict = compare(counts, load_baseline(args.baseline), args.threshold, env)
    args.out.mkdir(parents=True, exist_ok=True)
    report = markdown_report(verdict)
    (args.out / "gate.md").write_text(report)
    (args.out / "gate.html").write_text(html_report(verdict))
    print(report)
    print(f"(also written to {args.out / 'gate.md'} and {args.out / 'gate.html'})")
    return 1 if verdict["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
