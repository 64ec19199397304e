#!/usr/bin/env bash
# `make bench`: Meridian's performance report on this machine.
#
# Builds the release binary, starts a fresh meridian (4+2 on temporary disks, loopback only),
# runs the fixed suite of issue 6 with `meridian bench`, measures the no-HTTP ceiling with
# `meridian bench pipeline`, writes target/bench/report.json (every case's full report plus a
# summary with ratios to the ceiling and the aims) and prints the summary table.
#
# Environment:
#   BENCH_DURATION      length of each timed case (default 15s)
#   BENCH_LARGE_COUNT   1 GiB objects uploaded/read per case (default 4)
#   BENCH_LIST_KEYS     keys in the LIST bucket (default 100000)
#   MERIDIAN_BIN        use this binary instead of building the release one
#   BENCH_OUT           output directory (default target/bench)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meridian/target}"
duration="${BENCH_DURATION:-15s}"
large_count="${BENCH_LARGE_COUNT:-4}"
list_keys="${BENCH_LIST_KEYS:-100000}"
out="${BENCH_OUT:-target/bench}"

if [ -n "${MERIDIAN_BIN:-}" ]; then
    bin="$MERIDIAN_BIN"
else
    cargo build --release -p meridian-cli --bin meridian
    bin="$CARGO_TARGET_DIR/release/meridian"
fi

python=python3
[ -x "${MERIDIAN_VENV:-/nonexistent}/bin/python" ] && python="$MERIDIAN_VENV/bin/python"

work="$(mktemp -d "${TMPDIR:-/tmp}/meridian-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

access_key="bench-root"
secret_key="bench-root-secret-key"
cat >"$work/meridian.toml" <<EOF
[root]
access_key = "$access_key"
secret_key = "$secret_key"
EOF

rm -rf "$out"
mkdir -p "$out/cases"
failed=()

# The ceiling first, while the machine is quiet: the same PUT and GET paths without HTTP, on
# disks of the same filesystem, before the server and its load leave compaction and dirty
# pages behind (measured after the load, it came out 30-70% lower and flattered the ratios).
sync
echo "== pipeline: meridian bench pipeline --data $work/pipeline --size 64MiB --concurrency 4 --count 16 --json"
mkdir -p "$work/pipeline"
if ! "$bin" bench pipeline --data "$work/pipeline" --size 64MiB --concurrency 4 --count 16 --json \
    >"$out/cases/pipeline.json"; then
    failed+=("pipeline")
fi
sync

# Start the server on an ephemeral loopback port and read its URL from its first stdout line.
mkdir -p "$work/data"
mkfifo "$work/stdout"
MERIDIAN_LOG="${MERIDIAN_LOG:-warn}" "$bin" serve --config "$work/meridian.toml" --address 127.0.0.1:0 \
    --data "$work/data" --erasure 4+2 >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
endpoint=""
exec 3<"$work/stdout"
while IFS= read -r -t 120 line <&3; do
    case "$line" in
    "meridian listening on "*)
        endpoint="${line#meridian listening on }"
        endpoint="${endpoint%% *}"
        break
        ;;
    esac
done
# Keep draining the server's stdout so it never blocks on a full pipe.
cat <&3 >/dev/null &
exec 3<&-
if [ -z "$endpoint" ]; then
    echo "bench-suite: meridian did not start; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "bench-suite: meridian $("$bin" --version 2>/dev/null || true) listening on $endpoint, data in $work/data"

# case NAME WORKLOAD ARGS...: one `meridian bench` run, its JSON kept as cases/NAME.json.
case_run() {
    local name="$1" workload="$2"
    shift 2
    echo
    echo "== $name: meridian bench $workload $*"
    if ! "$bin" bench "$workload" --endpoint "$endpoint" --access-key "$access_key" \
        --secret-key "$secret_key" --json "$@" >"$out/cases/$name.json"; then
        failed+=("$name")
        echo "bench-suite: $name reported errors or failed (see $out/cases/$name.json)" >&2
    fi
}

# Large objects: 64 MiB single PUT/GET at concurrency 4; 1 GiB by multipart, 16 MiB parts with
# 8 in flight, read back as 8 parallel 16 MiB ranges.
case_run put-64MiB put --bucket bench-large --size 64MiB --concurrency 4 --keys 8 --duration "$duration"
case_run get-64MiB get --bucket bench-large --size 64MiB --concurrency 4 --keys 8 --duration "$duration"
# Single-part PUTs around it: 1 MiB at concurrency 8, and 1 GiB whole (what `aws s3 cp` of a
# model file below the multipart threshold of a tuned client sends).
case_run put-1MiB put --bucket bench-mid --size 1MiB --concurrency 8 --keys 256 --duration "$duration"
case_run put-1GiB put --bucket bench-whole --size 1GiB --concurrency 1 --keys 2 --count "$large_count"
case_run multipart-1GiB multipart --bucket bench-huge --size 1GiB --part-size 16MiB --part-concurrency 8 \
    --concurrency 1 --keys 2 --count "$large_count"
case_run get-1GiB get --bucket bench-huge --size 1GiB --ranged --part-size 16MiB --part-concurrency 8 \
    --concurrency 1 --keys 2 --count "$large_count" --no-prepare
# Small objects at concurrency 32, then the 70/30 GET/PUT mix of 64 KiB objects.
case_run put-4KiB put --bucket bench-small --size 4KiB --concurrency 32 --keys 1000 --duration "$duration"
case_run get-4KiB get --bucket bench-small --size 4KiB --concurrency 32 --keys 1000 --duration "$duration"
case_run mixed-64KiB mixed --bucket bench-mixed --size 64KiB --get-ratio 0.7 --concurrency 16 --keys 1000 \
    --duration "$duration"
