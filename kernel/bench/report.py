"""Reports of a :func:`kernel.bench.runner.run_matrix` run: a terminal table,
a Markdown table, ``results.json`` and a self-contained ``report.html``.

The HTML has inline CSS and hand-drawn inline SVG only: no scripts, no
fonts, no links to anything, so it renders offline and can be mailed.
"""

import html
import json
import math
from pathlib import Path

__all__ = ["markdown_table", "text_table", "write_reports", "fmt_rate", "fmt_ratio"]

COLUMNS = ["workload", "backend", "mode", "threads", "decided orders/s (median)", "accepted orders/s",
           "spread (min-max, range/median)", "x 2020 peak", "x 2009 peak"]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
E = html.escape


# ------------------------------------------------------------------ numbers
def fmt_rate(rate):
    """Orders/s as ``'12.3M'`` (``'0.25M'`` below 1M)."""
    return f"{rate / 1e6:.1f}M" if rate >= 1e6 else f"{rate / 1e6:.2f}M"


def fmt_ratio(ratio):
    """``'412x'``, ``'4.1x'``, ``'0.71x'``."""
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def _spread(m):
    s = m["spread"]
    return f"{fmt_rate(s['min_rate'])}-{fmt_rate(s['max_rate'])} ({s['relative_range']:.0%})"


def _row(m):
    return [m["workload"], m["backend"], m["mode"], m["threads_label"], fmt_rate(m["orders_per_s"]),
            fmt_rate(m["accepted_per_s"]), _spread(m), fmt_ratio(m["ratio_2020"]), fmt_ratio(m["ratio_2009"])]


def _warmup_line(run):
    firsts = run["warmup"]["numba_first_call_seconds"]
    if not firsts:
        return "Warm-up: one untimed round per cell (no numba first-call compile in this run)."
    parts = ", ".join(f"{key} {sec:.2f} s" for key, sec in firsts.items())
    return f"Warm-up: one untimed round per cell; numba first call (compile or cache load): {parts}."


def _notes(run):
    lines = [f"Peaks: {run['peaks']['source']}. Ratios use accepted orders/s (the peaks count created orders).",
             "Spread: decided orders/s of the slowest and fastest round; in brackets (max-min)/median of the round times.",
             _warmup_line(run)]
    lines += [f"{s['workload']} {s['backend']} {s['mode']}: {s['reason']}" for s in run["skipped"]]
    return lines


