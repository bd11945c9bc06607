//! SIGTERM drains the server: open WebSockets are closed with 1001 and `serve` returns. In a test
//! binary of its own, since the signal goes to the whole process.

mod common;

use std::future::IntoFuture;

use common::{recv_close, within};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::{close_code, Message};

struct Accepting;

#[switchboard::async_trait]
impl WebSocketConsumer for Accepting {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.accept().await?;
        Ok(())
    }

    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_stops_the_server() {
    let app = ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/", || Accepting));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        switchboard::serve(listener, app)
            .with_graceful_shutdown(switchboard::shutdown_signal())
            .into_future(),
    );
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/"))
        .await
        .unwrap();
    // The server answered a handshake: its shutdown future has been polled, the handler is in.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let close = recv_close(&mut client).await.expect("a close frame");
    assert_eq!(u16::from(close.code), close_code::GOING_AWAY);
    within(server).await.unwrap().unwrap();
}
