"""Server-side encryption through boto3 and the aws CLI: SSE-S3, SSE-KMS with a keyring key
(`meridian kms add-key testkey-1`) and SSE-C, single PUTs at the 64 KiB package boundaries,
64 MiB multipart transfers, ranged reads, and bucket default encryption."""

import base64
import hashlib
import os
import subprocess

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from meridian_server import meridian_binary

PACKAGE = 64 * 1024
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(scope="module", autouse=True)
def testkey(server):
    keyring = server.dir / "keyring.toml"
    listed = keyring.read_text() if keyring.exists() else ""
    if 'name = "testkey-1"' not in listed:
        subprocess.run([meridian_binary(), "kms", "add-key", "testkey-1", "--keyring", str(keyring)],
                       check=True, capture_output=True)


def sse_c(key=KEY):
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "testkey-1"}, {}),
    "sse-c": (sse_c(), sse_c()),
}


def body(n, seed=0):
    return bytes((i * 7 + seed) % 251 for i in range(n))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_puts_at_package_boundaries_and_ranged_reads(s3, bucket, mode):
    write, read = MODES[mode]
    for n in (0, 1, PACKAGE - 1, PACKAGE, PACKAGE + 1):
        data = body(n, n % 13)
        put = s3.put_object(Bucket=bucket, Key=f"o{n}", Body=data, **write)
        md5 = '"' + hashlib.md5(data).hexdigest() + '"'
        assert (put["ETag"] == md5) == (mode == "sse-s3"), (mode, n)
        got = s3.get_object(Bucket=bucket, Key=f"o{n}", **read)
        assert got["Body"].read() == data
        if mode == "sse-kms":
            assert got["ServerSideEncryption"] == "aws:kms" and got["SSEKMSKeyId"] == "testkey-1"
        elif mode == "sse-s3":
            assert got["ServerSideEncryption"] == "AES256"
        else:
            assert got["SSECustomerAlgorithm"] == "AES256"
            assert got["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY).digest()).decode()
        if n > PACKAGE:
            for a, b in ((PACKAGE - 1, PACKAGE), (PACKAGE, n - 1), (0, PACKAGE - 1)):
                part = s3.get_object(Bucket=bucket, Key=f"o{n}", Range=f"bytes={a}-{b}", **read)
                assert part["Body"].read() == data[a:b + 1]


def test_sse_c_needs_the_right_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"weights", **sse_c())
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="secret")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="secret", **sse_c(OTHER_KEY))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.get_object(Bucket=bucket, Key="secret", **sse_c())["Body"].read() == b"weights"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_64_mib_multipart_transfer(s3, bucket, tmp_path, mode):
    write, read = MODES[mode]
    src = tmp_path / "weights.bin"
    data = os.urandom(64 << 20)
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    s3.upload_file(str(src), bucket, "weights.bin", ExtraArgs=write, Config=config)
    head = s3.head_object(Bucket=bucket, Key="weights.bin", **read)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-8"')
    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "weights.bin", str(dst), ExtraArgs=read or None, Config=config)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    a = (8 << 20) - 3
    got = s3.get_object(Bucket=bucket, Key="weights.bin", Range=f"bytes={a}-{a + 5}", **read)
    assert got["Body"].read() == data[a:a + 6]


def test_aws_cli_cp_with_each_sse_option(aws, bucket, tmp_path):
    keyfile = tmp_path / "sse-c.key"
    keyfile.write_bytes(KEY)
    options = {
        "s3": ["--sse", "AES256"],
        "kms": ["--sse", "aws:kms", "--sse-kms-key-id", "testkey-1"],
        "c": ["--sse-c", "AES256", "--sse-c-key", f"fileb://{keyfile}"],
    }
    # 0 B, 1 B, a package and one byte either side, and 64 MiB (a multipart upload and a
    # ranged parallel download, as `aws s3 cp` does for large files).
    for size in (0, 1, PACKAGE - 1, PACKAGE, PACKAGE + 1, 64 << 20):
        src = tmp_path / f"model-{size}.bin"
        data = os.urandom(size)
        src.write_bytes(data)
        for name, opts in options.items():
            key = f"{name}/{size}"
            aws("s3", "cp", "--only-show-errors", str(src), f"s3://{bucket}/{key}", *opts)
            back = tmp_path / f"{name}-{size}.back"
            down = opts if name == "c" else []
            aws("s3", "cp", "--only-show-errors", f"s3://{bucket}/{key}", str(back), *down)
            assert back.read_bytes() == data, key
    p = aws("s3", "cp", "--only-show-errors", f"s3://{bucket}/c/1", str(tmp_path / "nokey"), check=False)
    assert p.returncode != 0


def test_bucket_default_encryption(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "ServerSideEncryptionConfigurationNotFoundError"
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "testkey-1"}}]})
    s3.put_object(Bucket=bucket, Key="x", Body=b"by default")
    head = s3.head_object(Bucket=bucket, Key="x")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "testkey-1"
    s3.delete_bucket_encryption(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="y", Body=b"clear")
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="y")
