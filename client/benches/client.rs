//! What the load generator spends per request before the network (`cargo bench -p
//! meridian-client`): building and SigV4-signing a request, and reading the XML S3 answers
//! with (an error document, a 1,000-key ListObjectsV2 page). Printed as ns or µs per
//! operation; `MERIDIAN_BENCH_ITERS` sets the iterations (default 200,000).

use std::hint::black_box;
use std::time::Instant;

use http::Method;
use meridian_client::s3::{ClientConfig, S3Client};
use meridian_client::{xml, PayloadBody};

fn iterations() -> u32 {
    std::env::var("MERIDIAN_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn per_op(what: &str, n: u32, mut op: impl FnMut()) {
    for _ in 0..n / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..n {
        op();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    if ns >= 10_000.0 {
        println!("{what:<48} {:>10.1} µs/op", ns / 1000.0);
    } else {
        println!("{what:<48} {ns:>10.0} ns/op");
    }
}

fn main() {
    let n = iterations();
    let client = S3Client::new(&ClientConfig {
        endpoint: "http://127.0.0.1:9000".into(),
        ca_file: None,
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        region: "us-east-1".into(),
        bucket: "bench".into(),
        max_idle_connections: 1,
    })
    .expect("a client");

    per_op("sign GET with range", n, || {
        black_box(
            client
                .signed_request(
                    Method::GET,
                    "prefix/object-000123",
                    &[],
                    Some("bytes=0-1023"),
                    PayloadBody::empty(),
                )
                .expect("a request"),
        );
    });
    per_op("sign PUT part (query: partNumber, uploadId)", n, || {
        black_box(
            client
                .signed_request(
                    Method::PUT,
                    "weights/model.safetensors",
                    &[("partNumber", "17"), ("uploadId", "0193a1b2-upload/id+x=")],
                    None,
                    PayloadBody::empty(),
                )
                .expect("a request"),
        );
    });

    let error = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
        <Message>The specified key does not exist.</Message><Key>a&amp;b</Key>\
        <RequestId>0193a1b2</RequestId></Error>";
    per_op("read an error's Code and Message", n, || {
        black_box(xml::error_fields(error));
    });

    let mut page = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>bench</Name>\
         <Prefix></Prefix><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys>\
         <IsTruncated>true</IsTruncated>",
    );
    for i in 0..1000 {
        page.push_str(&format!(
            "<Contents><Key>prefix/object-{i:06}</Key><LastModified>2026-11-29T05:00:00.000Z\
             </LastModified><ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag>\
             <Size>4096</Size><StorageClass>STANDARD</StorageClass></Contents>"
        ));
    }
    page.push_str("<NextContinuationToken>cHJlZml4L29iamVjdC0wMDA5OTk=</NextContinuationToken></ListBucketResult>");
    per_op(
        "read a 1,000-key ListObjectsV2 page",
        (n / 100).max(100),
        || {
            black_box(xml::list_summary(&page));
        },
    );
}
