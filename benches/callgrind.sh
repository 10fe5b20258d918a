#!/usr/bin/env bash
# Instructions per proxied call, counted with callgrind: the same count for the same binary and
# load whatever else the machine is doing (CPU time on a shared 2-core VM swings by ±5 %).
#
#   benches/callgrind.sh sidecar [BIN]   the sidecar (default target/release/wa-hub-sidecar),
#                                        shipped sinks and log settings
#   benches/callgrind.sh bare [BIN]      the bare Pingora floor (default
#                                        target/release/examples/bare_proxy)
#   benches/callgrind.sh nginx [BIN]     nginx (default /usr/sbin/nginx) configured as in the
#                                        load tool, one process (`master_process off`)
#
# Each run: a Node upstream answering the status fixture (benches/upstream.js), the proxy under
# `valgrind --tool=callgrind` with instrumentation off, 3 s of `wrk -t1 -c8` to warm up, then
# instrumentation on for 10 s of the same (status route). Prints the user-space instructions per
# request and, for the sidecar, its hooks' share; the profile stays in $OUT (default
# /tmp/callgrind.<which>.out*) for `callgrind_annotate --inclusive=yes --tree=calling`.
# Needs valgrind, wrk, node and python3; build first with
# `cargo build --release --bin wa-hub-sidecar --example bare_proxy`.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-sidecar}
case "$which" in
  sidecar) bin=${2:-target/release/wa-hub-sidecar} ;;
  bare) bin=${2:-target/release/examples/bare_proxy} ;;
  nginx) bin=${2:-/usr/sbin/nginx} ;;
  *) echo "usage: $0 sidecar|bare|nginx [BIN]" >&2; exit 2 ;;
esac
for tool in valgrind callgrind_control callgrind_annotate wrk node python3; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool not found" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "callgrind.sh: $bin not built" >&2; exit 1; }
out=${OUT:-/tmp/callgrind.$which.out}
rm -f "$out" "$out".*
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
node_port=$(free_port)
port=$(free_port)
wait_port() {
  for _ in $(seq 200); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "callgrind.sh: nothing listens on port $1" >&2
  exit 1
}
node benches/upstream.js "$node_port" ../shared/fixtures/wa-hub/api-responses.jsonl >/dev/null &
pids+=($!)
wait_port "$node_port"
if [ "$which" = nginx ]; then
  mkdir -p "$work/nginx/logs"
  cat >"$work/nginx/nginx.conf" <<EOF
master_process off;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log /dev/null combined buffer=64k flush=1s;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream wahub { server 127.0.0.1:$node_port; keepalive 64; keepalive_timeout 4s; }
  server {
    listen 127.0.0.1:$port;
    location /api/wahub/ {
      proxy_pass http://wahub/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer testkey";
    }
  }
}
EOF
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" >/dev/null 2>"$work/valgrind.err" &
  url="http://127.0.0.1:$port/api/wahub/instances/WASP-test_shop/client/status"
elif [ "$which" = bare ]; then
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" "127.0.0.1:$port" "127.0.0.1:$node_port" testkey 2 >/dev/null 2>"$work/valgrind.err" &
  url="http://127.0.0.1:$port/instances/WASP-test_shop/client/status"
else
  cat >"$work/sidecar.yaml" <<EOF
listen: 127.0.0.1:$port
metrics_listen: null
threads: 2
upstream:
  base_url: http://127.0.0.1:$node_port
  token: testkey
  health_interval_ms: 0
status:
  qr_poll_interval_ms: 0
sinks:
  - type: sse
    heartbeat_ms: 60000
  - type: stdout
    kinds: [webhook, status]
EOF
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" --config "$work/sidecar.yaml" >/dev/null 2>"$work/valgrind.err" &
  url="http://127.0.0.1:$port/api/wahub/instances/WASP-test_shop/client/status"
fi
vg=$!
pids+=("$vg")
wait_port "$port"
wrk -t1 -c8 -d3s "$url" >/dev/null
callgrind_control -i on "$vg" >/dev/null 2>&1
wrk -t1 -c8 -d10s "$url" >"$work/wrk.txt"
callgrind_control -i off "$vg" >/dev/null 2>&1
callgrind_control -d "$vg" >/dev/null 2>&1
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
[ -z "$non2xx" ] || { echo "callgrind.sh: $non2xx answers were not 2xx" >&2; exit 1; }
dump=$(ls "$out".* | head -1)
total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$which: $requests requests, $((total / requests)) instructions per request ($dump)"
if [ "$which" = sidecar ]; then
  callgrind_annotate --inclusive=yes "$dump" 2>/dev/null |
    grep -E 'SidecarProxy as pingora_proxy::proxy_trait::ProxyHttp>::[a-z_]+::' |
    awk -v n="$requests" '{gsub(",", "", $1); name=$0; sub(/.*ProxyHttp>::/, "", name); sub(/::.*/, "", name); printf "  %-26s %7d per request\n", name, $1 / n}'
fi
