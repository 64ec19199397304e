//! The lifecycle configuration's S3 XML (as s3s parses it) to and from the model, with AWS's
//! errors for shapes the schema does not allow.

use s3s::dto::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter,
    NoncurrentVersionExpiration, Tag, Timestamp,
};

use super::{
    error, malformed, Expiration, Filter, FilterShape, LifecycleConfig, LifecycleError,
    NoncurrentExpiration, Rule,
};

fn tag_pair(t: &Tag) -> Result<(String, String), LifecycleError> {
    match (&t.key, &t.value) {
        (Some(k), Some(v)) if !k.is_empty() => Ok((k.clone(), v.clone())),
        _ => Err(malformed()),
    }
}

fn size(n: Option<i64>) -> Result<Option<u64>, LifecycleError> {
    n.map(|n| {
        u64::try_from(n).map_err(|_| {
            error(
                "InvalidArgument",
                "Object size filters must be non-negative",
            )
        })
    })
    .transpose()
}

fn filter_of(rule: &LifecycleRule) -> Result<Filter, LifecycleError> {
    let Some(f) = &rule.filter else {
        // The old schema: a top-level Prefix. A rule with neither is not valid XML.
        let prefix = rule.prefix.clone().ok_or_else(malformed)?;
        return Ok(Filter {
            shape: FilterShape::Legacy,
            prefix: Some(prefix),
            tags: Vec::new(),
            size_greater_than: None,
            size_less_than: None,
        });
    };
    if rule.prefix.is_some() {
        return Err(malformed());
    }
    let conditions = [
        f.prefix.is_some(),
        f.tag.is_some(),
        f.object_size_greater_than.is_some(),
        f.object_size_less_than.is_some(),
        f.and.is_some(),
    ]
    .into_iter()
    .filter(|c| *c)
    .count();
    if conditions > 1 {
        return Err(malformed());
    }
    if let Some(and) = &f.and {
        return Ok(Filter {
            shape: FilterShape::And,
            prefix: and.prefix.clone(),
            tags: and
                .tags
                .iter()
                .flatten()
                .map(tag_pair)
                .collect::<Result<_, _>>()?,
            size_greater_than: size(and.object_size_greater_than)?,
            size_less_than: size(and.object_size_less_than)?,
        });
    }
    Ok(Filter {
        shape: if conditions == 0 {
            FilterShape::Empty
        } else {
            FilterShape::Single
        },
        prefix: f.prefix.clone(),
        tags: f
            .tag
            .as_ref()
            .map(tag_pair)
            .transpose()?
            .into_iter()
            .collect(),
        size_greater_than: size(f.object_size_greater_than)?,
        size_less_than: size(f.object_size_less_than)?,
    })
}

fn positive(n: i32, what: &str) -> Result<u32, LifecycleError> {
    u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
        error(
            "InvalidArgument",
            format!("'{what}' must be a positive integer"),
        )
    })
}

fn expiration_of(e: &LifecycleExpiration) -> Result<Expiration, LifecycleError> {
    match (e.days, &e.date, e.expired_object_delete_marker) {
        (Some(_), Some(_), _) | (None, None, None) => Err(malformed()),
        (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => Err(error(
            "InvalidArgument",
            "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy",
        )),
        (Some(days), None, None) => Ok(Expiration::Days(positive(days, "Days")?)),
        (None, Some(date), None) => {
            let t: time::OffsetDateTime = date.clone().into();
            Ok(Expiration::Date(t.unix_timestamp()))
        }
        (None, None, Some(marker)) => Ok(Expiration::DeleteMarker(marker)),
    }
}

/// The XML configuration as the model. Transitions are refused: Meridian has one storage
/// class. Rules that come without an ID are named, as AWS does.
pub fn config_of(dto: BucketLifecycleConfiguration) -> Result<LifecycleConfig, LifecycleError> {
    let mut rules = Vec::with_capacity(dto.rules.len());
    for (i, r) in dto.rules.iter().enumerate() {
        if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
            || r.noncurrent_version_transitions
                .as_ref()
                .is_some_and(|t| !t.is_empty())
        {
            return Err(error(
                "NotImplemented",
                "Lifecycle transitions are not implemented: Meridian has a single storage class",
            ));
        }
        let enabled = match r.status.as_str() {
            ExpirationStatus::ENABLED => true,
            ExpirationStatus::DISABLED => false,
            _ => return Err(malformed()),
        };
        let noncurrent = r
            .noncurrent_version_expiration
            .as_ref()
            .map(|n| -> Result<_, LifecycleError> {
                Ok(NoncurrentExpiration {
                    days: positive(n.noncurrent_days.ok_or_else(malformed)?, "NoncurrentDays")?,
                    newer_versions: n
                        .newer_noncurrent_versions
                        .map(|v| positive(v, "NewerNoncurrentVersions"))
                        .transpose()?,
                })
            })
            .transpose()?;
        let abort_upload_days = r
            .abort_incomplete_multipart_upload
            .as_ref()
            .map(|a| {
                positive(
                    a.days_after_initiation.ok_or_else(malformed)?,
                    "DaysAfterInitiation",
                )
            })
            .transpose()?;
        rules.push(Rule {
            id: r
                .id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("rule-{}", i + 1)),
            enabled,
            filter: filter_of(r)?,
            expiration: r.expiration.as_ref().map(expiration_of).transpose()?,
            noncurrent,
            abort_upload_days,
        });
    }
    Ok(LifecycleConfig { rules })
}

