#!/usr/bin/env bash
# Many requests per isolate (issue 13), edge beside `deno serve` in the same
# run, on the benchmark worker (workers/bench):
#   sleep     each request awaits a 50 ms timer: wrk -c256 (ideal: 256/0.05
#             = 5,120 req/s);
#   upstream  each request fetch()es an upstream that answers after 50 ms
#             (the bare hyper server's /sleep, on its own port): wrk -c256;
#   flood     p99 of a constant worker (wrk -c16) alone, then while another
#             worker on the same node spins to its CPU limit under wrk -c64.
# edge runs 2 executor threads; deno serve its one JS thread (as measured in
# the issue). Writes benches/results/concurrency.md.
#
#   ./benches/concurrency.sh [seconds per run, default 6]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
secs=${1:-6}
DENO_VERSION=2.9.6
peers=$root/bench-peers
work=$peers/concurrency
for t in wrk curl; do
  command -v $t >/dev/null || { SUDO=$([ "$(id -u)" = 0 ] || echo sudo); $SUDO apt-get install -y -qq wrk curl >/dev/null; }
done
deno=$peers/node_modules/@deno/linux-x64-glibc/deno
if [ ! -x "$deno" ]; then
  mkdir -p "$peers"
  npm install --silent --no-audit --no-fund --prefix "$peers" "@deno/linux-x64-glibc@$DENO_VERSION" >&2
  chmod +x "$deno"
fi
cargo build --release -q -p edge --bin edge --example hyper_baseline
edge=$root/target/release/edge
hyper=$root/target/release/examples/hyper_baseline

rm -rf "$work" && mkdir -p "$work"
cp workers/bench/index.js "$work/"
cat > "$work/edge.toml" <<EOF
[listen]
http = "127.0.0.1:9301"
[runtime]
threads = 2
[log]
access = false
[[worker]]
name = "bench"
main = "index.js"
routes = ["*"]
allow_private_network = true
[[worker]]
name = "spin"
main = "index.js"
routes = ["spin.localhost"]
EOF

"$hyper" 127.0.0.1:9309 >/dev/null 2>&1 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.1:9309/ && break; sleep 0.025; done

start() { # name -> PID, PORT
  case $1 in
    edge) PORT=9301; RUST_LOG=error "$edge" serve --config "$work/edge.toml" >/dev/null 2>&1 & ;;
    deno) PORT=9302; "$deno" serve -A --host 127.0.0.1 --port $PORT "$work/index.js" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 1 400); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && return 0; sleep 0.025; done
  echo "$1 did not start" >&2
  return 1
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
# wrk output -> "rps p99 non2xx+errors"
summary() {
  awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} /Non-2xx/ {n+=$NF} /Socket errors/ {gsub(",", ""); n+=$4+$6+$8+$10} END {printf "%.0f %s %d\n", r, p, n}'
}
run() { # url conns
  wrk -t2 -c"$2" -d2s "$1" >/dev/null 2>&1 || true
  wrk -t2 -c"$2" -d"${secs}s" --latency "$1" 2>&1 | summary
}

rows=()
for server in edge deno; do
  start $server
  base=http://127.0.0.1:$PORT
  read -r rps p99 errs < <(run "$base/sleep" 256)
  rows+=("| $server | sleep 50 ms, -c256 | $rps | $p99 | $errs |")
  read -r rps p99 errs < <(run "$base/upstream?u=http://127.0.0.1:9309/sleep" 256)
  rows+=("| $server | fetch() a 50 ms upstream, -c256 | $rps | $p99 | $errs |")
  stop
done

# The flood: edge only (two workers on one node; deno serve has no tenants).
start edge
read -r rps alone errs < <(run "http://127.0.0.1:$PORT/" 16)
rows+=("| edge | constant worker alone, -c16 | $rps | $alone | $errs |")
wrk -t1 -c64 -d"$((secs + 3))s" -H "Host: spin.localhost" "http://127.0.0.1:$PORT/spin" >"$work/flood.txt" 2>&1 &
flood=$!
sleep 1
read -r rps flooded errs < <(run "http://127.0.0.1:$PORT/" 16)
wait $flood || true
spun=$(summary <"$work/flood.txt")
rows+=("| edge | constant worker during the flood, -c16 | $rps | $flooded | $errs |")
rows+=("| edge | the flood: a worker spinning to its CPU limit, -c64 | ${spun%% *} | - | all 503 |")
stop

{
  echo "# Concurrency: edge (2 threads) and deno serve $DENO_VERSION, $(date -u +%F), $(nproc) cores"
  echo
  echo "| server | load | req/s | p99 | errors / non-2xx |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Ideal for the 50 ms rows at 256 connections: 5,120 req/s."
} | tee benches/results/concurrency.md
