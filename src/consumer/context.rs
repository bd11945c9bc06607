//! `Context`: what a consumer's handlers use to talk to their socket and the channel layer.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::SinkExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use tokio_tungstenite::tungstenite;

use crate::application::{PendingHandshake, Socket};
use crate::layer::{ChannelLayer, Event, LayerError};
use crate::scope::Scope;
use crate::websocket::{close_code, truncate_reason, Utf8Bytes};

/// An error from a [`Context`] socket operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebsocketError {
    /// A send before the connection was accepted.
    #[error("the connection has not been accepted")]
    NotAccepted,
    /// `accept` after the handshake was already answered (accepted or refused).
    #[error("the handshake was already answered")]
    AlreadyAnswered,
    /// The connection is closed or closing; nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// `accept_subprotocol` with a subprotocol the client did not ask for.
    #[error("subprotocol {0:?} was not requested by the client")]
    UnrequestedSubprotocol(String),
    /// `close` with a code that may not be sent (see [`close_code::is_sendable`]).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// `send_json` with a value that does not serialize.
    #[error("could not encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing to the socket failed; the connection is over.
    #[error("socket write failed: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How to accept a handshake: an optional subprotocol and extra response headers.
///
/// ```
/// use switchboard::consumer::AcceptOptions;
/// let options = AcceptOptions::new()
///     .subprotocol("chat.v2")
///     .header(http::header::SET_COOKIE, http::HeaderValue::from_static("seen=1"));
/// // in `connect`: ctx.accept_with(options).await?;
/// # drop(options);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AcceptOptions {
    subprotocol: Option<String>,
    headers: HeaderMap,
}

impl AcceptOptions {
    /// Accept with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers with this subprotocol; it must be one the client requested.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocol = Some(protocol.into());
        self
    }

    /// Adds a header to the 101 response (appended; a name may repeat).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

pub(crate) enum Phase {
    Pending(PendingHandshake),
    Open(Socket),
    /// A close frame with this code was sent; the client's reply is awaited.
    Closing(Socket, u16),
    Refused,
    Closed,
}

