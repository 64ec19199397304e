//! Certificates for HTTPS tests: a private CA made in the test (rcgen), server certificates
//! it issues for `localhost` and 127.0.0.1, and S3 clients that trust only that CA.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate and key written as PEM files.
#[derive(Clone, Debug)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServerCert {
    /// The `[tls]` table naming these files.
    pub fn config(&self) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// A private certificate authority in a temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    issued: std::cell::Cell<u32>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Meridian test CA {name}"));
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::Builder::new()
            .prefix("meridian-ca-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("writing the CA");
        TestCa {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            dir,
            issued: std::cell::Cell::new(0),
        }
    }

    /// The CA certificate (what clients and peers trust), as a PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A new server certificate for `localhost` and 127.0.0.1 with a fresh key, written to
    /// new files.
    pub fn issue(&self) -> ServerCert {
        let n = self.issued.get() + 1;
        self.issued.set(n);
        self.issue_to(
            &self.dir.path().join(format!("server{n}.crt")),
            &self.dir.path().join(format!("server{n}.key")),
        )
    }

    /// A new server certificate written over `cert` and `key` (a renewal in place).
    pub fn issue_to(&self, cert: &Path, key: &Path) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "meridian test server");
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = params
            .signed_by(&server_key, &self.issuer)
            .expect("signing the server certificate");
        // The chain: the server certificate, then the CA (as a server with an intermediate
        // would send it).
        std::fs::write(cert, format!("{}{}", server_cert.pem(), self.ca_pem))
            .expect("writing the certificate");
        std::fs::write(key, server_key.serialize_pem()).expect("writing the key");
        ServerCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }
}

/// A path-style aws-sdk-s3 client for an `https://` endpoint that trusts only `ca_pem`
/// (no retries, so tests see every error). It uses the SDK's default checksums: CRC32
/// trailers on uploads.
pub fn https_client(endpoint: &str, ca_pem: &str, access_key: &str, secret_key: &str) -> Client {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::empty().with_pem_certificate(ca_pem.as_bytes().to_vec());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("TLS context"),
        )
        .build_https();
    let config = crate::client_config(endpoint, access_key, secret_key).http_client(http);
    Client::from_conf(config.build())
}

/// A rustls client configuration trusting only `ca_pem`, offering `alpn`.
pub fn rustls_client(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
