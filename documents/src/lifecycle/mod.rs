//! A bucket's lifecycle configuration: the rules an operator puts with
//! `PutBucketLifecycleConfiguration`, checked as AWS checks them, stored as JSON in the
//! bucket's `lifecycle` configuration document, and the dates they give a version.
//!
//! Days count from a version's creation (for noncurrent versions, from the creation of the
//! version that replaced it) and an action is due at the first midnight UTC after that many
//! days, as on AWS. A test server may shorten the day (`[lifecycle] day`): then a day is that
//! long and there is no rounding.

use serde::{Deserialize, Serialize};

pub mod xml;

/// The name of the bucket configuration document that holds the rules.
pub const CONFIG_DOCUMENT: &str = "lifecycle";
/// AWS's limit on rules per configuration.
pub const MAX_RULES: usize = 1000;
/// AWS's limit on `NewerNoncurrentVersions`.
pub const MAX_NEWER_NONCURRENT: u32 = 100;
/// A rule ID's longest length.
pub const MAX_ID_LEN: usize = 255;

const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// One real day, in nanoseconds.
pub const DAY_NANOS: i64 = 86_400 * NANOS_PER_SECOND;

/// A bucket's lifecycle configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleConfig {
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub filter: Filter,
    pub expiration: Option<Expiration>,
    pub noncurrent: Option<NoncurrentExpiration>,
    /// `AbortIncompleteMultipartUpload/DaysAfterInitiation`.
    pub abort_upload_days: Option<u32>,
}

/// `Expiration`: one of its three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiration {
    /// `Days`: that many days after the version was created.
    Days(u32),
    /// `Date`: on that midnight UTC (Unix seconds).
    Date(i64),
    /// `ExpiredObjectDeleteMarker`: a delete marker with no versions left behind it goes.
    /// `false` is accepted and does nothing, as on AWS.
    DeleteMarker(bool),
}

/// `NoncurrentVersionExpiration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    /// Days after the version became noncurrent.
    pub days: u32,
    /// The newest this many noncurrent versions are kept whatever their age.
    pub newer_versions: Option<u32>,
}

/// How the filter was written, so GET gives it back as it was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterShape {
    /// The old schema: a top-level `Prefix` and no `Filter`.
    Legacy,
    /// `<Filter/>` with nothing in it: every object.
    Empty,
    /// One condition directly in `Filter`.
    Single,
    /// `<Filter><And>`.
    And,
}

/// Which objects a rule applies to: every condition present must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub shape: FilterShape,
    pub prefix: Option<String>,
    pub tags: Vec<(String, String)>,
    /// `ObjectSizeGreaterThan`: strictly larger, in bytes.
    pub size_greater_than: Option<u64>,
    /// `ObjectSizeLessThan`: strictly smaller, in bytes.
    pub size_less_than: Option<u64>,
}

impl Filter {
    /// Whether an object with this key, size and tags is one the rule applies to.
    pub fn matches(&self, key: &str, size: u64, tags: &[(String, String)]) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.size_greater_than.is_none_or(|n| size > n)
            && self.size_less_than.is_none_or(|n| size < n)
            && self
                .tags
                .iter()
                .all(|(k, v)| tags.iter().any(|(ok, ov)| ok == k && ov == v))
    }

    fn has_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    fn has_size(&self) -> bool {
        self.size_greater_than.is_some() || self.size_less_than.is_some()
    }
}

/// A lifecycle configuration that cannot be stored, with the S3 error AWS answers for it.
pub type LifecycleError = crate::DocumentError;

pub(crate) use crate::{error, malformed};

/// How long a lifecycle "day" is: a real one (due at midnight UTC), or a short one for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// AWS's day: due at the first midnight UTC at least N days after the start.
    Utc,
    /// A test day of this many nanoseconds, with no rounding (as RGW's
    /// `rgw_lc_debug_interval`).
    Debug(i64),
}

impl Day {
    /// When something that started at `start` (ns since the epoch) is `days` days old, as the
    /// action time: rounded up to midnight UTC for real days.
    pub fn after(self, start: i64, days: u32) -> i64 {
        match self {
            Day::Utc => {
                let at = start.saturating_add(i64::from(days).saturating_mul(DAY_NANOS));
                // Rounded up to the next midnight UTC.
                at.saturating_add(DAY_NANOS - 1)
                    .div_euclid(DAY_NANOS)
                    .saturating_mul(DAY_NANOS)
            }
            Day::Debug(len) => start.saturating_add(i64::from(days).saturating_mul(len)),
        }
    }
}

