"""Reports of a :func:`kernel.bench.runner.run_matrix` run: the terminal
text, a Markdown table, ``results.json``, ``results.csv`` and a
self-contained ``report.html``.

The HTML opens with the summary (one row per workload and mode: the best
accepted orders/s of each backend, the best C loop, the peers, and the
best kernel figure's ratios to them and to the Double 11 peaks), a
paragraph and the warnings; then the charts (inline SVG that scales to the
page, legend inside each chart), latency, the machine, and the details
collapsed.  No scripts, fonts or links: it renders offline and can be
mailed.

Over 700 lines on purpose: the report is self-contained (inline SVG charts
drawn here, no plotting library), so the chart geometry lives beside the
tables that share its data.
"""

import csv
import html
import io
import json
import math
from pathlib import Path

__all__ = ["markdown_table", "text_table", "summary_text", "write_reports", "write_csv", "fmt_rate",
           "fmt_ratio", "summary_rows", "c_ratio_rows", "html_report", "CAVEAT"]

E = html.escape
COLUMNS = ["workload", "backend", "mode", "threads", "calls/round", "round ms", "decided orders/s",
           "accepted orders/s", "spread (min-max, range/median)", "x best C", "x 2020 peak"]
CAVEAT = ("What the peak ratios compare: the Tmall peaks count orders created per second by Alibaba's whole "
          "order pipeline (gateways, carts, pricing, coupons, risk checks, payment, a durable write of every "
          "order, across data centres). This kernel measures one step of it: an in-memory stock decrement in "
          "one process on one machine, with no network and no durability. A ratio far above 1 says this step "
          "would not be the bottleneck, not that this machine could run Double 11. The ratios use accepted "
          "(created) orders only.")

# Backend colours (Okabe-Ito, colour-blind safe); modes differ by fill, marker and dash.
COLOURS = {"cython": "#0072B2", "numba": "#E69F00", "reference": "#009E73", "C seq": "#000000",
           "C CAS": "#8C6D31", "C seq runs": "#555555", "C CAS runs": "#C4A35A", "Redis+Lua": "#D55E00", "PostgreSQL": "#CC79A7", "_mode": "#888888"}
EXTRA_COLOURS = ["#56B4E9", "#F0E442", "#882255", "#117733"]
MODE_STYLE = {"concurrent": {"marker": "circle", "dash": "", "fill": "solid"},
              "ordered": {"marker": "square", "dash": "7,4", "fill": "hatch"},
              "tracked": {"marker": "triangle", "dash": "2,3", "fill": "hollow"},
              # Latency curves: closed loop on more threads, and one style per open-loop rate.
              "closed-2": {"marker": "square", "dash": "12,4", "fill": "hollow"},
              "open-0": {"marker": "triangle", "dash": "2,3", "fill": "hollow"},
              "open-1": {"marker": "diamond", "dash": "9,3,2,3", "fill": "hollow"},
              "open-2": {"marker": "down", "dash": "1,4", "fill": "solid"}}


# ------------------------------------------------------------------ numbers
def fmt_rate(rate):
    """Orders/s as ``'1.68G'``, ``'12.3M'``, ``'460k'``, ``'5.2k'``, ``'12'``."""
    if rate is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale:
            v = rate / scale
            return f"{v:.2f}{suffix}" if v < 10 and suffix == "G" else f"{v:.1f}{suffix}" if v < 100 \
                else f"{v:.0f}{suffix}"
    return f"{rate:.0f}"


