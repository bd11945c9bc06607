//! [`HttpCommunicator`]: HTTP requests through an application, in process, event streams included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::CommunicatorError;
use crate::body::Body;
use crate::layer::{ChannelLayer, LayerHandle};
use crate::routing::ProtocolTypeRouter;
use crate::server::{Dispatcher, Peer, ServerCounters};
use crate::{ServerConfig, StatsHandle};

/// Sends HTTP requests through an application in process (Channels' `HttpCommunicator`): a whole
/// [`ProtocolTypeRouter`], its HTTP side reached exactly as [`serve`](crate::serve) reaches it,
/// with the same request extensions (the [`LayerHandle`], the [`StatsHandle`], a
/// [`ClientInfo`](crate::scope::ClientInfo)). Share its layer with
/// [`WebSocketCommunicator`](super::WebSocketCommunicator)s to test an HTTP handler that sends to
/// consumers.
///
/// ```
/// use switchboard::routing::ProtocolTypeRouter;
/// use switchboard::testing::HttpCommunicator;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), switchboard::testing::CommunicatorError> {
/// let http = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
/// let client = HttpCommunicator::new(ProtocolTypeRouter::new().http(http));
/// let response = client.get("/hello").await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.text(), "hi");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpCommunicator {
    dispatcher: Arc<Dispatcher>,
    client: SocketAddr,
}

impl std::fmt::Debug for HttpCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCommunicator")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl HttpCommunicator {
    /// A communicator for `app`, with a fresh in-memory channel layer, the default
    /// [`ServerConfig`] and client address 127.0.0.1:50000.
    pub fn new(app: impl Into<ProtocolTypeRouter>) -> Self {
        Self::build(
            app.into(),
            LayerHandle::in_memory(),
            ServerConfig::default(),
        )
    }

    fn build(app: ProtocolTypeRouter, layer: LayerHandle, config: ServerConfig) -> Self {
        Self {
            dispatcher: Arc::new(Dispatcher::new(
                app,
                layer,
                config,
                Arc::new(ServerCounters::default()),
            )),
            client: SocketAddr::from(([127, 0, 0, 1], 50_000)),
        }
    }

    /// Uses `layer`, as a server given it with [`Serve::channel_layer`](crate::Serve::channel_layer).
    #[must_use]
    pub fn channel_layer(self, layer: impl ChannelLayer) -> Self {
        let client = self.client;
        let d = &self.dispatcher;
        Self {
            client,
            ..Self::build(d.app.clone(), layer.into_handle(), d.config.clone())
        }
    }

    /// Serves requests with `config`'s settings (trusted proxies, root path).
    #[must_use]
    pub fn config(self, config: ServerConfig) -> Self {
        let client = self.client;
        let d = &self.dispatcher;
        Self {
            client,
            ..Self::build(d.app.clone(), d.env.layer.clone(), config)
        }
    }

    /// Sets the client address the server sees.
    #[must_use]
    pub fn client(mut self, address: SocketAddr) -> Self {
        self.client = address;
        self
    }

    /// The channel layer requests find in their extensions.
    pub fn layer(&self) -> &LayerHandle {
        &self.dispatcher.env.layer
    }

    /// The counts requests find in their extensions.
    pub fn stats(&self) -> StatsHandle {
        self.dispatcher.stats.clone()
    }

    /// Sends `request` and returns the response as it starts: its body streams (an event
    /// stream's events arrive as they are sent; see [`EventStream`]).
    pub async fn request<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<crate::body::BoxError>,
    {
        let peer = Peer {
            client: Some(self.client),
            local: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            secure: false,
        };
        self.dispatcher.handle(request, peer).await
    }

    /// `GET path`, the whole response read.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::Protocol`] if the body fails; [`CommunicatorError::Timeout`] if it
    /// does not end within 5 s (use [`events`](Self::events) for event streams).
    ///
    /// # Panics
    ///
    /// If `path` is not a valid request target.
    pub async fn get(&self, path: &str) -> Result<TestResponse, CommunicatorError> {
        let request = Request::get(path)
            .body(Body::empty())
            .expect("a valid path");
        read_whole(self.request(request).await).await
    }

    /// `POST path` with `value` as a JSON body, the whole response read.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`CommunicatorError::Json`] if `value` does not serialize.
    ///
    /// # Panics
    ///
    /// If `path` is not a valid request target.
    pub async fn post_json<T: Serialize + ?Sized>(
        &self,
        path: &str,
        value: &T,
    ) -> Result<TestResponse, CommunicatorError> {
        let body = serde_json::to_vec(value)?;
        let request = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(Bytes::from(body)))
            .expect("a valid path");
        read_whole(self.request(request).await).await
    }

    /// `GET path` as an `EventSource` would (`Accept: text/event-stream`), for reading its
    /// server-sent events one at a time.
    ///
    /// # Panics
    ///
    /// If `path` is not a valid request target.
    pub async fn events(&self, path: &str) -> EventStream {
        let request = Request::get(path)
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Body::empty())
            .expect("a valid path");
        let response = self.request(request).await;
        let (parts, body) = response.into_parts();
        EventStream {
            status: parts.status,
            headers: parts.headers,
            body,
            buffer: BytesMut::new(),
        }
    }
}

async fn read_whole(response: Response<Body>) -> Result<TestResponse, CommunicatorError> {
    const LIMIT: Duration = Duration::from_secs(5);
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(LIMIT, body.collect())
        .await
        .map_err(|_| CommunicatorError::Timeout(LIMIT))?
        .map_err(CommunicatorError::Protocol)?
        .to_bytes();
    Ok(TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A whole HTTP response, read by [`HttpCommunicator`].
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl TestResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body's bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed from JSON.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::Json`] if it is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CommunicatorError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// A server-sent event as received: its `event` name, `id` and `data` (lines joined with `\n`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` lines.
    pub data: String,
}

/// An event stream's response, read one event at a time; made by [`HttpCommunicator::events`].
/// Dropping it is the client going away.
pub struct EventStream {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
    buffer: BytesMut,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The response's status (200 for a stream; a refusal's status otherwise).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The next event (comments, the keep-alives among them, are skipped).
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::Timeout`] if no whole event comes within `timeout`;
    /// [`CommunicatorError::Closed`] if the stream ended; [`CommunicatorError::Protocol`] if the
    /// body failed.
    pub async fn next_event(
        &mut self,
        timeout: Duration,
    ) -> Result<ReceivedEvent, CommunicatorError> {
        tokio::time::timeout(timeout, self.next_event_inner())
            .await
            .map_err(|_| CommunicatorError::Timeout(timeout))?
    }

    async fn next_event_inner(&mut self) -> Result<ReceivedEvent, CommunicatorError> {
        loop {
            while let Some(end) = find_blank_line(&self.buffer) {
                let block = self.buffer.split_to(end.0);
                let _ = self.buffer.split_to(end.1);
                if let Some(event) = parse_event(&String::from_utf8_lossy(&block)) {
                    return Ok(event);
                }
            }
            // Cancel safe: a frame is either returned whole or not taken.
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Err(CommunicatorError::Protocol(error)),
                None => return Err(CommunicatorError::Closed),
            }
        }
    }
}

/// Where the first event block ends: (its length, the length of the blank line after it).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let text = buffer;
    (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

/// One event block's fields; `None` for a block of comments alone.
fn parse_event(block: &str) -> Option<ReceivedEvent> {
    let mut event = ReceivedEvent::default();
    let mut data: Vec<&str> = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "event" => event.event = Some(value.to_owned()),
            "id" => event.id = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    event.data = data.join("\n");
    any.then_some(event)
}