# ------------------------------------------------------------------- tables
def markdown_table(run):
    """A Markdown table, one row per measurement, then the notes."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_row(m)) + " |" for m in run["measurements"]]
    return "\n".join(out + [""] + _notes(run)) + "\n"


def text_table(run):
    """Aligned columns for the terminal, then the notes."""
    rows = [COLUMNS] + [_row(m) for m in run["measurements"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    right = set(range(3, len(COLUMNS)))
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    return "\n".join(lines + [""] + _notes(run)) + "\n"


# --------------------------------------------------------------------- SVG
def _best(run, workload, backend, mode):
    """The measurement with the most accepted orders/s over thread counts."""
    ms = [m for m in run["measurements"] if (m["workload"], m["backend"], m["mode"]) == (workload, backend, mode)]
    return max(ms, key=lambda m: m["accepted_per_s"], default=None)


def _series(run):
    """``[(backend, mode)]`` that have measurements, in run order."""
    seen = []
    for m in run["measurements"]:
        if (m["backend"], m["mode"]) not in seen:
            seen.append((m["backend"], m["mode"]))
    return seen


def _text(x, y, s, anchor="middle", size=11, extra=""):
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{E(str(s))}</text>'


def _legend(items, x, y):
    out = []
    for i, (label, color, ordered) in enumerate(items):
        yy = y + 16 * i
        style = ' stroke-dasharray="5,3"' if ordered == "dashed" else ' stroke-opacity="0.55"' if ordered else ""
        out.append(f'<line x1="{x}" y1="{yy}" x2="{x + 18}" y2="{yy}" stroke="{color}" stroke-width="6"{style}/>')
        out.append(_text(x + 24, yy + 4, label, "start"))
    return out


def _log_axis(lo_exp, hi_exp, y_of, left, right):
    out = []
    for e in range(lo_exp, hi_exp + 1):
        y = y_of(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>')
        out.append(_text(left - 6, y + 4, _decade(e), "end"))
    return out


def _decade(e):
    prefix, power = next(((p, k) for k, p in ((9, "G"), (6, "M"), (3, "k"), (0, "")) if e >= k), ("", 0))
    return f"{10 ** (e - power)}{prefix}" if e >= 0 else f"1e{e}"


def bar_chart(run):
    """Grouped bars (log scale): best accepted orders/s per workload and
    backend/mode, with the 2020 and 2009 peaks as horizontal lines."""
    series, workloads = _series(run), run["config"]["workloads"]
    rates = [m["accepted_per_s"] for m in run["measurements"] if m["accepted_per_s"] > 0]
    if not rates:
        return "<p>No measurements.</p>"
    peaks = run["peaks"]
    lo_exp = math.floor(math.log10(min(rates + [peaks["2009"]])))
    hi_exp = math.ceil(math.log10(max(rates + [peaks["2020"]]) * 1.01))
    left, top, plot_h, group_w = 60, 20, 260, max(60, 22 * len(series) + 20)
    right = left + group_w * len(workloads)
    span = hi_exp - lo_exp
    y_of = lambda v: top + plot_h * (hi_exp - math.log10(v)) / span  # noqa: E731
    out = _log_axis(lo_exp, hi_exp, y_of, left, right)
    bar_w = (group_w - 20) / max(1, len(series))
    for g, workload in enumerate(workloads):
        x0 = left + g * group_w + 10
        out.append(_text(x0 + (group_w - 20) / 2, top + plot_h + 16, workload))
        for i, (backend, mode) in enumerate(series):
            m = _best(run, workload, backend, mode)
            if m is None or m["accepted_per_s"] <= 0:
                continue
            y = y_of(m["accepted_per_s"])
            title = f"{workload} {backend} {mode} x{m['threads_label']}: {fmt_rate(m['accepted_per_s'])} accepted/s"
            out.append(f'<rect x="{x0 + i * bar_w:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                       f'height="{top + plot_h - y:.1f}" fill="{_color(series, backend, mode)}" '
                       f'{_opacity(mode)}><title>{E(title)}</title></rect>')
    for year, color in (("2020", "#000"), ("2009", "#888")):
        y = y_of(peaks[year])
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{color}" '
                   f'stroke-dasharray="6,4" stroke-width="1.5"/>')
        out.append(_text(right + 4, y + 4, f"{year} peak ({peaks[year]:,.0f}/s)", "start"))
    legend = _legend([(f"{b} {m}", _color(series, b, m), m == "ordered") for b, m in series], right + 150, top + 10)
    width = right + 330
    return _svg(width, top + plot_h + 30 + max(0, 16 * len(series) - plot_h), out + legend)


def _color(series, backend, mode):
    backends = list(dict.fromkeys(b for b, _ in series))
    return PALETTE[backends.index(backend) % len(PALETTE)]


def _opacity(mode):
    return 'fill-opacity="0.55"' if mode == "ordered" else ""


def _svg(width, height, parts):
    return (f'<svg width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">' + "".join(parts) + "</svg>")


def scaling_chart(run, workload):
    """Decided orders/s against thread count, one line per backend/mode."""
    keys = [k for k in run["scaling"] if k.split("/")[0] == workload]
    points = [p for k in keys for p in run["scaling"][k]]
    if not points:
        return ""
    threads = sorted({p["threads"] for p in points})
    top_rate = max(p["orders_per_s"] for p in points) * 1.1
    left, top, w, h = 60, 15, 300, 180
    x_of = lambda t: left + (w * threads.index(t) / max(1, len(threads) - 1) if len(threads) > 1 else w / 2)  # noqa: E731
    y_of = lambda r: top + h * (1 - r / top_rate)  # noqa: E731
    out = [f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" class="axis"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" class="axis"/>']
    for i in range(5):
        r = top_rate * i / 4
        out.append(f'<line x1="{left}" y1="{y_of(r):.1f}" x2="{left + w}" y2="{y_of(r):.1f}" class="grid"/>')
        out.append(_text(left - 6, y_of(r) + 4, fmt_rate(r), "end", 10))
    for t in threads:
        out.append(_text(x_of(t), top + h + 14, t, size=10))
    out.append(_text(left + w / 2, top + h + 30, "threads", size=10))
    series = _series(run)
    legend = []
    for key in keys:
        _, backend, mode = key.split("/")
        color, pts = _color(series, backend, mode), run["scaling"][key]
        dash = ' stroke-dasharray="5,3"' if mode == "ordered" else ""
        path = " ".join(f"{x_of(p['threads']):.1f},{y_of(p['orders_per_s']):.1f}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{x_of(p["threads"]):.1f}" cy="{y_of(p["orders_per_s"]):.1f}" r="3" fill="{color}">'
                f'<title>{E(_point_title(key, p))}</title></circle>' for p in pts]
        legend.append((f"{backend} {mode}", color, "dashed" if mode == "ordered" else False))
    out += _legend(legend, left + w + 20, top + 10)
    return _svg(left + w + 170, max(top + h + 40, top + 16 * len(legend) + 20), out)


def _efficiency_caption(run, workload):
    """``'uniform: efficiency cython concurrent 74% at 2'`` (rate(t) / (t rate(1)))."""
    parts = []
    for key, pts in run["scaling"].items():
        _, backend, mode = key.split("/")
        if key.split("/")[0] == workload:
            parts += [f"{backend} {mode} {p['efficiency']:.0%} at {p['label']}"
                      for p in pts if p["threads"] > 1 and p["efficiency"] is not None]
    return workload + (": parallel efficiency " + ", ".join(parts) if parts else "")


def _point_title(key, p):
    eff = "" if p["efficiency"] is None else f", efficiency {p['efficiency']:.0%}"
    return f"{key} x{p['label']}: {fmt_rate(p['orders_per_s'])} decided/s{eff}"


# -------------------------------------------------------------------- HTML
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.9em}svg text{fill:#222;font-family:sans-serif}
svg .grid{stroke:#e5e5e5;stroke-width:1}svg .axis{stroke:#444;stroke-width:1}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}.charts figure{margin:0;max-width:540px}figcaption{font-size:.9em}
"""


