#!/usr/bin/env bash
# Runs the sidecar on ./config.yaml (or the file given with --config), building it first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --bin wa-hub-sidecar -- "$@"
