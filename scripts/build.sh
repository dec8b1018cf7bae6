#!/usr/bin/env bash
# Builds everything that ships: the Worker and the SDK (with the demo's copy of it).
set -euo pipefail
source "$(dirname "$0")/env.sh"
step "build worker"; bash "$ROOT/scripts/build-worker.sh"
step "build sdk"; bash "$ROOT/scripts/build-sdk.sh"
