//! The peers a node replicates to (`[[peers]]`) and how it does so (`[replication]`), as
//! written in the server's TOML file, with the checks done at start-up: a peer list that
//! would misroute data (duplicate names, bad endpoints, a peer that is this node) is refused
//! before anything is sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// S3's bounds on a part, which the split of large single-part objects must respect.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// What kind of server a peer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    /// Another Meridian region: replicas keep their version id, mtime and ETag.
    #[default]
    Meridian,
    /// Any other S3 server (AWS, MinIO, Garage): plain S3 calls; it mints its own version ids.
    S3,
}

/// One `[[peers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// `[a-z0-9-]{1,32}`, unique; rules name it in `arn:meridian:replication:<name>::<bucket>`.
    pub name: String,
    /// `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// The peer's signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// A user on the peer with the `replicate` grant (or its root).
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub kind: PeerKind,
    /// Cap on the bytes per second sent to this peer, shared by its transfers
    /// (`"50MB/s"`, `"1GiB/s"`); unlimited when absent.
    #[serde(default, deserialize_with = "rate::deserialize")]
    pub bandwidth: Option<u64>,
    /// `sync`: a write returns only once this peer has it (or `sync_timeout` passed).
    #[serde(default)]
    pub mode: PeerMode,
    #[serde(default = "default_sync_timeout", with = "humantime_serde")]
    pub sync_timeout: Duration,
    /// Serve GET/HEAD of versions not present here from this peer (active-active).
    #[serde(default = "default_true")]
    pub proxy_reads: bool,
    /// Compress bodies on the wire when that saves bytes (Meridian peers only).
    #[serde(default)]
    pub compression: Compression,
    /// PEM file of the CA (or CAs) an `https://` peer's certificate must chain to, instead
    /// of the system roots (a private CA between regions).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Do not verify an `https://` peer's certificate (a lab, a migration). Logged as a
    /// warning at every start; never a default.
    #[serde(default)]
    pub tls_insecure: bool,
    /// Headers set on every request to this peer, computed when it is sent (the nodes of a
    /// region name their layout's version on the copies they send each other).
    #[serde(skip)]
    pub stamp: Option<Stamp>,
    /// Every change of every bucket goes, to the same bucket and key, removals of single
    /// versions included, whatever the rules say: the copies between the nodes of a region.
    #[serde(skip)]
    pub mirror: bool,
    /// For a `mirror` peer: whether this node leads the partition of (bucket, key) as far as
    /// it knows. A copy the peer refuses (it does not take this node for the primary) is
    /// tried again while this node leads, and dropped once it does not.
    #[serde(skip)]
    pub leads: Option<Leads>,
    /// For a `mirror` peer: the bodies it already holds, streamed to it while they arrived
    /// here. A copy names such a body instead of carrying it, and carries it when the peer
    /// answers that it no longer holds it.
    #[serde(skip)]
    pub staged: Option<StagedBody>,
}

/// Headers computed for each request to a peer.
#[derive(Clone)]
pub struct Stamp(pub std::sync::Arc<dyn Fn() -> Vec<(&'static str, String)> + Send + Sync>);

/// See [`PeerConfig::leads`]: asked with a bucket and a key.
#[derive(Clone)]
pub struct Leads(pub std::sync::Arc<LeadsFn>);

pub type LeadsFn = dyn Fn(&str, &str) -> bool + Send + Sync;

/// See [`PeerConfig::staged`].
#[derive(Clone)]
pub struct StagedBody(pub std::sync::Arc<dyn StagedBodies>);

/// The bodies a `mirror` peer holds staged, by the version and segment they are of.
pub trait StagedBodies: Send + Sync {
    /// The name under which the peer holds the body of segment `index` of `record` (0 for a
    /// single PUT, the part's index for a multipart object), if it does.
    fn name(&self, record: &meridian_metadata::VersionRecord, index: usize) -> Option<String>;
    /// The peer took that body, or does not hold it: its name is not given again.
    fn forget(&self, record: &meridian_metadata::VersionRecord, index: usize);
}

impl std::fmt::Debug for StagedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StagedBody")
    }
}

impl std::fmt::Debug for Leads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Leads")
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stamp")
    }
}

