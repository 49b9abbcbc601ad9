"""A bounded load generator for examples/flash_sale_service.py.

Sends ``--requests`` orders (POST /reserve) over ``--concurrency`` keep-alive
connections on 127.0.0.1, one request in flight per connection, then prints
a table (requests, orders/s, accepted, refused, duplicates, latency
percentiles) and checks the service against what it was told:

* no oversell: every SKU's remaining stock is >= 0 and the units it lost
  during the run equal the units this generator was told were ACCEPTED,
  minus those it cancelled (``initial - remaining == accepted`` on a fresh
  service);
* the per-user cap: no user holds more units of a capped SKU than allowed;
* idempotency: every retried order id answered DUPLICATE and no fresh one did.

It exits 1 if a check fails.  Workload: one hot SKU (most requests) and a few
normal ones; user ids drawn at random from ``--users``; each order a fresh
id, except ``--retry-fraction`` of requests that resend an order already
answered (same id, so the service must say DUPLICATE); after an ACCEPTED
order, ``--confirm-fraction`` of them are confirmed and ``--cancel-fraction``
cancelled (POST /confirm, /cancel on the same connection).

    python examples/load_generator.py --port 8080 --requests 50000 --concurrency 64

Only the standard library and numpy: the client is a small asyncio protocol.
``--procs P`` splits the connections over P client processes, for servers
that one Python client cannot saturate.
"""

import argparse
import asyncio
import json
import math
import multiprocessing
import sys
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor

import numpy as np

