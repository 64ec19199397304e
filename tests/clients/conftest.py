"""Fixtures for the client tests: a real `meridian serve` on 127.0.0.1 with an ephemeral
port and temporary disks, plus boto3 and aws CLI configured for it.

With MERIDIAN_CLIENT_TLS=1 the server speaks HTTPS with a certificate from a CA made for the
run, and boto3 and the aws CLI verify against that CA (the same tests, over TLS)."""

import os
import subprocess
import sys
import uuid

import boto3
import pytest
from botocore.config import Config

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, ClusterServer, Server, PrivateCA

TLS = os.environ.get("MERIDIAN_CLIENT_TLS") == "1"
# MERIDIAN_CLIENT_CLUSTER=1: the same tests against a region of three nodes (etcd and
# `deploy/local-cluster.sh`), each request sent to the next node in turn.
CLUSTER = os.environ.get("MERIDIAN_CLIENT_CLUSTER") == "1"


@pytest.fixture(scope="session")
def test_ca():
    if not TLS:
        yield None
        return
    ca = PrivateCA()
    # For the clients tests make themselves (presigned URLs through requests, SigV4 clients).
    os.environ["AWS_CA_BUNDLE"] = str(ca.ca_file)
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca.ca_file)
    yield ca
    ca.cleanup()


@pytest.fixture(scope="session")
def server(test_ca):
    if CLUSTER:
        s = ClusterServer(3)
        yield s
        s.stop()
        return
    # Over plain HTTP, SSE-C needs the test-only override (AWS refuses it without TLS).
    s = Server(extra_config=test_ca.config() if test_ca else "[encryption]\nsse_c_over_http = true\n")
    if test_ca:
        assert s.endpoint.startswith("https://"), s.endpoint
    yield s
    s.stop()


@pytest.fixture(scope="session")
def verify(test_ca):
    """What boto3's `verify` should be: the run's CA file over TLS, else the default."""
    return str(test_ca.ca_file) if test_ca else None


def spread_over_nodes(client, server):
    """Sends each request of `client` to the next node of a cluster in turn (the request is
    signed for node 1's Host header, which every node accepts)."""
    endpoints = getattr(server, "endpoints", None)
    if not endpoints or len(endpoints) < 2:
        return client
    turn = {"n": 0}

    def before_send(request, **_):
        turn["n"] += 1
        target = endpoints[turn["n"] % len(endpoints)]
        request.url = request.url.replace(server.endpoint, target, 1)

    client.meta.events.register("before-send.s3", before_send)
    return client


@pytest.fixture(scope="session")
def s3(server, verify):
    return spread_over_nodes(boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        verify=verify,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    ), server)


@pytest.fixture
def bucket(s3):
    name = "t-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def aws(server, verify, tmp_path_factory):
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

    turn = {"n": 0}

    def run(*args, check=True):
        tls = ["--ca-bundle", verify] if verify else []
        # Each command through the next node of a cluster.
        endpoints = getattr(server, "endpoints", [server.endpoint])
        turn["n"] += 1
        endpoint = endpoints[turn["n"] % len(endpoints)]
        p = subprocess.run([aws_bin, "--endpoint-url", endpoint, *tls, *args],
                           capture_output=True, text=True, env=env, timeout=600)
        if check and p.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    return run
