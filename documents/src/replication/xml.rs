//! The replication configuration's S3 XML (as s3s parses it) to and from the model, with
//! AWS's MalformedXML for shapes the schema does not allow.

use s3s::dto::{
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, EncryptionConfiguration,
    ExistingObjectReplication, ExistingObjectReplicationStatus, ReplicationConfiguration,
    ReplicationRule, ReplicationRuleAndOperator, ReplicationRuleFilter, ReplicationRuleStatus,
    SourceSelectionCriteria, SseKmsEncryptedObjects, SseKmsEncryptedObjectsStatus, StorageClass,
};

use super::{resolve_destination, Destination, Filter, ReplicationConfig, Rule, RuleError};

fn malformed() -> RuleError {
    RuleError {
        code: "MalformedXML",
        message: "The XML you provided was not well-formed or did not validate against our published schema".into(),
    }
}

fn tag_pair(t: &s3s::dto::Tag) -> Result<(String, String), RuleError> {
    match (&t.key, &t.value) {
        (Some(k), Some(v)) if !k.is_empty() => Ok((k.clone(), v.clone())),
        _ => Err(malformed()),
    }
}

/// The rule filter as written: `Filter` with one of `Prefix`, `Tag`, `And`, or the old
/// top-level `Prefix`.
fn filter_of(rule: &ReplicationRule) -> Result<Filter, RuleError> {
    let Some(f) = &rule.filter else {
        return Ok(Filter::LegacyPrefix(
            rule.prefix.clone().unwrap_or_default(),
        ));
    };
    if rule.prefix.is_some() {
        return Err(malformed());
    }
    match (&f.prefix, &f.tag, &f.and) {
        (prefix, None, None) => Ok(Filter::Prefix(prefix.clone().unwrap_or_default())),
        (None, Some(tag), None) => {
            let (k, v) = tag_pair(tag)?;
            Ok(Filter::Tag(k, v))
        }
        (None, None, Some(and)) => Ok(Filter::And {
            prefix: and.prefix.clone().unwrap_or_default(),
            tags: and
                .tags
                .iter()
                .flatten()
                .map(tag_pair)
                .collect::<Result<_, RuleError>>()?,
        }),
        _ => Err(malformed()),
    }
}

fn enabled_status(s: &str) -> Result<bool, RuleError> {
    match s {
        "Enabled" => Ok(true),
        "Disabled" => Ok(false),
        _ => Err(malformed()),
    }
}

/// The XML configuration as the model, destinations resolved against the names of the
/// configured `peers`.
pub fn config_of<P: AsRef<str>>(
    dto: ReplicationConfiguration,
    peers: &[P],
) -> Result<ReplicationConfig, RuleError> {
    let mut rules = Vec::with_capacity(dto.rules.len());
    for (i, r) in dto.rules.iter().enumerate() {
        let (peer, bucket) = resolve_destination(&r.destination.bucket, peers)?;
        rules.push(Rule {
            // AWS names rules that come without an ID.
            id: r.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1)),
            priority: r.priority,
            enabled: enabled_status(r.status.as_str())?,
            filter: filter_of(r)?,
            delete_markers: r
                .delete_marker_replication
                .as_ref()
                .map(|d| {
                    d.status
                        .as_ref()
                        .map_or(Ok(false), |s| enabled_status(s.as_str()))
                })
                .transpose()?,
            existing_objects: r
                .existing_object_replication
                .as_ref()
                .map(|e| enabled_status(e.status.as_str()))
                .transpose()?
                .unwrap_or(false),
            sse_kms_encrypted_objects: r
                .source_selection_criteria
                .as_ref()
                .and_then(|c| c.sse_kms_encrypted_objects.as_ref())
                .map(|k| enabled_status(k.status.as_str()))
                .transpose()?
                .unwrap_or(false),
            destination: Destination {
                arn: r.destination.bucket.clone(),
                peer,
                bucket,
                storage_class: r
                    .destination
                    .storage_class
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
                replica_kms_key_id: r
                    .destination
                    .encryption_configuration
                    .as_ref()
                    .and_then(|e| e.replica_kms_key_id.clone()),
            },
        });
    }
    Ok(ReplicationConfig {
        role: dto.role,
        rules,
    })
}

fn dto_tag((k, v): &(String, String)) -> s3s::dto::Tag {
    s3s::dto::Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    }
}

fn status(enabled: bool) -> &'static str {
    if enabled {
        "Enabled"
    } else {
        "Disabled"
    }
}

