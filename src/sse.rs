//! Server-sent events: an HTTP response held open as `text/event-stream`, fed by a consumer that
//! joins groups and receives layer events the way a WebSocket consumer does — for clients that
//! cannot use WebSocket (notifications, dashboards, proxies that strip upgrades).
//!
//! [`respond`] runs an [`SseConsumer`] for one request and returns the streaming response; call
//! it from any HTTP handler, e.g. axum's:
//!
//! ```
//! use axum::extract::{Path, State};
//! use serde::Deserialize;
//! use switchboard::layer::InMemoryChannelLayer;
//! use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};
//!
//! struct Notifications { user: String }
//!
//! #[derive(Deserialize)]
//! #[serde(tag = "type", rename = "notify")]
//! struct Notify { text: String }
//!
//! #[switchboard::async_trait]
//! impl SseConsumer for Notifications {
//!     type Event = Notify;
//!
//!     async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
//!         ctx.group_add(&format!("user_{}", self.user)).await?;
//!         Ok(())
//!     }
//!
//!     async fn event(&mut self, ctx: &mut SseContext, n: Notify) -> switchboard::Result<()> {
//!         ctx.send(SseEvent::data(n.text).event("notify")).await?;
//!         Ok(())
//!     }
//! }
//!
//! let app: axum::Router = axum::Router::new()
//!     .route(
//!         "/events/{user}",
//!         axum::routing::get(
//!             |Path(user): Path<String>, State(layer): State<InMemoryChannelLayer>, parts: http::request::Parts| async move {
//!                 sse::respond(Notifications { user }, &parts, layer).await
//!             },
//!         ),
//!     )
//!     .with_state(InMemoryChannelLayer::new());
//! # drop(app);
//! ```

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::consumer::{decode_event, guarded, ChannelContext};
use crate::layer::{ChannelLayer, ChannelReceiver};
use crate::scope::{proxy, ConnectionMeta, Protocol, Scope};

/// How often a comment line is sent on an idle stream, so that proxies keep it open and a
/// departed client is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Encoded events buffered between the consumer and the client before `send` waits.
const BUFFERED_EVENTS: usize = 64;

/// One server-sent event: `data` (split into `data:` lines), an optional `id` (the client sends
/// the last one back as `Last-Event-ID` when it reconnects), `event` name and `retry` delay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
    retry: Option<Duration>,
}

impl SseEvent {
    /// An event carrying `data` (any text; newlines become several `data:` lines).
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// An event carrying `value` as JSON.
    ///
    /// # Errors
    ///
    /// If `value` does not serialize.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::data(serde_json::to_string(value)?))
    }

    /// Sets the event's id (line breaks are removed).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event's name, for `addEventListener(name, ..)` (line breaks are removed).
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(name.into());
        self
    }

    /// Tells the client how long to wait before reconnecting.
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = Some(delay);
        self
    }

    /// The event in the `text/event-stream` format.
    pub fn encode(&self) -> Bytes {
        let one_line = |text: &str| text.replace(['\r', '\n'], "");
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(&one_line(id));
            out.push('\n');
        }
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(&one_line(event));
            out.push('\n');
        }
        if let Some(retry) = self.retry {
            out.push_str(&format!("retry: {}\n", retry.as_millis()));
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            out.push('\n');
        }
        out.push('\n');
        Bytes::from(out)
    }
}

/// An error from [`SseContext::send`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// The client has gone (or the stream was refused).
    #[error("the event stream is closed")]
    Closed,
}

