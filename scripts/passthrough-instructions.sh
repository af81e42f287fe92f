#!/usr/bin/env bash
# Counts the user-space instructions a proxy spends per forwarded request, with
# valgrind's callgrind: the frontend (forwarding every request, `cache.answers = false`)
# and nginx as a plain `proxy_pass` proxy (one worker, no master process), each in front
# of the same Prometheus, on the same requests. Unlike time on a shared 2-core machine,
# the count does not move between runs, so a change of a few percent in the frontend's
# own work shows (it does not count the kernel: system calls, the TCP stack).
#
#   N              requests counted per target and request (default 2000)
#   FRONTEND_BIN   the frontend binary (default: target/release/promql-frontend, built)
#   BASELINE_BIN   another frontend binary, counted too (say, the previous commit's)
#
# Each target gets 200 requests to warm up, then the counters are zeroed, then N
# requests are sent on 4 keep-alive connections, one at a time, and the counters dumped.
# Prints one line per target and request. Needs valgrind, nginx, prometheus, curl and
# python3 (`scripts/install-deps.sh --bench` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
for tool in valgrind callgrind_control callgrind_annotate nginx prometheus curl python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool is missing: run scripts/install-deps.sh --bench" >&2
    exit 1
  }
done
if [ -z "${FRONTEND_BIN:-}" ]; then
  cargo build --locked --release --bin promql-frontend
  FRONTEND_BIN=target/release/promql-frontend
fi

# shellcheck source=scripts/passthrough-bed.sh
. scripts/passthrough-bed.sh
start_prometheus

# Runs the command after `--` under callgrind, listening on `port`, and prints the
# instructions per request for each request path.
count() {
  local name=$1 port=$2
  shift 3
  valgrind --tool=callgrind --callgrind-out-file="$DIR/$name.%p.out" "$@" >"$DIR/$name.log" 2>&1 &
  local vp=$!
  pids+=("$vp")
  wait_for "$port" /api/v1/labels
  for path in "/api/v1/labels" "/api/v1/query?query=sum(up)&time=$(date +%s)"; do
    for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port$path"; done
    callgrind_control -z "$vp" >/dev/null 2>&1
    python3 - "$port" "$path" "$N" <<'PY'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(4)]
for i in range(n):
    c = conns[i % 4]
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{path}: status {r.status}")
PY
    callgrind_control -d "$vp" >/dev/null 2>&1
    sleep 1
    local out total
    out=$(ls -t "$DIR/$name".*.out.* | head -1)
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    printf '%-10s %-45s %8d instructions per request\n' "$name" "${path%%&time=*}" $((total / N))
    rm -f "$DIR/$name".*.out.*
  done
  kill "$vp" 2>/dev/null || true
}

port=$(free_port)
frontend_toml "$port" >"$DIR/frontend.toml"
count frontend "$port" -- "$FRONTEND_BIN" --config "$DIR/frontend.toml"
if [ -n "${BASELINE_BIN:-}" ]; then
  port=$(free_port)
  frontend_toml "$port" >"$DIR/baseline.toml"
  count baseline "$port" -- "$BASELINE_BIN" --config "$DIR/baseline.toml"
fi

port=$(free_port)
nginx_conf "$port" 1 single
count nginx "$port" -- nginx -c "$DIR/nginx/nginx.conf" -p "$DIR/nginx"
