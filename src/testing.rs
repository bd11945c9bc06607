//! In-process test helpers for your consumers, as Channels' `channels.testing` (feature
//! `testing`).
//!
//! [`WebsocketCommunicator`] drives any WebSocket application — a consumer factory, a router, a
//! middleware stack — with no server and no TCP: the application runs on its own task exactly as
//! under [`serve`](crate::serve), and talks real WebSocket frames over an in-memory pipe. Give
//! several communicators one layer to test broadcasts.
//!
//! ```
//! use std::time::Duration;
//! use switchboard::consumer::{Context, WebsocketConsumer};
//! use switchboard::testing::{Received, WebsocketCommunicator};
//! use switchboard::websocket::Message;
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! #[switchboard::async_trait]
//! impl WebsocketConsumer for Echo {
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
//! let mut client = WebsocketCommunicator::new(Echo::default, "/ws/echo/");
//! client.connect().await?.expect_accepted();
//! client.send_text("hello").await?;
//! assert_eq!(client.receive(Duration::from_secs(1)).await?, Received::Text("hello".into()));
//! assert!(client.receive_nothing(Duration::from_millis(10)).await?);
//! client.disconnect(1000).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, protocol::Role};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::application::{
    ConnectionEnv, Handshake, HandshakeResponse, Upgrade, WebsocketApplication,
};
use crate::layer::{ChannelLayer, LayerHandle};
use crate::scope::{Protocol, Scope};

/// Bytes the in-memory pipe buffers in each direction before a writer waits.
const PIPE_BYTES: usize = 64 << 10;

/// How the application answered [`WebsocketCommunicator::connect`].
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

/// An error from a [`WebsocketCommunicator`] call.
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
    /// The application dropped the handshake without answering it.
    #[error("the application dropped the handshake without answering")]
    Unanswered,
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
/// `WebsocketCommunicator`). See the [module docs](self).
pub struct WebsocketCommunicator {
    app: Arc<dyn WebsocketApplication>,
    scope: Scope,
    layer: LayerHandle,
    shutdown: CancellationToken,
    client: Option<WebSocketStream<DuplexStream>>,
    /// What `receive_nothing` saw arrive, for the next `receive`.
    peeked: Option<Frame>,
    task: Option<JoinHandle<()>>,
}

type Frame = Option<Result<tungstenite::Message, tungstenite::Error>>;

impl std::fmt::Debug for WebsocketCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebsocketCommunicator")
            .field("path", &self.scope.path)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl WebsocketCommunicator {
    /// A communicator for `app` at `path` (which may carry a `?query`), with a fresh
    /// [`InMemoryChannelLayer`](crate::layer::InMemoryChannelLayer) and client address 127.0.0.1:50000.
    ///
    /// # Panics
    ///
    /// If `path` is not a valid request target.
    #[track_caller]
    pub fn new(app: impl WebsocketApplication, path: &str) -> Self {
        let parts = http::Request::get(path)
            .body(())
            .expect("a valid request path")
            .into_parts()
            .0;
        let scope = Scope::from_request_parts(
            Protocol::Websocket,
            &parts,
            Some(SocketAddr::from(([127, 0, 0, 1], 50_000))),
            Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
        )
        .expect("a UTF-8 path");
        Self {
            app: Arc::new(app),
            scope,
            layer: LayerHandle::in_memory(),
            shutdown: CancellationToken::new(),
            client: None,
            peeked: None,
            task: None,
        }
    }

    /// Uses `layer` (share one among communicators to test broadcasts).
    pub fn channel_layer(mut self, layer: impl ChannelLayer) -> Self {
        self.layer = layer.into_handle();
        self
    }

    /// Adds a request header (e.g. `Origin`, `Cookie`, `Authorization`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.scope.headers.append(name, value);
        self
    }

    /// Requests these subprotocols, in order of preference.
    pub fn subprotocols(mut self, protocols: &[&str]) -> Self {
        self.scope.subprotocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Sets the client address the scope reports.
    pub fn client(mut self, address: SocketAddr) -> Self {
        self.scope.client = Some(address);
        self
    }

    /// Starts the application and waits for its answer to the handshake.
    ///
    /// # Errors
    ///
    /// [`CommunicatorError::AlreadyConnected`] on a second call;
    /// [`CommunicatorError::Unanswered`] if the application dropped the handshake.
    pub async fn connect(&mut self) -> Result<HandshakeOutcome, CommunicatorError> {
        if self.task.is_some() {
            return Err(CommunicatorError::AlreadyConnected);
        }
        let (client_end, server_end) = tokio::io::duplex(PIPE_BYTES);
        let (respond, answer) = oneshot::channel();
        let env = Arc::new(ConnectionEnv {
            layer: self.layer.clone(),
            websocket: Default::default(),
            close_timeout: Duration::from_secs(1),
            write_timeout: None,
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            shutdown: self.shutdown.clone(),
            traffic: Arc::default(),
        });
        let handshake = Handshake::new(
            self.scope.clone(),
            respond,
            Upgrade::InProcess(server_end),
            env,
        );
        self.task = Some(tokio::spawn(self.app.call(handshake)));
        match answer.await {
            Ok(HandshakeResponse::Accept {
                subprotocol,
                headers,
            }) => {
                self.client =
                    Some(WebSocketStream::from_raw_socket(client_end, Role::Client, None).await);
                Ok(HandshakeOutcome::Accepted {
                    subprotocol,
                    headers,
                })
            }
            Ok(HandshakeResponse::Reject { status }) => Ok(HandshakeOutcome::Rejected(status)),
            Err(_) => Err(CommunicatorError::Unanswered),
        }
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
        self.shutdown.cancel();
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

    async fn wait(&mut self) -> Result<(), CommunicatorError> {
        const LIMIT: Duration = Duration::from_secs(5);
        if let Some(task) = self.task.as_mut() {
            tokio::time::timeout(LIMIT, task)
                .await
                .map_err(|_| CommunicatorError::Timeout(LIMIT))?
                .map_err(|e| CommunicatorError::Protocol(Box::new(e)))?;
            self.task = None;
        }
        Ok(())
    }
}

impl Drop for WebsocketCommunicator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
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
