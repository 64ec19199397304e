#!/usr/bin/env python3
"""The cost of run-time access keys on the request path: 4 KiB GET throughput signed by a
configured key (root) and by a run-time key, with one run-time key in the store and then with
10,000, measured alternately against one server so drift hits both alike.

Keys are made through the admin API (`POST /_meridian/admin/keys`, signed with botocore's
SigV4), so run it with a Python that has botocore (the test venv). For each of --rounds
rounds: `meridian bench get` (4 KiB, concurrency 8) as root, then as the run-time key. The
table gives the medians and the ratio run-time key / root, before and after the 10,000 keys.

    $MERIDIAN_VENV/bin/python scripts/keys-bench.py [--bin target/debug/meridian] [--rounds 3] [--keys 10000]
"""

import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchserver import arguments, ACCESS, SECRET, run_json, start_server  # noqa: E402


def admin(endpoint, method, path):
    req = AWSRequest(method=method, url=endpoint + path, data=b"")
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(req)
    r = urllib.request.Request(endpoint + path, method=method, headers=dict(req.headers))
    with urllib.request.urlopen(r, timeout=60) as resp:
        return json.loads(resp.read())


def bench(binary, endpoint, access, secret, duration, prepare):
    cmd = [binary, "bench", "get", "--endpoint", endpoint, "--access-key", access,
           "--secret-key", secret, "--bucket", "keys-bench", "--size", "4KiB",
           "--concurrency", "8", "--keys", "512", "--duration", duration, "--json"]
    if not prepare:
        cmd.append("--no-prepare")
    report = run_json(cmd)
    if report.get("errors"):
        sys.exit(f"bench get as {access}: {report['errors']} errors")
    return report["ops_per_sec"]


def main():
    p = arguments(__doc__, "debug", "8s")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keys", type=int, default=10000)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="meridian-keysbench-")
    server, endpoint = start_server(args.bin, work)
    try:
        made = admin(endpoint, "POST", "/_meridian/admin/keys?name=bench")
        key, secret = made["access_key"], made["secret_key"]
        for access in ("read", "write"):
            admin(endpoint, "POST", f"/_meridian/admin/keys/{key}/grants?bucket=keys-bench&access={access}")
        bench(args.bin, endpoint, ACCESS, SECRET, "2s", prepare=True)
        for label in ("1 run-time key", f"{args.keys} run-time keys"):
            if label != "1 run-time key":
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda i: admin(endpoint, "POST", f"/_meridian/admin/keys?name=k{i}"),
                                  range(args.keys - 1)))
            root, runtime = [], []
            for _ in range(args.rounds):
                root.append(bench(args.bin, endpoint, ACCESS, SECRET, args.duration, False))
                runtime.append(bench(args.bin, endpoint, key, secret, args.duration, False))
            r, k = statistics.median(root), statistics.median(runtime)
            print(f"{label:>22}: GET 4 KiB c=8 as root {r:8.1f} ops/s, as a run-time key {k:8.1f} ops/s, "
                  f"ratio {k / r:.2f}  (runs root {root}, key {runtime})", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