def fmt_ratio(ratio):
    """``'412x'``, ``'4.1x'``, ``'0.71x'``."""
    if ratio is None:
        return "-"
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def fmt_ns(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs" if ns >= 1e3 else f"{ns:.0f} ns"


def _spread(m):
    s = m["spread"]
    return f"{fmt_rate(s['min_rate'])}-{fmt_rate(s['max_rate'])} ({s['relative_range']:.0%})"


# --------------------------------------------------------- what beats what
def _ms(run, kind=None):
    return [m for m in run["measurements"] if kind is None or m["kind"] == kind]


def _best(ms, key="accepted_per_s"):
    return max(ms, key=lambda m: m[key], default=None)


def _serial_c(run):
    """Names of the C loops that run on one thread by design (``C seq``)."""
    return {c["name"] for c in run.get("c_loops", {}).get("loops", []) if not c["parallel"]}


def best_c(run, workload, mode, threads=None):
    """The fastest C loop whose result meets ``mode``: at ``threads`` threads
    when given (the best of the parallel loops run at exactly that count and
    the serial loops, whose one-thread figure bounds any thread count), else
    at any thread count."""
    serial = _serial_c(run)
    return _best([m for m in _ms(run, "c") if m["workload"] == workload and mode in m["modes_met"]
                  and (threads is None or m["threads"] == threads or m["backend"] in serial)], "orders_per_s")


def peer_of(run, workload, backend, mode):
    """The peer measurement comparable with ``mode`` (plain modes against the
    peer's arrival-order run, tracked against its per-user-limit run)."""
    return _best([m for m in _ms(run, "peer") if m["workload"] == workload and m["backend"] == backend
                  and mode in m["modes_met"]])


def c_ratio(run, m, any_threads=False):
    """Decided orders/s of ``m`` over the best C loop's for its mode at the
    same thread count (asked: a kernel that chose fewer threads is judged at
    the count it was given), same data; ``any_threads``: over the best C
    loop at any thread count."""
    c = best_c(run, m["workload"], m["mode"], None if any_threads else m["threads"])
    return None if c is None else m["orders_per_s"] / c["orders_per_s"]


def thread_counts(run):
    """The thread counts the kernel cells were asked for, ascending."""
    return sorted({m["threads"] for m in _ms(run, "kernel")})


def _kernel_backends(run):
    return [b for b in run["config"]["backends"] if any(m["backend"] == b for m in _ms(run, "kernel"))]


def _peer_names(run):
    return list(dict.fromkeys(m["backend"] for m in _ms(run, "peer")))


def summary_rows(run):
    """One dict per (workload, mode): each backend's best cell, the best C
    loop, the peers, and the best kernel cell with its ratios."""
    rows = []
    for workload in run["config"]["workloads"]:
        for mode in run["config"]["modes"]:
            cells = {b: _best([m for m in _ms(run, "kernel") if (m["workload"], m["backend"], m["mode"])
                               == (workload, b, mode)]) for b in _kernel_backends(run)}
            top = _best([m for m in cells.values() if m is not None])
            if top is None:
                continue
            peers = {p: peer_of(run, workload, p, mode) for p in _peer_names(run)}
            c = best_c(run, workload, mode)
            c_same = best_c(run, workload, mode, top["threads"])  # the C bound at the best cell's thread count
            rows.append({"workload": workload, "mode": mode, "cells": cells, "best": top, "c": c, "peers": peers,
                         "c_same": c_same,
                         "x_c": None if c_same is None else top["orders_per_s"] / c_same["orders_per_s"],
                         "x_peers": {p: None if pm is None else top["accepted_per_s"] / pm["accepted_per_s"]
                                     for p, pm in peers.items()},
                         "x_2020": top["ratio_2020"], "x_2009": top["ratio_2009"]})
    return rows


def _cell(m):
    return "-" if m is None else f"{fmt_rate(m['accepted_per_s'])} ({m['ran_on']}t)"


def summary_table_rows(run):
    """``(header, rows)`` of the summary table, as strings."""
    backends, peer_names = _kernel_backends(run), _peer_names(run)
    header = (["workload", "mode"] + backends + ["best C loop"] + peer_names
              + ["best kernel x C (same threads)"] + [f"x {p}" for p in peer_names] + ["x 2020 peak", "x 2009 peak"])
    rows = []
    for r in summary_rows(run):
        c = r["c"]
        rows.append([r["workload"], r["mode"]] + [_cell(r["cells"][b]) for b in backends]
                    + ["-" if c is None else f"{fmt_rate(c['accepted_per_s'])} ({c['backend']}, {c['ran_on']}t)"]
                    + [("-" if r["peers"][p] is None else fmt_rate(r["peers"][p]["accepted_per_s"]))
                       for p in peer_names]
                    + [fmt_ratio(r["x_c"])] + [fmt_ratio(r["x_peers"][p]) for p in peer_names]
                    + [fmt_ratio(r["x_2020"]), fmt_ratio(r["x_2009"])])
    return header, rows


def _c_cell(run, c):
    if c is None:
        return "-"
    where = "" if c["backend"] in _serial_c(run) else f", {c['threads']}t"
    return f"{fmt_rate(c['orders_per_s'])} ({c['backend']}{where})"


def c_ratio_rows(run):
    """``(header, rows)``: per workload and mode, the best C loop at each
    thread count and every kernel backend's ratio to it at that count
    (decided orders/s, same data)."""
    counts, backends = thread_counts(run), _kernel_backends(run)
    header = (["workload", "mode"] + [f"best C, {t}t" for t in counts]
              + [f"{b} {t}t" for b in backends for t in counts])
    rows = []
    for workload in run["config"]["workloads"]:
        for mode in run["config"]["modes"]:
            kernel = {(m["backend"], m["threads"]): m for m in _ms(run, "kernel")
                      if (m["workload"], m["mode"]) == (workload, mode)}
            if not kernel:
                continue
            cs = [best_c(run, workload, mode, t) for t in counts]
            row = [workload, mode] + [_c_cell(run, c) for c in cs]
            for b in backends:
                for t in counts:
                    m = kernel.get((b, t))
                    row.append("-" if m is None else fmt_ratio(c_ratio(run, m)))
            rows.append(row)
    return header, rows


def summary_paragraphs(run):
    """The conclusion in words: per workload the best kernel figure and how
    it compares; then the caveat."""
    out = []
    by_workload = {}
    for r in summary_rows(run):
        by_workload.setdefault(r["workload"], []).append(r)
    parts = []
    for workload, rows in by_workload.items():
        r = max(rows, key=lambda r: r["best"]["accepted_per_s"])
        m = r["best"]
        bits = [f"{m['backend']} {m['mode']} {fmt_rate(m['accepted_per_s'])} accepted orders/s on {m['ran_on']} "
                f"thread{'s' if m['ran_on'] > 1 else ''}"]
        if r["x_c"] is not None:
            bits.append(f"{fmt_ratio(r['x_c'])} the best C loop on as many threads ({r['c_same']['backend']})")
        bits += [f"{fmt_ratio(x)} {p}" for p, x in r["x_peers"].items() if x is not None]
        bits.append(f"{fmt_ratio(r['x_2020'])} the 2020 peak")
        parts.append(f"<li><b>{E(workload)}</b>: " + E(", ".join(bits)) + "</li>")
    if parts:
        out.append("Best figure per workload:<ul>" + "".join(parts) + "</ul>")
    tracked = [r for r in summary_rows(run) if r["mode"] == "tracked"]
    plain = [r for r in summary_rows(run) if r["mode"] != "tracked"]
    if tracked and plain:
        worst = min(r["best"]["accepted_per_s"] for r in tracked)
        out.append(E(f"The tracked (service) path, with order ids, per-user caps and holds, is the slowest mode: "
                     f"its lowest best figure is {fmt_rate(worst)} accepted orders/s, "
                     f"{fmt_ratio(worst / 583_000)} the 2020 peak."))
    status = run.get("peers", {}).get("status", {})
    missing = [s["note"] for s in status.values() if not s["ran"]]
    if missing:
        out.append(E(" ".join(missing)))
    if run.get("warnings"):
        out.append(E(f"{len(run['warnings'])} warning(s): this run may have been disturbed (see below)."))
    out.append(E(CAVEAT))
    return out


# ------------------------------------------------------------------- tables
def _row(run, m):
    return [m["workload"], m["backend"], m["mode"], m["threads_label"], str(m["repeats"]),
            f"{m['round_seconds'] * 1e3:.0f}", fmt_rate(m["orders_per_s"]), fmt_rate(m["accepted_per_s"]),
            _spread(m), fmt_ratio(c_ratio(run, m)) if m["kind"] == "kernel" else "-", fmt_ratio(m["ratio_2020"])]


def _detail_rows(run):
    return [_row(run, m) for m in run["measurements"]]


def _warmup_line(run):
    firsts = run["warmup"]["numba_first_call_seconds"]
    if not firsts:
        return "Warm-up: one untimed call per cell (no numba first-call compile in this run)."
    parts = ", ".join(f"{key} {sec:.2f} s" for key, sec in firsts.items())
    return f"Warm-up: one untimed call per cell; numba first call (compile or cache load): {parts}."


def _skipped_line(run):
    """The skipped cells grouped by reason: one line each."""
    groups = {}
    for s in run["skipped"]:
        groups.setdefault((s["backend"], s["reason"]), []).append(f"{s['workload']}/{s['mode']}")
    return [f"Skipped {b} ({len(cells)} cells: {', '.join(cells)}): {reason}" for (b, reason), cells in groups.items()]


def _notes(run):
    lines = [f"Peaks: {run['peaks']['source']}. Peak ratios use accepted orders/s (the peaks count created "
             "orders).",
             "x best C: decided orders/s over the best hand-written C loop meeting the same mode's guarantee "
             "at the same thread count (the better of the CAS loop on that many threads and the single-writer "
             "loop, whose one-thread figure bounds any thread count), same data; tracked mode against the "
             "tracked C loops.",
             "Spread: per-call decided orders/s of the slowest and fastest round; in brackets (max-min)/median "
             "of the round times.", run.get("c_loops", {}).get("note", "")]
    lines += [s["note"] for s in run.get("peers", {}).get("status", {}).values()]
    return [x for x in lines + _skipped_line(run) if x]


def markdown_table(run):
    """Markdown: the summary table, then one row per measurement, then the notes."""
    header, rows = summary_table_rows(run)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    header, rows = c_ratio_rows(run)
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in _detail_rows(run)]
    return "\n".join(out + [""] + _notes(run) + [_warmup_line(run)]) + "\n"


