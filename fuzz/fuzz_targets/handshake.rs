//! The handshake path from arbitrary request heads: a request target and header lines, through
//! the server's own steps (`WebSocketCommunicator` runs the dispatcher: the handshake's checks,
//! the origin check, the per-client cap, scope building, `AuthMiddleware`, URL routing) to a
//! consumer. Never panics; every answer is one of the statuses the server documents; a browser
//! origin other than the request's own host is never let in.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::middleware::{authenticator_fn, AuthMiddleware, TokenSource};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::testing::{HandshakeOutcome, WebSocketCommunicator};
use switchboard::websocket::Message;
use switchboard::ServerConfig;

struct Accepting;

#[switchboard::async_trait]
impl WebSocketConsumer for Accepting {
    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn app() -> ProtocolTypeRouter {
    let users = authenticator_fn(|token: String| async move {
        Ok((token == "good").then_some(String::from("ada")))
    });
    ProtocolTypeRouter::new().websocket(
        AuthMiddleware::new(
            UrlRouter::new()
                .route("/ws/{room}/", || Accepting)
                .route("/files/{*path}", || Accepting),
            users,
        )
        .token_sources([TokenSource::query("token"), TokenSource::cookie("session")]),
    )
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split("\r\n");
    let target = lines.next().unwrap_or("/");
    if target.parse::<http::Uri>().is_err() || !target.starts_with('/') {
        return; // hyper answers 400 before any of ours
    }
    let mut config = ServerConfig::default();
    config.max_connections_per_client = Some(1);
    let mut communicator = WebSocketCommunicator::new(app(), target).config(config);
    let mut origin = None;
    let mut host = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        if name == http::header::ORIGIN {
            origin = Some(value.to_str().unwrap_or("").to_ascii_lowercase());
        }
        if name == http::header::HOST && host.is_none() {
            host = Some(value.to_str().unwrap_or("").to_ascii_lowercase());
        }
        communicator = communicator.header(name, value);
    }
    let outcome = runtime().block_on(communicator.connect()).unwrap();
    match outcome {
        HandshakeOutcome::Accepted { .. } => {
            if let Some(origin) = origin {
                // The request's own origin: `http://` and its Host, the default port aside.
                let host = host.unwrap_or_else(|| "127.0.0.1:8000".to_owned());
                let origin = origin.strip_suffix(":80").unwrap_or(&origin);
                let host = host.strip_suffix(":80").unwrap_or(&host);
                assert_eq!(origin, format!("http://{host}"), "another origin let in");
            }
            runtime().block_on(communicator.disconnect(1000)).unwrap();
        }
        HandshakeOutcome::Rejected(status) => {
            assert!(
                matches!(status.as_u16(), 400 | 401 | 403 | 404 | 426 | 503),
                "{status}"
            );
        }
        #[allow(unreachable_patterns)]
        other => panic!("{other:?}"),
    }
});
