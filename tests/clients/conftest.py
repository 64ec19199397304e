"""Fixtures for the client tests: a real `meridian serve` on 127.0.0.1 with an ephemeral
port and temporary disks, plus boto3 and aws CLI configured for it."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY = "meridian-client-test"
SECRET_KEY = "meridian-client-test-secret"
REGION = "us-east-1"


def meridian_binary() -> str:
    explicit = os.environ.get("MERIDIAN_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/meridian/target"))
    return str(Path(target) / "debug" / "meridian")


class Server:
    def __init__(self, erasure: str = "4+2"):
        self.dir = Path(tempfile.mkdtemp(prefix="meridian-client-"))
        config = self.dir / "meridian.toml"
        config.write_text(
            f'shutdown_grace = "5s"\n[root]\naccess_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n'
        )
        self.log = open(self.dir / "server.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
        env["MERIDIAN_LOG"] = "info"
        self.proc = subprocess.Popen(
            [meridian_binary(), "serve", "--config", str(config), "--address", "127.0.0.1:0",
             "--data", str(self.dir), "--erasure", erasure],
            stdout=subprocess.PIPE, stderr=self.log, env=env,
        )
        self.endpoint = None
        ready = threading.Event()

        def read_stdout():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                if line.startswith("meridian listening on "):
                    self.endpoint = line.split()[3]
                    ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(60):
            self.proc.kill()
            raise RuntimeError("meridian did not start: " + (self.dir / "server.log").read_text())

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def s3(server):
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture
def bucket(s3):
    name = "t-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def aws(server, tmp_path_factory):
    """Runs the real aws CLI against the server; returns (returncode, stdout, stderr)."""
    home = tmp_path_factory.mktemp("aws-home")
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }
    aws_bin = os.path.join(os.path.dirname(sys.executable), "aws")

    def run(*args, check=True):
        p = subprocess.run([aws_bin, "--endpoint-url", server.endpoint, *args],
                           capture_output=True, text=True, env=env, timeout=600)
        if check and p.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    return run
