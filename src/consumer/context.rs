//! `Context`: what a consumer's handlers use to talk to their socket and the channel layer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use tokio_tungstenite::tungstenite;

use tokio::sync::mpsc;

use super::connection::{self, Socket};
use super::ChannelContext;
use crate::application::{PendingHandshake, Traffic};
use crate::layer::{ChannelLayer, Event, LayerError, LayerHandle, Recovery, StreamPosition};
use crate::scope::Scope;
use crate::websocket::{close_code, truncate_reason, Utf8Bytes};

/// An error from a [`Context`] socket operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
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
    /// The client did not take a write within the slow-client bound; the connection is over
    /// (see [`SlowClientPolicy`](crate::SlowClientPolicy)).
    #[error("the client stopped reading; disconnected")]
    SlowClient,
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
/// It has [`ChannelContext`]'s methods for the layer side (`ctx.group_add(..)`,
/// `ctx.group_send(..)`, `ctx.channel_name()`, presence). Socket methods fail with
/// [`WebSocketError`]; layer methods with [`LayerError`](crate::layer::LayerError). Both convert
/// into [`crate::Error`], so `?` works in handlers. Socket methods take `&mut self`: the context
/// owns the socket, which is `Send` but not `Sync`.
pub struct Context {
    scope: Scope,
    channel: ChannelContext,
    pub(crate) phase: Phase,
    /// Made on the first [`Context::handle`]: frames from handles, for the runner to send.
    outbound: Option<mpsc::Sender<Outbound>>,
    pub(crate) outbound_receiver: Option<mpsc::Receiver<Outbound>>,
    /// How long one write may wait (the slow-client policy); `None`: as long as it takes.
    write_timeout: Option<std::time::Duration>,
    /// The code the connection ended with when the server dropped it (a slow client: 1013).
    pub(crate) dropped_with: Option<u16>,
    traffic: Arc<Traffic>,
    /// Messages buffered by `feed_*` and not yet counted as sent.
    unflushed: u64,
    /// Stream positions [`Context::recover`] answered with: live events at or before them (same
    /// epoch) were already given back, and are skipped.
    recovered_through: Vec<StreamPosition>,
}

/// Frames a [`ConnectionHandle`] may queue before its sender waits.
const OUTBOUND_CAPACITY: usize = 32;

