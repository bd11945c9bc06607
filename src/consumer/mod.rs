//! Consumers: the user's type that serves one WebSocket connection, one event at a time.
//!
//! A consumer is plain `&mut self` state: its methods never run concurrently, so it needs no locks
//! (as in Channels). The connection's task owns it and waits, all at once, for frames from the
//! socket, events from the consumer's channel, and the server's shutdown.
//!
//! # Lifecycle
//!
//! 1. `connect` runs while the client waits for the handshake's answer. It calls
//!    [`Context::accept`] (or [`accept_subprotocol`](Context::accept_subprotocol) /
//!    [`accept_with`](Context::accept_with)) to upgrade, or [`Context::close`] to refuse the
//!    handshake with HTTP 403. Returning without either also refuses with 403 (and a warning).
//! 2. `receive` runs for each text or binary message, `event` for each channel-layer event.
//! 3. `disconnect(code)` runs exactly once, whatever ended the connection: the client's close frame
//!    (its code, or 1005 if it gave none), a dropped TCP connection (1006), [`Context::close`] (the
//!    code sent), server shutdown (1001), a handler error or panic (1011), or a refused handshake
//!    (1006). It runs as soon as the connection ends, not after the events still queued for it.
//!    Before it runs, as in Channels, the consumer has left every group: its channel is deleted,
//!    with the events still queued on it.
//!
//! A handler that returns an error or panics closes its own connection with 1011 and nothing
//! else; the error is logged at `ERROR` on the target `switchboard::consumer`. Two errors of the
//! channel layer are not the connection's fault and leave it open (the handler still stops at its
//! `?`): a send to another consumer's full channel ([`LayerError::ChannelFull`](crate::layer::LayerError::ChannelFull),
//! logged at `WARN`), and an event with no string `"type"` ([`LayerError::Event`](crate::layer::LayerError::Event),
//! logged at `ERROR`; build events with [`Event::typed`](crate::layer::Event::typed) or a
//! `#[serde(tag = "type")]` type so that it cannot happen).

mod channel;
mod connection;
mod context;
mod rate;
mod runner;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::layer::Event;
use crate::websocket::{close_code, Message};

pub(crate) use channel::channel_methods;
pub use channel::ChannelContext;
pub use context::{AcceptOptions, ConnectionHandle, Context, WebSocketError};
pub(crate) use runner::{decode_event, guarded, run};

use crate::application::{BoxFuture, Handshake, WebSocketApplication};

/// Every consumer factory — any `Fn() -> C` where `C:` [`WebSocketConsumer`], such as
/// `Chat::default` — is a WebSocket application that makes one consumer per connection.
impl<F, C> WebSocketApplication for F
where
    F: Fn() -> C + Send + Sync + 'static,
    C: WebSocketConsumer,
{
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        // A factory that panics fails this handshake (500), not the server's connection task.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(self)) {
            Ok(consumer) => Box::pin(run(consumer, handshake)),
            Err(_) => {
                tracing::error!(target: "switchboard::consumer", path = %handshake.scope().path, "consumer factory panicked: refused with 500");
                handshake.reject(http::StatusCode::INTERNAL_SERVER_ERROR);
                Box::pin(std::future::ready(()))
            }
        }
    }
}

