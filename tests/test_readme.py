"""The README's examples run and say what they claim."""

import re
import time
from pathlib import Path

import kernel
from kernel import OrderState, Outcome, Status

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3, "README lost its python examples"
    return blocks


def run(block):
    scope = {"time": time, "kernel": kernel}  # later blocks continue the first one (imports)
    exec(compile(block, str(README), "exec"), scope)
    return scope


def test_usage_example_runs_and_matches_its_comments():
    scope = run(python_blocks()[0])
    result, inv = scope["result"], scope["inv"]
    assert result.accepted.tolist() == [True, False]
    assert result.fills.offer.tolist() == [1, 0, 2]
    assert result.fills.qty.tolist() == [5, 1, 3]
    assert inv.stock.tolist() == [1, 0, 0]


def test_tracked_orders_example_matches_its_comments():
    block = python_blocks()[1]
    scope = run(block.replace("inv.reserve(batch", "reserved = inv.reserve(batch")
                .replace("inv.reserve_one(0, 1, order_id=13", "limited = inv.reserve_one(0, 1, order_id=13")
                .replace("inv.confirm(", "confirmed = inv.confirm(")
                .replace("inv.cancel(", "cancelled = inv.cancel(")
                .replace("inv.reserve_one(0, 1, order_id=500", "late = inv.reserve_one(0, 1, order_id=500"))
    assert scope["reserved"].tolist() == [Status.ACCEPTED, Status.ACCEPTED, Status.DUPLICATE]
    assert scope["limited"] == Status.LIMIT_EXCEEDED
    assert scope["confirmed"].tolist() == [Outcome.DONE, Outcome.UNKNOWN]
    assert scope["cancelled"].tolist() == [Outcome.DONE, Outcome.REMEMBERED]
    assert scope["late"] == Status.CANCELLED
    inv = scope["inv"]
    assert inv.state_of([11, 12]).tolist() == [OrderState.CONFIRMED, OrderState.CANCELLED]
    assert inv.stock.tolist() == [999, 70]  # order 11 confirmed; 12 cancelled; 20 restocked on SKU 1


def test_every_python_block_compiles():
    for block in python_blocks():  # the multi-process sketches need processes and paths to run
        compile(block, str(README), "exec")


def test_package_docstring_example():
    import doctest

    assert doctest.testmod(kernel).failed == 0
