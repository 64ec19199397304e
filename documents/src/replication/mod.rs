//! A bucket's replication configuration: the rules an operator puts with
//! `PutBucketReplication`, checked as AWS checks them, stored as JSON in the bucket's
//! `replication` configuration document, and matched against each change to decide which
//! peers take it and into which bucket.
//!
//! Rules are matched twice: when a change is committed (its PENDING statuses) and again when
//! it is sent, so a rule that was disabled or deleted in between sends nothing more.

use serde::{Deserialize, Serialize};

pub mod xml;

/// The name of the bucket configuration document that holds the rules.
pub const CONFIG_DOCUMENT: &str = "replication";
/// AWS's limit on rules per configuration.
pub const MAX_RULES: usize = 1000;

/// A bucket's replication configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationConfig {
    /// Required by clients, kept and given back, otherwise unused.
    pub role: String,
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    /// Higher wins when several rules send a change to the same peer. Required by the
    /// `Filter` schema; absent in the old one (top-level `Prefix`).
    pub priority: Option<i32>,
    pub enabled: bool,
    pub filter: Filter,
    /// `DeleteMarkerReplication/Status`: `None` when the element was absent.
    pub delete_markers: Option<bool>,
    /// `ExistingObjectReplication/Status` Enabled: versions older than the rule are sent too.
    pub existing_objects: bool,
    /// `SourceSelectionCriteria/SseKmsEncryptedObjects/Status` Enabled: SSE-KMS versions
    /// are sent too (re-encrypted with the destination's `ReplicaKmsKeyID`), as on AWS.
    #[serde(default)]
    pub sse_kms_encrypted_objects: bool,
    pub destination: Destination,
}

/// Which keys a rule applies to, in the shape it was written (given back by GET as put).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    /// The old schema: a top-level `Prefix` element and no `Filter`.
    LegacyPrefix(String),
    /// `<Filter><Prefix>` (an empty filter is an empty prefix).
    Prefix(String),
    /// `<Filter><Tag>`.
    Tag(String, String),
    /// `<Filter><And>`: a prefix and every tag.
    And {
        prefix: String,
        tags: Vec<(String, String)>,
    },
}

impl Filter {
    fn prefix(&self) -> &str {
        match self {
            Filter::LegacyPrefix(p) | Filter::Prefix(p) | Filter::And { prefix: p, .. } => p,
            Filter::Tag(..) => "",
        }
    }

    fn tags(&self) -> Vec<(&str, &str)> {
        match self {
            Filter::Tag(k, v) => vec![(k.as_str(), v.as_str())],
            Filter::And { tags, .. } => {
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
            }
            _ => Vec::new(),
        }
    }

    fn has_tags(&self) -> bool {
        !self.tags().is_empty()
    }

    fn is_legacy(&self) -> bool {
        matches!(self, Filter::LegacyPrefix(_))
    }

    fn matches(&self, key: &str, object_tags: &[(String, String)]) -> bool {
        key.starts_with(self.prefix())
            && self
                .tags()
                .iter()
                .all(|(k, v)| object_tags.iter().any(|(ok, ov)| ok == k && ov == v))
    }
}

/// Where a rule sends changes: a peer and a bucket there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// As the client wrote it (given back by GET).
    pub arn: String,
    pub peer: String,
    pub bucket: String,
    pub storage_class: Option<String>,
    /// `EncryptionConfiguration/ReplicaKmsKeyID`: the destination's key for SSE-KMS replicas.
    #[serde(default)]
    pub replica_kms_key_id: Option<String>,
}

/// A rule that cannot be stored, with the S3 error AWS answers for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RuleError {
    /// `InvalidRequest`, `InvalidArgument` or `MalformedXML`.
    pub code: &'static str,
    pub message: String,
}

fn invalid_request(message: impl Into<String>) -> RuleError {
    RuleError {
        code: "InvalidRequest",
        message: message.into(),
    }
}

fn invalid_argument(message: impl Into<String>) -> RuleError {
    RuleError {
        code: "InvalidArgument",
        message: message.into(),
    }
}

/// What kind of change is being matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new object version, or a change of its tags.
    Version,
    /// The same, of a version encrypted with SSE-KMS: only rules that select SSE-KMS
    /// objects send it.
    SseKmsVersion,
    /// A new delete marker.
    DeleteMarker,
}

/// Where one change goes on one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub peer: String,
    pub bucket: String,
    pub rule_id: String,
    /// The key SSE-KMS replicas are encrypted with at the destination.
    pub replica_kms_key_id: Option<String>,
}

