//! `wss://` served directly (feature `tls`): a certificate made in the test (rcgen), a real TLS
//! client (rustls) that trusts only it, and the WebSocket over it.

mod common;

use std::sync::Arc;

use common::tls::{certificate, Certificate};
use common::within;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use switchboard::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// Says its scheme, then echoes.
struct Echo;

#[switchboard::async_trait]
impl WebSocketConsumer for Echo {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.accept().await?;
        let scheme = ctx.scope().scheme;
        ctx.send_json(&json!({ "scheme": scheme })).await?;
        Ok(())
    }

    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        if let Message::Text(text) = message {
            ctx.send_text(text).await?;
        }
        Ok(())
    }
}

type TlsClient =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn recv_json(client: &mut TlsClient) -> serde_json::Value {
    match within(client.next()).await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
            serde_json::from_str(&text).unwrap()
        }
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn send_json(client: &mut TlsClient, value: &serde_json::Value) {
    client
        .send(tokio_tungstenite::tungstenite::Message::text(
            value.to_string(),
        ))
        .await
        .unwrap();
}

async fn tls_server(tls: TlsConfig) -> std::net::SocketAddr {
    let app = ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/", || Echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(
        switchboard::serve(listener, app).tls(tls),
    ));
    addr
}

fn client_config(trusted: &Certificate) -> Arc<rustls::ClientConfig> {
    common::tls::client_config(trusted, &[])
}

#[tokio::test]
async fn wss_with_a_certificate_from_pem_files() {
    let cert = certificate();
    let dir = std::env::temp_dir().join(format!("switchboard-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let tls = TlsConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let addr = tls_server(tls).await;

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&cert));
    let stream = within(connector.connect("localhost".try_into().unwrap(), tcp))
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws/", addr.port());
    let (mut client, response) = within(tokio_tungstenite::client_async(url, stream))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(recv_json(&mut client).await["scheme"], "wss");
    send_json(&mut client, &json!({ "over": "tls" })).await;
    assert_eq!(recv_json(&mut client).await["over"], "tls");
    client.close(None).await.unwrap();
}

#[tokio::test]
async fn plain_text_and_untrusting_clients_are_refused_and_the_server_goes_on() {
    let cert = certificate();
    let addr =
        tls_server(TlsConfig::from_pem(cert.pem.as_bytes(), cert.key_pem.as_bytes()).unwrap())
            .await;
    // Plain HTTP on the TLS port: the handshake fails, the connection is closed.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /ws/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = within(plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/1.1 101"));
    // A client that trusts another certificate gives up on this one.
    let other = certificate();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&other));
    assert!(
        within(connector.connect("localhost".try_into().unwrap(), tcp))
            .await
            .is_err()
    );
    // A good client still gets through.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&cert));
    let stream = within(connector.connect("localhost".try_into().unwrap(), tcp))
        .await
        .unwrap();
    let (mut client, _) = within(tokio_tungstenite::client_async(
        format!("wss://localhost:{}/ws/", addr.port()),
        stream,
    ))
    .await
    .unwrap();
    assert_eq!(recv_json(&mut client).await["scheme"], "wss");
}

#[test]
fn bad_pem_is_a_typed_error() {
    let cert = certificate();
    assert!(matches!(
        TlsConfig::from_pem(b"", cert.key_pem.as_bytes()),
        Err(switchboard::TlsError::NoCertificate)
    ));
    assert!(matches!(
        TlsConfig::from_pem(cert.pem.as_bytes(), b"not a key"),
        Err(switchboard::TlsError::Pem {
            what: "private key",
            ..
        })
    ));
    let other = certificate();
    assert!(matches!(
        TlsConfig::from_pem(cert.pem.as_bytes(), other.key_pem.as_bytes()),
        Err(switchboard::TlsError::Rustls(_))
    ));
    assert!(TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").is_err());
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_tls_handshake_that_never_started() {
    // Both timeouts far above the test's 10 s wait: only dropping the silent handshake at once
    // lets `serve` return in time.
    let cert = certificate();
    let tls = TlsConfig::from_pem(cert.pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    let mut config = switchboard::ServerConfig::default();
    config.header_read_timeout = std::time::Duration::from_secs(60);
    config.shutdown_timeout = std::time::Duration::from_secs(60);
    let app = ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/", || Echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        switchboard::serve(listener, app)
            .tls(tls)
            .config(config)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            }),
    );
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server has taken the silent connection once it has finished a handshake after it.
    let connector = tokio_rustls::TlsConnector::from(client_config(&cert));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    drop(within(connector.connect(name, tcp)).await.unwrap());
    stop.send(()).unwrap();
    within(server).await.unwrap().unwrap();
    let mut buffer = [0u8; 16];
    assert!(matches!(
        within(silent.read(&mut buffer)).await,
        Ok(0) | Err(_)
    ));
}
