"""An inventory sharded by SKU over Ray actors, with carts across shards
decided by try-confirm-cancel.

Map of the package:

``routing``    the SKU-to-shard map, caller-side checks, a batch split by shard (NumPy only)
``decisions``  the coordinator's log of rounds and decisions (fsync'd), read back by recovery
``shard``      one shard: a durable inventory behind a Ray actor
``sharded``    ``ShardedInventory``: the coordinator (parallel calls, rounds, recovery, lifecycle)
``bench``      ``python -m kernel.cluster.bench``: orders/s against 1, 2 and 4 shards

Ray is an optional dependency: ``pip install 'double11-kernel[ray]'``.
"""

try:
    import ray  # noqa: F401  (only to fail early, with the message below)
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("kernel.cluster needs Ray, an optional dependency: pip install 'double11-kernel[ray]' "
                      "(or pip install ray)") from error

from .decisions import DecisionLog, LogBusy, LogFailed
from .routing import MAX_SHARDS, ShardMap
from .sharded import NAMESPACE, ShardedInventory, ShardUnavailable, wall_ms

__all__ = ["ShardedInventory", "ShardUnavailable", "ShardMap", "DecisionLog", "LogBusy", "LogFailed", "MAX_SHARDS",
           "NAMESPACE", "wall_ms"]
