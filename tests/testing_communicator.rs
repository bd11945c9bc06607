//! `WebSocketCommunicator`: the chat consumer and a scripted one, driven in process, no sockets.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat/main.rs"]
mod chat;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{ChannelLayer, InMemoryChannelLayer};
use switchboard::testing::{CommunicatorError, HandshakeOutcome, Received, WebSocketCommunicator};
use switchboard::websocket::{close_code, Message};

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(50);

/// The chat's whole WebSocket stack (names, routes; the communicator checks origins as the server), over an in-memory database.
fn chat_app() -> impl switchboard::application::WebSocketApplication {
    let history = chat::History::open(std::path::Path::new(":memory:")).unwrap();
    chat::websocket_app(history)
}

/// A communicator for the chat at `path`, from a page the chat served.
fn chat_client(path: &str, layer: &InMemoryChannelLayer) -> WebSocketCommunicator {
    WebSocketCommunicator::new(chat_app(), path)
        .channel_layer(layer.clone())
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("http://127.0.0.1:8000"),
        )
}

/// The next chat message, skipping presence traffic.
async fn next_message(client: &mut WebSocketCommunicator) -> Value {
    loop {
        let got: Value = client.receive_json(T).await.unwrap();
        if got["type"] == "message" || got.get("error").is_some() {
            return got;
        }
    }
}

#[tokio::test]
async fn chat_broadcasts_between_communicators_sharing_a_layer() {
    let layer = InMemoryChannelLayer::new();
    let mut alice = chat_client(
        "/ws/chat/lobby/?name=alice&key=communicator-test-key-alice",
        &layer,
    );
    let mut bob = chat_client(
        "/ws/chat/lobby/?name=bob&key=communicator-test-key-bob",
        &layer,
    );
    let mut carol = chat_client(
        "/ws/chat/other/?name=carol&key=communicator-test-key-carol",
        &layer,
    );
    for c in [&mut alice, &mut bob, &mut carol] {
        c.connect().await.unwrap().expect_accepted();
    }
    alice.send_json(&json!({ "message": "hi" })).await.unwrap();
    for c in [&mut alice, &mut bob] {
        let got = next_message(c).await;
        assert_eq!(
            (got["message"].as_str(), got["user"].as_str()),
            (Some("hi"), Some("alice"))
        );
    }
    // carol only ever hears her own room's recovery answer (a new page: nothing to recover,
    // no position yet) and presence.
    let recovery: Value = carol.receive_json(T).await.unwrap();
    assert_eq!(
        recovery,
        json!({ "type": "recovery", "asked": false, "recovered": false, "missed": 0 })
    );
    let presence: Value = carol.receive_json(T).await.unwrap();
    assert_eq!(
        (
            presence["type"].as_str(),
            presence["online"][0]["name"].as_str()
        ),
        (Some("presence"), Some("carol"))
    );
    let own_join: Value = carol.receive_json(T).await.unwrap();
    assert_eq!(own_join["type"], "presence.join");
    assert!(carol.receive_nothing(QUIET).await.unwrap());
    // Each in their room and in their own user's group.
    assert_eq!(layer.stats().memberships, 6);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.disconnect(close_code::NORMAL).await.unwrap();
    }
    // disconnect() returned after the consumers finished: nothing is left in the layer.
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.memberships), (0, 0));
}

#[tokio::test]
async fn chat_answers_bad_input_with_an_error_message() {
    let layer = InMemoryChannelLayer::new();
    let mut client = chat_client("/ws/chat/lobby/", &layer);
    client.connect().await.unwrap().expect_accepted();
    client.send_text("{oops").await.unwrap();
    assert!(next_message(&mut client).await["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid message"));
    client.send_binary(vec![1u8, 2]).await.unwrap();
    assert!(next_message(&mut client).await["error"]
        .as_str()
        .unwrap()
        .contains("binary"));
}

#[tokio::test]
async fn refusals_come_back_as_statuses() {
    let layer = InMemoryChannelLayer::new();
    let mut unknown = chat_client("/ws/nowhere/", &layer);
    assert_eq!(
        unknown.connect().await.unwrap(),
        HandshakeOutcome::Rejected(http::StatusCode::NOT_FOUND)
    );
    let mut bad_room = chat_client("/ws/chat/no%20spaces/", &layer);
    assert_eq!(
        bad_room.connect().await.unwrap(),
        HandshakeOutcome::Rejected(http::StatusCode::FORBIDDEN)
    );
    assert!(matches!(
        bad_room.send_text("x").await,
        Err(CommunicatorError::NotConnected)
    ));
    let mut foreign = WebSocketCommunicator::new(chat_app(), "/ws/chat/lobby/").header(
        http::header::ORIGIN,
        http::HeaderValue::from_static("https://evil.example"),
    );
    assert_eq!(
        foreign.connect().await.unwrap(),
        HandshakeOutcome::Rejected(http::StatusCode::FORBIDDEN)
    );
}

