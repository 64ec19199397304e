"""What the benchmark scripts share: a fresh `meridian serve` on temporary disks, and
`meridian bench ... --json` run and parsed. Imported by put-bench.py and sse-bench.py."""

import argparse
import json
import os
import subprocess
import sys
import time

ACCESS, SECRET = "bench-root", "bench-root-secret-key"


def arguments(doc, profile="release", duration="8s"):
    """The options every bench script takes: the binary (of `profile` in the cargo target
    directory by default) and the length of each run."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/meridian/target"))
    p.add_argument("--bin", default=os.path.join(target, profile, "meridian"))
    p.add_argument("--duration", default=duration)
    return p


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout)


def start_server(binary, work, layout=None):
    """Starts `binary serve` with its data under `work` (and erasure `layout`, if given);
    returns the process and its endpoint."""
    config = os.path.join(work, "meridian.toml")
    with open(config, "w") as f:
        f.write(f'[root]\naccess_key = "{ACCESS}"\nsecret_key = "{SECRET}"\n')
    cmd = [binary, "serve", "--config", config, "--address", "127.0.0.1:0",
           "--data", os.path.join(work, "data")]
    if layout:
        cmd += ["--erasure", layout]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(work, "server.log"), "w"),
        text=True, env={**os.environ, "MERIDIAN_LOG": "warn"},
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("meridian listening on "):
            return proc, line.split()[3]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"meridian did not start; see {work}/server.log")
