# Sourced by the other scripts: the paths and settings every step shares.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false
export WRANGLER_HIDE_BANNER=true
# worker-build would download these from GitHub; use the installed ones.
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
step() { printf '\n== %s (t=%ss)\n' "$*" "$SECONDS"; }
