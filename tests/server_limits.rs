//! Limits over real sockets: keep-alive pings and dead peers, `max_connections`, and a `connect`
//! that never answers.

mod common;

use std::time::Duration;

use common::{
    disconnected, handshake_status, notes, recv_text, text, within, Note, Observed, TestServer,
};
use futures_util::StreamExt;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{ChannelLayer, InMemoryChannelLayer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::{close_code, Message};
use switchboard::ServerConfig;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

/// Echoes text; `?connect=hang` never answers the handshake.
#[derive(Default)]
struct Echo;

#[switchboard::async_trait]
impl WebSocketConsumer for Echo {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        if ctx.scope().query_param("connect").as_deref() == Some("hang") {
            std::future::pending::<()>().await;
        }
        ctx.accept().await?;
        Ok(())
    }
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        if let Message::Text(t) = message {
            ctx.send_text(t).await?;
        }
        Ok(())
    }
}

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> (TestServer, mpsc::Receiver<Note>) {
    let (tx, rx) = notes();
    let app = ProtocolTypeRouter::new()
        .websocket(UrlRouter::new().route("/ws/", move || Observed::new(Echo, tx.clone())));
    let mut config = ServerConfig::default();
    configure(&mut config);
    (
        TestServer::start_with(app, InMemoryChannelLayer::new(), config).await,
        rx,
    )
}

fn quick_pings(config: &mut ServerConfig) {
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(300);
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_dropped() {
    let (server, mut notes) = server(quick_pings).await;
    // Connected, then silent: it never reads, so tungstenite never answers the pings.
    let _silent = server.connect("/ws/").await;
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    assert_eq!(server.layer.stats().channels, 0);
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays() {
    let (server, mut notes) = server(quick_pings).await;
    let mut client = server.connect("/ws/").await;
    // Three pings come (each answered by the client as it reads), several pong timeouts pass.
    let mut pings = 0;
    while pings < 3 {
        if let tungstenite::Message::Ping(_) = within(client.next()).await.unwrap().unwrap() {
            pings += 1;
        }
    }
    text(&mut client, "still here?").await;
    assert_eq!(recv_text(&mut client).await, "still here?");
    while let Ok(note) = notes.try_recv() {
        assert!(
            !matches!(note, Note::Disconnected(_)),
            "a live peer was dropped"
        );
    }
}

#[tokio::test]
async fn handshakes_beyond_max_connections_get_503() {
    let (server, _notes) = server(|config| config.max_connections = Some(2)).await;
    let mut a = server.connect("/ws/").await;
    let mut b = server.connect("/ws/").await;
    assert_eq!(server.handshake_status("/ws/").await, 503);
    let stats = server.stats.snapshot();
    assert_eq!(
        (
            stats.connections,
            stats.handshakes,
            stats.refused_max_connections
        ),
        (2, 3, 1)
    );
    for client in [&mut a, &mut b] {
        text(client, "ok").await;
        assert_eq!(recv_text(client).await, "ok");
    }
}

#[tokio::test]
async fn a_connect_that_never_answers_gets_503() {
    let (server, mut notes) =
        server(|config| config.handshake_timeout = Duration::from_millis(200)).await;
    assert_eq!(handshake_status(server.url("/ws/?connect=hang")).await, 503);
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
}
