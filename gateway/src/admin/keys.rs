//! Access keys and grants at run time (root or a key with the `admin` grant; JSON):
//!
//! - `GET /_meridian/admin/keys`: every key, the configuration file's (read-only) included;
//! - `POST /_meridian/admin/keys[?name=N][&expires=RFC3339]`: a new key; the answer carries
//!   its secret, the only time it is shown;
//! - `GET /_meridian/admin/keys/KEY`: one key;
//! - `POST /_meridian/admin/keys/KEY/{disable,enable}`;
//! - `POST /_meridian/admin/keys/KEY/rotate[?grace=DURATION]`: a new secret, the old one
//!   accepted for the grace period (none: refused at once);
//! - `DELETE /_meridian/admin/keys/KEY`;
//! - `POST` / `DELETE /_meridian/admin/keys/KEY/grants?bucket=B&access=A`: add or remove a
//!   grant (`read`, `write`, `owner`, `create`, `admin`, `replicate`).
//!
//! A change is in the user table before the answer is sent, so the next request sees it; it
//! is logged as an audit line naming who changed what, and queued for every peer region.
//! `PUT /_meridian/keys-sync` is where a peer sends its changes (root or a `replicate` grant
//! on `*`): applied when newer than what is here.

use std::sync::Arc;

use http::StatusCode;
use http_body_util::BodyExt;
use meridian_api::{KeyList, KeySecret};
use meridian_metadata::{AccessKeyRecord, GrantAccess, KeyGrant};
use meridian_store::access_keys::{AccessKeys, KeyError, OpenKey, WireKey};
use s3s::{Body, S3Request};

use super::{error, json, query, AdminApi};
use crate::auth::{rfc3339, Principal};

/// The largest key change a peer may send.
const MAX_SYNC_BODY: usize = 64 * 1024;

impl AdminApi {
    fn access_keys(&self) -> Option<Arc<AccessKeys>> {
        self.users.keys().cloned()
    }

    pub(super) async fn keys(&self, req: &S3Request<Body>) -> http::Response<Body> {
        let answer = self.key_request(req).await;
        if req.method != http::Method::GET && answer.status().is_success() {
            self.region_has_changed_key().await;
        }
        answer
    }

    /// In a region of several nodes, a key changed here goes to etcd, and the change is
    /// answered once every live node has it: a key made works, and a key disabled is
    /// refused, on every node at once.
    async fn region_has_changed_key(&self) {
        if let Some(cluster) = self.cluster.node() {
            cluster.key_changed().await;
        }
    }

