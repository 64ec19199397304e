#!/usr/bin/env bash
# scripts/tls-audit-bench.sh — what HTTPS, the audit log and a bucket policy cost.
#
# Starts three release servers on temporary disks (plain HTTP; HTTP with an audit log to a
# file; HTTPS with a certificate from a CA made for the run) and alternates `meridian bench`
# runs against them: 4 KiB GETs and PUTs (per-request costs), the same GETs with a bucket
# policy evaluated on every request, and 64 MiB PUTs and GETs (bulk TLS). Prints one line per
# run; compare neighbouring lines, these machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
venv="${MERIDIAN_VENV:-$HOME/.cache/meridian/venv}"
scripts/setup.sh all >/dev/null
cargo build --release -p meridian-cli --bin meridian
bin="$CARGO_TARGET_DIR/release/meridian"
work=$(mktemp -d "${TMPDIR:-/tmp}/meridian-tls-audit-bench.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1

"$venv/bin/python" - "$work" <<'PY'
import pathlib, sys, trustme
d = pathlib.Path(sys.argv[1])
ca = trustme.CA()
cert = ca.issue_cert("localhost", "127.0.0.1")
ca.cert_pem.write_to_path(str(d / "ca.pem"))
cert.private_key_pem.write_to_path(str(d / "key.pem"))
with open(d / "cert.pem", "wb") as f:
    for blob in cert.cert_chain_pems:
        f.write(blob.bytes())
PY

# start NAME EXTRA-CONFIG: a 4+2 server on an ephemeral port; sets $url_NAME.
start() {
    mkdir -p "$work/$1"
    printf 'shutdown_grace = "2s"\n%b\n[root]\naccess_key = "bench"\nsecret_key = "bench-secret-key"\n' \
        "$2" >"$work/$1/meridian.toml"
    MERIDIAN_LOG=warn "$bin" serve --config "$work/$1/meridian.toml" --address 127.0.0.1:0 \
        --data "$work/$1" --erasure 4+2 >"$work/$1/stdout" 2>"$work/$1/stderr" &
    for _ in $(seq 300); do
        if grep -q "meridian listening on" "$work/$1/stdout"; then
            local url
            url=$(sed -n 's/^meridian listening on \([^ ]*\).*/\1/p' "$work/$1/stdout")
            printf -v "url_$1" '%s' "$url"
            return
        fi
        sleep 0.1
    done
    echo "tls-audit-bench: $1 did not start: $(cat "$work/$1/stderr")" >&2
    exit 1
}
start plain ""
start audit "[audit]\npath = \"$work/audit/audit.log\"\n"
start tls "[tls]\ncert = \"$work/cert.pem\"\nkey = \"$work/key.pem\"\n"

# run LABEL ARGS...: one bench run, one line.
run() {
    local label=$1
    shift
    printf '%-24s' "$label"
    "$bin" bench "$@" --json 2>/dev/null | "$venv/bin/python" -c '
import json, sys
r = json.load(sys.stdin)
print("%9.0f ops/s %8.1f MB/s  p50 %.2f ms  errors %d" % (r["ops_per_sec"], r["mb_per_sec"], r["latency_ms"]["p50"], r["errors"]))'
}
tls=(--ca-file "$work/ca.pem")
small=(--size 4KiB --keys 1000 -c 8 --duration 8s --bucket small)
for round in 1 2 3; do
    run "4KiB GET http" get "${small[@]}" --endpoint "$url_plain"
    run "4KiB GET http+audit" get "${small[@]}" --endpoint "$url_audit"
    run "4KiB GET https" get "${small[@]}" --endpoint "$url_tls" "${tls[@]}"
    run "4KiB PUT http" put "${small[@]}" --endpoint "$url_plain"
    run "4KiB PUT http+audit" put "${small[@]}" --endpoint "$url_audit"
done
# A policy evaluated on every GET (its Deny does not match them, its Allow does not either).
"$venv/bin/aws" --endpoint-url "$url_plain" s3api put-bucket-policy --bucket small --policy \
    '{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::small/*"},
      {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::small/public/*"}]}'
for round in 1 2 3; do
    run "4KiB GET http+policy" get "${small[@]}" --endpoint "$url_plain" --no-prepare
    run "4KiB GET http+audit" get "${small[@]}" --endpoint "$url_audit" --no-prepare
done
for round in 1 2 3; do
    run "64MiB PUT http" put --size 64MiB -c 4 --duration 10s --bucket large --endpoint "$url_plain"
    run "64MiB PUT https" put --size 64MiB -c 4 --duration 10s --bucket large --endpoint "$url_tls" "${tls[@]}"
    run "64MiB GET http" get --size 64MiB -c 4 --keys 8 --duration 10s --bucket large --endpoint "$url_plain"
    run "64MiB GET https" get --size 64MiB -c 4 --keys 8 --duration 10s --bucket large --endpoint "$url_tls" "${tls[@]}"
done
echo "audit lines written: $(cat "$work"/audit/audit.log* | wc -l)"