fn dto_tag((k, v): &(String, String)) -> Tag {
    Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    }
}

fn signed(n: u64) -> i64 {
    // Sizes came in as non-negative i64, so they fit back.
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn dto_filter(f: &Filter) -> (Option<String>, Option<LifecycleRuleFilter>) {
    let gt = f.size_greater_than.map(signed);
    let lt = f.size_less_than.map(signed);
    match f.shape {
        FilterShape::Legacy => (f.prefix.clone(), None),
        FilterShape::Empty => (None, Some(LifecycleRuleFilter::default())),
        FilterShape::Single => (
            None,
            Some(LifecycleRuleFilter {
                prefix: f.prefix.clone(),
                tag: f.tags.first().map(dto_tag),
                object_size_greater_than: gt,
                object_size_less_than: lt,
                and: None,
            }),
        ),
        FilterShape::And => (
            None,
            Some(LifecycleRuleFilter {
                and: Some(LifecycleRuleAndOperator {
                    prefix: f.prefix.clone(),
                    tags: (!f.tags.is_empty()).then(|| f.tags.iter().map(dto_tag).collect()),
                    object_size_greater_than: gt,
                    object_size_less_than: lt,
                }),
                ..Default::default()
            }),
        ),
    }
}

fn timestamp(secs: i64) -> Timestamp {
    // Dates came in as timestamps, so they convert back.
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .into()
}

/// The stored model back as the XML rules, in the shape they were put.
pub fn dto_of(config: &LifecycleConfig) -> Vec<LifecycleRule> {
    config
        .rules
        .iter()
        .map(|r| {
            let (prefix, filter) = dto_filter(&r.filter);
            LifecycleRule {
                id: Some(r.id.clone()),
                status: ExpirationStatus::from(
                    if r.enabled {
                        ExpirationStatus::ENABLED
                    } else {
                        ExpirationStatus::DISABLED
                    }
                    .to_owned(),
                ),
                prefix,
                filter,
                expiration: r.expiration.map(|e| match e {
                    Expiration::Days(d) => LifecycleExpiration {
                        days: Some(signed(u64::from(d)) as i32),
                        ..Default::default()
                    },
                    Expiration::Date(secs) => LifecycleExpiration {
                        date: Some(timestamp(secs)),
                        ..Default::default()
                    },
                    Expiration::DeleteMarker(m) => LifecycleExpiration {
                        expired_object_delete_marker: Some(m),
                        ..Default::default()
                    },
                }),
                noncurrent_version_expiration: r.noncurrent.map(|n| NoncurrentVersionExpiration {
                    noncurrent_days: i32::try_from(n.days).ok(),
                    newer_noncurrent_versions: n.newer_versions.and_then(|v| i32::try_from(v).ok()),
                }),
                abort_incomplete_multipart_upload: r.abort_upload_days.map(|d| {
                    AbortIncompleteMultipartUpload {
                        days_after_initiation: i32::try_from(d).ok(),
                    }
                }),
                noncurrent_version_transitions: None,
                transitions: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<LifecycleConfig, LifecycleError> {
        use s3s::xml::{Deserialize, Deserializer};
        let mut d = Deserializer::new(xml.as_bytes());
        let dto = BucketLifecycleConfiguration::deserialize(&mut d).map_err(|_| malformed())?;
        let config = config_of(dto)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn every_filter_shape_round_trips() {
        let xml = r#"<LifecycleConfiguration>
            <Rule><ID>legacy</ID><Prefix>old/</Prefix><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule>
            <Rule><ID>empty</ID><Filter></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>
            <Rule><ID>tag</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Disabled</Status><Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration></Rule>
            <Rule><ID>size</ID><Filter><ObjectSizeGreaterThan>100</ObjectSizeGreaterThan></Filter><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays><NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>
            <Rule><ID>and</ID><Filter><And><Prefix>ckpt/</Prefix><Tag><Key>a</Key><Value>b</Value></Tag><ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>
        </LifecycleConfiguration>"#;
        let config = parse(xml).unwrap();
        assert_eq!(config.rules.len(), 5);
        assert_eq!(
            config.rules[2].expiration,
            Some(Expiration::Date(1_893_456_000))
        );
        assert_eq!(config.rules[4].filter.size_less_than, Some(10));
        let back = config_of(BucketLifecycleConfiguration {
            rules: dto_of(&config),
        })
        .unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn bad_documents_get_the_aws_error() {
        let rule = |body: &str| {
            format!("<LifecycleConfiguration><Rule>{body}</Rule></LifecycleConfiguration>")
        };
        let code = |body: &str| parse(&rule(body)).unwrap_err().code;
        assert_eq!(code("<ID>a</ID><Filter><Prefix>p</Prefix><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"), "MalformedXML");
        assert_eq!(
            code("<ID>a</ID><Filter/><Status>On</Status><Expiration><Days>1</Days></Expiration>"),
            "MalformedXML"
        );
        assert_eq!(code("<ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Days>-1</Days></Expiration>"), "InvalidArgument");
        assert_eq!(code("<ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>"), "InvalidArgument");
        assert_eq!(code("<ID>a</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"), "InvalidArgument");
        assert_eq!(
            code("<ID>a</ID><Filter/><Status>Enabled</Status>"),
            "InvalidRequest"
        );
        assert_eq!(code("<ID>a</ID><Filter/><Status>Enabled</Status><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>"), "NotImplemented");
    }
}