/// Compression of bodies sent to a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

/// When a write to a bucket replicated to this peer is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerMode {
    /// After the local commit; the peer gets it in the background.
    #[default]
    Async,
    /// After the peer has it, verified — or after `sync_timeout`, then in the background.
    Sync,
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_true() -> bool {
    true
}

impl PeerConfig {
    /// A peer with every optional setting at its default.
    pub fn new(name: &str, endpoint: &str, access_key: &str, secret_key: &str) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            endpoint: endpoint.into(),
            region: default_region(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            kind: PeerKind::Meridian,
            bandwidth: None,
            mode: PeerMode::Async,
            sync_timeout: default_sync_timeout(),
            proxy_reads: true,
            compression: Compression::None,
            ca_file: None,
            tls_insecure: false,
            stamp: None,
            mirror: false,
            leads: None,
            staged: None,
        }
    }

    /// The CA certificates in `ca_file`, PEM, checked to hold at least one certificate.
    pub fn read_ca_file(&self) -> Result<Option<Vec<u8>>, PeerConfigError> {
        use rustls::pki_types::pem::PemObject;
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            invalid(format!(
                "peer {:?}: ca_file {}: {e}",
                self.name,
                path.display()
            ))
        })?;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                invalid(format!(
                    "peer {:?}: ca_file {}: {e}",
                    self.name,
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "peer {:?}: ca_file {} holds no CERTIFICATE",
                self.name,
                path.display()
            )));
        }
        Ok(Some(pem))
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Rates written as a size per second: `"50MB/s"`, `"100 MiB/s"`.
pub mod rate {
    use serde::{Deserialize, Deserializer};

    pub fn parse(text: &str) -> Result<u64, String> {
        let size = text.trim().strip_suffix("/s").ok_or_else(|| {
            format!("bad rate {text:?}: write it as a size per second, like 50MB/s")
        })?;
        let bytes = size
            .trim()
            .parse::<bytesize::ByteSize>()
            .map_err(|e| format!("bad rate {text:?}: {e}"))?
            .as_u64();
        if bytes == 0 {
            return Err(format!("bad rate {text:?}: must be above zero"));
        }
        Ok(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

/// The `[replication]` table; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    /// Versions in transfer at once, per peer.
    pub workers: usize,
    /// Part size used to split large single-part objects (5 MiB..5 GiB).
    pub part_size: ByteSize,
    /// Cap of the retry backoff (exponential, with jitter).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            workers: 16,
            part_size: ByteSize::mib(16),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// A peer list or setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeerConfigError(pub String);

fn invalid(message: impl Into<String>) -> PeerConfigError {
    PeerConfigError(message.into())
}

impl ReplicationSettings {
    pub fn validate(&self) -> Result<(), PeerConfigError> {
        if self.workers == 0 || self.workers > 1024 {
            return Err(invalid("replication.workers must be between 1 and 1024"));
        }
        let part = self.part_size.as_u64();
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part) {
            return Err(invalid(format!(
                "replication.part_size {} is outside S3's part sizes (5 MiB to 5 GiB)",
                self.part_size
            )));
        }
        if self.max_backoff.is_zero() {
            return Err(invalid("replication.max_backoff must be above zero"));
        }
        Ok(())
    }
}

/// A peer endpoint, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = text.parse().map_err(|e| format!("{e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("the scheme must be http:// or https://".into()),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("it names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err("it must not have a path (buckets are addressed path-style)".into());
        }
        if uri.query().is_some() {
            return Err("it must not have a query".into());
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint { https, host, port })
    }

    /// Whether this endpoint reaches the server listening on `listen` (same port, and a host
    /// that is that address, a loopback address or `localhost` when listening locally or on
    /// every interface).
    pub fn is_local(&self, listen: SocketAddr) -> bool {
        if self.port != listen.port() {
            return false;
        }
        let ip = if self.host.eq_ignore_ascii_case("localhost") {
            Some(IpAddr::from([127, 0, 0, 1]))
        } else {
            self.host.parse::<IpAddr>().ok()
        };
        match ip {
            Some(ip) => {
                ip == listen.ip()
                    || (listen.ip().is_unspecified() || listen.ip().is_loopback())
                        && ip.is_loopback()
                    || listen.ip().is_unspecified() && ip.is_unspecified()
            }
            None => false,
        }
    }
}

