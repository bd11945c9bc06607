//! TLS served directly (feature `tls`): `wss://` and `https://` on the same port, on rustls.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// Why a [`TlsConfig`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chain or the key could not be read or parsed as PEM.
    #[error("reading {what} PEM: {source}")]
    Pem {
        /// `"certificate"` or `"private key"`.
        what: &'static str,
        /// What went wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The PEM held no certificate.
    #[error("no certificate in the certificate PEM")]
    NoCertificate,
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server certificate chain and its key, for [`Serve::tls`](crate::Serve::tls). ALPN offers
/// `h2` then `http/1.1` (only `http/1.1` when [`ServerConfig::http2`](crate::ServerConfig::http2)
/// is `None`), TLS 1.2 and 1.3 with rustls' safe defaults, the `ring` provider.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn run(app: switchboard::routing::ProtocolTypeRouter) -> Result<(), Box<dyn std::error::Error>> {
/// let tls = switchboard::TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// switchboard::serve(listener, app).tls(tls).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.0.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1 or SEC1)
    /// from PEM files.
    ///
    /// # Errors
    ///
    /// [`TlsError::Pem`] if a file cannot be read or parsed, [`TlsError::NoCertificate`],
    /// [`TlsError::Rustls`] if the key does not fit the certificate.
    pub fn from_pem_files(
        certificate_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(certificate_chain)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Pem {
                what: "certificate",
                source,
            })?;
        let key = PrivateKeyDer::from_pem_file(private_key).map_err(|source| TlsError::Pem {
            what: "private key",
            source,
        })?;
        Self::from_der(chain, key)
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text in memory.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(certificate_chain: &[u8], private_key: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(certificate_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "certificate",
                source,
            })?;
        let key = PrivateKeyDer::from_pem_slice(private_key).map_err(|source| TlsError::Pem {
            what: "private key",
            source,
        })?;
        Self::from_der(chain, key)
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }

    /// The acceptor for a server that speaks HTTP/2 too (offered first by ALPN, as browsers
    /// prefer it) or only HTTP/1.1.
    pub(crate) fn acceptor(&self, http2: bool) -> tokio_rustls::TlsAcceptor {
        if !http2 {
            return tokio_rustls::TlsAcceptor::from(self.0.clone());
        }
        let mut config = (*self.0).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
