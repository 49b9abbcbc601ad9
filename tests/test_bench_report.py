"""The benchmark runner, reports and CLI: deterministic workloads, checked
rounds, honest ratios and a self-contained HTML report."""

import json
import re
import statistics

import numpy as np
import pytest

from kernel import Inventory, Status
from kernel.bench import __main__ as cli
from kernel.bench import peaks
from kernel.bench.report import markdown_table, text_table, write_reports
from kernel.bench.runner import REFERENCE_MAX_ORDERS, measure, resolve_thread_counts, run_matrix
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
    ms = run["measurements"]
    # cython: 2 workloads x 2 modes x 2 thread counts; reference: one thread count only.
    assert len(ms) == 2 * 2 * 2 + 2 * 2
    for m in ms:
        rounds = m["seconds"]
        assert len(rounds) == 2  # one entry per timed round (values are not judged: no timing asserts)
        assert m["orders_per_s"] == pytest.approx(m["n_orders"] / statistics.median(rounds))
        assert m["orders_per_s"] > 0 and 0 < m["accepted_per_s"] <= m["orders_per_s"]
        assert m["ratio_2020"] == pytest.approx(m["accepted_per_s"] / 583_000, rel=1e-12)
        assert m["ratio_2009"] == pytest.approx(m["accepted_per_s"] / peaks.PEAK_2009, rel=1e-12)
        assert m["decided_ratio_2020"] == pytest.approx(m["orders_per_s"] / peaks.PEAK_2020, rel=1e-12)
    assert run["peaks"]["2020"] == 583_000 and run["peaks"]["source"] == peaks.SOURCE
    eff = run["scaling"]["uniform/cython/concurrent"]
    assert [p["threads"] for p in eff] == [1, 2] and eff[0]["efficiency"] == pytest.approx(1.0)


def test_ordered_accepts_the_same_every_round(run):
    for m in run["measurements"]:
        if m["mode"] == "ordered":
            assert len(set(m["accepted_rounds"])) == 1 and m["accepted"] == m["accepted_rounds"][0]


def test_reference_skipped_when_too_slow(monkeypatch):
    import kernel.bench.runner as runner
    monkeypatch.setattr(runner, "REFERENCE_MAX_ORDERS", 1000)  # uniform at TINY has 5,000 orders
    out = run_matrix(["uniform"], ["reference", "cython"], ["ordered"], [1], scale=TINY, rounds=1)
    assert [m["backend"] for m in out["measurements"]] == ["cython"]
    assert out["skipped"][0]["backend"] == "reference" and "too slow" in out["skipped"][0]["reason"]
    assert "too slow" in markdown_table(out)
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
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I)
    assert page.count("<svg") >= 1 + len(run["config"]["workloads"])
    for name in run["config"]["workloads"]:
        assert name in page
    assert page.rstrip().endswith("</html>")


def test_text_tables_have_one_row_per_measurement(run):
    md = markdown_table(run).splitlines()
    rows = [line for line in md if line.startswith("| ") and not line.startswith("| workload")]
    assert len(rows) == len(run["measurements"])
    assert any("583,000" in line for line in md)
    text = text_table(run)
    assert re.search(r"\d+\.\dM", text) and re.search(r"\d[\d,.]*x", text)


def test_cli_writes_both_files(tmp_path, capsys):
    out = tmp_path / "rep"
    code = cli.main(["--scale", str(TINY), "--rounds", "1", "--workloads", "uniform", "--backends", "cython",
                     "--threads", "1", "--out", str(out)])
    assert code == 0
    assert (out / "results.json").is_file() and (out / "report.html").is_file()
    captured = capsys.readouterr()
    assert "uniform" in captured.out and str(out / "report.html") in captured.out
    assert "1/1" in captured.err or "[" in captured.err  # progress went to stderr


def test_cli_rejects_unknown_workload(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--workloads", "nope"])
    assert exc.value.code == 2
