#!/usr/bin/env bash
# Installs what wa-hub-sidecar needs on a fresh Debian machine, and nothing that is already
# there. Safe to run repeatedly.
#   scripts/setup.sh          what building needs (cmake, a C compiler): ./scripts/run.sh
#   scripts/setup.sh --test   that, plus what the tests need (Chromium, promtool, nats-server):
#                             ./scripts/test.sh
set -euo pipefail

tests=0
for arg in "$@"; do
  case "$arg" in
    --test) tests=1 ;;
    *) echo "setup: unknown argument $arg (only --test)" >&2; exit 2 ;;
  esac
done

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)   # pingora-core builds zlib-ng with cmake
command -v cc >/dev/null 2>&1 || need+=(build-essential)
if [ "$tests" = 1 ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)        # the browser test (tests/browser.rs)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool checks /metrics and the alert rules
  [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || need+=(nats-server)  # tests/fleet.rs
fi

if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
