"""boto3 and the aws CLI over HTTPS with their default settings. Over TLS botocore sends its
default CRC32 checksum as an aws-chunked trailer (over plain HTTP it does not), so this is
the path most real uploads take: put_object, upload_file with multipart, the CLI's cp."""

import hashlib
import os
import subprocess
import sys
import uuid

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, Server, PrivateCA

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tls():
    ca = PrivateCA()
    server = Server(extra_config=ca.config())
    assert server.endpoint.startswith("https://"), server.endpoint
    yield server, ca
    server.stop()
    ca.cleanup()


def client(server, verify):
    # boto3's defaults: no Config, so checksums are "when_supported" (CRC32 on every upload).
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION, verify=verify)


@pytest.fixture
def s3_tls(tls):
    server, ca = tls
    s3 = client(server, str(ca.ca_file))
    sent = []
    s3.meta.events.register("before-send.s3.*", lambda request, **_: sent.append(
        (request.url, dict(request.headers))))
    s3.sent = sent
    return s3


@pytest.fixture
def bucket_tls(s3_tls):
    name = "tls-" + uuid.uuid4().hex[:16]
    s3_tls.create_bucket(Bucket=name)
    return name


def header(headers, name):
    for k, v in headers.items():
        if k.lower() == name:
            return v.decode() if isinstance(v, bytes) else v
    return None


def trailers_sent(s3, operation_marker):
    """The x-amz-trailer values of the requests whose URL contains `operation_marker`."""
    return [header(h, "x-amz-trailer") for url, h in s3.sent if operation_marker(url)]


def test_put_object_sends_a_crc32_trailer_and_it_is_stored(s3_tls, bucket_tls):
    body = os.urandom(MiB + 17)
    out = s3_tls.put_object(Bucket=bucket_tls, Key="weights.bin", Body=body)
    puts = [h for url, h in s3_tls.sent if url.endswith("/weights.bin")]
    assert header(puts[-1], "x-amz-trailer") == "x-amz-checksum-crc32", puts[-1]
    assert "aws-chunked" in header(puts[-1], "content-encoding")
    assert out["ChecksumCRC32"]
    head = s3_tls.head_object(Bucket=bucket_tls, Key="weights.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == out["ChecksumCRC32"]
    got = s3_tls.get_object(Bucket=bucket_tls, Key="weights.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == body


def test_upload_file_multipart_with_trailers_round_trips(s3_tls, bucket_tls, tmp_path):
    src = tmp_path / "model.safetensors"
    data = os.urandom(20 * MiB + 3)
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    s3_tls.upload_file(str(src), bucket_tls, "model.safetensors", Config=config)
    part_trailers = trailers_sent(s3_tls, lambda url: "partNumber=" in url)
    assert part_trailers == ["x-amz-checksum-crc32"] * 3, part_trailers

    head = s3_tls.head_object(Bucket=bucket_tls, Key="model.safetensors", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")
    dst = tmp_path / "back"
    s3_tls.download_file(bucket_tls, "model.safetensors", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_the_aws_cli_copies_over_https(tls, s3_tls, bucket_tls, tmp_path):
    server, ca = tls
    src = tmp_path / "up.bin"
    data = os.urandom(12 * MiB + 5)
    src.write_bytes(data)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": str(home), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "c"),
    }
    aws = [os.path.join(os.path.dirname(sys.executable), "aws"), "--endpoint-url",
           server.endpoint, "--ca-bundle", str(ca.ca_file)]
    for args in (["s3", "cp", str(src), f"s3://{bucket_tls}/up.bin"],
                 ["s3", "cp", f"s3://{bucket_tls}/up.bin", str(tmp_path / "down.bin")]):
        p = subprocess.run(aws + args, capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
    assert (tmp_path / "down.bin").read_bytes() == data


def test_a_client_without_the_ca_refuses_the_server(tls):
    server, _ = tls
    with pytest.raises(botocore.exceptions.SSLError):
        client(server, None).list_buckets()
