#!/usr/bin/env bash
# Builds the browser SDK into sdk-wasm/pkg (the npm package) and copies it for the demo app.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# --mode no-install: never download; wasm-opt runs below from npm's binaryen.
wasm-pack --quiet build sdk-wasm --release --target web --mode no-install --out-dir pkg
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  sdk-wasm/pkg/smart_edge_sdk_bg.wasm -o sdk-wasm/pkg/smart_edge_sdk_bg.wasm
rm -rf demo-app/sdk && mkdir -p demo-app/sdk
cp sdk-wasm/pkg/smart_edge_sdk.js sdk-wasm/pkg/smart_edge_sdk_bg.wasm sdk-wasm/pkg/smart_edge_sdk.d.ts demo-app/sdk/
