"""Browser form uploads (POST Object) as boto3's `generate_presigned_post` makes them: the
policy's conditions (`starts-with`, `content-length-range`, exact fields), the form's `acl`,
`tagging` and metadata, `${filename}` in the key, and `success_action_status` /
`success_action_redirect` answers, with S3's error codes when a form breaks its policy."""

import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import pytest
import requests

TAGS = "<Tagging><TagSet><Tag><Key>team</Key><Value>vision</Value></Tag></TagSet></Tagging>"


@pytest.fixture
def open_bucket(s3):
    """A bucket with ACLs (ObjectWriter), so a form may give its object one."""
    name = "post-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name, ObjectOwnership="ObjectWriter")
    return name


def post(s3, verify, bucket, key, body, fields=None, conditions=None, filename="cat.jpg",
         expires=600):
    form = s3.generate_presigned_post(bucket, key, Fields=fields or {},
                                      Conditions=conditions or [], ExpiresIn=expires)
    return requests.post(form["url"], data=form["fields"],
                         files={"file": (filename, body)}, verify=verify, timeout=30)


def error_code(response):
    return ET.fromstring(response.content).findtext("Code")


def test_a_form_upload_keeps_its_fields(s3, verify, open_bucket):
    fields = {"acl": "public-read", "tagging": TAGS, "Content-Type": "image/jpeg",
              "x-amz-meta-camera": "nikon"}
    conditions = [["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1024],
                  {"acl": "public-read"}, {"tagging": TAGS},
                  ["starts-with", "$Content-Type", "image/"],
                  ["starts-with", "$x-amz-meta-camera", ""]]
    r = post(s3, verify, open_bucket, "uploads/${filename}", b"meow", fields, conditions)
    assert r.status_code == 204, r.text
    # `${filename}` became the uploaded file's name, and the policy held for that key.
    head = s3.head_object(Bucket=open_bucket, Key="uploads/cat.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"] == {"camera": "nikon"}
    tags = s3.get_object_tagging(Bucket=open_bucket, Key="uploads/cat.jpg")["TagSet"]
    assert tags == [{"Key": "team", "Value": "vision"}]
    grants = s3.get_object_acl(Bucket=open_bucket, Key="uploads/cat.jpg")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ"
               for g in grants)
    assert s3.get_object(Bucket=open_bucket, Key="uploads/cat.jpg")["Body"].read() == b"meow"


def test_success_action_status_and_redirect(s3, verify, bucket):
    r = post(s3, verify, bucket, "a.txt", b"A", {"success_action_status": "201"},
             [{"success_action_status": "201"}])
    assert r.status_code == 201, r.text
    doc = ET.fromstring(r.content)
    assert doc.findtext("Key") == "a.txt" and doc.findtext("Bucket") == bucket
    etag = s3.head_object(Bucket=bucket, Key="a.txt")["ETag"]
    assert doc.findtext("ETag") == etag

    target = "http://127.0.0.1:9/done"
    form = s3.generate_presigned_post(bucket, "b.txt",
                                      Fields={"success_action_redirect": target},
                                      Conditions=[{"success_action_redirect": target}])
    r = requests.post(form["url"], data=form["fields"], files={"file": ("b.txt", b"B")},
                      verify=verify, timeout=30, allow_redirects=False)
    assert r.status_code == 303, r.text
    location = urlparse(r.headers["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "127.0.0.1:9" and query["key"] == ["b.txt"]
    # S3 quotes the ETag it appends.
    assert query["etag"] == [s3.head_object(Bucket=bucket, Key="b.txt")["ETag"]]


def test_a_form_that_breaks_its_policy_is_refused_and_stores_nothing(s3, verify, bucket):
    conditions = [["starts-with", "$key", "uploads/"], ["content-length-range", 1, 10]]
    # A key outside the prefix the policy allows: 403 AccessDenied, as on S3.
    r = post(s3, verify, bucket, "elsewhere/x", b"x", conditions=conditions)
    assert (r.status_code, error_code(r)) == (403, "AccessDenied"), r.text
    # A file larger than the range allows.
    r = post(s3, verify, bucket, "uploads/big", b"x" * 11, conditions=conditions)
    assert (r.status_code, error_code(r)) == (400, "EntityTooLarge"), r.text
    # A field the policy does not name.
    form = s3.generate_presigned_post(bucket, "uploads/extra", Conditions=conditions)
    r = requests.post(form["url"], data={**form["fields"], "x-amz-meta-sneaky": "1"},
                      files={"file": ("f", b"x")}, verify=verify, timeout=30)
    assert (r.status_code, error_code(r)) == (403, "AccessDenied"), r.text
    # A policy without its signature.
    fields = {k: v for k, v in form["fields"].items()
              if k.lower() not in ("signature", "x-amz-signature")}
    assert len(fields) < len(form["fields"])
    r = requests.post(form["url"], data=fields, files={"file": ("f", b"x")}, verify=verify,
                      timeout=30)
    assert r.status_code == 400, r.text
    # An expired policy.
    r = post(s3, verify, bucket, "uploads/late", b"x", conditions=conditions, expires=-10)
    assert (r.status_code, error_code(r)) == (403, "AccessDenied"), r.text
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == [], "nothing refused was stored"


def test_a_hand_signed_form_and_its_expiration_format(server, verify, s3, bucket):
    """A SigV2 form as the s3-tests and older browser code sign it; S3 wants the policy's
    expiration as an ISO 8601 UTC date."""
    import base64
    import hashlib
    import hmac
    import json

    from meridian_server import ACCESS_KEY, SECRET_KEY

    def send(expiration):
        policy = base64.b64encode(json.dumps({
            "expiration": expiration,
            "conditions": [{"bucket": bucket}, ["starts-with", "$key", "hand/"]],
        }).encode())
        signature = base64.b64encode(
            hmac.new(SECRET_KEY.encode(), policy, hashlib.sha1).digest())
        fields = {"key": "hand/${filename}", "AWSAccessKeyId": ACCESS_KEY,
                  "policy": policy, "signature": signature}
        return requests.post(f"{server.endpoint}/{bucket}", data=fields,
                             files={"file": ("h.txt", b"hand")}, verify=verify, timeout=30)

    r = send("2099-01-01 00:00:00.000000+00:00")
    assert (r.status_code, error_code(r)) == (400, "InvalidPolicyDocument"), r.text
    r = send("2099-01-01T00:00:00.000Z")
    assert r.status_code == 204, r.text
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["hand/h.txt"]

