#!/usr/bin/env bash
# scripts/soak.sh DURATION — the replication soak (not part of `make test`).
#
# Two active-active regions behind a WAN-like fault proxy (20±5 ms, 50 MB/s) take a mixed
# load (small, erasure-coded and multipart writes, delete markers) while one region is
# SIGKILLed and restarted every 10-30 s, for DURATION (e.g. 900s, 15m, 1h). Then both sides
# must converge; the report gives versions written, acknowledged, replicated, lost (must be
# 0), duplicated (must be 0), replication lag p50/p99/max and the number of restarts. Exits
# non-zero if anything was lost or duplicated. Every version is kept: budget about 2.5 GB of
# free disk (in $TMPDIR) per minute of soak.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:?usage: scripts/soak.sh DURATION (e.g. 15m, 900s, 1h)}"
case "$duration" in
*h) secs=$((${duration%h} * 3600)) ;;
*m) secs=$((${duration%m} * 60)) ;;
*s) secs=${duration%s} ;;
*[0-9]) secs=$duration ;;
*) echo "soak: cannot read duration '$duration' (use e.g. 15m, 900s, 1h)" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
scripts/setup.sh system
# The same build as `make test` (the tests run the binary it makes).
cargo build --workspace --all-targets
MERIDIAN_SOAK_SECS="$secs" MERIDIAN_LOG="${MERIDIAN_LOG:-warn}" \
    cargo test --workspace --test soak -- --ignored --nocapture
