#!/usr/bin/env bash
# WebCrypto side by side: edge, `deno serve` and workerd, each pinned to
# core 0 with the client on core 1, one after another in the same run, on
# the same worker (benches/webcrypto/worker.js, keys made by openssl):
# RSA-2048 key generation, RS256 and ES256 sign and verify (1 KiB), HMAC
# SHA-256 and AES-GCM of 1 KiB, SHA-256 of 1 MiB. Each op's time is a
# request running it N times less a request running it 0 times (medians
# of ROUNDS), timed by the client: workerd's clock stands still while a
# request computes.
#
#   ./benches/webcrypto.sh [rounds, default 3]
#
# Writes benches/results/webcrypto.md. Installs the peers from npm into
# ./bench-peers (never committed), as peers.sh does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
rounds=${1:-3}
WORKERD_VERSION=1.20261117.1
DENO_VERSION=2.9.6
peers=$root/bench-peers
work=$peers/webcrypto
workerd=$peers/node_modules/@cloudflare/workerd-linux-64/bin/workerd
deno=$peers/node_modules/@deno/linux-x64-glibc/deno
for t in curl openssl taskset python3; do
  command -v $t >/dev/null || { echo "webcrypto.sh needs $t" >&2; exit 1; }
done
if [ ! -x "$workerd" ] || [ ! -x "$deno" ]; then
  mkdir -p "$peers"
  npm install --silent --no-audit --no-fund --prefix "$peers" \
    "@cloudflare/workerd-linux-64@$WORKERD_VERSION" "@deno/linux-x64-glibc@$DENO_VERSION" >&2
  chmod +x "$workerd" "$deno"
fi
cargo build --release -q -p edge --bin edge
edge=$root/target/release/edge

rm -rf "$work" && mkdir -p "$work"
b64() { openssl base64 -A; }
# PKCS#8 and SPKI, DER.
for k in rsa:"-algorithm RSA -pkeyopt rsa_keygen_bits:2048" ec:"-algorithm EC -pkeyopt ec_paramgen_curve:P-256"; do
  # shellcheck disable=SC2086
  openssl genpkey ${k#*:} -out "$work/${k%%:*}.pem" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$work/${k%%:*}.pem" -outform DER -out "$work/${k%%:*}.der"
  openssl pkey -in "$work/${k%%:*}.pem" -pubout -outform DER -out "$work/${k%%:*}.pub.der"
done
sed -e "s|@RSA_PKCS8@|$(b64 < "$work/rsa.der")|" -e "s|@RSA_SPKI@|$(b64 < "$work/rsa.pub.der")|" \
  -e "s|@EC_PKCS8@|$(b64 < "$work/ec.der")|" -e "s|@EC_SPKI@|$(b64 < "$work/ec.pub.der")|" \
  benches/webcrypto/worker.js > "$work/worker.js"
sed -e "s|@PORT@|9261|" benches/webcrypto/workerd.capnp.in > "$work/workerd.capnp"
printf '[listen]\nhttp = "127.0.0.1:9251"\n[runtime]\nthreads = 1\n[log]\naccess = false\n[limits]\ncpu_ms = 600000\nwall_ms = 600000\n[[worker]]\nname = "bench"\nmain = "worker.js"\nroutes = ["*"]\n' > "$work/edge.toml"

# op:N, N chosen so that a request takes ~0.2-2 s on each.
ops=(rsa2048-keygen:4 rs256-sign:100 rs256-verify:2000 es256-sign:2000 es256-verify:2000
  hmac-sha256-1k:20000 aes-gcm-1k:20000 sha256-1m:100)

start() {
  case $1 in
    edge) PORT=9251; RUST_LOG=warn taskset -c 0 "$edge" serve --config "$work/edge.toml" >/dev/null 2>&1 & ;;
    deno) PORT=9271; taskset -c 0 "$deno" serve -A --host 127.0.0.1 --port $PORT "$work/worker.js" >/dev/null 2>&1 & ;;
    workerd) PORT=9261; taskset -c 0 "$workerd" serve "$work/workerd.capnp" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  trap 'kill $PID 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/?op=sha256-1m&n=0" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}
# seconds of one request
timed() { taskset -c 1 curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/?op=$1&n=$2"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

declare -A us
for server in edge deno workerd; do
  start $server
  for spec in "${ops[@]}"; do
    op=${spec%%:*}; n=${spec##*:}
    timed "$op" 1 >/dev/null  # warm: keys imported, code compiled
    base=(); full=()
    for _ in $(seq "$rounds"); do
      base+=("$(timed "$op" 0)"); full+=("$(timed "$op" "$n")")
    done
    us[$server,$op]=$(python3 -c "print(round(($(median "${full[@]}") - $(median "${base[@]}")) * 1e6 / $n, 1))")
    echo "  $server $op: ${us[$server,$op]} us" >&2
  done
  kill $PID; wait $PID 2>/dev/null || true
done

mkdir -p benches/results
{
  echo "WebCrypto, microseconds per operation (lower is better; medians of $rounds, each N in one request less a request of 0)."
  echo "edge $(git rev-parse --short HEAD), deno $DENO_VERSION, workerd $WORKERD_VERSION; one core each, the client on another."
  echo
  echo "| operation | edge | deno | workerd | edge / slower peer |"
  echo "|---|---|---|---|---|"
  for spec in "${ops[@]}"; do
    op=${spec%%:*}
    e=${us[edge,$op]}; d=${us[deno,$op]}; w=${us[workerd,$op]}
    echo "| $op | $e | $d | $w | $(python3 -c "print(round($e / max($d, $w), 2))") |"
  done
} | tee benches/results/webcrypto.md
