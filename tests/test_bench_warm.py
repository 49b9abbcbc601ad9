"""``python -m kernel.bench.warm``: one checked numba call per registry
workload, mode and thread count, so later processes load the kernels from
Numba's cache (``tests/conftest.py`` runs it before a whole-suite session)."""

import pytest

from kernel.bench import warm

pytest.importorskip("numba")


def test_warm_runs_each_cell_once_tracked_first(monkeypatch):
    ran = []
    real = warm.timed_round
    monkeypatch.setattr(warm, "timed_round", lambda case, backend, mode, threads: (
        ran.append((case.name, backend, mode, threads)), real(case, backend, mode, threads)))
    rows = warm.warm(["uniform", "carts"], ["concurrent", "ordered"], [1, 2], scale=0.0001)
    cells = [("uniform", "concurrent", 1), ("uniform", "concurrent", 2), ("carts", "concurrent", 1),
             ("carts", "concurrent", 2), ("uniform", "ordered", 1), ("uniform", "ordered", 2),
             ("carts", "ordered", 1), ("carts", "ordered", 2)]
    assert [(w, m, t) for w, m, t, _ in rows] == cells
    assert ran == [(w, "numba", m, t) for w, m, t in cells]  # each row is one checked numba call, made once
    assert warm.WARM_MODES[0] == "tracked" and sorted(warm.WARM_MODES) == sorted(warm.MODES)


def test_small_and_contended_batches_reach_the_parallel_dispatchers_and_the_policy_comes_back(monkeypatch):
    monkeypatch.setattr(warm.backends, "PARALLEL_GRAIN", 50_000)  # the production policy (conftest lifts it)
    monkeypatch.setattr(warm.inventory, "CONTENDED_SKUS", 4096)
    ran_on = []
    real = warm.timed_round
    monkeypatch.setattr(warm, "timed_round", lambda *args: ran_on.append(real(*args)[2]))
    warm.warm(["flash-sale"], ["concurrent"], [2], scale=0.0001)  # 1,000 orders on one SKU
    assert ran_on == [2]
    assert (warm.backends.PARALLEL_GRAIN, warm.inventory.CONTENDED_SKUS) == (50_000, 4096)


@pytest.mark.parametrize("argv, match", [(["--modes", "durable"], "mode 'durable'"),
                                         (["--workloads", "nope"], "nope")])
def test_unknown_names_are_refused_before_any_work(argv, match):
    with pytest.raises(KeyError, match=match):
        warm.main(argv)


def test_the_command_prints_a_line_per_cell(capsys):
    assert warm.main(["--workloads", "uniform", "--modes", "concurrent", "--threads", "1", "--scale", "0.0001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["uniform", "concurrent", "1", "thread(s):"] and lines[-1].startswith("warm: ")


def test_tracked_cells_also_run_the_lifecycle_unless_told_not_to(monkeypatch):
    calls = []
    real = warm.lifecycle_round
    monkeypatch.setattr(warm, "lifecycle_round", lambda case, threads: (calls.append((case.name, threads)),
                                                                        real(case, threads)))
    warm.warm(["uniform"], ["tracked", "concurrent"], [1], scale=0.0001)
    assert calls == [("uniform", 1)]
    warm.warm(["uniform"], ["tracked"], [1], scale=0.0001, lifecycle=False)
    assert calls == [("uniform", 1)]
