//! Sends access key changes to every Meridian peer region: one task per peer tails the admin
//! outbox from that peer's cursor and PUTs each changed key, as it is now, to the peer's
//! `/_meridian/keys-sync` (signed as the replication user, over the peer link). The cursor
//! moves past an entry only once the peer took it, so a change made while the peer is down
//! arrives when it returns, and changes arrive in the order they were made. The peer applies a
//! change only when it is newer than what it holds, so a resend is harmless.
//!
//! In a region of several nodes, every node sends its own changes and those it applied from
//! etcd (where the region keeps its keys: see `cluster::keys`); a peer takes each once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use meridian_metadata::MetaStore;
use meridian_store::access_keys::AccessKeys;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Entries read from the outbox at a time.
const BATCH: usize = 256;
/// How often an idle sender looks at the outbox anyway.
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Wakes the senders when a key changed here.
#[derive(Clone, Default)]
pub struct KeySync {
    wakeup: Arc<Notify>,
}

impl KeySync {
    pub fn wake(&self) {
        self.wakeup.notify_waiters();
    }

    /// One sender per Meridian peer.
    pub fn spawn(
        &self,
        meta: MetaStore,
        keys: Arc<AccessKeys>,
        replicator: &meridian_replicator::Replicator,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        replicator
            .peers()
            .filter(|p| p.kind == meridian_replicator::config::PeerKind::Meridian)
            .filter_map(|p| Some((p.name.clone(), replicator.peer_client(&p.name)?)))
            .map(|(peer, client)| {
                tokio::spawn(send_to_peer(
                    peer,
                    client,
                    meta.clone(),
                    keys.clone(),
                    self.wakeup.clone(),
                    stop.clone(),
                ))
            })
            .collect()
    }
}

async fn send_to_peer(
    peer: String,
    client: aws_sdk_s3::Client,
    meta: MetaStore,
    keys: Arc<AccessKeys>,
    wakeup: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    while !*stop.borrow() {
        // Registered before reading, so a change committed meanwhile still wakes us.
        let woken = wakeup.notified();
        let (m, p) = (meta.clone(), peer.clone());
        let batch = tokio::task::spawn_blocking(move || {
            let from = m.admin_cursor(&p)?;
            m.admin_changes(from, BATCH)
        })
        .await;
        let batch = match batch {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(%peer, error = %e, "reading the admin outbox");
                Vec::new()
            }
            Err(_) => return,
        };
        if batch.is_empty() {
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let mut sent = HashSet::new();
        let mut failed = false;
        for (seq, access_key) in batch {
            // The key is sent as it is now: a later entry of the same key in this batch has
            // nothing more to say.
            if sent.insert(access_key.clone()) {
                if let Err(e) = send(&client, &keys, &access_key).await {
                    tracing::warn!(%peer, %access_key, error = %e, "key change not delivered; retrying");
                    failed = true;
                    break;
                }
            }
            let (m, p) = (meta.clone(), peer.clone());
            let moved = tokio::task::spawn_blocking(move || m.set_admin_cursor(&p, seq + 1)).await;
            if !matches!(moved, Ok(Ok(()))) {
                tracing::error!(%peer, "could not move the admin outbox cursor");
                failed = true;
                break;
            }
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = Duration::from_secs(1);
        }
    }
}

async fn send(
    client: &aws_sdk_s3::Client,
    keys: &Arc<AccessKeys>,
    access_key: &str,
) -> Result<(), String> {
    let (k, ak) = (keys.clone(), access_key.to_owned());
    let body = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, String> {
        let Some(record) = k.record(&ak).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let wire = k.wire(record).map_err(|e| e.to_string())?;
        serde_json::to_vec(&wire)
            .map(Some)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let Some(body) = body else {
        return Ok(());
    };
    let sent = client
        .put_object()
        .bucket("_meridian")
        .key("keys-sync")
        .content_type("application/json")
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if status == Some(409) {
                // The peer configures this access key in its file: it keeps its own.
                tracing::warn!(%access_key, "the peer configures this access key itself; change not applied there");
                return Ok(());
            }
            Err(match status {
                Some(s) => format!("the peer answered {s}"),
                None => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })
        }
    }
}
