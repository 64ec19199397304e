"""Access keys managed at run time, seen by boto3: `meridian admin key ...` creates, disables,
rotates and deletes keys on the running session server, and the next boto3 request sees it
(no restart); grants decide what each key may do."""

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from meridian_server import ACCESS_KEY, REGION, SECRET_KEY, meridian_binary


@pytest.fixture(scope="module")
def admin(server, verify):
    """Runs `meridian admin ...` as root against the session server; returns its stdout."""

    def run(*args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            MERIDIAN_ENDPOINT=server.endpoint,
        )
        if verify:
            env["MERIDIAN_CA_FILE"] = verify
        p = subprocess.run([meridian_binary(), "admin", *args], capture_output=True, text=True,
                           env=env, timeout=60)
        assert p.returncode == 0, f"meridian admin {' '.join(args)}:\n{p.stdout}\n{p.stderr}"
        return p.stdout

    return run


def client(server, verify, access_key, secret_key):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, verify=verify, region_name=REGION,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def new_key(admin, *grants):
    made = json.loads(admin("key", "create", "--name", "pytest", "--json"))
    for bucket, access in grants:
        admin("grant", "add", "--key", made["access_key"], "--bucket", bucket, "--access", access)
    return made["access_key"], made["secret_key"]


def code_of(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def fetch(url, verify):
    import ssl
    ctx = ssl.create_default_context(cafile=verify) if verify else None
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_new_key_works_at_once_and_a_disabled_one_is_refused_at_once(server, verify, admin, s3):
    name = "keys-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    ak, sk = new_key(admin, (name, "read"), (name, "write"))
    job = client(server, verify, ak, sk)
    job.put_object(Bucket=name, Key="weights.bin", Body=b"w" * 1000)
    assert job.get_object(Bucket=name, Key="weights.bin")["Body"].read() == b"w" * 1000
    # A grant removed is gone from the next request on.
    admin("grant", "remove", "--key", ak, "--bucket", name, "--access", "write")
    assert code_of(lambda: job.put_object(Bucket=name, Key="late", Body=b"")) == "AccessDenied"
    assert json.loads(admin("key", "info", ak, "--json"))["grants"] == [{"bucket": name, "access": "read"}]
    admin("grant", "add", "--key", ak, "--bucket", name, "--access", "write")
    # SigV2 presigned (boto3's default) and SigV4 presigned URLs.
    v4 = client(server, verify, ak, sk)
    v4.meta.config.signature_version = "s3v4"
    urls = [job.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "weights.bin"})]
    urls.append(boto3.client(
        "s3", endpoint_url=server.endpoint, verify=verify, region_name=REGION,
        aws_access_key_id=ak, aws_secret_access_key=sk,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    ).generate_presigned_url("get_object", Params={"Bucket": name, "Key": "weights.bin"}))
    for url in urls:
        assert fetch(url, verify)[0] == 200

    admin("key", "disable", ak)
    assert code_of(lambda: job.get_object(Bucket=name, Key="weights.bin")) == "InvalidAccessKeyId"
    for url in urls:
        assert fetch(url, verify)[0] == 403, url
    admin("key", "enable", ak)
    assert job.get_object(Bucket=name, Key="weights.bin")["Body"].read() == b"w" * 1000
    admin("key", "delete", ak)
    assert code_of(lambda: job.list_objects_v2(Bucket=name)) == "InvalidAccessKeyId"
    listed = admin("key", "list")
    assert ak not in listed and ACCESS_KEY in listed


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(server, verify, admin, s3):
    name = "keys-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    ak, old = new_key(admin, (name, "read"), (name, "write"))
    before = client(server, verify, ak, old)
    before.put_object(Bucket=name, Key="k", Body=b"v")
    presigned = before.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"})

    rotated = json.loads(admin("key", "rotate", ak, "--grace", "1h", "--json"))
    assert rotated["access_key"] == ak and rotated["secret_key"] != old
    assert rotated["previous_secret_valid_until"]
    after = client(server, verify, ak, rotated["secret_key"])
    assert after.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    # The old secret still signs, headers, chunked uploads and presigned URLs alike.
    assert before.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    before.put_object(Bucket=name, Key="big", Body=b"x" * (6 << 20))
    assert fetch(presigned, verify) == (200, b"v")
    # Without grace, the old secret stops at once.
    again = json.loads(admin("key", "rotate", ak, "--json"))
    assert code_of(lambda: before.get_object(Bucket=name, Key="k")) == "SignatureDoesNotMatch"
    assert code_of(lambda: after.get_object(Bucket=name, Key="k")) == "SignatureDoesNotMatch"
    assert fetch(presigned, verify)[0] == 403
    newest = client(server, verify, ak, again["secret_key"])
    assert newest.get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def test_write_cannot_configure_the_bucket_and_owner_can(server, verify, admin, s3):
    name = "keys-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    wk, ws = new_key(admin, (name, "read"), (name, "write"))
    writer = client(server, verify, wk, ws)
    writer.put_object(Bucket=name, Key="a", Body=b"a")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{name}/*"}]})
    assert code_of(lambda: writer.put_bucket_policy(Bucket=name, Policy=policy)) == "AccessDenied"
    assert code_of(lambda: writer.put_bucket_versioning(
        Bucket=name, VersioningConfiguration={"Status": "Suspended"})) == "AccessDenied"
    replication = {"Role": "", "Rules": [{
        "ID": "r", "Status": "Enabled", "Priority": 1, "Filter": {},
        "DeleteMarkerReplication": {"Status": "Disabled"},
        "Destination": {"Bucket": "arn:aws:s3:::elsewhere"}}]}
    assert code_of(lambda: writer.put_bucket_replication(
        Bucket=name, ReplicationConfiguration=replication)) == "AccessDenied"
    assert code_of(lambda: writer.delete_bucket(Bucket=name)) == "AccessDenied"
    assert code_of(lambda: writer.create_bucket(Bucket=name + "-new")) == "AccessDenied"

    ok, os_ = new_key(admin, (name, "owner"))
    owner = client(server, verify, ok, os_)
    owner.put_bucket_policy(Bucket=name, Policy=policy)
    # Replication passes the access check for the owner; this one-region server then says it
    # has no peer to send to (the write key above never got that far).
    assert code_of(lambda: owner.put_bucket_replication(
        Bucket=name, ReplicationConfiguration=replication)) == "InvalidArgument"
    assert json.loads(owner.get_bucket_policy(Bucket=name)["Policy"])["Statement"]
    owner.delete_bucket_policy(Bucket=name)
    # Owner alone does not read or write objects.
    assert code_of(lambda: owner.get_object(Bucket=name, Key="a")) == "AccessDenied"
    s3.delete_object(Bucket=name, Key="a")
    for v in s3.list_object_versions(Bucket=name).get("Versions", []) + \
            s3.list_object_versions(Bucket=name).get("DeleteMarkers", []):
        s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    owner.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_two_keys_are_two_accounts(server, verify, admin):
    prefix = "acct-" + uuid.uuid4().hex[:8]
    ak1, sk1 = new_key(admin, (prefix + "-a*", "create"))
    ak2, sk2 = new_key(admin, (prefix + "-b*", "create"))
    one, two = client(server, verify, ak1, sk1), client(server, verify, ak2, sk2)
    one.create_bucket(Bucket=prefix + "-a1")
    two.create_bucket(Bucket=prefix + "-b1")
    # The creator owns its bucket: it writes, reads and configures it without other grants.
    one.put_object(Bucket=prefix + "-a1", Key="x", Body=b"1")
    one.put_bucket_versioning(Bucket=prefix + "-a1",
                              VersioningConfiguration={"Status": "Enabled"})
    listed_one = one.list_buckets()
    listed_two = two.list_buckets()
    assert [b["Name"] for b in listed_one["Buckets"]] == [prefix + "-a1"]
    assert [b["Name"] for b in listed_two["Buckets"]] == [prefix + "-b1"]
    assert listed_one["Owner"]["ID"] == ak1 and listed_two["Owner"]["ID"] == ak2
    assert code_of(lambda: two.get_object(Bucket=prefix + "-a1", Key="x")) == "AccessDenied"
    assert code_of(lambda: two.put_object(Bucket=prefix + "-a1", Key="y", Body=b"")) == "AccessDenied"
    assert code_of(lambda: two.create_bucket(Bucket=prefix + "-a2")) == "AccessDenied"


def test_a_key_with_the_admin_grant_manages_keys_and_others_cannot(server, verify, admin):
    ak, sk = new_key(admin, ("*", "admin"))
    plain_ak, plain_sk = new_key(admin)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
    env["MERIDIAN_ENDPOINT"] = server.endpoint
    if verify:
        env["MERIDIAN_CA_FILE"] = verify

    def as_key(k, s, *args):
        return subprocess.run([meridian_binary(), "admin", *args], capture_output=True, text=True,
                              env=dict(env, AWS_ACCESS_KEY_ID=k, AWS_SECRET_ACCESS_KEY=s),
                              timeout=60)

    made = as_key(ak, sk, "key", "create", "--json")
    assert made.returncode == 0, made.stderr
    refused = as_key(plain_ak, plain_sk, "key", "create", "--json")
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    # The configuration file's keys are read-only here.
    root = as_key(ak, sk, "key", "disable", ACCESS_KEY)
    assert root.returncode != 0 and "configuration file" in root.stderr


def test_an_expired_key_is_refused(server, verify, admin, s3):
    name = "keys-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    made = json.loads(admin("key", "create", "--expires", "2020-01-31", "--json"))
    admin("grant", "add", "--key", made["access_key"], "--bucket", name, "--access", "read")
    late = client(server, verify, made["access_key"], made["secret_key"])
    assert code_of(lambda: late.list_objects_v2(Bucket=name)) == "InvalidAccessKeyId"
    info = json.loads(admin("key", "info", made["access_key"], "--json"))
    assert info["expires"] == "2020-01-31T00:00:00Z"
    # A date that is not one is refused, and makes no key.
    before = admin("key", "list")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               MERIDIAN_ENDPOINT=server.endpoint, MERIDIAN_CA_FILE=verify or "")
    if not verify:
        del env["MERIDIAN_CA_FILE"]
    bad = subprocess.run([meridian_binary(), "admin", "key", "create", "--expires", "someday"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "400" in bad.stderr
    assert admin("key", "list").count("\n") == before.count("\n")
