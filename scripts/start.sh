#!/usr/bin/env bash
# npm start: install what is missing, build, then serve on 127.0.0.1:8787 (scripts/start.mjs).
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash "$ROOT/scripts/bootstrap.sh"
bash "$ROOT/scripts/build.sh"
bash "$ROOT/scripts/prebuilt-config.sh" >/dev/null
exec node "$ROOT/scripts/start.mjs"
