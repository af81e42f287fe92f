#!/usr/bin/env bash
# Runs the frontend in front of a local Prometheus loaded with three days of generated
# demo data. Ctrl-C stops both.
#
#   PROM_PORT      Prometheus port (default 9090)
#   FRONTEND_PORT  frontend port (default 9095)
#   DEMO_DAYS      days of data (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

PROM_PORT=${PROM_PORT:-9090}
FRONTEND_PORT=${FRONTEND_PORT:-9095}
DEMO_DAYS=${DEMO_DAYS:-3}
DIR=target/demo

scripts/install-deps.sh
cargo build --locked --release --bins

rm -rf "$DIR"
mkdir -p "$DIR"
echo "generating ${DEMO_DAYS} days of data and backfilling it with promtool..."
target/release/promql-frontend-testdata --days "$DEMO_DAYS" --out "$DIR/data.om" --tsdb "$DIR/tsdb"
rm -f "$DIR/data.om"
printf 'global:\n  scrape_interval: 1m\n' >"$DIR/prometheus.yml"

prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/tsdb" \
  --storage.tsdb.retention.time=3650d --web.listen-address="127.0.0.1:${PROM_PORT}" \
  >"$DIR/prometheus.log" 2>&1 &
prom_pid=$!
trap 'kill "$prom_pid" 2>/dev/null || true' EXIT INT TERM

ready=0
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:${PROM_PORT}/-/ready" >/dev/null 2>&1; then ready=1; break; fi
  if ! kill -0 "$prom_pid" 2>/dev/null; then
    echo "prometheus exited; see $DIR/prometheus.log" >&2
    exit 1
  fi
  sleep 0.2
done
if [ "$ready" -ne 1 ]; then
  echo "prometheus did not become ready within 60s; see $DIR/prometheus.log" >&2
  exit 1
fi

cat <<MSG
Prometheus: http://127.0.0.1:${PROM_PORT}
Frontend:   http://127.0.0.1:${FRONTEND_PORT}   (use this as a Grafana Prometheus data source URL)
Try:
  curl -g 'http://127.0.0.1:${FRONTEND_PORT}/api/v1/query_range?query=sum(rate(http_requests_total[5m]))&start='\$((\$(date +%s)-86400))'&end='\$(date +%s)'&step=300'
MSG
target/release/promql-frontend --config config.example.toml \
  --listen "127.0.0.1:${FRONTEND_PORT}" --downstream-url "http://127.0.0.1:${PROM_PORT}"
