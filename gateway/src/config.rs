//! Server configuration: one TOML file where every field has a default, overridden by
//! `MERIDIAN_*` environment variables, overridden in turn by command-line flags.
//!
//! `Config::default()` is a working single-node store: six disks under `./meridian-data`,
//! erasure 4+2, listening on 127.0.0.1:9000.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use meridian_replicator::{PeerConfig, ReplicationSettings};
pub use meridian_store::config::ErasureSpec;
use meridian_store::{Durability, StoreConfig};

pub use crate::auth::{Access, GrantConfig, UserConfig};
use serde::Deserialize;

/// Credentials printed with a warning when no root user is configured.
pub const DEV_ROOT_USER: &str = "meridianadmin";
pub const DEV_ROOT_PASSWORD: &str = "meridianadmin";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the S3 API listens on.
    pub address: SocketAddr,
    /// Region reported by GetBucketLocation and accepted in signatures.
    pub region: String,
    /// Domains under which `bucket.<domain>` virtual-hosted requests are served.
    pub domains: Vec<String>,
    /// Root of the node's data: disks default to `data_dir/disk1..N`, RocksDB to `data_dir/meta`.
    pub data_dir: PathBuf,
    pub erasure: ErasureConfig,
    pub metadata: MetadataConfig,
    pub root: RootCredentials,
    pub users: Vec<UserConfig>,
    /// Objects smaller than this are stored inside their version record.
    pub inline_threshold: usize,
    /// How long in-flight requests may run on after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Multipart uploads initiated longer ago than this are aborted in the background.
    #[serde(with = "humantime_serde")]
    pub multipart_expiry: Duration,
    /// Every shard on every disk is verified (and healed) this often; "0s" disables it.
    #[serde(with = "humantime_serde")]
    pub scrub_interval: Duration,
    /// Shards nothing references are deleted by the scrub once they are this old (a write in
    /// flight commits its version milliseconds after its shards land).
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
    /// Replication outbox entries are kept this long while no peer needs them.
    #[serde(with = "humantime_serde")]
    pub outbox_retention: Duration,
    /// Peer regions this node replicates to (`[[peers]]`).
    pub peers: Vec<PeerConfig>,
    /// How it replicates (`[replication]`).
    pub replication: ReplicationSettings,
    /// Anyone may read `/_meridian/metrics`, signed or not (for scrapers that cannot sign).
    pub metrics_public: bool,
    /// The Object Ownership of new buckets that name none: `BucketOwnerEnforced` (ACLs
    /// disabled, AWS's default), `BucketOwnerPreferred` or `ObjectWriter`.
    pub object_ownership: String,
    /// A plain-HTTP listener answering only `/_meridian/health/live` and `.../ready`, for
    /// load balancers that cannot speak TLS to the S3 listener.
    pub health_address: Option<SocketAddr>,
    /// HTTPS on the S3 listener (`[tls]`: `cert` and `key` PEM files).
    pub tls: Option<crate::tls::TlsConfig>,
    /// The audit log (`[audit]`); off when absent.
    pub audit: Option<crate::audit::AuditConfig>,
    /// What one client can hold: connections, header and body time (`[limits]`).
    pub limits: crate::limits::LimitsConfig,
    /// Lifecycle rules (`[lifecycle]`).
    pub lifecycle: LifecycleSettings,
    /// The region's Public Access Block (`[public_access_block]`), in force on every bucket
    /// beside the bucket's own (as an AWS account's is): each setting is on when either
    /// turns it on. All off by default.
    pub public_access_block: crate::s3::public_access::PublicAccessBlock,
    /// Membership of a region of several nodes (`[cluster]`); a single node has none.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Server-side encryption (`[encryption]`).
    pub encryption: EncryptionSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionSettings {
    /// The keyring of SSE-S3 and SSE-KMS keys (mode 0600). When unset,
    /// `data_dir/keyring.toml`, created on first use.
    pub keyring: Option<PathBuf>,
    /// `AES256` or `aws:kms`: every bucket created from now on encrypts by default.
    pub default: Option<String>,
    /// The key SSE-KMS uses when a request names none (created in the keyring on first use).
    pub default_kms_key: Option<String>,
    /// Accept SSE-C over plain HTTP (AWS refuses it): for tests only.
    pub sse_c_over_http: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSettings {
    /// For tests only: a lifecycle "day" this long, with no rounding to midnight UTC (as
    /// RGW's `rgw_lc_debug_interval`), so rules of "1 day" act within seconds.
    #[serde(with = "humantime_serde")]
    pub day: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErasureConfig {
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Disk directories in slot order; empty means `data_dir/disk1..N`.
    pub disks: Vec<PathBuf>,
    pub durability: Durability,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// RocksDB directory; empty means `data_dir/meta`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RootCredentials {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// How ACLs and owners name root: its canonical user id (default: the access key),
    /// display name and e-mail address (for grants by `emailAddress`).
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: "127.0.0.1:9000".parse().expect("static address"),
            region: "us-east-1".into(),
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("./meridian-data"),
            erasure: ErasureConfig::default(),
            metadata: MetadataConfig::default(),
            root: RootCredentials::default(),
            users: Vec::new(),
            inline_threshold: meridian_store::config::DEFAULT_INLINE_THRESHOLD,
            shutdown_grace: Duration::from_secs(30),
            multipart_expiry: Duration::from_secs(7 * 24 * 3600),
            scrub_interval: Duration::from_secs(7 * 24 * 3600),
            orphan_grace: meridian_store::orphans::ORPHAN_GRACE,
            outbox_retention: Duration::from_secs(24 * 3600),
            peers: Vec::new(),
            replication: ReplicationSettings::default(),
            metrics_public: false,
            object_ownership: "BucketOwnerEnforced".into(),
            health_address: None,
            tls: None,
            audit: None,
            limits: crate::limits::LimitsConfig::default(),
            lifecycle: LifecycleSettings::default(),
            encryption: EncryptionSettings::default(),
            public_access_block: Default::default(),
            cluster: None,
        }
    }
}