/// What a [`ConnectionHandle`] asks the connection to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(tungstenite::Message),
    Close(u16, String),
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
            .field("channel_name", &self.channel.channel_name())
            .field("phase", &phase)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        scope: Scope,
        channel_name: Arc<str>,
        layer: LayerHandle,
        pending: PendingHandshake,
        write_timeout: Option<std::time::Duration>,
        traffic: Arc<Traffic>,
    ) -> Self {
        Self {
            scope,
            channel: ChannelContext::new(channel_name, layer),
            phase: Phase::Pending(pending),
            outbound: None,
            outbound_receiver: None,
            write_timeout,
            dropped_with: None,
            traffic,
            unflushed: 0,
            recovered_through: Vec::new(),
        }
    }

    /// What `group` sent after `since` (the last position the client saw, e.g. from a query
    /// parameter of its reconnecting handshake), as [`ChannelLayer::recover`]: the events it
    /// missed, for the consumer to send before live ones, or [`Recovery::NotRecovered`] (reload
    /// the client's state another way). Call it after joining the group. From then on, live
    /// events of that stream at or before the position answered with (either way) are skipped by
    /// this connection: they were in the recovered events or in the state the consumer reloads,
    /// so nothing is shown twice and nothing falls between the two.
    ///
    /// To learn where a stream is without recovering (a first connection), pass a position of
    /// no epoch (`StreamPosition { epoch: String::new(), offset: 0 }`): the answer is
    /// `NotRecovered` with the stream's position, and the skip holds as above.
    ///
    /// ```
    /// use switchboard::consumer::{Context, WebSocketConsumer};
    /// use switchboard::layer::{Recovery, StreamPosition};
    /// use switchboard::websocket::Message;
    ///
    /// struct Feed;
    ///
    /// #[switchboard::async_trait]
    /// impl WebSocketConsumer for Feed {
    ///     async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
    ///         // `?since=<epoch>:<offset>`, as the client kept it from the last event it saw.
    ///         let since: Option<StreamPosition> =
    ///             ctx.scope().query_param("since").and_then(|since| since.parse().ok());
    ///         ctx.group_add("feed").await?;
    ///         ctx.accept().await?;
    ///         if let Some(since) = since {
    ///             match ctx.recover("feed", &since).await? {
    ///                 Recovery::Recovered { events, .. } => {
    ///                     for event in events {
    ///                         ctx.feed_text(event.to_text_with_position()).await?;
    ///                     }
    ///                     ctx.flush().await?;
    ///                 }
    ///                 _ => ctx.send_text(r#"{"type":"reload"}"#).await?,
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    ///
    ///     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
    ///         Ok(())
    ///     }
    ///
    ///     fn forwards_event(&self, _: &str) -> bool {
    ///         true
    ///     }
    ///
    ///     fn forwards_positions(&self) -> bool {
    ///         true
    ///     }
    /// }
    ///
    /// let router = switchboard::routing::UrlRouter::new().route("/ws/feed/", || Feed);
    /// # drop(router);
    /// ```
    ///
    /// [`ChannelLayer::recover`]: crate::layer::ChannelLayer::recover
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::recover`].
    pub async fn recover(
        &mut self,
        group: &str,
        since: &StreamPosition,
    ) -> Result<Recovery, LayerError> {
        let recovery = self.channel.channel_layer().recover(group, since).await?;
        if let Some(through) = recovery.position() {
            match self
                .recovered_through
                .iter_mut()
                .find(|mark| mark.epoch == through.epoch)
            {
                Some(mark) => mark.offset = mark.offset.max(through.offset),
                None => self.recovered_through.push(through.clone()),
            }
        }
        Ok(recovery)
    }

    /// Whether `event` was already given back by [`recover`](Self::recover) (or is part of what
    /// it answered `NotRecovered` at). A stream's events reach a member in offset order, so the
    /// first one past a mark means no later one can be at or before it: the mark is dropped, and
    /// the per-event check is back to an empty `Vec`.
    pub(crate) fn was_recovered(&mut self, event: &Event) -> bool {
        if self.recovered_through.is_empty() {
            return false;
        }
        let Some(position) = event.position() else {
            return false;
        };
        let Some(at) = self
            .recovered_through
            .iter()
            .position(|mark| mark.epoch == position.epoch)
        else {
            return false;
        };
        if position.offset <= self.recovered_through[at].offset {
            return true;
        }
        self.recovered_through.swap_remove(at);
        false
    }

    /// The connection's scope: path, headers, `url_route`, extensions from middleware.
    pub fn scope(&self) -> &Scope {
        &self.scope
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

    /// Refuses the handshake with HTTP `status` instead of accepting it: 404 for a room that does
    /// not exist, 401 without credentials, 429 for too many tries — where
    /// [`close`](Self::close) before accepting always answers 403 (as Channels does). Only before
    /// [`accept`](Self::accept); the client sees the status (over HTTP/2, on its stream), and
    /// the refusal is counted by it in [`Stats::refused`](crate::Stats::refused). A status that
    /// is not a client or server error (4xx, 5xx) is answered as 403: anything else could read as
    /// an accepted WebSocket.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::AlreadyAnswered`] after an accept, a close or an earlier refusal.
    #[doc(alias = "deny")]
    pub fn reject(&mut self, status: StatusCode) -> Result<(), WebSocketError> {
        let status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::FORBIDDEN
        };
        if self.refuse(status) {
            Ok(())
        } else {
            Err(WebSocketError::AlreadyAnswered)
        }
    }

    /// Whether the connection is accepted and not closing: sends will be attempted.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Accepts the handshake (HTTP 101) with no subprotocol.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::AlreadyAnswered`] after an earlier accept or close;
    /// [`WebSocketError::Closed`] if the client left during the handshake.
    pub async fn accept(&mut self) -> Result<(), WebSocketError> {
        self.accept_with(AcceptOptions::new()).await
    }

    /// Accepts the handshake with `protocol`, one of the client's
    /// [`Scope::subprotocols`].
    ///
    /// # Errors
    ///
    /// [`WebSocketError::UnrequestedSubprotocol`] if the client did not ask for it (the handshake
    /// stays pending); otherwise as [`accept`](Self::accept).
    pub async fn accept_subprotocol(&mut self, protocol: &str) -> Result<(), WebSocketError> {
        self.accept_with(AcceptOptions::new().subprotocol(protocol))
            .await
    }

    /// Accepts the handshake with the given options.
    ///
    /// # Errors
    ///
    /// As [`accept_subprotocol`](Self::accept_subprotocol).
    pub async fn accept_with(&mut self, options: AcceptOptions) -> Result<(), WebSocketError> {
        if let Some(protocol) = &options.subprotocol {
            if !self.scope.subprotocols.iter().any(|p| p == protocol) {
                return Err(WebSocketError::UnrequestedSubprotocol(protocol.clone()));
            }
        }
        let pending = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Pending(pending) => pending,
            other => {
                self.phase = other;
                return Err(WebSocketError::AlreadyAnswered);
            }
        };
        // On failure the client is gone and the phase stays `Closed`.
        let socket = connection::accept(pending, options.subprotocol, options.headers).await?;
        self.phase = Phase::Open(socket);
        Ok(())
    }

    /// Sends a text message; it is written to the socket at once.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::NotAccepted`] before accept; [`WebSocketError::Closed`] once closing or
    /// closed; [`WebSocketError::Transport`] if the write fails (the connection then ends).
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), WebSocketError> {
        self.send_frame(tungstenite::Message::Text(text.into().into_tungstenite()))
            .await
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text).
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) -> Result<(), WebSocketError> {
        self.send_frame(tungstenite::Message::Binary(bytes.into()))
            .await
    }

    /// Serializes `value` and sends it as a text message.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::Json`] if it does not serialize; otherwise as
    /// [`send_text`](Self::send_text).
    pub async fn send_json<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), WebSocketError> {
        let text = serde_json::to_string(value)?;
        self.send_text(text).await
    }

    pub(crate) async fn send_frame(
        &mut self,
        frame: tungstenite::Message,
    ) -> Result<(), WebSocketError> {
        let socket = match &mut self.phase {
            Phase::Open(socket) => socket,
            Phase::Pending(_) => return Err(WebSocketError::NotAccepted),
            _ => return Err(WebSocketError::Closed),
        };
        let written = connection::Write::send(socket, frame, self.write_timeout).await;
        self.unflushed += 1; // the flush writes out what was buffered too
        if matches!(written, Some(Ok(()))) {
            self.count_sent();
        }
        self.settle_write(written)
    }

    /// Ends the connection after a failed or timed-out write.
    fn settle_write(
        &mut self,
        written: Option<Result<(), tungstenite::Error>>,
    ) -> Result<(), WebSocketError> {
        match written {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => {
                self.phase = Phase::Closed;
                Err(transport(error))
            }
            None => {
                self.traffic.slow_clients.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    target: "switchboard::consumer",
                    channel = self.channel.channel_name(),
                    "client stopped reading: disconnected (1013)"
                );
                self.phase = Phase::Closed;
                self.dropped_with = Some(close_code::TRY_AGAIN_LATER);
                Err(WebSocketError::SlowClient)
            }
        }
    }

    /// Puts a text message in the socket's buffer without writing it out; [`flush`](Self::flush)
    /// (or any `send_*`) writes everything buffered with one write. For sending many messages
    /// at once (a history on joining): one system call instead of one each. The buffer also
    /// goes out by itself when it passes
    /// [`ServerConfig::write_buffer_size`](crate::ServerConfig::write_buffer_size) (64 KiB by
    /// default).
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text).
    pub async fn feed_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), WebSocketError> {
        let frame = tungstenite::Message::Text(text.into().into_tungstenite());
        let socket = match &mut self.phase {
            Phase::Open(socket) => socket,
            Phase::Pending(_) => return Err(WebSocketError::NotAccepted),
            _ => return Err(WebSocketError::Closed),
        };
        let written = connection::Write::feed(socket, frame, self.write_timeout).await;
        self.unflushed += 1;
        self.settle_write(written)
    }

    /// Serializes `value` and buffers it as [`feed_text`](Self::feed_text) does.
    ///
    /// # Errors
    ///
    /// As [`send_json`](Self::send_json).
    pub async fn feed_json<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), WebSocketError> {
        let text = serde_json::to_string(value)?;
        self.feed_text(text).await
    }

    /// Writes out what [`feed_text`](Self::feed_text) and [`feed_json`](Self::feed_json)
    /// buffered.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::Closed`] once closed; [`WebSocketError::Transport`] if the write fails.
    pub async fn flush(&mut self) -> Result<(), WebSocketError> {
        let socket = match &mut self.phase {
            Phase::Open(socket) => socket,
            Phase::Pending(_) => return Err(WebSocketError::NotAccepted),
            _ => return Err(WebSocketError::Closed),
        };
        let written = connection::Write::flush(socket, self.write_timeout).await;
        if matches!(written, Some(Ok(()))) {
            self.count_sent();
        }
        self.settle_write(written)
    }

    /// Adds what was written out since the last count to the server's messages sent.
    fn count_sent(&mut self) {
        if self.unflushed > 0 {
            self.traffic
                .sent
                .fetch_add(std::mem::take(&mut self.unflushed), Ordering::Relaxed);
        }
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
    /// [`WebSocketError::InvalidCloseCode`] for a code that may not be sent (e.g. 1005, 1006);
    /// [`WebSocketError::Transport`] if the close frame cannot be written.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WebSocketError> {
        if !close_code::is_sendable(code) {
            return Err(WebSocketError::InvalidCloseCode(code));
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

    /// A handle for tasks this consumer spawns: it sends to the socket and posts events back to
    /// the consumer, from any task, after the handler that made it has returned.
    pub fn handle(&mut self) -> ConnectionHandle {
        let sender = self.outbound.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(OUTBOUND_CAPACITY);
            self.outbound_receiver = Some(receiver);
            sender
        });
        ConnectionHandle {
            outbound: sender.clone(),
            channel: self.channel.clone(),
        }
    }
}

