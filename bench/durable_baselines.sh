#!/usr/bin/env bash
# The reserve_one workload of `python -m kernel.journal bench` (one unit of one
# of 64 SKUs per order, a fresh order id each, 8 clients, every order durable
# before its answer) through Redis with appendfsync always and PostgreSQL
# with fsync on, for the README's side-by-side.  Both servers run from
# temporary directories on 127.0.0.1 and are stopped by pid.  Each run ends
# with a check: no SKU below zero, sold + left == initial.
#
#   bash bench/durable_baselines.sh [orders]        (default 8000)
set -euo pipefail
N=${1:-8000}
CLIENTS=8
UNITS=$N  # per SKU: nothing sells out, as in the kernel's run
WORK=$(mktemp -d /tmp/kernel-baselines-XXXXXX)
chmod 1777 "$WORK"  # the postgres user writes its log and socket here
REDIS_PID=""
PG_DATA="$WORK/pg"
cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  if [ -f "$PG_DATA/postmaster.pid" ]; then kill "$(head -1 "$PG_DATA/postmaster.pid")" 2>/dev/null || true; sleep 1; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), appendonly yes, appendfsync always"
RPORT=$((20000 + RANDOM % 20000))
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync always --save "" \
  --daemonize no --loglevel warning > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
R="redis-cli -h 127.0.0.1 -p $RPORT"
for i in $(seq 1 50); do $R ping > /dev/null 2>&1 && break; sleep 0.1; done
for s in $(seq 0 63); do $R set "stock:$s" "$UNITS" > /dev/null; done
# reserve(order id, sku): idempotent on the id, all or nothing on the unit.
SHA=$($R script load "if redis.call('SETNX', 'order:'..ARGV[1], 1) == 0 then return 2 end
local k = 'stock:'..(tonumber(ARGV[1]) % 64)
if tonumber(redis.call('GET', k)) < 1 then redis.call('SET', 'order:'..ARGV[1], 'refused') return 1 end
redis.call('DECR', k) redis.call('INCR', 'sold') return 0")
redis-benchmark -h 127.0.0.1 -p "$RPORT" -c "$CLIENTS" -n "$N" -r 100000000 -q \
  evalsha "$SHA" 0 __rand_int__ 2>&1 | tr '\r' '\n' | grep -v "^$" | tail -1
redis-benchmark -h 127.0.0.1 -p "$RPORT" -c "$CLIENTS" -n "$N" -r 100000000 \
  evalsha "$SHA" 0 __rand_int__ 2>&1 | tr '\r' '\n' | grep -A2 "latency summary" | tail -2
SOLD=$($R get sold); LEFT=0; NEG=0
for s in $(seq 0 63); do v=$($R get "stock:$s"); LEFT=$((LEFT + v)); [ "$v" -lt 0 ] && NEG=1; done
echo "check: sold $SOLD + left $LEFT == initial $((64 * UNITS)): $([ $((SOLD + LEFT)) -eq $((64 * UNITS)) ] && [ $NEG -eq 0 ] && echo OK || echo FAILED)"
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""

echo "== PostgreSQL $(postgres --version | awk '{print $3}'), fsync on, synchronous_commit on"
PG="runuser -u postgres --"
mkdir -p "$PG_DATA" && chown postgres "$PG_DATA"
$PG initdb -D "$PG_DATA" -A trust > /dev/null
PPORT=$((20000 + RANDOM % 20000))
$PG pg_ctl -D "$PG_DATA" -o "-p $PPORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
  -l "$WORK/pg.log" -w start > /dev/null
Q="$PG psql -h 127.0.0.1 -p $PPORT -d postgres -qAt"
$Q -c "CREATE TABLE stock (sku int PRIMARY KEY, units bigint NOT NULL);
INSERT INTO stock SELECT s, $UNITS FROM generate_series(0, 63) s;
CREATE TABLE orders (id bigint PRIMARY KEY, held boolean NOT NULL);
CREATE FUNCTION reserve(o bigint) RETURNS int AS \$\$
BEGIN
  INSERT INTO orders VALUES (o, false) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN RETURN 2; END IF;
  UPDATE stock SET units = units - 1 WHERE sku = o % 64 AND units >= 1;
  IF NOT FOUND THEN RETURN 1; END IF;
  UPDATE orders SET held = true WHERE id = o;
  RETURN 0;
END \$\$ LANGUAGE plpgsql;"
echo '\set o random(1, 100000000)
SELECT reserve(:o);' > "$WORK/reserve.sql"
chmod 644 "$WORK/reserve.sql"
$PG pgbench -h 127.0.0.1 -p "$PPORT" -n -c "$CLIENTS" -j 2 -t $((N / CLIENTS)) -f "$WORK/reserve.sql" -r postgres \
  2>&1 | grep -E "^tps|latency average|number of transactions actually"
$PG pgbench -h 127.0.0.1 -p "$PPORT" -n -c "$CLIENTS" -j 2 -t $((N / CLIENTS)) -f "$WORK/reserve.sql" \
  --log --log-prefix="$WORK/lat" postgres > /dev/null 2>&1 || true
cat "$WORK"/lat* 2>/dev/null | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "latency p50 %.2f ms, p99 %.2f ms (second run, %d orders)\n", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000, NR}'
SOLD=$($Q -c "SELECT count(*) FROM orders WHERE held"); LEFT=$($Q -c "SELECT sum(units) FROM stock")
NEG=$($Q -c "SELECT count(*) FROM stock WHERE units < 0")
echo "check: sold $SOLD + left $LEFT == initial $((64 * UNITS)): $([ $((SOLD + LEFT)) -eq $((64 * UNITS)) ] && [ "$NEG" -eq 0 ] && echo OK || echo FAILED)"
$PG pg_ctl -D "$PG_DATA" -m fast stop > /dev/null
