//! Object Lock documents: the bucket's `ObjectLockConfiguration` (its default retention), a
//! version's `Retention` and `LegalHold`, and the `x-amz-object-lock-*` headers of a write —
//! from what s3s parses to a checked model, with AWS's errors for what AWS refuses.
//!
//! Times are nanoseconds since the Unix epoch, as the metadata stores them.

use s3s::dto::{
    DefaultRetention as DefaultRetentionDto, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention, ObjectLockRetentionMode,
    ObjectLockRule, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::{error, malformed, DocumentError};

/// The name of the bucket configuration document that holds the default retention.
pub const CONFIG_DOCUMENT: &str = "object-lock";
/// AWS's longest default retention.
pub const MAX_DAYS: u32 = 36_500;
pub const MAX_YEARS: u32 = 100;

const DAY_NANOS: i64 = 86_400 * 1_000_000_000;
/// Retention dates are kept to the microsecond: the precision every client (and the SDK the
/// replicator sends them with) writes, so a date survives every round trip unchanged.
const PRECISION: i64 = 1_000;

fn truncated(nanos: i64) -> i64 {
    nanos - nanos.rem_euclid(PRECISION)
}

/// The two retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Governance,
    Compliance,
}

impl Mode {
    /// From the wire: exactly `GOVERNANCE` or `COMPLIANCE` (AWS refuses other cases).
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            ObjectLockRetentionMode::GOVERNANCE => Some(Mode::Governance),
            ObjectLockRetentionMode::COMPLIANCE => Some(Mode::Compliance),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Governance => ObjectLockRetentionMode::GOVERNANCE,
            Mode::Compliance => ObjectLockRetentionMode::COMPLIANCE,
        }
    }
}

/// The length of a default retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Period {
    Days(u32),
    Years(u32),
}

/// The retention a new version gets when its write names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: Mode,
    pub period: Period,
}

impl DefaultRetention {
    /// The date a version written at `now` is retained until (a year is 365 days).
    pub fn until(&self, now: i64) -> i64 {
        let days = match self.period {
            Period::Days(d) => i64::from(d),
            Period::Years(y) => i64::from(y) * 365,
        };
        truncated(now.saturating_add(days.saturating_mul(DAY_NANOS)))
    }
}

/// A bucket's Object Lock configuration, as stored (Object Lock itself being enabled is a
/// flag of the bucket record: it can never be turned off).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockConfig {
    pub default_retention: Option<DefaultRetention>,
}

impl LockConfig {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an Object Lock configuration serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<LockConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A retention as a request states it: a mode and a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub mode: Mode,
    pub until: i64,
}

/// What the `x-amz-object-lock-*` headers of a write ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestedLock {
    pub retention: Option<Retention>,
    pub legal_hold: Option<bool>,
}

impl RequestedLock {
    pub fn is_empty(&self) -> bool {
        self.retention.is_none() && self.legal_hold.is_none()
    }
}

fn nanos_of(t: &Timestamp) -> Result<i64, DocumentError> {
    let at = time::OffsetDateTime::from(t.clone());
    i64::try_from(at.unix_timestamp_nanos())
        .map(truncated)
        .map_err(|_| error("InvalidArgument", "The retain until date is out of range"))
}

