//! [`WebSocketCommunicator`]: one WebSocket connection to an application, in process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::{self, protocol::Role};
use tokio_tungstenite::WebSocketStream;

use crate::application::Upgrade;
use crate::layer::{ChannelLayer, LayerHandle};
use crate::routing::ProtocolTypeRouter;
use crate::server::{Dispatcher, Peer, ServerCounters};
use crate::ServerConfig;

/// Bytes the in-memory pipe buffers in each direction before a writer waits.
const PIPE_BYTES: usize = 64 << 10;

/// How the application answered [`WebSocketCommunicator::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Upgraded (HTTP 101), with the chosen subprotocol and the extra response headers.
    Accepted {
        /// The subprotocol the application chose, if any.
        subprotocol: Option<String>,
        /// Headers the application added to the 101 response.
        headers: HeaderMap,
    },
    /// Refused with this HTTP status (403 from `close` before accept, 404 from a router, …).
    Rejected(StatusCode),
}

impl HandshakeOutcome {
    /// Asserts that the handshake was accepted and returns the chosen subprotocol.
    ///
    /// # Panics
    ///
    /// If it was rejected.
    #[track_caller]
    pub fn expect_accepted(self) -> Option<String> {
        match self {
            Self::Accepted { subprotocol, .. } => subprotocol,
            Self::Rejected(status) => panic!("handshake rejected with {status}"),
        }
    }
}

