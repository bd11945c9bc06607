//! Test helpers for your consumers and apps, as Channels' `channels.testing` (feature `testing`).
//!
//! - [`WebSocketCommunicator`] drives one WebSocket connection to any application — a consumer
//!   factory, a router, a middleware stack, a whole [`ProtocolTypeRouter`](crate::routing::ProtocolTypeRouter)
//!   — with no TCP: the handshake goes through the server's own steps and the application runs on
//!   its own task exactly as under [`serve`](crate::serve), talking real WebSocket frames over an
//!   in-memory pipe. Give several communicators one layer to test broadcasts.
//! - [`HttpCommunicator`] sends HTTP requests through a `ProtocolTypeRouter` the same way, and
//!   reads server-sent events one at a time ([`EventStream`]).
//! - [`TestServer`] serves an application for real on 127.0.0.1 and a free port, for tests that
//!   open sockets.
//! - [`conformance`] is the channel layer contract as a suite: run it on a layer of your own.
//!
//! ```
//! use std::time::Duration;
//! use switchboard::consumer::{Context, WebSocketConsumer};
//! use switchboard::testing::{Received, WebSocketCommunicator};
//! use switchboard::websocket::Message;
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! #[switchboard::async_trait]
//! impl WebSocketConsumer for Echo {
//!     async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
//!         if let Message::Text(text) = message {
//!             ctx.send_text(text).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), switchboard::testing::CommunicatorError> {
//! let mut client = WebSocketCommunicator::new(Echo::default, "/ws/echo/");
//! client.connect().await?.expect_accepted();
//! client.send_text("hello").await?;
//! assert_eq!(client.receive(Duration::from_secs(1)).await?, Received::Text("hello".into()));
//! assert!(client.receive_nothing(Duration::from_millis(10)).await?);
//! client.disconnect(1000).await?;
//! # Ok(()) }
//! ```

pub mod conformance;
mod http;
mod server;
mod websocket;

pub use http::{EventStream, HttpCommunicator, ReceivedEvent, TestResponse};
pub use server::{TestServer, TestServerBuilder};
pub use websocket::{CommunicatorError, HandshakeOutcome, Received, WebSocketCommunicator};
