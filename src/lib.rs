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
//! - [`serve`] runs it all on a tokio `TcpListener`, with graceful shutdown; or mount it in your
//!   own `axum::serve` app as an [`AppService`]. Either way HTTP handlers find the consumers'
//!   [`LayerHandle`](layer::LayerHandle) in their requests (axum: `Extension<LayerHandle>`).
//! - [`testing`] (feature `testing`) drives applications in process, as Channels' `testing`.
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
//! | `get_channel_layer()` | [`LayerHandle`](layer::LayerHandle): `Extension<LayerHandle>` in an HTTP handler, [`ctx.channel_layer()`](consumer::ChannelContext::channel_layer) in a consumer |
//! | `f"user_{user.id}"` groups | [`layer::user_group`] |
//! | `channels.testing.WebsocketCommunicator`, `HttpCommunicator` | `testing::WebSocketCommunicator`, `testing::HttpCommunicator` (feature `testing`) |
//! | `daphne app:application` | [`serve`]`(listener, app)`, or [`AppService`] in your own server |
//!
//! ## Features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `redis` | `layer::RedisChannelLayer` and `layer::RedisConfig`: the channel layer across processes, on Redis |
//! | `tls` | `Serve::tls` with `TlsConfig`: `wss://` and `https://` served directly (rustls, ring) |
//! | `metrics` | `switchboard::metrics`: the server's counts in Prometheus' text format |
//! | `testing` | `switchboard::testing`: communicators and a test server for your own tests |
//! | `axum` | [`AppService`] reads the client's address from axum's `ConnectInfo` |
//!
//! None is on by default.
//!
//! ## Logs
//!
//! Through `tracing`, on fixed targets:
//!
//! | target | what |
//! | --- | --- |
//! | `switchboard::server` | listening, accept failures, refused handshakes, shutdown |
//! | `switchboard::routing` | paths with no route |
//! | `switchboard::middleware` | origin and authentication refusals |
//! | `switchboard::consumer` | handler failures and panics and events that do not fit a consumer's `Event` type, for every kind of consumer (field `kind`: `websocket`, `sse`, `worker`); closes, slow clients; a `websocket` span per connection (path, client, channel) |
//! | `switchboard::layer` | dropped, expired and lost messages; Redis outages and reconnections |
//! | `switchboard::sse` | event streams that could not start |
//! | `switchboard::worker` | workers that stop |

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod application;
pub mod body;
pub mod consumer;
mod error;
pub mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod middleware;
pub mod routing;
pub mod scope;
mod server;
pub mod sse;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "tls")]
mod tls;
pub mod websocket;
pub mod worker;

pub use async_trait::async_trait;
/// The crates whose types appear in switchboard's public API, re-exported so that the versions
/// match: `http` (requests, headers, status codes), `bytes`, `ipnet`
/// ([`ServerConfig::trusted_proxies`]) and `serde_json` (presence metadata).
pub use {bytes, http, ipnet, serde_json};

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use error::{Error, Result};
pub use middleware::OriginCheck;
pub use server::{
    serve, shutdown_signal, AppService, ConfigError, HandshakeRefusals, Http2Config,
    InboundRateLimit, Rate, RateLimitPolicy, Serve, ServerConfig, ShutdownHandle, SlowClientPolicy,
    Stats, StatsHandle, WithGracefulShutdown,
};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{TlsConfig, TlsError};