/// What the application sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A close frame: its code (1005 if it had none) and reason.
    Close {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// An error from a [`WebSocketCommunicator`] call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommunicatorError {
    /// Nothing arrived within the timeout.
    #[error("nothing received within {0:?}")]
    Timeout(Duration),
    /// The call needs an accepted connection and there is none.
    #[error("not connected")]
    NotConnected,
    /// `connect` was called twice.
    #[error("already connected")]
    AlreadyConnected,
    /// The application ended the connection (no close frame is left to read).
    #[error("the connection is closed")]
    Closed,
    /// A message was expected to be JSON text and was not.
    #[error("expected JSON text: {0}")]
    Json(#[from] serde_json::Error),
    /// A text message was expected and something else came.
    #[error("expected a text message, got {0:?}")]
    NotText(Received),
    /// The WebSocket protocol failed between the client and the application.
    #[error("WebSocket error: {0}")]
    Protocol(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Drives one WebSocket connection to an application, in process (Channels'
/// `WebSocketCommunicator`). See the [module docs](super).
///
/// The handshake goes through the same steps as under [`serve`](crate::serve): the request's
/// checks, the scope built from its headers (`Host`, `Origin`, `Sec-WebSocket-Protocol`, cookies),
/// proxy headers from [`ServerConfig::trusted_proxies`], `root_path`, `max_connections`, and the
/// WebSocket limits of the [`ServerConfig`] given with [`config`](Self::config).
#[doc(alias = "WebsocketCommunicator")]
pub struct WebSocketCommunicator {
    app: ProtocolTypeRouter,
    uri: Uri,
    headers: HeaderMap,
    client_addr: SocketAddr,
    layer: LayerHandle,
    config: ServerConfig,
    /// The server side, made by `connect`.
    dispatcher: Option<Arc<Dispatcher>>,
    client: Option<WebSocketStream<DuplexStream>>,
    /// What `receive_nothing` saw arrive, for the next `receive`.
    peeked: Option<Frame>,
}

type Frame = Option<Result<tungstenite::Message, tungstenite::Error>>;

impl std::fmt::Debug for WebSocketCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketCommunicator")
            .field("uri", &self.uri)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl WebSocketCommunicator {
    /// A communicator for `app` — a WebSocket application (a consumer factory, a router, a
    /// middleware stack) or a whole [`ProtocolTypeRouter`] — at `path` (which may carry a
    /// `?query`), with a fresh in-memory channel layer, the default [`ServerConfig`], client
    /// address 127.0.0.1:50000, and server address and `Host` 127.0.0.1:8000 (so a page the app
    /// served has origin `http://127.0.0.1:8000`, and the default
    /// [`origin_check`](ServerConfig::origin_check) lets it in).
    ///
    /// # Panics
    ///
    /// If `path` is not a valid request target.
    #[track_caller]
    pub fn new(app: impl Into<ProtocolTypeRouter>, path: &str) -> Self {
        let uri: Uri = path.parse().expect("a valid request path");
        Self {
            app: app.into(),
            uri,
            headers: HeaderMap::new(),
            client_addr: SocketAddr::from(([127, 0, 0, 1], 50_000)),
            layer: LayerHandle::in_memory(),
            config: ServerConfig::default(),
            dispatcher: None,
            client: None,
            peeked: None,
        }
    }

    /// Uses `layer` (share one among communicators to test broadcasts).
    #[must_use]
    pub fn channel_layer(mut self, layer: impl ChannelLayer) -> Self {
        self.layer = layer.into_handle();
        self
    }

    /// Serves the connection with `config`'s settings, as [`serve`](crate::serve) would.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a request header (e.g. `Host`, `Origin`, `Cookie`, `Authorization`); the scope reads
    /// it as the server's would.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Requests these subprotocols, in order of preference (the `Sec-WebSocket-Protocol` header).
    ///
    /// # Panics
    ///
    /// If a protocol is not a valid header value.
    #[must_use]
    #[track_caller]
    pub fn subprotocols(mut self, protocols: &[&str]) -> Self {
        let value = HeaderValue::from_str(&protocols.join(", ")).expect("valid subprotocol names");
        self.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        self
    }

    /// Sets the client address: the TCP peer the server sees (proxy headers from it are believed
    /// when it is in [`ServerConfig::trusted_proxies`]).
    #[must_use]
    pub fn client(mut self, address: SocketAddr) -> Self {
        self.client_addr = address;
        self
    }

    /// Sends the handshake through the application, as the server would, and returns its
    /// answer; once accepted, the connection runs on its own task.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::AlreadyConnected`] on a second call.
    pub async fn connect(&mut self) -> Result<HandshakeOutcome, CommunicatorError> {
        if self.dispatcher.is_some() {
            return Err(CommunicatorError::AlreadyConnected);
        }
        let dispatcher = Arc::new(Dispatcher::new(
            self.app.clone(),
            self.layer.clone(),
            self.config.clone(),
            Arc::new(ServerCounters::default()),
        ));
        self.dispatcher = Some(dispatcher.clone());
        let mut request = http::Request::get(self.uri.clone())
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("a valid request");
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        }
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let (client_end, server_end) = tokio::io::duplex(PIPE_BYTES);
        let peer = Peer {
            client: Some(self.client_addr),
            local: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            secure: false,
        };
        let response = dispatcher
            .handle_websocket(request, peer, Some(Upgrade::InProcess(server_end)))
            .await;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(HandshakeOutcome::Rejected(response.status()));
        }
        let mut headers = response.headers().clone();
        let subprotocol = headers
            .remove(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|p| p.to_str().ok().map(str::to_owned));
        for standard in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            headers.remove(standard);
        }
        self.client = Some(WebSocketStream::from_raw_socket(client_end, Role::Client, None).await);
        Ok(HandshakeOutcome::Accepted {
            subprotocol,
            headers,
        })
    }

    fn socket(&mut self) -> Result<&mut WebSocketStream<DuplexStream>, CommunicatorError> {
        self.client.as_mut().ok_or(CommunicatorError::NotConnected)
    }

    async fn send(&mut self, message: tungstenite::Message) -> Result<(), CommunicatorError> {
        self.socket()?.send(message).await.map_err(protocol)
    }

    /// Sends a text message to the application.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::NotConnected`] before an accepted connect; a protocol error if the
    /// application closed the connection.
    pub async fn send_text(&mut self, text: &str) -> Result<(), CommunicatorError> {
        self.send(tungstenite::Message::text(text)).await
    }

    /// Sends `value` as JSON text.
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text), and [`CommunicatorError::Json`] if it does not serialize.
    pub async fn send_json<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), CommunicatorError> {
        let text = serde_json::to_string(value)?;
        self.send(tungstenite::Message::text(text)).await
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text).
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) -> Result<(), CommunicatorError> {
        self.send(tungstenite::Message::Binary(bytes.into())).await
    }

    /// The next thing the application sent: a message, or its close frame.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::Timeout`] if nothing came within `timeout`;
    /// [`CommunicatorError::Closed`] if the connection ended with no close frame left to read.
    pub async fn receive(&mut self, timeout: Duration) -> Result<Received, CommunicatorError> {
        loop {
            let next = match self.peeked.take() {
                Some(frame) => frame,
                None => tokio::time::timeout(timeout, self.socket()?.next())
                    .await
                    .map_err(|_| CommunicatorError::Timeout(timeout))?,
            };
            let client = self.socket()?;
            return match next {
                Some(Ok(tungstenite::Message::Text(text))) => Ok(Received::Text(text.to_string())),
                Some(Ok(tungstenite::Message::Binary(bytes))) => Ok(Received::Binary(bytes)),
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    // Answer the close as a browser does, so the application's side finishes.
                    let _ = client.flush().await;
                    Ok(match frame {
                        Some(frame) => Received::Close {
                            code: frame.code.into(),
                            reason: frame.reason.to_string(),
                        },
                        None => Received::Close {
                            code: crate::websocket::close_code::NO_STATUS,
                            reason: String::new(),
                        },
                    })
                }
                Some(Ok(_)) => continue, // pings and pongs
                Some(Err(_)) | None => Err(CommunicatorError::Closed),
            };
        }
    }

    /// The next message, parsed from JSON text into `T`.
    ///
    /// # Errors
    ///
    /// As [`receive`](Self::receive); [`CommunicatorError::NotText`] for anything but text;
    /// [`CommunicatorError::Json`] if it does not parse.
    pub async fn receive_json<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, CommunicatorError> {
        match self.receive(timeout).await? {
            Received::Text(text) => Ok(serde_json::from_str(&text)?),
            other => Err(CommunicatorError::NotText(other)),
        }
    }

    /// Whether nothing arrives within `timeout` (Channels' `receive_nothing`).
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::NotConnected`] before an accepted connect. Something that did arrive
    /// is not lost: a later `receive` returns it.
    pub async fn receive_nothing(&mut self, timeout: Duration) -> Result<bool, CommunicatorError> {
        if self.peeked.is_some() {
            return Ok(false);
        }
        // `next` on a WebSocketStream is cancel safe: a timeout loses nothing.
        match tokio::time::timeout(timeout, self.socket()?.next()).await {
            Err(_) => Ok(true),
            Ok(frame) => {
                self.peeked = Some(frame);
                Ok(false)
            }
        }
    }

    /// Closes the connection from the client side with `code` and waits until the application
    /// has finished (its `disconnect` has run).
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::Timeout`] if the application does not finish within 5 s.
    pub async fn disconnect(&mut self, code: u16) -> Result<(), CommunicatorError> {
        if let Some(mut client) = self.client.take() {
            let frame = tungstenite::protocol::CloseFrame {
                code: code.into(),
                reason: "".into(),
            };
            let _ = client.close(Some(frame)).await;
            // Read to the end so the application's close reply is taken.
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(Duration::from_secs(5), client.next()).await
            {}
        }
        self.wait().await
    }

    /// Signals server shutdown to the application, reads what it sends up to its close frame,
    /// answers the close, waits until the application has finished, and returns that close
    /// (`Received::Close`, code 1001 from a consumer). Messages before the close are dropped.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::NotConnected`] before an accepted connect;
    /// [`CommunicatorError::Timeout`] if no close comes, or the application does not finish,
    /// within 5 s.
    pub async fn shutdown(&mut self) -> Result<Received, CommunicatorError> {
        const LIMIT: Duration = Duration::from_secs(5);
        self.socket()?;
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.shutdown();
        }
        let close = loop {
            if let close @ Received::Close { .. } = self.receive(LIMIT).await? {
                break close;
            }
        };
        if let Some(mut client) = self.client.take() {
            while let Ok(Some(Ok(_))) = tokio::time::timeout(LIMIT, client.next()).await {}
        }
        self.wait().await?;
        Ok(close)
    }

    /// Waits until the connection's task (its `disconnect` included) has finished.
    async fn wait(&mut self) -> Result<(), CommunicatorError> {
        const LIMIT: Duration = Duration::from_secs(5);
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.tracker.close();
            tokio::time::timeout(LIMIT, dispatcher.tracker.wait())
                .await
                .map_err(|_| CommunicatorError::Timeout(LIMIT))?;
        }
        Ok(())
    }
}

impl Drop for WebSocketCommunicator {
    /// A communicator dropped while connected shuts its connection down (close 1001), as a
    /// server stopping would.
    fn drop(&mut self) {
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.shutdown();
        }
    }
}

fn protocol(error: tungstenite::Error) -> CommunicatorError {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            CommunicatorError::Closed
        }
        other => CommunicatorError::Protocol(Box::new(other)),
    }
}
