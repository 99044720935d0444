#!/usr/bin/env bash
# HTMLRewriter side by side: edge and workerd (deno has none), each pinned
# to core 0 with the client on core 1, one after another in the same run,
# on the same worker (benches/html/worker.js): MIB MiB of a generated page
# answered as is, and through an HTMLRewriter with element, text and
# comment handlers. Throughput is MIB over (rewrite time - plain time),
# medians of ROUNDS, timed by the client.
#
#   ./benches/html.sh [rounds, default 3] [mib, default 64]
#
# Writes benches/results/html.md. Installs workerd from npm into
# ./bench-peers (never committed), as peers.sh does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
rounds=${1:-3}
mib=${2:-64}
WORKERD_VERSION=1.20261117.1
peers=$root/bench-peers
work=$peers/html
workerd=$peers/node_modules/@cloudflare/workerd-linux-64/bin/workerd
for t in curl taskset python3; do
  command -v $t >/dev/null || { echo "html.sh needs $t" >&2; exit 1; }
done
if [ ! -x "$workerd" ]; then
  mkdir -p "$peers"
  npm install --silent --no-audit --no-fund --prefix "$peers" "@cloudflare/workerd-linux-64@$WORKERD_VERSION" >&2
  chmod +x "$workerd"
fi
cargo build --release -q -p edge --bin edge
edge=$root/target/release/edge

rm -rf "$work" && mkdir -p "$work"
cp benches/html/worker.js "$work/worker.js"
sed -e "s|@PORT@|9262|" benches/html/workerd.capnp.in > "$work/workerd.capnp"
printf '[listen]\nhttp = "127.0.0.1:9252"\n[runtime]\nthreads = 1\n[log]\naccess = false\n[limits]\ncpu_ms = 600000\nwall_ms = 600000\n[[worker]]\nname = "bench"\nmain = "worker.js"\nroutes = ["*"]\n' > "$work/edge.toml"

start() {
  case $1 in
    edge) PORT=9252; RUST_LOG=warn taskset -c 0 "$edge" serve --config "$work/edge.toml" >/dev/null 2>&1 & ;;
    workerd) PORT=9262; taskset -c 0 "$workerd" serve "$work/workerd.capnp" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  trap 'kill $PID 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/?mib=0" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}
# seconds of one download
timed() { taskset -c 1 curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/?mib=$mib&mode=$1"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# the rewritten page's size, to show both runtimes did the same work
size() { curl -sf "http://127.0.0.1:$PORT/?mib=1&mode=rewrite" | wc -c; }

declare -A plain rewrite mbs bytes
for server in edge workerd; do
  start $server
  timed rewrite >/dev/null  # warm
  p=(); r=()
  for _ in $(seq "$rounds"); do p+=("$(timed plain)"); r+=("$(timed rewrite)"); done
  plain[$server]=$(median "${p[@]}"); rewrite[$server]=$(median "${r[@]}")
  mbs[$server]=$(python3 -c "print(round($mib / max(${rewrite[$server]} - ${plain[$server]}, 1e-6), 1))")
  bytes[$server]=$(size)
  echo "  $server: plain ${plain[$server]} s, rewrite ${rewrite[$server]} s, ${mbs[$server]} MiB/s" >&2
  kill $PID; wait $PID 2>/dev/null || true
done

mkdir -p benches/results
{
  echo "HTMLRewriter, $mib MiB of a generated page (medians of $rounds downloads, timed by the client; one core each, the client on another)."
  echo "edge $(git rev-parse --short HEAD), workerd $WORKERD_VERSION."
  echo
  echo "| runtime | plain (s) | rewritten (s) | rewriter MiB/s | 1 MiB rewritten (bytes) |"
  echo "|---|---|---|---|---|"
  for s in edge workerd; do echo "| $s | ${plain[$s]} | ${rewrite[$s]} | ${mbs[$s]} | ${bytes[$s]} |"; done
  echo
  echo "edge / workerd rewriter throughput: $(python3 -c "print(round(${mbs[edge]} / ${mbs[workerd]}, 2))")"
} | tee benches/results/html.md