/// Checks a node's peer list: names, endpoints, credentials, no duplicates and no peer that is
/// the node itself (listening on `listen`).
pub fn validate_peers(peers: &[PeerConfig], listen: SocketAddr) -> Result<(), PeerConfigError> {
    let mut names = std::collections::HashSet::new();
    for p in peers {
        let name_ok = (1..=32).contains(&p.name.len())
            && p.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(invalid(format!(
                "peer name {:?} must be 1 to 32 characters of a-z, 0-9 and -",
                p.name
            )));
        }
        if !names.insert(p.name.as_str()) {
            return Err(invalid(format!("peer name {:?} is used twice", p.name)));
        }
        let endpoint = Endpoint::parse(&p.endpoint).map_err(|reason| {
            invalid(format!(
                "peer {:?}: endpoint {:?} is not usable: {reason}",
                p.name, p.endpoint
            ))
        })?;
        if endpoint.is_local(listen) {
            return Err(invalid(format!(
                "peer {:?}: endpoint {} is this node ({listen}); a node cannot replicate to itself",
                p.name, p.endpoint
            )));
        }
        if p.access_key.is_empty() || p.secret_key.is_empty() {
            return Err(invalid(format!(
                "peer {:?}: access_key and secret_key are required",
                p.name
            )));
        }
        if p.region.is_empty() {
            return Err(invalid(format!(
                "peer {:?}: region must not be empty",
                p.name
            )));
        }
        if p.compression != Compression::None && p.kind != PeerKind::Meridian {
            return Err(invalid(format!(
                "peer {:?}: compression needs a Meridian peer (another S3 would store the compressed bytes)",
                p.name
            )));
        }
        if p.ca_file.is_some() && !p.endpoint.starts_with("https://") {
            return Err(invalid(format!(
                "peer {:?}: ca_file is for https:// endpoints, and {} is not one",
                p.name, p.endpoint
            )));
        }
        if p.tls_insecure && !p.endpoint.starts_with("https://") {
            return Err(invalid(format!(
                "peer {:?}: tls_insecure is for https:// endpoints, and {} is not one",
                p.name, p.endpoint
            )));
        }
        if p.tls_insecure && p.ca_file.is_some() {
            return Err(invalid(format!(
                "peer {:?}: tls_insecure and ca_file contradict each other; keep one",
                p.name
            )));
        }
        p.read_ca_file()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, endpoint: &str) -> PeerConfig {
        PeerConfig::new(name, endpoint, "k", "s")
    }

    fn listen() -> SocketAddr {
        "127.0.0.1:9000".parse().unwrap()
    }

    #[test]
    fn a_ca_file_must_hold_certificates_and_go_with_https() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = peer("west", "https://west.example:9000");
        p.ca_file = Some(dir.path().join("missing.pem"));
        let err = validate_peers(std::slice::from_ref(&p), listen()).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        p.ca_file = Some(empty);
        let err = validate_peers(std::slice::from_ref(&p), listen()).unwrap_err();
        assert!(err.to_string().contains("holds no CERTIFICATE"), "{err}");

        let mut plain = peer("west", "http://west.example:9000");
        plain.ca_file = Some(dir.path().join("missing.pem"));
        let err = validate_peers(&[plain], listen()).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn tls_insecure_is_for_https_and_not_with_a_ca_file() {
        let mut p = peer("west", "https://west.example:9000");
        p.tls_insecure = true;
        validate_peers(std::slice::from_ref(&p), listen()).unwrap();
        p.ca_file = Some("/etc/ca.pem".into());
        let err = validate_peers(std::slice::from_ref(&p), listen()).unwrap_err();
        assert!(err.to_string().contains("contradict"), "{err}");
        let mut plain = peer("west", "http://west.example:9000");
        plain.tls_insecure = true;
        let err = validate_peers(&[plain], listen()).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn a_peer_list_from_toml_with_defaults() {
        #[derive(Deserialize)]
        struct File {
            peers: Vec<PeerConfig>,
            #[serde(default)]
            replication: ReplicationSettings,
        }
        let f: File = toml::from_str(
            r#"
            [[peers]]
            name = "west"
            endpoint = "http://127.0.0.1:9100"
            access_key = "east-to-west"
            secret_key = "secret"
            [[peers]]
            name = "aws"
            endpoint = "https://s3.eu-west-1.amazonaws.com"
            region = "eu-west-1"
            access_key = "AKIA"
            secret_key = "secret"
            kind = "s3"
            bandwidth = "50MB/s"
            mode = "sync"
            sync_timeout = "3s"
            proxy_reads = false
            [replication]
            part_size = "32MiB"
            max_backoff = "2s"
            "#,
        )
        .unwrap();
        assert_eq!(f.peers[0].kind, PeerKind::Meridian);
        assert_eq!(f.peers[0].region, "us-east-1");
        assert_eq!(f.peers[1].kind, PeerKind::S3);
        assert_eq!(f.peers[1].bandwidth, Some(50_000_000));
        assert_eq!(f.peers[0].bandwidth, None);
        assert_eq!(
            (f.peers[0].mode, f.peers[0].sync_timeout),
            (PeerMode::Async, Duration::from_secs(10))
        );
        assert_eq!(
            (f.peers[1].mode, f.peers[1].sync_timeout),
            (PeerMode::Sync, Duration::from_secs(3))
        );
        assert!(f.peers[0].proxy_reads && !f.peers[1].proxy_reads);
        assert_eq!(f.replication.part_size.as_u64(), 32 << 20);
        assert_eq!(f.replication.max_backoff, Duration::from_secs(2));
        assert_eq!(f.replication.workers, 16);
        validate_peers(&f.peers, listen()).unwrap();
        f.replication.validate().unwrap();
    }

    #[test]
    fn bad_peer_lists_are_refused_with_the_reason() {
        let cases = [
            (vec![peer("West", "http://127.0.0.1:9100")], "a-z"),
            (vec![peer("", "http://127.0.0.1:9100")], "1 to 32"),
            (
                vec![
                    peer("w", "http://127.0.0.1:9100"),
                    peer("w", "http://127.0.0.1:9200"),
                ],
                "used twice",
            ),
            (vec![peer("w", "ftp://host:1")], "scheme"),
            (vec![peer("w", "127.0.0.1:9100")], "not usable"),
            (vec![peer("w", "http://host:1/bucket")], "path"),
            (vec![peer("w", "http://127.0.0.1:9000")], "this node"),
            (vec![peer("w", "http://localhost:9000")], "this node"),
            (
                vec![PeerConfig {
                    kind: PeerKind::S3,
                    compression: Compression::Zstd,
                    ..peer("w", "http://127.0.0.1:9100")
                }],
                "compression needs a Meridian peer",
            ),
        ];
        for (peers, expected) in cases {
            let err = validate_peers(&peers, listen()).unwrap_err();
            assert!(
                err.0.contains(expected),
                "{err} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn only_the_own_address_counts_as_this_node() {
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        let e = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        assert!(e.is_local(any) && e.is_local(listen()));
        assert!(!Endpoint::parse("http://127.0.0.1:9001")
            .unwrap()
            .is_local(listen()));
        assert!(!Endpoint::parse("http://10.1.2.3:9000")
            .unwrap()
            .is_local(listen()));
        assert!(!Endpoint::parse("http://peer.example:9000")
            .unwrap()
            .is_local(any));
        assert_eq!(Endpoint::parse("https://h").unwrap().port, 443);
    }

    #[test]
    fn rates_are_sizes_per_second() {
        assert_eq!(rate::parse("50MB/s").unwrap(), 50_000_000);
        assert_eq!(rate::parse("1 MiB/s").unwrap(), 1 << 20);
        assert!(rate::parse("50MB").is_err());
        assert!(rate::parse("0MB/s").is_err());
    }

    #[test]
    fn settings_stay_within_s3_part_limits() {
        let mut s = ReplicationSettings::default();
        s.validate().unwrap();
        s.part_size = ByteSize::mib(4);
        assert!(s.validate().is_err());
        s.part_size = ByteSize::mib(16);
        s.workers = 0;
        assert!(s.validate().is_err());
    }
}
