"""Bucket policies with boto3: a public-read prefix for unsigned clients, a policy denying
deletes to everyone, and aws:SecureTransport telling HTTP from HTTPS."""

import json

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, PrivateCA, Server


def client(server, verify=None, signed=True):
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                    signature_version=None if signed else UNSIGNED)
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION, config=config,
                        verify=verify)


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def plain():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tls():
    ca = PrivateCA()
    s = Server(extra_config=ca.config())
    yield s, ca
    s.stop()
    ca.cleanup()


def test_public_read_prefix_for_unsigned_clients(plain):
    s3 = client(plain)
    s3.create_bucket(Bucket="datasets")
    s3.put_object(Bucket="datasets", Key="public/iris.csv", Body=b"sepal,petal\n5.1,1.4\n")
    s3.put_object(Bucket="datasets", Key="internal/notes.txt", Body=b"internal")
    anonymous = client(plain, signed=False)
    with pytest.raises(ClientError) as e:
        anonymous.get_object(Bucket="datasets", Key="public/iris.csv")
    assert code(e) == "AccessDenied"

    s3.put_bucket_policy(Bucket="datasets", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                       "Action": "s3:GetObject", "Resource": "arn:aws:s3:::datasets/public/*"}],
    }))
    assert s3.get_bucket_policy_status(Bucket="datasets")["PolicyStatus"]["IsPublic"] is True
    body = anonymous.get_object(Bucket="datasets", Key="public/iris.csv")["Body"].read()
    assert body == b"sepal,petal\n5.1,1.4\n"
    for call in (lambda: anonymous.get_object(Bucket="datasets", Key="internal/notes.txt"),
                 lambda: anonymous.list_objects_v2(Bucket="datasets"),
                 lambda: anonymous.put_object(Bucket="datasets", Key="public/x", Body=b"x")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDenied"


def test_a_deny_delete_policy_stops_every_delete(plain):
    s3 = client(plain)
    s3.create_bucket(Bucket="checkpoints")
    s3.put_bucket_versioning(Bucket="checkpoints", VersioningConfiguration={"Status": "Enabled"})
    v = s3.put_object(Bucket="checkpoints", Key="step-100.pt", Body=b"w")["VersionId"]
    s3.put_bucket_policy(Bucket="checkpoints", Policy=json.dumps({
        "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"},
                       "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                       "Resource": "arn:aws:s3:::checkpoints/*"}],
    }))
    for call in (lambda: s3.delete_object(Bucket="checkpoints", Key="step-100.pt"),
                 lambda: s3.delete_object(Bucket="checkpoints", Key="step-100.pt", VersionId=v)):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDenied"
    # A batch answers per key, as on S3.
    out = s3.delete_objects(Bucket="checkpoints", Delete={"Objects": [{"Key": "step-100.pt"}]})
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("step-100.pt", "AccessDenied")]
    assert "Deleted" not in out
    versions = s3.list_object_versions(Bucket="checkpoints")
    assert [x["VersionId"] for x in versions.get("Versions", [])] == [v]
    assert "DeleteMarkers" not in versions
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket="checkpoints", Policy='{"Statement": "nope"}')
    assert code(e) == "MalformedPolicy"
    s3.delete_bucket_policy(Bucket="checkpoints")
    s3.delete_object(Bucket="checkpoints", Key="step-100.pt")


def test_secure_transport_over_http_and_https(plain, tls):
    server_tls, ca = tls
    policy = json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::secure", "arn:aws:s3:::secure/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
    over_http = client(plain)
    over_https = client(server_tls, verify=str(ca.ca_file))
    for s3 in (over_http, over_https):
        s3.create_bucket(Bucket="secure")
        s3.put_bucket_policy(Bucket="secure", Policy=policy)
    over_https.put_object(Bucket="secure", Key="k", Body=b"fine")
    assert over_https.get_object(Bucket="secure", Key="k")["Body"].read() == b"fine"
    with pytest.raises(ClientError) as e:
        over_http.put_object(Bucket="secure", Key="k", Body=b"in the clear")
    assert code(e) == "AccessDenied"
