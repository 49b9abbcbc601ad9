"""The peers: real Redis and PostgreSQL servers started from the system's
packages, stopped by pid even when a test fails, every run checked.

Each test runs under an alarm (a hung server fails the test instead of
hanging CI); the servers' own start-up and client timeouts bound the rest.
Tests of a peer that is not installed skip with the install hint.
"""

import os
import signal

import numpy as np
import pytest

from kernel.bench import peers, servers
from kernel.bench.workloads import make_case
from kernel.invariants import InvariantViolation

REDIS_OK, REDIS_WHY = servers.redis_available()
PG_OK, PG_WHY = servers.postgres_available()
needs_redis = pytest.mark.skipif(not REDIS_OK, reason=REDIS_WHY)
needs_pg = pytest.mark.skipif(not PG_OK, reason=PG_WHY)
SHAPES = [("uniform", "ordered"), ("flash-sale", "ordered"), ("carts", "ordered"), ("flash-sale", "tracked")]


@pytest.fixture(autouse=True)
def alarm():
    def expired(*_):
        raise TimeoutError("peer test ran over 120 s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of ours would still answer: it must have been reaped by wait().
    return False


def _small(workload, mode, n=2000):
    full = make_case(workload, 1e-4).n_orders / 1e-4
    return make_case(workload, n / full)


def _serve(installed, why, server_class):
    """One server for the module; afterwards its process and directory are gone."""
    if not installed:
        pytest.skip(why)
    with server_class() as server:
        yield server
    assert _gone(server.pid) and server.dir is None


@pytest.fixture(scope="module")
def redis():
    yield from _serve(REDIS_OK, REDIS_WHY, servers.RedisServer)


@pytest.fixture(scope="module")
def postgres():
    yield from _serve(PG_OK, PG_WHY, servers.PostgresServer)


@needs_redis
@pytest.mark.parametrize("workload,mode", SHAPES)
def test_redis_runs_are_checked(redis, workload, mode):
    """Lua per order/cart: no oversell, conservation, the cap, and exactly the
    orders the kernel's ordered mode accepts (checked inside redis_run)."""
    case = _small(workload, mode)
    round_times, accepted = peers.redis_run(redis, case, mode, rounds=2)
    # One entry per round asked for, one decision per order (the times
    # themselves are never asserted: speed is the benchmark's business).
    assert len(round_times) == 2 and accepted.shape == (case.n_orders,)
    if workload == "flash-sale":
        assert 0 < accepted.sum() < case.n_orders  # oversubscribed: some refused


@needs_pg
@pytest.mark.parametrize("workload,mode", SHAPES)
def test_postgres_runs_are_checked(postgres, workload, mode):
    case = _small(workload, mode, n=300)
    round_times, accepted = peers.postgres_run(postgres, case, mode, rounds=1)
    assert len(round_times) == 1 and accepted.shape == (case.n_orders,)  # one round, one decision per order


def test_a_wrong_peer_result_is_an_error():
    case = _small("flash-sale", "ordered", n=100)
    accepted = np.zeros(case.n_orders, bool)
    accepted[: int(case.stock[0]) + 1] = True  # one unit more than there is
    with pytest.raises(InvariantViolation):
        peers.check_peer(case, "ordered", case.stock - int(case.stock[0]) - 1, accepted, "test")
    accepted = np.zeros(case.n_orders, bool)
    with pytest.raises(InvariantViolation, match="arrival order"):  # sold nothing: conserved, but wrong
        peers.check_peer(case, "ordered", case.stock.copy(), accepted, "test")


@needs_redis
def test_redis_stopped_by_pid_when_the_caller_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with servers.RedisServer() as server:
            pid, folder = server.pid, server.dir
            raise RuntimeError("boom")
    assert _gone(pid) and not os.path.exists(folder)


@needs_redis
def test_redis_durability_is_a_parameter():
    with servers.RedisServer(appendonly=True, appendfsync="always") as server:
        with server.client(timeout=10) as c:
            assert c.call("CONFIG", "GET", "appendfsync") == ["appendfsync", "always"]
            assert c.call("CONFIG", "GET", "appendonly") == ["appendonly", "yes"]
        assert "appendfsync always" in server.settings
    with pytest.raises(ValueError):
        servers.RedisServer(appendfsync="sometimes")


@needs_pg
def test_postgres_durability_is_a_parameter():
    with servers.PostgresServer(fsync=True, synchronous_commit="on") as server:
        pid = server.pid
        conn = server.connect()
        try:
            cur = conn.cursor()
            cur.execute("SHOW fsync")
            assert cur.fetchone()[0] == "on"
            cur.execute("SHOW synchronous_commit")
            assert cur.fetchone()[0] == "on"
        finally:
            conn.close()
    assert _gone(pid)


def test_missing_peer_says_how_to_install(monkeypatch):
    monkeypatch.setattr(servers, "redis_available", lambda: (False, "redis-server not found: " + servers.REDIS_INSTALL))
    monkeypatch.setitem(peers._RUNS, "redis", (servers.redis_available, *peers._RUNS["redis"][1:]))
    out = peers.measure_peers(["redis"], ["uniform"], ["concurrent"], 0.001)
    assert out["measurements"] == []
    assert not out["status"]["redis"]["ran"] and "apt-get install redis-server" in out["status"]["redis"]["note"]


@needs_redis
def test_measure_peers_rows(monkeypatch):
    monkeypatch.setitem(peers.PEER_ORDERS, "redis", {"ordered": 1000, "tracked": 1000})
    out = peers.measure_peers(["redis"], ["uniform", "flash-sale"], ["concurrent", "tracked"], 0.1, rounds=1)
    got = {(m["workload"], m["mode"]) for m in out["measurements"]}
    assert got == {("uniform", "ordered"), ("flash-sale", "ordered"), ("flash-sale", "tracked")}
    assert all(m["kind"] == "peer" and m["backend"] == "Redis+Lua" for m in out["measurements"])
    assert out["status"]["redis"]["ran"]
