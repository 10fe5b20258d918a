#!/usr/bin/env bash
# The whole test suite: installs what building and testing need when missing (scripts/setup.sh
# --test), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
