"""The regression gate's logic: threshold maths, baseline refresh, missing
baseline, judging against a base commit, toolchain mismatches, dump parsing,
the reports and the history chart (the callgrind runs themselves are
exercised by .ci/run and bench/gate_selftest.sh), and bench/kernel_counts.py,
which counts each kernel call under callgrind."""

import json
import subprocess
import sys
import threading

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


def test_other_toolchain_is_not_judged_and_that_fails():
    result = gate.compare({"a": 2_000_000}, baseline({"a": 1_000_000}), env={**ENV, "numba": "9.9"})
    assert result["rows"][0]["verdict"] == "not compared"
    assert result["failed"] and not result["judged"]  # a gate that compared nothing must not pass
    assert "another toolchain" in result["note"]


# What the issue found: the committed baseline says Debian's gcc 12 and
# Python 3.11.7, a GitHub runner has gcc 13 and another patch release.
LOCAL = {"python": "3.11.7", "numpy": "2.4.6", "numba": "0.68.1", "llvmlite": "0.50.0", "cython": "3.3.1",
         "machine": "x86_64", "cc": "cc (Debian 12.2.0-14+deb12u1) 12.2.0"}
GITHUB = {**LOCAL, "python": "3.11.14", "cc": "cc (Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0"}
COUNTS = {"cython:uniform/concurrent": 1_000_000, "numba:carts/tracked": 2_000_000}


def worse(counts, by):
    return {k: round(v * (1 + by)) for k, v in counts.items()}


def test_every_count_50_percent_worse_on_a_github_toolchain_without_a_base_fails():
    committed = baseline(COUNTS, env=LOCAL)
    verdict = gate.judge(worse(COUNTS, 0.5), GITHUB, committed=committed)
    assert verdict["failed"]
    assert "NOTHING WAS JUDGED" in verdict["notes"][0] and "--base" in verdict["notes"][0]
    assert "**FAIL**" in gate.markdown_report(verdict)


@pytest.mark.parametrize("by, failed", [(0.5, True), (0.03, True), (0.011, True), (0.005, False), (-0.2, False)])
def test_a_base_counted_on_the_same_runner_judges_where_the_baseline_cannot(by, failed):
    base = {"sha": "b" * 40, "counts": COUNTS, "toolchain": GITHUB}
    verdict = gate.judge(worse(COUNTS, by), GITHUB, base=base, committed=baseline(COUNTS, env=LOCAL),
                         base_committed=baseline(COUNTS, env=LOCAL))
    assert verdict["failed"] is failed
    assert {r["base_verdict"] for r in verdict["rows"]} == {
        "REGRESSION" if failed else "improved" if by < -0.01 else "ok"}
    assert {r["verdict"] for r in verdict["rows"]} == {"not compared"}  # shown, not judged
    assert any("second opinion skipped" in n for n in verdict["notes"])
    md = gate.markdown_report(verdict)
    assert f"base {'b' * 10}" in md and ("**FAIL**" if failed else "**pass**") in md


def test_a_base_built_on_another_toolchain_fails():
    base = {"sha": "b" * 40, "counts": COUNTS, "toolchain": {**GITHUB, "cython": "3.2.0"}}
    verdict = gate.judge(COUNTS, GITHUB, base=base, committed=baseline(COUNTS, env=LOCAL))
    assert verdict["failed"]
    assert "another toolchain" in verdict["notes"][0]


def test_an_older_gate_recording_fewer_toolchain_keys_is_still_compared():
    base = {"sha": "b" * 40, "counts": COUNTS, "toolchain": GITHUB}
    verdict = gate.judge(COUNTS, {**GITHUB, "numba_opt": "2"}, base=base, committed=baseline(COUNTS, env=LOCAL))
    assert not verdict["failed"]
    assert {r["base_verdict"] for r in verdict["rows"]} == {"ok"}


def test_same_toolchain_the_committed_baseline_is_a_second_judge():
    base = {"sha": "b" * 40, "counts": worse(COUNTS, 0.05), "toolchain": LOCAL}
    verdict = gate.judge(worse(COUNTS, 0.05), LOCAL, base=base, committed=baseline(COUNTS, env=LOCAL))
    assert verdict["failed"]  # ok against the base, yet 5% over the committed figures
    assert {r["verdict"] for r in verdict["rows"]} == {"REGRESSION"}


