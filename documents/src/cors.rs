//! A bucket's CORS configuration, as stored (JSON) and as browsers meet it: which rule, if any,
//! lets an origin use a method with some headers, as S3 decides it (the first rule whose
//! origin, method and every requested header match; `*` matches any run of characters, once
//! per pattern).

use serde::{Deserialize, Serialize};

use crate::{error as invalid, DocumentError};

/// The most rules a configuration may hold (S3's limit).
pub const MAX_RULES: usize = 100;
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsRule {
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    pub rules: Vec<CorsRule>,
}

impl CorsConfig {
    /// Checks a configuration as S3 does before storing it.
    pub fn validate(&self) -> Result<(), DocumentError> {
        if self.rules.is_empty() || self.rules.len() > MAX_RULES {
            return Err(invalid(
                "MalformedXML",
                format!("A CORS configuration holds 1 to {MAX_RULES} rules"),
            ));
        }
        for rule in &self.rules {
            if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
                return Err(invalid(
                    "MalformedXML",
                    "Each CORSRule must have an AllowedOrigin and an AllowedMethod",
                ));
            }
            if let Some(m) = rule
                .allowed_methods
                .iter()
                .find(|m| !METHODS.contains(&m.as_str()))
            {
                return Err(invalid(
                    "InvalidRequest",
                    format!(
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ),
                ));
            }
            if let Some(o) = rule
                .allowed_origins
                .iter()
                .find(|o| o.matches('*').count() > 1)
            {
                return Err(invalid(
                    "InvalidRequest",
                    format!("AllowedOrigin \"{o}\" can not have more than one wildcard."),
                ));
            }
            if let Some(h) = rule
                .allowed_headers
                .iter()
                .find(|h| h.matches('*').count() > 1)
            {
                return Err(invalid(
                    "InvalidRequest",
                    format!("AllowedHeader \"{h}\" can not have more than one wildcard."),
                ));
            }
        }
        Ok(())
    }

    /// The first rule letting `origin` use `method` with `headers` (lower-case names).
    pub fn rule_for(&self, origin: &str, method: &str, headers: &[&str]) -> Option<&CorsRule> {
        self.rules.iter().find(|r| {
            r.allowed_origins.iter().any(|o| wildcard(o, origin))
                && r.allowed_methods.iter().any(|m| m == method)
                && headers.iter().all(|h| {
                    r.allowed_headers
                        .iter()
                        .any(|a| wildcard(&a.to_ascii_lowercase(), h))
                })
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a CORS configuration serializes")
    }

    pub fn from_json(doc: &[u8]) -> Result<CorsConfig, serde_json::Error> {
        serde_json::from_slice(doc)
    }
}

impl CorsRule {
    /// `Access-Control-Allow-Origin` for `origin`: `*` when the rule allows every origin.
    pub fn allow_origin<'a>(&self, origin: &'a str) -> &'a str {
        if self.allowed_origins.iter().any(|o| o == "*") {
            "*"
        } else {
            origin
        }
    }
}

/// `pattern` (with at most one `*`, matching any run of characters) matches `text` whole.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((start, end)) => {
            text.len() >= start.len() + end.len() && text.starts_with(start) && text.ends_with(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            ..CorsRule::default()
        }
    }

    /// The origins of s3-tests' `test_cors_origin_response`.
    #[test]
    fn origins_match_with_one_wildcard_anywhere() {
        let c = CorsConfig {
            rules: vec![
                rule(&["*suffix"], &["GET"]),
                rule(&["start*end"], &["GET"]),
                rule(&["prefix*"], &["GET"]),
                rule(&["*.put"], &["PUT"]),
            ],
        };
        for yes in [
            "foo.suffix",
            "startend",
            "start12end",
            "prefix",
            "prefix.suffix",
        ] {
            assert!(c.rule_for(yes, "GET", &[]).is_some(), "{yes}");
        }
        for no in [
            "foo.bar",
            "foo.suffix.get",
            "0start12end",
            "bla.prefix",
            "foo.put",
        ] {
            assert!(c.rule_for(no, "GET", &[]).is_none(), "{no}");
        }
        assert!(c.rule_for("foo.put", "PUT", &[]).is_some());
        assert!(c.rule_for("foo.suffix", "PUT", &[]).is_none());
        assert!(!wildcard("ab*ba", "aba"), "the two ends may not overlap");
    }

    #[test]
    fn every_requested_header_must_be_allowed() {
        let mut r = rule(&["*"], &["GET"]);
        r.allowed_headers = vec!["x-amz-meta-*".into(), "Content-Type".into()];
        let c = CorsConfig { rules: vec![r] };
        assert!(c
            .rule_for("a", "GET", &["content-type", "x-amz-meta-a"])
            .is_some());
        assert!(c.rule_for("a", "GET", &["x-amz-date"]).is_none());
        assert_eq!(c.rules[0].allow_origin("http://a"), "*");
    }

    #[test]
    fn bad_configurations_get_s3s_errors() {
        let bad_method = CorsConfig {
            rules: vec![rule(&["*"], &["PATCH"])],
        };
        assert_eq!(bad_method.validate().unwrap_err().code, "InvalidRequest");
        let two_stars = CorsConfig {
            rules: vec![rule(&["*a*"], &["GET"])],
        };
        assert_eq!(two_stars.validate().unwrap_err().code, "InvalidRequest");
        assert_eq!(
            CorsConfig::default().validate().unwrap_err().code,
            "MalformedXML"
        );
        let ok = CorsConfig {
            rules: vec![rule(&["https://*.example.com"], &["GET", "PUT"])],
        };
        ok.validate().unwrap();
        assert_eq!(CorsConfig::from_json(&ok.to_json()).unwrap(), ok);
    }
}
