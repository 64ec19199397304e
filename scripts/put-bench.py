#!/usr/bin/env python3
"""Large-object PUT throughput next to its ceiling, for each erasure layout.

For every layout (default 4+2 and 1+0) and object size (64 MiB at concurrency 4, 1 MiB at
concurrency 8, 1 GiB single-part at concurrency 1): `meridian bench pipeline` measures the
no-HTTP ceiling of the same PUT path, then a fresh `meridian serve` on temporary disks takes
`meridian bench put`, and the table shows MB/s, the ratio to the ceiling, p50 latency and the
server's peak RSS. `--json FILE` keeps every figure.

    scripts/put-bench.py [--bin target/release/meridian] [--layouts 4+2,1+0] [--duration 15s]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchserver import arguments, ACCESS, SECRET, run_json, start_server  # noqa: E402


CASES = [
    # name, size, concurrency, keys, pipeline count
    ("64MiB", "64MiB", 4, 8, 16),
    ("1MiB", "1MiB", 8, 256, 512),
    ("1GiB", "1GiB", 1, 2, 3),
]


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main():
    p = arguments(__doc__, "release", "15s")
    p.add_argument("--layouts", default="4+2,1+0")
    p.add_argument("--cases", default=",".join(c[0] for c in CASES))
    p.add_argument("--json", help="write every figure here")
    args = p.parse_args()
    wanted = args.cases.split(",")
    results = []
    for layout in args.layouts.split(","):
        for name, size, conc, keys, pcount in (c for c in CASES if c[0] in wanted):
            work = tempfile.mkdtemp(prefix="meridian-putbench-")
            try:
                subprocess.run(["sync"], check=False)
                ceiling = run_json([args.bin, "bench", "pipeline", "--data", work, "--erasure", layout,
                                    "--size", size, "--concurrency", str(conc), "--count", str(pcount), "--json"])
                ceiling_put = ceiling["operations"]["put"]["mb_per_sec"]
                subprocess.run(["sync"], check=False)
                server, endpoint = start_server(args.bin, work, layout)
                try:
                    timing = ["--count", str(keys * 2)] if name == "1GiB" else ["--duration", args.duration]
                    put = run_json([args.bin, "bench", "put", "--endpoint", endpoint, "--access-key", ACCESS,
                                    "--secret-key", SECRET, "--bucket", "putbench", "--size", size,
                                    "--concurrency", str(conc), "--keys", str(keys), *timing, "--json"])
                    rss = peak_rss_mib(server.pid)
                finally:
                    server.terminate()
                    server.wait(timeout=60)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            row = {
                "layout": layout, "case": name, "concurrency": conc,
                "put_mb_per_sec": put["mb_per_sec"], "ceiling_mb_per_sec": ceiling_put,
                "ratio": put["mb_per_sec"] / ceiling_put if ceiling_put else None,
                "p50_ms": put["latency_ms"]["p50"], "errors": put["errors"],
                "server_peak_rss_mib": rss, "client_cpu_s": put.get("client_cpu_s"),
            }
            results.append(row)
            print(f"{layout:>4} PUT {name:>6} c={conc}: {row['put_mb_per_sec']:7.1f} MB/s, "
                  f"ceiling {ceiling_put:7.1f} MB/s, ratio {row['ratio']:.2f}, p50 {row['p50_ms']:.1f} ms, "
                  f"server peak RSS {rss:.0f} MiB, errors {row['errors']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
