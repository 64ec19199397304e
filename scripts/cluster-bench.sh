#!/usr/bin/env bash
# A three-node region (deploy/local-cluster.sh) next to a single node on this machine, with
# `meridian bench`: small (4 KiB) and large (64 MiB) PUT and GET, through node 1 of the region
# (a third of the keys led there, two thirds forwarded). Prints each case's objects/s and MB/s
# and the region's ratio to the single node.
#
# Every node of the region runs on the same cores and disks as the single node does alone,
# and stores every object twice (R = 2): the ratios measure the cost of forwarding and of the
# second copy, not the capacity a region of real machines adds.
#
# Environment: MERIDIAN_BIN (default: the debug build in CARGO_TARGET_DIR), BENCH_DURATION
# (default 10s), BENCH_LARGE_COUNT (64 MiB objects per case, default 8).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
bin="${MERIDIAN_BIN:-$target_dir/debug/meridian}"
duration="${BENCH_DURATION:-10s}"
large_count="${BENCH_LARGE_COUNT:-8}"
export AWS_ACCESS_KEY_ID="bench-root" AWS_SECRET_ACCESS_KEY="bench-root-secret-key"

work="$(mktemp -d "${TMPDIR:-/tmp}/meridian-cluster-bench.XXXXXX")"
single_pid=""
cleanup() {
    [ -n "$single_pid" ] && kill "$single_pid" 2>/dev/null && wait "$single_pid" 2>/dev/null
    MERIDIAN_CLUSTER_DIR="$work/region" deploy/local-cluster.sh stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# case NAME ENDPOINT: the four runs against ENDPOINT, one JSON report each.
run_cases() {
    local name="$1" endpoint="$2"
    "$bin" bench put --endpoint "$endpoint" --size 4KiB -c 8 --duration "$duration" --keys 2000 \
        --bucket small --json > "$work/$name-put-small.json"
    "$bin" bench get --endpoint "$endpoint" --size 4KiB -c 8 --duration "$duration" --keys 2000 \
        --bucket small --json > "$work/$name-get-small.json"
    "$bin" bench put --endpoint "$endpoint" --size 64MiB -c 2 --count "$large_count" \
        --keys "$large_count" --bucket large --json > "$work/$name-put-large.json"
    "$bin" bench get --endpoint "$endpoint" --size 64MiB -c 2 --count "$large_count" \
        --keys "$large_count" --bucket large --json > "$work/$name-get-large.json"
}

# The single node.
port=$((20000 + RANDOM % 20000))
cat > "$work/single.toml" <<EOF
[root]
access_key = "$AWS_ACCESS_KEY_ID"
secret_key = "$AWS_SECRET_ACCESS_KEY"
EOF
"$bin" serve --config "$work/single.toml" --address "127.0.0.1:$port" --data "$work/single" \
    > "$work/single.out" 2> "$work/single.log" &
single_pid=$!
for _ in $(seq 1 300); do
    grep -q "meridian listening on" "$work/single.out" 2>/dev/null && break
    sleep 0.1
done
run_cases single "http://127.0.0.1:$port"
kill "$single_pid"; wait "$single_pid" 2>/dev/null || true; single_pid=""

# The region of three nodes.
base=$((20000 + (RANDOM % 200) * 100))
MERIDIAN_CLUSTER_DIR="$work/region" MERIDIAN_BASE_PORT="$base" MERIDIAN_BIN="$bin" \
    MERIDIAN_ROOT_USER="$AWS_ACCESS_KEY_ID" MERIDIAN_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" \
    MERIDIAN_LOG=warn deploy/local-cluster.sh 3 > "$work/region.out"
run_cases region "http://127.0.0.1:$((base + 1))"

python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
def figures(path):
    r = json.load(open(path))
    return r["ops_per_sec"], r["mb_per_sec"], r["errors"], r["latency_ms"]["p50"]
print(f"{'case':<12}{'single ops/s':>13}{'region ops/s':>13}{'single MB/s':>12}{'region MB/s':>12}"
      f"{'p50 ms 1/3':>12}{'errors':>8}{'ratio':>7}")
for case in ["put-small", "get-small", "put-large", "get-large"]:
    s = figures(f"{work}/single-{case}.json")
    r = figures(f"{work}/region-{case}.json")
    print(f"{case:<12}{s[0]:>13.1f}{r[0]:>13.1f}{s[1]:>12.1f}{r[1]:>12.1f}"
          f"{s[3]:>6.1f}/{r[3]:<5.1f}{s[2] + r[2]:>8}{r[0] / s[0]:>7.2f}")
EOF
