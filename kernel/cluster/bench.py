"""Orders/s of a ShardedInventory against 1, 2 and 4 shards, for a
single-shard and a cross-shard workload, with the share of time in the
kernel (shard calls, journal included) and elsewhere (Ray, the caller).

    python -m kernel.cluster.bench                       # shards 1,2,4; batches of 10,000; 8 calls each
    python -m kernel.cluster.bench --shards 1,2 --batch 1000,10000 --calls 5
    python -m kernel.bench cluster ...                   # the same, from the main benchmark CLI

It starts a local Ray (``num_cpus`` CPUs, 127.0.0.1 only) and, for each
cell, a fresh cluster in a temporary directory.  Every shard actor runs on
this machine: on a 2-core VM more shards share the same 2 cores, so the
table shows the cost of sharding, not its scaling (see the README's model).

Columns
-------
orders/s      orders decided per second of wall time, end to end (median call)
cross         share of orders that are carts spanning shards
kernel/call   seconds per call inside the shards' inventory calls (journal and fsync
              included), averaged over the shards: what the shards themselves cost
fsync/call    of which in fdatasync (per shard)
coord/call    the caller's checks and split by shard (measured apart)
logsync       the coordinator's log fdatasyncs per call (two per call with carts: the round's
              carts before the tries, its decision before the second phase)
ray/call      the rest of the wall time: Ray (serialisation, scheduling, the round trips: one
              per call, two with carts) and the coordinator's bookkeeping
ray share     ray/call over the mean wall time of a call
one node      the same batches on one in-process durable Inventory (no Ray), orders/s
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

__all__ = ["main", "run_cell"]

WORKLOADS = ("single-shard", "cross-shard")
N_SKUS = 100_000


def _workload(name, n_orders, seed, first_id):
    """Single-line orders (``single-shard``) or carts of 2-3 lines over
    random SKUs (``cross-shard``: with N shards, 1 - 1/N^(lines-1) of them
    span shards)."""
    rng = np.random.default_rng(seed)
    import kernel

    if name == "single-shard":
        sku = rng.integers(0, N_SKUS, n_orders)
        offsets = None
    else:
        lines = rng.integers(2, 4, n_orders)
        offsets = np.zeros(n_orders + 1, dtype=np.int64)
        np.cumsum(lines, out=offsets[1:])
        sku = rng.integers(0, N_SKUS, int(offsets[-1]))
    ids = np.arange(first_id, first_id + n_orders)
    return kernel.OrderBatch(sku=sku, qty=np.ones(sku.size, dtype=np.int64), offsets=offsets, order_id=ids,
                             user_id=rng.integers(0, n_orders, n_orders))


def run_cell(workload, shards, batch, calls, root, backend="cython", seed=1):
    """One cell: ``calls`` batches of ``batch`` orders through a fresh
    cluster of ``shards`` shards, and the same batches on one node."""
    import kernel
    from .routing import SplitBatch
    from .sharded import ShardedInventory

    batches = [_workload(workload, batch, seed + k, 1 + k * batch) for k in range(calls + 1)]  # +1: warm-up
    stock = np.full(N_SKUS, 1_000)
    max_orders = batch * (calls + 1) + 1
    inv = ShardedInventory.create(os.path.join(root, f"{workload}-{shards}-{batch}"), stock, shards=shards,
                                  max_orders=max_orders, max_user_skus=3 * max_orders, limit_per_user=6,
                                  backend=backend, call_timeout_s=300)
    try:
        inv.reserve(batches[0], hold_until=inv.clock() + 3_600_000)
        before = inv.shard_info()
        log_sync = inv.log_fsync_seconds
        walls, splits, cross = [], [], []
        for b in batches[1:]:
            start = time.perf_counter()
            split = SplitBatch(b, inv.map, inv.has_limits, None)
            splits.append(time.perf_counter() - start)
            cross.append(split.carts.size / b.n_orders)
            start = time.perf_counter()
            status = inv.reserve(b, hold_until=inv.clock() + 3_600_000)
            walls.append(time.perf_counter() - start)
            assert (status != kernel.Status.DUPLICATE).all()
        after = inv.shard_info()
        log_sync = (inv.log_fsync_seconds - log_sync) / calls
        assert not inv.split_carts
    finally:
        inv.shutdown()
    busy = sum(a["busy_s"] - b["busy_s"] for a, b in zip(after, before)) / shards / calls
    fsync = sum(a["journal"]["fsync_seconds"] - b["journal"]["fsync_seconds"] for a, b in zip(after, before))
    fsync /= shards * calls
    wall = float(np.median(walls))
    coord = float(np.median(splits))
    # The same batches on one durable inventory in this process: the kernel with its journal, no Ray.
    directory = os.path.join(root, f"one-{workload}-{shards}-{batch}")
    one = kernel.Inventory.create_durable(directory, stock, max_orders=max_orders, max_user_skus=3 * max_orders,
                                          limit_per_user=6, backend=backend, threads=1)
    one.reserve(batches[0], hold_until=3_600_000)
    one_walls = []
    for b in batches[1:]:
        start = time.perf_counter()
        one.reserve(b, hold_until=3_600_000)
        one_walls.append(time.perf_counter() - start)
    one.close()
    shutil.rmtree(directory, ignore_errors=True)
    mean_wall = float(np.mean(walls))
    other = max(mean_wall - busy - coord - log_sync, 0.0)
    return dict(workload=workload, shards=shards, batch=batch, calls=calls, orders_per_s=batch / wall,
                cross=float(np.mean(cross)), kernel_s=busy, fsync_s=fsync, coord_s=coord, log_sync_s=log_sync,
                other_s=other,
                ray_share=other / mean_wall, wall_s=wall, one_node_orders_per_s=batch / float(np.median(one_walls)))


def _ints(text):
    return [int(part) for part in text.split(",") if part.strip()]


def parser():
    p = argparse.ArgumentParser(prog="python -m kernel.cluster.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=_ints, default=[1, 2, 4], help="shard counts (default 1,2,4)")
    p.add_argument("--batch", type=_ints, default=[10_000], help="orders per call (default 10000)")
    p.add_argument("--calls", type=int, default=8, help="timed calls per cell (default 8)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"any of {', '.join(WORKLOADS)}")
    p.add_argument("--backend", default="cython")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs Ray may schedule (default 2)")
    p.add_argument("--out", default="bench-report", help="writes OUT/cluster.json (default bench-report)")
    return p


def table(rows):
    head = (f"{'workload':<13} {'shards':>6} {'batch':>6} {'orders/s':>10} {'cross':>6} {'kernel/call':>11} "
            f"{'fsync/call':>10} {'coord/call':>10} {'logsync':>8} {'ray/call':>10} {'ray share':>9} {'one node':>10}")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r['workload']:<13} {r['shards']:>6} {r['batch']:>6} {r['orders_per_s']:>10,.0f} "
                   f"{r['cross']:>6.0%} {r['kernel_s'] * 1e3:>9.2f}ms {r['fsync_s'] * 1e3:>8.2f}ms "
                   f"{r['coord_s'] * 1e3:>8.2f}ms {r['log_sync_s'] * 1e3:>6.2f}ms {r['other_s'] * 1e3:>8.2f}ms "
                   f"{r['ray_share']:>9.0%} "
                   f"{r['one_node_orders_per_s']:>10,.0f}")
    return "\n".join(out)


def main(argv=None):
    args = parser().parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser().error(f"--workloads: unknown {unknown}; known: {', '.join(WORKLOADS)}")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before ray is imported: 127.0.0.1 only
    import ray

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    root = tempfile.mkdtemp(prefix="kernel-cluster-bench-")
    rows = []
    try:
        for workload in workloads:
            for batch in args.batch:
                for shards in args.shards:
                    rows.append(run_cell(workload, shards, batch, args.calls, root, args.backend))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{os.cpu_count()} CPUs, Ray {ray.__version__}, backend {args.backend}, fsync 'batch', {N_SKUS:,} SKUs; "
          f"each shard call runs the kernel on 1 thread")
    print(table(rows))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "cluster.json")
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
