//! Applications: what serves a connection given its scope. Routers, middleware and consumers all
//! are applications, so they nest (as ASGI applications do in Channels).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use hyper::upgrade::OnUpgrade;
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::layer::LayerHandle;
use crate::scope::Scope;

/// A boxed, `Send`, `'static` future, as applications return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Serves WebSocket connections: given a pending [`Handshake`], answers it (reject, or accept and
/// run the connection) and returns when the connection is over.
///
/// [`UrlRouter`](crate::routing::UrlRouter) is one; so is every consumer factory — any
/// `Fn() -> C` where `C:` [`WebSocketConsumer`](crate::consumer::WebSocketConsumer), such as `Chat::default` — which makes one
/// consumer per connection. Middleware implements it by wrapping another application.
pub trait WebSocketApplication: Send + Sync + 'static {
    /// Serves one connection. The server runs the returned future as the connection's own task;
    /// the handshake is answered with the first of `reject`, the consumer's accept, or — if the
    /// handshake is dropped unanswered — HTTP 500.
    fn call(&self, handshake: Handshake) -> BoxFuture<()>;
}

impl WebSocketApplication for Arc<dyn WebSocketApplication> {
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        (**self).call(handshake)
    }
}

/// A WebSocket handshake waiting for its answer: the scope, and the means to reject the
/// connection with an HTTP status or (for consumers) to accept it.
pub struct Handshake {
    scope: Scope,
    pending: PendingHandshake,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("path", &self.scope.path)
            .finish_non_exhaustive()
    }
}

/// What the server gives every connection: the channel layer, socket settings and the shutdown
/// signal.
pub(crate) struct ConnectionEnv {
    pub(crate) layer: LayerHandle,
    pub(crate) websocket: WebSocketConfig,
    pub(crate) close_timeout: Duration,
    /// With [`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy): how long a write may wait.
    pub(crate) write_timeout: Option<Duration>,
    /// Keep-alive: ping an idle peer this often, and drop it if nothing comes back within
    /// `pong_timeout` of a ping.
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) pong_timeout: Duration,
    /// How long `connect` may take to answer the handshake.
    pub(crate) handshake_timeout: Duration,
    pub(crate) shutdown: CancellationToken,
    /// Messages in and out of every connection, for the server's stats.
    pub(crate) traffic: Arc<Traffic>,
    /// The server's limit on what each client sends (a route's
    /// [`RateLimit`](crate::middleware::RateLimit) replaces it).
    pub(crate) inbound_rate_limit: Option<crate::InboundRateLimit>,
}

/// Counts of WebSocket traffic shared by a server's connections.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Messages (text or binary) received from clients.
    pub(crate) received: std::sync::atomic::AtomicU64,
    /// Messages written to clients (counted when written out, a burst at a time).
    pub(crate) sent: std::sync::atomic::AtomicU64,
    /// Clients disconnected because they stopped reading (the slow-client policy).
    pub(crate) slow_clients: std::sync::atomic::AtomicU64,
    /// Messages from clients dropped by an inbound rate limit.
    pub(crate) rate_limited: std::sync::atomic::AtomicU64,
    /// Connections closed (1008) for going on past an inbound rate limit.
    pub(crate) rate_limit_closes: std::sync::atomic::AtomicU64,
}

/// The server's side of a pending handshake.
pub(crate) struct PendingHandshake {
    pub(crate) respond: oneshot::Sender<HandshakeResponse>,
    pub(crate) upgrade: Upgrade,
    pub(crate) env: Arc<ConnectionEnv>,
}

/// Where the accepted connection's bytes will come from.
pub(crate) enum Upgrade {
    /// A real HTTP connection, handed over by hyper once the 101 is written.
    Hyper(OnUpgrade),
    /// An in-memory pipe to a test client (the `testing` module).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    InProcess(DuplexStream),
}

/// How a handshake is answered.
#[derive(Debug)]
pub(crate) enum HandshakeResponse {
    Accept {
        subprotocol: Option<String>,
        headers: HeaderMap,
    },
    Reject {
        status: StatusCode,
    },
}

impl Handshake {
    pub(crate) fn new(
        scope: Scope,
        respond: oneshot::Sender<HandshakeResponse>,
        upgrade: Upgrade,
        env: Arc<ConnectionEnv>,
    ) -> Self {
        Self {
            scope,
            pending: PendingHandshake {
                respond,
                upgrade,
                env,
            },
        }
    }

    /// The connection's scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The connection's scope, for middleware to change before passing the handshake on.
    pub fn scope_mut(&mut self) -> &mut Scope {
        &mut self.scope
    }

    /// The channel layer the server gives its consumers.
    pub fn channel_layer(&self) -> &LayerHandle {
        &self.pending.env.layer
    }

    /// Answers the handshake with `status` (e.g. 403, 404) instead of upgrading.
    pub fn reject(self, status: StatusCode) {
        self.pending.reject(status);
    }

    pub(crate) fn into_parts(self) -> (Scope, PendingHandshake) {
        (self.scope, self.pending)
    }
}

impl PendingHandshake {
    pub(crate) fn reject(self, status: StatusCode) {
        // The client may be gone already; then nobody needs the answer.
        let _ = self.respond.send(HandshakeResponse::Reject { status });
    }
}
