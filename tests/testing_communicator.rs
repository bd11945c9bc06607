//! `WebsocketCommunicator`: the chat consumer and a scripted one, driven in process, no sockets.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat/main.rs"]
mod chat;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::consumer::{Context, WebsocketConsumer};
use switchboard::layer::{ChannelLayer, InMemoryChannelLayer};
use switchboard::routing::URLRouter;
use switchboard::testing::{CommunicatorError, HandshakeOutcome, Received, WebsocketCommunicator};
use switchboard::websocket::{close_code, Message};

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(50);

fn chat_router() -> URLRouter {
    URLRouter::new().route("/ws/chat/{room}/", chat::ChatConsumer::default)
}

#[tokio::test]
async fn chat_broadcasts_between_communicators_sharing_a_layer() {
    let layer = InMemoryChannelLayer::new();
    let mut alice =
        WebsocketCommunicator::new(chat_router(), "/ws/chat/lobby/").channel_layer(layer.clone());
    let mut bob =
        WebsocketCommunicator::new(chat_router(), "/ws/chat/lobby/").channel_layer(layer.clone());
    let mut carol =
        WebsocketCommunicator::new(chat_router(), "/ws/chat/other/").channel_layer(layer.clone());
    for c in [&mut alice, &mut bob, &mut carol] {
        c.connect().await.unwrap().expect_accepted();
    }
    alice
        .send_json(&json!({ "message": "hi", "user": "alice" }))
        .await
        .unwrap();
    for c in [&mut alice, &mut bob] {
        let got: Value = c.receive_json(T).await.unwrap();
        assert_eq!(
            (got["message"].as_str(), got["user"].as_str()),
            (Some("hi"), Some("alice"))
        );
    }
    assert!(carol.receive_nothing(QUIET).await.unwrap());
    assert_eq!(layer.stats().memberships, 3);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.disconnect(close_code::NORMAL).await.unwrap();
    }
    // disconnect() returned after the consumers finished: nothing is left in the layer.
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.memberships), (0, 0));
}

#[tokio::test]
async fn chat_answers_bad_input_with_an_error_message() {
    let mut client = WebsocketCommunicator::new(chat_router(), "/ws/chat/lobby/");
    client.connect().await.unwrap().expect_accepted();
    client.send_text("{oops").await.unwrap();
    let error: Value = client.receive_json(T).await.unwrap();
    assert!(error["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid message"));
    client.send_binary(vec![1u8, 2]).await.unwrap();
    let error: Value = client.receive_json(T).await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("binary"));
}

#[tokio::test]
async fn refusals_come_back_as_statuses() {
    let mut unknown = WebsocketCommunicator::new(chat_router(), "/ws/nowhere/");
    assert_eq!(
        unknown.connect().await.unwrap(),
        HandshakeOutcome::Rejected(http::StatusCode::NOT_FOUND)
    );
    let mut bad_room = WebsocketCommunicator::new(chat_router(), "/ws/chat/no%20spaces/");
    assert_eq!(
        bad_room.connect().await.unwrap(),
        HandshakeOutcome::Rejected(http::StatusCode::FORBIDDEN)
    );
    assert!(matches!(
        bad_room.send_text("x").await,
        Err(CommunicatorError::NotConnected)
    ));
}

/// Accepts the client's last subprotocol, echoes, and closes on "bye".
#[derive(Default)]
struct Picky;

#[switchboard::async_trait]
impl WebsocketConsumer for Picky {
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
            Message::Text(t) => ctx.send_text(t).await?,
            Message::Binary(b) => ctx.send_binary(b).await?,
        }
        Ok(())
    }
}

#[tokio::test]
async fn subprotocols_messages_and_server_close() {
    let mut client = WebsocketCommunicator::new(Picky::default, "/ws/").subprotocols(&["v1", "v2"]);
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
    let mut client =
        WebsocketCommunicator::new(chat_router(), "/ws/chat/lobby/").channel_layer(layer.clone());
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
