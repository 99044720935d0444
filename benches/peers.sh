#!/usr/bin/env bash
# The peers side by side: edge, a bare hyper server (the ceiling), workerd
# and `deno serve`, each pinned to core 0 with the load generator on core 1,
# one after another in the same run, on the same worker (workers/bench):
#   hello, JSON API (POST 1 KB), 1 MiB stream over HTTP/1.1 keep-alive (wrk);
#   TLS handshakes, a new connection per request (wrk, Connection: close);
#   hello, JSON, stream over HTTP/2 with TLS (h2load);
#   cold start (process start to first response; for edge also a new host
#   served for the first time).
# Writes benches/results/peers.md and the table in BENCHMARKS.md.
#
#   ./benches/peers.sh [seconds per run, default 5]
#
# Installs what it needs: wrk, h2load (nghttp2-client), openssl (apt), and
# the peers from npm into ./bench-peers (never committed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
secs=${1:-5}
warm=2
WORKERD_VERSION=1.20261117.1
DENO_VERSION=2.9.6
peers=$root/bench-peers
work=$peers/run

# ---- tools and peers ---------------------------------------------------------
missing=()
for t in wrk:wrk h2load:nghttp2-client openssl:openssl curl:curl bc:bc taskset:util-linux python3:python3; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
workerd=$peers/node_modules/@cloudflare/workerd-linux-64/bin/workerd
deno=$peers/node_modules/@deno/linux-x64-glibc/deno
if [ ! -x "$workerd" ] || [ ! -x "$deno" ]; then
  mkdir -p "$peers"
  npm install --silent --no-audit --no-fund --prefix "$peers" \
    "@cloudflare/workerd-linux-64@$WORKERD_VERSION" "@deno/linux-x64-glibc@$DENO_VERSION" >&2
  chmod +x "$workerd" "$deno"
fi
cargo build --release -q -p edge --bin edge --example hyper_baseline
edge=$root/target/release/edge
hyper=$root/target/release/examples/hyper_baseline

# ---- the run folder: the worker, a certificate, configs ------------------------
rm -rf "$work" && mkdir -p "$work"
cp workers/bench/index.js benches/peers/deno_tls.js "$work/"
mkdir -p "$work/cold"
cp workers/hello/index.js "$work/cold/index.js"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:bench.localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
sed -e "s|@DIR@|$work|g" -e "s|@HTTP@|9221|" -e "s|@HTTPS@|9222|" benches/peers/workerd.capnp.in > "$work/workerd.capnp"
{
  printf '[listen]\nhttp = "127.0.0.1:9201"\nhttps = "127.0.0.1:9202"\n'
  printf '[runtime]\nthreads = 1\n[log]\naccess = false\n'
  printf '[[tls]]\nhosts = ["127.0.0.1", "bench.localhost"]\ncert = "cert.pem"\nkey = "key.pem"\ndefault = true\n'
  printf '[[worker]]\nname = "bench"\nmain = "index.js"\nroutes = ["*"]\n'
  for i in $(seq 0 19); do
    printf '[[worker]]\nname = "cold%d"\nmain = "cold/index.js"\nroutes = ["cold%d.localhost"]\n' "$i" "$i"
  done
} > "$work/edge.toml"
export ORDER_JSON=$root/benches/peers/order.json

# start_server NAME MODE(plain|tls): sets PID and PORT.
start_server() {
  local name=$1 mode=$2 tls=0
  [ "$mode" = tls ] && tls=1
  case $name in
    edge) PORT=$((9201 + tls)); RUST_LOG=warn taskset -c 0 "$edge" serve --config "$work/edge.toml" >/dev/null 2>&1 & ;;
    hyper) PORT=$((9211 + tls))
      if [ $tls = 1 ]; then taskset -c 0 "$hyper" "127.0.0.1:$PORT" --tls "$work/cert.pem" "$work/key.pem" >/dev/null 2>&1 &
      else taskset -c 0 "$hyper" "127.0.0.1:$PORT" >/dev/null 2>&1 & fi ;;
    workerd) PORT=$((9221 + tls)); taskset -c 0 "$workerd" serve "$work/workerd.capnp" >/dev/null 2>&1 & ;;
    deno) PORT=$((9231 + tls))
      if [ $tls = 1 ]; then taskset -c 0 "$deno" run -A "$work/deno_tls.js" "$PORT" "$work/cert.pem" "$work/key.pem" >/dev/null 2>&1 &
      else taskset -c 0 "$deno" serve -A --host 127.0.0.1 --port "$PORT" "$work/index.js" >/dev/null 2>&1 & fi ;;
  esac
  PID=$!
  local scheme=http
  [ $tls = 1 ] && scheme=https
  for _ in $(seq 1 400); do
    curl -skf -o /dev/null "$scheme://127.0.0.1:$PORT/" && return 0
    sleep 0.025
  done
  echo "$name ($mode) did not start" >&2
  return 1
}

