#!/usr/bin/env bash
# Builds the Worker (Rust → wasm → worker/build/) with no download: wasm-bindgen, wasm-opt and
# esbuild come from scripts/bootstrap.sh. Called by wrangler's [build] and by scripts/build.sh.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/worker"
worker-build --release
