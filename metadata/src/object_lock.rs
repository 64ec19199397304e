//! S3 Object Lock below the API: the rules that decide whether a version may be removed and
//! whether its retention may change, checked under the key lock in the commit that would
//! break them. Every path that removes a version — a delete by version id, the replacement
//! of a null version, lifecycle expiry — asks [`ObjectLock::blocks_removal`], so no caller
//! (the S3 API, the lifecycle worker, a replica) can take a locked version's record, and with
//! it its storage, away. Storage is only ever queued for reclaim by those paths.
//!
//! The rules are AWS's:
//! - a legal hold blocks removal until it is cleared;
//! - retention blocks removal until its date; GOVERNANCE can be bypassed by a principal the
//!   gateway allowed to (`s3:BypassGovernanceRetention`), COMPLIANCE by nobody;
//! - an active COMPLIANCE retention can only be extended (same mode, a date not earlier);
//!   an active GOVERNANCE one can be extended freely, and changed in any other way (shorter,
//!   removed, made COMPLIANCE) only with the bypass.

use crate::record::{Nanos, ObjectLock, Retention, RetentionMode};

/// A change of one version's lock state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockChange {
    /// Set (or, with `None`, remove) the retention.
    Retention(Option<Retention>),
    /// Put the legal hold on or off.
    LegalHold(bool),
}

impl ObjectLock {
    /// The retention that still protects the version at `now`.
    pub fn active_retention(&self, now: Nanos) -> Option<&Retention> {
        self.retention.as_ref().filter(|r| r.until > now)
    }

    /// Whether anything protects the version at `now` (a legal hold or a retention).
    pub fn is_locked(&self, now: Nanos) -> bool {
        self.legal_hold || self.active_retention(now).is_some()
    }

    /// Why the version cannot be removed at `now`, or `None` when it can.
    pub fn blocks_removal(&self, now: Nanos, bypass_governance: bool) -> Option<&'static str> {
        if self.legal_hold {
            return Some("the version is under a legal hold");
        }
        match self.active_retention(now)?.mode {
            RetentionMode::Compliance => Some("the version is under COMPLIANCE retention"),
            RetentionMode::Governance if !bypass_governance => {
                Some("the version is under GOVERNANCE retention")
            }
            RetentionMode::Governance => None,
        }
    }

    /// The state after `change`, or why it is refused.
    pub fn changed(
        &self,
        change: LockChange,
        now: Nanos,
        bypass_governance: bool,
    ) -> Result<ObjectLock, &'static str> {
        match change {
            LockChange::LegalHold(on) => Ok(ObjectLock {
                legal_hold: on,
                ..*self
            }),
            LockChange::Retention(new) => {
                if let Some(current) = self.active_retention(now) {
                    let extends =
                        new.is_some_and(|n| n.mode == current.mode && n.until >= current.until);
                    match current.mode {
                        RetentionMode::Compliance if !extends => {
                            return Err("a COMPLIANCE retention can only be extended");
                        }
                        RetentionMode::Governance if !extends && !bypass_governance => {
                            return Err(
                                "changing a GOVERNANCE retention other than extending it needs x-amz-bypass-governance-retention",
                            );
                        }
                        _ => {}
                    }
                }
                Ok(ObjectLock {
                    retention: new,
                    ..*self
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Nanos = 1_000;

    fn lock(mode: RetentionMode, until: Nanos, legal_hold: bool) -> ObjectLock {
        ObjectLock {
            retention: Some(Retention { mode, until }),
            legal_hold,
        }
    }

    #[test]
    fn removal_is_blocked_by_hold_and_active_retention_only() {
        use RetentionMode::*;
        assert_eq!(ObjectLock::default().blocks_removal(NOW, false), None);
        assert!(lock(Governance, NOW + 1, false)
            .blocks_removal(NOW, false)
            .is_some());
        assert_eq!(
            lock(Governance, NOW + 1, false).blocks_removal(NOW, true),
            None
        );
        assert!(lock(Compliance, NOW + 1, false)
            .blocks_removal(NOW, true)
            .is_some());
        // Expired retention protects nothing; a legal hold protects regardless.
        assert_eq!(
            lock(Compliance, NOW, false).blocks_removal(NOW, false),
            None
        );
        assert!(lock(Compliance, NOW, true)
            .blocks_removal(NOW, true)
            .is_some());
    }

    #[test]
    fn compliance_can_only_be_extended() {
        use RetentionMode::*;
        let current = lock(Compliance, NOW + 100, false);
        let to = |mode, until| LockChange::Retention(Some(Retention { mode, until }));
        assert!(current
            .changed(to(Compliance, NOW + 200), NOW, false)
            .is_ok());
        assert!(current
            .changed(to(Compliance, NOW + 100), NOW, false)
            .is_ok());
        for bypass in [false, true] {
            assert!(current
                .changed(to(Compliance, NOW + 50), NOW, bypass)
                .is_err());
            assert!(current
                .changed(to(Governance, NOW + 200), NOW, bypass)
                .is_err());
            assert!(current
                .changed(LockChange::Retention(None), NOW, bypass)
                .is_err());
        }
        // Once passed, anything goes.
        assert!(current
            .changed(LockChange::Retention(None), NOW + 100, false)
            .is_ok());
    }

    #[test]
    fn governance_changes_other_than_extension_need_the_bypass() {
        use RetentionMode::*;
        let current = lock(Governance, NOW + 100, true);
        let to = |mode, until| LockChange::Retention(Some(Retention { mode, until }));
        assert!(current
            .changed(to(Governance, NOW + 200), NOW, false)
            .is_ok());
        assert!(current
            .changed(to(Governance, NOW + 50), NOW, false)
            .is_err());
        assert!(current
            .changed(to(Compliance, NOW + 100), NOW, false)
            .is_err());
        assert!(current
            .changed(LockChange::Retention(None), NOW, false)
            .is_err());
        let cleared = current
            .changed(LockChange::Retention(None), NOW, true)
            .unwrap();
        assert_eq!(cleared.retention, None);
        assert!(
            cleared.legal_hold,
            "the hold is untouched by a retention change"
        );
        assert!(current
            .changed(to(Compliance, NOW + 100), NOW, true)
            .is_ok());
        assert!(
            !current
                .changed(LockChange::LegalHold(false), NOW, false)
                .unwrap()
                .legal_hold
        );
    }
}
