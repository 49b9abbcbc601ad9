"""A writer process on a durable inventory killed with SIGKILL at seeded
random moments, again and again: after each kill ``open_durable`` recovers
every call that returned before the kill exactly once, nothing is oversold,
stock is conserved, and every id is in the state its acknowledged calls
left it in.  The child reports each call on a pipe before it starts
("call") and after it returns ("ack"); only the one call in flight at the
kill may or may not be there."""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

import kernel
from kernel import OrderState, Outcome, Status
from kernel.invariants import check_tracked

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

STOCK = [40, 40, 30, 30, 20]
CAP = 4
CHILD = r"""
import json, os, sys, threading, time
import numpy as np
import kernel
from kernel import OrderBatch

path, seed, first_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shared = sys.argv[4] if len(sys.argv) > 4 else None
rng = np.random.default_rng(seed)
inv = kernel.Inventory.open_durable(path, shared=shared)
def say(*parts):
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()
if os.environ.get("KERNEL_TEST_CHECKPOINTER"):  # a thread checkpointing beside the calls, again and again
    def checkpointer():
        pause = np.random.default_rng(seed + 1)
        while True:
            inv.checkpoint()
            time.sleep(float(pause.uniform(0, 0.02)))
    threading.Thread(target=checkpointer, daemon=True).start()
say("ready")
next_id, known = first_id, []
while True:
    kind = rng.choice(["batch", "batch", "one", "one", "one", "confirm", "cancel", "restock", "checkpoint"],
                      p=[.2, .2, .15, .15, .1, .08, .07, .04, .01])
    if kind == "batch":
        n = int(rng.integers(1, 40))
        ids = list(range(next_id, next_id + n)); next_id += n
        if known and rng.random() < 0.3:
            ids[0] = int(rng.choice(known))  # a retry
        lines = rng.integers(1, 3, n); offsets = np.concatenate(([0], np.cumsum(lines)))
        sku = rng.integers(0, 5, int(offsets[-1])); qty = rng.integers(1, 3, int(offsets[-1]))
        users = rng.integers(0, 10, n)
        call = {"op": "batch", "ids": ids, "sku": sku.tolist(), "qty": qty.tolist(), "offsets": offsets.tolist()}
        say("call", json.dumps(call))
        status = inv.reserve(OrderBatch(sku, qty, offsets, order_id=ids, user_id=users)).status
        call["status"] = status.tolist()
        known += ids
    elif kind == "one":
        oid = next_id; next_id += 1
        s, q = int(rng.integers(5)), int(rng.integers(1, 3))
        call = {"op": "one", "ids": [oid], "sku": [s], "qty": [q], "offsets": [0, 1]}
        say("call", json.dumps(call))
        call["status"] = [int(inv.reserve_one(s, q, order_id=oid, user_id=int(rng.integers(10))))]
        known.append(oid)
    elif kind in ("confirm", "cancel"):
        if not known:
            continue
        ids = [int(i) for i in rng.choice(known, 3)] + ([next_id + 1_000_000] if kind == "cancel" else [])
        call = {"op": kind, "ids": ids}
        say("call", json.dumps(call))
        call["outcome"] = getattr(inv, kind)(ids).tolist()
    elif kind == "restock":
        call = {"op": "restock", "offer": int(rng.integers(5)), "qty": int(rng.integers(1, 6))}
        say("call", json.dumps(call))
        inv.restock([call["offer"]], [call["qty"]])
    else:
        call = {"op": "checkpoint"}
        say("call", json.dumps(call))
        inv.checkpoint()
    say("ack", json.dumps(call))
"""


