"""Fixtures for the client tests: a real `meridian serve` on 127.0.0.1 with an ephemeral
port and temporary disks, plus boto3 and aws CLI configured for it."""

import os
import subprocess
import sys
import uuid

import boto3
import pytest
from botocore.config import Config

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, Server


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
