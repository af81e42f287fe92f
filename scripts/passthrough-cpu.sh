#!/usr/bin/env bash
# CPU per forwarded request, split into user and system time, of nginx as a plain
# `proxy_pass` proxy (2 workers, keep-alive upstream pool of 64) and of one or more
# frontend binaries (forwarding every request, `cache.answers = false`), each in front of
# the same Prometheus, under `wrk -t2 -c32`: where a proxy's time goes (its own code or
# the kernel), which a throughput number alone does not say.
#
#   scripts/passthrough-cpu.sh [FRONTEND_BIN ...]   (default: target/release/promql-frontend)
#   ROUNDS   rounds over all targets and both requests (default: one per target)
#   SECONDS_PER_RUN   length of each wrk run (default 8)
#
# Prints one line per round, target and request: req/s, and user and system CPU in µs per
# request, read from /proc/<pid>/stat before and after the run; then the means. Needs
# wrk, nginx, prometheus, curl and python3 (`scripts/install-deps.sh --bench` installs
# all but wrk: `apt-get install -y wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
for tool in wrk nginx prometheus curl python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool is missing: run scripts/install-deps.sh --bench (and apt-get install -y wrk)" >&2
    exit 1
  }
done
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --locked --release --bin promql-frontend
  bins=(target/release/promql-frontend)
fi

# shellcheck source=scripts/passthrough-bed.sh
. scripts/passthrough-bed.sh

# Clock ticks (user, system) of the given processes, summed.
ticks() {
  local u=0 s=0 p
  for p in "$@"; do
    read -r -a f <"/proc/$p/stat"
    # Fields 14 and 15 (utime, stime); the command name in field 2 has no spaces here.
    u=$((u + f[13]))
    s=$((s + f[14]))
  done
  echo "$u $s"
}

start_prometheus

names=()
ports=()
procs=()
i=0
for bin in "${bins[@]}"; do
  port=$(free_port)
  frontend_toml "$port" >"$DIR/frontend$i.toml"
  "$bin" --config "$DIR/frontend$i.toml" >"$DIR/frontend$i.log" 2>&1 &
  pids+=($!)
  names+=("frontend$i")
  ports+=("$port")
  procs+=("$!")
  wait_for "$port" /api/v1/labels
  echo "frontend$i: $bin"
  i=$((i + 1))
done

port=$(free_port)
nginx_conf "$port" 2
nginx -c "$DIR/nginx/nginx.conf" -p "$DIR/nginx" &
pids+=($!)
wait_for "$port" /api/v1/labels
# The master process only supervises: count the workers.
nginx_workers=$(pgrep -P "${pids[-1]}" | tr '\n' ' ')

# Each round starts the turn one target later. Where a run comes in a round changes its
# speed: with a fixed order, the second of three targets did 8–9% more `/api/v1/labels`
# requests per second than the third, whichever binary it was. With as many rounds as
# targets (or a multiple), each target runs in every place alike.
targets=(nginx "${!names[@]}")
ROUNDS=${ROUNDS:-${#targets[@]}}
for round in $(seq 1 "$ROUNDS"); do
  shift_by=$(((round - 1) % ${#targets[@]}))
  order=("${targets[@]:shift_by}" "${targets[@]:0:shift_by}")
  for path in "/api/v1/labels" "/api/v1/query?query=sum(up)&time=$(date +%s)"; do
    for t in "${order[@]}"; do
      if [ "$t" = nginx ]; then
        name=nginx target_port=$port watched=$nginx_workers
      else
        name=${names[$t]} target_port=${ports[$t]} watched=${procs[$t]}
      fi
      # shellcheck disable=SC2086
      read -r u0 s0 < <(ticks $watched)
      out=$(wrk -t2 -c32 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$target_port$path" 2>&1)
      # shellcheck disable=SC2086
      read -r u1 s1 < <(ticks $watched)
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      hz=$(getconf CLK_TCK)
      printf 'round %s  %-10s %-16s %9s req/s  user %5.1f µs  system %5.1f µs per request\n' \
        "$round" "$name" "${path%%\?*}" "$rps" \
        "$(echo "($u1 - $u0) * 1000000 / $hz / $requests" | bc -l)" \
        "$(echo "($s1 - $s0) * 1000000 / $hz / $requests" | bc -l)" | tee -a "$DIR/rounds.txt"
    done
  done
done
echo "mean over $ROUNDS rounds:"
awk '{k = sprintf("%-10s %-16s", $3, $4); n[k]++; r[k] += $5; u[k] += $8; s[k] += $11}
  END {for (k in n) printf "%s %9.0f req/s  user %5.2f µs  system %5.2f µs per request\n", k, r[k] / n[k], u[k] / n[k], s[k] / n[k]}' \
  "$DIR/rounds.txt" | sort