/// The date as the wire carries it.
pub fn timestamp_of(nanos: i64) -> Timestamp {
    Timestamp::from(
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

fn future(until: i64, now: i64) -> Result<i64, DocumentError> {
    if until <= now {
        return Err(error(
            "InvalidArgument",
            "The retain until date must be in the future!",
        ));
    }
    Ok(until)
}

/// The `x-amz-object-lock-mode`, `-retain-until-date` and `-legal-hold` headers of a
/// PutObject, CopyObject or CreateMultipartUpload: mode and date together or neither, a date
/// in the future, a hold `ON` or `OFF`.
pub fn requested_lock(
    mode: Option<&str>,
    until: Option<&Timestamp>,
    legal_hold: Option<&str>,
    now: i64,
) -> Result<RequestedLock, DocumentError> {
    let retention = match (mode, until) {
        (None, None) => None,
        (Some(m), Some(u)) => {
            let mode = Mode::parse(m)
                .ok_or_else(|| error("InvalidArgument", "Unknown wormMode directive."))?;
            Some(Retention {
                mode,
                until: future(nanos_of(u)?, now)?,
            })
        }
        _ => return Err(error(
            "InvalidArgument",
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
        )),
    };
    let legal_hold = legal_hold
        .map(|h| {
            legal_hold_status(h).ok_or_else(|| {
                error(
                    "InvalidArgument",
                    "Legal Hold must be either of 'ON' or 'OFF'",
                )
            })
        })
        .transpose()?;
    Ok(RequestedLock {
        retention,
        legal_hold,
    })
}

fn legal_hold_status(s: &str) -> Option<bool> {
    match s {
        ObjectLockLegalHoldStatus::ON => Some(true),
        ObjectLockLegalHoldStatus::OFF => Some(false),
        _ => None,
    }
}

/// The body of PutObjectRetention: a mode and a date in the future, or (to remove a
/// retention, with the bypass) neither.
pub fn retention_of(
    dto: Option<&ObjectLockRetention>,
    now: i64,
) -> Result<Option<Retention>, DocumentError> {
    let Some(dto) = dto else { return Ok(None) };
    match (&dto.mode, &dto.retain_until_date) {
        (None, None) => Ok(None),
        (Some(m), Some(u)) => Ok(Some(Retention {
            mode: Mode::parse(m.as_str()).ok_or_else(malformed)?,
            until: future(nanos_of(u)?, now)?,
        })),
        _ => Err(malformed()),
    }
}

pub fn retention_dto(r: Option<Retention>) -> ObjectLockRetention {
    ObjectLockRetention {
        mode: r.map(|r| ObjectLockRetentionMode::from_static(r.mode.as_str())),
        retain_until_date: r.map(|r| timestamp_of(r.until)),
    }
}

/// The body of PutObjectLegalHold.
pub fn legal_hold_of(dto: Option<&ObjectLockLegalHold>) -> Result<bool, DocumentError> {
    dto.and_then(|d| d.status.as_ref())
        .and_then(|s| legal_hold_status(s.as_str()))
        .ok_or_else(malformed)
}

pub fn legal_hold_dto(on: bool) -> ObjectLockLegalHold {
    ObjectLockLegalHold {
        status: Some(ObjectLockLegalHoldStatus::from_static(if on {
            ObjectLockLegalHoldStatus::ON
        } else {
            ObjectLockLegalHoldStatus::OFF
        })),
    }
}

fn period(value: Option<i32>, max: u32) -> Result<Option<u32>, DocumentError> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| (1..=max).contains(v))
                .ok_or_else(|| {
                    error(
                        "InvalidRetentionPeriod",
                        "Default retention period must be a positive integer value",
                    )
                })
        })
        .transpose()
}

/// The body of PutObjectLockConfiguration: `ObjectLockEnabled` must be `Enabled`; a rule
/// names a mode and exactly one of Days and Years, each positive and within AWS's limits.
pub fn config_of(dto: &ObjectLockConfiguration) -> Result<LockConfig, DocumentError> {
    if dto.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
        return Err(malformed());
    }
    let Some(rule) = &dto.rule else {
        return Ok(LockConfig::default());
    };
    let d = rule.default_retention.as_ref().ok_or_else(malformed)?;
    let mode = d
        .mode
        .as_ref()
        .and_then(|m| Mode::parse(m.as_str()))
        .ok_or_else(malformed)?;
    let period = match (period(d.days, MAX_DAYS)?, period(d.years, MAX_YEARS)?) {
        (Some(days), None) => Period::Days(days),
        (None, Some(years)) => Period::Years(years),
        _ => return Err(malformed()),
    };
    Ok(LockConfig {
        default_retention: Some(DefaultRetention { mode, period }),
    })
}