def _aligned(header, rows, right_from):
    rows = [header] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if i >= right_from else c.ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]


def summary_text(run):
    """The summary table and warnings as plain text (the CLI's and the
    pytest plugin's closing lines)."""
    header, rows = summary_table_rows(run)
    lines = ["Summary: best accepted orders/s per backend (threads), ratios of the best kernel cell"]
    lines += _aligned(header, rows, 2)
    header, rows = c_ratio_rows(run)
    if rows:
        lines += ["", "Kernel vs the best C loop of the same mode at the same thread count (decided orders/s)"]
        lines += _aligned(header, rows, 2)
    lines += ["", CAVEAT]
    lines += [f"WARNING: {w}" for w in run.get("warnings", [])]
    return "\n".join(lines) + "\n"


def text_table(run):
    """Every cell, the notes, then the summary and the warnings."""
    lines = _aligned(COLUMNS, _detail_rows(run), 3)
    return "\n".join(lines + [""] + _notes(run) + [_warmup_line(run), ""]) + "\n" + summary_text(run)


# --------------------------------------------------------------------- CSV
CSV_FIELDS = ["workload", "backend", "kind", "mode", "threads", "ran_on", "n_orders", "accepted", "repeats",
              "round_seconds", "median_seconds", "orders_per_s", "accepted_per_s", "min_rate", "max_rate",
              "relative_range", "x_best_c", "ratio_2020", "ratio_2009", "note"]


