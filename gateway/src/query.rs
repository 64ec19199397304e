//! A request's query string, decoded as URLs encode it (`form_urlencoded`: percent escapes,
//! `+` for a space), for the places outside s3s that read one parameter: the access hook
//! (`versionId`, `prefix`), the audit log and the admin API.

/// Every `name=value` pair of `query`, decoded, in order.
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The first value of `name` in `query`.
pub fn value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_and_plus_decoded() {
        let q = Some("prefix=ckpt%2Fa+b&versionId=v%3D1&flag&prefix=second");
        assert_eq!(value(q, "prefix").as_deref(), Some("ckpt/a b"));
        assert_eq!(value(q, "versionId").as_deref(), Some("v=1"));
        assert_eq!(value(q, "flag").as_deref(), Some(""));
        assert_eq!(value(q, "missing"), None);
        assert_eq!(value(None, "prefix"), None);
        assert_eq!(pairs(q).len(), 4);
        assert!(pairs(None).is_empty());
    }
}
