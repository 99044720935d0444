#!/usr/bin/env bash
# KV, the Cache API, R2 and a service binding from a worker: edge beside `wrangler dev`'s local
# simulation (miniflare on workerd, its KV on SQLite too), each pinned to
# core 0 with the client on core 1, one after another in the same run, on
# the same worker (benches/storage/worker.js, 10,000 keys of 100 bytes):
#   latency: an op run N times in one request, less a request of 0 (medians
#   of ROUNDS, timed by the client), for KV get of one key (hot), of a
#   random key (cold: 10,000 keys), of a missing key, KV put, Cache API
#   match (a hit) and put, R2 get (read whole) and put of 100 bytes, and a
#   call through a service binding (to the same worker, answering at once);
#   throughput: wrk -c8 for 5 s on a request doing one KV get, one cache
#   match, one service call, or answering directly.
#
#   ./benches/storage.sh [rounds, default 3]
#
# Writes benches/results/storage.md. Installs wrk (apt) and wrangler (npm,
# into ./bench-peers, never committed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
rounds=${1:-3}
WRANGLER_VERSION=4.86.0
peers=$root/bench-peers
work=$peers/storage
wrangler=$peers/wrangler/node_modules/.bin/wrangler
for t in curl taskset python3 npm; do
  command -v $t >/dev/null || { echo "storage.sh needs $t" >&2; exit 1; }
done
if ! command -v wrk >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
if [ ! -x "$wrangler" ]; then
  npm install --silent --no-audit --no-fund --prefix "$peers/wrangler" "wrangler@$WRANGLER_VERSION" >&2
fi
cargo build --release -q -p edge --bin edge
edge=$root/target/release/edge

rm -rf "$work" && mkdir -p "$work"
cp benches/storage/worker.js "$work/worker.js"
printf '[listen]\nhttp = "127.0.0.1:9291"\n[runtime]\nthreads = 1\n[log]\naccess = false\n[limits]\ncpu_ms = 600000\nwall_ms = 600000\nsubrequests = 1000\n[storage]\ndir = "state"\n[[worker]]\nname = "bench"\nmain = "worker.js"\nroutes = ["*"]\n[[worker.kv]]\nbinding = "KV"\n[[worker.r2]]\nbinding = "R2"\n[[worker.services]]\nbinding = "SELF"\nservice = "bench"\n' > "$work/edge.toml"
printf 'name = "bench"\nmain = "worker.js"\ncompatibility_date = "2025-01-01"\nkv_namespaces = [{ binding = "KV", id = "bench" }]\nr2_buckets = [{ binding = "R2", bucket_name = "bench" }]\nservices = [{ binding = "SELF", service = "bench" }]\n' > "$work/wrangler.toml"
export WRANGLER_SEND_METRICS=false CI=1

start() {
  case $1 in
    edge) PORT=9291; (cd "$work" && RUST_LOG=warn exec taskset -c 0 "$edge" serve --config edge.toml >/dev/null 2>&1) & ;;
    wrangler) PORT=9292; (cd "$work" && exec taskset -c 0 "$wrangler" dev --port $PORT --ip 127.0.0.1 --persist-to wstate >/dev/null 2>&1) & ;;
  esac
  PID=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/?op=direct" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}
stop() { pkill -P $PID 2>/dev/null || true; kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; pkill -f "$work" 2>/dev/null || true; sleep 1; }
trap stop EXIT
timed() { taskset -c 1 curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/?op=$1&n=$2"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# requests per second of wrk on /?op=$1&n=1
rate() {
  taskset -c 1 wrk -t1 -c8 -d5s "http://127.0.0.1:$PORT/?op=$1&n=1" | awk '/Requests\/sec/ {print $2}'
}

ops=(kv-get-hot:500 kv-get-cold:500 kv-get-miss:500 kv-put:500 cache-hit:500 cache-put:500 r2-get:200 r2-put:200 svc-call:200)
loads=(direct kv-get-hot cache-hit svc-call)
declare -A us rps
for server in edge wrangler; do
  start $server
  for from in $(seq 0 500 9500); do
    curl -sf "http://127.0.0.1:$PORT/?op=seed&from=$from&n=500" >/dev/null
  done
  for spec in "${ops[@]}"; do
    op=${spec%%:*}; n=${spec##*:}
    timed "$op" 10 >/dev/null
    base=(); full=()
    for _ in $(seq "$rounds"); do
      base+=("$(timed "$op" 0)"); full+=("$(timed "$op" "$n")")
    done
    us[$server,$op]=$(python3 -c "print(round(($(median "${full[@]}") - $(median "${base[@]}")) * 1e6 / $n, 1))")
    echo "  $server $op: ${us[$server,$op]} us" >&2
  done
  for op in "${loads[@]}"; do
    rate "$op" >/dev/null
    rps[$server,$op]=$(rate "$op")
    echo "  $server $op: ${rps[$server,$op]} req/s" >&2
  done
  stop
done

mkdir -p benches/results
{
  echo "Storage from a worker: edge $(git rev-parse --short HEAD) beside wrangler $WRANGLER_VERSION dev (local simulation); one core each, the client on another."
  echo
  echo "Latency, microseconds per operation inside one request (lower is better; medians of $rounds, each N in one request less a request of 0):"
  echo
  echo "| operation | edge | wrangler dev | edge / wrangler |"
  echo "|---|---|---|---|"
  for spec in "${ops[@]}"; do
    op=${spec%%:*}
    e=${us[edge,$op]}; w=${us[wrangler,$op]}
    echo "| $op | $e | $w | $(python3 -c "print(round($e / $w, 2) if $w > 0 else '-')") |"
  done
  echo
  echo "Throughput, requests per second (wrk -t1 -c8, 5 s; higher is better):"
  echo
  echo "| request | edge | wrangler dev | edge / wrangler |"
  echo "|---|---|---|---|"
  for op in "${loads[@]}"; do
    e=${rps[edge,$op]}; w=${rps[wrangler,$op]}
    echo "| $op | $e | $w | $(python3 -c "print(round($e / $w, 2))") |"
  done
} | tee benches/results/storage.md
