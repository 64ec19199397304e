"""Replication to a foreign S3 server (`kind = "s3"`): moto's S3 server from PyPI stands in
for AWS, MinIO or Garage. Plain S3 calls only (no replica headers); the target mints its own
version ids, and the source keeps the mapping for tag changes."""

import os
import socket
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, Server, free_port

CFG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def wait_for(probe, what, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def moto():
    port = free_port()
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(up, "moto to listen", limit=30)
    yield port
    proc.kill()
    proc.wait()


def status(s3, key, version):
    return s3.head_object(Bucket="src", Key=key, VersionId=version).get("ReplicationStatus")


def test_versions_markers_and_tags_reach_a_foreign_s3_with_its_own_version_ids(moto):
    target = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto}", aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name=REGION, config=CFG)
    target.create_bucket(Bucket="foreign")
    target.put_bucket_versioning(Bucket="foreign", VersioningConfiguration={"Status": "Enabled"})
    meridian = Server(extra_config=(
        f'[[peers]]\nname = "moto"\nendpoint = "http://127.0.0.1:{moto}"\n'
        'access_key = "testing"\nsecret_key = "testing"\nkind = "s3"\n'
        '[replication]\nmax_backoff = "1s"\n'))
    try:
        src = boto3.client("s3", endpoint_url=meridian.endpoint, aws_access_key_id=ACCESS_KEY,
                           aws_secret_access_key=SECRET_KEY, region_name=REGION, config=CFG)
        src.create_bucket(Bucket="src")
        src.put_bucket_versioning(Bucket="src", VersioningConfiguration={"Status": "Enabled"})
        src.put_bucket_replication(Bucket="src", ReplicationConfiguration={
            "Role": "arn:aws:iam::000000000000:role/replication",
            "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": "arn:aws:s3:::foreign"}}]})

        small = src.put_object(Bucket="src", Key="small.txt", Body=b"hello", ContentType="text/plain",
                               Metadata={"team": "ml"})
        mid = src.put_object(Bucket="src", Key="mid.bin", Body=os.urandom(300_000))
        up = src.create_multipart_upload(Bucket="src", Key="weights.bin")["UploadId"]
        parts = [{"PartNumber": n,
                  "ETag": src.upload_part(Bucket="src", Key="weights.bin", UploadId=up, PartNumber=n,
                                          Body=bytes([n]) * (5 << 20))["ETag"]} for n in (1, 2)]
        mp = src.complete_multipart_upload(Bucket="src", Key="weights.bin", UploadId=up,
                                           MultipartUpload={"Parts": parts})
        for key, out in (("small.txt", small), ("mid.bin", mid), ("weights.bin", mp)):
            wait_for(lambda: status(src, key, out["VersionId"]) == "COMPLETED", f"{key} COMPLETED")
            there = target.head_object(Bucket="foreign", Key=key)
            assert there["ETag"] == out["ETag"], key
            assert there["VersionId"] != out["VersionId"], "a foreign target mints its own ids"
        assert target.head_object(Bucket="foreign", Key="small.txt")["Metadata"] == {"team": "ml"}
        assert target.get_object(Bucket="foreign", Key="small.txt")["Body"].read() == b"hello"
        assert target.head_object(Bucket="foreign", Key="weights.bin")["ContentLength"] == 10 << 20

        # A tag change goes to the version the target made; a delete marker to a new marker there.
        src.put_object_tagging(Bucket="src", Key="small.txt", VersionId=small["VersionId"],
                               Tagging={"TagSet": [{"Key": "stage", "Value": "prod"}]})
        wait_for(lambda: target.get_object_tagging(Bucket="foreign", Key="small.txt")["TagSet"]
                 == [{"Key": "stage", "Value": "prod"}], "the tags on the target")
        src.delete_object(Bucket="src", Key="mid.bin")
        wait_for(lambda: any(m["Key"] == "mid.bin" and m["IsLatest"]
                             for m in target.list_object_versions(Bucket="foreign").get("DeleteMarkers", [])),
                 "a delete marker on the target")
    finally:
        meridian.stop()
