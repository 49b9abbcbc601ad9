"""Performance-regression gate on a deterministic metric.

Wall-clock time on a shared 2-core CI runner swings 10-20% between runs, so
the gate counts instructions instead: ``valgrind --tool=callgrind`` runs the
hot kernels of each backend on small fixed workloads, on one thread, and
counts only the instructions executed inside kernel calls (a probe toggles
collection around each call the facade makes; Python start-up, imports,
data generation and checks are not counted).

Counts depend on the toolchain (Python, NumPy, Numba, llvmlite, Cython, C
compiler), so a count made on one machine says nothing on another.  The gate
therefore judges a change the way ``asv continuous`` does: it builds the
*base* commit in a temporary checkout and virtual environment with the pinned
toolchain (``.ci/constraints.txt``), has that commit's own gate code count
it, counts the change in this checkout on the same runner, and compares the
two.  The committed baseline ``bench/gate-baseline.json`` is a second
opinion, judged only on the toolchain it records.  When neither can be
judged the gate FAILS (it never passes on nothing)::

    python -m kernel.bench.gate --base HEAD~1     # compare with the parent, built here (what CI runs)
    python -m kernel.bench.gate                   # compare with the committed baseline only
    python -m kernel.bench.gate --update          # refresh the committed baseline on purpose
    python -m kernel.bench.gate --history HEAD~12..HEAD   # trend per case: history.html/.json/.md

A rise above the threshold is a REGRESSION and fails the run, unless the
change refreshed ``bench/gate-baseline.json`` for that case by about as much
(a rise made on purpose is committed with its baseline).  Numba is told to
compile for a generic x86-64 CPU (``NUMBA_CPU_NAME=generic``) so the host
CPU model does not matter.  Needs a source checkout (the baseline and git
history live there, not in a wheel).

Over 700 lines on purpose: measuring, judging against a base commit and the
committed baseline, the history across commits and its three report formats
belong together (one command); splitting them would spread one data model
(a count per case per toolchain) over several modules.
"""

import argparse
import gc
import hashlib
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GATE_CASES", "DEFAULT_THRESHOLD", "CONSTRAINTS", "measure", "toolchain", "compare", "judge",
           "markdown_report", "html_report", "load_baseline", "save_baseline", "source_checkout", "GateVenv",
           "history", "history_html", "history_markdown", "commit_counts", "main"]

DEFAULT_THRESHOLD = 0.01  # 1%: repeated runs of an unchanged tree agree far closer than this
GATE_BACKENDS = ("cython", "numba")
ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "bench" / "gate-baseline.json"
BASELINE_PATH = "bench/gate-baseline.json"  # inside any commit
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
# Settings that change the generated code without changing a version: part
# of the toolchain record when set (absent when not, so a default run matches
# a baseline recorded before they were recorded).
TOOLCHAIN_SETTINGS = {"NUMBA_OPT": "numba_opt", "CFLAGS": "cflags"}
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
def _cc_version():
    try:
        out = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    except OSError:
        out = []
    return out[0] if out else "unknown"


def _settings():
    return {key: os.environ[var] for var, key in TOOLCHAIN_SETTINGS.items() if os.environ.get(var)}


def toolchain():
    """What the counts depend on besides the code under test."""
    import llvmlite
    import numba
    import numpy

    from .._cython import kernels as cython_kernels

    return {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "cython": cython_kernels.build_info()["cython"], "machine": platform.machine(),
            "cc": _cc_version(), **_settings()}


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


def build_probe(workdir):
    src = Path(workdir) / "probe.c"
    out = Path(workdir) / "probe.so"
    src.write_text(PROBE_C)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(src), "-o", str(out)], check=True)
    return out


def gate_env():
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
        probe = build_probe(workdir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"cannot build the callgrind probe (needs cc and valgrind's headers): {exc}") from exc
    env = gate_env()
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


# ------------------------------------------------------- source checkout
NEEDS_CHECKOUT = """\
python -m kernel.bench.gate needs a source checkout of the kernel project:
it compares counts with bench/gate-baseline.json and with other commits of
the git history, and neither ships in a wheel or an sdist.  This kernel is
installed at {where}.  Clone the repository, install it with
`pip install -e '.[test]'` and run the gate from there."""


