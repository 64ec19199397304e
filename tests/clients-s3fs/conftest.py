"""Fixtures for the s3fs tests: the shared Meridian server fixture and an s3fs filesystem
pointed at it. This suite runs in its own venv (s3fs pins its botocore through aiobotocore)."""

import sys
import uuid
from pathlib import Path

import pytest
import s3fs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, Server  # noqa: E402


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


def filesystem(server, **kwargs):
    return s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        endpoint_url=server.endpoint,
        client_kwargs={"region_name": REGION},
        config_kwargs={"retries": {"max_attempts": 1}},
        skip_instance_cache=True,
        **kwargs,
    )


@pytest.fixture
def fs(server):
    return filesystem(server)


@pytest.fixture
def version_fs(server):
    return filesystem(server, version_aware=True)


@pytest.fixture
def bucket(fs):
    name = "t-" + uuid.uuid4().hex[:20]
    fs.mkdir(name)
    return name
