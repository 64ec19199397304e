#!/usr/bin/env python3
"""Replication figures on this machine, with release servers on loopback (east -> west).

Runs, each on fresh regions:
  lag      `meridian bench replication`: lag at a fixed PUT rate, saturated objects/s,
           a large object next to a direct upload of it
  rss      peak RSS of both servers while 5 GiB replicate (20 objects of 256 MiB)
  backfill existing-object replication of N small objects, and of large ones (MB/s)
  resync   resync of a wiped peer: N small objects, and large ones
  sync     PUT latency with the peer in sync mode vs async (meridian bench put)
  zstd     bytes on the wire for a text dataset and for random bytes over a zstd link

Usage: scripts/replication-bench.py [--only lag,rss,...] [--small N] [--large-gib G]
Needs the release binary (cargo build --release -p meridian-cli --bin meridian) and the
client-test venv (boto3); `make bench` style: figures are printed, nothing is asserted.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

ROOT, SECRET = "bench-root", "bench-root-secret"
PEER, PEER_SECRET = "replicator", "replicator-secret"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/meridian/target"))
BIN = str(TARGET / "release" / "meridian")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Region:
    def __init__(self, name, port, extra):
        self.name, self.port = name, port
        self.dir = Path(tempfile.mkdtemp(prefix=f"meridian-rb-{name}-"))
        (self.dir / "m.toml").write_text(
            f'region = "{name}"\nshutdown_grace = "5s"\n{extra}\n'
            f'[root]\naccess_key = "{ROOT}"\nsecret_key = "{SECRET}"\n')
        self.endpoint = f"http://127.0.0.1:{port}"
        self.start()

    def start(self):
        self.log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", str(self.dir / "m.toml"), "--address", f"127.0.0.1:{self.port}",
             "--data", str(self.dir)], stdout=subprocess.PIPE, stderr=self.log)
        for line in self.proc.stdout:
            if line.startswith(b"meridian listening on"):
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def peak_rss_mib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, wipe=False):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.log.close()
        if wipe:
            for p in self.dir.iterdir():
                if p.name == "meta" or p.name.startswith("disk"):
                    shutil.rmtree(p)

    def close(self):
        """Stops the region and removes everything it stored."""
        if self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ROOT,
                            aws_secret_access_key=SECRET, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=64))


USERS = (f'[[users]]\naccess_key = "{PEER}"\nsecret_key = "{PEER_SECRET}"\n'
         'grants = [{ bucket = "*", access = "replicate" }]\n')


def regions(peer_extra="", replication=""):
    west_port, east_port = free_port(), free_port()
    west = Region("west", west_port, USERS)
    east = Region("east", east_port, USERS +
                  f'[[peers]]\nname = "west"\nendpoint = "http://127.0.0.1:{west_port}"\n'
                  f'access_key = "{PEER}"\nsecret_key = "{PEER_SECRET}"\n{peer_extra}\n'
                  f'[replication]\nmax_backoff = "2s"\n{replication}\n')
    return east, west


def bucket(east, west, name, rule=True, existing=False):
    for r in (east, west):
        c = r.s3()
        c.create_bucket(Bucket=name)
        c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if rule:
        put_rule(east, name, existing)


def put_rule(east, name, existing=False):
    r = {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": f"arn:meridian:replication:west::{name}"}}
    if existing:
        r["ExistingObjectReplication"] = {"Status": "Enabled"}
    east.s3().put_bucket_replication(Bucket=name, ReplicationConfiguration={
        "Role": "arn:aws:iam::000000000000:role/replication", "Rules": [r]})


def meridian(*args, check=True):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ROOT, AWS_SECRET_ACCESS_KEY=SECRET)
    p = subprocess.run([BIN, *args], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"meridian {' '.join(args)}: {p.stdout}\n{p.stderr}")
    return p.stdout


def status(east):
    return json.loads(meridian("replication", "status", "--json", "--endpoint", east.endpoint))


def wait_drained(east, since):
    """Seconds from `since` until no backfill/resync walks and west has everything (a
    checkpoint, which costs the servers almost nothing to answer)."""
    while any(j["running"] for j in status(east)["peers"][0]["jobs"]):
        time.sleep(0.25)
    meridian("replication", "checkpoint", "--endpoint", east.endpoint, "--peer", "west", "--timeout", "600s")
    return time.monotonic() - since


def fill(east, name, count, size, threads=16, prefix="obj"):
    body = os.urandom(size)
    c = east.s3()
    def work(i0):
        for i in range(i0, count, threads):
            c.put_object(Bucket=name, Key=f"{prefix}/{i:08d}", Body=body)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]


def run_lag(args):
    east, west = regions()
    try:
        bucket(east, west, "rbench")
        print(meridian("bench", "replication", "--source", east.endpoint, "--target", west.endpoint,
                       "--access-key", ROOT, "--secret-key", SECRET, "--bucket", "rbench",
                       "--rate", "200", "--duration", "10s", "--saturate", str(args.small),
                       "--large-size", "1GiB"), end="")
    finally:
        east.close(); west.close()


def run_rss(args):
    east, west = regions()
    try:
        bucket(east, west, "rss-bench")
        size = 256 << 20
        started = time.monotonic()
        fill(east, "rss-bench", 20, size, threads=2, prefix="big")
        took = wait_drained(east, started)
        print(f"rss      5 GiB (20 x 256 MiB) written and replicated in {took:.1f} s "
              f"({5 * 1024 / took:.0f} MiB/s end to end); peak RSS east {east.peak_rss_mib():.0f} MiB, "
              f"west {west.peak_rss_mib():.0f} MiB")
    finally:
        east.close(); west.close()


def run_backfill_and_resync(args, which):
    for label, count, size in (("small", args.small, 4096), ("large", int(args.large_gib * 4), 256 << 20)):
        east, west = regions()
        try:
            bucket(east, west, "backfill-bench", rule=False)
            fill(east, "backfill-bench", count, size, threads=16 if size < 1 << 20 else 2)
            total_mb = count * size / 1e6
            if which == "backfill":
                started = time.monotonic()
                put_rule(east, "backfill-bench", existing=True)
            else:
                put_rule(east, "backfill-bench")
                wait_drained(east, time.monotonic())
                west.stop(wipe=True)
                west.start()
                c = west.s3()
                c.create_bucket(Bucket="backfill-bench")
                c.put_bucket_versioning(Bucket="backfill-bench", VersioningConfiguration={"Status": "Enabled"})
                started = time.monotonic()
                meridian("replication", "resync", "--endpoint", east.endpoint, "--peer", "west", "--bucket", "backfill-bench",
                         "--no-wait")
            took = wait_drained(east, started)
            print(f"{which:<8} {count} {label} objects ({total_mb:.0f} MB): {took:.2f} s = "
                  f"{count / took:.0f} objects/s, {total_mb / took:.0f} MB/s")
        finally:
            east.close(); west.close()


def run_sync(args):
    for mode in ("async", "sync"):
        east, west = regions(peer_extra=f'mode = "{mode}"')
        try:
            bucket(east, west, "lat-bench")
            out = meridian("bench", "put", "--endpoint", east.endpoint, "--access-key", ROOT,
                           "--secret-key", SECRET, "--bucket", "lat-bench", "--size", "4KiB",
                           "--concurrency", "8", "--duration", "10s", "--json")
            r = json.loads(out)
            lat = r["latency_ms"]
            print(f"sync     PUT 4 KiB c=8, peer {mode:>5}: {r['ops_per_sec']:.0f} PUT/s, "
                  f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, errors {r['errors']}")
        finally:
            east.close(); west.close()


def run_zstd(args):
    east, west = regions(peer_extra='compression = "zstd"')
    try:
        bucket(east, west, "zstd-bench")
        text = "".join(f"{i}\tthe quick brown fox jumps over the lazy dog {i * 7919 % 1000}\n"
                       for i in range(2_000_000)).encode()[:64 << 20]
        rnd = os.urandom(64 << 20)
        c = east.s3()

        def sent():
            for line in meridian_metrics(east).splitlines():
                if line.startswith('meridian_replication_sent_bytes_total{peer="west"}'):
                    return float(line.split()[-1])
            return 0.0

        for label, data in (("text", text), ("random", rnd)):
            before, started = sent(), time.monotonic()
            c.put_object(Bucket="zstd-bench", Key=label, Body=data)
            took = wait_drained(east, started)
            wire = sent() - before
            print(f"zstd     64 MiB of {label}: {wire / 1e6:.1f} MB on the wire "
                  f"({wire / len(data):.3f} of the bytes), replicated in {took:.2f} s")
    finally:
        east.close(); west.close()


def meridian_metrics(r):
    import urllib.request
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="GET", url=f"{r.endpoint}/_meridian/metrics")
    SigV4Auth(Credentials(ROOT, SECRET), "s3", "us-east-1").add_auth(req)
    with urllib.request.urlopen(urllib.request.Request(req.url, headers=dict(req.headers))) as resp:
        return resp.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="lag,rss,backfill,resync,sync,zstd")
    ap.add_argument("--small", type=int, default=10000)
    ap.add_argument("--large-gib", type=float, default=4)
    args = ap.parse_args()
    if not Path(BIN).exists():
        sys.exit(f"{BIN} is missing: cargo build --release -p meridian-cli --bin meridian")
    for part in args.only.split(","):
        {"lag": run_lag, "rss": run_rss, "sync": run_sync, "zstd": run_zstd,
         "backfill": lambda a: run_backfill_and_resync(a, "backfill"),
         "resync": lambda a: run_backfill_and_resync(a, "resync")}[part](args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
