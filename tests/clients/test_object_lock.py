"""Object Lock through boto3 and the aws CLI: WORM checkpoints as an ML team keeps them."""

import base64
import datetime
import hashlib
import json
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY


def code_of(e):
    return e.value.response["Error"]["Code"]


@pytest.fixture
def locked_bucket(s3):
    name = "lock-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def in_days(n):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now + datetime.timedelta(days=n)


def test_a_compliance_checkpoint_outlives_every_delete(s3, locked_bucket):
    until = in_days(1)
    put = s3.put_object(
        Bucket=locked_bucket, Key="ckpt/step-100.pt", Body=b"weights",
        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
    )
    v = put["VersionId"]
    head = s3.head_object(Bucket=locked_bucket, Key="ckpt/step-100.pt", VersionId=v)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    assert s3.get_object_retention(Bucket=locked_bucket, Key="ckpt/step-100.pt")["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": until}
    for bypass in (False, True):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.delete_object(Bucket=locked_bucket, Key="ckpt/step-100.pt", VersionId=v,
                             BypassGovernanceRetention=bypass)
        assert code_of(e) == "AccessDenied"
    out = s3.delete_objects(Bucket=locked_bucket, BypassGovernanceRetention=True,
                            Delete={"Objects": [{"Key": "ckpt/step-100.pt", "VersionId": v}]})
    assert [(x["Key"], x["Code"]) for x in out["Errors"]] == [("ckpt/step-100.pt", "AccessDenied")]
    assert s3.get_object(Bucket=locked_bucket, Key="ckpt/step-100.pt", VersionId=v)["Body"].read() == b"weights"


def test_lock_headers_need_a_digest(server, verify, locked_bucket):
    # A client that sends no checksum at all (boto3 only when asked to).
    bare = boto3.client(
        "s3", endpoint_url=server.endpoint, verify=verify,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      request_checksum_calculation="when_required"),
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bare.put_object(Bucket=locked_bucket, Key="k", Body=b"abc", ObjectLockLegalHoldStatus="ON")
    assert code_of(e) == "InvalidRequest"
    assert "Versions" not in bare.list_object_versions(Bucket=locked_bucket)
    md5 = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    bare.put_object(Bucket=locked_bucket, Key="k", Body=b"abc", ContentMD5=md5, ObjectLockLegalHoldStatus="ON")
    assert bare.get_object_legal_hold(Bucket=locked_bucket, Key="k")["LegalHold"] == {"Status": "ON"}
    bare.put_object_legal_hold(Bucket=locked_bucket, Key="k", LegalHold={"Status": "OFF"})


def test_the_aws_cli_sets_a_default_retention(aws, s3, locked_bucket):
    conf = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 7}}}
    aws("s3api", "put-object-lock-configuration", "--bucket", locked_bucket,
        "--object-lock-configuration", json.dumps(conf))
    got = aws("s3api", "get-object-lock-configuration", "--bucket", locked_bucket)
    assert json.loads(got.stdout)["ObjectLockConfiguration"] == conf
    s3.put_object(Bucket=locked_bucket, Key="data.csv", Body=b"a,b\n")
    head = s3.head_object(Bucket=locked_bucket, Key="data.csv")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    left = head["ObjectLockRetainUntilDate"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=6, hours=23) < left <= datetime.timedelta(days=7)
    # Root may bypass GOVERNANCE.
    s3.delete_object(Bucket=locked_bucket, Key="data.csv", VersionId=head["VersionId"],
                     BypassGovernanceRetention=True)
