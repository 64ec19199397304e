//! Object Lock on the way to a peer: a version carries its retention and legal hold as the
//! standard `x-amz-object-lock-*` headers of its PutObject or CreateMultipartUpload (see
//! `upload`), and a later change (a retention extended, a hold cleared, a GOVERNANCE date
//! shortened with the bypass) goes as PutObjectRetention and PutObjectLegalHold of that
//! version. A peer applies them as the source decided, except that it never weakens a
//! COMPLIANCE retention; a peer whose bucket has no Object Lock refuses them
//! (`DstBucketObjectLockConfigMissing`), which leaves the change FAILED with that reason.

use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention};
use aws_smithy_types::DateTime;
use meridian_metadata::{Nanos, RetentionMode, VersionRecord};

use crate::error::SendError;
use crate::peer::{add_headers, control_call};
use crate::transfer::{Sender, Sent};

pub(crate) fn sdk_mode(mode: RetentionMode) -> aws_sdk_s3::types::ObjectLockRetentionMode {
    match mode {
        RetentionMode::Governance => aws_sdk_s3::types::ObjectLockRetentionMode::Governance,
        RetentionMode::Compliance => aws_sdk_s3::types::ObjectLockRetentionMode::Compliance,
    }
}

pub(crate) fn sdk_date(nanos: Nanos) -> DateTime {
    DateTime::from_secs_and_nanos(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
}

/// Sends one lock call (`$op` on the peer's client, its builder steps in `$steps`) for the
/// version `$record` has there, as a metadata-only change; `Ok(())` or the SendError.
macro_rules! lock_call {
    ($sender:expr, $record:expr, $version_id:expr, $op:ident, $name:literal, |$b:ident| $steps:expr) => {{
        let what = $sender.what($name, $record);
        let $b = $sender
            .peer
            .client
            .$op()
            .bucket(&$sender.target.bucket)
            .key(crate::sdk_key(&$record.key))
            .version_id($version_id);
        $steps
            .customize()
            .config_override(control_call())
            .mutate_request(add_headers($sender.change_headers()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SendError::from_sdk(&what, e))
    }};
}

impl Sender<'_> {
    /// The version's retention and legal hold as they are now, set on the peer's copy.
    pub(crate) async fn send_lock(&self, record: &VersionRecord) -> Result<Sent, SendError> {
        let Some(version_id) = self.target_version_id(record) else {
            return Ok(Sent::done());
        };
        let retention = ObjectLockRetention::builder()
            .set_mode(record.lock.retention.map(|r| sdk_mode(r.mode)))
            .set_retain_until_date(record.lock.retention.map(|r| sdk_date(r.until)))
            .build();
        let answer = lock_call!(
            self,
            record,
            &version_id,
            put_object_retention,
            "PutObjectRetention",
            |b| b.retention(retention).bypass_governance_retention(true)
        );
        if let Some(sent) = not_there_yet(answer)? {
            return Ok(sent);
        }
        let hold = ObjectLockLegalHold::builder()
            .status(if record.lock.legal_hold {
                ObjectLockLegalHoldStatus::On
            } else {
                ObjectLockLegalHoldStatus::Off
            })
            .build();
        let answer = lock_call!(
            self,
            record,
            &version_id,
            put_object_legal_hold,
            "PutObjectLegalHold",
            |b| b.legal_hold(hold)
        );
        Ok(not_there_yet(answer)?.unwrap_or_else(Sent::done))
    }
}

/// A version the peer does not hold yet is on its way (or being retried): when it arrives it
/// carries the lock it has then, which includes this change.
fn not_there_yet(answer: Result<(), SendError>) -> Result<Option<Sent>, SendError> {
    match answer {
        Ok(()) => Ok(None),
        Err(e) if e.is_code("NoSuchVersion") || e.is_code("NoSuchKey") => Ok(Some(Sent::done())),
        Err(e) => Err(e),
    }
}
