#!/usr/bin/env bash
# Runs every cargo fuzz target in fuzz/ for SECONDS each (default 60), on stable Rust
# (no sanitizer: the targets look for panics, unbounded allocation and hangs in safe code).
# New inputs go to a scratch corpus, the committed seeds (fuzz/corpus/<target>) are read
# only; a crash leaves its input in $MERIDIAN_FUZZ_DIR/artifacts/<target>/ and fails the run.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
work="${MERIDIAN_FUZZ_DIR:-$HOME/.cache/meridian/fuzz}"
target_dir="$work/target"
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    echo "fuzz: $t for ${seconds}s"
    log="$work/$t.log"
    if ! cargo fuzz run -s none --target-dir "$target_dir" "$t" "$work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -artifact_prefix="$work/artifacts/$t/" >"$log" 2>&1; then
        grep -E -A20 "panicked|ERROR|SUMMARY" "$log" >&2 || tail -40 "$log" >&2
        echo "fuzz: $t failed; the input is in $work/artifacts/$t/" >&2
        exit 1
    fi
    grep -E "^Done" "$log" || tail -3 "$log"
done