def source_checkout():
    """The root of the git checkout this gate runs from, or ``None`` (an
    installed wheel, an unpacked sdist)."""
    if not (ROOT / "kernel" / "bench" / "gate.py").is_file() or not BASELINE.parent.is_dir():
        return None
    try:
        top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        return None
    return ROOT


# ---------------------------------------------------- measuring other commits
def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=300).stdout.strip()


def resolve(repo, rev):
    """Full sha of ``rev`` (raises ``ValueError`` when it is not a commit)."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise ValueError(f"not a commit in {repo}: {rev!r}") from None


def export_commit(repo, rev, dest):
    """The tree of commit ``rev`` written to ``dest`` (``git archive``: no
    .git, nothing untracked, no build output)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as tar:
        subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev], stdout=tar, check=True,
                       timeout=300)
        tar.seek(0)
        with tarfile.open(fileobj=tar) as archive:
            archive.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else archive.extractall(dest)
    return dest


def committed_baseline(repo, rev):
    """``bench/gate-baseline.json`` as committed in ``rev``, or ``None``."""
    try:
        return json.loads(_git(repo, "show", f"{rev}:{BASELINE_PATH}"))
    except (subprocess.CalledProcessError, json.JSONDecodeError):
        return None


# Run by the measured commit's own interpreter in its own tree: every commit
# since the gate exists has measure() and toolchain().
_MEASURE_SNIPPET = """\
import json, sys
from kernel.bench import gate
counts = gate.measure(sys.argv[1])
print("GATE-COUNTS " + json.dumps({"counts": counts, "toolchain": gate.toolchain()}))
"""

_TOOLCHAIN_SNIPPET = """\
import json, platform, Cython, llvmlite, numba, numpy
print(json.dumps({"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
                  "llvmlite": llvmlite.__version__, "cython": Cython.__version__, "machine": platform.machine()}))
"""


