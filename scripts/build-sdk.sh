#!/usr/bin/env bash
# Builds the browser SDK: sdk-wasm/pkg (the npm package: the ES module smart-edge.js, its
# .d.ts, the wasm and its glue) and demo-app/sdk (the same build served by the Worker at
# /sdk/smart-edge.js: the module and its glue bundled, the wasm under a content-hashed name so
# it can be cached forever while the entry module stays short-cached).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# cargo, then the wasm-bindgen CLI that matches Cargo.lock, then npm's wasm-opt: nothing downloads.
cargo build --quiet -p smart-edge-sdk --lib --profile sdk --target wasm32-unknown-unknown
rm -rf sdk-wasm/pkg
wasm-bindgen --target web --out-dir sdk-wasm/pkg "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/sdk/smart_edge_sdk.wasm"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  sdk-wasm/pkg/smart_edge_sdk_bg.wasm -o sdk-wasm/pkg/smart_edge_sdk_bg.wasm
cp sdk-wasm/js/smart-edge.js sdk-wasm/js/smart-edge.d.ts sdk-wasm/js/README.md sdk-wasm/pkg/
node --input-type=module -e '
  import { readFileSync, writeFileSync } from "node:fs";
  import { parse } from "smol-toml";
  const cargo = parse(readFileSync("Cargo.toml", "utf8"));
  const pkg = {
    name: "smart-edge-sdk",
    version: cargo.workspace.package.version,
    description: "SMART App Launch 2.2 client for pure HTML/JS apps (Rust/wasm): launch, PKCE, verified ID token, refresh, FHIR requests.",
    license: cargo.workspace.package.license,
    type: "module",
    main: "smart-edge.js",
    module: "smart-edge.js",
    types: "smart-edge.d.ts",
    exports: { ".": { types: "./smart-edge.d.ts", default: "./smart-edge.js" } },
    files: ["smart-edge.js", "smart-edge.d.ts", "smart_edge_sdk.js", "smart_edge_sdk_bg.wasm", "README.md"],
    sideEffects: ["./smart-edge.js"],
  };
  writeFileSync("sdk-wasm/pkg/package.json", JSON.stringify(pkg, null, 2) + "\n");
'
hash="$(cat sdk-wasm/pkg/smart_edge_sdk.js sdk-wasm/pkg/smart_edge_sdk_bg.wasm | sha256sum | cut -c1-12)"
rm -rf demo-app/sdk && mkdir -p demo-app/sdk
cp sdk-wasm/pkg/smart_edge_sdk_bg.wasm "demo-app/sdk/smart_edge_sdk_bg.$hash.wasm"
# The served entry module is the ES module and its glue bundled into one minified file (one
# request less before the wasm can be fetched; the npm package keeps readable, separate files
# for the app's own bundler). The glue names the wasm by its content hash.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s/smart_edge_sdk_bg\.wasm/smart_edge_sdk_bg.$hash.wasm/g" sdk-wasm/pkg/smart_edge_sdk.js > "$work/smart_edge_sdk.js"
cp sdk-wasm/js/smart-edge.js "$work/"
esbuild "$work/smart-edge.js" --bundle --minify --format=esm --log-level=warning --outfile=demo-app/sdk/smart-edge.js
cp sdk-wasm/js/smart-edge.d.ts demo-app/sdk/
grep -q "smart_edge_sdk_bg.$hash.wasm" demo-app/sdk/smart-edge.js || { echo "build-sdk: the bundle does not name the wasm as expected" >&2; exit 1; }
