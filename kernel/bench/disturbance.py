"""Was the machine quiet while we timed?  CPU accounting from ``/proc``.

:class:`CpuMonitor` snapshots ``/proc/stat`` (all CPUs: busy and steal
time) and ``/proc/self/stat`` (this process, all its threads) around a
block of timed rounds.  The difference is the CPU time *other* processes
took during the block, and the time the hypervisor stole; the runner turns
both into warnings when they are large enough to move the figures.
Elsewhere than Linux the figures are ``None`` and no warning is raised.
"""

import os
import time

__all__ = ["CpuMonitor", "OTHER_CPU_WARN", "STEAL_WARN", "load_average"]

# Share of the machine's CPU capacity (cores x wall time) above which a
# block of rounds is flagged as disturbed.
OTHER_CPU_WARN = 0.10
STEAL_WARN = 0.02

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat():
    """``(busy_ticks, steal_ticks)`` summed over all CPUs, or ``None``."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    v = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return user + nice + system + irq + softirq, steal


def _self_ticks():
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3; utime 14 and stime 15 (1-based) -> 11, 12 here.
    return int(fields[11]) + int(fields[12])


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class CpuMonitor:
    """``with CpuMonitor() as m: ...`` then ``m.result()``."""

    def __enter__(self):
        self._wall = time.perf_counter()
        self._stat, self._self = _proc_stat(), _self_ticks()
        return self

    def __exit__(self, *exc):
        self._wall_end = time.perf_counter()
        self._stat_end, self._self_end = _proc_stat(), _self_ticks()
        return False

    def result(self):
        """``{'wall_s', 'cores', 'other_cpu_s', 'other_share', 'steal_s',
        'steal_share', 'load_average'}`` (``None`` where /proc is missing).

        ``other_share``: CPU time of other processes over cores x wall time.
        """
        wall = self._wall_end - self._wall
        cores = os.cpu_count() or 1
        out = {"wall_s": wall, "cores": cores, "other_cpu_s": None, "other_share": None,
               "steal_s": None, "steal_share": None, "load_average": load_average()}
        if None in (self._stat, self._stat_end, self._self, self._self_end):
            return out
        busy = (self._stat_end[0] - self._stat[0]) / _HZ
        mine = (self._self_end - self._self) / _HZ
        steal = (self._stat_end[1] - self._stat[1]) / _HZ
        other = max(0.0, busy - mine)
        capacity = max(wall * cores, 1e-9)
        out.update(other_cpu_s=other, other_share=other / capacity, steal_s=steal, steal_share=steal / capacity)
        return out
