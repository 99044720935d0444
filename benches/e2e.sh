#!/usr/bin/env bash
# End-to-end load run: the hello-world worker on `edge` beside a bare hyper
# server returning the same bytes (the ceiling), in the same run. Each
# server is pinned to core 0 with one executor thread; wrk runs on core 1.
# Also measures the time from starting `edge serve` to its first response.
#
# ./benches/e2e.sh [seconds]      (needs wrk: apt-get install wrk)
set -euo pipefail
. "$(dirname "$0")/../scripts/env.sh"
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p edge --bin edge --example hyper_baseline
edge=target/release/edge
hyper=target/release/examples/hyper_baseline

run() { # name port cmd...
  local name=$1 port=$2; shift 2
  RUST_LOG=warn taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.05; done
  taskset -c 1 wrk -t1 -c32 -d3s "http://127.0.0.1:$port/" >/dev/null
  local t0 t1 out
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" --latency "http://127.0.0.1:$port/")
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  local reqs rps p50 p99 errs rss cpu
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  cpu=$(echo "($t1-$t0)*1000000/$(getconf CLK_TCK)/$reqs" | bc -l)
  kill $pid; wait $pid 2>/dev/null || true
  printf "| %s | %.0f | %s | %s | %.1f | %d | %s |\n" "$name" "$rps" "$p50" "$p99" "$cpu" "$((rss / 1024))" "${errs:-0}"
  echo "$rps" > "/tmp/e2e-$name.rps"
}

echo "| server (1 core) | requests/s | p50 | p99 | server CPU µs/request | peak RSS MB | errors |"
echo "|---|---|---|---|---|---|---|"
run "hyper (bare)" 9100 "$hyper" 127.0.0.1:9100
run "edge hello worker" 9101 "$edge" dev workers/hello/index.js --port 9101 --threads 1
ratio=$(echo "$(cat /tmp/e2e-edge*.rps) / $(cat /tmp/e2e-hyper*.rps)" | bc -l)
printf "\nedge / hyper throughput: %.2f\n" "$ratio"

# Start to first response of `edge serve` on the bundled config.
start=$(date +%s%N)
RUST_LOG=warn "$edge" serve --config workers/edge.toml >/dev/null 2>&1 &
pid=$!
until curl -sf -H 'Host: hello.localhost' http://127.0.0.1:8080/ >/dev/null; do sleep 0.001; done
end=$(date +%s%N)
kill $pid; wait $pid 2>/dev/null || true
printf "edge serve workers/edge.toml: first response %.1f ms after start\n" "$(echo "($end-$start)/1000000" | bc -l)"