# LIST of a bucket holding $list_keys empty objects (written first; that PUT run is reported too).
case_run list-populate put --bucket bench-list --size 0 --concurrency 32 --keys "$list_keys" --count "$list_keys"
case_run list-100k list --bucket bench-list --size 0 --keys "$list_keys" --max-keys 1000 --concurrency 4 \
    --duration "$duration" --no-prepare --verify

"$python" - "$out" "$endpoint" "${failed[*]:-}" <<'PY'
"""Combines the cases into report.json and prints the summary table."""
import json, os, subprocess, sys, time

out, endpoint, failed = sys.argv[1], sys.argv[2], sys.argv[3].split()
cases = {}
for name in sorted(os.listdir(os.path.join(out, "cases"))):
    path = os.path.join(out, "cases", name)
    try:
        with open(path) as f:
            cases[name[:-5]] = json.load(f)
    except (ValueError, OSError):
        cases[name[:-5]] = None

pipeline = cases.pop("pipeline", None)

def ceiling(op):
    """The pipeline's MB/s for the PUT or GET path (its `operations`, else its headline)."""
    if not pipeline:
        return None
    ops = pipeline.get("operations") or {}
    if op in ops and ops[op].get("mb_per_sec"):
        return ops[op]["mb_per_sec"]
    return pipeline.get("mb_per_sec") if op == "put" else None

# name -> (path compared with the ceiling, aim as (kind, value)).
AIMS = {
    "put-64MiB": ("put", ("ratio", 0.75)),
    "get-64MiB": ("get", ("ratio", 0.8)),
    "put-1MiB": ("put", None),
    "put-1GiB": ("put", None),
    "multipart-1GiB": ("put", ("ratio", 0.75)),
    "get-1GiB": ("get", ("ratio", 0.8)),
    "put-4KiB": ("put", ("ops_per_sec", 3000)),
    "get-4KiB": ("get", ("ops_per_sec", 8000)),
    "mixed-64KiB": (None, None),
    "list-populate": ("put", None),
    "list-100k": (None, None),
}

summary = []
for name, (path, aim) in AIMS.items():
    r = cases.get(name)
    if r is None:
        summary.append({"case": name, "missing": True, "failed": True})
        continue
    row = {
        "case": name,
        "workload": r["workload"],
        "size": r["settings"]["size"],
        "concurrency": r["settings"]["concurrency"],
        "ops": r["ops"],
        "errors": r["errors"],
        "ops_per_sec": r["ops_per_sec"],
        "mb_per_sec": r["mb_per_sec"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "failed": name in failed,
        "client_cpu_cores": (r.get("client_cpu_s") or 0) / r["duration_s"] if r["duration_s"] else None,
    }
    if name == "list-100k":
        row["keys_per_sec"] = r["operations"]["list"]["objects_per_sec"]
    top = ceiling(path) if path else None
    row["ratio_to_pipeline"] = r["mb_per_sec"] / top if top and r["bytes"] else None
    if aim:
        kind, value = aim
        got = row["ratio_to_pipeline"] if kind == "ratio" else row["ops_per_sec"]
        row["aim"] = {"metric": kind, "target": value, "met": None if got is None else got >= value}
    summary.append(row)

def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None

report = {
    "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": git("rev-parse", "HEAD"),
    "machine": {"cpus": os.cpu_count()},
    "endpoint": endpoint,
    "pipeline": pipeline,
    "pipeline_mb_per_sec": {"put": ceiling("put"), "get": ceiling("get")},
    "summary": summary,
    "cases": cases,
    "failed": failed,
}
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

print()
print(f"Meridian performance report ({report['commit'] or 'unknown commit'}, {os.cpu_count()} cpus)")
c = report["pipeline_mb_per_sec"]
print(f"pipeline ceiling: PUT {fmt(c['put'], '.1f')} MB/s, GET {fmt(c['get'], '.1f')} MB/s"
      + ("" if pipeline else "  (TODO: meridian bench pipeline not available)"))
head = (f"{'case':<15} {'conc':>4} {'ops/s':>10} {'MB/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'client':>6} {'ratio':>6}  aim")
print(head)
print("-" * len(head))
for row in summary:
    if row.get("missing"):
        print(f"{row['case']:<15} (no report)")
        continue
    aim = row.get("aim")
    if aim:
        target = f">= {aim['target']}" if aim["metric"] == "ratio" else f">= {aim['target']} ops/s"
        verdict = {True: "met", False: "MISSED", None: "?"}[aim["met"]]
        aim_text = f"{target} {verdict}"
    else:
        aim_text = f"{row['keys_per_sec']:.0f} keys/s" if "keys_per_sec" in row else ""
    print(f"{row['case']:<15} {row['concurrency']:>4} {row['ops_per_sec']:>10.1f} {row['mb_per_sec']:>9.1f} "
          f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors']:>6} "
          f"{fmt(row['client_cpu_cores'], '.2f'):>6} {fmt(row['ratio_to_pipeline'], '.2f'):>6}  {aim_text}")
print("client: CPU cores the load generator itself used; ratio: MB/s over the pipeline ceiling's")
print(f"\nfull report: {os.path.join(out, 'report.json')}")
PY

if [ ${#failed[@]} -gt 0 ]; then
    echo "bench-suite: cases with errors: ${failed[*]}; the server log ends with:" >&2
    tail -n 20 "$work/server.log" >&2
    exit 1
fi
