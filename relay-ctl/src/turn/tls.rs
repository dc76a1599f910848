//! TLS for TURN clients (`--turn-tls-port`, RFC 8656 section 3.1): rustls with the ring
//! provider, the certificate chain and key from PEM files read at start.
use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TURN TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the TURN TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    // The key's own errors can quote PEM content: only the path is reported.
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| anyhow::anyhow!("cannot read a private key from {}", key.display()))?;
    // ring rather than aws-lc-rs (no cmake/C toolchain dependency in the build); rustls
    // deprecates ring's provider only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TURN TLS certificate and key do not go together")?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