/// Resolves a destination ARN against the configured peers.
///
/// `arn:meridian:replication:<peer>::<bucket>` names a peer; `arn:aws:s3:::<bucket>` is
/// accepted when exactly one peer is configured (then it is that one).
pub fn resolve_destination<P: AsRef<str>>(
    arn: &str,
    peers: &[P],
) -> Result<(String, String), RuleError> {
    if let Some(bucket) = arn.strip_prefix("arn:aws:s3:::") {
        return match peers {
            [only] if valid_bucket_name(bucket) => {
                Ok((only.as_ref().to_owned(), bucket.to_owned()))
            }
            [_] => Err(invalid_argument(format!(
                "Invalid destination bucket ARN {arn:?}"
            ))),
            [] => Err(invalid_argument(
                "No replication peer is configured on this node",
            )),
            _ => Err(invalid_argument(format!(
                "{arn:?} does not say which peer; with several peers configured use \
                 arn:meridian:replication:<peer>::<bucket>"
            ))),
        };
    }
    let rest = arn
        .strip_prefix("arn:meridian:replication:")
        .ok_or_else(|| invalid_argument(format!("Invalid destination bucket ARN {arn:?}")))?;
    let (peer, bucket) = rest
        .split_once("::")
        .filter(|(p, b)| !p.is_empty() && valid_bucket_name(b))
        .ok_or_else(|| invalid_argument(format!("Invalid destination bucket ARN {arn:?}")))?;
    if !peers.iter().any(|p| p.as_ref() == peer) {
        return Err(invalid_argument(format!(
            "Destination peer {peer:?} is not configured on this node"
        )));
    }
    Ok((peer.to_owned(), bucket.to_owned()))
}

fn valid_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