STATUSES = ["ACCEPTED", "OUT_OF_STOCK", "DUPLICATE", "LIMIT_EXCEEDED", "CANCELLED"]
CODE = {name: code for code, name in enumerate(STATUSES)}
ACCEPTED, DUPLICATE = CODE["ACCEPTED"], CODE["DUPLICATE"]
FAILED = len(STATUSES)  # not an answer: HTTP error


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--requests", type=int, default=10_000, help="orders to send (default 10000)")
    p.add_argument("--concurrency", type=int, default=64, help="keep-alive connections (default 64)")
    p.add_argument("--procs", type=int, default=1, help="client processes sharing the connections (default 1)")
    p.add_argument("--hot-fraction", type=float, default=0.5, help="share of orders for the hot SKU")
    p.add_argument("--users", type=int, default=None, help="user ids 1..USERS (default: requests // 2)")
    p.add_argument("--retry-fraction", type=float, default=0.05, help="share of requests that resend an old id")
    p.add_argument("--confirm-fraction", type=float, default=0.3, help="share of accepted orders confirmed")
    p.add_argument("--cancel-fraction", type=float, default=0.0, help="share of accepted orders cancelled")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--id-base", type=int, default=None,
                   help="first order id - 1 (default: from the clock, so reruns never collide)")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.procs < 1:
        p.error("--requests, --concurrency and --procs must be >= 1")
    if args.confirm_fraction + args.cancel_fraction > 1:
        p.error("--confirm-fraction + --cancel-fraction must be <= 1")
    args.users = args.users or max(1, args.requests // 2)
    args.concurrency = max(args.concurrency, args.procs)
    if args.id_base is None:  # 2**24 ids per millisecond of the clock, below 2**54
        args.id_base = (time.time_ns() // 1_000_000 % (1 << 30)) << 24
    return args


def get_stats(host, port):
    with urllib.request.urlopen(f"http://{host}:{port}/stats", timeout=10) as response:
        return json.load(response)


# ------------------------------------------------------------------ client
class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight."""

    def __init__(self, host):
        self.host = host.encode()
        self.buf = bytearray()
        self.waiter = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return  # the body is still on its way
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        self.waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"server closed the connection ({exc})"))

    async def post(self, path, body):
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (path, self.host, len(body), body))
        return await self.waiter


def workload(args, lo, hi):
    """Orders ``lo..hi-1`` of the seeded run: (sku, user, is_retry, retry
    pick, follow-up draw); the same orders whatever ``--procs`` says."""
    rng = np.random.default_rng(args.seed)
    n = args.requests
    normal = np.array([s for s in range(args.n_skus) if s != args.hot_sku] or [args.hot_sku])
    hot = rng.random(n) < args.hot_fraction
    sku = np.where(hot, args.hot_sku, normal[rng.integers(0, normal.size, n)])
    user = rng.integers(1, args.users + 1, n)
    retry = rng.random(n) < args.retry_fraction
    pick, follow = rng.integers(0, 1 << 62, n), rng.random(n)
    return sku[lo:hi], user[lo:hi], retry[lo:hi], pick[lo:hi], follow[lo:hi]


async def run_orders(args, lo, hi, concurrency, barrier=None):
    """Send orders ``lo..hi-1`` over ``concurrency`` connections; return
    per-order arrays and the wall-clock window."""
    loop = asyncio.get_running_loop()
    sku, user, retry, pick, follow = workload(args, lo, hi)
    n = hi - lo
    status = np.full(n, -1, dtype=np.int8)
    latency_ns = np.zeros(n, dtype=np.int64)
    was_retry = np.zeros(n, dtype=bool)
    settled = np.zeros(n, dtype=np.int8)  # 1: confirmed (DONE), 2: cancelled (DONE), -1: a settle failed
    answered = []  # indices of fresh orders already answered: what a retry resends
    next_order = [0]

    async def one_connection(conn):
        while next_order[0] < n:
            i = next_order[0]
            next_order[0] += 1
            j = i
            if retry[i] and answered:  # resend an answered order: same id, user, SKU
                j = answered[pick[i] % len(answered)]
                was_retry[i] = True
            oid = args.id_base + lo + j + 1
            body = b'{"order_id": %d, "user_id": %d, "sku": %d, "qty": 1}' % (oid, user[j], sku[j])
            status[i] = FAILED  # until answered
            try:
                t0 = time.perf_counter_ns()
                code, answer = await conn.post(b"/reserve", body)
                latency_ns[i] = time.perf_counter_ns() - t0
                if code == 200:
                    status[i] = CODE[json.loads(answer)["status"]]
                if was_retry[i] or status[i] == FAILED:
                    continue
                answered.append(i)
                if status[i] == ACCEPTED and follow[i] < args.confirm_fraction + args.cancel_fraction:
                    confirm = follow[i] < args.confirm_fraction
                    settled[i] = -1  # until DONE
                    code, answer = await conn.post(b"/confirm" if confirm else b"/cancel", b'{"order_id": %d}' % oid)
                    if code == 200 and json.loads(answer)["outcome"] == "DONE":
                        settled[i] = 1 if confirm else 2
            except ConnectionError as exc:  # the other connections carry on with the remaining orders
                print(f"load generator: a connection failed: {exc}", file=sys.stderr)
                return

    connections = []
    for _ in range(concurrency):
        _, conn = await loop.create_connection(lambda: Connection(args.host), args.host, args.port)
        connections.append(conn)
    if barrier is not None:  # every client process connected: start together
        await loop.run_in_executor(None, barrier.wait)
    start = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes on Linux
    await asyncio.gather(*(one_connection(c) for c in connections))
    end = time.perf_counter_ns()
    for conn in connections:
        conn.transport.close()
    return dict(sku=sku, user=user, status=status, latency_ns=latency_ns, was_retry=was_retry, settled=settled,
                start=start, end=end)


_barrier = None


def _init_process(barrier):
    global _barrier
    _barrier = barrier


def _run_part(args, lo, hi, concurrency):
    return asyncio.run(run_orders(args, lo, hi, concurrency, _barrier))


def run_all(args):
    """All orders, over ``--procs`` client processes; the parts merged."""
    if args.procs == 1:
        parts = [asyncio.run(run_orders(args, 0, args.requests, args.concurrency))]
    else:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(args.procs)
        bounds = np.linspace(0, args.requests, args.procs + 1).astype(int)
        conns = np.diff(np.linspace(0, args.concurrency, args.procs + 1).astype(int))
        with ProcessPoolExecutor(args.procs, mp_context=ctx, initializer=_init_process,
                                 initargs=(barrier,)) as pool:
            futures = [pool.submit(_run_part, args, bounds[k], bounds[k + 1], conns[k]) for k in range(args.procs)]
            parts = [f.result() for f in futures]
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0] if key not in ("start", "end")}
    merged["elapsed_s"] = (max(p["end"] for p in parts) - min(p["start"] for p in parts)) / 1e9
    return merged


# ------------------------------------------------------------ report/check
def percentile_ms(latency_ns, q):
    return float(np.percentile(latency_ns, q)) / 1e6 if latency_ns.size else math.nan


def report(args, run, before, after):
    """The summary dict, and the list of failed checks."""
    status, sku, user, was_retry, settled = run["status"], run["sku"], run["user"], run["was_retry"], run["settled"]
    count = {name: int(np.count_nonzero(status == code)) for name, code in CODE.items()}
    fresh = ~was_retry
    extra = int(np.count_nonzero(settled != 0))  # confirm / cancel requests
    elapsed = run["elapsed_s"]
    lat = run["latency_ns"]
    summary = {
        "requests": int(status.size), "concurrency": args.concurrency, "procs": args.procs,
        "workers": after["workers"], "backend": after["backend"], "elapsed_s": round(elapsed, 3),
        "orders_per_s": round(status.size / elapsed, 1),
        "http_requests_per_s": round((status.size + extra) / elapsed, 1),
        "accepted": count["ACCEPTED"], "out_of_stock": count["OUT_OF_STOCK"],
        "limit_exceeded": count["LIMIT_EXCEEDED"], "refused": count["OUT_OF_STOCK"] + count["LIMIT_EXCEEDED"],
        "duplicates": count["DUPLICATE"], "cancelled": count["CANCELLED"],
        "errors": int(np.count_nonzero((status == FAILED) | (status < 0))),
        "retries": int(np.count_nonzero(was_retry)),
        "confirmed": int(np.count_nonzero(settled == 1)), "cancels_done": int(np.count_nonzero(settled == 2)),
        "p50_ms": round(percentile_ms(lat, 50), 3), "p99_ms": round(percentile_ms(lat, 99), 3),
        "p999_ms": round(percentile_ms(lat, 99.9), 3), "max_ms": round(float(lat.max()) / 1e6, 3),
    }
    failures = []
    if summary["errors"]:
        failures.append(f"{summary['errors']} orders got no answer (HTTP status != 200, or connection lost)")
    if np.count_nonzero(settled == -1):
        failures.append(f"{np.count_nonzero(settled == -1)} confirm/cancel of an accepted order did not answer DONE")
    # Idempotency: a resent id must answer DUPLICATE, a fresh id never.
    if np.any(status[was_retry] != DUPLICATE):
        failures.append(f"{np.count_nonzero(status[was_retry] != DUPLICATE)} retried ids were not DUPLICATE")
    if np.any(status[fresh] == DUPLICATE):
        failures.append(f"{np.count_nonzero(status[fresh] == DUPLICATE)} fresh ids answered DUPLICATE")
    # Units each SKU should have lost: accepted fresh orders, less those cancelled.
    holds = fresh & (status == ACCEPTED) & (settled != 2)
    n_skus = len(after["stock"])
    held_units = np.bincount(sku[holds], minlength=n_skus)
    initial = np.array(after["initial"])
    lost = np.array(before["stock"]) - np.array(after["stock"])
    remaining = np.array(after["stock"])
    summary["skus"] = [{"sku": s, "initial": int(initial[s]), "before": int(before["stock"][s]),
                        "remaining": int(remaining[s]), "sold_in_run": int(lost[s]),
                        "accepted_units": int(held_units[s])} for s in range(n_skus)]
    if np.any(remaining < 0):
        failures.append(f"OVERSELL: negative stock {remaining.tolist()}")
    if np.any(initial - remaining < 0):
        failures.append(f"stock above its initial level: {remaining.tolist()} > {initial.tolist()}")
    for s in np.flatnonzero(lost != held_units):
        failures.append(f"SKU {s}: the service lost {lost[s]} units during the run but accepted {held_units[s]} "
                        f"(another client, or a hold expired?)")
    # Per-user caps: units each user holds of each capped SKU.
    summary["max_units_per_user"] = {}
    for s, cap in enumerate(after["limits"]):
        if cap is None:
            continue
        per_user = np.bincount(user[holds & (sku == s)])
        most = int(per_user.max()) if per_user.size else 0
        summary["max_units_per_user"][str(s)] = most
        if most > cap:
            failures.append(f"SKU {s}: user {int(per_user.argmax())} holds {most} units, the cap is {cap}")
    summary["requests_per_worker"] = (np.array(after["counts"]["http_requests_per_worker"])
                                      - before["counts"]["http_requests_per_worker"]).tolist()
    summary["hot_sku"] = after["hot_sku"]
    summary["hot_sold_out"] = bool(remaining[after["hot_sku"]] == 0)
    summary["checks"] = "OK" if not failures else "FAILED"
    summary["failures"] = failures
    return summary


def print_report(s):
    rows = [
        ("service", f"{s['workers']} workers, backend {s['backend']}; "
                    f"requests served per worker {s['requests_per_worker']}"),
        ("requests", f"{s['requests']} orders over {s['concurrency']} connections ({s['procs']} client procs)"),
        ("elapsed", f"{s['elapsed_s']:.3f} s"),
        ("orders/s", f"{s['orders_per_s']:,.0f}"),
        ("http req/s", f"{s['http_requests_per_s']:,.0f} (orders + confirms + cancels)"),
        ("accepted", s["accepted"]),
        ("refused", f"{s['refused']} (out of stock {s['out_of_stock']}, over the user limit {s['limit_exceeded']})"),
        ("duplicates", f"{s['duplicates']} (of {s['retries']} retried ids)"),
        ("cancelled", s["cancelled"]),
        ("confirmed", s["confirmed"]),
        ("cancels", s["cancels_done"]),
        ("errors", s["errors"]),
        ("p50", f"{s['p50_ms']:.3f} ms"),
        ("p99", f"{s['p99_ms']:.3f} ms"),
        ("p999", f"{s['p999_ms']:.3f} ms"),
    ]
    for key, value in rows:
        print(f"{key:<12}{value}")
    for k in s["skus"]:
        tag = " (hot)" if k["sku"] == s["hot_sku"] else ""
        print(f"sku {k['sku']}{tag:<6} initial {k['initial']:>9,}  remaining {k['remaining']:>9,}  "
              f"sold in run {k['sold_in_run']:>7,}  accepted units {k['accepted_units']:>7,}")
    caps = ", ".join(f"sku {k}: {v}" for k, v in s["max_units_per_user"].items())
    print(f"max units one user holds of a capped SKU: {caps or '-'}")
    if s["checks"] == "OK":
        print("check: OK (no oversell, stock lost == units accepted, per-user caps held, retries were DUPLICATE)")
    else:
        for failure in s["failures"]:
            print(f"check FAILED: {failure}")


def main(argv=None):
    args = parse_args(argv)
    before = get_stats(args.host, args.port)
    args.n_skus, args.hot_sku = len(before["stock"]), before["hot_sku"]
    run = run_all(args)
    after = get_stats(args.host, args.port)
    summary = report(args, run, before, after)
    print_report(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if summary["checks"] == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
