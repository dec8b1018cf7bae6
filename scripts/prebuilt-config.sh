#!/usr/bin/env bash
# Writes .wrangler/prebuilt.toml: wrangler.toml without [build], with paths made absolute, so
# `wrangler dev` serves what scripts/build.sh built instead of building it twice more.
set -euo pipefail
source "$(dirname "$0")/env.sh"
mkdir -p "$ROOT/.wrangler"
awk -v root="$ROOT" '
  /^\[build\]/ { skip = 1; next }
  /^\[/ { skip = 0 }
  skip { next }
  /^main = / { print "main = \"" root "/worker/build/index.js\""; next }
  /^directory = / { print "directory = \"" root "/demo-app\""; next }
  { print }
' "$ROOT/wrangler.toml" > "$ROOT/.wrangler/prebuilt.toml"
echo "$ROOT/.wrangler/prebuilt.toml"
