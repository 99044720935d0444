# Sourced by the scripts: the environment cargo needs here.
# Offline machines build V8 from the prebuilt archive in ../shared/v8 (the v8
# crate would otherwise download it); online machines need nothing.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="$root/../shared/v8/librusty_v8_simdutf_release_x86_64-unknown-linux-gnu.a.gz"
if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -f "$archive" ]; then
  RUSTY_V8_ARCHIVE="$(realpath "$archive")"
  export RUSTY_V8_ARCHIVE
elif [ -z "${RUSTY_V8_ARCHIVE:-}" ]; then
  echo "scripts/env.sh: no prebuilt V8 at $archive and RUSTY_V8_ARCHIVE is not set:" >&2
  echo "  the v8 crate will try to download its library (this fails without internet access;" >&2
  echo "  put the archive there or export RUSTY_V8_ARCHIVE=/path/to/librusty_v8_simdutf_release_x86_64-unknown-linux-gnu.a.gz)" >&2
elif [ ! -f "$RUSTY_V8_ARCHIVE" ]; then
  echo "scripts/env.sh: RUSTY_V8_ARCHIVE=$RUSTY_V8_ARCHIVE does not exist" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs (1.85 or newer)" >&2
  exit 1
fi
cd "$root"
