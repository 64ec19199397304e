"""boto3 against Meridian: versioned put/list/delete-marker/get-by-version and presigned URLs."""

import time

import botocore.exceptions
import pytest
import requests


def test_versioned_put_list_delete_marker_get_by_version(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"

    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"

    listing = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listing["Versions"]] == [v2, v1]
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == [marker["VersionId"]]
    assert listing["DeleteMarkers"][0]["IsLatest"] is True
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_flexible_checksums_default_to_trailers_and_verify(s3, bucket):
    # boto3's default: CRC32 in an aws-chunked trailer; Meridian verifies and stores it.
    body = b"x" * (300 * 1024)
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm="CRC32")
    assert "ChecksumCRC32" in put
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == put["ChecksumCRC32"]


def test_presigned_get_works_and_expires(s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared.txt", Body=b"hello presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.txt"}, ExpiresIn=60)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"hello presigned"

    short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.txt"}, ExpiresIn=1)
    time.sleep(2.5)
    r = requests.get(short, timeout=30)
    assert r.status_code == 403
    assert b"AccessDenied" in r.content

    tampered = url.replace("shared.txt", "other.txt")
    assert requests.get(tampered, timeout=30).status_code == 403


def test_unsigned_request_is_denied(server, bucket, s3):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    r = requests.get(f"{server.endpoint}/{bucket}/private", timeout=30)
    assert r.status_code == 403
    assert b"secret" not in r.content


def test_head_counts_tags_and_a_bucket_without_policy_is_not_public(s3, bucket):
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging="team=ml&stage=raw")
    head = s3.head_object(Bucket=bucket, Key="tagged")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert "x-amz-tagging-count" not in s3.head_object(Bucket=bucket, Key="plain")["ResponseMetadata"]["HTTPHeaders"]
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
