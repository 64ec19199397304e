"""Replication set up and watched with unmodified clients: the aws CLI puts the bucket
replication rules, boto3 writes and reads `ReplicationStatus` on both regions."""

import json
import os
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, Server, free_port

PEER_KEY, PEER_SECRET = "replicator", "replicator-secret"


@pytest.fixture(scope="module")
def regions():
    east_port, west_port = free_port(), free_port()
    users = (f'[[users]]\naccess_key = "{PEER_KEY}"\nsecret_key = "{PEER_SECRET}"\n'
             'grants = [{ bucket = "*", access = "replicate" }]\n')

    def peer(name, port):
        return (f'[[peers]]\nname = "{name}"\nendpoint = "http://127.0.0.1:{port}"\n'
                f'access_key = "{PEER_KEY}"\nsecret_key = "{PEER_SECRET}"\n')

    west = Server(extra_config=users, port=west_port)
    east = Server(extra_config=users + peer("west", west_port) + '[replication]\nmax_backoff = "1s"\n',
                  port=east_port)
    yield east, west
    east.stop()
    west.stop()


def client(server):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def aws(server, tmp_path, *args):
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1",
    }
    aws_bin = os.path.join(os.path.dirname(sys.executable), "aws")
    p = subprocess.run([aws_bin, "--endpoint-url", server.endpoint, *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, f"aws {' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p.stdout


def versioned(s3, bucket):
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def wait_for(probe, what, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_aws_cli_rules_and_boto3_status(regions, tmp_path):
    east, west = regions
    src, dst = client(east), client(west)
    versioned(src, "cli-src")
    versioned(dst, "cli-dst")
    rules = {
        "Role": "arn:aws:iam::000000000000:role/replication",
        "Rules": [{
            "ID": "everything", "Priority": 1, "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "DeleteMarkerReplication": {"Status": "Enabled"},
            "Destination": {"Bucket": "arn:aws:s3:::cli-dst"},
        }],
    }
    path = tmp_path / "replication.json"
    path.write_text(json.dumps(rules))
    aws(east, tmp_path, "s3api", "put-bucket-replication", "--bucket", "cli-src",
        "--replication-configuration", f"file://{path}")
    got = json.loads(aws(east, tmp_path, "s3api", "get-bucket-replication", "--bucket", "cli-src"))
    assert got["ReplicationConfiguration"]["Rules"][0]["ID"] == "everything"
    assert got["ReplicationConfiguration"]["Rules"][0]["Destination"]["Bucket"] == "arn:aws:s3:::cli-dst"

    put = src.put_object(Bucket="cli-src", Key="models/w.bin", Body=b"weights" * 1000,
                         Metadata={"step": "42"}, ContentType="application/octet-stream")
    version = put["VersionId"]
    assert src.head_object(Bucket="cli-src", Key="models/w.bin",
                           VersionId=version)["ReplicationStatus"] in ("PENDING", "COMPLETED")
    wait_for(lambda: src.head_object(Bucket="cli-src", Key="models/w.bin", VersionId=version)
             .get("ReplicationStatus") == "COMPLETED", "COMPLETED on the source")
    replica = dst.head_object(Bucket="cli-dst", Key="models/w.bin", VersionId=version)
    assert replica["ReplicationStatus"] == "REPLICA"
    assert replica["ETag"] == put["ETag"]
    assert replica["Metadata"] == {"step": "42"}
    assert dst.get_object(Bucket="cli-dst", Key="models/w.bin")["Body"].read() == b"weights" * 1000

    aws(east, tmp_path, "s3api", "delete-bucket-replication", "--bucket", "cli-src")
    with pytest.raises(src.exceptions.ClientError) as e:
        src.get_bucket_replication(Bucket="cli-src")
    assert e.value.response["Error"]["Code"] == "ReplicationConfigurationNotFoundError"


def metric(endpoint, name, peer, **labels):
    """The sum of the samples of a metric for `peer` (and `labels`), read with Prometheus's
    own text parser; None when there is no such sample."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families
    text = requests.get(f"{endpoint}/_meridian/metrics", timeout=10).text
    values = [sample.value
              for family in text_string_to_metric_families(text)
              for sample in family.samples
              if sample.name == name and sample.labels.get("peer") == peer
              and all(sample.labels.get(k) == v for k, v in labels.items())]
    return sum(values) if values else None


def test_lag_gauge_rises_while_the_peer_is_down_and_returns_to_zero():
    west_port = free_port()
    users = (f'[[users]]\naccess_key = "{PEER_KEY}"\nsecret_key = "{PEER_SECRET}"\n'
             'grants = [{ bucket = "*", access = "replicate" }]\n')
    west = Server(extra_config=users, port=west_port)
    east = Server(extra_config='metrics_public = true\n' + users +
                  f'[[peers]]\nname = "west"\nendpoint = "http://127.0.0.1:{west_port}"\n'
                  f'access_key = "{PEER_KEY}"\nsecret_key = "{PEER_SECRET}"\n'
                  '[replication]\nmax_backoff = "1s"\n')
    try:
        src, dst = client(east), client(west)
        versioned(src, "lagged")
        versioned(dst, "lagged")
        src.put_bucket_replication(Bucket="lagged", ReplicationConfiguration={
            "Role": "arn:aws:iam::000000000000:role/replication",
            "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": "arn:aws:s3:::lagged"}}]})
        v = src.put_object(Bucket="lagged", Key="a", Body=b"1")["VersionId"]
        wait_for(lambda: src.head_object(Bucket="lagged", Key="a", VersionId=v)
                 .get("ReplicationStatus") == "COMPLETED", "the first version")
        assert metric(east.endpoint, "meridian_replication_lag_seconds", "west") == 0
        assert metric(east.endpoint, "meridian_replication_pending_versions", "west") == 0
        assert metric(east.endpoint, "meridian_replication_sent_versions_total", "west") >= 1

        west.kill()
        src.put_object(Bucket="lagged", Key="b", Body=b"22")
        wait_for(lambda: (metric(east.endpoint, "meridian_replication_lag_seconds", "west") or 0) >= 2,
                 "the lag to rise while the peer is down", limit=30)
        assert metric(east.endpoint, "meridian_replication_pending_versions", "west") == 1
        assert metric(east.endpoint, "meridian_replication_pending_bytes", "west") == 2

        west.restart()
        wait_for(lambda: metric(east.endpoint, "meridian_replication_pending_versions", "west") == 0,
                 "the backlog to drain after the peer is back")
        assert metric(east.endpoint, "meridian_replication_lag_seconds", "west") == 0
        assert metric(east.endpoint, "meridian_replication_failures_total", "west",
                      reason="unreachable") >= 1, "the outage shows as failures by reason"
        assert metric(east.endpoint, "meridian_replication_latency_seconds_count", "west") >= 2
    finally:
        east.stop()
        west.stop()
