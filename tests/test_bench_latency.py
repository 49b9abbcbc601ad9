"""Latency measurement and the C loop registry: what is recorded is what
happened (counts, checks, bounded histogram error); no timing asserts."""

import numpy as np
import pytest

from kernel.bench import cloops, latency
from kernel.bench.latency import Histogram
from kernel.bench.workloads import make_case
from kernel.invariants import InvariantViolation


def test_histogram_error_is_bounded():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.arange(0, 3000), rng.integers(0, 10**11, 20_000),
                             [2**k - 1 for k in range(1, 40)], [2**k for k in range(1, 40)]])
    buckets = Histogram.bucket_of(values)
    upper = np.array([Histogram.value_of(b) for b in buckets])
    assert np.all(upper >= values) and np.all(upper - values <= values / 128)
    h = Histogram().record(values)
    assert h.count == values.size and h.max == values.max()
    for p in (50, 90, 99, 99.9):
        exact = np.percentile(values, p, method="inverted_cdf")
        assert exact <= h.percentile(p) <= exact * (1 + 1 / 128) + 1


def test_histogram_merge_and_summary():
    a, b = Histogram().record([100] * 99), Histogram().record([10_000])
    merged = Histogram(a.counts).merge(b)
    s = merged.summary()
    assert s["count"] == 100 and s["p50"] == 100 and s["max"] >= 10_000
    assert "p99.99" not in s and "p99" in s  # p99.99 needs 10,000 samples, p99 100
    assert "p99.9" in Histogram().record(np.arange(1000)).summary()
    again = Histogram({int(k): v for k, v in merged.as_dict()["counts"].items()})
    assert again.count == 100


@pytest.mark.parametrize("threads", [1, 2])
def test_reserve_one_closed_loop_counts_every_call(threads):
    out = latency.reserve_one_latency("cython", calls=2000, threads=threads)
    assert out["histogram"]["count"] == 2000 and out["threads"] == threads
    assert out["histogram"]["p50"] <= out["histogram"]["max"]


def test_open_loop_measures_from_the_intended_send_time():
    out = latency.open_loop_latency("cython", rate=20_000, calls=1000)
    assert out["histogram"]["count"] == 1000 and out["offered_per_s"] == 20_000
    # Sent on schedule (or late, never early): the run lasts at least calls / rate.
    assert out["achieved_per_s"] <= 20_000 * 1.01


@pytest.mark.parametrize("workload", ["uniform", "carts", "marketplace"])
@pytest.mark.parametrize("mode", ["concurrent", "tracked"])
def test_batch_latency_checks_every_batch(workload, mode):
    case = make_case(workload, 0.0005)
    out = latency.batch_latency(case, "cython", mode, batch_orders=200, max_batches=10)
    assert out["histogram"]["count"] == out["batches"] == min(10, case.n_orders // 200)


def test_every_c_loop_is_in_the_library():
    lib, note = cloops.load()
    if lib is None:
        pytest.skip(note)
    for loop in cloops.C_LOOPS:
        assert hasattr(lib, loop.function), loop
        assert loop.shape in ("single", "carts", "general") and loop.modes
    assert {loop.shape for loop in cloops.loops_for(make_case("carts", 0.0005))} == {"carts"}
    # Offers and prices: the general loops, the tracked ones included.
    market = cloops.loops_for(make_case("marketplace", 0.0005))
    assert {loop.shape for loop in market} == {"general"}
    assert {loop.function for loop in market if loop.tracked} == {"seq_tracked_general", "cas_tracked_general"}


def test_a_wrong_c_result_is_an_error():
    lib, note = cloops.load()
    if lib is None:
        pytest.skip(note)
    case = make_case("carts", 0.0005)
    cell = cloops.CCell(lib, next(c for c in cloops.C_LOOPS if c.function == "seq_carts"), case, 1)
    cell.run()
    stock = case.stock.copy()
    taken = np.bincount(case.orders.sku, weights=np.where((cell.status == 0)[case.orders.line_order],
                                                          case.orders.qty, 0), minlength=stock.size)
    stock -= taken.astype(np.int64)
    cell.check(stock)  # the right stock passes
    stock[0] += 1
    with pytest.raises(InvariantViolation, match="conservation"):
        cell.check(stock)


def test_no_compiler_is_a_clear_note(monkeypatch):
    monkeypatch.setattr(cloops, "_LOADED", {})
    monkeypatch.setenv("CC", "no-such-compiler-here")
    lib, note = cloops.load()
    assert lib is None and "no C compiler" in note and "install gcc" in note