/// A consumer behind one event stream: `connect` (join groups, send history, or refuse),
/// `event` for each layer event, `disconnect` when the client has gone.
#[async_trait]
pub trait SseConsumer: Send + 'static {
    /// The layer events it takes, usually a `#[serde(tag = "type")]` enum; one that does not
    /// parse is logged at `WARN` and dropped.
    type Event: DeserializeOwned + Send;

    /// Runs before the response starts. Join groups here, send what the client missed since
    /// [`SseContext::last_event_id`], or [`reject`](SseContext::reject) the request.
    ///
    /// # Errors
    ///
    /// An error (or panic) answers the request with 500.
    async fn connect(&mut self, ctx: &mut SseContext) -> crate::Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Runs for each layer event sent to this consumer's channel or its groups.
    ///
    /// # Errors
    ///
    /// An error (or panic) ends the stream.
    async fn event(&mut self, ctx: &mut SseContext, event: Self::Event) -> crate::Result<()>;

    /// Runs once when the stream has ended (client gone, server shutdown, handler error). The
    /// consumer has left its groups already.
    ///
    /// # Errors
    ///
    /// An error is logged.
    async fn disconnect(&mut self, ctx: &mut SseContext) -> crate::Result<()> {
        let _ = ctx;
        Ok(())
    }
}

enum Output {
    /// During `connect`: events wait for the response to start.
    Buffered(Vec<Bytes>),
    Refused(StatusCode),
    Streaming(mpsc::Sender<Bytes>),
}

/// What an [`SseConsumer`] uses: the request's scope, `send`, and [`ChannelContext`]'s methods
/// for groups and the layer (`ctx.group_add(..)`, `ctx.group_send(..)`).
pub struct SseContext {
    scope: Scope,
    channel: ChannelContext,
    output: Output,
}

impl std::fmt::Debug for SseContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseContext")
            .field("path", &self.scope.path)
            .field("channel_name", &self.channel.channel_name())
            .finish_non_exhaustive()
    }
}

crate::consumer::channel_methods!(SseContext, channel);

impl SseContext {
    /// The request's scope (protocol `Http`).
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The `Last-Event-ID` the client sent when reconnecting: the id of the last event it got.
    pub fn last_event_id(&self) -> Option<&str> {
        self.scope.header("last-event-id")
    }

    /// Sends `event` to the client (during `connect`, once the response starts). Waits while 64
    /// events are buffered for a slow client.
    ///
    /// # Errors
    ///
    /// [`SseError::Closed`] once the client has gone, or after [`reject`](Self::reject).
    pub async fn send(&mut self, event: SseEvent) -> Result<(), SseError> {
        match &mut self.output {
            Output::Buffered(events) => {
                events.push(event.encode());
                Ok(())
            }
            Output::Streaming(sender) => sender
                .send(event.encode())
                .await
                .map_err(|_| SseError::Closed),
            Output::Refused(_) => Err(SseError::Closed),
        }
    }

    /// Sends `value` as a JSON event.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); a value that does not serialize is a bug in the caller and
    /// panics in debug builds, and is sent as `null` otherwise.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SseError> {
        let data = serde_json::to_string(value).unwrap_or_else(|error| {
            debug_assert!(false, "SSE value does not serialize: {error}");
            "null".to_owned()
        });
        self.send(SseEvent::data(data)).await
    }

    /// Refuses the request with `status` instead of starting the stream (only in `connect`).
    pub fn reject(&mut self, status: StatusCode) {
        if let Output::Buffered(_) = self.output {
            self.output = Output::Refused(status);
        }
    }
}

/// The body of an event stream: what the consumer sends, as it sends it.
pub struct SseBody {
    events: Option<mpsc::Receiver<Bytes>>,
    once: Option<Bytes>,
}

impl std::fmt::Debug for SseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseBody")
            .field("streaming", &self.events.is_some())
            .finish()
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if let Some(bytes) = self.once.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
        match self.events.as_mut() {
            Some(events) => events
                .poll_recv(cx)
                .map(|event| event.map(|bytes| Ok(http_body::Frame::data(bytes)))),
            None => Poll::Ready(None),
        }
    }
}

fn plain(status: StatusCode) -> Response<SseBody> {
    let text = status.canonical_reason().unwrap_or("").to_owned() + "\n";
    let mut response = Response::new(SseBody {
        events: None,
        once: Some(Bytes::from(text)),
    });
    *response.status_mut() = status;
    response
}