def _table(header, rows, numeric_from=None):
    head = "".join(f"<th>{E(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td{" class=n" if numeric_from is not None and i >= numeric_from else ""}>'
                        f"{E(str(c))}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _ratio_rows(run):
    rows = []
    for workload in run["config"]["workloads"]:
        for backend, mode in _series(run):
            m = _best(run, workload, backend, mode)
            if m is not None:
                rows.append([workload, backend, mode, m["threads_label"], fmt_rate(m["accepted_per_s"]),
                             fmt_ratio(m["ratio_2020"]), fmt_ratio(m["ratio_2009"]),
                             fmt_ratio(m["decided_ratio_2020"]), fmt_ratio(m["decided_ratio_2009"])])
    return rows


def _config_line(run):
    c = run["config"]
    sizes = ", ".join(f"{k} {v:,}" for k, v in c["n_orders"].items())
    return (f"scale {c['scale']} (orders: {sizes}); {c['rounds']} timed rounds per cell, median reported; "
            f"seed {c['seed']}; threads {', '.join(c['threads'])}. Every timed round was checked against "
            f"the kernel's invariants (no oversell, conservation, all-or-nothing).")


def html_report(run):
    """The whole report as one self-contained HTML string."""
    svgs = {w: scaling_chart(run, w) for w in run["config"]["workloads"]}
    charts = "".join(f"<figure>{svg}<figcaption>{E(_efficiency_caption(run, w))}</figcaption></figure>"
                     for w, svg in svgs.items() if svg)
    ratio_header = ["workload", "backend", "mode", "threads", "accepted orders/s", "x 2020 peak",
                    "x 2009 peak", "decided x 2020", "decided x 2009"]
    notes = "".join(f'<p class="note">{E(line)}</p>' for line in _notes(run))
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>kernel benchmark {E(run['machine']['date'])}</title><style>{CSS}</style></head><body>",
        "<h1>Order-matching kernel benchmark</h1>",
        f'<p class="note">{E(_config_line(run))}</p>{notes}',
        "<h2>Accepted orders/s by workload and backend (best thread count)</h2>",
        '<p class="note">Logarithmic scale (each grid line is 10x). Ordered mode drawn lighter. '
        "Dashed lines: Tmall Double 11 peaks.</p>", bar_chart(run),
        "<h2>Thread scaling (decided orders/s)</h2>",
        '<p class="note">Linear scale; dashed lines are ordered mode. Parallel efficiency is '
        "rate(t) / (t &middot; rate(1)); hover a point for its figures.</p>", f'<div class="charts">{charts}</div>',
        "<h2>Against the Double 11 peaks</h2>", _table(ratio_header, _ratio_rows(run), 4),
        "<h2>Machine</h2>", _table(["", ""], [[k, v] for k, v in run["machine"].items()]),
        "<h2>All results</h2>", _table(COLUMNS, [_row(m) for m in run["measurements"]], 4),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_reports(run, out_dir):
    """Write ``results.json`` and ``report.html`` into ``out_dir`` (created
    if needed); return their paths ``(json_path, html_path)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "results.json", out / "report.html"
    json_path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(html_report(run), encoding="utf-8")
    return json_path, html_path
