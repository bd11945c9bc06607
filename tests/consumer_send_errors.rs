//! Errors of the channel layer that are not the sender's connection's fault leave it open: a send
//! to another consumer's full channel, and an event without a `"type"`. Over real sockets.

mod common;

use common::{recv_text, text, within, Client};
use serde_json::json;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{ChannelLayer, InMemoryChannelLayer, InMemoryConfig};
use switchboard::routing::UrlRouter;
use switchboard::testing::TestServer;
use switchboard::websocket::Message;

/// "fill": sends to the named channel "inbox" until it is full (the `?` stops the handler);
/// "untyped": group_send of an event with no "type"; anything else: answers "pong".
#[derive(Default)]
struct Sender;

#[switchboard::async_trait]
impl WebSocketConsumer for Sender {
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        match message {
            Message::Text(t) if t == "fill" => loop {
                ctx.send_to_channel("inbox", &json!({ "type": "job" }))
                    .await?;
            },
            Message::Text(t) if t == "untyped" => {
                ctx.group_send("room", &json!({ "message": "no type" }))
                    .await?;
                ctx.send_text("not reached").await?;
            }
            _ => ctx.send_text("pong").await?,
        }
        Ok(())
    }
}

async fn still_open(client: &mut Client) {
    text(client, "ping").await;
    assert_eq!(recv_text(client).await, "pong");
}

#[tokio::test]
async fn a_full_recipient_or_an_untyped_event_does_not_close_the_sender() {
    let layer = InMemoryChannelLayer::with_config(InMemoryConfig::default().capacity(3));
    let server = TestServer::builder(UrlRouter::new().route("/ws/", Sender::default))
        .channel_layer(layer.clone())
        .start()
        .await
        .unwrap();
    let (mut client, _) = within(tokio_tungstenite::connect_async(server.ws_url("/ws/")))
        .await
        .unwrap();

    text(&mut client, "fill").await;
    still_open(&mut client).await;
    let stats = layer.stats();
    assert_eq!(stats.rejected_full, 1, "the full channel was counted");
    assert_eq!(stats.queued, 3);

    text(&mut client, "untyped").await;
    still_open(&mut client).await; // and "not reached" never came before the pong
    assert_eq!(server.stats().snapshot().connections, 1);
}
