"""pytest plugin (loaded by ``-p kernel.bench.pytest_plugin`` in pyproject's
addopts): ``pytest --benchmark`` runs the benchmark suite in ``bench/`` for
real, on the machine at hand; a plain ``pytest`` runs it as a fast smoke check
(tiny workloads, each timed function run once, invariants still checked).

All of pytest-benchmark's own options keep working (``--benchmark-json``,
``--benchmark-compare``, ``--benchmark-histogram``, ...).

Every timed test records a measurement in the schema of ``results.json``
(:meth:`kernel.bench.runner.Measurement.as_dict`, also put in the
benchmark's ``extra_info``); at the end the terminal summary prints the
same summary table as ``python -m kernel.bench`` (best accepted orders/s per
backend and mode, ratio to the best C loop, to the peers and to the Double
11 peaks) from them.
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
    """Remember one benchmark's measurement (a ``Measurement.as_dict()``)."""
    _results.append(row)


def recorded():
    return list(_results)


def as_run(rows):
    """The recorded measurements as a run dict for :mod:`kernel.bench.report`."""
    kernel = [r for r in rows if r["kind"] == "kernel"]
    order = lambda key, src: list(dict.fromkeys(r[key] for r in src))  # noqa: E731
    return {"config": {"workloads": order("workload", rows), "modes": order("mode", kernel),
                       "backends": order("backend", kernel)},
            "measurements": rows, "peaks": {"2020": PEAK_2020, "2009": PEAK_2009, "source": SOURCE},
            "warnings": []}


def pytest_terminal_summary(terminalreporter, config):
    if not _results or not config.getoption("benchmark"):
        return
    from .report import summary_text
    tr = terminalreporter
    tr.section("kernel benchmark summary (same table as python -m kernel.bench)")
    for line in summary_text(as_run(_results)).splitlines():
        tr.write_line(line)
    tr.write_line(f"2020 peak {PEAK_2020:,}/s, 2009 peak {PEAK_2009:,.0f}/s. {SOURCE}")
    tr.write_line("pytest-benchmark times one call per round (no calibration to 100 ms rounds, no interleaving): "
                  "python -m kernel.bench is the better-controlled run.")
