//! A certificate made in the test (rcgen) and a rustls client that trusts only it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_rustls::rustls;

pub struct Certificate {
    pub pem: String,
    pub key_pem: String,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

/// A self-signed certificate for `localhost`.
pub fn certificate() -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Certificate {
        pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// A client configuration trusting only `trusted`, offering `alpn` (none: no ALPN).
pub fn client_config(trusted: &Certificate, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS to `addr` as `localhost`, trusting only `trusted`, offering `alpn`; panics if the
/// server chose another protocol than `alpn`'s first.
pub async fn connect(
    addr: SocketAddr,
    trusted: &Certificate,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(trusted, alpn))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), alpn.first().copied());
    tls
}