super::channel::channel_methods!(Context, channel);

fn transport(error: tungstenite::Error) -> WebSocketError {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            WebSocketError::Closed
        }
        other => WebSocketError::Transport(Box::new(other)),
    }
}

/// A cloneable handle on one connection, for tasks its consumer spawns (made by
/// [`Context::handle`]): long work runs off the handler, and reports back through the socket or as
/// an event to the consumer. Handlers stay sequential; the handle never touches the consumer.
///
/// ```
/// use switchboard::consumer::{Context, WebSocketConsumer};
/// use switchboard::websocket::Message;
///
/// #[derive(Default)]
/// struct Reports;
///
/// #[switchboard::async_trait]
/// impl WebSocketConsumer for Reports {
///     async fn receive(&mut self, ctx: &mut Context, _: Message) -> switchboard::Result<()> {
///         let handle = ctx.handle();
///         tokio::spawn(async move {
///             let report = "…an expensive report…"; // the handler has long returned
///             let _ = handle.send_text(report).await;
///             let _ = handle.post_event(&serde_json::json!({ "type": "report.done" })).await;
///         });
///         Ok(()) // the next message is handled at once
///     }
/// }
/// # drop(switchboard::routing::UrlRouter::new().route("/ws/", Reports::default));
/// ```
#[derive(Clone)]
pub struct ConnectionHandle {
    outbound: mpsc::Sender<Outbound>,
    channel: ChannelContext,
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("channel_name", &self.channel.channel_name())
            .field("closed", &self.outbound.is_closed())
            .finish()
    }
}