stop_server() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# One measured row: "rps p50 p99 errors cpu_us rss_mb".
measure() { # server mode workload
  local server=$1 mode=$2 workload=$3 out t0 t1 reqs rps p50 p99 errs rss
  start_server "$server" "$mode" || { echo "- - - start-failed - -"; return; }
  local url="http://127.0.0.1:$PORT"
  [ "$mode" = tls ] && url="https://127.0.0.1:$PORT"
  local -a load
  case $workload in
    hello-h1) load=(wrk -t1 -c32 --latency "$url/") ;;
    json-h1) load=(wrk -t1 -c32 --latency -s benches/peers/post.lua "$url/json") ;;
    stream-h1) load=(wrk -t1 -c16 --latency "$url/stream") ;;
    tls-handshake) load=(wrk -t1 -c32 --latency -H "Connection: close" "$url/") ;;
    hello-h2) load=(h2load -c16 -m8 "$url/") ;;
    json-h2) load=(h2load -c16 -m8 -d "$ORDER_JSON" -H "content-type: application/json" "$url/json") ;;
    stream-h2) load=(h2load -c8 -m2 "$url/stream") ;;
  esac
  if [ "${load[0]}" = wrk ]; then
    taskset -c 1 "${load[@]}" -d"${warm}s" >/dev/null 2>&1 || true
    t0=$(cpu_ticks "$PID")
    out=$(taskset -c 1 "${load[@]}" -d"${secs}s" 2>&1 || true)
    t1=$(cpu_ticks "$PID")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(",", ""); n+=$4+$6+$8+$10} END {print n+0}')
  else
    taskset -c 1 "${load[@]}" -D "$warm" >/dev/null 2>&1 || true
    t0=$(cpu_ticks "$PID")
    out=$(taskset -c 1 "${load[@]}" -D "$secs" 2>&1 || true)
    t1=$(cpu_ticks "$PID")
    reqs=$(echo "$out" | awk '/^requests:/ {print $8}')
    rps=$(echo "$out" | awk '/^finished in/ {printf "%.0f", $4}')
    p50="$(echo "$out" | awk '/^time for request:/ {print $6}')(mean)"
    p99=$(echo "$out" | awk '/^time for request:/ {print $5}')"(max)"
    errs=$(echo "$out" | awk '/^requests:/ {gsub(",", ""); print $10+$12+$14}')
    [ -z "$reqs" ] && { reqs=0; rps=0; errs="failed: $(echo "$out" | grep -m1 -iE 'error|fail|no protocol' | tr ' ' '_')"; }
  fi
  rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status")
  local cpu="-"
  [ "${reqs:-0}" -gt 0 ] 2>/dev/null && cpu=$(echo "($t1-$t0)*1000000/$(getconf CLK_TCK)/$reqs" | bc -l | xargs printf "%.1f")
  stop_server
  echo "${rps:-0} ${p50:--} ${p99:--} ${errs:-0} $cpu ${rss:--}"
}

servers=(edge hyper workerd deno)
workloads=(hello-h1:plain json-h1:plain stream-h1:plain tls-handshake:tls hello-h2:tls json-h2:tls stream-h2:tls)
declare -A row
for w in "${workloads[@]}"; do
  for s in "${servers[@]}"; do
    echo "running $s ${w%%:*} ..." >&2
    row[$s,${w%%:*}]=$(measure "$s" "${w##*:}" "${w%%:*}")
  done
