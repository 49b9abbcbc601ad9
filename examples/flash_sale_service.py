"""A flash-sale HTTP service: N worker processes sell from ONE inventory.

The master process creates the inventory in POSIX shared memory
(``kernel.Inventory.create_shared``), starts ``--workers`` processes and
waits.  Each worker attaches to the segment by name and serves HTTP/1.1
(keep-alive, JSON bodies) on one asyncio event loop.  Every worker decrements
the same stock words with the kernel's lock-free compare-and-swap: there is
no lock, no broker and no database between the workers.

    POST /reserve {"order_id", "user_id", "sku", "qty"[, "hold_ms"]}
         -> {"status": "ACCEPTED" | "OUT_OF_STOCK" | "DUPLICATE" | "LIMIT_EXCEEDED" | "CANCELLED"}
    POST /confirm {"order_id"}   -> {"outcome": "DONE" | "ALREADY_CONFIRMED" | ...}
    POST /cancel  {"order_id"}   -> {"outcome": "DONE" | "REMEMBERED" | ...}
    GET  /stats                  -> stock per SKU, initial stock, limits, request counts

Order ids are idempotency keys: a retried /reserve with an id the inventory
has seen answers DUPLICATE and takes nothing.  SKU 0 is the hot item, capped
at ``--hot-limit`` units per user; the other SKUs are uncapped.  A hold with
``hold_ms`` ends EXPIRED (its units go back) unless confirmed in time; the
master sweeps expired holds every ``--expire-every`` seconds.

    python examples/flash_sale_service.py --port 8080 --workers 4
    python examples/flash_sale_service.py --port 0      # prints the port it chose

The master prints ``READY port=<port> ...`` once every worker listens, and
on SIGTERM / SIGINT stops the workers, then closes and unlinks the segment.
With ``--durable DIR`` the inventory is also journaled to ``DIR``
(:meth:`kernel.Inventory.create_durable` with ``shared=``; workers open it
with ``open_durable``): a request is answered only once its order's record
is on disk (``fsync="batch"``), and a restart with the same ``DIR`` (after a
crash or a reboot) carries on from what was acknowledged.  The master
checkpoints it every ``--checkpoint-every`` seconds (60 by default), from a
thread of its own: the workers' requests wait only while the state is
copied (tens of milliseconds), the snapshot is written beside them, and the
journal before it is dropped, so it does not grow for as long as the
service runs.  Each worker
handles one request at a time, so a worker's throughput is one order per
fsync; an fsync by any worker covers every earlier record.

Workers accept either on their own ``SO_REUSEPORT`` sockets (``--accept
reuseport``, the default on Linux: the kernel spreads connections evenly) or
on one listening socket the master binds and hands down (``--accept shared``).
"""

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
import traceback

import numpy as np

import kernel
import kernel.journal

HOT_SKU = 0
REUSEPORT = hasattr(socket, "SO_REUSEPORT")

# Per-worker request counters live in one shared int64 array, one row per
# worker: each row has a single writer, so no atomics are needed, and /stats
# (served by any worker) sums the rows.
STATUSES = [s.name for s in kernel.Status]
OUTCOMES = [o.name for o in kernel.Outcome]
COUNTERS = (["http_requests", "bad_requests"] + [f"reserve.{s}" for s in STATUSES]
            + [f"confirm.{o}" for o in OUTCOMES] + [f"cancel.{o}" for o in OUTCOMES])
COUNTER = {name: i for i, name in enumerate(COUNTERS)}


