"""s3fs (fsspec), as ML pipelines use it: dataset trees, random-access reads, multipart
writes, local transfers, copies, versions and the errors Python code relies on."""

import hashlib
import os

import pytest

MIB = 1 << 20


def pattern(size, seed):
    """Deterministic bytes that differ per seed and never repeat within a MiB."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


def test_dataset_tree_lists_globs_and_reads_ranges(fs, bucket):
    shards = {f"{bucket}/train/part-{i:04d}.bin": pattern(200_000 + i, i) for i in range(5)}
    shards[f"{bucket}/val/part-0000.bin"] = pattern(1234, 99)
    for path, data in shards.items():
        fs.pipe_file(path, data)

    assert sorted(fs.ls(f"{bucket}/train")) == sorted(p for p in shards if "/train/" in p)
    assert fs.ls(bucket, detail=False) == [f"{bucket}/train", f"{bucket}/val"]
    assert sorted(fs.find(bucket)) == sorted(shards)
    assert sorted(fs.glob(f"{bucket}/*/part-0000.bin")) == [
        f"{bucket}/train/part-0000.bin",
        f"{bucket}/val/part-0000.bin",
    ]
    assert fs.du(bucket) == sum(len(d) for d in shards.values())
    info = fs.info(f"{bucket}/train/part-0003.bin")
    assert info["type"] == "file" and info["size"] == 200_003
    assert fs.isdir(f"{bucket}/train") and not fs.isfile(f"{bucket}/train")

    # Random access, as a Parquet reader does: footer first, then a column chunk.
    path = f"{bucket}/train/part-0002.bin"
    data = shards[path]
    assert fs.cat_file(path, start=-8) == data[-8:]
    assert fs.cat_file(path, start=1000, end=5000) == data[1000:5000]
    with fs.open(path, "rb", block_size=64 * 1024) as f:
        f.seek(150_000)
        assert f.read(10_000) == data[150_000:160_000]
        f.seek(10)
        assert f.read(5) == data[10:15]
    assert fs.cat_file(path) == data


def test_large_streamed_write_goes_multipart_and_reads_back(fs, bucket):
    data = pattern(13 * MIB + 17, 7)
    path = f"{bucket}/weights/model.safetensors"
    with fs.open(path, "wb", block_size=5 * MIB) as f:
        for i in range(0, len(data), MIB):
            f.write(data[i : i + MIB])
    info = fs.info(path)
    assert info["size"] == len(data)
    # Three 5 MiB blocks were written as parts: S3's multipart ETag says so.
    assert info["ETag"].strip('"').endswith("-3"), info["ETag"]
    with fs.open(path, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    assert fs.list_multipart_uploads(bucket) == []


def test_put_get_copy_move_and_remove(fs, bucket, tmp_path):
    local = tmp_path / "ckpt"
    (local / "shards").mkdir(parents=True)
    files = {"config.json": b'{"layers": 32}', "shards/a.bin": pattern(300_000, 1), "shards/b.bin": b""}
    for name, data in files.items():
        (local / name).write_bytes(data)

    fs.put(str(local), f"{bucket}/ckpt", recursive=True)
    assert sorted(fs.find(f"{bucket}/ckpt")) == sorted(f"{bucket}/ckpt/{n}" for n in files)

    fs.copy(f"{bucket}/ckpt/shards/a.bin", f"{bucket}/best/a.bin")
    fs.mv(f"{bucket}/ckpt/config.json", f"{bucket}/best/config.json")
    assert not fs.exists(f"{bucket}/ckpt/config.json")

    out = tmp_path / "out"
    fs.get(f"{bucket}/best", str(out), recursive=True)
    assert (out / "a.bin").read_bytes() == files["shards/a.bin"]
    assert (out / "config.json").read_bytes() == files["config.json"]

    fs.rm(f"{bucket}/ckpt", recursive=True)
    assert not fs.exists(f"{bucket}/ckpt/shards/a.bin")
    assert fs.find(f"{bucket}/ckpt") == []
    assert sorted(os.listdir(out)) == ["a.bin", "config.json"]


def test_versions_are_readable_by_id(version_fs, bucket):
    fs = version_fs
    fs.make_bucket_versioned(bucket)
    path = f"{bucket}/labels.csv"
    fs.pipe_file(path, b"v1")
    fs.pipe_file(path, b"v2 longer")
    versions = fs.object_version_info(path)
    assert len(versions) == 2
    by_size = {v["Size"]: v["VersionId"] for v in versions}
    with fs.open(path, "rb", version_id=by_size[2]) as f:
        assert f.read() == b"v1"
    assert fs.cat_file(path) == b"v2 longer"
    fs.rm(path)
    assert not fs.exists(path)
    with fs.open(path, "rb", version_id=by_size[9]) as f:
        assert f.read() == b"v2 longer"


def test_missing_things_raise_what_python_code_expects(fs, bucket):
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{bucket}/nope")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{bucket}/nope")
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-bucket-" + bucket[2:])
    assert not fs.exists(f"{bucket}/nope")