pub fn config_dto(config: &LockConfig) -> ObjectLockConfiguration {
    ObjectLockConfiguration {
        object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
        rule: config.default_retention.map(|d| ObjectLockRule {
            default_retention: Some(DefaultRetentionDto {
                mode: Some(ObjectLockRetentionMode::from_static(d.mode.as_str())),
                days: match d.period {
                    Period::Days(n) => Some(n as i32),
                    Period::Years(_) => None,
                },
                years: match d.period {
                    Period::Years(n) => Some(n as i32),
                    Period::Days(_) => None,
                },
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        enabled: &str,
        mode: &str,
        days: Option<i32>,
        years: Option<i32>,
    ) -> ObjectLockConfiguration {
        ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from(enabled.to_owned())),
            rule: Some(ObjectLockRule {
                default_retention: Some(DefaultRetentionDto {
                    mode: Some(ObjectLockRetentionMode::from(mode.to_owned())),
                    days,
                    years,
                }),
            }),
        }
    }

    fn code(r: Result<LockConfig, DocumentError>) -> &'static str {
        r.unwrap_err().code
    }

    #[test]
    fn configurations_are_checked_as_aws_checks_them() {
        let ok = config_of(&config("Enabled", "GOVERNANCE", Some(1), None)).unwrap();
        assert_eq!(
            ok.default_retention,
            Some(DefaultRetention {
                mode: Mode::Governance,
                period: Period::Days(1)
            })
        );
        assert_eq!(config_of(&config_dto(&ok)).unwrap(), ok, "round trip");
        assert_eq!(
            code(config_of(&config(
                "Enabled",
                "GOVERNANCE",
                Some(1),
                Some(1)
            ))),
            "MalformedXML"
        );
        assert_eq!(
            code(config_of(&config("Enabled", "GOVERNANCE", None, None))),
            "MalformedXML"
        );
        assert_eq!(
            code(config_of(&config("Enabled", "GOVERNANCE", Some(0), None))),
            "InvalidRetentionPeriod"
        );
        assert_eq!(
            code(config_of(&config("Enabled", "COMPLIANCE", None, Some(-1)))),
            "InvalidRetentionPeriod"
        );
        assert_eq!(
            code(config_of(&config("Enabled", "COMPLIANCE", None, Some(101)))),
            "InvalidRetentionPeriod"
        );
        assert_eq!(
            code(config_of(&config("Enabled", "governance", Some(1), None))),
            "MalformedXML"
        );
        assert_eq!(
            code(config_of(&config("Enabled", "abc", Some(1), None))),
            "MalformedXML"
        );
        assert_eq!(
            code(config_of(&config("Disabled", "GOVERNANCE", Some(1), None))),
            "MalformedXML"
        );
        let no_rule = ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
            rule: None,
        };
        assert_eq!(config_of(&no_rule).unwrap(), LockConfig::default());
    }

    #[test]
    fn headers_need_mode_and_date_together_and_a_future_date() {
        let now = 1_000 * DAY_NANOS;
        let later = timestamp_of(now + DAY_NANOS);
        let earlier = timestamp_of(now - 1);
        let ok = requested_lock(Some("COMPLIANCE"), Some(&later), Some("ON"), now).unwrap();
        assert_eq!(
            ok.retention,
            Some(Retention {
                mode: Mode::Compliance,
                until: now + DAY_NANOS
            })
        );
        assert_eq!(ok.legal_hold, Some(true));
        assert!(requested_lock(None, None, None, now).unwrap().is_empty());
        for bad in [
            requested_lock(Some("COMPLIANCE"), None, None, now),
            requested_lock(None, Some(&later), None, now),
            requested_lock(Some("compliance"), Some(&later), None, now),
            requested_lock(Some("GOVERNANCE"), Some(&earlier), None, now),
            requested_lock(None, None, Some("on"), now),
        ] {
            assert_eq!(bad.unwrap_err().code, "InvalidArgument");
        }
    }

    #[test]
    fn retention_and_legal_hold_bodies() {
        let now = 0;
        let r = Some(Retention {
            mode: Mode::Governance,
            until: 5 * DAY_NANOS,
        });
        assert_eq!(retention_of(Some(&retention_dto(r)), now).unwrap(), r);
        assert_eq!(retention_of(Some(&retention_dto(None)), now).unwrap(), None);
        let half = ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from_static("GOVERNANCE")),
            retain_until_date: None,
        };
        assert_eq!(
            retention_of(Some(&half), now).unwrap_err().code,
            "MalformedXML"
        );
        assert!(legal_hold_of(Some(&legal_hold_dto(true))).unwrap());
        assert!(!legal_hold_of(Some(&legal_hold_dto(false))).unwrap());
        let bad = ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from("abc".to_owned())),
        };
        assert_eq!(legal_hold_of(Some(&bad)).unwrap_err().code, "MalformedXML");
    }
}
