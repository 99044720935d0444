#!/usr/bin/env bash
# Before/after on the warm path: the edge of revision REV (built in a git
# worktree) against the working tree's, with the bare hyper server beside,
# in the same run, interleaved (old, new, hyper, old, new, hyper, ...) so a
# drift of the machine's speed hits both alike. Server on core 0, wrk on
# core 1, one executor thread, access log off, workers/bench.
#
#   ./benches/compare.sh REV [rounds, default 3] [seconds per run, default 5]
#
# Prints, per workload (hello and JSON over HTTP/1.1), each round's req/s
# and server CPU per request, and the medians. Installs wrk if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
rev=${1:?usage: compare.sh REV [rounds] [seconds]}
rounds=${2:-3}
secs=${3:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# Both builds share the target folder (the dependencies build once); each
# binary is copied out as soon as it is built.
cargo build --release -q -p edge --bin edge --example hyper_baseline
cp target/release/edge "$work/edge-new"
cp target/release/examples/hyper_baseline "$work/hyper"
git worktree add -q --detach "$work/old" "$rev"
# The workspace's own crates have the same unit hashes in both trees, and
# cargo would take one tree's build script (and crates) for the other's:
# they are cleaned before each build (the dependencies stay shared).
own=(-p edge -p edge-js-api -p edge-core)
cargo clean --release -q "${own[@]}"
(cd "$work/old" && CARGO_TARGET_DIR="$root/target" cargo build --release -q -p edge --bin edge)
cp target/release/edge "$work/edge-old"
# Leave target/release/edge as the working tree's.
cargo clean --release -q "${own[@]}"
cargo build --release -q -p edge --bin edge

cp workers/bench/index.js "$work/"
printf '[listen]\nhttp = "127.0.0.1:9301"\n[runtime]\nthreads = 1\n[log]\naccess = false\n[[worker]]\nname = "bench"\nmain = "index.js"\nroutes = ["*"]\n' > "$work/edge.toml"
export ORDER_JSON=$root/benches/peers/order.json

start() { # binary -> PID
  case $1 in
    hyper) taskset -c 0 "$work/hyper" 127.0.0.1:9301 >/dev/null 2>&1 & ;;
    *) RUST_LOG=warn taskset -c 0 "$work/$1" serve --config "$work/edge.toml" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 1 400); do
    curl -sf -o /dev/null http://127.0.0.1:9301/ && return 0
    sleep 0.025
  done
  echo "$1 did not start" >&2
  return 1
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

run() { # binary workload -> "rps cpu_us"
  local -a load=(wrk -t1 -c32 http://127.0.0.1:9301/)
  [ "$2" = json ] && load=(wrk -t1 -c32 -s benches/peers/post.lua http://127.0.0.1:9301/json)
  start "$1"
  taskset -c 1 "${load[@]}" -d2s >/dev/null 2>&1 || true
  local t0 t1 out reqs rps
  t0=$(cpu_ticks "$PID")
  out=$(taskset -c 1 "${load[@]}" -d"${secs}s" 2>&1 || true)
  t1=$(cpu_ticks "$PID")
  kill "$PID"; wait "$PID" 2>/dev/null || true
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  echo "$rps $(echo "($t1-$t0)*1000000/$(getconf CLK_TCK)/$reqs" | bc -l | xargs printf "%.2f")"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "edge $rev (old) vs the working tree (new), hyper beside; $rounds rounds of ${secs}s"
for workload in hello json; do
  declare -A rps=() cpu=()
  for r in $(seq 1 "$rounds"); do
    for b in edge-old edge-new hyper; do
      [ "$workload" = json ] && [ "$b" = hyper ] && continue
      read -r x c < <(run "$b" "$workload")
      rps[$b]+="$x "; cpu[$b]+="$c "
      echo "  $workload round $r $b: $x req/s, $c us CPU/req"
    done
  done
  for b in edge-old edge-new hyper; do
    [ -z "${rps[$b]:-}" ] && continue
    echo "$workload $b median: $(echo "${rps[$b]}" | tr ' ' '\n' | grep . | median) req/s, $(echo "${cpu[$b]}" | tr ' ' '\n' | grep . | median) us CPU/req"
  done
  unset rps cpu
done
