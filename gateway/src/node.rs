//! `meridian serve`: open storage, start background work, serve S3 until SIGTERM/SIGINT,
//! then shut down in order (connections, background tasks, RocksDB).

use std::sync::Arc;

use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio::sync::watch;

use crate::admin::AdminApi;
use crate::auth::{AccessPolicy, Users};
use crate::config::Config;
use crate::http_server::{self, Router};
use crate::s3::MeridianS3;
use meridian_replicator::Replicator;
use meridian_store::{background, Store};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (root_user, _, dev_default) = config.root_credentials();
    if dev_default {
        tracing::warn!(
            "no root credentials configured (MERIDIAN_ROOT_USER / MERIDIAN_ROOT_PASSWORD): using the development default {}/{} — do not expose this server",
            crate::config::DEV_ROOT_USER,
            crate::config::DEV_ROOT_PASSWORD
        );
    }

    if let Some(day) = config.lifecycle.day {
        tracing::warn!(
            "[lifecycle] day = {}: lifecycle rules count days of this length, not real days — for tests only",
            humantime::format_duration(day)
        );
    }

    #[cfg(feature = "fault-injection")]
    skew_clock_from_env();

    let store_config = config.store_config();
    let store = Store::open(&store_config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = [
        tokio::spawn(background::run_reclaimer(store.clone(), stop_rx.clone())),
        tokio::spawn(meridian_store::lifecycle::run_worker(
            store.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(background::run_healer(store.clone(), stop_rx.clone())),
        tokio::spawn(background::run_upload_expiry(
            store.clone(),
            config.multipart_expiry,
            stop_rx.clone(),
        )),
        // In a region of several nodes the cluster trims it, below its copies' cursors too.
        if config.cluster.is_some() {
            tokio::spawn(async {})
        } else {
            tokio::spawn(background::run_outbox_trimmer(
                store.clone(),
                config.outbox_retention,
                config.peers.iter().map(|p| p.name.clone()).collect(),
                stop_rx.clone(),
            ))
        },
        tokio::spawn(meridian_store::encryption::reseal::run_resealer(
            store.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(background::run_scrubber(
            store.clone(),
            config.scrub_interval,
            config.orphan_grace,
            stop_rx.clone(),
        )),
    ];

    let replicator = Replicator::new(
        store.meta.clone(),
        Arc::new(crate::replication_source::StoreSource(store.clone())),
        config.peers.clone(),
        config.replication.clone(),
        config.region.clone(),
        &crate::metrics::global().registry,
    );
    let replication_workers = replicator.spawn(stop_rx.clone());
    let cluster = match &config.cluster {
        Some(c) => crate::cluster::ClusterGate::join(
            c.clone(),
            config.region.clone(),
            crate::host::Domains::new(&config.domains),
            crate::cluster::CopyParts {
                meta: store.meta.clone(),
                source: Arc::new(crate::replication_source::StoreSource(store.clone())),
                settings: config.replication.clone(),
                root: {
                    let (k, s, _) = config.root_credentials();
                    (k, s)
                },
                geo_peers: config.peers.iter().map(|p| p.name.clone()).collect(),
            },
        ),
        None => crate::cluster::ClusterGate::default(),
    };

    let (root_key, root_secret, _) = config.root_credentials();
    let access_keys = Arc::new(
        meridian_store::access_keys::AccessKeys::open(
            store.meta.clone(),
            &store.sse,
            &meridian_store::access_keys::default_kek_file(&store_config.metadata_path),
            config.region.clone(),
        )
        .await?,
    );
    if config.users.iter().any(|u| {
        u.grants
            .iter()
            .any(|g| g.access == crate::auth::Access::ReadWrite)
    }) {
        tracing::info!("[[users]] grants of read-write mean read + write: a bucket's configuration (policy, replication, versioning, lifecycle, ...) and DeleteBucket need `owner` (or creating the bucket)");
    }
    let users = Users::new((root_key.clone(), root_secret.clone()), &config.users)
        .with_root_identity(
            &root_key,
            crate::auth::Identity {
                user_id: config.root.user_id.clone(),
                display_name: config.root.display_name.clone(),
                email: config.root.email.clone(),
            },
        )
        .with_keys(access_keys.clone())?;
    let key_sync = crate::key_sync::KeySync::default();
    if let Some(node) = cluster.node() {
        node.set_keys(users.clone(), key_sync.clone(), &root_secret);
    }
    let key_senders = key_sync.spawn(
        store.meta.clone(),
        access_keys,
        &replicator,
        stop_rx.clone(),
    );
    let policies = crate::bucket_policy::Policies::default();
    let acls = crate::s3::acl::AclCache::new(store.meta.clone());
    let cors = crate::cors::CorsRules::new(
        store.meta.clone(),
        crate::host::Domains::new(&config.domains),
    );
    crate::s3::public_access::PublicAccessBlock::set_region(config.public_access_block);
    let s3 = MeridianS3::new(
        store.clone(),
        config.region.clone(),
        replicator.clone(),
        policies.clone(),
        users.clone(),
        crate::s3::encryption::SseSettings {
            customer_keys_allowed: config.tls.is_some() || config.encryption.sse_c_over_http,
            bucket_default: config.encryption.default.clone(),
        },
        cors.clone(),
    )
    .with_acls(
        acls.clone(),
        crate::s3::acl::Ownership::parse(&config.object_ownership)
            .unwrap_or(crate::s3::acl::Ownership::Enforced),
    )
    .with_cluster(cluster.clone());
    if let Some(node) = cluster.node() {
        node.set_delegate(Arc::new(s3.clone()));
        // Shards deleted or discarded here will not be copied: their staged copies on the
        // followers go.
        let node = Arc::downgrade(node);
        store.on_reclaim(Arc::new(move |data_ids| {
            if let Some(node) = node.upgrade() {
                node.reclaimed(data_ids);
            }
        }));
    }
    let mut builder = S3ServiceBuilder::new(s3);
    if config.encryption.sse_c_over_http && config.tls.is_none() {
        tracing::warn!("[encryption] sse_c_over_http: SSE-C keys are accepted over plain HTTP, where anyone on the path can read them (for tests only)");
    }
    builder.set_host(crate::host::Domains::new(&config.domains));
    builder.set_auth(users.clone());
    let fence = crate::fence::Fence::load(store.meta.clone())?;
    builder.set_access(
        AccessPolicy::new(
            users.clone(),
            Some(fence.clone()),
            Some((store.meta.clone(), policies)),
        )
        .with_acls(acls)
        .with_cluster(cluster.clone()),
    );
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(
        S3Config::default(),
    ))));
    builder.set_validation(crate::host::BucketNames);
    builder.set_route(
        AdminApi::new(
            store.clone(),
            replicator.clone(),
            users.clone(),
            fence,
            config.metrics_public,
            key_sync,
        )
        .with_cluster(cluster.clone()),
    );
    let audit = match &config.audit {
        Some(audit) => Some(crate::audit::AuditLog::start(audit)?),
        None => None,
    };
    let router = Router::new(builder.build(), audit.clone())
        .with_users(users)
        .with_cors(cors)
        .with_cluster(&cluster);

    let certs = match &config.tls {
        Some(tls) => Some(crate::tls::Certificates::load(tls)?),
        None => None,
    };
    // Installed before the server says it listens: a SIGHUP from then on never kills it.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(reload_on_sighup(hup, certs.clone()));
    let tls = match &certs {
        Some(certs) => Some(tokio_rustls::TlsAcceptor::from(certs.server_config()?)),
        None => None,
    };

    // One shutdown signal for every listener.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let health = match config.health_address {
        Some(address) => {
            let listener = http_server::listen(address)?;
            let address = listener.local_addr()?;
            println!("meridian health on http://{address}");
            Some(tokio::spawn(http_server::serve(
                listener,
                router.health_only(),
                None,
                shutdown(shutdown_rx.clone()),
                config.shutdown_grace,
                config.limits.clone(),
            )))
        }
        None => None,
    };

    let listener = http_server::listen(config.address)?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts wait for this line (and read the port from it when binding port 0).
    println!(
        "meridian listening on {scheme}://{address} (region {}, erasure {}+{}, root user {root_user})",
        config.region, config.erasure.data_shards, config.erasure.parity_shards
    );
    tracing::info!(%address, data = %config.data_dir.display(), tls = tls.is_some(), "serving S3");

    http_server::serve(
        listener,
        router,
        tls,
        shutdown(shutdown_rx),
        config.shutdown_grace,
        config.limits.clone(),
    )
    .await;
    if let Some(health) = health {
        let _ = health.await;
    }
    // The requests are done: their audit lines go to disk before the process ends.
    if let Some(audit) = audit {
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
    }

    let _ = stop_tx.send(true);
    for task in background
        .into_iter()
        .chain(replication_workers)
        .chain(key_senders)
    {
        let _ = task.await;
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Fault injection for the tests of regions whose clocks disagree: versions are stamped with
/// a clock skewed by `MERIDIAN_FAULT_CLOCK_OFFSET_MS`. Only in builds with the
/// `fault-injection` feature, which the end-to-end tests turn on; a release build of the
/// binary alone ignores the variable.
#[cfg(feature = "fault-injection")]
fn skew_clock_from_env() {
    if let Some(ms) = std::env::var("MERIDIAN_FAULT_CLOCK_OFFSET_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        tracing::warn!(
            offset_ms = ms,
            "MERIDIAN_FAULT_CLOCK_OFFSET_MS: this node's version clock is skewed on purpose"
        );
        meridian_metadata::set_clock_offset(ms.saturating_mul(1_000_000));
    }
}

/// SIGHUP reads the certificate and key again; a pair that does not load is refused and the
/// current one kept. Without TLS it changes nothing (and does not stop the server).
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    certs: Option<Arc<crate::tls::Certificates>>,
) {
    while hup.recv().await.is_some() {
        let Some(certs) = &certs else {
            tracing::info!("SIGHUP: no [tls] configured, nothing to reload");
            continue;
        };
        // File reads and key parsing: off the runtime's workers.
        let c = Arc::clone(certs);
        let reloaded = tokio::task::spawn_blocking(move || c.reload())
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("reload task failed: {e}")));
        match reloaded {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the current one")
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