done

# Cold starts: process start to first response, median of 5.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
coldproc() { # name port cmd...
  local port=$1; shift
  for _ in 1 2 3 4 5; do python3 benches/peers/coldstart.py process "$port" 127.0.0.1 -- taskset -c 0 "$@"; done | median
}
cold_edge=$(RUST_LOG=warn coldproc 9201 "$edge" serve --config "$work/edge.toml")
cold_hyper=$(coldproc 9211 "$hyper" 127.0.0.1:9211)
cold_workerd=$(coldproc 9221 "$workerd" serve "$work/workerd.capnp")
cold_deno=$(coldproc 9231 "$deno" serve -A --host 127.0.0.1 --port 9231 "$work/index.js")
start_server edge plain
sleep 0.5
hosts=$(for i in $(seq 0 19); do printf 'cold%d.localhost ' "$i"; done)
newhost=$(taskset -c 1 python3 benches/peers/coldstart.py hosts 9201 $hosts | median)
# The same probe on a worker already warm, and on hyper: what a request
# costs after 100 ms of idleness on this machine, cold start or not.
warmhosts=$(for i in $(seq 0 19); do printf 'cold%d.localhost ' "$((i % 3))"; done)
idle_edge=$(taskset -c 1 python3 benches/peers/coldstart.py hosts 9201 $warmhosts | median)
stop_server
start_server hyper plain
idle_hyper=$(taskset -c 1 python3 benches/peers/coldstart.py hosts 9211 $warmhosts | median)
stop_server

# ---- the table -----------------------------------------------------------------
mkdir -p benches/results
report=benches/results/peers.md
{
  echo "Run $(date -u +%Y-%m-%d) on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r)."
  echo "Each server pinned to core 0, the load generator to core 1; ${warm} s warm-up, then ${secs} s measured."
  echo "workerd $WORKERD_VERSION, deno $DENO_VERSION, edge $(git rev-parse --short HEAD) (access log off, as the peers log nothing per request)."
  echo "HTTP/1.1: wrk -t1 (32 connections; 16 for the stream). HTTP/2: h2load over TLS (16 connections × 8 streams; 8 × 2 for the stream), which reports mean and max latency, not percentiles."
  echo
  echo "| workload | server | requests/s | vs edge | p50 | p99 | errors | server CPU µs/req | peak RSS MB |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for w in "${workloads[@]}"; do
    w=${w%%:*}
    read -r erps _ <<<"${row[edge,$w]}"
    for s in "${servers[@]}"; do
      read -r rps p50 p99 errs cpu rss <<<"${row[$s,$w]}"
      ratio=-
      if [[ "$rps" =~ ^[0-9]+$ && "$erps" =~ ^[0-9]+$ && "$erps" -gt 0 ]]; then
        ratio=$(echo "$rps / $erps" | bc -l | xargs printf "%.2f")
      fi
      echo "| $w | $s | $rps | $ratio | $p50 | $p99 | $errs | $cpu | $rss |"
    done
  done
  echo
  echo "| cold start (median of 5) | ms |"
  echo "|---|---|"
  echo "| edge: new host, first request (20 never-served workers, 100 ms apart, client side, connect included) | $newhost |"
  echo "| edge: warm worker, a request after 100 ms idle (same probe) | $idle_edge |"
  echo "| hyper: a request after 100 ms idle (same probe; this machine's floor) | $idle_hyper |"
  echo "| edge: process start to first response | $cold_edge |"
  echo "| hyper: process start to first response | $cold_hyper |"
  echo "| workerd: process start to first response | $cold_workerd |"
  echo "| deno serve: process start to first response | $cold_deno |"
} > "$report"
cat "$report"
python3 - "$report" <<'PY'
import re, sys
table = open(sys.argv[1]).read()
doc = open("BENCHMARKS.md").read()
begin, end = "<!-- peers:begin -->", "<!-- peers:end -->"
block = f"{begin}\n{table}{end}"
if begin in doc:
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
else:
    doc += "\n## Side by side with workerd, Deno and hyper\n\n`./benches/peers.sh`\n\n" + block + "\n"
open("BENCHMARKS.md", "w").write(doc)
PY
