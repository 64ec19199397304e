"""Smaller S3 behaviours that clients rely on: the request id in error documents, a chunked
PUT without Content-Length, no version id for a write into a suspended bucket, and bucket
policy conditions on request headers (`s3:x-amz-copy-source`, `s3:x-amz-metadata-directive`)."""

import json
import os
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, new_account


def test_an_error_document_names_the_request_id_of_its_header(s3, bucket):
    raw = {}

    def keep(http_response, **_):
        raw.update(body=http_response.content)

    s3.meta.events.register("after-call.s3.GetObject", keep)
    try:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="missing")
    finally:
        s3.meta.events.unregister("after-call.s3.GetObject", keep)
    request_id = ET.fromstring(raw["body"]).find(".//RequestId").text
    assert request_id and request_id == e.value.response["ResponseMetadata"]["RequestId"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_a_chunked_put_without_content_length_is_taken(server, verify, s3, bucket):
    def put(key, data):
        tls = ["--cacert", verify] if verify else []
        out = subprocess.run(
            ["curl", "-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", *tls,
             "--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
             "-X", "PUT", "-H", "Transfer-Encoding: chunked",
             "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--data-binary", "@-",
             f"{server.endpoint}/{bucket}/{key}"],
            input=data, capture_output=True, timeout=120, check=True)
        return int(out.stdout)
    assert put("small", b"hello chunks") == 200
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"hello chunks"
    body = os.urandom(3 << 20)
    assert put("three-mib", body) == 200
    assert s3.get_object(Bucket=bucket, Key="three-mib")["Body"].read() == body
    # Past the limit the length must be given, and nothing is stored.
    assert put("too-big", b"x" * ((16 << 20) + 1)) == 411
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="too-big")


def test_a_write_into_a_suspended_bucket_names_no_version(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"1").get("VersionId")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    assert "VersionId" not in s3.copy_object(Bucket=bucket, Key="c",
                                             CopySource={"Bucket": bucket, "Key": "k"})
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")
    part = s3.upload_part(Bucket=bucket, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert "VersionId" not in done
    # Reading it says which version it is: the null one.
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"


def test_policy_conditions_on_the_copy_source_and_metadata_directive(server, verify, s3):
    other_key, other = new_account(server, verify)
    src, dst = "src-" + uuid.uuid4().hex[:10], "dst-" + uuid.uuid4().hex[:10]
    for b in (src, dst):
        s3.create_bucket(Bucket=b)
    for key in ("public/a", "private/a"):
        s3.put_object(Bucket=src, Key=key, Body=b"data")
    s3.put_bucket_policy(Bucket=src, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": [other_key]}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{src}/*"}]}))
    s3.put_bucket_policy(Bucket=dst, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": [other_key]}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{dst}/*",
         "Condition": {"StringLike": {"s3:x-amz-copy-source": f"{src}/public/*"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{dst}/*",
         "Condition": {"StringEquals": {"s3:x-amz-metadata-directive": "REPLACE"}}}]}))
    other.copy_object(Bucket=dst, Key="copied", CopySource={"Bucket": src, "Key": "public/a"})
    assert s3.get_object(Bucket=dst, Key="copied")["Body"].read() == b"data"
    for source, extra in (("private/a", {}),
                          ("public/a", {"MetadataDirective": "REPLACE", "Metadata": {"a": "b"}})):
        with pytest.raises(ClientError) as e:
            other.copy_object(Bucket=dst, Key="no", CopySource={"Bucket": src, "Key": source}, **extra)
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as e:
        other.put_object(Bucket=dst, Key="plain", Body=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDenied", "no copy source, no allow"


def test_bucket_tagging_round_trips_and_bad_sets_change_nothing(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchTagSet"
    tags = [{"Key": f"k{i:02}", "Value": f"v{i}"} for i in range(12)]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    for bad in ([{"Key": f"k{i}", "Value": ""} for i in range(51)],
                [{"Key": "aws:cost", "Value": "x"}],
                [{"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}],
                [{"Key": "k" * 129, "Value": "x"}]):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": bad})
        assert e.value.response["Error"]["Code"] == "InvalidTag", bad
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=bucket)


def test_sigv2_clients_reach_bucket_operations(server, verify):
    """botocore's SigV2 (`signature_version="s3"`) signs `/bucket/` for a request sent to
    `/bucket`; AWS takes it, and so must we (CreateBucket, ListObjects, bucket settings)."""
    from botocore.config import Config
    import boto3

    v2 = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION, verify=verify,
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )
    name = f"v2-{uuid.uuid4().hex[:12]}"
    v2.create_bucket(Bucket=name)
    v2.put_object(Bucket=name, Key="k", Body=b"v2")
    assert [o["Key"] for o in v2.list_objects(Bucket=name)["Contents"]] == ["k"]
    v2.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    assert v2.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    # A wrong secret is still refused, with or without the slash.
    bad = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="not-the-secret", region_name=REGION, verify=verify,
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )
    with pytest.raises(ClientError) as e:
        bad.list_objects(Bucket=name)
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
