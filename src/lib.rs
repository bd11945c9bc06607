//! # switchboard
//!
//! Django Channels for Rust: HTTP and WebSocket on one port, each connection routed by protocol
//! and path to a *consumer* you write, and consumers talking to each other through a *channel
//! layer* of named channels (point to point) and groups (broadcast).
//!
//! ## A tour
//!
//! - A [`Scope`](scope::Scope) is what is known about a connection before its first message.
//! - An [application] serves a connection given its scope. A
//!   [`ProtocolTypeRouter`](routing::ProtocolTypeRouter) sends HTTP to any tower service (an axum
//!   `Router`) and WebSockets to a [`UrlRouter`](routing::UrlRouter), which picks a consumer by path.
//! - A [consumer] is one value per connection with `connect`, `receive`, `event` and
//!   `disconnect`, run one at a time on `&mut self`. It talks through its
//!   [`Context`](consumer::Context).
//! - The [channel layer](layer) carries [`Event`](layer::Event)s between consumers, and from any
//!   task: [`InMemoryChannelLayer`](layer::InMemoryChannelLayer) in one process,
//!   `RedisChannelLayer` (feature `redis`) across processes, with the same API.
//! - [`serve`] runs it all on a tokio `TcpListener`, with graceful shutdown.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use switchboard::consumer::{Context, JsonWebSocketConsumer};
//! use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
//!
//! #[derive(Default)]
//! struct Chat { group: String }
//!
//! #[derive(Deserialize)]
//! struct ChatIn { message: String }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type", rename = "chat.message")]
//! struct ChatMessage { message: String }
//!
//! #[switchboard::async_trait]
//! impl JsonWebSocketConsumer for Chat {
//!     type Incoming = ChatIn;
//!     type Event = ChatMessage;
//!
//!     async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
//!         self.group = format!("chat_{}", ctx.scope().url_route.get("room").unwrap_or("lobby"));
//!         ctx.group_add(&self.group).await?; // left automatically on disconnect
//!         ctx.accept().await?;
//!         Ok(())
//!     }
//!
//!     async fn receive_json(&mut self, ctx: &mut Context, msg: ChatIn) -> switchboard::Result<()> {
//!         ctx.group_send(&self.group, &ChatMessage { message: msg.message }).await?;
//!         Ok(())
//!     }
//!
//!     async fn event(&mut self, ctx: &mut Context, event: ChatMessage) -> switchboard::Result<()> {
//!         ctx.send_json(&serde_json::json!({ "message": event.message })).await?;
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = ProtocolTypeRouter::new()
//!         .websocket(UrlRouter::new().route("/ws/chat/{room}/", Chat::default));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//!     switchboard::serve(listener, app)
//!         .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
//!         .await
//! }
//! ```
//!
//! ## Coming from Channels
//!
//! | Channels | switchboard |
//! | --- | --- |
//! | `scope` (a dict) | [`Scope`](scope::Scope) (a struct; `extensions` for what middleware adds) |
//! | `ProtocolTypeRouter`, `URLRouter` | [`routing::ProtocolTypeRouter`], [`routing::UrlRouter`] |
//! | `AsyncWebsocketConsumer` | [`consumer::WebSocketConsumer`] |
//! | `AsyncJsonWebsocketConsumer` | [`consumer::JsonWebSocketConsumer`] |
//! | `self.accept()`, `self.close(code)` | [`Context::accept`](consumer::Context::accept), [`Context::close`](consumer::Context::close) |
//! | `self.channel_name`, `self.channel_layer` | [`ctx.channel_name()`](consumer::ChannelContext::channel_name), [`ctx.channel_layer()`](consumer::ChannelContext::channel_layer) |
//! | handler methods named after the event `type` | [`JsonWebSocketConsumer::event`](consumer::JsonWebSocketConsumer::event) with a `#[serde(tag = "type")]` enum |
//! | `InMemoryChannelLayer` | [`layer::InMemoryChannelLayer`] |
//! | `channels_redis.core.RedisChannelLayer` | `layer::RedisChannelLayer` (feature `redis`) |
//! | `get_channel_layer()` | the layer you pass to [`Serve::channel_layer`] (clone it for HTTP handlers) |
//! | `daphne app:application` | [`serve`]`(listener, app)` |
//!
//! ## Logs
//!
//! Through `tracing`, on fixed targets: `switchboard::server` (accepting, handshakes, shutdown),
//! `switchboard::routing`, `switchboard::consumer` (handler failures, closes) and
//! `switchboard::layer` (dropped messages).

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod application;
pub mod body;
pub mod consumer;
mod error;
pub mod layer;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod middleware;
pub mod routing;
pub mod scope;
mod server;
pub mod sse;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls")]
mod tls;
pub mod websocket;
pub mod worker;

pub use async_trait::async_trait;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use error::{Error, Result};
pub use server::{
    serve, shutdown_signal, AppService, ConfigError, HandshakeRefusals, Serve, ServerConfig,
    ShutdownHandle, SlowClientPolicy, Stats, StatsHandle, WithGracefulShutdown,
};
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsError};
