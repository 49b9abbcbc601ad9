"""Run by tests/test_cluster.py in a subprocess (its own Ray cluster of
ray.cluster_utils.Cluster nodes, 127.0.0.1 only): both shard actors need a
``shard_host`` resource that only the worker node has, so they run there; a
stream of tracked batches with carts runs; the worker node is removed
mid-stream and a replacement node with the resource joins (a machine dies,
another takes its place); Ray restarts the actors there, and they reopen
their journals from the shared directory.  Prints one JSON line of
findings."""

import json
import os
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before ray: 127.0.0.1 only

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from kernel import OrderBatch, OrderState, Status  # noqa: E402
from kernel.cluster import ShardedInventory  # noqa: E402

N_SKUS, STOCK, DEADLINE_S = 16, 50, 90


def main(directory):
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False,
                                                                node_ip_address="127.0.0.1"))
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", resources={"shard_host": 2})
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    rng = np.random.default_rng(3)
    inv = ShardedInventory.create(directory, [STOCK] * N_SKUS, shards=2, max_orders=50_000, limit_per_user=4,
                                  backend="cython", call_timeout_s=DEADLINE_S,
                                  actor_options=dict(resources={"shard_host": 1}))
    placed = [info["node"] for info in inv.shard_info()]
    sent, next_id = [], [1]

    def stream():
        lines = rng.integers(1, 3, 40)
        offsets = np.concatenate([[0], np.cumsum(lines)])
        batch = OrderBatch(sku=rng.integers(0, N_SKUS, offsets[-1]), qty=np.ones(offsets[-1], np.int64),
                           offsets=offsets, order_id=np.arange(next_id[0], next_id[0] + 40),
                           user_id=rng.integers(0, 30, 40))
        next_id[0] += 40
        sent.append((batch, inv.reserve(batch)))

    for _ in range(3):
        stream()
    cluster.remove_node(worker)
    replacement = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", resources={"shard_host": 2})
    give_up = time.monotonic() + DEADLINE_S
    while time.monotonic() < give_up:  # until both actors answer from their new node
        stream()
        if all(info["node"] == replacement.node_id for info in inv.shard_info()):
            break
    stream()
    after = inv.shard_info()
    taken = np.zeros(N_SKUS, np.int64)
    kept = True
    for batch, status in sent:
        holding = np.isin(inv.state_of(batch.order_id), (OrderState.HELD, OrderState.CONFIRMED))
        kept &= bool(holding[status == Status.ACCEPTED].all())
        lines = holding[batch.line_order]
        np.add.at(taken, batch.sku[lines], batch.qty[lines])
    stock = inv.stock
    resent = [inv.reserve(batch) for batch, _ in sent]
    print(json.dumps(dict(placed_on_worker=[node == worker.node_id for node in placed],
                          moved=[info["node"] == replacement.node_id for info in after],
                          reopened=[info["reopened"] for info in after], acknowledged_kept=kept,
                          accepted=int(sum((s == Status.ACCEPTED).sum() for _, s in sent)),
                          conserved=bool((stock + taken == STOCK).all()), no_oversell=bool((stock >= 0).all()),
                          duplicates=all(bool((r == Status.DUPLICATE).all()) for r in resent),
                          split_carts=len(inv.split_carts))))
    inv.shutdown()
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
