"""The benchmark runner, reports and CLI: deterministic workloads, checked
rounds, honest ratios and a self-contained HTML report."""

import csv
import json
import re
import statistics

import numpy as np
import pytest

from kernel import Inventory, Status
from kernel.bench import __main__ as cli
from kernel.bench import peaks
from kernel.bench import compare
from kernel.bench.report import CAVEAT, c_ratio_rows, markdown_table, summary_rows, text_table, write_reports
from kernel.bench.runner import REFERENCE_MAX_ORDERS, measure, resolve_thread_counts, run_matrix, warnings
from kernel.bench.workloads import WORKLOADS, make_case
from kernel.inventory import Result
from kernel.invariants import InvariantViolation

TINY = 0.0005


def _arrays(case):
    o = case.orders
    return [case.stock, o.sku, o.qty, o.line_start] + ([] if case.price is None else [case.price])


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workloads_are_deterministic(name):
    a, b, c = make_case(name, TINY, seed=1), make_case(name, TINY, seed=1), make_case(name, TINY, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))
    if name != "flash-sale":  # flash-sale has no randomness: one SKU, unit orders
        assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(c)))


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_scale_changes_sizes(name):
    assert make_case(name, 0.002).n_orders > make_case(name, 0.001).n_orders


@pytest.fixture(scope="module")
def run():
    return run_matrix(["uniform", "carts"], ["cython", "reference"], ["concurrent", "ordered"], [1, 2],
                      scale=TINY, rounds=2)


def test_run_matrix_measures_every_cell(run):
    ms = [m for m in run["measurements"] if m["kind"] == "kernel"]
    # cython: 2 workloads x 2 modes x 2 thread counts; reference: one thread count only.
    assert len(ms) == 2 * 2 * 2 + 2 * 2
    for m in ms:
        rounds = m["seconds"]
        assert len(rounds) == 2  # one entry per timed round (values are not judged: no timing asserts)
        assert m["repeats"] >= 1 and len(m["accepted_rounds"]) == 2 * m["repeats"]
        assert m["orders_per_s"] == pytest.approx(m["n_orders"] * m["repeats"] / statistics.median(rounds))
        assert m["orders_per_s"] > 0 and 0 < m["accepted_per_s"] <= m["orders_per_s"]
        assert m["ratio_2020"] == pytest.approx(m["accepted_per_s"] / 583_000, rel=1e-12)
        assert m["ratio_2009"] == pytest.approx(m["accepted_per_s"] / peaks.PEAK_2009, rel=1e-12)
        assert "decided_ratio_2020" not in m  # the peaks count created orders only
        assert 1 <= m["ran_on"] <= m["threads"]
    assert run["peaks"]["2020"] == 583_000 and run["peaks"]["source"] == peaks.SOURCE
    eff = run["scaling"]["uniform/cython/concurrent"]
    assert [p["threads"] for p in eff] == [1, 2] and eff[0]["speedup"] == pytest.approx(1.0)


def test_c_loops_run_beside_the_kernels(run):
    """Each C loop that fits a workload is a row of its own, checked, and a
    serial C loop accepts exactly what the kernel's ordered mode accepts."""
    c = [m for m in run["measurements"] if m["kind"] == "c"]
    if "skipped" in run["c_loops"]["note"]:
        pytest.skip(run["c_loops"]["note"])
    assert {(m["workload"], m["backend"], m["threads"]) for m in c} == (
        {(w, "C seq", 1) for w in ("uniform", "carts")} | {(w, "C CAS", t) for w in ("uniform", "carts") for t in (1, 2)}
        | {("uniform", "C seq runs", 1), ("uniform", "C CAS runs", 1), ("uniform", "C CAS runs", 2)})
    for workload in ("uniform", "carts"):
        seq = next(m for m in c if m["workload"] == workload and m["backend"] == "C seq")
        ordered = next(m for m in run["measurements"] if (m["workload"], m["backend"], m["mode"]) ==
                       (workload, "cython", "ordered"))
        assert seq["accepted"] == ordered["accepted"] and "ordered" in seq["modes_met"]
    assert "-march=native" in run["c_loops"]["note"] and "-fopenmp" in run["c_loops"]["note"]


