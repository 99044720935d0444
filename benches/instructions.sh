#!/usr/bin/env bash
# Instructions per request on the warm path, counted by valgrind (callgrind),
# for edge binaries side by side: a measure that does not move with the
# machine's speed (this machine's timings move 2-3x between runs, and
# CPU-per-request comparisons drown in that noise).
#
#   ./benches/instructions.sh BINARY... [-- PATH, default /]
#
# Each binary serves workers/bench on one executor thread under callgrind
# (threads counted apart; V8 --predictable, so that its JIT and GC do the
# same work in every run); a keep-alive client sends N1 and then, in a
# second run, N2 requests. The executor thread's instructions per request
# are (I(N2) - I(N1)) / (N2 - N1): start-up, snapshot and isolate creation
# cancel out. Installs valgrind if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bins=()
path=/
while [ $# -gt 0 ]; do
  case $1 in
    --) path=$2; shift 2 ;;
    *) bins+=("$(realpath "$1")"); shift ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || { echo "usage: instructions.sh BINARY... [-- PATH]" >&2; exit 2; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
n1=${N1:-1000}
n2=${N2:-6000}
work=$(mktemp -d)
trap 'pkill -f "$work/edge.toml" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "$root/workers/bench/index.js" "$work/"
printf '[listen]\nhttp = "127.0.0.1:9302"\n[runtime]\nthreads = 1\n[log]\naccess = false\n[[worker]]\nname = "bench"\nmain = "index.js"\nroutes = ["*"]\n' > "$work/edge.toml"

client() { # N: sends N GET requests on one keep-alive connection
  python3 - "$1" "$path" <<'EOF'
import socket, sys
n, path = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", 9302))
req = f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if len(rest) >= length:
                buf = rest[length:]
                break
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
EOF
}

count() { # binary N -> executor thread's instructions
  local bin=$1 n=$2 out="$work/cg"
  rm -f "$out".*
  RUST_LOG=warn EDGE_V8_FLAGS="--predictable" valgrind --tool=callgrind --separate-threads=yes --smc-check=all-non-file \
    --dump-instr=no --callgrind-out-file="$out.%p" \
    "$bin" serve --config "$work/edge.toml" >/dev/null 2>"$work/vg.log" &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null http://127.0.0.1:9302/ && break
    sleep 0.1
  done
  client "$n"
  kill -TERM "$pid"
  wait "$pid" || true
  # The executor thread is the one that ran the most instructions.
  local best=0
  for f in "$out".*; do
    local ir
    ir=$(awk '/^summary:/ {print $2}' "$f")
    [ -n "$ir" ] && [ "$ir" -gt "$best" ] && best=$ir
  done
  echo "$best"
}

printf 'instructions per request on %s (N1=%s, N2=%s; executor thread)\n' "$path" "$n1" "$n2"
for bin in "${bins[@]}"; do
  a=$(count "$bin" "$n1")
  b=$(count "$bin" "$n2")
  echo "$bin: $(( (b - a) / (n2 - n1) )) instructions/request"
done