/// Runs `consumer` for the request described by `parts` and returns the event-stream response
/// (or the status it refused with). Served by [`serve`](crate::serve), the stream also ends at
/// server shutdown, and the scope has the client's address, scheme and host (the forwarded ones
/// from [trusted proxies](crate::ServerConfig::trusted_proxies)).
pub async fn respond<C: SseConsumer>(
    mut consumer: C,
    parts: &http::request::Parts,
    layer: impl ChannelLayer,
) -> Response<SseBody> {
    let meta = parts.extensions.get::<ConnectionMeta>().cloned();
    let (client, server) = meta.as_ref().map_or((None, None), |m| (m.client, m.server));
    let Ok(mut scope) = Scope::from_request_parts(Protocol::Http, parts, client, server) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    if let Some(meta) = &meta {
        if meta.secure {
            scope.scheme = "https";
        }
        proxy::apply(&mut scope, &meta.proxy);
    }
    let layer = layer.into_handle();
    let inbox = match layer.new_channel().await {
        Ok(inbox) => inbox,
        Err(error) => {
            tracing::error!(target: "switchboard::sse", %error, "could not make a channel for an event stream");
            return plain(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let mut ctx = SseContext {
        scope,
        channel: ChannelContext::new(inbox.name().into(), layer),
        output: Output::Buffered(Vec::new()),
    };
    if let Err(failure) = guarded(consumer.connect(&mut ctx)).await {
        failure.log("sse", "connect", "the request is answered with 500");
        return plain(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let (sender, receiver) = mpsc::channel(BUFFERED_EVENTS);
    let buffered = match std::mem::replace(&mut ctx.output, Output::Streaming(sender)) {
        Output::Refused(status) => return plain(status),
        Output::Buffered(events) => events,
        Output::Streaming(_) => Vec::new(),
    };
    let shutdown = meta.map(|m| m.shutdown);
    tokio::spawn(stream(consumer, ctx, inbox, buffered, shutdown));

    let mut response = Response::new(SseBody {
        events: Some(receiver),
        once: None,
    });
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx buffers responses unless told not to.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn stream<C: SseConsumer>(
    mut consumer: C,
    mut ctx: SseContext,
    mut inbox: ChannelReceiver,
    buffered: Vec<Bytes>,
    shutdown: Option<tokio_util::sync::CancellationToken>,
) {
    let Output::Streaming(sender) = &ctx.output else {
        return;
    };
    let sender = sender.clone();
    let shutdown = shutdown.unwrap_or_default();
    let mut open = true;
    for event in buffered {
        if sender.send(event).await.is_err() {
            open = false;
            break;
        }
    }
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    while open {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = sender.closed() => break,
            _ = keep_alive.tick() => {
                open = sender.send(Bytes::from_static(b": keep-alive\n\n")).await.is_ok();
            }
            event = inbox.recv() => {
                let Some(typed) = decode_event::<C::Event>(&event, "sse", ctx.channel_name()) else {
                    continue;
                };
                if let Err(failure) = guarded(consumer.event(&mut ctx, typed)).await {
                    failure.log("sse", "event", "ending the stream");
                    break;
                }
            }
        }
    }
    drop(inbox); // leave every group first, as WebSocket consumers do
    ctx.output = Output::Refused(StatusCode::GONE); // ends the body
    drop(sender);
    if let Err(failure) = guarded(consumer.disconnect(&mut ctx)).await {
        failure.log("sse", "disconnect", "the stream is over");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_encode_as_text_event_stream() {
        let event = SseEvent::data("line one\nline two")
            .id("7")
            .event("chat\nmessage")
            .retry(Duration::from_secs(3));
        assert_eq!(
            event.encode(),
            "id: 7\nevent: chatmessage\nretry: 3000\ndata: line one\ndata: line two\n\n"
        );
        assert_eq!(SseEvent::data("").encode(), "data: \n\n");
    }
}
