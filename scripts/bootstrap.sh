#!/usr/bin/env bash
# Installs what this machine lacks to build, run and test smart-edge. Idempotent: a warm run
# checks versions and returns in about a second. Reaches only crates.io, npm and Debian.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

has_version() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qE "(^| )v?$2\$"; }

# Debian: chromium + chromium-driver for the browser tests (no browser download from elsewhere).
missing=()
for p in chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rust: wasm32 target"; rustup target add wasm32-unknown-unknown
fi

# npm packages, pinned in package-lock.json; reinstalled only when the lock changes.
if ! cmp -s package-lock.json node_modules/.bootstrap-lock.json 2>/dev/null; then
  step "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.bootstrap-lock.json
fi

# The wasm-bindgen CLI must equal the wasm-bindgen crate in Cargo.lock exactly (read with
# smol-toml, just installed above).
WASM_BINDGEN_VERSION="$(node --input-type=module -e '
  import { readFileSync } from "node:fs";
  import { parse } from "smol-toml";
  const found = parse(readFileSync("Cargo.lock", "utf8")).package.find((p) => p.name === "wasm-bindgen");
  if (found) console.log(found.version);
')"
[ -n "$WASM_BINDGEN_VERSION" ] || { echo "bootstrap: no wasm-bindgen in Cargo.lock" >&2; exit 1; }

# Compiled from crates.io: the prebuilt binaries these tools would fetch live on GitHub.
if ! has_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  step "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lockfile pins a webpki-roots version crates.io no longer serves.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# Python: the independent FHIR R4 validator and OAuth clients the tests run (fhir.resources,
# authlib, fhirclient; pinned in tests/python/requirements.txt, from PyPI).
if ! cmp -s tests/python/requirements.txt .venv/.bootstrap-requirements.txt 2>/dev/null; then
  step "python venv: tests/python/requirements.txt"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/.bootstrap-requirements.txt
fi

