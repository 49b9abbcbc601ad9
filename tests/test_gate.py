"""The regression gate's logic: threshold maths, baseline refresh, missing
baseline, dump parsing and the reports (the callgrind run itself is
exercised by .ci/run)."""

import json

import pytest

from kernel.bench import gate

ENV = {"python": "3.11.7", "numba": "0.68.1"}


def baseline(counts, threshold=0.01, env=ENV):
    return {"threshold": threshold, "toolchain": env, "instructions": counts}


@pytest.mark.parametrize("current, verdict, failed", [
    (1_000_000, "ok", False),
    (1_009_999, "ok", False),       # +0.9999%: inside the 1% threshold
    (1_010_001, "REGRESSION", True),  # +1.0001%
    (989_999, "improved", False),
    (2_000_000, "REGRESSION", True),
])
def test_threshold_is_relative_to_the_baseline(current, verdict, failed):
    result = gate.compare({"cython:uniform/concurrent": current},
                          baseline({"cython:uniform/concurrent": 1_000_000}), env=ENV)
    (row,) = result["rows"]
    assert row["verdict"] == verdict
    assert result["failed"] is failed
    assert row["change"] == pytest.approx(current / 1_000_000 - 1)


def test_explicit_threshold_overrides_the_baselines():
    result = gate.compare({"a": 1_050_000}, baseline({"a": 1_000_000}), threshold=0.10, env=ENV)
    assert result["rows"][0]["verdict"] == "ok" and not result["failed"]


def test_new_and_missing_cases():
    result = gate.compare({"new": 5, "kept": 10}, baseline({"kept": 10, "gone": 7}), env=ENV)
    verdicts = {r["case"]: r["verdict"] for r in result["rows"]}
    assert verdicts == {"new": "new", "kept": "ok", "gone": "missing"}
    assert result["failed"]  # a kernel path that lost its coverage must be noticed


def test_missing_baseline_fails_with_instructions():
    result = gate.compare({"a": 1}, None, env=ENV)
    assert result["failed"]
    assert "--update" in result["note"]
    assert gate.load_baseline("/nonexistent/gate-baseline.json") is None


def test_other_toolchain_is_reported_not_judged():
    result = gate.compare({"a": 2_000_000}, baseline({"a": 1_000_000}), env={**ENV, "numba": "9.9"})
    assert result["rows"][0]["verdict"] == "not compared"
    assert not result["failed"]
    assert "another toolchain" in result["note"]


def test_refreshing_the_baseline_round_trips(tmp_path):
    path = tmp_path / "baseline.json"
    gate.save_baseline({"b": 2, "a": 1}, path, threshold=0.02, env=ENV)
    loaded = gate.load_baseline(path)
    assert loaded == {"threshold": 0.02, "toolchain": ENV, "instructions": {"a": 1, "b": 2}}
    assert json.loads(path.read_text())["instructions"] == {"a": 1, "b": 2}
    assert not gate.compare({"a": 1, "b": 2}, loaded, env=ENV)["failed"]


def test_parse_dumps_reads_label_and_total(tmp_path):
    (tmp_path / "callgrind.out.1").write_text(
        "version: 1\ndesc: Trigger: Client Request: cython:uniform/concurrent\nevents: Ir\nsummary: 12345\n")
    (tmp_path / "callgrind.out.2").write_text(
        "desc: Trigger: Client Request: numba:carts/ordered\ntotals: 678\n")
    (tmp_path / "callgrind.out").write_text("desc: Trigger: Program termination\nsummary: 999\n")
    counts = gate.parse_dumps(sorted(tmp_path.glob("callgrind.out*")))
    assert counts == {"cython:uniform/concurrent": 12345, "numba:carts/ordered": 678}


def test_reports_show_every_row_and_the_verdict():
    result = gate.compare({"cython:zipf/concurrent": 1_200, "numba:zipf/concurrent": 1_000},
                          baseline({"cython:zipf/concurrent": 1_000, "numba:zipf/concurrent": 1_000}), env=ENV)
    md = gate.markdown_report(result)
    assert "**FAIL**" in md
    assert "| cython | zipf/concurrent | 1,200 | 1,000 | +20.00% | REGRESSION |" in md
    assert "| numba | zipf/concurrent | 1,000 | 1,000 | +0.00% | ok |" in md
    page = gate.html_report(result)
    assert "REGRESSION" in page and "http" not in page
