#!/usr/bin/env bash
# npm test: install what is missing, then every check CI runs, in order of cost.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/bootstrap.sh

step "native tests (smart-protocol, platform) and lints"
# The generated FHIR registry must be what its generator writes from the pinned definitions.
node scripts/gen-fhir-registry.mjs --check
cargo fmt --all --check
cargo test --quiet
cargo clippy --quiet --all-targets -- -D warnings
# The Worker and the SDK as they ship: for wasm32.
cargo clippy --quiet -p smart-edge-worker -p smart-edge-sdk --target wasm32-unknown-unknown --all-targets -- -D warnings

step "build (worker, sdk)"
bash scripts/build.sh
bash scripts/prebuilt-config.sh >/dev/null

step "sdk browser tests (headless Chromium)"
# wasm-bindgen's own test runner (installed with its CLI), driving Debian's chromedriver headless.
CHROMEDRIVER="$(command -v chromedriver)" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p smart-edge-sdk --target wasm32-unknown-unknown --test web

step "integration and end-to-end tests (workerd)"
node --test --test-concurrency=2 --test-timeout=300000 tests/*.test.mjs

step "deploy dry runs (offline, with the real wrangler.toml and its [build]): production, staging"
# The environments' own sections (bindings are not inherited) must be valid as wrangler reads them.
for env in production staging; do
  wrangler deploy --dry-run --env "$env" > ".wrangler/dry-run-$env.log" 2>&1 || { cat ".wrangler/dry-run-$env.log"; exit 1; }
done
grep -E "^Total Upload" .wrangler/dry-run-production.log

echo "npm test: all green in ${SECONDS}s"
