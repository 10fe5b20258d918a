#!/usr/bin/env bash
# Runs the sidecar on ./config.yaml (or the file given with --config), building it first.
# Installs only what building needs (cmake, a C compiler); the tests' needs come with test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --bin wa-hub-sidecar -- "$@"