/// Accepts the client's last subprotocol, echoes, and closes on "bye".
#[derive(Default)]
struct Picky;

#[switchboard::async_trait]
impl WebSocketConsumer for Picky {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        match ctx.scope().subprotocols.last().cloned() {
            Some(p) => ctx.accept_subprotocol(&p).await?,
            None => ctx.accept().await?,
        }
        Ok(())
    }
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        match message {
            Message::Text(t) if t == "bye" => ctx.close(4000, "bye yourself").await?,
            Message::Text(t) if t == "three" => {
                // Buffered, then written together; nothing is lost or reordered.
                for n in 1..=3 {
                    ctx.feed_json(&n).await?;
                }
                ctx.flush().await?;
            }
            Message::Text(t) => ctx.send_text(t).await?,
            Message::Binary(b) => ctx.send_binary(b).await?,
        }
        Ok(())
    }
}

#[tokio::test]
async fn subprotocols_messages_and_server_close() {
    let mut client = WebSocketCommunicator::new(Picky::default, "/ws/").subprotocols(&["v1", "v2"]);
    assert_eq!(
        client.connect().await.unwrap().expect_accepted().as_deref(),
        Some("v2")
    );
    client.send_binary(vec![9u8]).await.unwrap();
    assert_eq!(
        client.receive(T).await.unwrap(),
        Received::Binary(vec![9u8].into())
    );
    // What receive_nothing sees arrive is kept for the next receive.
    client.send_text("kept").await.unwrap();
    let mut waited = 0;
    while client.receive_nothing(QUIET).await.unwrap() {
        waited += 1;
        assert!(waited < 100, "echo never came");
    }
    assert_eq!(
        client.receive(T).await.unwrap(),
        Received::Text("kept".into())
    );
    client.send_text("three").await.unwrap();
    for n in ["1", "2", "3"] {
        assert_eq!(client.receive(T).await.unwrap(), Received::Text(n.into()));
    }
    client.send_text("bye").await.unwrap();
    assert_eq!(
        client.receive(T).await.unwrap(),
        Received::Close {
            code: 4000,
            reason: "bye yourself".into()
        }
    );
    client.disconnect(close_code::NORMAL).await.unwrap();
    assert!(matches!(
        client.receive(T).await,
        Err(CommunicatorError::NotConnected)
    ));
}

#[tokio::test]
async fn shutdown_closes_with_1001_and_leaves_nothing_behind() {
    let layer = InMemoryChannelLayer::new();
    let mut client = chat_client("/ws/chat/lobby/", &layer);
    client.connect().await.unwrap().expect_accepted();
    assert_eq!(
        client.shutdown().await.unwrap(),
        Received::Close {
            code: close_code::GOING_AWAY,
            reason: "server shutting down".into()
        }
    );
    assert_eq!(layer.stats().channels, 0);
}

/// A JSON consumer that forwards "note" events as they are.
#[derive(Default)]
struct Forwarder;

#[switchboard::async_trait]
impl switchboard::consumer::JsonWebSocketConsumer for Forwarder {
    type Incoming = serde::de::IgnoredAny;
    type Event = serde::de::IgnoredAny;
    const FORWARDED_EVENTS: &'static [&'static str] = &["note"];

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("notes").await?;
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

/// Wraps a consumer and knows nothing of forwarding: it only passes the handlers on.
struct Wrapper<C>(C);

#[switchboard::async_trait]
impl<C: WebSocketConsumer> WebSocketConsumer for Wrapper<C> {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        self.0.connect(ctx).await
    }
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        self.0.receive(ctx, message).await
    }
    async fn event(
        &mut self,
        ctx: &mut Context,
        event: switchboard::layer::Event,
    ) -> switchboard::Result<()> {
        self.0.event(ctx, event).await
    }
}

#[tokio::test]
async fn forwarded_events_reach_the_client_through_a_wrapper_that_does_not_know_of_them() {
    let layer = InMemoryChannelLayer::new();
    for app in [true, false] {
        let mut client = if app {
            WebSocketCommunicator::new(Forwarder::default, "/ws/")
        } else {
            WebSocketCommunicator::new(|| Wrapper(Forwarder), "/ws/")
        }
        .channel_layer(layer.clone());
        client.connect().await.unwrap().expect_accepted();
        let note = switchboard::layer::Event::from_json(r#"{"type":"note","n":1}"#).unwrap();
        layer.group_send("notes", note).await.unwrap();
        assert_eq!(
            client.receive(T).await.unwrap(),
            Received::Text(r#"{"type":"note","n":1}"#.into())
        );
        client.disconnect(close_code::NORMAL).await.unwrap();
    }
}
