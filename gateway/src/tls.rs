//! HTTPS for the S3 listener: rustls (aws-lc-rs), TLS 1.2 and 1.3 only, ALPN h2 and
//! http/1.1. The certificate chain and key are read from PEM files (RSA, ECDSA or Ed25519
//! keys) and can be read again while serving ([`Certificates::reload`], on SIGHUP): new
//! handshakes get the new certificate, open connections keep theirs, and a new pair that
//! does not load is refused with the old one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

/// The `[tls]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// The certificate handshakes are answered with, replaceable while serving.
#[derive(Debug)]
pub struct Certificates {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Reads the configured pair; an error names the file and what is wrong with it.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<Certificates>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = read_pair(config, &provider)?;
        Ok(Arc::new(Certificates {
            config: config.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again. On success new handshakes use them; on failure the current
    /// certificate stays and the error is returned (and should be logged).
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = read_pair(&self.config, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The rustls server configuration answering with these certificates.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_pair(config: &TlsConfig, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = read_chain(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| {
        anyhow::anyhow!(
            "TLS key {}: no usable private key ({e})",
            config.key.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        anyhow::anyhow!(
            "TLS key {} does not go with certificate {}: {e}",
            config.key.display(),
            config.cert.display()
        )
    })
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: {e}", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "TLS certificate {}: no CERTIFICATE in the file",
            path.display()
        );
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, key: &rcgen::KeyPair) -> TlsConfig {
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = params.self_signed(key).unwrap();
        let config = TlsConfig {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&config.cert, cert.pem()).unwrap();
        std::fs::write(&config.key, key.serialize_pem()).unwrap();
        config
    }

    fn served(certs: &Certificates) -> Vec<u8> {
        certs
            .current
            .read()
            .unwrap()
            .end_entity_cert()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn rsa_ecdsa_and_ed25519_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        for (name, alg) in [
            ("rsa", &rcgen::PKCS_RSA_SHA256),
            ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("p384", &rcgen::PKCS_ECDSA_P384_SHA384),
            ("ed25519", &rcgen::PKCS_ED25519),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let config = write_pair(dir.path(), name, &key);
            let certs = Certificates::load(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
            certs.server_config().unwrap();
        }
    }

    #[test]
    fn a_bad_new_pair_is_refused_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), "a", &rcgen::KeyPair::generate().unwrap());
        let certs = Certificates::load(&first).unwrap();
        let before = served(&certs);

        // A key that belongs to another certificate.
        let other = write_pair(dir.path(), "b", &rcgen::KeyPair::generate().unwrap());
        std::fs::copy(&other.key, &first.key).unwrap();
        let err = certs.reload().unwrap_err().to_string();
        assert!(err.contains("does not go with"), "{err}");
        assert_eq!(served(&certs), before);

        // A truncated certificate file.
        std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        assert!(certs.reload().is_err());
        assert_eq!(served(&certs), before);

        // A good renewed pair is taken.
        let renewed = write_pair(dir.path(), "a", &rcgen::KeyPair::generate().unwrap());
        assert_eq!(renewed.cert, first.cert);
        certs.reload().unwrap();
        assert_ne!(served(&certs), before);
    }

    #[test]
    fn missing_files_are_named() {
        let config = TlsConfig {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = Certificates::load(&config).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
