//! CORS as browsers meet it, around the S3 service: a preflight `OPTIONS` is answered here
//! from the bucket's rules (it is never signed and is no S3 operation), and every other answer
//! to a request with an `Origin` header (errors and presigned URLs included) gets the
//! `Access-Control-*` headers of the first rule that lets that origin use the method.
//! Requests without `Origin` cost nothing; the rules are read once per bucket and cached.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use meridian_documents::cors::{CorsConfig, CorsRule};
use meridian_metadata::{ConfigCache, MetaStore};
use s3s::Body;

/// Every bucket's CORS rules, and how a request names its bucket.
#[derive(Clone)]
pub struct CorsRules {
    cache: Arc<ConfigCache<CorsConfig>>,
    domains: Arc<crate::host::Domains>,
}

/// What the answer to a request with an `Origin` needs to know of the request.
pub struct Asked {
    bucket: String,
    origin: String,
    method: String,
}

impl CorsRules {
    pub fn new(meta: MetaStore, domains: crate::host::Domains) -> CorsRules {
        CorsRules {
            cache: Arc::new(ConfigCache::new(meta, crate::s3::cors::DOCUMENT, |doc| {
                CorsConfig::from_json(doc).map_err(|e| e.to_string())
            })),
            domains: Arc::new(domains),
        }
    }

    pub fn invalidate(&self, bucket: &str) {
        self.cache.invalidate(bucket);
    }

    fn config(&self, bucket: &str) -> Option<Arc<CorsConfig>> {
        let read = || self.cache.get(bucket).ok().flatten();
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(read)
            }
            _ => read(),
        }
    }

    /// The bucket a request names: its virtual host, or the first segment of its path.
    fn bucket_of<B>(&self, req: &http::Request<B>) -> Option<String> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        if let Some(bucket) = host.and_then(|h| self.domains.bucket_of(h)) {
            return Some(bucket.1.to_ascii_lowercase());
        }
        let first = req.uri().path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty() && !first.starts_with('_')).then(|| first.to_owned())
    }

    /// For a request with an `Origin`: what its answer's CORS headers depend on.
    pub fn asked<B>(&self, req: &http::Request<B>) -> Option<Asked> {
        let origin = req.headers().get(http::header::ORIGIN)?.to_str().ok()?;
        // As RGW and the s3-tests expect: a request that names the method it stands for
        // (`Access-Control-Request-Method`) is matched with that method.
        let method = req
            .headers()
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .unwrap_or(req.method().as_str());
        Some(Asked {
            bucket: self.bucket_of(req)?,
            origin: origin.to_owned(),
            method: method.to_owned(),
        })
    }

    /// Adds the CORS headers of the matching rule, if any, to an answer.
    pub fn decorate(&self, asked: &Asked, headers: &mut HeaderMap) {
        let Some(config) = self.config(&asked.bucket) else {
            return;
        };
        if let Some(rule) = config.rule_for(&asked.origin, &asked.method, &[]) {
            allow(headers, rule, &asked.origin, &[]);
        }
    }

    /// The answer to a preflight `OPTIONS`.
    pub fn preflight<B>(&self, req: &http::Request<B>, request_id: &str) -> Response<Body> {
        let header =
            |name: http::header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) = (
            header(http::header::ORIGIN),
            header(http::header::ACCESS_CONTROL_REQUEST_METHOD),
        ) else {
            return refusal(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
                request_id,
            );
        };
        let requested: Vec<String> = header(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let requested: Vec<&str> = requested.iter().map(String::as_str).collect();
        let config = self.bucket_of(req).and_then(|b| self.config(&b));
        let Some(config) = config else {
            return refusal(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
                request_id,
            );
        };
        match config.rule_for(origin, method, &requested) {
            Some(rule) => {
                let mut resp = Response::new(Body::empty());
                allow(resp.headers_mut(), rule, origin, &requested);
                resp
            }
            None => refusal(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                request_id,
            ),
        }
    }
}

/// Whether a request is a preflight this layer answers.
pub fn is_preflight<B>(req: &http::Request<B>) -> bool {
    req.method() == Method::OPTIONS
}

fn allow(headers: &mut HeaderMap, rule: &CorsRule, origin: &str, requested: &[&str]) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    let allow_origin = rule.allow_origin(origin);
    set("access-control-allow-origin", allow_origin.to_owned());
    set(
        "access-control-allow-methods",
        rule.allowed_methods.join(", "),
    );
    if allow_origin != "*" {
        set("access-control-allow-credentials", "true".into());
    }
    if !requested.is_empty() {
        set("access-control-allow-headers", requested.join(", "));
    }
    if !rule.expose_headers.is_empty() {
        set(
            "access-control-expose-headers",
            rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set("access-control-max-age", age.to_string());
    }
    set(
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
    );
}

fn refusal(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response<Body> {
    crate::request::xml_error(status, code, message, request_id)
}