/// A consumer's handle on its connection and the channel layer, passed to every handler.
///
/// Socket methods fail with [`WebsocketError`]; layer methods with [`LayerError`]. Both convert
/// into [`crate::Error`], so `?` works in handlers. Every async method takes `&mut self`: the
/// context owns the socket, which is `Send` but not `Sync`.
pub struct Context {
    scope: Scope,
    channel_name: Arc<str>,
    layer: Arc<dyn ChannelLayer>,
    pub(crate) phase: Phase,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match self.phase {
            Phase::Pending(_) => "pending",
            Phase::Open(_) => "open",
            Phase::Closing(..) => "closing",
            Phase::Refused => "refused",
            Phase::Closed => "closed",
        };
        f.debug_struct("Context")
            .field("path", &self.scope.path)
            .field("channel_name", &self.channel_name)
            .field("phase", &phase)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        scope: Scope,
        channel_name: Arc<str>,
        layer: Arc<dyn ChannelLayer>,
        pending: PendingHandshake,
    ) -> Self {
        Self {
            scope,
            channel_name,
            layer,
            phase: Phase::Pending(pending),
        }
    }

    /// The connection's scope: path, headers, `url_route`, extensions from middleware.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// This consumer's channel name: anyone holding it can send events to this consumer.
    pub fn channel_name(&self) -> &str {
        &self.channel_name
    }

    /// The channel layer, for what the shortcuts here do not cover.
    pub fn channel_layer(&self) -> &Arc<dyn ChannelLayer> {
        &self.layer
    }

    /// Answers a still-pending handshake with `status`; returns whether it was pending.
    pub(crate) fn refuse(&mut self, status: StatusCode) -> bool {
        if !matches!(self.phase, Phase::Pending(_)) {
            return false;
        }
        if let Phase::Pending(pending) = std::mem::replace(&mut self.phase, Phase::Refused) {
            pending.reject(status);
        }
        true
    }

    /// Whether the connection is accepted and not closing: sends will be attempted.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Accepts the handshake (HTTP 101) with no subprotocol.
    ///
    /// # Errors
    ///
    /// [`WebsocketError::AlreadyAnswered`] after an earlier accept or close;
    /// [`WebsocketError::Closed`] if the client left during the handshake.
    pub async fn accept(&mut self) -> Result<(), WebsocketError> {
        self.accept_with(AcceptOptions::new()).await
    }

    /// Accepts the handshake with `protocol`, one of the client's
    /// [`Scope::subprotocols`].
    ///
    /// # Errors
    ///
    /// [`WebsocketError::UnrequestedSubprotocol`] if the client did not ask for it (the handshake
    /// stays pending); otherwise as [`accept`](Self::accept).
    pub async fn accept_subprotocol(&mut self, protocol: &str) -> Result<(), WebsocketError> {
        self.accept_with(AcceptOptions::new().subprotocol(protocol))
            .await
    }

    /// Accepts the handshake with the given options.
    ///
    /// # Errors
    ///
    /// As [`accept_subprotocol`](Self::accept_subprotocol).
    pub async fn accept_with(&mut self, options: AcceptOptions) -> Result<(), WebsocketError> {
        if let Some(protocol) = &options.subprotocol {
            if !self.scope.subprotocols.iter().any(|p| p == protocol) {
                return Err(WebsocketError::UnrequestedSubprotocol(protocol.clone()));
            }
        }
        let pending = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Pending(pending) => pending,
            other => {
                self.phase = other;
                return Err(WebsocketError::AlreadyAnswered);
            }
        };
        // On failure the client is gone and the phase stays `Closed`.
        let socket = pending.accept(options.subprotocol, options.headers).await?;
        self.phase = Phase::Open(socket);
        Ok(())
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// [`WebsocketError::NotAccepted`] before accept; [`WebsocketError::Closed`] once closing or
    /// closed; [`WebsocketError::Transport`] if the write fails (the connection then ends).
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), WebsocketError> {
        self.send_frame(tungstenite::Message::Text(text.into().into_tungstenite()))
            .await
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text).
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) -> Result<(), WebsocketError> {
        self.send_frame(tungstenite::Message::Binary(bytes.into()))
            .await
    }

    /// Serializes `value` and sends it as a text message.
    ///
    /// # Errors
    ///
    /// [`WebsocketError::Json`] if it does not serialize; otherwise as
    /// [`send_text`](Self::send_text).
    pub async fn send_json<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), WebsocketError> {
        let text = serde_json::to_string(value)?;
        self.send_text(text).await
    }

    async fn send_frame(&mut self, frame: tungstenite::Message) -> Result<(), WebsocketError> {
        let socket = match &mut self.phase {
            Phase::Open(socket) => socket,
            Phase::Pending(_) => return Err(WebsocketError::NotAccepted),
            _ => return Err(WebsocketError::Closed),
        };
        if let Err(error) = socket.send(frame).await {
            self.phase = Phase::Closed;
            return Err(transport(error));
        }
        Ok(())
    }

    /// Closes the connection with `code` and `reason` (cut to 123 bytes at a character
    /// boundary); the client sees both. Before accept, refuses the handshake with HTTP 403 instead
    /// (as Channels does). Closing again does nothing.
    ///
    /// After this returns, no more messages or events reach the consumer; `disconnect` runs once
    /// the client answers the close (or the close timeout passes).
    ///
    /// # Errors
    ///
    /// [`WebsocketError::InvalidCloseCode`] for a code that may not be sent (e.g. 1005, 1006);
    /// [`WebsocketError::Transport`] if the close frame cannot be written.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WebsocketError> {
        if !close_code::is_sendable(code) {
            return Err(WebsocketError::InvalidCloseCode(code));
        }
        if self.refuse(StatusCode::FORBIDDEN) {
            return Ok(());
        }
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Open(mut socket) => {
                let frame = tungstenite::protocol::CloseFrame {
                    code: code.into(),
                    reason: truncate_reason(reason).into(),
                };
                match socket.close(Some(frame)).await {
                    Ok(()) => {
                        self.phase = Phase::Closing(socket, code);
                        Ok(())
                    }
                    Err(error) => Err(transport(error)),
                }
            }
            other => {
                self.phase = other;
                Ok(())
            }
        }
    }

    /// Adds this consumer's channel to `group`. Memberships end by themselves when the
    /// connection does.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group name, or the layer's own failure.
    pub async fn group_add(&mut self, group: &str) -> Result<(), LayerError> {
        self.layer.group_add(group, &self.channel_name).await
    }

    /// Takes this consumer's channel out of `group`.
    ///
    /// # Errors
    ///
    /// As [`group_add`](Self::group_add).
    pub async fn group_discard(&mut self, group: &str) -> Result<(), LayerError> {
        self.layer.group_discard(group, &self.channel_name).await
    }

    /// Sends `event` (serialized once, shared by every member) to every member of `group`,
    /// this consumer too if it is one. It must serialize to a JSON object with a string `"type"`.
    ///
    /// # Errors
    ///
    /// [`LayerError::Event`] if it does not serialize so; [`LayerError::InvalidName`] for a bad
    /// group name.
    pub async fn group_send<T: Serialize + ?Sized + Sync>(
        &mut self,
        group: &str,
        event: &T,
    ) -> Result<(), LayerError> {
        let event = Event::new(event)?;
        self.layer.group_send(group, event).await
    }

    /// Sends `event` to one channel by name (point to point), e.g. another consumer's
    /// [`channel_name`](Self::channel_name) or a worker's channel.
    ///
    /// # Errors
    ///
    /// [`LayerError::ChannelFull`] if that channel is full; otherwise as
    /// [`group_send`](Self::group_send).
    pub async fn send_to_channel<T: Serialize + ?Sized + Sync>(
        &mut self,
        channel: &str,
        event: &T,
    ) -> Result<(), LayerError> {
        let event = Event::new(event)?;
        self.layer.send(channel, event).await
    }
}

fn transport(error: tungstenite::Error) -> WebsocketError {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            WebsocketError::Closed
        }
        other => WebsocketError::Transport(Box::new(other)),
    }
}
