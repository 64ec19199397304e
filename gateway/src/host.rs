//! Virtual-hosted-style addressing: `bucket.<domain>` names the bucket for each configured
//! domain (default `localhost`); any other host (an IP address, an unknown name, the bare
//! domain) is path-style. Ports are ignored.

use s3s::host::{S3Host, VirtualHost};
use s3s::validation::{AwsNameValidation, NameValidation};
use s3s::S3Result;

/// Bucket names as AWS validates them, and `_meridian`: the first segment of Meridian's own
/// endpoints (`/_meridian/...`), which must parse as a path for s3s to hand them to the admin
/// route. No bucket of that name can be made: the route answers every request for it.
pub struct BucketNames;

impl NameValidation for BucketNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        name == "_meridian" || AwsNameValidation::new().validate_bucket_name(name)
    }
}

pub struct Domains {
    domains: Vec<String>,
}

impl Domains {
    pub fn new(domains: &[String]) -> Domains {
        Domains {
            domains: domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// The bucket a `Host` header names, if it is a virtual host of a configured domain.
    pub(crate) fn bucket_of<'a>(&self, host: &'a str) -> Option<(&str, &'a str)> {
        let name = strip_port(host);
        self.domains.iter().find_map(|d| {
            let bucket = name.strip_suffix(d.as_str())?.strip_suffix('.')?;
            (!bucket.is_empty()).then_some((d.as_str(), bucket))
        })
    }
}

/// `name:9000` -> `name`, `[::1]:9000` -> `[::1]`; anything else unchanged.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (name.ends_with(']') || !name.contains(':')) =>
        {
            name
        }
        _ => host,
    }
}

impl S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            // Allowed in paths only, where the admin route takes it (see [`BucketNames`]).
            Some((_, bucket)) if bucket.eq_ignore_ascii_case("_meridian") => {
                return Err(s3s::s3_error!(
                    InvalidBucketName,
                    "The specified bucket is not valid."
                ))
            }
            Some((domain, bucket)) => {
                VirtualHost::new(domain).with_bucket(bucket.to_ascii_lowercase())
            }
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_of_configured_domains_name_buckets() {
        let d = Domains::new(&["localhost".into(), "s3.example.com".into()]);
        assert_eq!(
            d.bucket_of("models.localhost:9000"),
            Some(("localhost", "models"))
        );
        assert_eq!(
            d.bucket_of("my.bucket.s3.example.com"),
            Some(("s3.example.com", "my.bucket"))
        );
        assert_eq!(d.bucket_of("localhost:9000"), None);
        assert_eq!(d.bucket_of("other.host:9000"), None);
        assert_eq!(d.bucket_of("notlocalhost"), None);
    }

    #[test]
    fn unknown_hosts_are_path_style() {
        let d = Domains::new(&["localhost".into()]);
        assert!(d
            .parse_host_header("myserver:9000")
            .unwrap()
            .bucket()
            .is_none());
        assert_eq!(
            d.parse_host_header("b1.localhost").unwrap().bucket(),
            Some("b1")
        );
    }
}
