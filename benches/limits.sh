#!/usr/bin/env bash
# How long after its limit each attack of workers/attacks/index.js is
# stopped: serves it (cpu_ms 50, memory_mb 128 from the defaults, wall_ms
# 1000; and as host `mem.test` with cpu_ms 10000, memory_mb 64, so that the
# memory attacks meet their memory limit first) and prints, per attack, the
# status, the figure the server reports, the wall time of the request, the
# server's peak resident memory during it, and how many requests of a
# bystander worker (benches/limits/bystander.py: one every 10 ms on its own
# connection) failed meanwhile.
#
# ./benches/limits.sh
set -euo pipefail
. "$(dirname "$0")/../scripts/env.sh"
cargo build --release -q -p edge --bin edge
dir=$(mktemp -d)
pid=
bystander=
trap 'rm -rf "$dir"; kill $pid $bystander 2>/dev/null || true' EXIT
cp workers/attacks/index.js "$dir/attacks.js"
cat > "$dir/edge.toml" <<TOML
[listen]
http = "127.0.0.1:9201"
[runtime]
threads = 1
[limits]
wall_ms = 1000
[[worker]]
name = "mem"
main = "attacks.js"
routes = ["mem.test"]
[worker.limits]
cpu_ms = 10000
memory_mb = 64
[[worker]]
name = "bystander"
main = "attacks.js"
routes = ["bystander.test"]
[[worker]]
name = "attacks"
main = "attacks.js"
routes = ["*"]
TOML
# A 512 MiB gzip bomb (~2.4 MB) for the decompression attacks.
head -c 512M /dev/zero | gzip -1 > "$dir/bomb.gz"
RUST_LOG=warn target/release/edge serve --config "$dir/edge.toml" >/dev/null 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:9201/ >/dev/null; do sleep 0.05; done
python3 benches/limits/bystander.py "$dir/failed" &
bystander=$!
sleep 0.2
printf "| attack | status | edge-limit | server's figure | request wall time | peak RSS | bystander failures |\n|---|---|---|---|---|---|---|\n"
for path in /spin /microtasks /timers /wasm-spin /regex /json /array-bomb /string-bomb /buffer /buffers /wasm-grow /wasm-grow-inside /wasm-instances /fill-sparse /copy-within /reverse-sparse /split-huge /sort-sparse /map-sparse /array-like /array-like-fill /slow \
  mem.test/json mem.test/array-bomb mem.test/string-bomb mem.test/wasm-grow mem.test/wasm-grow-inside mem.test/wasm-instances mem.test/split-array \
  /heap-objects /heap-arrays /heap-maps /heap-strings /heap-closures /heap-typed \
  mem.test/heap-objects mem.test/heap-arrays mem.test/heap-maps mem.test/heap-strings mem.test/heap-closures mem.test/heap-typed \
  /gunzip-count mem.test/gunzip-keep /keys-string /clone-strings; do
  host=localhost
  case $path in *.test/*) host=${path%%/*}; path=/${path#*/} ;; esac
  body=()
  case $path in /gunzip-*) body=(--data-binary "@$dir/bomb.gz") ;; esac
  echo 5 > "/proc/$pid/clear_refs" # resets the peak RSS
  before=$(cat "$dir/failed" 2>/dev/null || echo 0)
  out=$(curl -s "${body[@]}" -o "$dir/body" -w '%{http_code} %{time_total}' -D "$dir/headers" -H "host: $host" "http://127.0.0.1:9201$path")
  sleep 0.05
  peak=$(awk '/VmHWM/ {printf "%d MB", $2 / 1024}' "/proc/$pid/status")
  failed=$(( $(cat "$dir/failed" 2>/dev/null || echo 0) - before ))
  limit=$(awk -F': ' 'tolower($1)=="edge-limit" {print $2}' "$dir/headers" | tr -d '\r')
  figure=$(sed -n 2p "$dir/body" | sed 's/.*exceeded //')
  [ "$host" = localhost ] || path="$path on $host"
  printf "| %s | %s | %s | %s | %.1f ms | %s | %s |\n" "$path" "${out%% *}" "${limit:--}" "$figure" "$(echo "${out##* } * 1000" | bc -l)" "$peak" "$failed"
done