def csv_text(run):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for m in run["measurements"]:
        row = {**m, **m["spread"], "x_best_c": c_ratio(run, m) if m["kind"] == "kernel" else None}
        w.writerow(["" if row.get(f) is None else row.get(f) for f in CSV_FIELDS])
    return buf.getvalue()


def write_csv(run, path):
    Path(path).write_text(csv_text(run), encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------------- SVG
def _text(x, y, s, anchor="middle", size=12, extra=""):
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{E(str(s))}</text>'


def _colour(backend):
    if backend in COLOURS:
        return COLOURS[backend]
    return EXTRA_COLOURS[sum(map(ord, backend)) % len(EXTRA_COLOURS)]


def _marker(x, y, mode, colour, r=4.5, title=""):
    style = MODE_STYLE.get(mode, MODE_STYLE["concurrent"])
    fill = "#fff" if style["fill"] == "hollow" else colour
    t = f"<title>{E(title)}</title>" if title else ""
    common = f'fill="{fill}" stroke="{colour}" stroke-width="1.8"'
    if style["marker"] == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {common}>{t}</rect>'
    if style["marker"] in ("triangle", "down", "diamond"):
        s = -1 if style["marker"] == "down" else 1
        pts = f"{x:.1f},{y - s * (r + 1):.1f} {x - r - 1:.1f},{y + s * r:.1f} {x + r + 1:.1f},{y + s * r:.1f}"
        if style["marker"] == "diamond":
            pts = f"{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} {x - r - 1:.1f},{y:.1f}"
        return f'<polygon points="{pts}" {common}>{t}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {common}>{t}</circle>'


def _svg(width, height, parts, label, cls="chart"):
    # viewBox + width 100% (max: natural width): the chart scales down with
    # the page instead of overflowing it.
    return (f'<svg class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
            f'style="max-width:{width:.0f}px" role="img" aria-label="{E(label)}" '
            f'preserveAspectRatio="xMinYMin meet">' + "".join(parts) + "</svg>")


def _hatch_defs(backends):
    out = ["<defs>"]
    for b in backends:
        c = _colour(b)
        out.append(f'<pattern id="h-{_id(b)}" width="6" height="6" patternUnits="userSpaceOnUse" '
                   f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
                   f'<line x1="0" y1="0" x2="0" y2="6" stroke="{c}" stroke-width="3.2"/></pattern>')
    return out + ["</defs>"]


def _id(name):
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _bar_fill(backend, mode):
    c, fill = _colour(backend), MODE_STYLE.get(mode, MODE_STYLE["concurrent"])["fill"]
    if fill == "hatch":
        return f'fill="url(#h-{_id(backend)})" stroke="{c}" stroke-width="1"'
    if fill == "hollow":
        return f'fill="#fff" stroke="{c}" stroke-width="1.6"'
    return f'fill="{c}" stroke="{c}" stroke-width="1"'


def _legend_box(x, y, entries, width, title=None):
    """A legend group at (x, y): ``entries`` are ``(kind, label, backend, mode)``
    with kind ``'bar'``, ``'line'`` or ``'rule'``; laid out in as many
    columns of ``width`` as fit."""
    # Column width from the longest label (about 7 px a character at 12 px).
    col_w, row_h = max(len(e[1]) for e in entries) * 7 + 40, 18
    cols = max(1, int(width // col_w))
    rows = math.ceil(len(entries) / cols) + (1 if title else 0)
    out = [f'<g class="legend"><rect x="{x:.1f}" y="{y:.1f}" width="{min(width, cols * col_w) + 8:.1f}" '
           f'height="{rows * row_h + 8:.1f}" fill="#fff" fill-opacity="0.92" stroke="#bbb"/>']
    yy = y + 4
    if title:
        out.append(_text(x + 8, yy + 13, title, "start", 12, 'font-weight="bold"'))
        yy += row_h
    for i, (kind, label, backend, mode) in enumerate(entries):
        cx, cy = x + 8 + (i % cols) * col_w, yy + (i // cols) * row_h + 9
        c = _colour(backend or "_mode")
        if kind == "bar":
            out.append(f'<rect x="{cx:.1f}" y="{cy - 6:.1f}" width="16" height="12" {_bar_fill(backend or "_mode", mode)}/>')
        elif kind == "rule":
            out.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + 22:.1f}" y2="{cy:.1f}" stroke="{c}" '
                       f'stroke-dasharray="{mode}" stroke-width="1.5"/>')
        else:
            dash = MODE_STYLE.get(mode, MODE_STYLE["concurrent"])["dash"]
            out.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + 22:.1f}" y2="{cy:.1f}" stroke="{c}" '
                       f'stroke-width="2" stroke-dasharray="{dash}"/>')
            out.append(_marker(cx + 11, cy, mode, c, 4))
        out.append(_text(cx + 28, cy + 4, label, "start", 12))
    out.append("</g>")
    return out, rows * row_h + 8


def _decade(e):
    prefix, power = next(((p, k) for k, p in ((9, "G"), (6, "M"), (3, "k"), (0, "")) if e >= k), ("", 0))
    return f"{10 ** (e - power)}{prefix}" if e >= 0 else f"1e{e}"


