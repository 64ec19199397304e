//! An S3 endpoint that stores nothing and answers at once, to measure the bench client's own
//! ceiling: PUTs and parts are drained and acknowledged, GETs return `--size` bytes (zeros),
//! listings are empty, multipart uploads succeed. Signatures are not checked.
//!
//! `cargo run --release -p meridian-client --example null_s3 -- 127.0.0.1:9900 64KiB`

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

async fn answer(
    req: Request<Incoming>,
    object: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or_default().to_string();
    let is_bucket = req.uri().path().trim_matches('/').split('/').count() == 1;
    let range = req
        .headers()
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Drain the request body without keeping it.
    let mut body = req.into_body();
    while let Some(Ok(_)) = body.frame().await {}
    let ok = Response::builder().header("etag", "\"00000000000000000000000000000000\"");
    let response = match method {
        Method::GET if is_bucket => ok.body(Full::new(Bytes::from_static(
            b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        ))),
        Method::GET => {
            let slice = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(r) => {
                    let (a, b) = r.split_once('-').unwrap_or(("0", ""));
                    let start: usize = a.parse().unwrap_or(0);
                    let end: usize = b.parse::<usize>().map(|e| e + 1).unwrap_or(object.len());
                    object.slice(start.min(object.len())..end.min(object.len()))
                }
                None => object.clone(),
            };
            ok.status(if range.is_some() { 206 } else { 200 }).body(Full::new(slice))
        }
        Method::POST if query.contains("uploads") => ok.body(Full::new(Bytes::from_static(
            b"<InitiateMultipartUploadResult><UploadId>null-upload</UploadId></InitiateMultipartUploadResult>",
        ))),
        Method::DELETE => ok.status(204).body(Full::new(Bytes::new())),
        _ => ok.body(Full::new(Bytes::new())),
    };
    Ok(response.expect("static response parts are valid"))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9900".into());
    let size: meridian_client::ByteSize = args
        .next()
        .unwrap_or_else(|| "64KiB".into())
        .parse()
        .expect("size");
    let object = Bytes::from(vec![0u8; size.bytes() as usize]);
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    println!("null S3 on http://{address}, objects of {size}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let object = object.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, object.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