impl Default for ErasureConfig {
    fn default() -> Self {
        ErasureConfig {
            data_shards: 4,
            parity_shards: 2,
            disks: Vec::new(),
            durability: Durability::Fsync,
        }
    }
}

/// Overrides given on the command line; `None` leaves the configured value alone.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub address: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub erasure: Option<ErasureSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {name}={value:?}: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the file (if any), then the environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.apply_overrides(overrides);
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                value,
                reason: e.to_string(),
            })
        }
        if let Some(v) = var("MERIDIAN_ADDRESS") {
            self.address = parsed("MERIDIAN_ADDRESS", v)?;
        }
        if let Some(v) = var("MERIDIAN_REGION") {
            self.region = v;
        }
        if let Some(v) = var("MERIDIAN_DOMAINS") {
            self.domains = v
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = var("MERIDIAN_DATA") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("MERIDIAN_ERASURE") {
            let spec: ErasureSpec = parsed("MERIDIAN_ERASURE", v)?;
            self.erasure.data_shards = spec.data;
            self.erasure.parity_shards = spec.parity;
        }
        if let Some(v) = var("MERIDIAN_DURABILITY") {
            self.erasure.durability = parsed("MERIDIAN_DURABILITY", v)?;
        }
        if let Some(v) = var("MERIDIAN_INLINE_THRESHOLD") {
            self.inline_threshold = parsed("MERIDIAN_INLINE_THRESHOLD", v)?;
        }
        if let Some(v) = var("MERIDIAN_ROOT_USER") {
            self.root.access_key = Some(v);
        }
        if let Some(v) = var("MERIDIAN_ROOT_PASSWORD") {
            self.root.secret_key = Some(v);
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(a) = o.address {
            self.address = a;
        }
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(spec) = o.erasure {
            self.erasure.data_shards = spec.data;
            self.erasure.parity_shards = spec.parity;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if crate::s3::acl::Ownership::parse(&self.object_ownership).is_none() {
            return Err(ConfigError::Invalid(format!(
                "object_ownership {:?}: BucketOwnerEnforced, BucketOwnerPreferred or ObjectWriter",
                self.object_ownership
            )));
        }
        let (k, m) = (self.erasure.data_shards, self.erasure.parity_shards);
        if k == 0 || k + m > 16 || m > k {
            return Err(ConfigError::Invalid(format!(
                "erasure {k}+{m}: need 1 <= K+M <= 16, K >= 1 and M <= K"
            )));
        }
        if !self.erasure.disks.is_empty() && self.erasure.disks.len() != k + m {
            return Err(ConfigError::Invalid(format!(
                "erasure {k}+{m} needs {} disks, {} configured",
                k + m,
                self.erasure.disks.len()
            )));
        }
        if self.root.access_key.is_some() != self.root.secret_key.is_some() {
            return Err(ConfigError::Invalid(
                "root access key and secret key must be set together".into(),
            ));
        }
        for user in &self.users {
            if user.access_key.is_empty() || user.secret_key.len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "user {:?}: access key must not be empty and the secret at least 8 characters",
                    user.access_key
                )));
            }
        }
        meridian_replicator::config::validate_peers(&self.peers, self.address)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.replication
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.limits.validate().map_err(ConfigError::Invalid)?;
        if let Some(d) = &self.encryption.default {
            if d != "AES256" && d != "aws:kms" {
                return Err(ConfigError::Invalid(format!(
                    "[encryption] default must be \"AES256\" or \"aws:kms\", not {d:?}"
                )));
            }
        }
        if self.lifecycle.day.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Invalid(
                "[lifecycle] day must be longer than zero".into(),
            ));
        }
        Ok(())
    }

    /// What the store opens: the disks (`data_dir/disk1..N` unless listed), the erasure
    /// layout, the metadata path (`data_dir/meta` unless set).
    pub fn store_config(&self) -> StoreConfig {
        let mut store = StoreConfig::in_dir(
            &self.data_dir,
            self.erasure.data_shards,
            self.erasure.parity_shards,
        );
        if !self.erasure.disks.is_empty() {
            store.disks = self.erasure.disks.clone();
        }
        if let Some(path) = &self.metadata.path {
            store.metadata_path = path.clone();
        }
        store.durability = self.erasure.durability;
        store.inline_threshold = self.inline_threshold;
        store.lifecycle_day = self.lifecycle.day;
        store.keyring = Some(meridian_store::encryption::KeyringConfig {
            path: self
                .encryption
                .keyring
                .clone()
                .unwrap_or_else(|| self.data_dir.join("keyring.toml")),
            must_exist: self.encryption.keyring.is_some(),
            default_kms_key: self
                .encryption
                .default_kms_key
                .clone()
                .unwrap_or_else(|| meridian_store::encryption::DEFAULT_KMS_KEY.into()),
        });
        store
    }

    /// Root credentials and whether they are the documented development default.
    pub fn root_credentials(&self) -> (String, String, bool) {
        match (&self.root.access_key, &self.root.secret_key) {
            (Some(a), Some(s)) => (a.clone(), s.clone(), false),
            _ => (DEV_ROOT_USER.into(), DEV_ROOT_PASSWORD.into(), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_single_node_four_plus_two() {
        let c = Config::default();
        assert_eq!(c.address.to_string(), "127.0.0.1:9000");
        let store = c.store_config();
        assert_eq!(store.disks.len(), 6);
        assert_eq!(store.disks[0], PathBuf::from("./meridian-data/disk1"));
        assert_eq!(store.metadata_path, PathBuf::from("./meridian-data/meta"));
        assert!(
            c.root_credentials().2,
            "no root configured means the dev default"
        );
    }

    #[test]
    fn file_then_env_then_flags() {
        let mut c: Config = toml::from_str(
            r#"
            address = "127.0.0.1:9100"
            region = "eu-west-1"
            [erasure]
            data_shards = 2
            parity_shards = 1
            [[users]]
            access_key = "reader"
            secret_key = "reader-secret"
            grants = [{ bucket = "models", access = "read" }]
            "#,
        )
        .unwrap();
        assert_eq!(c.erasure.data_shards, 2);
        assert_eq!(c.users[0].grants[0].access, Access::Read);
        c.apply_env(|name| match name {
            "MERIDIAN_REGION" => Some("ap-south-1".into()),
            "MERIDIAN_ERASURE" => Some("8+4".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.erasure.data_shards, 8);
        c.apply_overrides(&Overrides {
            erasure: Some("1+0".parse().unwrap()),
            ..Overrides::default()
        });
        assert_eq!((c.erasure.data_shards, c.erasure.parity_shards), (1, 0));
        assert_eq!(c.address.port(), 9100);
        c.validate().unwrap();
    }

    #[test]
    fn rejects_impossible_erasure() {
        for spec in ["2+3", "0+0", "12+6"] {
            let mut c = Config::default();
            c.apply_overrides(&Overrides {
                erasure: Some(spec.parse().unwrap()),
                ..Overrides::default()
            });
            assert!(c.validate().is_err(), "{spec} must be refused");
        }
    }

    #[test]
    fn peers_and_replicate_grants_are_read_and_checked() {
        let c: Config = toml::from_str(
            r#"
            address = "127.0.0.1:9000"
            [[users]]
            access_key = "east-to-west"
            secret_key = "replicate-secret"
            grants = [{ bucket = "*", access = "replicate" }]
            [[peers]]
            name = "west"
            endpoint = "http://127.0.0.1:9100"
            region = "eu-west-1"
            access_key = "k"
            secret_key = "s"
            [replication]
            workers = 4
            "#,
        )
        .unwrap();
        assert_eq!(c.users[0].grants[0].access, Access::Replicate);
        assert!(Access::Replicate > Access::ReadWrite);
        assert_eq!(c.peers[0].name, "west");
        assert_eq!(c.replication.workers, 4);
        c.validate().unwrap();

        let mut to_self = c.clone();
        to_self.peers[0].endpoint = "http://127.0.0.1:9000".into();
        let err = to_self.validate().unwrap_err().to_string();
        assert!(err.contains("this node"), "{err}");
        let mut twice = c.clone();
        twice.peers.push(c.peers[0].clone());
        assert!(twice.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn the_shipped_example_configs_are_valid() {
        for (name, text) in [
            ("east", include_str!("../../deploy/examples/east.toml")),
            ("west", include_str!("../../deploy/examples/west.toml")),
        ] {
            let c: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.peers.len(), 1, "{name}");
            assert!(c
                .users
                .iter()
                .any(|u| u.grants.iter().any(|g| g.access == Access::Replicate)));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<Config>("adress = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn durations_read_as_the_command_line_reads_them() {
        let c: Config = toml::from_str(
            r#"
            shutdown_grace = "30s"
            multipart_expiry = "7d"
            scrub_interval = "0s"
            orphan_grace = "1h 30m"
            "#,
        )
        .unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.multipart_expiry, Duration::from_secs(604800));
        assert_eq!(c.scrub_interval, Duration::ZERO);
        assert_eq!(c.orphan_grace, Duration::from_secs(5400));
        assert!(toml::from_str::<Config>("shutdown_grace = \"7 fortnights\"").is_err());
    }
}
