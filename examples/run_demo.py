"""Run the flash-sale demo end to end.

For each ``--workers`` count: start examples/flash_sale_service.py on a free
port (``--port 0``), run examples/load_generator.py against it, stop the
service with SIGTERM and check that it exited cleanly and unlinked its
shared-memory segment.  With several worker counts it ends with a
comparison table.

    python examples/run_demo.py                                  # 2 workers, 10,000 orders
    python examples/run_demo.py --workers 1 2 4 --requests 50000 --concurrency 64

Exit status 0 only if every run passed the load generator's checks and every
service stopped cleanly.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = os.path.join(HERE, "flash_sale_service.py")
LOAD_GENERATOR = os.path.join(HERE, "load_generator.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="worker counts to run (default 2)")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--procs", type=int, default=1, help="load-generator processes")
    p.add_argument("--backend", default="cython", help="kernel backend of the service")
    p.add_argument("--accept", choices=["reuseport", "shared"], default=None, help="how workers accept")
    p.add_argument("--hot-stock", type=int, default=1_000)
    p.add_argument("--hot-limit", type=int, default=1)
    p.add_argument("--name", default=f"flashsale-demo-{os.getpid()}",
                   help="segment name prefix (the worker count is appended)")
    p.add_argument("--json", metavar="PATH", help="write every run's report, as a JSON list, to PATH")
    p.add_argument("load_args", nargs=argparse.REMAINDER,
                   help="after --, extra load_generator.py arguments (e.g. -- --retry-fraction 0.1)")
    args = p.parse_args(argv)
    if args.load_args[:1] == ["--"]:
        args.load_args = args.load_args[1:]
    return args


class Service:
    """examples/flash_sale_service.py in a child process, its output echoed."""

    def __init__(self, args, workers, name):
        self.name = name
        cmd = [sys.executable, SERVICE, "--port", "0", "--workers", str(workers), "--name", name,
               "--backend", args.backend, "--hot-stock", str(args.hot_stock), "--hot-limit", str(args.hot_limit),
               "--max-orders", str(max(2 * args.requests, 1024))]
        if args.accept:
            cmd += ["--accept", args.accept]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.port = None
        self.ready = threading.Event()
        threading.Thread(target=self._echo, daemon=True).start()

    def _echo(self):
        for line in self.proc.stdout:
            print(f"[service] {line}", end="", flush=True)
            if line.startswith("READY "):
                self.port = int(line.split("port=")[1].split()[0])
                self.ready.set()
        self.ready.set()  # EOF: the service is gone

    def wait_ready(self, timeout=120):
        if not self.ready.wait(timeout) or self.port is None:
            raise RuntimeError(f"the service did not get ready (exit status {self.proc.poll()})")
        return self.port

    def stop(self, timeout=30):
        """SIGTERM, then wait; returns the exit status (kills it if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung, killed"


def run_one(args, workers):
    """One service + one load-generator run: (report dict or None, problems)."""
    name = f"{args.name}-{workers}w"
    problems = []
    summary = None
    print(f"=== {workers} worker(s): {args.requests:,} orders, concurrency {args.concurrency} ===", flush=True)
    service = Service(args, workers, name)
    try:
        port = service.wait_ready()
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "report.json")
            cmd = [sys.executable, LOAD_GENERATOR, "--port", str(port), "--requests", str(args.requests),
                   "--concurrency", str(args.concurrency), "--procs", str(args.procs), "--json", report,
                   *args.load_args]
            code = subprocess.run(cmd).returncode
            if code != 0:
                problems.append(f"load generator exited with {code}")
            if os.path.exists(report):
                with open(report) as f:
                    summary = json.load(f)
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        status = service.stop()
    if status != 0:
        problems.append(f"service exited with {status}")
    if os.path.exists(f"/dev/shm/{name}"):
        problems.append(f"shared-memory segment {name!r} was left behind")
    print(f"service stopped (exit status {status}); segment {name!r} "
          f"{'LEFT BEHIND' if os.path.exists(f'/dev/shm/{name}') else 'unlinked'}", flush=True)
    return summary, problems


def main(argv=None):
    args = parse_args(argv)
    results, failed = [], False
    for workers in args.workers:
        summary, problems = run_one(args, workers)
        for problem in problems:
            print(f"demo FAILED: {problem}", flush=True)
        failed |= bool(problems)
        if summary is not None:
            results.append(summary)
        time.sleep(0.2)
    if len(results) > 1:
        print(f"\n{'workers':>7} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} {'accepted':>9} check")
        for s in results:
            print(f"{s['workers']:>7} {s['orders_per_s']:>10,.0f} {s['p50_ms']:>8.3f} {s['p99_ms']:>8.3f} "
                  f"{s['p999_ms']:>8.3f} {s['accepted']:>9} {s['checks']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