impl ConnectionHandle {
    async fn queue(&self, outbound: Outbound) -> Result<(), WebSocketError> {
        self.outbound
            .send(outbound)
            .await
            .map_err(|_| WebSocketError::Closed)
    }

    /// Sends a text message on the connection. Waits while 32 frames from handles are queued.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::Closed`] once the connection has ended. A frame queued just before the
    /// connection closed is dropped.
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), WebSocketError> {
        let frame = tungstenite::Message::Text(text.into().into_tungstenite());
        self.queue(Outbound::Frame(frame)).await
    }

    /// Sends a binary message on the connection.
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text).
    pub async fn send_binary(&self, bytes: impl Into<Bytes>) -> Result<(), WebSocketError> {
        self.queue(Outbound::Frame(tungstenite::Message::Binary(bytes.into())))
            .await
    }

    /// Serializes `value` and sends it as a text message.
    ///
    /// # Errors
    ///
    /// [`WebSocketError::Json`] if it does not serialize; otherwise as
    /// [`send_text`](Self::send_text).
    pub async fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), WebSocketError> {
        let text = serde_json::to_string(value)?;
        self.send_text(text).await
    }

    /// Closes the connection with `code` and `reason`, as [`Context::close`].
    ///
    /// # Errors
    ///
    /// [`WebSocketError::InvalidCloseCode`] for a code that may not be sent;
    /// [`WebSocketError::Closed`] once the connection has ended.
    pub async fn close(&self, code: u16, reason: &str) -> Result<(), WebSocketError> {
        if !close_code::is_sendable(code) {
            return Err(WebSocketError::InvalidCloseCode(code));
        }
        self.queue(Outbound::Close(code, reason.to_owned())).await
    }

    /// Posts `event` to the consumer's own channel: its `event` handler runs with it, in turn
    /// with the other handlers. Frames this handle sent before go out before that handler runs.
    ///
    /// # Errors
    ///
    /// As [`ChannelContext::send_to_channel`]; once the connection has ended the event is
    /// dropped and counted by the layer.
    pub async fn post_event<T: Serialize + ?Sized>(
        &self,
        event: &T,
    ) -> Result<(), crate::layer::LayerError> {
        self.channel
            .send_to_channel(self.channel.channel_name(), event)
            .await
    }

    /// Whether the connection has ended (sends will fail).
    pub fn is_closed(&self) -> bool {
        self.outbound.is_closed()
    }

    /// Waits until the connection has ended (its `disconnect` has run or is running), e.g. to
    /// stop work nobody will see.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closed(&self) {
        self.outbound.closed().await;
    }
}
