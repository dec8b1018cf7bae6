#!/usr/bin/env bash
# Builds the browser SDK: sdk-wasm/pkg (the npm package: the ES module smart-edge.js, its
# .d.ts, the wasm and its glue) and demo-app/sdk (the same build served by the Worker at
# /sdk/smart-edge.js, the wasm and glue under content-hashed names so they can be cached
# forever while the entry module stays short-cached).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# --mode no-install: never download; wasm-opt runs below from npm's binaryen.
wasm-pack --quiet build sdk-wasm --profile sdk --target web --mode no-install --out-dir pkg
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  sdk-wasm/pkg/smart_edge_sdk_bg.wasm -o sdk-wasm/pkg/smart_edge_sdk_bg.wasm
cp sdk-wasm/js/smart-edge.js sdk-wasm/js/smart-edge.d.ts sdk-wasm/js/README.md sdk-wasm/pkg/
node -e '
  const fs = require("fs");
  const path = "sdk-wasm/pkg/package.json";
  const pkg = JSON.parse(fs.readFileSync(path, "utf8"));
  Object.assign(pkg, {
    name: "smart-edge-sdk",
    description: "SMART App Launch 2.2 client for pure HTML/JS apps (Rust/wasm): launch, PKCE, verified ID token, refresh, FHIR requests.",
    type: "module",
    main: "smart-edge.js",
    module: "smart-edge.js",
    types: "smart-edge.d.ts",
    exports: { ".": { types: "./smart-edge.d.ts", default: "./smart-edge.js" } },
    files: ["smart-edge.js", "smart-edge.d.ts", "smart_edge_sdk.js", "smart_edge_sdk_bg.wasm", "README.md"],
    sideEffects: ["./smart-edge.js"],
  });
  fs.writeFileSync(path, JSON.stringify(pkg, null, 2) + "\n");
'
hash="$(cat sdk-wasm/pkg/smart_edge_sdk.js sdk-wasm/pkg/smart_edge_sdk_bg.wasm | sha256sum | cut -c1-12)"
rm -rf demo-app/sdk && mkdir -p demo-app/sdk
cp sdk-wasm/pkg/smart_edge_sdk_bg.wasm "demo-app/sdk/smart_edge_sdk_bg.$hash.wasm"
# The served copies are minified (the npm package keeps readable files for the app's bundler).
sed "s/smart_edge_sdk_bg\.wasm/smart_edge_sdk_bg.$hash.wasm/g" sdk-wasm/pkg/smart_edge_sdk.js | "$ESBUILD_BIN" --minify --format=esm --log-level=warning > "demo-app/sdk/smart_edge_sdk.$hash.js"
sed "s#\./smart_edge_sdk\.js#./smart_edge_sdk.$hash.js#" sdk-wasm/js/smart-edge.js | "$ESBUILD_BIN" --minify --format=esm --log-level=warning > demo-app/sdk/smart-edge.js
cp sdk-wasm/js/smart-edge.d.ts demo-app/sdk/
grep -q "smart_edge_sdk_bg.$hash.wasm" "demo-app/sdk/smart_edge_sdk.$hash.js" || { echo "build-sdk: the glue does not name the wasm as expected" >&2; exit 1; }
