"""The pytest-benchmark suite: every workload x backend x mode x threads,
driven by the same registries as the CLI (``kernel.bench.workloads.WORKLOADS``,
``kernel.backends.BACKENDS``).

    pytest --benchmark                      # real run (scale 0.1 = 1M orders)
    pytest --benchmark --bench-scale 1.0 --benchmark-json out.json

Each timed round starts from a fresh inventory (made outside the timer) and
is checked for no oversell, conservation and all-or-nothing before the next
one; a wrong result fails the benchmark.
"""

import functools

import pytest

from kernel.backends import BACKENDS, default_threads
from kernel.bench.peaks import peak_ratios
from kernel.bench.pytest_plugin import record
from kernel.bench.runner import REFERENCE_MAX_ORDERS
from kernel.bench.workloads import WORKLOADS, make_case
from kernel.invariants import check_run

THREADS = sorted({1, *range(2, default_threads() + 1)})


@functools.lru_cache(maxsize=2)
def cached_case(workload, scale):
    return make_case(workload, scale)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("mode", ["concurrent", "ordered"])
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_reserve(benchmark, bench_settings, workload, backend, mode, threads):
    scale, rounds, real = bench_settings
    case = cached_case(workload, scale)
    if backend == "reference" and (case.n_orders > REFERENCE_MAX_ORDERS or threads > 1):
        pytest.skip("the pure-Python reference is the oracle, not a contender, at this size")
    benchmark.group = workload
    ordered = mode == "ordered"
    runs = []

    def check_previous():
        if runs:
            check_run(*runs[-1])

    def setup():
        check_previous()
        inv = case.inventory(backend, threads)
        runs.append([inv, case.orders, None, inv.stock.copy()])
        return (inv,), {}

    def reserve(inv):
        runs[-1][2] = inv.reserve(case.orders, ordered=ordered)

    benchmark.pedantic(reserve, setup=setup, rounds=rounds, warmup_rounds=1 if real else 0, iterations=1)
    check_previous()
    result = runs[-1][2]
    assert result.status.size == case.n_orders
    if benchmark.stats is None:  # smoke run: nothing was timed
        return
    median = benchmark.stats.stats.median
    row = dict(workload=workload, backend=backend, mode=mode, threads=threads, orders=case.n_orders,
               accepted=result.n_accepted, orders_per_s=case.n_orders / median,
               accepted_per_s=result.n_accepted / median)
    row["x_2020_peak"], row["x_2009_peak"] = peak_ratios(row["accepted_per_s"])
    benchmark.extra_info.update(row)
    record(row)
