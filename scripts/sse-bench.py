#!/usr/bin/env python3
"""The cost of SSE-S3: PUT and GET throughput on a bucket with default encryption AES256
next to a bucket without, measured alternately against one server so drift hits both alike.

For each case (64 MiB at concurrency 4, 4 KiB at concurrency 8) and each of --rounds rounds:
`meridian bench put` into the clear bucket, then into the encrypted one, then `bench get` of
each (the objects the PUTs wrote). The table gives the median of each and the ratio
encrypted / clear (MB/s for 64 MiB, ops/s for 4 KiB). `--json FILE` keeps every run.

    scripts/sse-bench.py [--bin target/release/meridian] [--rounds 3] [--duration 8s] [--cases 64MiB,4KiB]
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchserver import arguments, ACCESS, SECRET, run_json, start_server  # noqa: E402


CASES = [
    # name, size, concurrency, keys, figure
    ("64MiB", "64MiB", 4, 8, "mb_per_sec"),
    ("4KiB", "4KiB", 8, 512, "ops_per_sec"),
]


def main():
    p = arguments(__doc__, "release", "8s")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default=",".join(c[0] for c in CASES))
    p.add_argument("--json", help="write every run here")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="meridian-ssebench-")
    server, endpoint = start_server(args.bin, work)
    runs = []
    try:
        for name, size, conc, keys, figure in (c for c in CASES if c[0] in args.cases.split(",")):
            results = {("put", False): [], ("put", True): [], ("get", False): [], ("get", True): []}
            for _ in range(args.rounds):
                for op in ("put", "get"):
                    for encrypted in (False, True):
                        bucket = f"{'sse' if encrypted else 'clear'}-{name.lower()}"
                        cmd = [args.bin, "bench", op, "--endpoint", endpoint, "--access-key", ACCESS,
                               "--secret-key", SECRET, "--bucket", bucket, "--size", size,
                               "--concurrency", str(conc), "--keys", str(keys),
                               "--duration", args.duration, "--json"]
                        if op == "get":
                            cmd.append("--no-prepare")
                        elif encrypted:
                            cmd += ["--bucket-encryption", "AES256"]
                        report = run_json(cmd)
                        if report.get("errors"):
                            sys.exit(f"{op} {bucket}: {report['errors']} errors")
                        results[(op, encrypted)].append(report[figure])
                        runs.append({"case": name, "op": op, "encrypted": encrypted, figure: report[figure]})
            unit = "MB/s" if figure == "mb_per_sec" else "ops/s"
            for op in ("put", "get"):
                clear = statistics.median(results[(op, False)])
                sse = statistics.median(results[(op, True)])
                print(f"{op.upper():>3} {name:>6} c={conc}: clear {clear:9.1f} {unit}, SSE-S3 {sse:9.1f} {unit}, "
                      f"ratio {sse / clear:.2f}  (runs clear {results[(op, False)]}, SSE {results[(op, True)]})",
                      flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2)


if __name__ == "__main__":
    main()
