#!/usr/bin/env bash
# Webhook ingest rate with no sink vs. a forward sink whose target is down, measured with wrk
# (a cross-check of `cargo bench --bench forward`). Needs wrk (apt-get install -y wrk), python3
# and openssl, and a release build: cargo build --release --bin wa-hub-sidecar.
#   benches/wrk_ingest.sh [seconds per run, default 5] [rounds, default 3]
# Traffic stays on 127.0.0.1; every run is bounded by wrk's -d.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-3}"
bin="${CARGO_TARGET_DIR:-target}/release/wa-hub-sidecar"
[ -x "$bin" ] || { echo "build first: cargo build --release --bin wa-hub-sidecar" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

secret=wa-hub-fixture-secret
python3 - "$work" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("../shared/fixtures/wa-hub/webhooks.jsonl") if l.strip()]
body = next((r["body"] for r in rows if '"event":"message"' in r["body"]), rows[0]["body"])
open(sys.argv[1] + "/body.json", "w").write(body)
PY
sig="$(openssl dgst -sha256 -hmac "$secret" -r "$work/body.json" | cut -d' ' -f1)"
python3 - "$work" "$sig" <<'PY'
import json, sys
work, sig = sys.argv[1], sys.argv[2]
body = open(work + "/body.json").read()
open(work + "/webhook.lua", "w").write(
    'wrk.method = "POST"\n'
    f"wrk.body = {json.dumps(body)}\n"
    'wrk.headers["Content-Type"] = "application/json"\n'
    f'wrk.headers["x-wa-hub-signature"] = "{sig}"\n'
    'wrk.headers["Authorization"] = "Bearer fixture-bearer-token"\n'
)
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name, sinks yaml
  local port; port="$(free_port)"
  rm -f "$work/outbox.redb"
  printf 'listen: 127.0.0.1:%s\nthreads: 2\nupstream:\n  base_url: http://127.0.0.1:%s\nwebhook:\n  secret: %s\n  auth_token: fixture-bearer-token\nstatus:\n  qr_poll_interval_ms: 0\nlog:\n  level: error\n%s' \
    "$port" "$(free_port)" "$secret" "$2" > "$work/config.yaml"
  "$bin" --config "$work/config.yaml" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  wrk -t1 -c16 -d1s -s "$work/webhook.lua" "http://127.0.0.1:$port/api/wahub/webhook" >/dev/null # warm-up
  local rps
  rps="$(wrk -t1 -c16 -d"${secs}s" -s "$work/webhook.lua" "http://127.0.0.1:$port/api/wahub/webhook" | awk '/Requests\/sec/ {print $2}')"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  printf '  %-22s %10s webhooks/s\n' "$1" "$rps"
}

forward="sinks:
  - type: forward
    name: fwd
    url: http://127.0.0.1:$(free_port)/hook
    secret: s
    backoff_initial_ms: 500
    outbox_path: $work/outbox.redb
"
echo "wrk, 16 connections, ${secs} s per run, ${rounds} rounds:"
for r in $(seq "$rounds"); do
  echo "round $r"
  run "no sink" "sinks: []"
  run "forward -> dead port" "$forward"
done
