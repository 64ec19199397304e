//! `meridian tls-certs`: a private CA and a server certificate it signed, written as PEM
//! files for trying HTTPS between local regions (`deploy/local-regions.sh --tls`).

use std::path::{Path, PathBuf};

/// `meridian tls-certs`: a private CA and a server certificate it signed, for trying HTTPS
/// between local regions. Not for production: the CA's key is not kept, so nothing else can
/// be signed with it, and the certificate names only the hosts given.
#[derive(clap::Args, Debug, Clone)]
pub struct CertsArgs {
    /// Directory to write ca.pem, cert.pem (the certificate, then the CA) and key.pem into.
    #[arg(long)]
    pub dir: PathBuf,
    /// Names and addresses the certificate is for.
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub hosts: Vec<String>,
}

/// Writes the files of [`CertsArgs`]; refuses to overwrite an existing pair.
pub fn write_local_certs(args: &CertsArgs) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(&args.dir)?;
    let [ca_file, cert_file, key_file] =
        ["ca.pem", "cert.pem", "key.pem"].map(|f| args.dir.join(f));
    if cert_file.exists() || key_file.exists() {
        anyhow::bail!("{} already holds cert.pem or key.pem", args.dir.display());
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Meridian local CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(args.hosts.clone())?;
    params.distinguished_name.push(
        DnType::CommonName,
        args.hosts.first().map_or("meridian", String::as_str),
    );
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(&ca_file, ca_cert.pem())?;
    std::fs::write(&cert_file, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    write_private(&key_file, key.serialize_pem().as_bytes())?;
    println!(
        "wrote {} (trust this), {} and {} (for [tls]) for {}",
        ca_file.display(),
        cert_file.display(),
        key_file.display(),
        args.hosts.join(", ")
    );
    Ok(())
}

/// A file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    #[test]
    fn local_certs_chain_to_their_ca_and_the_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertsArgs {
            dir: dir.path().join("tls"),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        };
        write_local_certs(&args).unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(args.dir.join("cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain.len(), 2, "certificate and CA");
        let ca: Vec<_> = CertificateDer::pem_file_iter(args.dir.join("ca.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            chain[1], ca[0],
            "the chain ends with the CA written beside it"
        );
        PrivateKeyDer::from_pem_file(args.dir.join("key.pem")).unwrap();
        crate::tls::client_config(Some(&args.dir.join("ca.pem"))).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(args.dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Never over an existing pair.
        assert!(write_local_certs(&args).is_err());
    }
}
