#!/usr/bin/env bash
# Runs a command as on a fresh machine, to measure the README's fresh-setup times: a new clone
# of this repository's HEAD and a new $HOME (no cargo registry, no cargo-installed tools, empty
# npm and pip caches). Kept: the rustup toolchains (RUSTUP_HOME), Debian's packages, Node, Python.
#   bash scripts/fresh-machine.sh <name> npm test     # in /tmp/fresh-<name>/work/main
# Run it alone: it uses both cores for minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
name=$1; shift
F="/tmp/fresh-$name"
RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
rustup_bin="$(command -v rustup)"
PYTHON_DIR="$(dirname "$(command -v python3)")"
rm -rf "$F"; mkdir -p "$F/home/.cargo/bin" "$F/work"
# rustup's proxies, resolved by the name they are called with.
for b in rustup cargo rustc cargo-clippy cargo-fmt rustfmt clippy-driver rustdoc; do ln -s "$rustup_bin" "$F/home/.cargo/bin/$b"; done
git clone -q "$ROOT" "$F/work/main"
[ -d "$ROOT/../shared" ] && ln -s "$(cd "$ROOT/../shared" && pwd)" "$F/work/shared"
cd "$F/work/main"
export HOME="$F/home" CARGO_HOME="$F/home/.cargo" RUSTUP_HOME
[ -n "${PYENV_ROOT:-}" ] || [ ! -d /root/.pyenv ] || export PYENV_ROOT=/root/.pyenv
export PATH="$F/home/.cargo/bin:$PYTHON_DIR:/usr/local/bin:/usr/bin:/bin"
start=$(date +%s)
set +e
"$@"
rc=$?
echo "fresh-machine: '$*' exited $rc after $(( $(date +%s) - start )) s"
exit $rc