    async fn key_request(&self, req: &S3Request<Body>) -> http::Response<Body> {
        let Some(keys) = self.access_keys() else {
            return error(StatusCode::NOT_IMPLEMENTED, "run-time keys are not enabled");
        };
        let by = req
            .extensions
            .get::<Principal>()
            .map(|p| p.access_key.clone())
            .unwrap_or_default();
        let q = query(req);
        let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let rest = req.uri.path().trim_start_matches("/_meridian/admin/keys");
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let method = req.method.as_str();
        if let [key, ..] = parts.as_slice() {
            if self.users.is_bootstrap(key) && method != "GET" {
                return error(
                    StatusCode::CONFLICT,
                    &format!("{key} is configured in the configuration file; change it there"),
                );
            }
        }
        let users = self.users.clone();
        let answer = match (method, parts.as_slice()) {
            ("GET", []) => {
                return json(StatusCode::OK, &KeyList { keys: users.list() });
            }
            ("GET", [key]) => {
                return match users.info(key) {
                    Some(info) => json(StatusCode::OK, &info),
                    None => error(StatusCode::NOT_FOUND, &format!("no access key {key}")),
                };
            }
            ("POST", []) => {
                let expires = match param("expires").map(|e| parse_time(&e)) {
                    None => None,
                    Some(Ok(t)) => Some(t),
                    Some(Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
                };
                let name = param("name").unwrap_or_default();
                let made = blocking(move || keys.create(&name, expires, &by)).await;
                return match made {
                    Ok(key) => self.changed("create", key),
                    Err(e) => key_error(e),
                };
            }
            ("POST", [key, "disable" | "enable"]) => {
                let enable = parts[1] == "enable";
                let key = key.to_string();
                blocking(move || keys.set_enabled(&key, enable, &by)).await
            }
            ("POST", [key, "rotate"]) => {
                let grace = match param("grace").map(|g| humantime::parse_duration(&g)) {
                    None => std::time::Duration::ZERO,
                    Some(Ok(g)) => g,
                    Some(Err(e)) => {
                        return error(StatusCode::BAD_REQUEST, &format!("grace: {e}"));
                    }
                };
                let key = key.to_string();
                let rotated = blocking(move || keys.rotate(&key, grace, &by)).await;
                return match rotated {
                    Ok(key) => self.changed("rotate", key),
                    Err(e) => key_error(e),
                };
            }
            ("DELETE", [key]) => {
                let key = key.to_string();
                blocking(move || keys.delete(&key, &by)).await
            }
            ("POST" | "DELETE", [key, "grants"]) => {
                let add = method == "POST";
                let (Some(bucket), Some(access)) = (param("bucket"), param("access")) else {
                    return error(StatusCode::BAD_REQUEST, "bucket and access are required");
                };
                let access: GrantAccess = match access.parse() {
                    Ok(a) => a,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                let key = key.to_string();
                blocking(move || keys.grant(&key, KeyGrant { bucket, access }, add, &by)).await
            }
            _ => return error(StatusCode::NOT_FOUND, "no such key endpoint"),
        };
        match answer {
            Ok(record) => {
                let what = match (method, parts.as_slice()) {
                    ("DELETE", [_]) => "delete",
                    ("POST", [_, "grants"]) => "grant add",
                    ("DELETE", [_, "grants"]) => "grant remove",
                    (_, [_, action]) => action,
                    _ => "change",
                };
                self.record_changed(what, &record, param("bucket"), param("access"));
                match users.info(&record.access_key) {
                    Some(info) => json(StatusCode::OK, &info),
                    None => json(
                        StatusCode::OK,
                        &serde_json::json!({ "deleted": record.access_key }),
                    ),
                }
            }
            Err(e) => key_error(e),
        }
    }

    /// Answers a create or rotate with the secret, after the table took the change.
    fn changed(&self, what: &str, key: OpenKey) -> http::Response<Body> {
        self.record_changed(what, &key.record, None, None);
        let status = if what == "create" {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        json(
            status,
            &KeySecret {
                access_key: key.record.access_key.clone(),
                secret_key: key.secret.to_string(),
                name: key.record.name.clone(),
                previous_secret_valid_until: key.record.previous_until.map(rfc3339),
            },
        )
    }

    /// The table takes the change, the audit line says it, the peers are told.
    fn record_changed(
        &self,
        what: &str,
        record: &AccessKeyRecord,
        bucket: Option<String>,
        access: Option<String>,
    ) {
        if let Err(e) = self.users.reload(&record.access_key) {
            tracing::error!(access_key = %record.access_key, error = %e, "the changed key could not be loaded");
        }
        tracing::info!(
            target: "meridian::audit",
            by = %record.changed_by,
            change = what,
            access_key = %record.access_key,
            bucket = bucket.as_deref().unwrap_or(""),
            access = access.as_deref().unwrap_or(""),
            "access key changed"
        );
        self.key_sync.wake();
    }

    /// `PUT /_meridian/keys-sync`: a key change from a peer region.
    pub(super) async fn keys_sync(&self, req: S3Request<Body>) -> http::Response<Body> {
        let Some(keys) = self.access_keys() else {
            return error(StatusCode::NOT_IMPLEMENTED, "run-time keys are not enabled");
        };
        if req.method != http::Method::PUT {
            return error(StatusCode::METHOD_NOT_ALLOWED, "PUT");
        }
        let body = match http_body_util::Limited::new(req.input, MAX_SYNC_BODY)
            .collect()
            .await
        {
            Ok(b) => zeroize::Zeroizing::new(b.to_bytes().to_vec()),
            Err(_) => return error(StatusCode::BAD_REQUEST, "the change is too large or cut"),
        };
        let wire: WireKey = match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not a key change: {e}")),
        };
        if self.users.is_bootstrap(&wire.record.access_key) {
            // Configured here by the file: the file wins, and says so.
            return error(
                StatusCode::CONFLICT,
                "that access key is configured in this region's configuration file",
            );
        }
        match blocking(move || keys.apply(wire)).await {
            Ok(Some(record)) => {
                self.record_changed("apply from a peer", &record, None, None);
                self.region_has_changed_key().await;
                json(StatusCode::OK, &serde_json::json!({ "applied": true }))
            }
            Ok(None) => json(StatusCode::OK, &serde_json::json!({ "applied": false })),
            Err(e) => key_error(e),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(KeyError::Invalid(format!("the change stopped: {e}"))))
}

fn key_error(e: KeyError) -> http::Response<Body> {
    let status = match &e {
        KeyError::NoSuchKey(_) => StatusCode::NOT_FOUND,
        KeyError::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// `2027-01-31`, an RFC 3339 time, or Unix seconds, as nanoseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        t
    } else if let Ok(d) = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    ) {
        d.midnight().assume_utc()
    } else if let Ok(secs) = text.parse::<i64>() {
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| e.to_string())?
    } else {
        return Err(format!(
            "expires {text:?}: give a date (2027-01-31), an RFC 3339 time or Unix seconds"
        ));
    };
    Ok((t.unix_timestamp_nanos()) as i64)
}