class Expected:
    """What the acknowledged calls say about every id."""

    def __init__(self):
        self.state = {}        # id -> OrderState
        self.qty = {}          # id -> units it holds when HELD / CONFIRMED
        self.restocked = np.zeros(len(STOCK), np.int64)

    def apply(self, call):
        op = call["op"]
        if op in ("batch", "one"):
            offsets = call["offsets"]
            for i, (oid, status) in enumerate(zip(call["ids"], call["status"])):
                if status == Status.ACCEPTED:
                    self.state[oid] = OrderState.HELD
                    self.qty[oid] = sum(call["qty"][offsets[i]:offsets[i + 1]])
                elif status in (Status.OUT_OF_STOCK, Status.LIMIT_EXCEEDED):
                    self.state[oid] = OrderState.REFUSED
        elif op in ("confirm", "cancel"):
            for oid, outcome in zip(call["ids"], call["outcome"]):
                if outcome == Outcome.DONE:
                    self.state[oid] = OrderState.CONFIRMED if op == "confirm" else OrderState.CANCELLED
                elif outcome == Outcome.REMEMBERED:
                    self.state[oid] = OrderState.CANCELLED_EARLY
        elif op == "restock":
            self.restocked[call["offer"]] += call["qty"]


def _start(path, seed, first_id, shared=None, checkpointer=False):
    args = [sys.executable, "-c", CHILD, path, str(seed), str(first_id)] + ([shared] if shared else [])
    env = dict(os.environ, KERNEL_TEST_CHECKPOINTER="1") if checkpointer else None
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    child.lines, child.partial = [], b""  # what it reported so far (read without blocking)
    try:
        _read_until(child, lambda: child.lines, 60, "the writer did not start")
        assert child.lines[0] == "ready", child.lines[0]
        del child.lines[0]
    except BaseException:
        child.kill()
        child.wait(timeout=60)
        raise
    return child


def _read_until(child, done, timeout, why):
    """Read the child's reports until ``done()`` (bounded: ``why`` fails
    the test after ``timeout`` seconds, or when the child exits)."""
    fd = child.stdout.fileno()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, f"{why} within {timeout} s"
            if not selector.select(timeout=left):
                continue
            data = os.read(fd, 1 << 16)
            assert data, f"{why}: it exited: {child.stderr.read().decode(errors='replace')}"
            *whole, child.partial = (child.partial + data).split(b"\n")
            child.lines += [line.decode() for line in whole]


def _acks(child):
    return sum(line.startswith("ack ") for line in child.lines)


def _run_after(child, acks, rng, low, high):
    """Let it acknowledge ``acks`` calls (however long its first calls take:
    a cold numba cache compiles for seconds), then run a seeded random while
    more: the kill lands at a random moment of real work."""
    _read_until(child, lambda: _acks(child) >= acks, 120, f"the writer did not acknowledge {acks} calls")
    time.sleep(float(rng.uniform(low, high)))


def _kill(child):
    """SIGKILL it; its output (the calls it reported)."""
    try:
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    return child.lines + (child.partial + out).decode().splitlines()


def _run_child(path, seed, first_id, rng, checkpointer=False):
    child = _start(path, seed, first_id, checkpointer=checkpointer)
    _run_after(child, 10, rng, 0.0, 0.5)
    return _kill(child)


def _replay_acks(expected, lines):
    """Apply a child's acknowledged calls; return (acks, its call in flight or None)."""
    in_flight, acks = None, 0
    for line in lines:
        tag, _, body = line.partition(" ")
        if tag == "call":
            in_flight = json.loads(body)
        elif tag == "ack":
            expected.apply(json.loads(body))
            in_flight = None
            acks += 1
    return acks, in_flight


def _check(inv, expected, in_flight, may_have_lost=0):
    """Every acknowledged id in its state, holding exactly its units once;
    conservation and caps (check_tracked); nothing unacknowledged but the
    calls in flight (one per killed process: a call or a list of them)."""
    calls = [c for c in (in_flight if isinstance(in_flight, list) else [in_flight]) if c]
    loose = {i for c in calls for i in c.get("ids", [])}
    ids = sorted(set(expected.state) - loose)
    states = inv.state_of(ids)
    wrong = [(i, OrderState(int(s)).name, expected.state[i].name) for i, s in zip(ids, states)
             if s != expected.state[i]]
    assert not wrong, f"ids not in their acknowledged state (id, found, expected): {wrong[:5]}"
    held = [i for i in ids if expected.state[i] in (OrderState.HELD, OrderState.CONFIRMED)]
    codes, state = kernel.codes, inv.state
    records = state.order_table.reshape(-1, codes.ORDER_STRIDE)
    slots = kernel.tracking.probe(records[:, codes.ORDER_WORD_AT], np.array(held, np.int64), codes.ID_MASK)
    for oid, slot in zip(held, slots):
        fills = records[slot, codes.ORDER_FILLS_AT]  # first << FILL_COUNT_BITS | count
        first = fills >> codes.FILL_COUNT_BITS
        units = state.fill_qty[first:first + (fills & codes.MAX_ORDER_FILLS)].sum()
        assert units == expected.qty[oid], f"order {oid} holds {units} units, it took {expected.qty[oid]}"
    restocks = [expected.restocked]
    for call in calls:  # a restock in flight may or may not have happened
        if call["op"] == "restock":
            more = []
            for r in restocks:
                r = r.copy()
                r[call["offer"]] += call["qty"]
                more.append(r)
            restocks += more
    for k, restocked in enumerate(restocks):
        try:
            check_tracked(inv, np.array(STOCK), restocked=restocked, may_have_lost=may_have_lost)
            return restocked
        except AssertionError:
            if k == len(restocks) - 1:
                raise


