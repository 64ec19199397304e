#!/usr/bin/env bash
# The hostile-upload flood of issue 21: COUNT PutObjects of SIZE, CONCURRENCY in flight,
# against a fresh single-node server with default limits, while a second client reads small
# objects; prints both bench reports and the server's peak RSS (VmHWM, polled from /proc).
#
#   scripts/flood.sh [SIZE] [CONCURRENCY] [COUNT]      (default 64MiB 256 512)
#
# Needs the debug build (`make run` or `make test` made it) and about 8 GB of free disk.
set -euo pipefail
size="${1:-64MiB}" concurrency="${2:-256}" count="${3:-512}"
bin="${MERIDIAN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}/debug/meridian}"
port="${MERIDIAN_FLOOD_PORT:-9400}"
dir="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; kill "$monitor" 2>/dev/null || true; rm -rf "$dir"' EXIT
export AWS_ACCESS_KEY_ID=flood AWS_SECRET_ACCESS_KEY=flood-secret
MERIDIAN_ROOT_USER=$AWS_ACCESS_KEY_ID MERIDIAN_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
    "$bin" serve --data "$dir/data" --address "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/_meridian/health/live" && break
    sleep 0.1
done
endpoint="http://127.0.0.1:$port"
"$bin" bench put --endpoint "$endpoint" --bucket small --size 4KiB --count 200 -c 8 >/dev/null
(while kill -0 "$server" 2>/dev/null; do grep VmHWM "/proc/$server/status" || true; sleep 1; done) >"$dir/rss" &
monitor=$!
"$bin" bench get --endpoint "$endpoint" --bucket small --size 4KiB --keys 200 -c 4 \
    --duration 40s --tolerate-errors >"$dir/get" 2>&1 &
reader=$!
sleep 2
"$bin" bench put --endpoint "$endpoint" --bucket flood --size "$size" -c "$concurrency" \
    --count "$count" --keys "$concurrency" --tolerate-errors >"$dir/put" 2>&1 || true
wait "$reader" || true
echo "== uploads ($count x $size, $concurrency in flight)"; grep -A8 "^meridian bench put" "$dir/put"
echo "== small GETs meanwhile"; grep -A3 "^meridian bench get" "$dir/get"
echo "== server peak RSS"; tail -1 "$dir/rss"