impl LifecycleConfig {
    /// AWS's checks on a configuration.
    pub fn validate(&self) -> Result<(), LifecycleError> {
        if self.rules.is_empty() {
            return Err(malformed());
        }
        if self.rules.len() > MAX_RULES {
            return Err(error(
                "InvalidArgument",
                format!("A lifecycle configuration holds at most {MAX_RULES} rules"),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for rule in &self.rules {
            if rule.id.len() > MAX_ID_LEN {
                return Err(error(
                    "InvalidArgument",
                    "ID length should not exceed allowed limit of 255",
                ));
            }
            if !ids.insert(rule.id.as_str()) {
                return Err(error(
                    "InvalidArgument",
                    "Rule ID must be unique. Found same ID for more than one rule",
                ));
            }
            rule.validate()?;
        }
        Ok(())
    }

    /// The enabled rules whose filter takes this object.
    pub fn rules_for<'a>(
        &'a self,
        key: &'a str,
        size: u64,
        tags: &'a [(String, String)],
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.enabled && r.filter.matches(key, size, tags))
    }

    /// When the current version created at `created` expires under these rules, and by which
    /// rule: the earliest of the matching `Expiration` actions (what `x-amz-expiration` says).
    pub fn current_expiry(
        &self,
        key: &str,
        size: u64,
        tags: &[(String, String)],
        created: i64,
        day: Day,
    ) -> Option<(i64, &str)> {
        self.rules
            .iter()
            .filter(|r| r.enabled && r.filter.matches(key, size, tags))
            .filter_map(|r| {
                let at = match r.expiration? {
                    Expiration::Days(d) => day.after(created, d),
                    Expiration::Date(secs) => secs.saturating_mul(NANOS_PER_SECOND),
                    Expiration::DeleteMarker(_) => return None,
                };
                Some((at, r.id.as_str()))
            })
            .min()
    }

    /// When a version that became noncurrent at `since` expires, and how many newer
    /// noncurrent versions the rule that expires it keeps: the earliest matching rule.
    pub fn noncurrent_expiry(
        &self,
        key: &str,
        size: u64,
        tags: &[(String, String)],
        since: i64,
        day: Day,
    ) -> Option<(i64, u32)> {
        self.rules_for(key, size, tags)
            .filter_map(|r| {
                let n = r.noncurrent?;
                Some((day.after(since, n.days), n.newer_versions.unwrap_or(0)))
            })
            .min()
    }

    /// When a multipart upload for `key` started at `initiated` is aborted: the earliest
    /// matching rule (uploads have no size or tags yet, so only the prefix counts).
    pub fn upload_abort(&self, key: &str, initiated: i64, day: Day) -> Option<i64> {
        self.rules
            .iter()
            .filter(|r| {
                r.enabled
                    && r.filter
                        .prefix
                        .as_deref()
                        .is_none_or(|p| key.starts_with(p))
            })
            .filter(|r| !r.filter.has_tags() && !r.filter.has_size())
            .filter_map(|r| Some(day.after(initiated, r.abort_upload_days?)))
            .min()
    }

    /// Whether a rule removes delete markers that have nothing behind them.
    pub fn expires_lone_markers(&self, key: &str) -> bool {
        self.rules.iter().any(|r| {
            r.enabled
                && r.expiration == Some(Expiration::DeleteMarker(true))
                && r.filter
                    .prefix
                    .as_deref()
                    .is_none_or(|p| key.starts_with(p))
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a lifecycle configuration serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<LifecycleConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl Rule {
    fn validate(&self) -> Result<(), LifecycleError> {
        let invalid = |m: &str| Err(error("InvalidArgument", m));
        if self.expiration.is_none()
            && self.noncurrent.is_none()
            && self.abort_upload_days.is_none()
        {
            return Err(error(
                "InvalidRequest",
                "At least one action needs to be specified in a rule",
            ));
        }
        match self.expiration {
            Some(Expiration::Days(0)) => {
                return invalid("'Days' for Expiration action must be a positive integer")
            }
            Some(Expiration::Date(secs)) if secs.rem_euclid(86_400) != 0 => {
                return invalid("'Date' must be at midnight GMT")
            }
            Some(Expiration::DeleteMarker(_)) if self.filter.has_tags() => {
                return invalid(
                    "ExpiredObjectDeleteMarker cannot be specified with object tag filters",
                )
            }
            _ => {}
        }
        if let Some(n) = self.noncurrent {
            if n.days == 0 {
                return invalid("'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer");
            }
            if n.newer_versions == Some(0)
                || n.newer_versions.is_some_and(|v| v > MAX_NEWER_NONCURRENT)
            {
                return invalid(
                    "'NewerNoncurrentVersions' must be a positive integer no greater than 100",
                );
            }
        }
        if let Some(d) = self.abort_upload_days {
            if d == 0 {
                return invalid("'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer");
            }
            if self.filter.has_tags() || self.filter.has_size() {
                return Err(error(
                    "InvalidRequest",
                    "AbortIncompleteMultipartUpload cannot be specified with tags or object size filters",
                ));
            }
        }
        if let (Some(gt), Some(lt)) = (self.filter.size_greater_than, self.filter.size_less_than) {
            if gt >= lt {
                return invalid("ObjectSizeGreaterThan must be less than ObjectSizeLessThan");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, expiration: Option<Expiration>) -> Rule {
        Rule {
            id: id.into(),
            enabled: true,
            filter: Filter {
                shape: FilterShape::Single,
                prefix: Some("logs/".into()),
                tags: Vec::new(),
                size_greater_than: None,
                size_less_than: None,
            },
            expiration,
            noncurrent: None,
            abort_upload_days: None,
        }
    }

    fn code(config: LifecycleConfig) -> &'static str {
        config.validate().unwrap_err().code
    }

    #[test]
    fn days_end_at_the_next_midnight_utc() {
        let noon = 10 * DAY_NANOS + DAY_NANOS / 2;
        assert_eq!(Day::Utc.after(noon, 1), 12 * DAY_NANOS);
        assert_eq!(Day::Utc.after(10 * DAY_NANOS, 1), 11 * DAY_NANOS);
        assert_eq!(
            Day::Debug(10 * NANOS_PER_SECOND).after(noon, 2),
            noon + 20 * NANOS_PER_SECOND
        );
        assert_eq!(
            Day::Utc.after(i64::MAX - 5, 3),
            i64::MAX / DAY_NANOS * DAY_NANOS
        );
    }

    #[test]
    fn filters_need_every_condition() {
        let f = Filter {
            shape: FilterShape::And,
            prefix: Some("ckpt/".into()),
            tags: vec![("keep".into(), "no".into())],
            size_greater_than: Some(10),
            size_less_than: Some(100),
        };
        let tags = vec![("keep".to_owned(), "no".to_owned())];
        assert!(f.matches("ckpt/a", 50, &tags));
        assert!(!f.matches("ckpt/a", 10, &tags));
        assert!(!f.matches("ckpt/a", 100, &tags));
        assert!(!f.matches("data/a", 50, &tags));
        assert!(!f.matches("ckpt/a", 50, &[]));
    }

    #[test]
    fn the_earliest_matching_expiration_names_its_rule() {
        let config = LifecycleConfig {
            rules: vec![
                rule("late", Some(Expiration::Days(30))),
                rule("soon", Some(Expiration::Days(3))),
                rule("markers", Some(Expiration::DeleteMarker(true))),
            ],
        };
        let (at, id) = config
            .current_expiry("logs/x", 1, &[], 1, Day::Utc)
            .unwrap();
        assert_eq!((at, id), (4 * DAY_NANOS, "soon"));
        assert!(config
            .current_expiry("other", 1, &[], 0, Day::Utc)
            .is_none());
        assert!(config.expires_lone_markers("logs/x"));
    }

    #[test]
    fn invalid_configurations_get_the_aws_error() {
        let one = |r: Rule| LifecycleConfig { rules: vec![r] };
        assert_eq!(code(LifecycleConfig { rules: vec![] }), "MalformedXML");
        assert_eq!(
            code(one(rule("a", Some(Expiration::Days(0))))),
            "InvalidArgument"
        );
        assert_eq!(
            code(one(rule("a", Some(Expiration::Date(86_400 + 1))))),
            "InvalidArgument"
        );
        assert_eq!(code(one(rule("a", None))), "InvalidRequest");
        assert_eq!(
            code(one(rule(&"x".repeat(256), Some(Expiration::Days(1))))),
            "InvalidArgument"
        );
        let mut tagged = rule("a", Some(Expiration::DeleteMarker(true)));
        tagged.filter.tags.push(("k".into(), "v".into()));
        assert_eq!(code(one(tagged)), "InvalidArgument");
        let mut keep = rule("a", None);
        keep.noncurrent = Some(NoncurrentExpiration {
            days: 1,
            newer_versions: Some(101),
        });
        assert_eq!(code(one(keep)), "InvalidArgument");
        let twice = LifecycleConfig {
            rules: vec![
                rule("a", Some(Expiration::Days(1))),
                rule("a", Some(Expiration::Days(2))),
            ],
        };
        assert_eq!(code(twice), "InvalidArgument");
        assert!(one(rule("a", Some(Expiration::Date(86_400 * 3))))
            .validate()
            .is_ok());
    }

    #[test]
    fn configurations_round_trip_through_json() {
        let config = LifecycleConfig {
            rules: vec![rule("a", Some(Expiration::Days(1)))],
        };
        assert_eq!(
            LifecycleConfig::from_json(&config.to_json()).unwrap(),
            config
        );
    }
}
