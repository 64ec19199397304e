"""boto3's own view of the answers s3-tests checks: it sends several object attributes in
one header, decodes url-encoded listings field by field, retries completions, presigns with
its own expiry, and sends canned ACLs."""

import io

import boto3
import botocore.exceptions
import pytest
import requests
from botocore.config import Config

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY


def error_of(call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_get_object_attributes_with_everything_boto3_sends(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"hello", ChecksumAlgorithm="SHA256")
    out = s3.get_object_attributes(
        Bucket=bucket, Key="a", ObjectAttributes=["ObjectParts", "Checksum", "ETag", "ObjectSize"]
    )
    assert out["ObjectSize"] == 5
    assert out["ETag"] == "5d41402abc4b2a76b9719d911017c592"
    assert "ChecksumSHA256" in out["Checksum"]


def test_list_objects_prefix_unreadable(s3, bucket):
    for key in ["foo/bar", "foo/baz", "quux"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # boto3 asks for encoding-type=url and decodes Delimiter, Marker and keys, not v1's Prefix.
    v1 = s3.list_objects(Bucket=bucket, Prefix="\x0a")
    assert v1["Prefix"] == "\x0a"
    assert "Contents" not in v1
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="\x0a")
    assert v2["Prefix"] == "\x0a"
    empty = s3.list_objects_v2(Bucket=bucket, Delimiter="")
    assert "Delimiter" not in empty
    assert [o["Key"] for o in empty["Contents"]] == ["foo/bar", "foo/baz", "quux"]


def test_complete_repeated_after_success_answers_the_same(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")
    etag = s3.upload_part(
        Bucket=bucket, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"part"
    )["ETag"]
    parts = {"Parts": [{"ETag": etag, "PartNumber": 1}]}
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=up["UploadId"], MultipartUpload=parts
    )
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=up["UploadId"], MultipartUpload=parts
    )
    assert again["ETag"] == first["ETag"]
    assert "VersionId" not in first and "VersionId" not in again


def test_checksum_mismatch_is_bad_digest(s3, bucket):
    assert error_of(
        s3.put_object, Bucket=bucket, Key="c", Body=io.BytesIO(b"abc"), ChecksumSHA256="ABCD"
    ) == ("BadDigest", 400)


def test_presigned_expiry_above_a_week_is_refused(s3, bucket, server):
    s3.put_object(Bucket=bucket, Key="p", Body=b"secret")
    # SigV4 presigning (boto3 presigns SigV2 unless told), where X-Amz-Expires is capped.
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    ok = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=604800
    )
    assert requests.get(ok, timeout=30).content == b"secret"
    too_long = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=604801
    )
    r = requests.get(too_long, timeout=30)
    assert r.status_code == 403
    assert b"secret" not in r.content


def test_canned_acls_tools_send(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    # A bucket without ACLs (the default, as on AWS) refuses every other ACL, `private` too.
    for acl in ("public-read", "private"):
        assert error_of(s3.put_object, Bucket=bucket, Key="p", Body=b"x", ACL=acl) == (
            "AccessControlListNotSupported",
            400,
        )
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]
    controls = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert controls["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