def now_ms():
    """Hold deadlines and expiry share one clock: wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: pick a free port and print it")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--backend", default="cython", choices=["cython", "numba", "reference", "auto"],
                   help="kernel backend of the workers (default cython)")
    p.add_argument("--name", default=f"flashsale-{os.getpid()}", help="shared-memory segment name")
    p.add_argument("--hot-stock", type=int, default=1_000, help="units of the hot SKU 0 (default 1000)")
    p.add_argument("--hot-limit", type=int, default=1, help="per-user cap on the hot SKU (default 1)")
    p.add_argument("--normal-skus", type=int, default=4, help="uncapped SKUs 1..N (default 4)")
    p.add_argument("--normal-stock", type=int, default=1_000_000, help="units of each normal SKU")
    p.add_argument("--max-orders", type=int, default=1_000_000, help="order ids the inventory can track")
    p.add_argument("--accept", choices=["reuseport", "shared"], default="reuseport" if REUSEPORT else "shared",
                   help="one SO_REUSEPORT socket per worker, or one listening socket shared by all")
    p.add_argument("--durable", metavar="DIR", default=None,
                   help="journal the inventory to DIR (made if new, reopened from disk if it holds one); answer "
                        "each request only once its order is on disk")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="with --durable: seconds between checkpoints (snapshot, older journal dropped); 0: never")
    p.add_argument("--expire-every", type=float, default=1.0, help="seconds between sweeps of expired holds")
    args = p.parse_args(argv)
    if args.checkpoint_every < 0:
        p.error("--checkpoint-every must be >= 0 seconds")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    if args.accept == "reuseport" and not REUSEPORT:
        p.error("--accept reuseport: this platform has no SO_REUSEPORT")
    return args


def catalogue(args):
    """Initial stock and per-user cap of every SKU (SKU 0 is the hot one)."""
    stock = np.array([args.hot_stock] + [args.normal_stock] * args.normal_skus, dtype=np.int64)
    limits = [args.hot_limit] + [None] * args.normal_skus  # None: uncapped
    return stock, limits


def kernel_limits(limits):
    """The per-SKU cap array ``limit_per_user`` takes (``kernel.NO_LIMIT``: uncapped)."""
    return np.array([kernel.NO_LIMIT if cap is None else cap for cap in limits], dtype=np.int64)


# ---------------------------------------------------------------- a worker
class Shop:
    """What one worker does with a request: JSON in, (HTTP code, JSON) out."""

    def __init__(self, inv, all_counts, index, info):
        self.inv = inv
        self.all_counts = all_counts  # every worker's row of the shared counters
        self.counts = all_counts[index]  # this worker's row (its only writer)
        self.info = info
        self.routes = {
            (b"POST", b"/reserve"): self.reserve,
            (b"POST", b"/confirm"): self.confirm,
            (b"POST", b"/cancel"): self.cancel,
            (b"GET", b"/stats"): self.stats,
        }
        # The answers to /reserve never change: encode them once.
        self.reserve_answer = [json.dumps({"status": s}).encode() for s in STATUSES]
        self.reserve_counter = [COUNTER[f"reserve.{s}"] for s in STATUSES]

    def handle(self, method, path, body):
        self.counts[COUNTER["http_requests"]] += 1
        route = self.routes.get((method, path))
        if route is None:
            return 404, b'{"error": "not found"}'
        try:
            req = json.loads(body) if body else {}
            if not isinstance(req, dict):
                raise TypeError("the body must be a JSON object")
            return 200, route(req)
        except (ValueError, TypeError, KeyError) as exc:  # bad JSON, missing field, kernel input check
            self.counts[COUNTER["bad_requests"]] += 1
            return 400, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        except kernel.CapacityError as exc:  # a table sized at creation is full
            return 503, json.dumps({"error": str(exc)}).encode()
        except Exception as exc:  # a bug: answer 500, keep the connection and the worker
            traceback.print_exc()
            return 500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()

    def reserve(self, req):
        # The kernel checks the values (ints in range) and names a bad one.
        hold_ms = req.get("hold_ms")
        status = self.inv.reserve_one(req["sku"], req.get("qty", 1), order_id=req["order_id"],
                                      user_id=req.get("user_id", 0),
                                      hold_until=None if hold_ms is None else now_ms() + int(hold_ms))
        self.counts[self.reserve_counter[status]] += 1
        return self.reserve_answer[status]

    def confirm(self, req):
        return self._settle("confirm", self.inv.confirm, req)

    def cancel(self, req):
        return self._settle("cancel", self.inv.cancel, req)

    def _settle(self, what, call, req):
        outcome = kernel.Outcome(call([req["order_id"]])[0]).name
        self.counts[COUNTER[f"{what}.{outcome}"]] += 1
        return json.dumps({"outcome": outcome}).encode()

    def stats(self, _req):
        totals = dict(zip(COUNTERS, self.all_counts.sum(axis=0).tolist()))
        counts = {"http_requests": totals["http_requests"], "bad_requests": totals["bad_requests"],
                  "http_requests_per_worker": self.all_counts[:, COUNTER["http_requests"]].tolist()}
        for what, names in (("reserve", STATUSES), ("confirm", OUTCOMES), ("cancel", OUTCOMES)):
            counts[what] = {name: totals[f"{what}.{name}"] for name in names}
        return json.dumps(dict(self.info, stock=self.inv.stock.tolist(), counts=counts, pid=os.getpid())).encode()


def parse_head(head):
    """``(method, path, version, headers)`` of a request head (the bytes
    before the blank line); header names lower-cased.  ValueError if malformed."""
    lines = head.split(b"\r\n")
    method, path, version = lines[0].split(b" ")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError(f"header line without a colon: {line!r}")
        headers[name.strip().lower()] = value.strip()
    return method, path, version, headers


class HttpConnection(asyncio.Protocol):
    """Minimal HTTP/1.1 server side: keep-alive, Content-Length bodies,
    pipelined requests answered in order.  Requests are handled inline (a
    reserve is a few microseconds), so nothing here ever awaits."""

    MAX_HEAD = 16 * 1024

    def __init__(self, shop, open_connections):
        self.shop = shop
        self.open_connections = open_connections
        self.buf = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.open_connections.add(self)

    def connection_lost(self, exc):
        self.open_connections.discard(self)

    def data_received(self, data):
        self.buf += data
        replies = []
        keep_alive = self.answer_complete_requests(replies)
        self.transport.write(b"".join(replies))  # pipelined requests: one write for all their replies
        if not keep_alive:
            self.transport.close()

    def answer_complete_requests(self, replies):
        """Answer every complete request in the buffer, in order; return
        False once the connection must close."""
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.MAX_HEAD:
                    replies.append(response(400, b'{"error": "request head too large"}', keep_alive=False))
                    return False
                return True
            try:
                method, path, version, headers = parse_head(bytes(buf[:end]))
                length = int(headers.get(b"content-length", 0))
            except ValueError:
                replies.append(response(400, b'{"error": "malformed request"}', keep_alive=False))
                return False
            if len(buf) < end + 4 + length:
                return True  # the body is still on its way
            body = bytes(buf[end + 4:end + 4 + length])
            del buf[:end + 4 + length]
            connection = headers.get(b"connection", b"").lower()
            if version == b"HTTP/1.1":
                keep_alive = connection != b"close"
            else:  # HTTP/1.0 closes unless asked not to
                keep_alive = connection == b"keep-alive"
            code, payload = self.shop.handle(method, path, body)
            replies.append(response(code, payload, keep_alive))
            if not keep_alive:
                return False


REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 500: b"Internal Server Error",
           503: b"Service Unavailable"}


def response(code, payload, keep_alive=True):
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        code, REASONS[code], len(payload), b"" if keep_alive else b"Connection: close\r\n", payload)


def reuseport_socket(host, port, listen):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(1024)
    return sock


def worker_main(index, args, port, listener, raw_counts, ready):
    """One worker process (started with multiprocessing "spawn": a fresh
    interpreter, so no OpenMP or kernel state is inherited from the master)."""
    if args.durable:
        inv = kernel.Inventory.open_durable(args.durable, shared=args.name, backend=args.backend, threads=1)
    else:
        inv = kernel.Inventory.attach(args.name, backend=args.backend, threads=1)
    inv.confirm([]), inv.cancel([])  # load (numba: compile) these kernels now, not on the first request
    all_counts = np.frombuffer(raw_counts, dtype=np.int64).reshape(args.workers, len(COUNTERS))
    stock, limits = catalogue(args)
    shop = Shop(inv, all_counts, index, {
        "segment": args.name, "workers": args.workers, "backend": inv.backend,
        "hot_sku": HOT_SKU, "initial": stock.tolist(), "limits": limits})
    if listener is None:  # --accept reuseport: each worker listens on its own socket
        listener = reuseport_socket(args.host, port, listen=True)
    loop = asyncio.new_event_loop()
    open_connections = set()
    server = loop.run_until_complete(loop.create_server(
        lambda: HttpConnection(shop, open_connections), sock=listener, backlog=1024))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    master = os.getppid()

    def stop_if_orphaned():  # the master was killed (SIGKILL): do not serve on forever
        if os.getppid() != master:
            loop.stop()
        else:
            loop.call_later(1.0, stop_if_orphaned)

    stop_if_orphaned()
    if args.sweep_in_worker:
        def sweep():
            inv.expire(now_ms())
            loop.call_later(args.expire_every, sweep)

        loop.call_later(args.expire_every, sweep)
    ready.send(index)
    try:
        loop.run_forever()
    finally:
        # Graceful stop: no new connections; close open ones once their
        # replies are written (every request is answered before the loop
        # gets back to a signal, since handling never awaits).
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal (Ctrl-C, then the master's SIGTERM)
            loop.add_signal_handler(sig, lambda: None)  # must not cut the drain short
        server.close()
        for conn in list(open_connections):
            conn.transport.close()
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()
        shop.counts = shop.all_counts = all_counts = None  # drop views before detaching
        inv.close()


# --------------------------------------------------------------- the master
def serve(args, inv):
    """Start the workers, wait for a signal (or a dead worker), stop them.
    Returns the exit status."""
    ctx = multiprocessing.get_context("spawn")
    raw_counts = ctx.RawArray("q", args.workers * len(COUNTERS))  # anonymous shared memory, no name to clean up
    if args.accept == "shared":
        listener = socket.create_server((args.host, args.port), backlog=1024)
        placeholder = None
    else:  # bound, not listening: reserves the port (a free one for --port 0) and takes no connections
        listener = None
        placeholder = reuseport_socket(args.host, args.port, listen=False)
    port = (listener or placeholder).getsockname()[1]

    # Signals wake the master through a socket (set_wakeup_fd), so it can
    # wait on it and on the workers' sentinels at once.
    stop = []
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))

    # Checkpoints run on a thread of their own: one takes about a second at
    # a million orders of capacity (the snapshot's writes and fsync), and
    # the sweeps and signals must not wait for it.  Requests wait only while
    # it copies the state (DurableInventory.checkpoint).
    stopping = threading.Event()

    def checkpoint_every():
        while not stopping.wait(args.checkpoint_every):
            try:
                inv.checkpoint()
            except kernel.journal.JournalFailed as error:  # every call fails too: stop the service
                print(f"flash-sale: the journal failed ({error}); shutting down", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except kernel.journal.JournalError as error:  # nothing acknowledged at risk: try again next time
                print(f"flash-sale: checkpoint failed: {error}", file=sys.stderr, flush=True)
    checkpointer = threading.Thread(target=checkpoint_every, name="flash-sale-checkpointer", daemon=True)

    ready_r, ready_w = ctx.Pipe(duplex=False)
    workers = [ctx.Process(target=worker_main, name=f"flash-sale-worker-{i}",
                           args=(i, args, port, listener, raw_counts, ready_w)) for i in range(args.workers)]
    status = 0
    try:
        for w in workers:
            w.start()
        ready_count = 0
        while ready_count < args.workers and not stop:
            fired = multiprocessing.connection.wait([ready_r, wake_r] + [w.sentinel for w in workers], timeout=120)
            if not fired:
                raise RuntimeError("workers did not start within 120 s")
            if any(not w.is_alive() for w in workers):
                raise RuntimeError("a worker died while starting (see its traceback above)")
            while ready_r.poll():
                ready_r.recv()
                ready_count += 1
        if not stop:
            print(f"READY port={port} workers={args.workers} segment={args.name} backend={inv.backend} "
                  f"accept={args.accept} pid={os.getpid()}", flush=True)
        if args.durable and args.checkpoint_every > 0:
            checkpointer.start()
        next_sweep = time.monotonic() + args.expire_every
        while not stop:
            fired = multiprocessing.connection.wait([wake_r] + [w.sentinel for w in workers],
                                                    timeout=max(0.0, next_sweep - time.monotonic()))
            if stop:
                break
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                print(f"flash-sale: {dead[0].name} exited with {dead[0].exitcode}; shutting down",
                      file=sys.stderr, flush=True)
                status = 1
                break
            if not fired and not args.sweep_in_worker:  # give back the units of holds whose deadline passed
                inv.expire(now_ms())
                next_sweep = time.monotonic() + args.expire_every
    finally:
        stopping.set()
        if checkpointer.is_alive():
            checkpointer.join(timeout=120)  # (inv.close() waits for a checkpoint under way anyway)
        for w in workers:
            if w.is_alive():
                w.terminate()  # SIGTERM: the worker stops gracefully
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
                w.join()
        signal.set_wakeup_fd(-1)
        for sock in (listener, placeholder, wake_r, wake_w):
            if sock is not None:
                sock.close()
    counts = dict(zip(COUNTERS, np.frombuffer(raw_counts, dtype=np.int64)
                      .reshape(args.workers, len(COUNTERS)).sum(axis=0).tolist()))
    summary = "".join(f" {k}={v}" for k, v in counts.items() if v)
    print(f"STOPPED stock={inv.stock.tolist()}{summary}", flush=True)
    return status


def main(argv=None):
    args = parse_args(argv)
    stock, limits = catalogue(args)
    # The master creates the segment before any worker exists; workers are
    # spawned (fresh interpreters), so the master may use the kernel too
    # (it sweeps expired holds) without any fork/OpenMP hazard.
    options = dict(backend=args.backend, threads=1, max_orders=args.max_orders, limit_per_user=kernel_limits(limits))
    if not args.durable:
        inv = kernel.Inventory.create_shared(args.name, stock, **options)
    elif args.backend == "reference":
        print("flash-sale: --durable needs a compiled backend (the journal shares the state between processes)",
              file=sys.stderr)
        return 2
    elif os.path.isdir(args.durable) and os.listdir(args.durable):
        # A restart: the state is what the journal acknowledged (the stock
        # options are ignored); a directory that is not an inventory is an error.
        inv = kernel.Inventory.open_durable(args.durable, shared=args.name, backend=args.backend, threads=1)
    else:
        inv = kernel.Inventory.create_durable(args.durable, stock, shared=args.name, fsync="batch", **options)
    try:
        if inv.backend == "reference" and args.workers > 1:
            # Plain Python read-modify-write: atomic across nothing, so two
            # processes can sell the same unit (a 4-worker run sold 5,015 of 5,000).
            print("flash-sale: the reference backend is not atomic across processes; use --workers 1",
                  file=sys.stderr)
            return 2
        # The master sweeps expired holds, off the workers' event loops; with
        # the non-atomic reference backend the one worker does it itself.
        args.sweep_in_worker = inv.backend == "reference"
        return serve(args, inv)
    finally:
        inv.close()
        inv.unlink()


if __name__ == "__main__":
    sys.exit(main())