@pytest.mark.parametrize("refreshed, measured, verdict", [
    (0.10, 0.10, "accepted (baseline refreshed +10.0%)"),
    (0.10, 0.15, "accepted (baseline refreshed +10.0%)"),  # another toolchain measures it a bit differently
    (0.10, 0.30, "REGRESSION"),  # more than the author refreshed for
    (0.005, 0.03, "REGRESSION"),  # a refresh inside the threshold accepts nothing
])
def test_a_rise_committed_with_its_refreshed_baseline_is_accepted(refreshed, measured, verdict):
    base = {"sha": "b" * 40, "counts": COUNTS, "toolchain": GITHUB}
    result = gate.judge(worse(COUNTS, measured), GITHUB, base=base,
                        committed=baseline(worse(COUNTS, refreshed), env=LOCAL),
                        base_committed=baseline(COUNTS, env=LOCAL))
    assert {r["base_verdict"] for r in result["rows"]} == {verdict}
    assert result["failed"] is (verdict == "REGRESSION")


def test_a_case_dropped_with_its_baseline_is_removed_not_missing():
    base = {"sha": "b" * 40, "counts": {**COUNTS, "numba:gone/x": 5}, "toolchain": GITHUB}
    result = gate.judge(COUNTS, GITHUB, base=base, committed=baseline(COUNTS, env=LOCAL),
                        base_committed=baseline({**COUNTS, "numba:gone/x": 5}, env=LOCAL))
    assert {r["case"]: r["base_verdict"] for r in result["rows"]}["numba:gone/x"] == "removed"
    assert not result["failed"]
    lost = gate.judge(COUNTS, GITHUB, base=base, committed=baseline({**COUNTS, "numba:gone/x": 5}, env=LOCAL))
    assert lost["failed"]  # still in the committed baseline: coverage was lost


def test_no_baseline_at_all_but_a_base_judges():
    base = {"sha": "b" * 40, "counts": COUNTS, "toolchain": LOCAL}
    assert not gate.judge(COUNTS, LOCAL, base=base)["failed"]
    assert gate.judge(COUNTS, LOCAL)["failed"]


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
    result = gate.judge({"cython:zipf/concurrent": 1_200, "numba:zipf/concurrent": 1_000}, ENV,
                        committed=baseline({"cython:zipf/concurrent": 1_000, "numba:zipf/concurrent": 1_000}))
    md = gate.markdown_report(result)
    assert "**FAIL**" in md
    assert "| cython | zipf/concurrent | 1,200 | 1,000 | +20.00% | REGRESSION |" in md
    assert "| numba | zipf/concurrent | 1,000 | 1,000 | +0.00% | ok |" in md
    page = gate.html_report(result)
    assert "REGRESSION" in page and "http" not in page


def test_count_cache_keys_by_toolchain(tmp_path):
    cache = gate.CountCache(tmp_path)
    entry = {"sha": "a" * 40, "counts": COUNTS, "toolchain": LOCAL}
    cache.put(LOCAL, entry)
    assert cache.get(LOCAL, "a" * 40) == entry
    assert cache.get(GITHUB, "a" * 40) is None  # measured once per toolchain, never mixed


def fake_history():
    commits = []
    for i, by in enumerate([0, 0, 0.04, 0.04, -0.1]):
        commits.append({"sha": f"{i}" * 40, "short": f"{i}" * 7, "date": f"2026-11-2{i}T10:00:00+00:00",
                        "subject": f"commit <{i}>", "counts": worse(COUNTS, by), "toolchain": LOCAL})
    commits.insert(0, {"sha": "f" * 40, "short": "f" * 7, "date": "2026-11-19T10:00:00+00:00",
                       "subject": "before the gate", "counts": None, "error": "no gate in this commit"})
    return {"range": "HEAD~6..HEAD", "toolchain": LOCAL, "commits": commits}