/// The stored model back as the XML configuration, in the shape it was put.
pub fn dto_of(config: &ReplicationConfig) -> ReplicationConfiguration {
    let rules = config
        .rules
        .iter()
        .map(|r| {
            let (prefix, filter) = match &r.filter {
                Filter::LegacyPrefix(p) => (Some(p.clone()), None),
                Filter::Prefix(p) => (
                    None,
                    Some(ReplicationRuleFilter {
                        prefix: Some(p.clone()),
                        ..Default::default()
                    }),
                ),
                Filter::Tag(k, v) => (
                    None,
                    Some(ReplicationRuleFilter {
                        tag: Some(dto_tag(&(k.clone(), v.clone()))),
                        ..Default::default()
                    }),
                ),
                Filter::And { prefix, tags } => (
                    None,
                    Some(ReplicationRuleFilter {
                        and: Some(ReplicationRuleAndOperator {
                            prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                            tags: Some(tags.iter().map(dto_tag).collect()),
                        }),
                        ..Default::default()
                    }),
                ),
            };
            ReplicationRule {
                id: Some(r.id.clone()),
                priority: r.priority,
                status: ReplicationRuleStatus::from(status(r.enabled).to_owned()),
                prefix,
                filter,
                delete_marker_replication: r.delete_markers.map(|d| DeleteMarkerReplication {
                    status: Some(DeleteMarkerReplicationStatus::from(status(d).to_owned())),
                }),
                existing_object_replication: r.existing_objects.then(|| {
                    ExistingObjectReplication {
                        status: ExistingObjectReplicationStatus::from(status(true).to_owned()),
                    }
                }),
                destination: s3s::dto::Destination {
                    bucket: r.destination.arn.clone(),
                    storage_class: r.destination.storage_class.clone().map(StorageClass::from),
                    encryption_configuration: r.destination.replica_kms_key_id.as_ref().map(|k| {
                        EncryptionConfiguration {
                            replica_kms_key_id: Some(k.clone()),
                        }
                    }),
                    ..Default::default()
                },
                source_selection_criteria: r.sse_kms_encrypted_objects.then(|| {
                    SourceSelectionCriteria {
                        sse_kms_encrypted_objects: Some(SseKmsEncryptedObjects {
                            status: SseKmsEncryptedObjectsStatus::from(status(true).to_owned()),
                        }),
                        ..Default::default()
                    }
                }),
            }
        })
        .collect();
    ReplicationConfiguration {
        role: config.role.clone(),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Vec<String> {
        vec!["west".to_owned()]
    }

    fn dto_rule(filter: Option<ReplicationRuleFilter>, prefix: Option<&str>) -> ReplicationRule {
        ReplicationRule {
            id: Some("r1".into()),
            priority: Some(1),
            status: ReplicationRuleStatus::from("Enabled".to_owned()),
            prefix: prefix.map(str::to_owned),
            filter,
            delete_marker_replication: Some(DeleteMarkerReplication {
                status: Some(DeleteMarkerReplicationStatus::from("Disabled".to_owned())),
            }),
            existing_object_replication: None,
            destination: s3s::dto::Destination {
                bucket: "arn:aws:s3:::dest".into(),
                ..Default::default()
            },
            source_selection_criteria: None,
        }
    }

    #[test]
    fn xml_shapes_round_trip_through_the_model() {
        let and = ReplicationRuleFilter {
            and: Some(ReplicationRuleAndOperator {
                prefix: Some("models/".into()),
                tags: Some(vec![dto_tag(&("team".into(), "ml".into()))]),
            }),
            ..Default::default()
        };
        for rule in [
            dto_rule(Some(and), None),
            dto_rule(
                Some(ReplicationRuleFilter {
                    prefix: Some("p/".into()),
                    ..Default::default()
                }),
                None,
            ),
        ] {
            let dto = ReplicationConfiguration {
                role: "role".into(),
                rules: vec![rule],
            };
            let model = config_of(dto.clone(), &peers()).unwrap();
            assert_eq!(model.rules[0].destination.peer, "west");
            assert_eq!(dto_of(&model), dto);
        }
    }

    #[test]
    fn sse_kms_selection_and_the_replica_key_round_trip() {
        let mut rule = dto_rule(
            Some(ReplicationRuleFilter {
                prefix: Some(String::new()),
                ..Default::default()
            }),
            None,
        );
        rule.source_selection_criteria = Some(SourceSelectionCriteria {
            sse_kms_encrypted_objects: Some(SseKmsEncryptedObjects {
                status: SseKmsEncryptedObjectsStatus::from("Enabled".to_owned()),
            }),
            ..Default::default()
        });
        rule.destination.encryption_configuration = Some(EncryptionConfiguration {
            replica_kms_key_id: Some("testkey-2".into()),
        });
        let dto = ReplicationConfiguration {
            role: "role".into(),
            rules: vec![rule],
        };
        let model = config_of(dto.clone(), &peers()).unwrap();
        assert!(model.rules[0].sse_kms_encrypted_objects);
        assert_eq!(
            model.rules[0].destination.replica_kms_key_id.as_deref(),
            Some("testkey-2")
        );
        assert_eq!(dto_of(&model), dto);
    }

    #[test]
    fn a_filter_with_two_conditions_outside_and_is_malformed() {
        let both = ReplicationRuleFilter {
            prefix: Some("p".into()),
            tag: Some(dto_tag(&("k".into(), "v".into()))),
            and: None,
        };
        let dto = ReplicationConfiguration {
            role: "role".into(),
            rules: vec![dto_rule(Some(both), None)],
        };
        assert_eq!(config_of(dto, &peers()).unwrap_err().code, "MalformedXML");
    }
}