def _adopt(inv, expected, calls):
    """The calls in flight may or may not have made it: adopt what recovery found."""
    for call in calls:
        if not call or "ids" not in call:
            continue
        for k, (oid, state) in enumerate(zip(call["ids"], inv.state_of(call["ids"]))):
            if state:
                expected.state[oid] = OrderState(int(state))
            if state in (OrderState.HELD, OrderState.CONFIRMED) and oid not in expected.qty:
                expected.qty[oid] = sum(call["qty"][call["offsets"][k]:call["offsets"][k + 1]])


@pytest.mark.parametrize("checkpoints", ["now and then", "a thread, all the time"])
def test_sigkill_at_random_moments_loses_no_acknowledged_call(tmp_path, checkpoints):
    """With a thread checkpointing beside the calls (one after the other,
    the snapshot written outside the call lock), most kills land while a
    snapshot is being written: the previous one and the segments after it
    hold every acknowledged call, and the dead writer's temporary file goes."""
    path = str(tmp_path / "inv")
    kernel.Inventory.create_durable(path, STOCK, max_orders=200_000, limit_per_user=CAP).close()
    rng = np.random.default_rng(2024)
    expected, first_id, total_acks, mid_snapshot = Expected(), 0, 0, 0
    for kill in range(6):
        lines = _run_child(path, seed=100 + kill, first_id=first_id, rng=rng,
                           checkpointer=checkpoints == "a thread, all the time")
        acks, in_flight = _replay_acks(expected, lines)
        total_acks += acks
        mid_snapshot += any(name.endswith(".tmp") for name in os.listdir(path))
        inv = kernel.Inventory.open_durable(path)
        assert not [name for name in os.listdir(path) if name.endswith(".tmp")]
        try:
            expected.restocked = _check(inv, expected, in_flight)
            _adopt(inv, expected, [in_flight])
        finally:
            inv.close()
        first_id += 100_000 // 6
    print(f"{total_acks} acknowledged calls over 6 kills, {mid_snapshot} of them while a snapshot was written")
    assert total_acks >= 60, "each writer acknowledged at least 10 calls before its kill"


def _units(call):
    return sum(call.get("qty", [])) if call and call["op"] in ("batch", "one") else 0


