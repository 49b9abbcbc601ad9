"""examples/flash_sale_service.py --durable DIR: orders answered before a
SIGKILL of the whole service (master and workers) are there after a restart
from the journal."""

import glob
import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid

import pytest

from kernel.journal.snapshot import snapshot_seq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = os.path.join(ROOT, "examples", "flash_sale_service.py")
HOT_STOCK = 20

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory")


def _start(directory, name, *more):
    proc = subprocess.Popen([sys.executable, SERVICE, "--port", "0", "--workers", "2", "--durable", directory,
                             "--hot-stock", str(HOT_STOCK), "--name", name, *more], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    lines = []
    while selector.select(timeout=90):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("READY"):
            return proc, int(line.split("port=")[1].split()[0])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    pytest.fail("the service did not start:\n" + "".join(lines))


def _post(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def _snapshot_seqs(directory):
    return [seq for name in os.listdir(directory) if (seq := snapshot_seq(name)) is not None]


@pytest.mark.parametrize("checkpoints", ["default", "every 0.2 s"])
def test_acknowledged_orders_survive_a_sigkill_of_the_whole_service(tmp_path, checkpoints):
    """With checkpoints every 0.2 s, the kill comes after the master has
    checkpointed past the orders (and maybe while it writes another
    snapshot): recovery starts from that snapshot."""
    directory = str(tmp_path / "sale")
    names = [f"flashsale-durable-{uuid.uuid4().hex[:10]}-{k}" for k in range(2)]
    more = ("--checkpoint-every", "0.2") if checkpoints == "every 0.2 s" else ()
    procs = []
    try:
        proc, port = _start(directory, names[0], *more)
        procs.append(proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        answers = {oid: _post(conn, "/reserve", {"order_id": oid, "user_id": oid, "sku": 0})["status"]
                   for oid in range(HOT_STOCK + 10)}
        assert list(answers.values()).count("ACCEPTED") == HOT_STOCK
        assert _post(conn, "/confirm", {"order_id": 0})["outcome"] == "DONE"
        conn.close()
        if more:  # a snapshot past at least the accepted orders and the confirm (a record each)
            deadline = time.monotonic() + 60
            while max(_snapshot_seqs(directory)) < HOT_STOCK + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert max(_snapshot_seqs(directory)) >= HOT_STOCK + 1, "the master did not checkpoint"
        else:
            assert _snapshot_seqs(directory) == [0]
        os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown: only the journal is left
        proc.wait(timeout=30)
        for path in glob.glob(f"/dev/shm/{names[0]}*"):  # as after a reboot
            os.unlink(path)

        proc, port = _start(directory, names[1])
        procs.append(proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        assert _post(conn, "/reserve", {"order_id": 5, "user_id": 5, "sku": 0})["status"] == "DUPLICATE"
        assert _post(conn, "/reserve", {"order_id": 999, "user_id": 999, "sku": 0})["status"] == "OUT_OF_STOCK"
        assert _post(conn, "/confirm", {"order_id": 0})["outcome"] == "ALREADY_CONFIRMED"
        assert _post(conn, "/confirm", {"order_id": 1})["outcome"] == ("DONE" if answers[1] == "ACCEPTED"
                                                                      else "WAS_REFUSED")
        conn.request("GET", "/stats")
        stats = json.loads(conn.getresponse().read())
        assert stats["stock"][0] == 0
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        for name in names:
            for path in glob.glob(f"/dev/shm/{name}*"):
                os.unlink(path)