def test_history_chart_and_table():
    hist = fake_history()
    page = gate.history_html(hist)
    assert page.count("<svg") == len(COUNTS)
    assert "commit &lt;2&gt;" in page and "+4.00% vs previous" in page  # escaped, with the step
    assert "-10.00% over the range" in page and "http://www.w3.org/2000/svg" in page
    assert "<script" not in page and "src=" not in page  # self-contained
    md = gate.history_markdown(hist)
    assert "5 of 6 commits measured" in md
    row = next(line for line in md.splitlines() if "uniform/concurrent" in line)
    assert "1,000,000 | 900,000 | -10.00%" in row
    assert row.endswith("| `▆▆██▁` |")  # oldest -> newest
    flat = {**hist, "commits": [{**c, "counts": c["counts"] and {k: v + i for k, v in COUNTS.items()}}
                                for i, c in enumerate(hist["commits"])]}
    noise = next(line for line in gate.history_markdown(flat).splitlines() if "uniform/concurrent" in line)
    assert set(noise.split("`")[1]) <= {"▄", "▅"}  # a few instructions in a million: flat, not full scale
    assert "no gate in this commit" in md


@pytest.mark.skipif(gate.source_checkout() is None, reason="needs the git checkout")
def test_export_commit_writes_the_committed_tree(tmp_path):
    tree = gate.export_commit(gate.ROOT, "HEAD", tmp_path / "tree")
    assert (tree / "kernel" / "bench" / "gate.py").is_file()
    assert not (tree / ".git").exists()
    assert gate.committed_baseline(gate.ROOT, "HEAD")["instructions"]
    with pytest.raises(ValueError):
        gate.resolve(gate.ROOT, "no-such-rev-anywhere")


def test_outside_a_source_checkout_the_gate_says_so_before_measuring(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gate, "ROOT", tmp_path)
    monkeypatch.setattr(gate, "BASELINE", tmp_path / "bench" / "gate-baseline.json")

    def no_valgrind(*args, **kwargs):
        raise AssertionError("measured outside a checkout")
    monkeypatch.setattr(gate, "measure", no_valgrind)
    assert gate.main(["--out", str(tmp_path / "out")]) == 2
    assert "needs a source checkout" in capsys.readouterr().err


def _fake_counting(monkeypatch, base_counts, measure_commit=None):
    """The gate's main with its counting replaced: this checkout counts
    COUNTS, the base ``base_counts`` (both on this runner's toolchain, so the
    base judges).  Returns the list of calls, in the order they began."""
    calls = []
    env = gate.toolchain()
    base_started = threading.Event()

    def measure_here(*args, **kwargs):
        calls.append("this checkout")
        # The base must be under way while this checkout is counted: wait
        # for it (bounded), as a sequential gate would never let it start.
        assert base_started.wait(timeout=30), "the base was not counted while this checkout was"
        return dict(COUNTS)

    def measure_base(repo, sha, gate_venv, workdir):
        calls.append("base")
        base_started.set()
        return {"sha": sha, "counts": base_counts, "toolchain": env}

    monkeypatch.setattr(gate, "measure", measure_here)
    monkeypatch.setattr(gate, "measure_commit", measure_commit or measure_base)
    monkeypatch.setattr(gate.GateVenv, "key", lambda self: env)
    monkeypatch.setattr(gate, "toolchain", lambda: env)
    return calls


@pytest.mark.skipif(gate.source_checkout() is None, reason="needs the git checkout")
@pytest.mark.parametrize("base_by, status", [(0, 0), (-0.5, 1)])  # this checkout at +0% / +100% vs its base
def test_the_base_is_counted_while_this_checkout_is_counted_and_then_cached(monkeypatch, tmp_path, base_by, status):
    calls = _fake_counting(monkeypatch, base_counts=worse(COUNTS, base_by))
    args = ["--base", "HEAD", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
            "--baseline", str(tmp_path / "no-committed-baseline.json")]  # only the base judges
    assert gate.main(args) == status
    assert sorted(calls) == ["base", "this checkout"]
    rows = json.loads((tmp_path / "out" / "gate.json").read_text())["verdict"]["rows"]
    assert {r["case"]: r["base"] for r in rows} == worse(COUNTS, base_by)
    assert {r["base_verdict"] for r in rows} == {"ok" if status == 0 else "REGRESSION"}
    # Cached: a second run counts only this checkout (the base never starts,
    # so this fake must not wait for it) and reaches the same verdict.
    monkeypatch.setattr(gate, "measure", lambda *a, **k: calls.append("this checkout") or dict(COUNTS))
    calls.clear()
    assert gate.main(args) == status and calls == ["this checkout"]