/// A WebSocket consumer over raw text and binary messages (Channels' `AsyncWebsocketConsumer`).
///
/// Any `Fn() -> C` factory for a consumer `C`, e.g. `Echo::default`, is a
/// [`WebSocketApplication`] that a route can hold.
///
/// ```
/// use switchboard::consumer::{Context, WebSocketConsumer};
/// use switchboard::websocket::Message;
///
/// #[derive(Default)]
/// struct Echo;
///
/// #[async_trait::async_trait]
/// impl WebSocketConsumer for Echo {
///     async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
///         match message {
///             Message::Text(text) => ctx.send_text(text).await?,
///             Message::Binary(bytes) => ctx.send_binary(bytes).await?,
///         }
///         Ok(())
///     }
/// }
///
/// let router = switchboard::routing::UrlRouter::new().route("/ws/echo/", Echo::default);
/// # drop(router);
/// ```
#[doc(alias = "AsyncWebsocketConsumer")]
#[doc(alias = "WebsocketConsumer")]
#[async_trait]
pub trait WebSocketConsumer: Send + 'static {
    /// Runs when the client asks to connect; accept or refuse here. The default accepts.
    ///
    /// # Errors
    ///
    /// An error (or panic) refuses the handshake with HTTP 500, or closes with 1011 if it came
    /// after accepting.
    async fn connect(&mut self, ctx: &mut Context) -> Result<()> {
        ctx.accept().await?;
        Ok(())
    }

    /// Runs for each text or binary message from the client.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> Result<()>;

    /// Runs for each channel-layer event sent to this consumer's channel or to a group it is in.
    /// The default ignores it.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn event(&mut self, ctx: &mut Context, event: Event) -> Result<()> {
        let _ = (ctx, event);
        Ok(())
    }

    /// Whether events of type `event_type` go to the client as they are (their JSON as a text
    /// frame) instead of to [`event`](Self::event). The connection then writes a burst of them
    /// with one flush, each member sharing the broadcast's one encoding. Default: none.
    fn forwards_event(&self, event_type: &str) -> bool {
        let _ = event_type;
        false
    }

    /// Whether forwarded events that have a stream position go out with it added as a last
    /// field, `"position":{"epoch":"…","offset":7}` ([`Event::to_text_with_position`]), so that
    /// the client can keep the last one and send it back when it reconnects (see
    /// [`Context::recover`]). Asked once per connection. Default: no.
    fn forwards_positions(&self) -> bool {
        false
    }

    /// Runs when messages from the client were dropped by an
    /// [`InboundRateLimit`](crate::InboundRateLimit), at most once a second: `dropped` counts
    /// the messages dropped since the client was last told. The default sends
    /// `{"error": "rate limited: <dropped> messages dropped"}` as a text frame.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn rate_limited(&mut self, ctx: &mut Context, dropped: u64) -> Result<()> {
        let notice = format!(r#"{{"error":"rate limited: {dropped} messages dropped"}}"#);
        ctx.send_text(notice).await?;
        Ok(())
    }

    /// Runs once when the connection has ended, with the close code (see the [module
    /// docs](self)). The socket is gone; the channel layer still works (e.g. to tell a group).
    ///
    /// # Errors
    ///
    /// An error is logged; the connection is over either way.
    async fn disconnect(&mut self, ctx: &mut Context, code: u16) -> Result<()> {
        let _ = (ctx, code);
        Ok(())
    }
}

/// Why a message could not be given to a [`JsonWebSocketConsumer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// A binary frame; JSON consumers take text.
    #[error("binary messages are not accepted; send JSON text")]
    Binary,
    /// Text that is not JSON of the consumer's `Incoming` type.
    #[error("invalid message: {0}")]
    Json(#[from] serde_json::Error),
}

/// What a [`JsonWebSocketConsumer`]'s default
/// [`invalid_message`](JsonWebSocketConsumer::invalid_message) does with a message that is not
/// its `Incoming` JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidMessagePolicy {
    /// Close the connection: 1007 (invalid payload) with the parse error as the reason, or 1003
    /// (unsupported data) for binary — as Channels' JSON consumer, whose decode error ends it.
    Close,
    /// Answer `{"error": "<what was wrong>"}` and carry on: what a page or a device that sent
    /// one bad message wants (the same shape as the rate limit's notice).
    Reply,
}