impl ReplicationConfig {
    /// AWS's checks on a configuration, in the order AWS reports them.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.rules.is_empty() {
            return Err(RuleError {
                code: "MalformedXML",
                message: "The XML you provided was not well-formed or did not validate against our published schema".into(),
            });
        }
        if self.rules.len() > MAX_RULES {
            return Err(invalid_argument(format!(
                "Number of distinct destination bucket ARNs cannot exceed {MAX_RULES}; a configuration holds at most {MAX_RULES} rules"
            )));
        }
        let legacy = self.rules.iter().filter(|r| r.filter.is_legacy()).count();
        if legacy != 0 && legacy != self.rules.len() {
            return Err(invalid_request(
                "Rules with a Filter and rules with a top-level Prefix cannot be mixed",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut priorities = std::collections::HashSet::new();
        for rule in &self.rules {
            if rule.id.len() > 255 {
                return Err(invalid_argument("Rule ID must not exceed 255 characters"));
            }
            if !ids.insert(rule.id.as_str()) {
                return Err(invalid_argument(format!(
                    "Rule Id must be unique. Found same ID for more than one rule: {}",
                    rule.id
                )));
            }
            if rule.sse_kms_encrypted_objects && rule.destination.replica_kms_key_id.is_none() {
                return Err(invalid_request(
                    "ReplicaKmsKeyID must be specified if SseKmsEncryptedObjects tag is present.",
                ));
            }
            if rule.filter.is_legacy() {
                continue;
            }
            if rule.delete_markers.is_none() {
                return Err(invalid_request(
                    "DeleteMarkerReplication must be specified for this version of Cross Region Replication configuration schema.",
                ));
            }
            let Some(priority) = rule.priority else {
                return Err(invalid_request(
                    "Priority must be specified for this version of Cross Region Replication configuration schema.",
                ));
            };
            if rule.filter.has_tags() && rule.delete_markers == Some(true) {
                return Err(invalid_request(
                    "Delete marker replication is not supported if any Tag filter is specified. Please refer to S3 Developer Guide for more information.",
                ));
            }
            if !priorities.insert(priority) {
                return Err(invalid_argument(format!(
                    "Found duplicate priority {priority}: every rule must have a distinct Priority"
                )));
            }
        }
        Ok(())
    }

    /// For each peer, the winning enabled rule that sends this change there: the matching
    /// rule with the highest priority (the first, in the old schema). A delete marker goes
    /// only where that rule replicates delete markers (always, in the old schema, as on AWS).
    pub fn targets(&self, key: &str, tags: &[(String, String)], change: Change) -> Vec<Delivery> {
        let mut best: Vec<&Rule> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.enabled) {
            let tags_seen: &[(String, String)] = match change {
                Change::Version | Change::SseKmsVersion => tags,
                Change::DeleteMarker => &[],
            };
            if change == Change::SseKmsVersion && !rule.sse_kms_encrypted_objects {
                continue;
            }
            if !rule.filter.matches(key, tags_seen) {
                continue;
            }
            match best
                .iter_mut()
                .find(|b| b.destination.peer == rule.destination.peer)
            {
                Some(b) if rule.priority > b.priority => *b = rule,
                Some(_) => {}
                None => best.push(rule),
            }
        }
        best.into_iter()
            .filter(|r| match change {
                Change::Version | Change::SseKmsVersion => true,
                Change::DeleteMarker => r.filter.is_legacy() || r.delete_markers == Some(true),
            })
            .map(|r| Delivery {
                peer: r.destination.peer.clone(),
                bucket: r.destination.bucket.clone(),
                rule_id: r.id.clone(),
                replica_kms_key_id: r.destination.replica_kms_key_id.clone(),
            })
            .collect()
    }

    /// The target on `peer` for this change, if a rule sends it there.
    pub fn target_on(
        &self,
        peer: &str,
        key: &str,
        tags: &[(String, String)],
        change: Change,
    ) -> Option<Delivery> {
        self.targets(key, tags, change)
            .into_iter()
            .find(|t| t.peer == peer)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a replication configuration serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<ReplicationConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> String {
        name.to_owned()
    }

    fn rule(id: &str, priority: i32, filter: Filter, peer: &str) -> Rule {
        Rule {
            id: id.into(),
            priority: Some(priority),
            enabled: true,
            filter,
            delete_markers: Some(true),
            existing_objects: false,
            sse_kms_encrypted_objects: false,
            destination: Destination {
                arn: format!("arn:meridian:replication:{peer}::dest"),
                peer: peer.into(),
                bucket: format!("dest-{id}"),
                storage_class: None,
                replica_kms_key_id: None,
            },
        }
    }

    #[test]
    fn encrypted_versions_follow_only_rules_that_select_them() {
        let mut kms = rule("kms", 2, Filter::Prefix(String::new()), "west");
        kms.sse_kms_encrypted_objects = true;
        kms.destination.replica_kms_key_id = Some("replica-key".into());
        let plain = rule("plain", 1, Filter::Prefix(String::new()), "south");
        let c = config(vec![kms, plain]);
        let peers = |change| {
            let mut t: Vec<(String, Option<String>)> = c
                .targets("k", &[], change)
                .into_iter()
                .map(|d| (d.peer, d.replica_kms_key_id))
                .collect();
            t.sort();
            t
        };
        assert_eq!(peers(Change::Version).len(), 2);
        assert_eq!(
            peers(Change::SseKmsVersion),
            vec![("west".to_owned(), Some("replica-key".to_owned()))]
        );
        let mut missing_key = rule("bad", 1, Filter::Prefix(String::new()), "west");
        missing_key.sse_kms_encrypted_objects = true;
        assert_eq!(
            config(vec![missing_key]).validate().unwrap_err().code,
            "InvalidRequest"
        );
    }

    fn config(rules: Vec<Rule>) -> ReplicationConfig {
        ReplicationConfig {
            role: "arn:aws:iam::1:role/r".into(),
            rules,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn destinations_name_a_configured_peer() {
        let one = [peer("west")];
        let two = [peer("west"), peer("south")];
        assert_eq!(
            resolve_destination("arn:aws:s3:::models", &one).unwrap(),
            ("west".into(), "models".into())
        );
        assert_eq!(
            resolve_destination("arn:meridian:replication:south::models", &two).unwrap(),
            ("south".into(), "models".into())
        );
        for (arn, peers) in [
            ("arn:aws:s3:::models", &two[..]),
            ("arn:aws:s3:::models", &[][..]),
            ("arn:meridian:replication:north::models", &two[..]),
            ("arn:meridian:replication:west:models", &two[..]),
            ("arn:aws:s3:::UPPER", &one[..]),
            ("models", &one[..]),
        ] {
            let err = resolve_destination(arn, peers).unwrap_err();
            assert_eq!(err.code, "InvalidArgument", "{arn}");
        }
    }

    #[test]
    fn the_highest_priority_matching_rule_wins_per_peer() {
        let c = config(vec![
            rule("all", 1, Filter::Prefix(String::new()), "west"),
            rule("models", 5, Filter::Prefix("models/".into()), "west"),
            rule(
                "tagged",
                3,
                Filter::Tag("copy".into(), "yes".into()),
                "south",
            ),
        ]);
        let t = c.targets("models/a", &[], Change::Version);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].peer.as_str(), t[0].rule_id.as_str()),
            ("west", "models")
        );
        let t = c.targets("logs/a", &tags(&[("copy", "yes")]), Change::Version);
        let peers: Vec<_> = t
            .iter()
            .map(|t| (t.peer.as_str(), t.rule_id.as_str()))
            .collect();
        assert_eq!(peers, [("west", "all"), ("south", "tagged")]);
        assert!(c
            .target_on("south", "logs/a", &[], Change::Version)
            .is_none());
    }

    #[test]
    fn and_filters_need_the_prefix_and_every_tag() {
        let f = Filter::And {
            prefix: "data/".into(),
            tags: tags(&[("a", "1"), ("b", "2")]),
        };
        assert!(f.matches("data/x", &tags(&[("b", "2"), ("a", "1"), ("c", "3")])));
        assert!(!f.matches("data/x", &tags(&[("a", "1")])));
        assert!(!f.matches("other/x", &tags(&[("a", "1"), ("b", "2")])));
    }

    #[test]
    fn delete_markers_follow_the_winning_rule() {
        let mut no_markers = rule("p", 2, Filter::Prefix("keep/".into()), "west");
        no_markers.delete_markers = Some(false);
        let c = config(vec![
            rule("all", 1, Filter::Prefix(String::new()), "west"),
            no_markers,
        ]);
        assert_eq!(c.targets("x", &[], Change::DeleteMarker).len(), 1);
        assert!(c.targets("keep/x", &[], Change::DeleteMarker).is_empty());
        assert_eq!(c.targets("keep/x", &[], Change::Version).len(), 1);
        let legacy = config(vec![Rule {
            priority: None,
            delete_markers: None,
            ..rule("old", 0, Filter::LegacyPrefix(String::new()), "west")
        }]);
        legacy.validate().unwrap();
        assert_eq!(legacy.targets("x", &[], Change::DeleteMarker).len(), 1);
    }

    #[test]
    fn disabled_rules_send_nothing() {
        let mut r = rule("all", 1, Filter::Prefix(String::new()), "west");
        r.enabled = false;
        assert!(config(vec![r])
            .targets("x", &[], Change::Version)
            .is_empty());
    }

    #[test]
    fn invalid_configurations_get_the_aws_error() {
        let base = || rule("a", 1, Filter::Prefix(String::new()), "west");
        let no_dm = Rule {
            delete_markers: None,
            ..base()
        };
        let no_priority = Rule {
            priority: None,
            ..base()
        };
        let tag_with_dm = rule("t", 2, Filter::Tag("k".into(), "v".into()), "west");
        let cases: Vec<(Vec<Rule>, &str, &str)> = vec![
            (vec![], "MalformedXML", ""),
            (
                vec![no_dm],
                "InvalidRequest",
                "DeleteMarkerReplication must be specified",
            ),
            (
                vec![no_priority],
                "InvalidRequest",
                "Priority must be specified",
            ),
            (
                vec![tag_with_dm],
                "InvalidRequest",
                "Delete marker replication is not supported",
            ),
            (vec![base(), base()], "InvalidArgument", "unique"),
            (
                vec![base(), rule("b", 1, Filter::Prefix("x".into()), "west")],
                "InvalidArgument",
                "duplicate priority",
            ),
            (
                vec![
                    base(),
                    Rule {
                        id: "old".into(),
                        ..rule("old", 2, Filter::LegacyPrefix(String::new()), "west")
                    },
                ],
                "InvalidRequest",
                "mixed",
            ),
        ];
        for (rules, code, text) in cases {
            let err = config(rules).validate().unwrap_err();
            assert_eq!(err.code, code, "{err}");
            assert!(err.message.contains(text), "{err} should say {text:?}");
        }
        let many: Vec<Rule> = (0..=MAX_RULES as i32)
            .map(|i| rule(&format!("r{i}"), i, Filter::Prefix(String::new()), "west"))
            .collect();
        assert_eq!(config(many).validate().unwrap_err().code, "InvalidArgument");
    }

    #[test]
    fn configurations_round_trip_through_json() {
        let c = config(vec![rule(
            "and",
            4,
            Filter::And {
                prefix: "p/".into(),
                tags: tags(&[("a", "1")]),
            },
            "west",
        )]);
        assert_eq!(ReplicationConfig::from_json(&c.to_json()).unwrap(), c);
    }
}
