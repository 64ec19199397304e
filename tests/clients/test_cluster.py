"""A region of three nodes (MERIDIAN_CLIENT_CLUSTER=1): boto3 and the aws CLI through every
node, ending with every acknowledged version held, byte for byte, by exactly two nodes."""

import hashlib
import os

import boto3
import pytest
from botocore.config import Config

from conftest import CLUSTER
from meridian_server import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.skipif(not CLUSTER, reason="needs MERIDIAN_CLIENT_CLUSTER=1")

# deploy/local-cluster.sh names its region "local"; the nodes share the root secret.
HOP = hashlib.sha256(b"meridian-cluster-hop\0local\0" + SECRET_KEY.encode()).hexdigest()


def node_alone(endpoint):
    """A boto3 client whose requests the node serves from its own data (as a request from
    another node of the region is), never forwarded."""
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name=REGION,
                          config=Config(s3={"addressing_style": "path"},
                                        retries={"max_attempts": 1}))

    def add_hop(request, **_):
        request.headers["x-meridian-cluster-hop"] = HOP

    client.meta.events.register("before-sign.s3", add_hop)
    return client


def holders(clients, bucket, key, version, body):
    """How many nodes hold the version, with exactly `body`."""
    held = 0
    for endpoint, client in clients.items():
        try:
            got = client.get_object(Bucket=bucket, Key=key, VersionId=version)
        except client.exceptions.ClientError:
            continue
        assert got["Body"].read() == body, f"{key} ({version}) differs on {endpoint}"
        held += 1
    return held


def wait_holders(clients, bucket, key, version, body, want=2, limit=30.0):
    """Polls until `want` nodes hold the version (a node marked down under load catches up
    in the background), at most `limit` seconds."""
    import time
    deadline = time.monotonic() + limit
    while True:
        held = holders(clients, bucket, key, version, body)
        if held == want or time.monotonic() > deadline:
            return held
        time.sleep(0.2)


def staged_taken(endpoints):
    """Bodies the nodes' followers took from those streamed to them while they arrived
    (`meridian_cluster_staged_bodies_total{outcome="taken"}`, summed over the nodes; the
    nodes' metrics are public in deploy/local-cluster.sh)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for endpoint in endpoints:
        text = requests.get(f"{endpoint}/_meridian/metrics", timeout=10).text
        total += sum(sample.value
                     for family in text_string_to_metric_families(text)
                     for sample in family.samples
                     if sample.name == "meridian_cluster_staged_bodies_total"
                     and sample.labels.get("outcome") == "taken")
    return total


def test_versions_written_through_every_node_are_on_two_nodes(s3, server, aws, bucket, tmp_path):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    written = []
    for i in range(24):
        body = os.urandom(1000 + i * 37)
        out = s3.put_object(Bucket=bucket, Key=f"obj/{i % 8}", Body=body)
        written.append((f"obj/{i % 8}", out["VersionId"], body))
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    taken = staged_taken(server.endpoints)
    aws("s3", "cp", str(big), f"s3://{bucket}/weights.bin")
    head = s3.head_object(Bucket=bucket, Key="weights.bin")
    written.append(("weights.bin", head["VersionId"], big.read_bytes()))
    # The CLI's three parts (8, 8 and 4 MiB) reached the follower while they arrived: the
    # copy of the completed object named them instead of sending them again.
    assert staged_taken(server.endpoints) - taken == 3

    listed = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert sorted((v["Key"], v["VersionId"]) for v in listed) == \
        sorted((k, v) for k, v, _ in written)
    clients = {e: node_alone(e) for e in server.endpoints}
    for key, version, body in written:
        assert wait_holders(clients, bucket, key, version, body) == 2, key
