//! A client that stops reading: it costs bounded memory, does not slow its room, and is either
//! kept (its messages dropped and counted) or disconnected with 1013, as configured.

mod common;

use std::time::Duration;

use common::{disconnected, notes, recv_json, within, Note, Observed, TestServer};
use switchboard::consumer::{Context, JsonWebSocketConsumer};
use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::close_code;
use switchboard::{ServerConfig, SlowClientPolicy};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Joins "room" and forwards its "big" events.
#[derive(Default)]
struct Member;

#[switchboard::async_trait]
impl JsonWebSocketConsumer for Member {
    type Incoming = serde::de::IgnoredAny;
    type Event = serde::de::IgnoredAny;
    const FORWARDED_EVENTS: &'static [&'static str] = &["big"];

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("room").await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(
        &mut self,
        _: &mut Context,
        _: Self::Incoming,
    ) -> switchboard::Result<()> {
        Ok(())
    }
}

async fn server(policy: SlowClientPolicy) -> (TestServer, mpsc::Receiver<Note>) {
    let (tx, rx) = notes();
    let app = ProtocolTypeRouter::new()
        .websocket(UrlRouter::new().route("/ws/", move || Observed::new(Member, tx.clone())));
    let mut config = ServerConfig::default();
    config.slow_client = policy;
    (
        TestServer::start_with(app, InMemoryChannelLayer::new(), config).await,
        rx,
    )
}

/// A client that completes the handshake with a 4 KiB receive buffer and then never reads.
async fn stalled(server: &TestServer) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let request = server.url("/ws/").into_client_request().unwrap();
    let (ws, _) = within(tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap();
    ws
}

/// Broadcasts 400 events of 32 KiB (12.8 MB), each once the active client has the one before.
async fn broadcast(server: &TestServer, active: &mut common::Client) {
    let pad = "x".repeat(32 << 10);
    for n in 0..400 {
        let event = Event::new(&serde_json::json!({ "type": "big", "n": n, "pad": pad })).unwrap();
        server.layer.group_send("room", event).await.unwrap();
        assert_eq!(
            recv_json(active).await["n"],
            n,
            "the active client gets every message, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_disconnected_with_1013_and_the_room_goes_on() {
    let (server, mut notes) = server(SlowClientPolicy::Disconnect {
        after: Duration::from_millis(300),
    })
    .await;
    let _stalled = stalled(&server).await;
    let mut active = server.connect("/ws/").await;
    broadcast(&server, &mut active).await;
    assert_eq!(disconnected(&mut notes).await, close_code::TRY_AGAIN_LATER);
    assert_eq!(
        server.layer.stats().channels,
        1,
        "only the active client is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_drop_messages_a_stalled_client_stays_and_its_losses_are_counted() {
    let (server, _notes) = server(SlowClientPolicy::DropMessages).await;
    let _stalled = stalled(&server).await;
    let mut active = server.connect("/ws/").await;
    broadcast(&server, &mut active).await;
    let stats = server.layer.stats();
    assert_eq!(stats.channels, 2, "both connections are still open");
    assert!(
        stats.dropped_full > 0,
        "the stalled client's channel filled up: {stats:?}"
    );
}
