"""Multi-GB model weights the way users move them: `aws s3 cp` with its defaults (multipart,
parallel parts, the CLI's default checksum) and with explicit checksum algorithms, and
boto3's managed transfers. Every download is compared byte for byte with what was sent."""

import hashlib
import os
import uuid

import pytest
from boto3.s3.transfer import TransferConfig

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def one_gib_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "weights-1gib.bin"
    # Random, so no layer can cheat with compression or dedup; written in 16 MiB blocks.
    with open(path, "wb") as f:
        for _ in range(GIB // (16 * MIB)):
            f.write(os.urandom(16 * MIB))
    return path, sha256_of(path)


@pytest.mark.parametrize("checksum_args", [[], ["--checksum-algorithm", "SHA256"], ["--checksum-algorithm", "CRC32C"]],
                         ids=["cli-default", "sha256", "crc32c"])
def test_aws_s3_cp_one_gib_round_trip(aws, one_gib_file, tmp_path, checksum_args):
    src, digest = one_gib_file
    bucket = "big-" + uuid.uuid4().hex[:12]
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", str(src), f"s3://{bucket}/weights.bin", *checksum_args)
    listing = aws("s3", "ls", f"s3://{bucket}/").stdout
    assert str(GIB) in listing

    dst = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{bucket}/weights.bin", str(dst))
    assert os.path.getsize(dst) == GIB
    assert sha256_of(dst) == digest
    dst.unlink()
    aws("s3", "rm", f"s3://{bucket}/weights.bin")
    aws("s3", "rb", f"s3://{bucket}")


def test_boto3_upload_file_download_file_with_8_mib_parts(s3, bucket, tmp_path):
    src = tmp_path / "ckpt.bin"
    data = os.urandom(50 * MIB + 12345)
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
    s3.upload_file(str(src), bucket, "ckpt/step-100.bin", Config=config)

    head = s3.head_object(Bucket=bucket, Key="ckpt/step-100.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-7"), head["ETag"]  # 6 x 8 MiB + the rest

    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "ckpt/step-100.bin", str(dst), Config=config)
    assert dst.read_bytes() == data