/// A consumer of JSON messages and typed channel-layer events (Channels'
/// `AsyncJsonWebsocketConsumer`).
///
/// `Incoming` is what clients send; `Event` is what the layer delivers, usually a
/// `#[serde(tag = "type")]` enum. Every `JsonWebSocketConsumer` is a [`WebSocketConsumer`].
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::consumer::{Context, JsonWebSocketConsumer};
///
/// #[derive(Default)]
/// struct Chat { room: String }
///
/// #[derive(Deserialize)]
/// struct ChatIn { message: String }
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(tag = "type", rename = "chat.message")]
/// struct ChatMessage { message: String }
///
/// #[async_trait::async_trait]
/// impl JsonWebSocketConsumer for Chat {
///     type Incoming = ChatIn;
///     type Event = ChatMessage;
///
///     async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
///         self.room = format!("chat_{}", ctx.scope().url_route.get("room").unwrap_or("lobby"));
///         ctx.group_add(&self.room).await?;
///         ctx.accept().await?;
///         Ok(())
///     }
///
///     async fn receive_json(&mut self, ctx: &mut Context, msg: ChatIn) -> switchboard::Result<()> {
///         ctx.group_send(&self.room, &ChatMessage { message: msg.message }).await?;
///         Ok(())
///     }
///
///     async fn event(&mut self, ctx: &mut Context, event: ChatMessage) -> switchboard::Result<()> {
///         ctx.send_json(&serde_json::json!({ "message": event.message })).await?;
///         Ok(())
///     }
/// }
///
/// let router = switchboard::routing::UrlRouter::new().route("/ws/chat/{room}/", Chat::default);
/// # drop(router);
/// ```
#[doc(alias = "AsyncJsonWebsocketConsumer")]
#[async_trait]
pub trait JsonWebSocketConsumer: Send + 'static {
    /// What clients send, parsed from each text message.
    type Incoming: DeserializeOwned + Send;
    /// What the channel layer delivers to this consumer.
    type Event: DeserializeOwned + Send;

    /// Event types whose JSON is sent to the client as it is, without calling
    /// [`event`](Self::event): the broadcast's one encoding goes to every member, with no
    /// per-member parse and re-encode, and a burst of them is written with one flush. For events
    /// that are already the message the client wants (see [`WebSocketConsumer::forwards_event`]).
    const FORWARDED_EVENTS: &'static [&'static str] = &[];

    /// Whether forwarded events carry their stream position (see
    /// [`WebSocketConsumer::forwards_positions`]). Default: no.
    const FORWARDS_POSITIONS: bool = false;

    /// What the default [`invalid_message`](Self::invalid_message) does with a message that is
    /// not JSON of type `Incoming`, or is binary. Default [`InvalidMessagePolicy::Close`].
    ///
    /// ```
    /// # use serde::Deserialize;
    /// use switchboard::consumer::{Context, InvalidMessagePolicy, JsonWebSocketConsumer};
    /// # #[allow(dead_code)] #[derive(Deserialize)] struct Position { latitude: f64 }
    /// # #[allow(dead_code)] struct Map;
    ///
    /// #[switchboard::async_trait]
    /// impl JsonWebSocketConsumer for Map {
    ///     type Incoming = Position;
    ///     type Event = serde_json::Value;
    ///     // `{"latitude": "north"}` gets `{"error": "invalid message: .."}`; the map stays open.
    ///     const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Reply;
    ///
    ///     async fn receive_json(&mut self, ctx: &mut Context, at: Position) -> switchboard::Result<()> {
    /// #       let _ = (ctx, at.latitude);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Close;

    /// As [`WebSocketConsumer::connect`]. The default accepts.
    ///
    /// # Errors
    ///
    /// As [`WebSocketConsumer::connect`].
    async fn connect(&mut self, ctx: &mut Context) -> Result<()> {
        ctx.accept().await?;
        Ok(())
    }

    /// Runs for each message that parsed as `Incoming`.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn receive_json(&mut self, ctx: &mut Context, message: Self::Incoming) -> Result<()>;

    /// Runs for each channel-layer event that parsed as `Event`. An event that does not parse is
    /// logged at `WARN` and dropped. The default ignores events.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn event(&mut self, ctx: &mut Context, event: Self::Event) -> Result<()> {
        let _ = (ctx, event);
        Ok(())
    }

    /// Runs for a message that is not JSON of type `Incoming`, or is binary. The default does
    /// what [`INVALID_MESSAGE_POLICY`](Self::INVALID_MESSAGE_POLICY) says: close the connection
    /// (1007 with the parse error as the reason, 1003 for binary), or answer `{"error": ..}` and
    /// carry on. Override it to answer otherwise.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn invalid_message(&mut self, ctx: &mut Context, error: InvalidMessage) -> Result<()> {
        if Self::INVALID_MESSAGE_POLICY == InvalidMessagePolicy::Reply {
            ctx.send_json(&serde_json::json!({ "error": error.to_string() }))
                .await?;
            return Ok(());
        }
        let code = match error {
            InvalidMessage::Binary => close_code::UNSUPPORTED_DATA,
            InvalidMessage::Json(_) => close_code::INVALID_PAYLOAD,
        };
        ctx.close(code, &error.to_string()).await?;
        Ok(())
    }

    /// As [`WebSocketConsumer::rate_limited`]; the default sends
    /// `{"error": "rate limited: <dropped> messages dropped"}`.
    ///
    /// # Errors
    ///
    /// An error closes the connection with 1011.
    async fn rate_limited(&mut self, ctx: &mut Context, dropped: u64) -> Result<()> {
        let error = format!("rate limited: {dropped} messages dropped");
        ctx.send_json(&serde_json::json!({ "error": error }))
            .await?;
        Ok(())
    }

    /// As [`WebSocketConsumer::disconnect`].
    ///
    /// # Errors
    ///
    /// An error is logged.
    async fn disconnect(&mut self, ctx: &mut Context, code: u16) -> Result<()> {
        let _ = (ctx, code);
        Ok(())
    }
}

