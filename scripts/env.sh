# Sourced by the other scripts: the paths and settings every step shares.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false
export WRANGLER_HIDE_BANNER=true
step() { printf '\n== %s (t=%ss)\n' "$*" "$SECONDS"; }
