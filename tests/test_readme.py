"""The README's usage example runs and says what it claims."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_example_runs_and_matches_its_comments():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    scope = {}
    exec(compile("\n".join(blocks), str(README), "exec"), scope)
    result, inv = scope["result"], scope["inv"]
    assert result.accepted.tolist() == [True, False]
    assert result.fills.offer.tolist() == [1, 0, 2]
    assert result.fills.qty.tolist() == [5, 1, 3]
    assert inv.stock.tolist() == [1, 0, 0]


def test_package_docstring_example():
    import doctest

    import kernel

    assert doctest.testmod(kernel).failed == 0
