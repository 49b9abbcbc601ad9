"""examples/ end to end: the flash-sale service with 2 worker processes on
one shared inventory, driven by the load generator over HTTP (run_demo.py).

Small on purpose (2,000 orders, a few seconds): it checks the plumbing and
the sale's outcome, not speed.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_DEMO = os.path.join(ROOT, "examples", "run_demo.py")

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not os.path.isdir("/dev/shm"),
    reason="the demo needs POSIX processes and shared memory (/dev/shm)")

HOT_STOCK = 200
HOT_LIMIT = 1
REQUESTS = 2_000


def run_demo(name, report, timeout=90):
    """Run run_demo.py in its own process group, so a hang can be killed
    with every process it started (service master, workers, client)."""
    cmd = [sys.executable, RUN_DEMO, "--workers", "2", "--requests", str(REQUESTS), "--concurrency", "16",
           "--hot-stock", str(HOT_STOCK), "--hot-limit", str(HOT_LIMIT), "--name", name, "--json", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo did not finish in {timeout} s:\n{out}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    return proc.returncode, out


def test_demo_sells_the_hot_sku_exactly_once_per_unit(tmp_path):
    name = f"flashsale-test-{uuid.uuid4().hex[:12]}"
    report = tmp_path / "report.json"
    try:
        code, out = run_demo(name, report)
    finally:
        # The service must unlink its segment; whatever happened, leave nothing behind.
        leftovers = glob.glob(f"/dev/shm/{name}*")
        for path in leftovers:
            os.unlink(path)
    assert code == 0, out
    assert not leftovers, f"segments left behind: {leftovers}\n{out}"

    # The printed report has its fields.
    for field in ("requests", "orders/s", "accepted", "refused", "duplicates", "p50", "p99", "p999"):
        assert re.search(rf"^{re.escape(field)}\s+\S", out, re.MULTILINE), f"no {field!r} line:\n{out}"
    assert "check: OK" in out, out
    assert re.search(r"service stopped \(exit status 0\); segment '.*' unlinked", out), out

    [summary] = json.loads(report.read_text())
    assert summary["workers"] == 2
    assert summary["requests"] == REQUESTS
    assert summary["errors"] == 0
    assert summary["checks"] == "OK", summary["failures"]
    hot = summary["skus"][summary["hot_sku"]]
    # Far more buyers than units: all sold, none oversold, and every accepted
    # hot order is one unit the service really gave away.
    assert hot["initial"] == HOT_STOCK
    assert hot["remaining"] == 0
    assert hot["accepted_units"] == hot["sold_in_run"] == HOT_STOCK
    assert summary["max_units_per_user"][str(summary["hot_sku"])] <= HOT_LIMIT
    for sku in summary["skus"]:
        assert sku["remaining"] >= 0
        assert sku["initial"] - sku["remaining"] == sku["accepted_units"]
    # Retries reused ids: each one answered DUPLICATE, and nothing else did.
    assert summary["retries"] > 0
    assert summary["duplicates"] == summary["retries"]
    assert summary["limit_exceeded"] > 0  # users came back for a second unit and were refused
