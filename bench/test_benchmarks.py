"""The pytest-benchmark suite: every workload x backend x mode x threads,
driven by the same registries as the CLI (``kernel.bench.workloads.WORKLOADS``,
``kernel.backends.BACKENDS``).

    pytest --benchmark                      # real run (scale 0.1 = 1M orders)
    pytest --benchmark --bench-scale 1.0 --benchmark-json out.json

Each timed round starts from a fresh inventory (made outside the timer) and
is checked for no oversell, conservation and all-or-nothing before the next
one; a wrong result fails the benchmark.  The hand-written C loops
(``kernel.bench.cloops``) and, with ``--benchmark``, the peers
(``kernel.bench.peers``, where installed) run first, so each kernel
benchmark's ``extra_info`` carries its ratio to the best C loop and to
Redis+Lua, in the same schema as ``results.json``.
"""

import functools

import pytest

from kernel.backends import BACKENDS, default_threads
from kernel.bench import cloops, peers, servers, single
from kernel.bench.pytest_plugin import as_run, record, recorded
from kernel.bench.report import c_ratio, peer_of
from kernel.bench.runner import MODES, REFERENCE_MAX_ORDERS, Measurement
from kernel.bench.workloads import WORKLOADS, make_case
from kernel.invariants import check_run, check_tracked

THREADS = sorted({1, *range(2, default_threads() + 1)})


@functools.lru_cache(maxsize=2)
def cached_case(workload, scale):
    return make_case(workload, scale)


def _c_cells():
    for workload in WORKLOADS:
        case = make_case(workload, 1e-4)
        for loop in cloops.loops_for(case):
            for threads in (THREADS if loop.parallel else [1]):
                yield pytest.param(workload, loop, threads, id=f"{workload}-{loop.function}-{threads}thr")


@pytest.mark.parametrize("workload,loop,threads", list(_c_cells()))
def test_c_loop(benchmark, bench_settings, workload, loop, threads):
    """A hand-written C loop on the same data as the kernels, checked after
    every round (no oversell, conservation, all-or-nothing)."""
    lib, note = cloops.load()
    if lib is None:
        pytest.skip(note)
    scale, rounds, real = bench_settings
    case = cached_case(workload, scale)
    cell = cloops.cell(lib, loop, case, threads)
    stocks = []

    def setup():
        if stocks:
            cell.check(stocks[-1])
        stocks.append(case.stock.copy())
        cell.fresh()  # zeroed tables / fill slots, untimed (as the kernels' fresh inventory)
        return (stocks[-1],), {}

    benchmark.group = workload
    benchmark.pedantic(cell.call, setup=setup, rounds=rounds, warmup_rounds=1 if real else 0, iterations=1)
    cell.check(stocks[-1])
    if benchmark.stats is None:
        return
    m = Measurement(workload, loop.name, loop.modes[0], threads, case.n_orders, cell.accepted,
                    list(benchmark.stats.stats.data), kind="c", modes_met=list(loop.modes)).as_dict()
    benchmark.extra_info.update(m)
    record(m)


@pytest.fixture(scope="module", params=list(peers.PEERS))
def peer_server(request, bench_settings):
    if not bench_settings[2]:
        pytest.skip("peers are measured with --benchmark only (tests/test_bench_peers.py tests them)")
    ok, why = (servers.redis_available if request.param == "redis" else servers.postgres_available)()
    if not ok:
        pytest.skip(why)
    with (servers.RedisServer() if request.param == "redis" else servers.PostgresServer()) as server:
        yield request.param, server


