//! PutBucketReplication, GetBucketReplication and DeleteBucketReplication: the standard API,
//! so `aws s3api put-bucket-replication` and boto3 work unmodified. The XML becomes the
//! replicator's rule model (checked as AWS checks it), destinations are checked on Meridian
//! peers when reachable, and the rules are stored as the bucket's `replication` document.

use meridian_metadata::VersioningState;
use meridian_replicator::rules::{
    resolve_destination, Destination, Filter, ReplicationConfig, Rule, CONFIG_DOCUMENT,
};
use meridian_replicator::{DestinationCheck, PeerKind, RuleError};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::MeridianS3;
use crate::s3::errors::IntoS3;

fn rule_error(e: RuleError) -> S3Error {
    let code = S3ErrorCode::from_bytes(e.code.as_bytes()).expect("error codes are UTF-8");
    S3Error::with_message(code, e.message)
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

fn tag_pair(t: &s3s::dto::Tag) -> S3Result<(String, String)> {
    match (&t.key, &t.value) {
        (Some(k), Some(v)) if !k.is_empty() => Ok((k.clone(), v.clone())),
        _ => Err(malformed()),
    }
}

/// The rule filter as written: `Filter` with one of `Prefix`, `Tag`, `And`, or the old
/// top-level `Prefix`.
fn filter_of(rule: &ReplicationRule) -> S3Result<Filter> {
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
                .collect::<S3Result<_>>()?,
        }),
        _ => Err(malformed()),
    }
}

fn enabled_status(s: &str) -> S3Result<bool> {
    match s {
        "Enabled" => Ok(true),
        "Disabled" => Ok(false),
        _ => Err(malformed()),
    }
}

/// The XML configuration as the replicator's model, destinations resolved against `peers`.
fn config_of(
    dto: ReplicationConfiguration,
    peers: &[meridian_replicator::PeerConfig],
) -> S3Result<ReplicationConfig> {
    let mut rules = Vec::with_capacity(dto.rules.len());
    for (i, r) in dto.rules.iter().enumerate() {
        let (peer, bucket) =
            resolve_destination(&r.destination.bucket, peers).map_err(rule_error)?;
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
            destination: Destination {
                arn: r.destination.bucket.clone(),
                peer,
                bucket,
                storage_class: r
                    .destination
                    .storage_class
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
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
fn dto_of(config: &ReplicationConfig) -> ReplicationConfiguration {
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
                    ..Default::default()
                },
                source_selection_criteria: None,
            }
        })
        .collect();
    ReplicationConfiguration {
        role: config.role.clone(),
        rules,
    }
}

impl MeridianS3 {
    /// Every destination bucket on a Meridian peer must exist with versioning enabled; a
    /// peer that cannot be asked now is accepted (the problem shows as FAILED later).
    async fn check_destinations(&self, config: &ReplicationConfig) -> S3Result<()> {
        let mut checked = std::collections::HashSet::new();
        for rule in &config.rules {
            let d = &rule.destination;
            let kind = self
                .replicator
                .peers()
                .find(|p| p.name == d.peer)
                .map(|p| p.kind);
            if kind != Some(PeerKind::Meridian)
                || !checked.insert((d.peer.clone(), d.bucket.clone()))
            {
                continue;
            }
            match self.replicator.check_destination(&d.peer, &d.bucket).await {
                DestinationCheck::Ready => {}
                DestinationCheck::Missing | DestinationCheck::NotVersioned => {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Destination bucket must have versioning enabled."
                    ))
                }
                DestinationCheck::Unknown(reason) => tracing::warn!(
                    peer = %d.peer, bucket = %d.bucket, %reason,
                    "could not check the replication destination; accepting the rule"
                ),
            }
        }
        Ok(())
    }

    pub(super) async fn put_bucket_replication_impl(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let config = config_of(
            input.replication_configuration,
            &self.replicator.peer_configs(),
        )?;
        config.validate().map_err(rule_error)?;
        if bucket.versioning != VersioningState::Enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Versioning must be 'Enabled' on the bucket to apply a replication configuration"
            ));
        }
        self.check_destinations(&config).await?;
        let (name, doc) = (input.bucket.clone(), config.to_json());
        self.store
            .meta(move |m| m.put_bucket_config(&name, CONFIG_DOCUMENT, doc))
            .await
            .s3()?;
        self.replicator.rules().invalidate(&input.bucket);
        tracing::info!(bucket = %input.bucket, rules = config.rules.len(), "replication configuration stored");
        // Rules with ExistingObjectReplication send what the bucket held before them, once.
        let mut backfilled = std::collections::HashSet::new();
        for rule in config
            .rules
            .iter()
            .filter(|r| r.enabled && r.existing_objects)
        {
            let peer = &rule.destination.peer;
            if backfilled.insert(peer.clone()) {
                if let Err(e) = self.replicator.backfill_once(peer, &input.bucket).await {
                    tracing::warn!(bucket = %input.bucket, %peer, error = %e, "starting the backfill failed");
                }
            }
        }
        Ok(S3Response::new(PutBucketReplicationOutput {}))
    }

    pub(super) async fn get_bucket_replication_impl(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        let name = req.input.bucket;
        let doc = self
            .store
            .meta(move |m| m.get_bucket_config(&name, CONFIG_DOCUMENT))
            .await
            .s3()?
            .ok_or_else(|| {
                s3_error!(
                    ReplicationConfigurationNotFoundError,
                    "The replication configuration was not found"
                )
            })?;
        let config = ReplicationConfig::from_json(&doc).map_err(|e| {
            s3_error!(
                InternalError,
                "stored replication configuration is unreadable: {e}"
            )
        })?;
        Ok(S3Response::new(GetBucketReplicationOutput {
            replication_configuration: Some(dto_of(&config)),
        }))
    }

    pub(super) async fn delete_bucket_replication_impl(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        let name = req.input.bucket;
        let n = name.clone();
        self.store
            .meta(move |m| m.delete_bucket_config(&n, CONFIG_DOCUMENT))
            .await
            .s3()?;
        self.replicator.rules().invalidate(&name);
        tracing::info!(bucket = %name, "replication configuration deleted");
        Ok(S3Response::new(DeleteBucketReplicationOutput {}))
    }

    /// Whether the bucket has a replication configuration (versioning cannot be suspended
    /// while it does).
    pub(super) async fn has_replication(&self, bucket: &str) -> S3Result<bool> {
        let (replicator, b) = (self.replicator.clone(), bucket.to_owned());
        let found = tokio::task::spawn_blocking(move || replicator.rules().get(&b))
            .await
            .map_err(|e| s3_error!(InternalError, "rules task failed: {e}"))?
            .map_err(meridian_store::StoreError::from)
            .s3()?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Vec<meridian_replicator::PeerConfig> {
        vec![meridian_replicator::PeerConfig::new(
            "west",
            "http://127.0.0.1:1",
            "a",
            "s",
        )]
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
        assert_eq!(
            config_of(dto, &peers()).unwrap_err().code().as_str(),
            "MalformedXML"
        );
    }
}
