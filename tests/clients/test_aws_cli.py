"""The real aws CLI against Meridian: high-level `aws s3` commands and `aws s3api` versioning."""

import json
import os
import uuid


def test_mb_cp_ls_rm_round_trip(aws, tmp_path):
    bucket = "cli-" + uuid.uuid4().hex[:16]
    aws("s3", "mb", f"s3://{bucket}")
    src = tmp_path / "weights.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(data)

    aws("s3", "cp", str(src), f"s3://{bucket}/models/weights.bin")
    listing = aws("s3", "ls", f"s3://{bucket}/models/").stdout
    assert "weights.bin" in listing
    assert str(len(data)) in listing

    dst = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{bucket}/models/weights.bin", str(dst))
    assert dst.read_bytes() == data

    aws("s3", "rm", f"s3://{bucket}/models/weights.bin")
    assert "weights.bin" not in aws("s3", "ls", f"s3://{bucket}/models/", check=False).stdout
    aws("s3", "rb", f"s3://{bucket}")
    assert bucket not in aws("s3", "ls").stdout


def test_s3api_versioning_calls(aws, tmp_path):
    bucket = "cli-v-" + uuid.uuid4().hex[:16]
    aws("s3api", "create-bucket", "--bucket", bucket)
    aws("s3api", "put-bucket-versioning", "--bucket", bucket,
        "--versioning-configuration", "Status=Enabled")
    status = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout)
    assert status["Status"] == "Enabled"

    body = tmp_path / "v.txt"
    ids = []
    for content in (b"first", b"second"):
        body.write_bytes(content)
        out = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "doc.txt",
                             "--body", str(body)).stdout)
        ids.append(out["VersionId"])
    assert ids[0] != ids[1]

    versions = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    listed = [v["VersionId"] for v in versions["Versions"]]
    assert listed == [ids[1], ids[0]], "newest first"
    assert [v["IsLatest"] for v in versions["Versions"]] == [True, False]

    out = tmp_path / "old.txt"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "doc.txt", "--version-id", ids[0], str(out))
    assert out.read_bytes() == b"first"

    deleted = json.loads(aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc.txt").stdout)
    assert deleted["DeleteMarker"] is True
    missing = aws("s3api", "head-object", "--bucket", bucket, "--key", "doc.txt", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr
