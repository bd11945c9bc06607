//! [`AppService`]: a switchboard application as a tower service, mounted in a host's own server
//! (`axum::serve`, hyper-util), and the [`ShutdownHandle`] that drains it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ServerConfig;
use super::dispatch::{Dispatcher, Peer};
use super::stats::{ServerCounters, StatsHandle};
use crate::application::BoxFuture;
use crate::body::{Body, BoxError};
use crate::layer::{ChannelLayer, LayerHandle};
use crate::routing::ProtocolTypeRouter;

/// A switchboard application as a tower [`Service`](tower_service::Service) over
/// `http::Request<B>`, for a server that someone else runs: an app's own `axum::serve`, or
/// hyper-util's server. It answers WebSocket handshakes itself (taking the connection over with
/// hyper's upgrade, which `axum::serve` supports) and sends other requests to the application's
/// HTTP side, with the same extensions as [`serve`](crate::serve) gives them (the
/// [`LayerHandle`], the [`StatsHandle`], a [`ClientInfo`](crate::scope::ClientInfo)).
///
/// Made from a [`ProtocolTypeRouter`], or from any WebSocket application (a
/// [`UrlRouter`](crate::routing::UrlRouter), with its middleware) for a WebSocket-only service.
/// Configure it before mounting it (each setter starts the service anew); clones share
/// everything: layer, counts, connections.
///
/// ```
/// use switchboard::routing::UrlRouter;
/// use switchboard::AppService;
/// # use switchboard::consumer::{Context, WebSocketConsumer};
/// # use switchboard::websocket::Message;
/// # #[derive(Default)] #[allow(dead_code)] struct Chat;
/// # #[switchboard::async_trait]
/// # impl WebSocketConsumer for Chat {
/// #     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> { Ok(()) }
/// # }
///
/// # #[allow(dead_code)]
/// # async fn run() -> std::io::Result<()> {
/// let websockets = AppService::new(UrlRouter::new().route("/ws/chat/{room}/", Chat::default));
/// let shutdown = websockets.shutdown_handle();
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .route_service("/ws/chat/{room}/", websockets);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown({
///         let shutdown = shutdown.clone();
///         async move {
///             switchboard::shutdown_signal().await;
///             shutdown.shutdown(); // WebSockets close with 1001, event streams end
///         }
///     })
///     .await?;
/// shutdown.wait().await; // their `disconnect`s have run
/// # Ok(()) }
/// ```
///
/// # What the host owns
///
/// The host server owns the listener, the HTTP connections and their limits (header timeouts,
/// HTTP/2 settings, TLS); switchboard owns each WebSocket once upgraded: [`ServerConfig`]'s
/// WebSocket settings (message and frame sizes, buffers, keep-alive pings, the slow-client
/// policy, handshake and close timeouts, `max_connections`, `trusted_proxies`, `root_path`) apply
/// as under [`serve`](crate::serve); `header_read_timeout` and `shutdown_timeout` are the host's
/// business (`shutdown_timeout` bounds [`ShutdownHandle::wait`]). The scope's client address
/// comes from axum's `ConnectInfo<SocketAddr>` (feature `axum`, with
/// `into_make_service_with_connect_info`); without it, it is `None`.
///
/// The host must hand upgraded connections over: `axum::serve` does; hyper-util's
/// `server::conn::auto::Builder` does with `serve_connection_with_upgrades` (wrap the service in
/// its `TowerToHyperService`); hyper's own server does with `serve_connection(..).with_upgrades()` (without it the client gets its 101 and then a closed
/// socket, logged at `WARN`); a host that gives requests no upgrade at all gets 500.
///
/// Upgraded connections are no longer the host's: `axum::serve`'s graceful shutdown does not
/// wait for them. Call [`ShutdownHandle::shutdown`] when the host's shutdown begins and
/// [`ShutdownHandle::wait`] after it ends, as above.
#[derive(Clone)]
pub struct AppService {
    inner: Arc<Dispatcher>,
}

impl std::fmt::Debug for AppService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AppService").field(&self.inner).finish()
    }
}

impl AppService {
    /// Serves `app` with an in-memory channel layer ([`LayerHandle::in_memory`]) and the default
    /// [`ServerConfig`].
    pub fn new(app: impl Into<ProtocolTypeRouter>) -> Self {
        Self {
            inner: Arc::new(Dispatcher::new(
                app.into(),
                LayerHandle::in_memory(),
                ServerConfig::default(),
                Arc::new(ServerCounters::default()),
            )),
        }
    }

    fn rebuild(self, layer: LayerHandle, config: ServerConfig) -> Self {
        let old = &self.inner;
        Self {
            inner: Arc::new(Dispatcher::new(
                old.app.clone(),
                layer,
                config,
                old.counters.clone(),
            )),
        }
    }

    /// Gives consumers `layer`; HTTP handlers find the same one in their requests' extensions.
    #[must_use]
    pub fn channel_layer(self, layer: impl ChannelLayer) -> Self {
        let config = self.inner.config.clone();
        self.rebuild(layer.into_handle(), config)
    }

    /// Replaces the settings (see "What the host owns" above).
    #[must_use]
    pub fn config(self, config: ServerConfig) -> Self {
        let layer = self.inner.env.layer.clone();
        self.rebuild(layer, config)
    }

    /// The channel layer the service gives its consumers and handlers.
    pub fn layer(&self) -> &LayerHandle {
        &self.inner.env.layer
    }

    /// A handle on the service's counts (WebSockets, handshakes, the layer's); take it after
    /// [`channel_layer`](Self::channel_layer).
    pub fn stats(&self) -> StatsHandle {
        self.inner.stats.clone()
    }

    /// A handle that shuts the service's connections down (see the type's docs).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            token: self.inner.env.shutdown.clone(),
            tracker: self.inner.tracker.clone(),
            timeout: self.inner.config.shutdown_timeout,
        }
    }

    pub(crate) fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.inner
    }
}

impl<B> tower_service::Service<Request<B>> for AppService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let peer = Peer {
            client: connect_info(&request),
            local: None,
            secure: request.uri().scheme() == Some(&http::uri::Scheme::HTTPS),
        };
        Box::pin(async move { Ok(inner.handle(request, peer).await) })
    }
}

/// The client's address, where the host server put it in the request.
fn connect_info<B>(request: &Request<B>) -> Option<std::net::SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0);
    }
    request.extensions().get::<std::net::SocketAddr>().copied()
}

/// Shuts down the WebSockets and event streams of an [`AppService`] (or of a server), made by
/// [`AppService::shutdown_handle`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    token: CancellationToken,
    tracker: TaskTracker,
    timeout: Duration,
}

impl ShutdownHandle {
    /// Starts the shutdown: every open WebSocket is closed with 1001 (Going Away) and its
    /// `disconnect` runs; event streams end; new handshakes are refused with 503. Returns at once.
    pub fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until every WebSocket the service served is over, at most
    /// [`ServerConfig::shutdown_timeout`]; returns whether they all were. Call it after
    /// [`shutdown`](Self::shutdown) (before it, it waits for the timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn wait(&self) -> bool {
        let done = tokio::time::timeout(self.timeout, self.tracker.wait())
            .await
            .is_ok();
        if !done {
            tracing::warn!(target: "switchboard::server", open = self.tracker.len(), "shutdown timeout passed with WebSockets still open");
        }
        done
    }
}