@pytest.mark.skipif(gate.source_checkout() is None, reason="needs the git checkout")
def test_a_base_that_fails_to_count_fails_the_gate(monkeypatch, tmp_path):
    def broken(repo, sha, gate_venv, workdir):
        raise RuntimeError("measuring the base failed (pip)")
    calls = _fake_counting(monkeypatch, base_counts=None, measure_commit=broken)
    monkeypatch.setattr(gate, "measure", lambda *a, **k: calls.append("this checkout") or dict(COUNTS))
    with pytest.raises(RuntimeError, match="measuring the base failed"):
        gate.main(["--base", "HEAD", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert calls == ["this checkout"] and not (tmp_path / "out").exists()  # no verdict written


@pytest.mark.skipif(gate.source_checkout() is None, reason="needs the git checkout")
def test_a_base_that_is_not_a_commit_fails_before_anything_is_counted(monkeypatch, tmp_path):
    calls = _fake_counting(monkeypatch, base_counts=COUNTS)
    with pytest.raises(ValueError, match="no-such-rev-anywhere"):
        gate.main(["--base", "no-such-rev-anywhere", "--cache", str(tmp_path / "cache"),
                   "--out", str(tmp_path / "out")])
    assert calls == []


@pytest.mark.skipif(gate.source_checkout() is None, reason="needs the git checkout")
def test_history_counts_each_commit_once_and_retries_one_that_failed(monkeypatch, tmp_path):
    env = gate.toolchain()
    counted, broken = [], {gate.resolve(gate.ROOT, "HEAD~1")}

    def measure(repo, sha, gate_venv, workdir):
        counted.append(sha)
        if sha in broken:
            raise RuntimeError("build failed")
        return {"sha": sha, "counts": COUNTS, "toolchain": env}
    monkeypatch.setattr(gate, "measure_commit", measure)
    monkeypatch.setattr(gate.GateVenv, "key", lambda self: env)
    cache, venv = gate.CountCache(tmp_path / "cache"), gate.GateVenv(tmp_path / "venv")
    first = gate.history(gate.ROOT, "HEAD~3..HEAD", cache, venv, tmp_path)
    assert len(counted) == 3 and [c.get("error") for c in first["commits"]] == [None, "build failed", None]
    counted.clear()
    broken.clear()
    second = gate.history(gate.ROOT, "HEAD~3..HEAD", cache, venv, tmp_path)
    assert counted == [gate.resolve(gate.ROOT, "HEAD~1")]  # only the one that failed is counted again
    assert all(c["counts"] == COUNTS for c in second["commits"])


@pytest.mark.skipif(gate.source_checkout() is None, reason="needs the git checkout (bench/ is not installed)")
@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v valgrind"], capture_output=True).returncode != 0,
                    reason="needs valgrind")
def test_kernel_counts_counts_each_kernel_call_of_a_reserve(tmp_path):
    # bench/kernel_counts.py end to end under callgrind, on 10k tracked orders:
    # one row per kernel call the facade made, then their sum, then the
    # tracked C loops on the same orders.
    script = gate.source_checkout() / "bench" / "kernel_counts.py"
    out = subprocess.run([sys.executable, str(script), "--workload", "flash-sale", "--scale", "0.001",
                          "--backends", "cython"], capture_output=True, text=True, timeout=600, check=True).stdout
    rows = {line.split()[0]: [float(x) for x in line.split()[-3:]] for line in out.splitlines()[1:]}
    assert "10,000 lines" in out.splitlines()[0]
    calls = {k: v for k, v in rows.items() if k.startswith("cython:") and k != "cython:"}
    assert {"cython:claim_and_reserve", "cython:settle_refused"} <= set(calls)
    instructions, loads, stores = rows["cython:"]  # "cython: every kernel call"
    assert instructions == pytest.approx(sum(v[0] for v in calls.values()), abs=0.2)
    assert instructions > loads > 0 and stores > 0
    assert {"C:seq_tracked_single", "C:cas_tracked_single"} <= set(rows)
    for c_instructions, c_loads, c_stores in (rows["C:seq_tracked_single"], rows["C:cas_tracked_single"]):
        assert c_instructions > c_loads > 0 and c_stores > 0