class GateVenv:
    """A virtual environment holding the pinned toolchain, in which other
    commits are built and measured by their own gate code.

    Created on first use: ``python -m venv``, then the packages of
    ``constraints`` (NumPy, Numba, llvmlite, Cython) at their pinned versions
    and a setuptools that builds every commit.  Each measured commit is
    installed into it in editable mode (``--no-build-isolation``, so its
    extension is built by the pinned Cython) from a ``git archive`` of it.
    """

    def __init__(self, path, constraints=CONSTRAINTS, python=sys.executable):
        self.path = Path(path)
        self.constraints = Path(constraints)
        self.base_python = python
        self._key = None

    @property
    def python(self):
        return self.path / "bin" / "python"

    def _pip(self, *args, cwd=None):
        cmd = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "-c", str(self.constraints), *args]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")

    def ensure(self):
        if not self.constraints.is_file():
            raise RuntimeError(f"no constraints file at {self.constraints}: the toolchain cannot be pinned")
        # Made for these pins and this interpreter, or made again.
        stamp = hashlib.sha256((self.constraints.read_text() + sys.version).encode()).hexdigest()
        if (self.path / "gate-stamp").is_file() and (self.path / "gate-stamp").read_text() != stamp:
            shutil.rmtree(self.path)
        if not self.python.exists():
            print(f"gate: creating the pinned toolchain venv {self.path}", file=sys.stderr, flush=True)
            subprocess.run([self.base_python, "-m", "venv", str(self.path)], check=True, timeout=600)
            packages = [line.split("==")[0].strip() for line in self.constraints.read_text().splitlines()
                        if line.strip() and not line.lstrip().startswith("#")]
            self._pip(*packages, "setuptools>=77")
            (self.path / "gate-stamp").write_text(stamp)
        return self

    def key(self):
        """The toolchain of this venv (what a cached count was made with)."""
        if self._key is None:
            self.ensure()
            out = subprocess.run([str(self.python), "-c", _TOOLCHAIN_SNIPPET], check=True, capture_output=True,
                                 text=True, timeout=300).stdout
            self._key = {**json.loads(out), "cc": _cc_version(), **_settings()}
        return self._key

    def measure(self, tree, workdir):
        """Build the checkout ``tree`` here and count it with its own gate:
        ``{"counts": ..., "toolchain": ...}``."""
        self.ensure()
        tree = Path(tree)
        self._pip("--no-build-isolation", "-e", str(tree), cwd=tree)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(workdir) / "numba-cache"))
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([str(self.python), "-c", _MEASURE_SNIPPET, str(workdir)], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=3600)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("GATE-COUNTS ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"measuring {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(line[len("GATE-COUNTS "):])


def measure_commit(repo, rev, gate_venv, workdir):
    """Count commit ``rev`` of ``repo`` with its own gate code in ``gate_venv``."""
    sha = resolve(repo, rev)
    work = Path(tempfile.mkdtemp(prefix=f"gate-{sha[:10]}-", dir=workdir))
    try:
        tree = export_commit(repo, sha, work / "tree")
        print(f"gate: building and counting {sha[:10]} (its own gate code, pinned toolchain)", file=sys.stderr,
              flush=True)
        result = gate_venv.measure(tree, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"sha": sha, **result}


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
    """Judge current counts against one reference (a baseline file's content,
    or a base commit's counts in the same shape).

    Returns
    -------
    dict
        ``rows`` (case, current, baseline, change, verdict), ``failed``
        (bool), ``judged`` (bool: the toolchains matched), ``threshold`` and
        ``note``.  Verdicts: ``REGRESSION`` (above +threshold), ``improved``
        (below -threshold), ``ok``, ``new`` (no reference figure),
        ``missing`` (in the reference, not measured: fails, a kernel path lost
        its coverage), ``not compared`` (the toolchain differs).  Nothing
        judged is a failure too: a gate that compares nothing must not pass.
    """
    if baseline is None:
        return {"rows": [dict(case=k, current=v, baseline=None, change=None, verdict="new")
                         for k, v in sorted(counts.items())],
                "failed": True, "judged": False, "threshold": threshold or DEFAULT_THRESHOLD,
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
        "recorded on another toolchain: counts shown, NOT judged "
        f"(recorded {baseline.get('toolchain')}, now {env})")
    failed = not same_toolchain or any(r["verdict"] in ("REGRESSION", "missing") for r in rows)
    return {"rows": rows, "failed": failed, "judged": same_toolchain, "threshold": threshold, "note": note}


def _common(a, b):
    """The two toolchain records restricted to the keys both have (an older
    commit's gate may record fewer)."""
    keys = set(a or {}) & set(b or {})
    return {k: a[k] for k in keys}, {k: b[k] for k in keys}


def judge(counts, env, base=None, committed=None, base_committed=None, threshold=None):
    """The gate's verdict on ``counts`` (measured on toolchain ``env``).

    Parameters
    ----------
    base : dict, optional
        The base commit measured on this runner: ``{"sha", "counts",
        "toolchain"}`` (see :func:`measure_commit`).  The primary judge.
    committed : dict, optional
        This checkout's ``bench/gate-baseline.json``: judged only on the
        toolchain it records (a second opinion when ``base`` is given).
    base_committed : dict, optional
        The base commit's ``bench/gate-baseline.json``.  A rise over the base
        is ``accepted`` when the change raised the committed figure for that
        case by more than the threshold itself (a slowdown made on purpose is
        committed with its refreshed baseline) and the measured rise is at
        most twice that plus the threshold (the same change measures a little
        differently on another toolchain).  A case dropped from both the
        gate and the committed baseline is ``removed``, not ``missing``.

    Returns
    -------
    dict
        ``rows`` (case, current, base, base_change, base_verdict, baseline,
        change, verdict), ``failed``, ``threshold``, ``base`` (sha or None),
        ``notes`` (list of str).
    """
    if threshold is None:
        threshold = (committed or {}).get("threshold", DEFAULT_THRESHOLD)
    notes = []
    failed = False
    vs_base = None
    if base is not None:
        here, there = _common(env, base.get("toolchain"))
        vs_base = compare(counts, {"instructions": base["counts"], "toolchain": there}, threshold, here)
        old = (base_committed or {}).get("instructions", {})
        new = (committed or {}).get("instructions", {})
        for row in vs_base["rows"]:
            case = row["case"]
            if row["verdict"] == "REGRESSION" and case in old and case in new:
                refreshed = new[case] / old[case] - 1
                if refreshed > threshold and row["change"] <= 2 * refreshed + threshold:
                    row["verdict"] = f"accepted (baseline refreshed {refreshed:+.1%})"
            elif row["verdict"] == "missing" and case in old and case not in new:
                row["verdict"] = "removed"
        base_failed = not vs_base["judged"] or any(r["verdict"] in ("REGRESSION", "missing")
                                                   for r in vs_base["rows"])
        failed |= base_failed
        if not vs_base["judged"]:
            notes.append("the base was built on another toolchain than this checkout, so nothing could be "
                         f"compared: FAIL ({vs_base['note']}). Install both with the same constraints "
                         "(.ci/constraints.txt).")
    vs_committed = compare(counts, committed, threshold, env)
    if vs_committed["judged"]:
        failed |= vs_committed["failed"]
    elif committed is None:
        notes.append("no committed baseline (bench/gate-baseline.json)" +
                     (": judged against the base only." if base is not None else
                      ": nothing judged, FAIL. Run `python -m kernel.bench.gate --update` and commit it."))
        failed |= base is None
    else:
        if base is None:
            failed = True
            notes.append("the committed baseline was " + vs_committed["note"] + ". With no base commit "
                         "measured on this runner, NOTHING WAS JUDGED: FAIL. Run with `--base REV` "
                         "(what CI does), or refresh the baseline on this toolchain.")
        else:
            notes.append("second opinion skipped: the committed baseline was " + vs_committed["note"] + ".")
    base_rows = {r["case"]: r for r in vs_base["rows"]} if vs_base else {}
    committed_rows = {r["case"]: r for r in vs_committed["rows"]}
    rows = []
    for case in sorted(set(base_rows) | set(committed_rows)):
        b, c = base_rows.get(case, {}), committed_rows.get(case, {})
        rows.append(dict(case=case, current=counts.get(case), base=b.get("baseline"), base_change=b.get("change"),
                         base_verdict=b.get("verdict"), baseline=c.get("baseline"), change=c.get("change"),
                         verdict=c.get("verdict")))
    return {"rows": rows, "failed": bool(failed), "threshold": threshold,
            "base": base.get("sha") if base else None, "notes": notes}


def _fmt_count(n):
    return "-" if n is None else f"{n:,}"


def _fmt_change(change):
    return "-" if change is None else f"{change:+.2%}"


def _columns(verdict):
    """(header, cell function) pairs: the base columns only when a base was measured."""
    cols = [("backend", lambda r: r["case"].partition(":")[0]), ("case", lambda r: r["case"].partition(":")[2]),
            ("instructions", lambda r: _fmt_count(r["current"]))]
    if verdict.get("base"):
        cols += [(f"base {verdict['base'][:10]}", lambda r: _fmt_count(r["base"])),
                 ("vs base", lambda r: _fmt_change(r["base_change"])),
                 ("verdict", lambda r: r["base_verdict"] or "-")]
    cols += [("committed baseline", lambda r: _fmt_count(r["baseline"])),
             ("vs committed", lambda r: _fmt_change(r["change"])),
             ("verdict (committed)" if verdict.get("base") else "verdict", lambda r: r["verdict"] or "-")]
    return cols


def _summary(verdict):
    where = (f"the base commit `{verdict['base'][:10]}` built and counted on this runner (primary) and "
             "`bench/gate-baseline.json` (second opinion, only on its own toolchain)") if verdict.get("base") else \
        "`bench/gate-baseline.json`"
    return f"Threshold: +{verdict['threshold']:.1%} over {where}."


def markdown_report(verdict):
    """The gate's verdict (:func:`judge`) as a Markdown summary."""
    status = "FAIL" if verdict["failed"] else "pass"
    lines = ["## Performance gate (callgrind instructions, 1 thread)", "",
             f"{_summary(verdict)} Result: **{status}**.", ""]
    lines += [f"> {note}" for note in verdict["notes"]] + ([""] if verdict["notes"] else [])
    cols = _columns(verdict)
    lines += ["| " + " | ".join(h for h, _ in cols) + " |",
              "|" + "|".join("---" if i < 2 or h.startswith("verdict") else "---:" for i, (h, _) in enumerate(cols))
              + "|"]
    for r in verdict["rows"]:
        lines.append("| " + " | ".join(f(r) for _, f in cols) + " |")
    lines += ["", "Refresh the baseline on purpose with `python -m kernel.bench.gate --update` (and commit it "
              "with the change that moved the counts)."]
    return "\n".join(lines) + "\n"


_BAD = ("REGRESSION", "missing", "not compared")


def html_report(verdict):
    """The gate's verdict (:func:`judge`) as a self-contained HTML page."""
    cols = _columns(verdict)
    rows = []
    for r in verdict["rows"]:
        cells = []
        for h, f in cols:
            text = f(r)
            style = ""
            if h.startswith("verdict"):
                colour = "#c62828" if text in _BAD else "#2e7d32" if text.startswith(("improved", "accepted")) \
                    else "#333"
                style = f' style="color:{colour};font-weight:bold"'
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    status = "FAIL" if verdict["failed"] else "pass"
    notes = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in verdict["notes"])
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in cols)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Performance gate: {status}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:nth-child(-n+2){{text-align:left}}</style>
</head><body><h1>Performance gate: {status}</h1>
<p>Instructions counted by callgrind inside the kernel calls, one thread.
{html.escape(_summary(verdict))}</p>{notes}
<table><tr>{head}</tr>
{''.join(rows)}</table>
<p>Refresh the baseline on purpose with <code>python -m kernel.bench.gate --update</code>.</p></body></html>
"""


# -------------------------------------------------------------- history
def _key_digest(key):
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class CountCache:
    """Counts per commit, measured once: ``DIR/<toolchain digest>/<sha>.json``
    (a count is only reused on the toolchain it was made with)."""

    def __init__(self, path):
        self.path = Path(path)

    def _file(self, key, sha):
        return self.path / _key_digest(key) / f"{sha}.json"

    def get(self, key, sha):
        f = self._file(key, sha)
        return json.loads(f.read_text()) if f.is_file() else None

    def put(self, key, entry):
        f = self._file(key, entry["sha"])
        f.parent.mkdir(parents=True, exist_ok=True)
        (f.parent / "toolchain.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
        f.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")


def commit_counts(repo, sha, cache, gate_venv, workdir=None):
    """Counts of commit ``sha``: from ``cache`` when it was counted on this
    toolchain before, else built and counted in ``gate_venv`` (its scratch
    tree under ``workdir``, default the system's temporary folder) and
    cached."""
    key = gate_venv.key()
    cached = cache.get(key, sha)
    if cached is None:
        cached = measure_commit(repo, sha, gate_venv, workdir)
        cache.put(key, cached)
    return cached


def history(repo, rev_range, cache, gate_venv, workdir, limit=50):
    """Counts of every first-parent commit in ``rev_range`` (oldest first,
    at most ``limit``), each measured once per toolchain (``cache``).

    Commits without a gate (older than ``kernel/bench/gate.py``) are listed
    without counts; a commit that fails to build or measure is listed with
    its error and retried next time.
    """
    revs = _git(repo, "rev-list", "--first-parent", f"--max-count={limit}", rev_range).split()[::-1]
    key = gate_venv.key()
    commits = []
    for sha in revs:
        info = _git(repo, "show", "-s", "--format=%h%x00%cI%x00%s", sha).split("\x00")
        entry = {"sha": sha, "short": info[0], "date": info[1], "subject": info[2]}
        if cache.get(key, sha) is None:
            try:
                _git(repo, "cat-file", "-e", f"{sha}:kernel/bench/gate.py")
            except subprocess.CalledProcessError:
                commits.append({**entry, "counts": None, "error": "no gate in this commit"})
                continue
        try:
            cached = commit_counts(repo, sha, cache, gate_venv, workdir)
        except RuntimeError as exc:
            commits.append({**entry, "counts": None, "error": str(exc)[-500:]})
            continue
        commits.append({**entry, "counts": cached["counts"], "toolchain": cached.get("toolchain")})
    return {"range": rev_range, "toolchain": key, "commits": commits}


_SPARK = "▁▂▃▄▅▆▇█"


def _axis(values):
    """Value range of a trend: at least the threshold wide, so noise of a few
    instructions in a million stays flat instead of filling the chart."""
    lo, hi = min(values), max(values)
    floor = max(hi * DEFAULT_THRESHOLD, 1)
    if hi - lo < floor:
        mid = (hi + lo) / 2
        lo, hi = mid - floor / 2, mid + floor / 2
    return lo, hi


def _cases(hist):
    return sorted({case for c in hist["commits"] for case in (c["counts"] or {})})


def history_markdown(hist):
    """A table: per case, the first and last count and a sparkline."""
    measured = [c for c in hist["commits"] if c["counts"]]
    lines = [f"## Gate history: {hist['range']} ({len(measured)} of {len(hist['commits'])} commits measured)", "",
             "| backend | case | first | last | change | trend (oldest → newest) |", "|---|---|---:|---:|---:|---|"]
    for case in _cases(hist):
        values = [c["counts"].get(case) for c in measured]
        known = [v for v in values if v is not None]
        if not known:
            continue
        lo, hi = _axis(known)
        spark = "".join(" " if v is None else _SPARK[round((v - lo) / (hi - lo) * 7)] for v in values)
        backend, _, name = case.partition(":")
        lines.append(f"| {backend} | {name} | {known[0]:,} | {known[-1]:,} | {_fmt_change(known[-1] / known[0] - 1)} "
                     f"| `{spark}` |")
    for c in hist["commits"]:
        if c.get("error"):
            lines.append(f"\n- `{c['short']}` not measured: {c['error'].splitlines()[-1] if c['error'] else ''}")
    return "\n".join(lines) + "\n"


def _svg_chart(hist, case, width=420, height=150):
    pad_l, pad_r, pad_t, pad_b = 70, 10, 22, 20
    commits = hist["commits"]
    points = [(i, c["counts"][case], c) for i, c in enumerate(commits) if c["counts"] and case in c["counts"]]
    if not points:
        return ""
    values = [v for _, v, _ in points]
    lo, hi = _axis(values)
    lo, hi = lo - (hi - lo) * 0.1, hi + (hi - lo) * 0.1
    n = max(len(commits) - 1, 1)

    def x(i):
        return pad_l + (width - pad_l - pad_r) * i / n

    def y(v):
        return pad_t + (height - pad_t - pad_b) * (1 - (v - lo) / (hi - lo))

    path = " ".join(f"{'M' if k == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for k, (i, v, _) in enumerate(points))
    dots = []
    prev = None
    for i, v, c in points:
        step = "" if prev is None else f" ({v / prev - 1:+.2%} vs previous)"
        colour = "#c62828" if prev and v / prev - 1 > DEFAULT_THRESHOLD else \
            "#2e7d32" if prev and v / prev - 1 < -DEFAULT_THRESHOLD else "#1565c0"
        tip = html.escape(f"{c['short']} {c['date'][:10]} {v:,}{step}\n{c['subject'][:120]}")
        dots.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}"><title>{tip}</title></circle>')
        prev = v
    first = points[0][1]
    ends = [max(values)] if y(min(values)) - y(max(values)) < 12 else [max(values), min(values)]  # no overlap
    labels = "".join(f'<text x="{pad_l - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:,}</text>'
                     for v in ends)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(case)}">'
            f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ddd"/>'
            f'<text x="6" y="15" font-size="12" font-weight="bold">{html.escape(case)}</text>'
            f'<text x="{width - 6}" y="15" font-size="11" text-anchor="end">'
            f'{_fmt_change(points[-1][1] / first - 1)} over the range</text>'
            f'{labels}'
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{height - pad_b}" y2="{height - pad_b}" stroke="#999"/>'
            f'<path d="{path}" fill="none" stroke="#1565c0" stroke-width="1.5"/>{"".join(dots)}</svg>')


def history_html(hist):
    """A self-contained page: one small chart per case (instructions per
    commit, oldest left; hover a dot for the commit), then the commits."""
    charts = "".join(f"<div>{_svg_chart(hist, case)}</div>" for case in _cases(hist))
    commits = "".join(
        f"<tr><td>{i}</td><td><code>{html.escape(c['short'])}</code></td><td>{html.escape(c['date'][:16])}</td>"
        f"<td>{html.escape(c['subject'][:140])}</td><td>{'measured' if c['counts'] else html.escape(c.get('error', '')[-200:])}"
        "</td></tr>" for i, c in enumerate(hist["commits"]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Gate history {html.escape(hist['range'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}.grid{{display:flex;flex-wrap:wrap;gap:8px}}
table{{border-collapse:collapse;margin-top:1em}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}</style>
</head><body><h1>Gate history: {html.escape(hist['range'])}</h1>
<p>callgrind instructions inside the kernel calls, one thread, per commit (first parent, oldest on the left);
each commit built and counted by its own gate code on one toolchain: <code>{html.escape(json.dumps(hist['toolchain']))}</code>.
Red dot: more than +{DEFAULT_THRESHOLD:.0%} over the previous commit; green: more than {DEFAULT_THRESHOLD:.0%} fewer.</p>
<div class="grid">{charts}</div>
<table><tr><th>#</th><th>commit</th><th>date</th><th>subject</th><th>counts</th></tr>{commits}</table>
</body></html>
"""


# -------------------------------------------------------------- command line
def _write(out, name, text):
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Instruction-count performance gate (callgrind).")
    parser.add_argument("--base", metavar="REV", help="build REV in a temporary checkout with the pinned toolchain, "
                        "count it with its own gate code, and judge this checkout against it (what CI does)")
    parser.add_argument("--update", action="store_true", help="write the measured counts as the new baseline")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--threshold", type=float, default=None, help="relative rise that fails (default: baseline's)")
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="folder for the reports")
    parser.add_argument("--json", type=Path, dest="json_out", help="also write the counts and toolchain here")
    parser.add_argument("--history", metavar="REV_RANGE", help="count every first-parent commit of REV_RANGE "
                        "(e.g. HEAD~12..HEAD) once and draw the trend per case: history.html/.json/.md in --out")
    parser.add_argument("--history-limit", type=int, default=50, help="at most this many commits (newest)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="counts per commit and toolchain, reused (default: ~/.cache/kernel-gate)")
    parser.add_argument("--venv", type=Path, default=None, help="the pinned-toolchain venv for other commits "
                        "(default: under --cache; created on first use)")
    parser.add_argument("--constraints", type=Path, default=CONSTRAINTS)
    parser.add_argument("--_run-cases", dest="run_cases", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_cases:
        import ctypes

        _run_cases(ctypes.CDLL(args.probe) if args.probe else None)
        return 0
    if source_checkout() is None:  # before any valgrind run: nothing to compare with here
        print(NEEDS_CHECKOUT.format(where=ROOT / "kernel"), file=sys.stderr)
        return 2
    cache = CountCache(args.cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kernel-gate")
    gate_venv = GateVenv(args.venv or cache.path / "venv", args.constraints)
    if args.history:
        with tempfile.TemporaryDirectory(prefix="kernel-gate-") as work:
            hist = history(ROOT, args.history, cache, gate_venv, work, args.history_limit)
        _write(args.out, "history.json", json.dumps(hist, indent=1) + "\n")
        _write(args.out, "history.html", history_html(hist))
        _write(args.out, "history.md", history_markdown(hist))
        print(history_markdown(hist))
        print(f"(also written to {args.out}/history.html and history.json)")
        return 0

    base = base_committed = None
    base_sha = resolve(ROOT, args.base) if args.base and not args.update else None  # a bad REV fails here, at once
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The base commit is looked up in the cache or built and counted
        # (pinned venv, pip, the C compiler, valgrind: all subprocesses)
        # while this checkout is counted, so on a 2-core runner the two
        # overlap instead of taking turns.  Counts do not depend on what else
        # runs: callgrind counts instructions, not time.
        pending = pool.submit(commit_counts, ROOT, base_sha, cache, gate_venv) if base_sha else None
        counts = measure()
        if pending is not None:
            base = pending.result()  # the base's failure, if any, is raised here
            base_committed = committed_baseline(ROOT, base_sha)
    env = toolchain()
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"counts": counts, "toolchain": env}, indent=1, sort_keys=True) + "\n")
    if args.update:
        save_baseline(counts, args.baseline, args.threshold or DEFAULT_THRESHOLD, env)
        print(f"baseline written to {args.baseline} ({len(counts)} cases)")
        return 0
    verdict = judge(counts, env, base=base, committed=load_baseline(args.baseline), base_committed=base_committed,
                    threshold=args.threshold)
    report = markdown_report(verdict)
    _write(args.out, "gate.md", report)
    _write(args.out, "gate.html", html_report(verdict))
    _write(args.out, "gate.json", json.dumps({"verdict": verdict, "toolchain": env}, indent=1) + "\n")
    print(report)
    print(f"(also written to {args.out / 'gate.md'}, gate.html and gate.json)")
    return 1 if verdict["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
