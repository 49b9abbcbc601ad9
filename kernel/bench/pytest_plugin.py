"""pytest plugin (loaded by ``-p kernel.bench.pytest_plugin`` in pyproject's
addopts): ``pytest --benchmark`` runs the benchmark suite in ``bench/`` for
real, on the machine at hand; a plain ``pytest`` runs it as a fast smoke check
(tiny workloads, each timed function run once, invariants still checked).

All of pytest-benchmark's own options keep working (``--benchmark-json``,
``--benchmark-compare``, ``--benchmark-histogram``, ...).
"""

import pytest

from .peaks import PEAK_2009, PEAK_2020, SOURCE

SMOKE_SCALE = 0.0005
_results = []


def pytest_addoption(parser):
    group = parser.getgroup("kernel benchmarks")
    group.addoption("--benchmark", action="store_true", default=False,
                    help="run the kernel benchmark suite (bench/) for real; without it the benchmarks "
                         "run once each on tiny workloads as a smoke check")
    group.addoption("--bench-scale", type=float, default=0.1,
                    help="workload size with --benchmark (1.0 = 10M orders; default 0.1)")
    group.addoption("--bench-rounds", type=int, default=5, help="timed rounds per benchmark (default 5)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Runs before pytest-benchmark builds its session from the options.
    if not config.getoption("benchmark") and hasattr(config.option, "benchmark_disable"):
        config.option.benchmark_disable = True


@pytest.fixture(scope="session")
def bench_settings(request):
    """``(scale, rounds, real)`` for the benchmark suite."""
    config = request.config
    if config.getoption("benchmark"):
        return config.getoption("bench_scale"), config.getoption("bench_rounds"), True
    return SMOKE_SCALE, 1, False


def record(row):
    """Remember one benchmark's figures for the terminal summary."""
    _results.append(row)


def pytest_terminal_summary(terminalreporter, config):
    if not _results or not config.getoption("benchmark"):
        return
    tr = terminalreporter
    tr.section("Double 11 peak ratios (accepted orders/s, median round)")
    tr.write_line(f"{'workload':<12} {'backend':<9} {'mode':<10} {'thr':>3} {'decided/s':>12} "
                  f"{'accepted/s':>12} {'x 2020 peak':>11} {'x 2009 peak':>12}")
    for r in _results:
        tr.write_line(f"{r['workload']:<12} {r['backend']:<9} {r['mode']:<10} {r['threads']:>3} "
                      f"{r['orders_per_s']:>12,.0f} {r['accepted_per_s']:>12,.0f} "
                      f"{r['accepted_per_s'] / PEAK_2020:>10.2f}x {r['accepted_per_s'] / PEAK_2009:>11,.0f}x")
    tr.write_line(f"2020 peak {PEAK_2020:,}/s, 2009 peak {PEAK_2009:,.0f}/s. {SOURCE}")
