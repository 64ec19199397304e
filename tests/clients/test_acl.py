"""ACLs where a bucket's Object Ownership enables them (ObjectWriter, BucketOwnerPreferred):
canned ACLs and grant headers on buckets and objects, Get/Put{Bucket,Object}Acl, grants to
users and to the AllUsers / AuthenticatedUsers groups, evaluated with grants and bucket
policies (an explicit Deny still wins); BucketOwnerEnforced stays the default."""

import json
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from meridian_server import ACCESS_KEY, new_account

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def other(server, verify):
    """A second account: a run-time key with no grants of its own."""
    return new_account(server, verify)


def anonymous_get(server, verify, path):
    import ssl
    ctx = ssl.create_default_context(cafile=verify) if verify else None
    try:
        with urllib.request.urlopen(f"{server.endpoint}/{path}", context=ctx, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def code(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def new_bucket(s3, ownership, **extra):
    name = "acl-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name, ObjectOwnership=ownership, **extra)
    return name


def test_enforced_is_the_default_and_refuses_acls(s3):
    name = "acl-" + uuid.uuid4().hex[:16]
    assert code(lambda: s3.create_bucket(Bucket=name, ACL="public-read")) == \
        "InvalidBucketAclWithObjectOwnership"
    s3.create_bucket(Bucket=name)
    rules = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert code(lambda: s3.put_object(Bucket=name, Key="k", Body=b"", ACL="public-read")) == \
        "AccessControlListNotSupported"


def test_public_read_bucket_and_objects(server, verify, s3):
    name = new_bucket(s3, "ObjectWriter", ACL="public-read")
    grants = s3.get_bucket_acl(Bucket=name)["Grants"]
    assert {"Type": "Group", "URI": ALL_USERS} == grants[0]["Grantee"]
    assert grants[0]["Permission"] == "READ"
    s3.put_object(Bucket=name, Key="open", Body=b"for all", ACL="public-read")
    s3.put_object(Bucket=name, Key="closed", Body=b"mine")
    assert anonymous_get(server, verify, f"{name}/open") == (200, b"for all")
    assert anonymous_get(server, verify, f"{name}/closed")[0] == 403
    assert anonymous_get(server, verify, f"{name}?list-type=2")[0] == 200, "the bucket lists"
    # Who may list the bucket learns that a key is missing (404); others get 403, as on AWS.
    assert anonymous_get(server, verify, f"{name}/missing")[0] == 404
    private = new_bucket(s3, "ObjectWriter")
    assert anonymous_get(server, verify, f"{private}/missing")[0] == 403
    assert s3.get_bucket_policy_status(Bucket=name)["PolicyStatus"]["IsPublic"]
    # An explicit Deny in the policy wins over the ACL.
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{name}/open"}]}))
    assert anonymous_get(server, verify, f"{name}/open")[0] == 403
    s3.delete_bucket_policy(Bucket=name)
    # IgnorePublicAcls makes the public grants count for nothing.
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "IgnorePublicAcls": True, "BlockPublicAcls": False,
        "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    assert anonymous_get(server, verify, f"{name}/open")[0] == 403
    s3.delete_public_access_block(Bucket=name)
    s3.put_object_acl(Bucket=name, Key="open", ACL="private")
    assert anonymous_get(server, verify, f"{name}/open")[0] == 403


def test_grants_to_users_and_authenticated_users(s3, other):
    other_key, other_s3 = other
    name = new_bucket(s3, "ObjectWriter")
    s3.put_object(Bucket=name, Key="shared", Body=b"s")
    assert code(lambda: other_s3.get_object(Bucket=name, Key="shared")) == "AccessDenied"
    s3.put_object_acl(Bucket=name, Key="shared", GrantRead=f'id="{other_key}"')
    assert other_s3.get_object(Bucket=name, Key="shared")["Body"].read() == b"s"
    acl = s3.get_object_acl(Bucket=name, Key="shared")
    assert [(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]] == [(other_key, "READ")]
    assert code(lambda: other_s3.put_object_acl(Bucket=name, Key="shared", ACL="public-read")) == \
        "AccessDenied", "READ does not give WRITE_ACP"
    s3.put_object(Bucket=name, Key="members", Body=b"m", ACL="authenticated-read")
    assert other_s3.get_object(Bucket=name, Key="members")["Body"].read() == b"m"
    assert code(lambda: s3.put_object_acl(Bucket=name, Key="shared",
                                          GrantRead='id="nobody-here"')) == "InvalidArgument"
    # WRITE on the bucket lets the other account write; ObjectWriter makes it the owner.
    s3.put_bucket_acl(Bucket=name, AccessControlPolicy={
        "Owner": {"ID": ACCESS_KEY},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": ACCESS_KEY},
                    "Permission": "FULL_CONTROL"},
                   {"Grantee": {"Type": "CanonicalUser", "ID": other_key},
                    "Permission": "WRITE"}]})
    other_s3.put_object(Bucket=name, Key="theirs", Body=b"t")
    assert s3.get_object_acl(Bucket=name, Key="theirs")["Owner"]["ID"] == other_key
    assert other_s3.get_object(Bucket=name, Key="theirs")["Body"].read() == b"t", "its owner reads it"


def test_bucket_owner_preferred_takes_objects_given_full_control(s3, other):
    other_key, other_s3 = other
    name = new_bucket(s3, "BucketOwnerPreferred", GrantWrite=f'id="{other_key}"')
    other_s3.put_object(Bucket=name, Key="given", Body=b"g", ACL="bucket-owner-full-control")
    other_s3.put_object(Bucket=name, Key="kept", Body=b"k")
    assert s3.get_object_acl(Bucket=name, Key="given")["Owner"]["ID"] == ACCESS_KEY
    assert s3.get_object_acl(Bucket=name, Key="kept")["Owner"]["ID"] == other_key
    controls = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert controls == [{"ObjectOwnership": "BucketOwnerPreferred"}]
    # ACLs cannot be disabled while the bucket ACL grants someone else.
    assert code(lambda: s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})) == \
        "InvalidBucketAclWithObjectOwnership"
