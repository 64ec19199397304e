#!/usr/bin/env bash
# Starts N Meridian regions on loopback, each a peer of every other (active-active), with a
# replication user on each — the quickest way to try geo-replication and `meridian drill`.
#
#   deploy/local-regions.sh N [--bucket NAME] [--tls]
#                                               start regions 1..N (ports BASE+1..BASE+N);
#                                               --bucket creates NAME on every region,
#                                               versioned, replicated to every other region;
#                                               --tls serves HTTPS with a CA made for the
#                                               regions (DIR/tls/ca.pem), peers included
#   deploy/local-regions.sh stop                stop them (their data stays)
#   deploy/local-regions.sh clean               stop them and delete their data
#
# Environment: MERIDIAN_REGIONS_DIR (default ./meridian-regions), MERIDIAN_BASE_PORT
# (default 9100), MERIDIAN_BIN (default: the debug build in CARGO_TARGET_DIR or
# ~/.cache/meridian/target, built if missing). Root credentials of every region:
# MERIDIAN_ROOT_USER / MERIDIAN_ROOT_PASSWORD (default local-admin / local-admin-secret).
set -euo pipefail

dir="${MERIDIAN_REGIONS_DIR:-./meridian-regions}"
base="${MERIDIAN_BASE_PORT:-9100}"
root_user="${MERIDIAN_ROOT_USER:-local-admin}"
root_password="${MERIDIAN_ROOT_PASSWORD:-local-admin-secret}"
peer_user="replicator"
peer_password="replicator-local-secret"
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
bin="${MERIDIAN_BIN:-$target_dir/debug/meridian}"

stop_all() {
    for pidfile in "$dir"/region*/meridian.pid; do
        [ -e "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

scheme=http
# s3 METHOD PORT PATH [BODY]: a SigV4-signed S3 request as root, with curl.
s3() {
    local method="$1" port="$2" path="$3" body="${4:-}"
    local tls=()
    [ "$scheme" = https ] && tls=(--cacert "$dir/tls/ca.pem")
    curl -fsS "${tls[@]}" -X "$method" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$root_user:$root_password" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        ${body:+--data-binary "$body"} "$scheme://127.0.0.1:$port$path" >/dev/null
}

case "${1:-}" in
    stop) stop_all; exit 0 ;;
    clean) stop_all; rm -rf "$dir"; exit 0 ;;
    ''|-h|--help) sed -n '2,19p' "$0"; exit 2 ;;
esac

n="$1"; shift
bucket=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bucket) bucket="$2"; shift 2 ;;
        --tls) scheme=https; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$n" -ge 1 ] 2>/dev/null || { echo "N must be a number >= 1" >&2; exit 2; }

if [ ! -x "$bin" ]; then
    echo "building meridian (first time: RocksDB takes a while)" >&2
    (cd "$(dirname "$0")/.." && CARGO_TARGET_DIR="$target_dir" cargo build --workspace --all-targets >&2)
fi

stop_all
mkdir -p "$dir"
abs_dir="$(cd "$dir" && pwd)"
if [ "$scheme" = https ] && [ ! -e "$dir/tls/cert.pem" ]; then
    "$bin" tls-certs --dir "$abs_dir/tls" >/dev/null
fi
for i in $(seq 1 "$n"); do
    rdir="$dir/region$i"
    mkdir -p "$rdir"
    {
        echo "region = \"region$i\""
        echo 'shutdown_grace = "5s"'
        echo 'metrics_public = true'
        if [ "$scheme" = https ]; then
            echo '[tls]'
            echo "cert = \"$abs_dir/tls/cert.pem\""
            echo "key = \"$abs_dir/tls/key.pem\""
        fi
        echo '[root]'
        echo "access_key = \"$root_user\""
        echo "secret_key = \"$root_password\""
        echo '[[users]]'
        echo "access_key = \"$peer_user\""
        echo "secret_key = \"$peer_password\""
        echo 'grants = [{ bucket = "*", access = "replicate" }]'
        for j in $(seq 1 "$n"); do
            [ "$j" = "$i" ] && continue
            echo '[[peers]]'
            echo "name = \"region$j\""
            echo "endpoint = \"$scheme://127.0.0.1:$((base + j))\""
            [ "$scheme" = https ] && echo "ca_file = \"$abs_dir/tls/ca.pem\""
            echo "access_key = \"$peer_user\""
            echo "secret_key = \"$peer_password\""
        done
        echo '[replication]'
        echo 'max_backoff = "5s"'
    } > "$rdir/meridian.toml"
    env -u MERIDIAN_ROOT_USER -u MERIDIAN_ROOT_PASSWORD MERIDIAN_LOG="${MERIDIAN_LOG:-info}" \
        "$bin" serve --config "$rdir/meridian.toml" --address "127.0.0.1:$((base + i))" \
        --data "$rdir/data" > "$rdir/stdout.log" 2> "$rdir/server.log" &
    echo $! > "$rdir/meridian.pid"
done

for i in $(seq 1 "$n"); do
    for _ in $(seq 1 300); do
        grep -q "meridian listening on" "$dir/region$i/stdout.log" 2>/dev/null && break
        kill -0 "$(cat "$dir/region$i/meridian.pid")" 2>/dev/null || {
            echo "region$i failed to start:" >&2; cat "$dir/region$i/server.log" >&2; exit 1; }
        sleep 0.1
    done
done

if [ -n "$bucket" ]; then
    # Every destination must exist, versioned, before a rule may name it.
    for i in $(seq 1 "$n"); do
        port=$((base + i))
        s3 PUT "$port" "/$bucket"
        s3 PUT "$port" "/$bucket?versioning=" \
            '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>'
    done
    for i in $(seq 1 "$n"); do
        port=$((base + i))
        rules=""
        priority=1
        for j in $(seq 1 "$n"); do
            [ "$j" = "$i" ] && continue
            rules+="<Rule><ID>to-region$j</ID><Priority>$priority</Priority><Status>Enabled</Status><Filter><Prefix></Prefix></Filter><DeleteMarkerReplication><Status>Enabled</Status></DeleteMarkerReplication><Destination><Bucket>arn:meridian:replication:region$j::$bucket</Bucket></Destination></Rule>"
            priority=$((priority + 1))
        done
        [ -n "$rules" ] && s3 PUT "$port" "/$bucket?replication=" \
            "<ReplicationConfiguration><Role>arn:aws:iam::000000000000:role/replication</Role>$rules</ReplicationConfiguration>"
    done
fi

echo "$n regions running (data in $dir; stop with: $0 stop)"
for i in $(seq 1 "$n"); do
    echo "  region$i  $scheme://127.0.0.1:$((base + i))"
done
echo "root credentials: $root_user / $root_password (each region); replication user: $peer_user"
[ -n "$bucket" ] && echo "bucket $bucket: versioned on every region, replicated to every other"
[ "$scheme" = https ] && echo "HTTPS: trust $abs_dir/tls/ca.pem (aws --ca-bundle, MERIDIAN_CA_FILE for meridian drill|replication|bench)"
echo "try: export AWS_ACCESS_KEY_ID=$root_user AWS_SECRET_ACCESS_KEY=$root_password"
exit 0