@pytest.mark.parametrize("workload,mode", peers.PEER_SHAPES, ids=lambda x: x)
def test_peer(benchmark, bench_settings, peer_server, workload, mode):
    """The same shape through Redis+Lua / PostgreSQL (checked in the run)."""
    scale, rounds, _ = bench_settings
    name, server = peer_server
    case = peers.peer_case(workload, mode, name, scale, 0)
    run = peers.redis_run if name == "redis" else peers.postgres_run
    results = []
    benchmark.group = workload
    benchmark.pedantic(lambda: results.append(run(server, case, mode, 1)), rounds=min(rounds, 3), iterations=1)
    seconds = [r[0][0] for r in results]
    m = Measurement(workload, peers.PEERS[name], mode, 1, case.n_orders, int(results[-1][1].sum()), seconds,
                    kind="peer", threads_label="1 client",
                    modes_met=["ordered", "concurrent"] if mode == "ordered" else ["tracked"],
                    note=f"{case.n_orders:,} orders; {server.settings}").as_dict()
    benchmark.extra_info.update(m)
    record(m)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_reserve(benchmark, bench_settings, workload, backend, mode, threads):
    scale, rounds, real = bench_settings
    case = cached_case(workload, scale)
    if backend == "reference" and (case.n_orders > REFERENCE_MAX_ORDERS or threads > 1):
        pytest.skip("the pure-Python reference is the oracle, not a contender, at this size")
    benchmark.group = workload
    ordered, tracked = mode == "ordered", mode == "tracked"
    orders = case.tracked_orders() if tracked else case.orders
    runs = []

    def check_previous():
        if runs:
            check_run(*runs[-1])
            if tracked:
                check_tracked(runs[-1][0], runs[-1][3])

    def setup():
        check_previous()
        inv = case.inventory(backend, threads, tracked=tracked)
        runs.append([inv, orders, None, inv.stock.copy()])
        return (inv,), {}

    def reserve(inv):
        runs[-1][2] = inv.reserve(orders, ordered=ordered)

    benchmark.pedantic(reserve, setup=setup, rounds=rounds, warmup_rounds=1 if real else 0, iterations=1)
    check_previous()
    result = runs[-1][2]
    assert result.status.size == case.n_orders
    if benchmark.stats is None:  # smoke run: nothing was timed
        return
    m = Measurement(workload, backend, mode, threads, case.n_orders, result.n_accepted,
                    list(benchmark.stats.stats.data), ran_on=result.threads).as_dict()
    run = as_run(recorded() + [m])
    redis = peer_of(run, workload, "Redis+Lua", mode)
    m.update(x_best_c=c_ratio(run, m), x_redis_lua=None if redis is None else m["accepted_per_s"] /
             redis["accepted_per_s"])
    benchmark.extra_info.update(m)
    record(m)


@pytest.mark.parametrize("variant", single.VARIANTS)
@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != "reference"])
def test_reserve_one(benchmark, bench_settings, backend, variant):
    """Nanoseconds per single-order call from Python (see kernel.bench.single)."""
    scale, rounds, real = bench_settings
    calls = max(100, int(2_000_000 * scale))  # 200k calls at the default --bench-scale 0.1
    benchmark.group = "reserve_one"
    made = []

    def setup():
        if made:
            single.check(made[-1], calls)
        inv, loop = single.prepare(backend, calls, variant)
        made.append(inv)
        return (loop,), {}

    benchmark.pedantic(lambda loop: loop(), setup=setup, rounds=rounds, warmup_rounds=1 if real else 0, iterations=1)
    single.check(made[-1], calls)
    if benchmark.stats is not None:
        benchmark.extra_info["ns_per_call"] = benchmark.stats.stats.median / calls * 1e9


@pytest.mark.parametrize("fsync", ["batch", "interval", "none"])
@pytest.mark.parametrize("workload", ["uniform", "flash-sale"])
def test_reserve_durable(benchmark, bench_settings, workload, fsync):
    """Tracked orders in batches of 10,000 through a durable inventory's
    journal (kernel.journal.bench.durable_round; each round checked).  The
    pytest-benchmark time includes making and removing the journal; the
    recorded orders/s counts only the reserve calls."""
    from kernel.journal.bench import durable_round

    scale, rounds, real = bench_settings
    case = cached_case(workload, scale)
    benchmark.group = f"{workload} durable"
    runs = []
    benchmark.pedantic(lambda: runs.append(durable_round(case, fsync=fsync)), rounds=rounds,
                       warmup_rounds=1 if real else 0, iterations=1)
    if benchmark.stats is None:
        return
    seconds, accepted, threads, stats = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    row = dict(workload=workload, backend="auto", mode=f"durable-{fsync}", threads=threads, orders=case.n_orders,
               accepted=accepted, orders_per_s=case.n_orders / seconds, accepted_per_s=accepted / seconds)
    row["x_2020_peak"], row["x_2009_peak"] = peak_ratios(row["accepted_per_s"])
    benchmark.extra_info.update(row, fsyncs=stats["fsyncs"], fsync_seconds=stats["fsync_seconds"])
    record(row)
