#!/usr/bin/env bash
# Builds the Worker (Rust → wasm → worker/build/) with the tools bootstrap installed: cargo,
# wasm-bindgen (the CLI equal to the crate), wasm-opt and esbuild from npm. Called by wrangler's
# [build] and by scripts/build.sh. Writes to a staging directory and swaps it in at the end, so
# an interrupted build never leaves a half-written worker/build/.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# One build at a time (wrangler's [build] and scripts/build.sh may start together): the others
# wait, then find the output current and skip.
mkdir -p "$ROOT/worker"
exec 9>"$ROOT/worker/.build.lock"
flock 9

PROFILE="${WORKER_PROFILE:-release}"
OUT="$ROOT/worker/build"
STAGE="$ROOT/worker/build.staging"

cargo build --quiet -p smart-edge-worker --target wasm32-unknown-unknown --profile "$PROFILE"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WASM="$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/smart_edge_worker.wasm"

# cargo is incremental, the rest is not (wasm-opt alone takes 10-20 s): when the compiled wasm
# and this recipe are what the last build started from, worker/build/ is already their output
# (wrangler's [build] runs this again before a deploy or `wrangler dev`).
INPUTS="$(cat "$WASM" worker/entry.mjs "$0" | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/index.js" ] && [ "$(cat "$OUT/.inputs" 2>/dev/null)" = "$INPUTS" ]; then
  exit 0
fi
rm -rf "$STAGE"
mkdir -p "$STAGE"

# JS bindings for the module target; the reset function and the abort handler let
# worker/entry.mjs restart the instance after a panic.
wasm-bindgen "$WASM" \
  --out-dir "$STAGE" --out-name smart_edge --target module --no-typescript \
  --experimental-reset-state-function --force-enable-abort-handler

# The feature set is explicit, not --all-features, so binaryen never emits an encoding
# workerd does not run yet; --debuginfo keeps the name section for panic stack traces.
wasm-opt -O --debuginfo \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling \
  "$STAGE/smart_edge_bg.wasm" -o "$STAGE/smart_edge_bg.wasm"

cp worker/entry.mjs "$STAGE/entry.mjs"
esbuild "$STAGE/entry.mjs" --bundle --format=esm --minify --log-level=warning \
  --external:./smart_edge_bg.wasm --external:'cloudflare:*' --outfile="$STAGE/index.js"
# wasm-bindgen writes a source-phase import (`import source m from "./x.wasm"`); wrangler's
# bundler takes the plain form, which workerd also gives a WebAssembly.Module for.
node -e '
  const fs = require("node:fs"), file = process.argv[1];
  const text = fs.readFileSync(file, "utf8"), plain = text.replaceAll("import source ", "import ");
  if (plain === text && !/import\s*\w+\s*from\s*"\.\/smart_edge_bg\.wasm"/.test(text)) {
    console.error("build-worker: the wasm import was not found in " + file); process.exit(1);
  }
  fs.writeFileSync(file, plain);
' "$STAGE/index.js"
rm -rf "$STAGE/entry.mjs" "$STAGE/smart_edge.js" "$STAGE/snippets"
echo "$INPUTS" > "$STAGE/.inputs"

rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$STAGE" "$OUT"
rm -rf "$OUT.old"
