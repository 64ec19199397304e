#!/usr/bin/env bash
# Model-weight transfers the way users do them: `aws s3 cp` up and down of 1 GiB and 5 GiB
# random files against a fresh release meridian on temporary disks (loopback only). Prints
# wall times, MB/s and whether the download is byte-identical, then the server's peak RSS
# (from /usr/bin/time -v), which must not grow with object size.
#
# Usage: scripts/cli-transfer-bench.sh [SIZES_GIB...]   (default: 1 5)
# Needs the release binary (make bench builds it) and the client venv (scripts/setup.sh python).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
venv="${MERIDIAN_VENV:-$HOME/.cache/meridian/venv}"
bin="${MERIDIAN_BIN:-$CARGO_TARGET_DIR/release/meridian}"

sizes=("$@")
[ $# -eq 0 ] && sizes=(1 5)

work="$(mktemp -d "${TMPDIR:-/tmp}/meridian-cli-bench.XXXXXX")"
trap 'pkill -f "^$bin serve --data $work" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws=("$venv/bin/aws" --endpoint-url "http://127.0.0.1:$port")

MERIDIAN_LOG=warn MERIDIAN_ROOT_USER=$AWS_ACCESS_KEY_ID MERIDIAN_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
    /usr/bin/time -v -o "$work/server.time" "$bin" serve --data "$work/data" --address "127.0.0.1:$port" \
    >"$work/server.out" 2>"$work/server.log" &
for _ in $(seq 100); do grep -q "listening" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
"${aws[@]}" s3 mb s3://weights >/dev/null

now() { date +%s.%N; }
for gib in "${sizes[@]}"; do
    head -c $((gib * 1024 * 1024 * 1024)) /dev/urandom >"$work/file"
    t0=$(now); "${aws[@]}" s3 cp --no-progress "$work/file" "s3://weights/f$gib" >/dev/null; t1=$(now)
    "${aws[@]}" s3 cp --no-progress "s3://weights/f$gib" "$work/back" >/dev/null; t2=$(now)
    cmp -s "$work/file" "$work/back" && same="byte-identical" || same="DIFFERENT"
    python3 -c "import sys; g,a,b,c=float(sys.argv[1]),*map(float,sys.argv[2:5]); mb=g*1073.741824
print(f'{g:g} GiB: upload {b-a:.1f} s ({mb/(b-a):.0f} MB/s), download {c-b:.1f} s ({mb/(c-b):.0f} MB/s), ' + sys.argv[5])" \
        "$gib" "$t0" "$t1" "$t2" "$same"
    rm -f "$work/file" "$work/back"
done
kill -TERM "$(pgrep -f "^$bin serve --data $work")"
for _ in $(seq 100); do [ -s "$work/server.time" ] && break; sleep 0.1; done
grep -E "Maximum resident" "$work/server.time" | sed 's/^\s*/server: /'
