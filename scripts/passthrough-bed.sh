# Shared by scripts/passthrough-instructions.sh and scripts/passthrough-cpu.sh (sourced,
# not run): a Prometheus scraping itself, frontend configs that forward every request,
# and nginx as a plain `proxy_pass` proxy in front of the same Prometheus. Sourcing it
# makes a scratch directory (`DIR`) and a `pids` list of started processes, both cleaned
# up when the script exits.

DIR=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {
  for _ in $(seq 1 200); do
    curl -fs -o /dev/null "http://127.0.0.1:$1$2" && return 0
    sleep 0.2
  done
  echo "nothing answered on port $1" >&2
  exit 1
}

# Starts Prometheus on a free port (in `PROM`) and waits for its first scrape, so that
# `sum(up)` has a series.
start_prometheus() {
  PROM=$(free_port)
  printf 'global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{targets: ["127.0.0.1:%s"]}]\n' "$PROM" >"$DIR/prometheus.yml"
  prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/tsdb" \
    --web.listen-address="127.0.0.1:$PROM" >"$DIR/prometheus.log" 2>&1 &
  pids+=($!)
  wait_for "$PROM" /-/ready
  sleep 6
}

# A frontend config listening on port $1 that forwards every request to Prometheus.
frontend_toml() {
  printf '[server]\nlisten = "127.0.0.1:%s"\n[downstream]\nurl = "http://127.0.0.1:%s"\n[cache]\nbackend = "memory"\nanswers = false\n[log]\nlevel = "warn"\n' "$1" "$PROM"
}

# Writes $DIR/nginx/nginx.conf: listening on port $1 with $2 workers; $3 = "single" runs
# the one worker without a master process (for valgrind).
nginx_conf() {
  local port=$1 workers=$2 master=""
  [ "${3:-}" = single ] && master="master_process off;"
  local user=""
  [ "$(id -u)" -eq 0 ] && user="user root;"
  mkdir -p "$DIR/nginx/tmp"
  cat >"$DIR/nginx/nginx.conf" <<CONF
$user
daemon off;
$master
worker_processes $workers;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/tmp/body;
  proxy_temp_path $DIR/nginx/tmp/proxy;
  fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
  uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
  scgi_temp_path $DIR/nginx/tmp/scgi;
  upstream prometheus { server 127.0.0.1:$PROM; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://prometheus;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
}