def test_several_processes_on_one_shared_durable_inventory(tmp_path):
    """Three writer processes on one shared durable inventory; one is
    SIGKILLed mid-run, then the other two; a supervisor attaches and runs
    recover(); then the shared memory is gone (a reboot) and everyone
    restarts from disk: nothing acknowledged is lost either time."""
    path = str(tmp_path / "inv")
    name = f"kernel-test-durable-{uuid.uuid4().hex[:12]}"
    kernel.Inventory.create_durable(path, STOCK, max_orders=300_000, limit_per_user=CAP, shared=name).close()
    rng = np.random.default_rng(7)
    children = []
    try:
        children += [_start(path, seed=200 + k, first_id=100_000 * k, shared=name) for k in range(3)]
        for child in children:
            _read_until(child, lambda: _acks(child) >= 20, 120, "a writer did not acknowledge 20 calls")
        time.sleep(float(rng.uniform(0.0, 0.3)))
        outputs = [_kill(children[0])]
        _run_after(children[1], _acks(children[1]) + 10, rng, 0.0, 0.3)
        outputs += [_kill(child) for child in children[1:]]
        expected, in_flight, total = Expected(), [], 0
        for lines in outputs:
            acks, call = _replay_acks(expected, lines)
            total += acks
            in_flight.append(call)
        lost = sum(_units(call) for call in in_flight)  # the CAS-to-log window of each killed call
        # The processes are gone, the shared state stays: a supervisor finishes what they left.
        inv = kernel.Inventory.open_durable(path, shared=name)
        inv.recover()
        expected.restocked = _check(inv, expected, in_flight, may_have_lost=lost)
        _adopt(inv, expected, in_flight)
        inv.close()
        kernel.Inventory.attach(name).unlink()  # a reboot: only the disk is left
        inv = kernel.Inventory.open_durable(path, shared=name)
        try:
            _check(inv, expected, [], may_have_lost=lost)
            assert inv.recover() == 0, "the journal holds no unfinished order after recover()"
        finally:
            inv.close()
        print(f"{total} acknowledged calls from 3 processes")
        assert total >= 70  # 20 each before the first kill, 10 more from the second: kills of real work
    finally:
        for child in children:  # a failed wait leaves them running
            if child.poll() is None:
                child.kill()
                child.wait(timeout=60)
        try:
            kernel.Inventory.attach(name).unlink()
        except FileNotFoundError:
            pass


DEAD_HOLDER = r"""
import os, sys
import kernel
import kernel.journal.effects, kernel.journal.writer
path, name, where = sys.argv[1], sys.argv[2], sys.argv[3]
inv = kernel.Inventory.open_durable(path, shared=name)
for i in range(5):
    print("ack", i, int(inv.reserve_one(i % 5, 1, order_id=i, user_id=i)), flush=True)
die = lambda *args: os.kill(os.getpid(), 9)
if where == "before_write":  # after taking the sequence number, in the effect capture
    kernel.journal.effects.reserve_one = die
else:  # half a record written
    def half(fd, data):  # data: the record's parts (header, columns)
        blob = b"".join(data) if isinstance(data, list) else bytes(data)
        os.write(fd, blob[:len(blob) // 2])
        die()
    kernel.journal.writer._write_all = half
inv.reserve_one(0, 2, order_id=99, user_id=99)
"""


@pytest.mark.parametrize("where", ["before_write", "mid_write"])
def test_a_process_killed_inside_the_journal_lock(tmp_path, where):
    """A shared-inventory process dies holding the journal's lock, after its
    kernel ran: the next process to take the lock cuts the log back to the
    last whole record and snapshots the live state, so the log has no gap or
    torn record in its middle and a restart from disk agrees with memory."""
    path = str(tmp_path / "inv")
    name = f"kernel-test-durable-{uuid.uuid4().hex[:12]}"
    kernel.Inventory.create_durable(path, STOCK, max_orders=1000, limit_per_user=CAP, shared=name).close()
    try:
        child = subprocess.run([sys.executable, "-c", DEAD_HOLDER, path, name, where], capture_output=True,
                               text=True, timeout=120)
        assert child.returncode == -signal.SIGKILL, child.stderr
        acks = [line.split() for line in child.stdout.splitlines() if line.startswith("ack")]
        assert len(acks) == 5
        inv = kernel.Inventory.open_durable(path, shared=name)
        assert inv.reserve_one(1, 1, order_id=100, user_id=100) == Status.ACCEPTED  # takes the lock: repairs
        inv.recover()
        live_99 = int(inv.state_of([99])[0])
        check_tracked(inv, np.array(STOCK), may_have_lost=2)
        inv.close()
        kernel.Inventory.attach(name).unlink()  # a reboot: only the disk is left
        inv = kernel.Inventory.open_durable(path, shared=name)
        try:
            states = inv.state_of([int(a[1]) for a in acks] + [100, 99])
            assert all(s == OrderState.HELD for s in states[:6]), states
            assert states[6] == live_99, "disk and memory disagree about the order the dead process ran"
            check_tracked(inv, np.array(STOCK), may_have_lost=2)
        finally:
            inv.close()
    finally:
        try:
            kernel.Inventory.attach(name).unlink()
        except FileNotFoundError:
            pass
