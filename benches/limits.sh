#!/usr/bin/env bash
# How long after its limit each attack of workers/attacks/index.js is
# stopped: serves it (cpu_ms 50, memory_mb 128 from the defaults, wall_ms
# 1000; and as host `mem.test` with cpu_ms 10000, memory_mb 64, so that the
# memory attacks meet their memory limit first) and prints, per attack, the
# status, the figure the server reports and the wall time of the request.
#
# ./benches/limits.sh
set -euo pipefail
. "$(dirname "$0")/../scripts/env.sh"
cargo build --release -q -p edge --bin edge
dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill $pid 2>/dev/null || true' EXIT
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
name = "attacks"
main = "attacks.js"
routes = ["*"]
TOML
RUST_LOG=warn target/release/edge serve --config "$dir/edge.toml" >/dev/null 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:9201/ >/dev/null; do sleep 0.05; done
printf "| attack | status | edge-limit | server's figure | request wall time |\n|---|---|---|---|---|\n"
for path in /spin /microtasks /timers /wasm-spin /regex /json /array-bomb /string-bomb /buffer /buffers /wasm-grow /wasm-grow-inside /wasm-instances /fill-sparse /copy-within /reverse-sparse /split-huge /sort-sparse /map-sparse /array-like /array-like-fill /slow \
  mem.test/json mem.test/array-bomb mem.test/string-bomb mem.test/wasm-grow mem.test/wasm-grow-inside mem.test/wasm-instances mem.test/split-array; do
  host=localhost
  case $path in *.test/*) host=${path%%/*}; path=/${path#*/} ;; esac
  out=$(curl -s -o "$dir/body" -w '%{http_code} %{time_total}' -D "$dir/headers" -H "host: $host" "http://127.0.0.1:9201$path")
  limit=$(awk -F': ' 'tolower($1)=="edge-limit" {print $2}' "$dir/headers" | tr -d '\r')
  figure=$(sed -n 2p "$dir/body" | sed 's/.*exceeded //')
  [ "$host" = localhost ] || path="$path on $host"
  printf "| %s | %s | %s | %s | %.1f ms |\n" "$path" "${out%% *}" "${limit:--}" "$figure" "$(echo "${out##* } * 1000" | bc -l)"
done