def test_summary_has_a_row_per_workload_and_mode(run):
    rows = summary_rows(run)
    assert [(r["workload"], r["mode"]) for r in rows] == [
        (w, m) for w in ("uniform", "carts") for m in ("concurrent", "ordered")]
    for r in rows:
        assert r["best"]["accepted_per_s"] == max(m["accepted_per_s"] for m in r["cells"].values())
        assert r["x_2020"] == pytest.approx(r["best"]["accepted_per_s"] / 583_000)
        if r["c"] is not None:
            # The ratio is to the best C loop at the best cell's thread count.
            assert r["x_c"] == pytest.approx(r["best"]["orders_per_s"] / r["c_same"]["orders_per_s"])
            assert r["mode"] in r["c"]["modes_met"] and r["mode"] in r["c_same"]["modes_met"]
            assert r["c"]["orders_per_s"] >= r["c_same"]["orders_per_s"]


def test_warnings_flag_a_disturbed_run(run):
    """More threads slower than fewer, a wide spread, other processes' CPU
    time: each becomes a warning in plain words."""
    disturbed = json.loads(json.dumps(run))
    by_key = {(m["workload"], m["backend"], m["mode"], m["threads"]): m for m in disturbed["measurements"]}
    one, two = by_key[("uniform", "cython", "concurrent", 1)], by_key[("uniform", "cython", "concurrent", 2)]
    disturbed["scaling"]["uniform/cython/concurrent"] = [
        {"threads": 1, "ran_on": 1, "label": "1", "orders_per_s": 100.0, "speedup": 1.0, "efficiency": 1.0},
        {"threads": 2, "ran_on": 2, "label": "2", "orders_per_s": 40.0, "speedup": 0.4, "efficiency": 0.2}]
    one["spread"]["relative_range"] = 1.12
    disturbed["disturbance"]["blocks"]["uniform"].update(other_cpu_s=5.0, other_share=0.6, steal_s=0.0,
                                                         steal_share=0.0)
    text = "\n".join(warnings(disturbed))
    assert "slower on more threads than on fewer" in text and "uniform cython concurrent 2 vs 1 (0.40x)" in text
    assert "112%" in text and "other processes took 5.0 CPU s" in text
    del two


def test_machine_and_provenance(run):
    m = run["machine"]
    for key in ("cpu", "logical_cores", "memory_gib", "os", "os_kernel", "python", "numpy", "numba", "llvmlite",
                "cython", "compiler", "c_loop_flags", "cython_openmp", "git_commit", "git_dirty", "command"):
        assert key in m
    assert m["c_loop_flags"].startswith("-O3 -march=native -fopenmp")


def test_ordered_accepts_the_same_every_round(run):
    for m in run["measurements"]:
        if m["mode"] == "ordered":
            assert len(set(m["accepted_rounds"])) == 1 and m["accepted"] == m["accepted_rounds"][0]


def test_reference_skipped_when_too_slow(monkeypatch):
    import kernel.bench.runner as runner
    monkeypatch.setattr(runner, "REFERENCE_MAX_ORDERS", 1000)  # uniform at TINY has 5,000 orders
    out = run_matrix(["uniform"], ["reference", "cython"], ["ordered"], [1], scale=TINY, rounds=1)
    assert [m["backend"] for m in out["measurements"] if m["kind"] == "kernel"] == ["cython"]
    assert out["skipped"][0]["backend"] == "reference" and "too slow" in out["skipped"][0]["reason"]
    assert "too slow" in markdown_table(out)
    assert markdown_table(out).count("too slow") == 1  # skipped cells grouped, one line per reason
    assert REFERENCE_MAX_ORDERS == 200_000


def test_all_threads_deduplicated_with_label(monkeypatch):
    monkeypatch.setattr("kernel.backends.default_threads", lambda: 2)
    assert resolve_thread_counts([1, 2, "all"]) == [(1, "1"), (2, "2 (all)")]
    assert resolve_thread_counts(["all", 4]) == [(2, "2 (all)"), (4, "4")]