def _series_order(run):
    """``[(backend, mode)]`` drawn in the throughput chart: kernels, C, peers."""
    seen = []
    for kind in ("kernel", "c", "peer"):
        for m in _ms(run, kind):
            if (m["backend"], m["mode"]) not in seen:
                seen.append((m["backend"], m["mode"]))
    return seen


def throughput_chart(run, width=1100):
    """Best accepted orders/s per workload (log axis), one bar per backend and
    mode (colour: backend; fill and marker: mode), with the peaks."""
    series, workloads = _series_order(run), run["config"]["workloads"]
    rates = [m["accepted_per_s"] for m in run["measurements"] if m["accepted_per_s"] > 0]
    if not rates:
        return "<p>No measurements.</p>"
    peaks = run["peaks"]
    lo_exp = math.floor(math.log10(min(rates + [peaks["2009"]])))
    hi_exp = math.ceil(math.log10(max(rates + [peaks["2020"]]) * 1.05))
    backends = list(dict.fromkeys(b for b, _ in series))
    modes = list(dict.fromkeys(m for _, m in series))
    entries = ([("bar", b, b, "concurrent") for b in backends] + [("bar", f"mode: {m}", None, m) for m in modes]
               + [("rule", "Double 11 peaks", None, "6,4")])
    left, right = 70, 15
    plot_w = width - left - right
    legend, legend_h = _legend_box(left + 6, 8, entries, plot_w - 12)
    top = 8 + legend_h + 12
    plot_h = 330
    span = hi_exp - lo_exp
    y_of = lambda v: top + plot_h * (hi_exp - math.log10(v)) / span  # noqa: E731
    out = _hatch_defs(backends + ["_mode"])
    for e in range(lo_exp, hi_exp + 1):
        y = y_of(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>')
        out.append(_text(left - 6, y + 4, _decade(e), "end"))
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" class="axis"/>')
    group_w = plot_w / max(1, len(workloads))
    bar_w = min(22.0, (group_w - 16) / max(1, len(series)))
    for g, workload in enumerate(workloads):
        used = [(b, md) for b, md in series if _best([m for m in run["measurements"] if
                                                      (m["workload"], m["backend"], m["mode"]) == (workload, b, md)])]
        x0 = left + g * group_w + (group_w - bar_w * len(used)) / 2
        out.append(_text(left + g * group_w + group_w / 2, top + plot_h + 18, workload, size=13))
        if g:
            out.append(f'<line x1="{left + g * group_w:.1f}" y1="{top}" x2="{left + g * group_w:.1f}" '
                       f'y2="{top + plot_h}" class="grid"/>')
        for i, (backend, mode) in enumerate(used):
            m = _best([m for m in run["measurements"] if (m["workload"], m["backend"], m["mode"]) ==
                       (workload, backend, mode)])
            y = y_of(max(m["accepted_per_s"], 10 ** lo_exp))
            title = (f"{workload} {backend} {mode} on {m['ran_on']} thread(s): {fmt_rate(m['accepted_per_s'])} "
                     f"accepted/s" + (f" ({m['n_orders']:,} orders)" if m["kind"] == "peer" else ""))
            out.append(f'<rect x="{x0 + i * bar_w + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                       f'height="{top + plot_h - y:.1f}" {_bar_fill(backend, mode)}><title>{E(title)}</title></rect>')
            out.append(_marker(x0 + i * bar_w + bar_w / 2, y - 6, mode, _colour(backend), min(4.0, bar_w / 2.6)))
    for year in ("2020", "2009"):
        y = y_of(peaks[year])
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#000" '
                   f'stroke-dasharray="6,4" stroke-width="1.3"/>')
        out.append(_text(left + plot_w - 4, y - 4, f"{year} peak {fmt_rate(peaks[year])}/s", "end", 12,
                         'class="halo"'))
    out.append(_text(16, top + plot_h / 2, "accepted orders/s (log scale)", size=13,
                     extra=f'transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    out += legend
    return _svg(width, top + plot_h + 30, out, "accepted orders per second by workload, backend and mode")


def scaling_chart(run, workload, width=540):
    """Speedup over one thread against the threads each cell ran on, with
    the ideal (linear) line; one line per backend/mode."""
    # The reference and the serial C loop run on one thread by design: no scaling to show.
    keys = [k for k in run["scaling"] if k.split("/")[0] == workload
            and k.split("/")[1] not in {"reference", "C seq", *_serial_c(run)}]
    pts_all = [p for k in keys for p in run["scaling"][k] if p["speedup"] is not None]
    if not pts_all:
        return ""
    max_t = max(max(p["ran_on"] for p in pts_all), max(p["threads"] for p in pts_all), 2)
    top_s = max(max_t, max(p["speedup"] for p in pts_all)) * 1.08
    entries = [("line", f"{k.split('/')[1]} {k.split('/')[2]}", k.split("/")[1], k.split("/")[2]) for k in keys]
    entries.append(("rule", "ideal (linear)", None, "3,3"))
    left, right = 56, 12
    plot_w = width - left - right
    legend, legend_h = _legend_box(left + 6, 28, entries, plot_w - 12)
    top, plot_h = 28 + legend_h + 10, 220
    x_of = lambda t: left + plot_w * (t - 1) / (max_t - 1) * 0.9 + plot_w * 0.05  # noqa: E731
    y_of = lambda s: top + plot_h * (1 - s / top_s)  # noqa: E731
    out = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" class="axis"/>',
           _text(left, 18, f"{workload}: speedup over 1 thread", "start", 14, 'font-weight="bold"')]
    step = _nice_step(top_s / 5)
    s = 0.0
    while s <= top_s:
        out.append(f'<line x1="{left}" y1="{y_of(s):.1f}" x2="{left + plot_w}" y2="{y_of(s):.1f}" class="grid"/>')
        out.append(_text(left - 6, y_of(s) + 4, f"{s:g}x", "end", 11))
        s += step
    for t in range(1, max_t + 1):
        out.append(_text(x_of(t), top + plot_h + 15, t, size=11))
    out.append(f'<line x1="{x_of(1):.1f}" y1="{y_of(1):.1f}" x2="{x_of(max_t):.1f}" y2="{y_of(max_t):.1f}" '
               f'stroke="#555" stroke-dasharray="3,3" stroke-width="1.3"/>')
    for key in keys:
        _, backend, mode = key.split("/")
        pts = sorted((p for p in run["scaling"][key] if p["speedup"] is not None), key=lambda p: p["ran_on"])
        c, dash = _colour(backend), MODE_STYLE.get(mode, MODE_STYLE["concurrent"])["dash"]
        path = " ".join(f"{x_of(p['ran_on']):.1f},{y_of(p['speedup']):.1f}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2" stroke-dasharray="{dash}"/>')
        out += [_marker(x_of(p["ran_on"]), y_of(p["speedup"]), mode, c, 4.5,
                        f"{workload} {backend} {mode}: asked {p['label']}, ran on {p['ran_on']}: "
                        f"{p['speedup']:.2f}x one thread ({fmt_rate(p['orders_per_s'])} decided/s)") for p in pts]
    out.append(_text(left + plot_w / 2, top + plot_h + 32, "threads the kernel ran on", size=12))
    out.append(_text(14, top + plot_h / 2, "speedup over 1 thread", size=12,
                     extra=f'transform="rotate(-90 14 {top + plot_h / 2:.1f})"'))
    out += legend
    return _svg(width, top + plot_h + 40, out, f"thread scaling, {workload}")


def _nice_step(raw):
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= raw)


_NINES = [(50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9"), (99.99, "p99.99")]


def latency_chart(series, title, width=1100):
    """Percentile curves (x: percentile on a 'nines' axis, y: latency on a
    log axis).  ``series``: ``(label, backend, mode, summary)``."""
    series = [s for s in series if s[3].get("p50") is not None]
    if not series:
        return ""
    vals = [v for *_, summ in series for k, v in summ.items() if k.startswith("p") or k == "max"]
    lo_exp = math.floor(math.log10(max(1, min(vals))))
    hi_exp = math.ceil(math.log10(max(vals) * 1.05))
    entries = [("line", label, backend, mode) for label, backend, mode, _ in series]
    left, right = 70, 15
    plot_w = width - left - right
    legend, legend_h = _legend_box(left + 6, 8, entries, plot_w - 12)
    top, plot_h = 8 + legend_h + 10, 300
    points = _NINES + [(None, "max")]
    x_of = lambda i: left + 30 + (plot_w - 60) * i / (len(points) - 1)  # noqa: E731
    y_of = lambda v: top + plot_h * (hi_exp - math.log10(max(v, 1))) / (hi_exp - lo_exp)  # noqa: E731
    out = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" class="axis"/>']
    for e in range(lo_exp, hi_exp + 1):
        y = y_of(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>')
        out.append(_text(left - 6, y + 4, fmt_ns(10 ** e), "end", 11))
    for i, (_, name) in enumerate(points):
        out.append(_text(x_of(i), top + plot_h + 15, name, size=11))
    for label, backend, mode, summ in series:
        c, dash = _colour(backend), MODE_STYLE.get(mode, MODE_STYLE["concurrent"])["dash"]
        xy = [(x_of(i), y_of(summ[name]), name, summ[name]) for i, (_, name) in enumerate(points)
              if summ.get(name) is not None]
        out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, *_ in xy)}" fill="none" '
                   f'stroke="{c}" stroke-width="2" stroke-dasharray="{dash}"/>')
        out += [_marker(x, y, mode, c, 4, f"{label} {name}: {fmt_ns(v)}") for x, y, name, v in xy]
    out.append(_text(left + plot_w / 2, top + plot_h + 32, "percentile (each step: 10x rarer)", size=12))
    out.append(_text(16, top + plot_h / 2, "latency (log scale)", size=12,
                     extra=f'transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    out += legend
    return _svg(width, top + plot_h + 40, out, title)


# ------------------------------------------------------------------ latency
def _latency_label(p):
    if p["kind"] == "open":
        return f"{p['backend']} open loop {fmt_rate(p['offered_per_s'])}/s ({p['fraction']:.0%})"
    return f"{p['backend']} closed loop, {p['threads']} thread{'s' if p['threads'] > 1 else ''}"


def _latency_mode(p, fractions, thread_counts):
    # Line style: closed loop 1 thread solid, more threads dashed (a style per
    # count), each open-loop rate its own dotted style and marker.
    if p["kind"] == "open":
        return f"open-{min(2, sorted(fractions).index(p['fraction']))}"
    return ("concurrent", "ordered", "closed-2")[min(2, sorted(thread_counts).index(p["threads"]))]


def _pcols(summ):
    return [fmt_ns(summ.get(k)) for k in ("p50", "p99", "p99.9", "max")]


def latency_section(run):
    lat = run.get("latency")
    if not lat:
        return ('<h2 id="latency">Latency</h2><p class="note">Not measured in this run '
                '(<code>--latency</code> is on by default; <code>--no-latency</code> turns it off).</p>')
    per_call = lat["per_call"]
    rows = [[_latency_label(p), f"{p['calls']:,}",
             fmt_rate(p.get("calls_per_s") or p.get("achieved_per_s")), *_pcols(p["histogram"]),
             str(p.get("sent_late", "-"))] for p in per_call]
    fractions = sorted({p["fraction"] for p in per_call if p["kind"] == "open"})
    counts = sorted({p["threads"] for p in per_call if p["kind"] == "closed"})
    chart = latency_chart([(_latency_label(p), p["backend"], _latency_mode(p, fractions, counts), p["histogram"])
                           for p in per_call],
                          "reserve_one latency percentiles")
    brows = [[b["workload"], b["backend"], b["mode"], f"{b['batches']:,} x {b['batch_orders']:,}",
              *_pcols(b["histogram"])] for b in lat["batch"]]
    return "\n".join([
        '<h2 id="latency">Latency</h2>',
        '<p class="note">Per call: <code>inv.reserve_one</code> from Python. Closed loop: threads call back to '
        "back. Open loop: one sender at a fixed offered rate (a fraction of the 1-thread closed-loop rate), "
        "latency measured from each call's intended send time, so a stall also counts against the calls queued "
        "behind it (no coordinated omission). Recorded in HdrHistogram-style buckets (at most 0.8% relative "
        "error). Line style: solid closed loop 1 thread, dashed closed loop several threads, dotted (a "
        "marker per offered rate) open loop.</p>", chart,
        _table(["reserve_one", "calls", "calls/s", "p50", "p99", "p99.9", "max", "sent late"], rows, 1),
        '<p class="note">Per batch: the workload served as consecutive batches on one inventory (as a service '
        "batching its requests would), each <code>inv.reserve(batch)</code> timed and checked.</p>",
        _table(["workload", "backend", "mode", "batches x orders", "p50", "p99", "p99.9", "max"], brows, 3)])


# -------------------------------------------------------------------- HTML
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1140px;color:#222;
padding:0 16px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:12.5px}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3;text-align:left;vertical-align:bottom}td.n{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
.note{color:#444;font-size:.92em}svg{display:block;margin:.4em 0}svg text{fill:#222;font-family:sans-serif}
svg .grid{stroke:#e3e3e3;stroke-width:1}svg .axis{stroke:#444;stroke-width:1}
svg .halo{paint-order:stroke;stroke:#fff;stroke-width:4px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em}
.charts figure{margin:0;min-width:0}figcaption{font-size:.9em}
.warn{background:#fff6e0;border:1px solid #e0b040;padding:.4em .8em;margin:.6em 0}
.warn li{margin:.15em 0}details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
.summary td:nth-child(-n+2){font-weight:600}.para{margin:.6em 0}.para ul{margin:.2em 0}
"""


def _table(header, rows, numeric_from=None, cls=""):
    head = "".join(f"<th>{E(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td{" class=n" if numeric_from is not None and i >= numeric_from else ""}>'
                        f"{E(str(c))}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{cls}"><tr>{head}</tr>{"".join(body)}</table>'


def _config_line(run):
    c = run["config"]
    sizes = ", ".join(f"{k} {v:,}" for k, v in c["n_orders"].items())
    wall = run.get("wall_seconds")
    took = f" The run took {wall / 60:.1f} min." if wall else ""
    return (f"Scale {c['scale']} (orders per batch: {sizes}); {c['rounds']} timed rounds per cell, interleaved "
            f"across cells, median reported; each round calibrated to at least "
            f"{c.get('min_round_s', 0) * 1e3:.0f} ms (at most {c.get('max_repeats', 1)} calls, each on a fresh "
            f"inventory); seed {c['seed']}; threads {', '.join(c['threads'])}. Every call, kernels and C loops "
            f"alike, was checked: no oversell, conservation, all-or-nothing.{took}")


def _machine_rows(run):
    m = run["machine"]
    order = ["cpu", "logical_cores", "usable_cores", "current_mhz", "max_mhz", "memory_gib", "os", "os_kernel",
             "python", "numpy", "numba", "llvmlite", "cython", "compiler", "extension_cflags", "c_loop_flags",
             "cython_openmp", "numba_threading_layer", "git_commit", "git_dirty", "command", "load_average_at_end",
             "kernel", "date"]
    return [[k, "-" if m.get(k) is None else str(m[k])] for k in order + [k for k in m if k not in order]]


def _disturbance_rows(run):
    rows = []
    for name, b in run.get("disturbance", {}).get("blocks", {}).items():
        share = "-" if b.get("other_share") is None else f"{b['other_cpu_s']:.1f} s ({b['other_share']:.0%})"
        steal = "-" if b.get("steal_share") is None else f"{b['steal_s']:.2f} s ({b['steal_share']:.1%})"
        rows.append([name, f"{b['wall_s']:.1f} s", share, steal, str(b.get("load_average"))])
    return rows


def _peer_rows(run):
    return [[m["workload"], m["backend"], m["mode"], f"{m['n_orders']:,}", fmt_rate(m["orders_per_s"]),
             fmt_rate(m["accepted_per_s"]), _spread(m)] for m in _ms(run, "peer")]


def html_report(run):
    """The whole report as one self-contained HTML string."""
    header, rows = summary_table_rows(run)
    charts = "".join(f'<figure>{svg}</figure>' for w in run["config"]["workloads"] if (svg := scaling_chart(run, w)))
    warnings = run.get("warnings", [])
    warn_html = ""
    if warnings:
        items = "".join(f"<li>{E(w)}</li>" for w in warnings)
        warn_html = (f'<div class="warn"><b>{len(warnings)} warning(s): the machine may have been disturbed '
                     f"while this ran.</b><ul>{items}</ul></div>")
    peer_notes = "".join(f'<p class="note">{E(s["note"])}</p>'
                         for s in run.get("peers", {}).get("status", {}).values())
    c_note = run.get("c_loops", {}).get("note", "")
    c_loops = run.get("c_loops", {}).get("loops", [])
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>kernel benchmark {E(run['machine']['date'])}</title><style>{CSS}</style></head><body>",
        "<h1>Order-matching kernel benchmark</h1>",
        f'<p class="note">{E(_config_line(run))}</p>',
        '<h2 id="summary">Summary</h2>',
        '<p class="note">Best accepted orders/s of each backend over the thread counts (threads it ran on), the '
        "best hand-written C loop meeting the same mode's guarantee, the peers measured in this run on this "
        "machine on the same workload shape (\"x Redis+Lua\": how many times the orders/s of what one would "
        "use today), then the best kernel cell's ratios.</p>",
        _table(header, rows, 2, "summary"),
        '<p class="note">Each kernel cell against the best hand-written C loop meeting the same mode\'s '
        "guarantee at the same thread count (the CAS loop on that many threads or the single-writer loop, "
        "whichever is faster; tracked mode against the tracked C loops), decided orders/s on the same data; "
        "- where no C loop fits (tracked marketplace) or the cell was not run.</p>",
        _table(*c_ratio_rows(run), 2, "summary"),
        "".join(f"<div class=para>{p}</div>" for p in summary_paragraphs(run)),
        warn_html,
        '<h2 id="throughput">Accepted orders/s by workload</h2>',
        '<p class="note">Best thread count per bar; logarithmic axis (each grid line is 10x). Colour: backend; '
        "fill and marker: mode (solid/circle concurrent, hatched/square ordered, hollow/triangle tracked). Peers "
        "ran smaller batches of the same shape. Hover a bar for its figures.</p>",
        throughput_chart(run),
        '<h2 id="scaling">Thread scaling</h2>',
        '<p class="note">Speedup of decided orders/s over the same cell on 1 thread, plotted at the thread count '
        "the kernel actually ran on (the thread policy runs small or contended batches on fewer threads); the "
        "dashed grey line is linear scaling.</p>",
        f'<div class="charts">{charts}</div>',
        latency_section(run),
        '<h2 id="peers">Peers</h2>', peer_notes or '<p class="note">No peers requested.</p>',
        _table(["workload", "peer", "mode", "orders per run", "decided/s", "accepted/s", "spread"], _peer_rows(run), 3)
        if _peer_rows(run) else "",
        '<h2 id="machine">Machine</h2>', _table(["what", "value"], _machine_rows(run)),
        "<details><summary>Load during the run (other processes' CPU time, steal)</summary>",
        _table(["workload block", "wall", "other processes' CPU", "steal", "load average"], _disturbance_rows(run), 1),
        "</details>",
        "<details><summary>All cells</summary>",
        _table(COLUMNS, _detail_rows(run), 3),
        "".join(f'<p class="note">{E(line)}</p>' for line in _notes(run)),
        "</details>",
        f"<details><summary>C loops ({len(c_loops)} registered)</summary><p class=note>{E(c_note)}</p>",
        _table(["name", "function", "shape", "meets modes", "threads", "what"],
               [[c["name"], c["function"], c["shape"], ", ".join(c["modes"]), "OpenMP" if c["parallel"] else "1",
                 c["description"]] for c in c_loops]), "</details>",
        f"<details><summary>Warm-up and skipped cells</summary><p class=note>{E(_warmup_line(run))}</p>"
        + "".join(f"<p class=note>{E(s)}</p>" for s in _skipped_line(run)) + "</details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_reports(run, out_dir):
    """Write ``results.json``, ``results.csv`` and ``report.html`` into
    ``out_dir`` (created if needed); return ``(json_path, html_path)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "results.json", out / "report.html"
    json_path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    write_csv(run, out / "results.csv")
    html_path.write_text(html_report(run), encoding="utf-8")
    return json_path, html_path
