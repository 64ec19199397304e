"""CORS: the bucket's rules through boto3, and what a browser meets, played by curl: the
preflight OPTIONS, and the Access-Control-* headers of answers (errors and presigned URLs
included)."""

import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError

RULES = {"CORSRules": [
    {"ID": "app", "AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
]}


def curl(verify, *args):
    """Runs curl; returns (status, {lower-case header: value})."""
    tls = ["--cacert", verify] if verify else []
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", *tls, *args],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.replace("\r", "").split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def test_rules_round_trip_and_bad_ones_are_refused(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["https://*.example.com"]
    assert got[0]["ExposeHeaders"] == ["ETag"] and got[0]["MaxAgeSeconds"] == 600
    for bad in ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
                {"AllowedOrigins": ["*a*"], "AllowedMethods": ["GET"]}):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [bad]})
        assert e.value.response["Error"]["Code"] == "InvalidRequest"
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == got, "a refused change changes nothing"
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)


def test_a_browser_preflight_and_the_answers_after_it(server, verify, s3, bucket):
    url = f"{server.endpoint}/{bucket}/page.html"
    # No rules yet: refused.
    status, _ = curl(verify, "-X", "OPTIONS", url, "-H", "Origin: https://app.example.com",
                     "-H", "Access-Control-Request-Method: PUT")
    assert status == 403
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    status, h = curl(verify, "-X", "OPTIONS", url, "-H", "Origin: https://app.example.com",
                     "-H", "Access-Control-Request-Method: PUT",
                     "-H", "Access-Control-Request-Headers: Content-Type, X-Amz-Date")
    assert status == 200
    assert h["access-control-allow-origin"] == "https://app.example.com"
    assert h["access-control-allow-methods"] == "GET, PUT"
    assert h["access-control-allow-headers"] == "content-type, x-amz-date"
    assert h["access-control-max-age"] == "600"
    # Another origin, a method or a header the rules do not allow: refused, no CORS headers.
    for extra in (["-H", "Origin: https://evil.test", "-H", "Access-Control-Request-Method: PUT"],
                  ["-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: DELETE"],
                  ["-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: PUT",
                   "-H", "Access-Control-Request-Headers: authorization-x"]):
        status, h = curl(verify, "-X", "OPTIONS", url, *extra)
        assert status == 403 and "access-control-allow-origin" not in h, extra
    status, _ = curl(verify, "-X", "OPTIONS", url, "-H", "Origin: https://app.example.com")
    assert status == 400, "a preflight names its method"
    # The rule `*` for HEAD answers with `*` and no credentials.
    status, h = curl(verify, "-X", "OPTIONS", url, "-H", "Origin: https://x.test",
                     "-H", "Access-Control-Request-Method: HEAD")
    assert status == 200 and h["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in h

    # The request itself: a presigned GET carries the headers, and so does an error.
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>hi</p>", ContentType="text/html")
    signed = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "page.html"})
    status, h = curl(verify, signed, "-H", "Origin: https://app.example.com")
    assert status == 200 and h["access-control-allow-origin"] == "https://app.example.com"
    assert h["access-control-expose-headers"] == "ETag"
    status, h = curl(verify, url, "-H", "Origin: https://app.example.com")
    assert status == 403 and h["access-control-allow-origin"] == "https://app.example.com"
    status, h = curl(verify, url)
    assert "access-control-allow-origin" not in h
