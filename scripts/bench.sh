#!/usr/bin/env bash
# Benchmarks: installs the load tool's peers when missing (wrk, nginx, Node), then runs the
# criterion micro-benchmarks and the end-to-end load tool. Extra arguments go to the load tool,
# e.g. ./scripts/bench.sh --only proxy --duration 5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v node >/dev/null 2>&1 || need+=(nodejs)
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "${SKIP_MICRO:-0}" != 1 ]; then
  cargo bench --bench micro -- --measurement-time 3 --warm-up-time 1
fi
# The bare Pingora floor the load tool compares against.
cargo build --release --example bare_proxy
cargo bench --bench load -- --bench "$@"
