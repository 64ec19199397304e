#!/usr/bin/env bash
# Starts a region of N Meridian nodes on loopback with one etcd as its control plane: each
# object's partition has copies on two nodes (R = 2), and any node serves any request.
#
#   deploy/local-cluster.sh N       start etcd and nodes 1..N (ports BASE+1..BASE+N), put
#                                   them in the layout, and print one line per node:
#                                   node I: http://127.0.0.1:PORT pid PID
#   deploy/local-cluster.sh stop    stop them (their data stays)
#   deploy/local-cluster.sh clean   stop them and delete their data
#
# Environment: MERIDIAN_CLUSTER_DIR (default ./meridian-cluster), MERIDIAN_BASE_PORT
# (default 9200; etcd takes BASE+90 and BASE+91), MERIDIAN_BIN (default: the debug build in
# CARGO_TARGET_DIR or ~/.cache/meridian/target, built if missing), ETCD_BIN (default: etcd
# on the PATH or /usr/bin/etcd, from Debian's etcd-server). Root credentials, the same on
# every node: MERIDIAN_ROOT_USER / MERIDIAN_ROOT_PASSWORD (default local-admin /
# local-admin-secret).
set -euo pipefail

dir="${MERIDIAN_CLUSTER_DIR:-./meridian-cluster}"
base="${MERIDIAN_BASE_PORT:-9200}"
root_user="${MERIDIAN_ROOT_USER:-local-admin}"
root_password="${MERIDIAN_ROOT_PASSWORD:-local-admin-secret}"
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
bin="${MERIDIAN_BIN:-$target_dir/debug/meridian}"
etcd_bin="${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}"
etcd_client=$((base + 90))
etcd_peer=$((base + 91))
region="local"

stop_pid() {
    local pidfile="$1"
    [ -e "$pidfile" ] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop_all() {
    for pidfile in "$dir"/node*/meridian.pid; do
        stop_pid "$pidfile"
    done
    stop_pid "$dir/etcd/etcd.pid"
}

case "${1:-}" in
    stop) stop_all; exit 0 ;;
    clean) stop_all; rm -rf "$dir"; exit 0 ;;
    ''|-h|--help) sed -n '2,17p' "$0"; exit 2 ;;
esac

n="$1"
[ "$n" -ge 2 ] 2>/dev/null || { echo "N must be a number >= 2 (two copies of every partition)" >&2; exit 2; }
[ -x "$etcd_bin" ] || { echo "etcd not found (install Debian's etcd-server, or set ETCD_BIN)" >&2; exit 1; }

if [ ! -x "$bin" ]; then
    echo "building meridian (first time: RocksDB takes a while)" >&2
    (cd "$(dirname "$0")/.." && CARGO_TARGET_DIR="$target_dir" cargo build --workspace --all-targets >&2)
fi

stop_all
mkdir -p "$dir/etcd"
abs_dir="$(cd "$dir" && pwd)"

"$etcd_bin" --name meridian-local --data-dir "$abs_dir/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" \
    --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "meridian-local=http://127.0.0.1:$etcd_peer" \
    > "$dir/etcd/etcd.log" 2>&1 &
echo $! > "$dir/etcd/etcd.pid"
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$etcd_client/health" 2>/dev/null | grep -q '"health":"true"' && break
    kill -0 "$(cat "$dir/etcd/etcd.pid")" 2>/dev/null || {
        echo "etcd failed to start:" >&2; cat "$dir/etcd/etcd.log" >&2; exit 1; }
    sleep 0.1
done

# One keyring for the region: every node seals and opens with the same keys (a version's
# copies keep its SSE-KMS key). Made with the keys the server would make on first use.
keyring="$abs_dir/keyring.toml"
if [ ! -f "$keyring" ]; then
    for key in meridian-sse-s3 meridian-default-kms meridian-access-keys; do
        "$bin" kms add-key "$key" --keyring "$keyring" > /dev/null
    done
fi

for i in $(seq 1 "$n"); do
    ndir="$dir/node$i"
    mkdir -p "$ndir"
    {
        echo "region = \"$region\""
        echo 'shutdown_grace = "5s"'
        echo 'metrics_public = true'
        echo '[root]'
        echo "access_key = \"$root_user\""
        echo "secret_key = \"$root_password\""
        echo '[cluster]'
        echo "etcd = [\"http://127.0.0.1:$etcd_client\"]"
        echo "endpoint = \"http://127.0.0.1:$((base + i))\""
        echo "node_id = $i"
        echo 'lease_ttl = "5s"'
        # A node made before the region shared a keyring keeps its own.
        if [ ! -f "$ndir/data/keyring.toml" ]; then
            echo '[encryption]'
            echo "keyring = \"$keyring\""
        fi
    } > "$ndir/meridian.toml"
    env -u MERIDIAN_ROOT_USER -u MERIDIAN_ROOT_PASSWORD MERIDIAN_LOG="${MERIDIAN_LOG:-info}" \
        "$bin" serve --config "$ndir/meridian.toml" --address "127.0.0.1:$((base + i))" \
        --data "$ndir/data" > "$ndir/stdout.log" 2> "$ndir/server.log" &
    echo $! > "$ndir/meridian.pid"
done

for i in $(seq 1 "$n"); do
    for _ in $(seq 1 300); do
        grep -q "joined the cluster's control plane" "$dir/node$i/server.log" 2>/dev/null && break
        kill -0 "$(cat "$dir/node$i/meridian.pid")" 2>/dev/null || {
            echo "node $i failed to start:" >&2; cat "$dir/node$i/server.log" >&2; exit 1; }
        sleep 0.1
    done
done

# Every node into the first layout, at once (it takes effect at once: nothing to fill).
# shellcheck disable=SC2046
"$bin" cluster add-node $(seq 1 "$n") --etcd "http://127.0.0.1:$etcd_client" --region "$region" > /dev/null

# Ready once each node holds its lease and knows the layout.
for i in $(seq 1 "$n"); do
    for _ in $(seq 1 300); do
        curl -fsS "http://127.0.0.1:$((base + i))/_meridian/health/ready" > /dev/null 2>&1 && break
        sleep 0.1
    done
done

for i in $(seq 1 "$n"); do
    echo "node $i: http://127.0.0.1:$((base + i)) pid $(cat "$dir/node$i/meridian.pid")"
done
echo "etcd: http://127.0.0.1:$etcd_client pid $(cat "$dir/etcd/etcd.pid"); data in $dir; stop with: $0 stop"
echo "status: $bin cluster status --etcd http://127.0.0.1:$etcd_client --region $region"
echo "try: export AWS_ACCESS_KEY_ID=$root_user AWS_SECRET_ACCESS_KEY=$root_password"
exit 0