def test_measure_raises_on_a_wrong_result(monkeypatch):
    """A kernel that takes the stock but reports the order refused must fail
    the round, not produce a number."""
    real = Inventory.reserve

    def broken(self, orders, **kw):
        result = real(self, orders, **kw)
        status = np.array(result.status)
        status[np.flatnonzero(status == Status.ACCEPTED)[0]] = Status.OUT_OF_STOCK
        return Result(self, orders, status, result.threads, taken=result._taken, slot_start=result._slot_start,
                      offer_start=self.offer_start, offer_by_priority=self.offer_by_priority)

    monkeypatch.setattr(Inventory, "reserve", broken)
    case = make_case("uniform", TINY)
    for mode in ("concurrent", "ordered"):
        with pytest.raises(InvariantViolation, match="G2"):
            measure(case, "cython", mode, 1, rounds=1, warmup=0)


def test_write_reports(run, tmp_path):
    json_path, html_path = write_reports(run, tmp_path / "out")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(run))
    page = html_path.read_text()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", page, re.I)
    assert page.count("<svg") >= 1 + len(run["config"]["workloads"])
    for name in run["config"]["workloads"]:
        assert name in page
    assert page.rstrip().endswith("</html>")
    # Summary first, details collapsed.
    assert page.index('id="summary"') < page.index('id="throughput"') < page.index("<details>")
    assert "in-memory stock decrement" in page and "All cells" in page


def test_csv_export(run, tmp_path):
    write_reports(run, tmp_path)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == len(run["measurements"])
    assert {r["kind"] for r in rows} >= {"kernel"}
    assert float(rows[0]["orders_per_s"]) == pytest.approx(run["measurements"][0]["orders_per_s"])


def test_compare_gives_a_verdict_only_beyond_the_spread(run, tmp_path, capsys):
    old = json.loads(json.dumps(run))
    new = json.loads(json.dumps(run))
    for m in old["measurements"]:
        m["spread"]["relative_range"] = 0.10
    for m in new["measurements"]:
        m["spread"]["relative_range"] = 0.10
    new["measurements"][0]["orders_per_s"] *= 2.0    # beyond 10%: faster
    new["measurements"][1]["orders_per_s"] *= 1.05   # within 10%: no verdict
    new["measurements"][2]["orders_per_s"] /= 1.5    # slower
    new["measurements"][3]["n_orders"] += 1          # not the same batch: no verdict
    rows, only_old, only_new = compare.compare(old, new)
    assert [r["verdict"] for r in rows[:4]] == ["faster", "within noise", "slower", "different size"]
    assert all(r["verdict"] == "within noise" for r in rows[4:])
    assert rows[0]["ratio"] == pytest.approx(2.0) and not only_old and not only_new
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert cli.main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"),
                     "--csv", str(tmp_path / "diff.csv")]) == 0
    out = capsys.readouterr().out
    assert "1 faster, 1 slower" in out
    assert len(list(csv.DictReader((tmp_path / "diff.csv").open()))) == len(rows)


def test_text_tables_have_one_row_per_measurement(run):
    md = markdown_table(run).splitlines()
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| workload")]
    assert len(rows) == len(run["measurements"]) + len(summary_rows(run)) + len(c_ratio_rows(run)[1])
    assert any("583,000" in line for line in md)
    text = text_table(run)
    assert re.search(r"\d+\.\dM", text) and re.search(r"\d[\d,.]*x", text)
    assert text.index("Summary") > text.index("uniform") and CAVEAT in text


def test_cli_writes_both_files(tmp_path, capsys):
    out = tmp_path / "rep"
    code = cli.main(["--scale", str(TINY), "--rounds", "1", "--workloads", "uniform", "--backends", "cython",
                     "--threads", "1", "--out", str(out), "--peers", "none", "--no-latency", "--min-round-ms", "1"])
    assert code == 0
    assert (out / "results.json").is_file() and (out / "report.html").is_file()
    captured = capsys.readouterr()
    assert "uniform" in captured.out and str(out / "report.html") in captured.out
    assert "1/1" in captured.err or "[" in captured.err  # progress went to stderr


def test_cli_rejects_unknown_workload(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--workloads", "nope"])
    assert exc.value.code == 2