#[async_trait]
impl<T: JsonWebSocketConsumer> WebSocketConsumer for T {
    async fn connect(&mut self, ctx: &mut Context) -> Result<()> {
        JsonWebSocketConsumer::connect(self, ctx).await
    }

    async fn receive(&mut self, ctx: &mut Context, message: Message) -> Result<()> {
        let parsed = match &message {
            Message::Text(text) => serde_json::from_str::<T::Incoming>(text).map_err(Into::into),
            Message::Binary(_) => Err(InvalidMessage::Binary),
        };
        match parsed {
            Ok(incoming) => self.receive_json(ctx, incoming).await,
            Err(error) => self.invalid_message(ctx, error).await,
        }
    }

    fn forwards_event(&self, event_type: &str) -> bool {
        T::FORWARDED_EVENTS.contains(&event_type)
    }

    async fn rate_limited(&mut self, ctx: &mut Context, dropped: u64) -> Result<()> {
        JsonWebSocketConsumer::rate_limited(self, ctx, dropped).await
    }

    fn forwards_positions(&self) -> bool {
        T::FORWARDS_POSITIONS
    }

    async fn event(&mut self, ctx: &mut Context, event: Event) -> Result<()> {
        // The runner forwards these itself; a consumer wrapping this one may still call here.
        if T::FORWARDED_EVENTS.contains(&event.event_type()) {
            let text = if T::FORWARDS_POSITIONS {
                event.to_text_with_position()
            } else {
                event.to_text()
            };
            ctx.send_text(text).await?;
            return Ok(());
        }
        match decode_event::<T::Event>(&event, "websocket", ctx.channel_name()) {
            Some(typed) => JsonWebSocketConsumer::event(self, ctx, typed).await,
            None => Ok(()),
        }
    }

    async fn disconnect(&mut self, ctx: &mut Context, code: u16) -> Result<()> {
        JsonWebSocketConsumer::disconnect(self, ctx, code).await
    }
}
