//! The server: HTTP/1.1 and WebSocket on one port, with graceful shutdown.

use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::application::{
    BoxFuture, ConnectionEnv, Handshake, HandshakeResponse, Traffic, Upgrade,
};
use crate::layer::{ChannelLayer, InMemoryChannelLayer};
use crate::routing::{status_response, HttpBody, ProtocolTypeRouter};
use crate::scope::{Protocol, Scope};

/// Server settings: timeouts and WebSocket limits. Every field has a safe default.
///
/// ```
/// use std::time::Duration;
///
/// let mut config = switchboard::ServerConfig::default();
/// config.shutdown_timeout = Duration::from_secs(30);
/// config.max_message_size = 64 << 10; // 64 KiB
/// # drop(config);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long shutdown waits for connections to close before `serve` returns anyway.
    /// Default 10 s.
    pub shutdown_timeout: Duration,
    /// How long a closing WebSocket waits for the client's close frame. Default 5 s.
    pub close_timeout: Duration,
    /// How long a client may take to send a complete request head. Default 30 s.
    pub header_read_timeout: Duration,
    /// Largest WebSocket message accepted, in bytes; larger ones close the connection with 1009.
    /// Default 1 MiB.
    pub max_message_size: usize,
    /// Largest WebSocket frame accepted, in bytes. Default 1 MiB.
    pub max_frame_size: usize,
    /// Each WebSocket's read buffer, in bytes, allocated when it is accepted. Small keeps idle
    /// connections cheap; large helps connections that receive a lot. Default 1 KiB.
    pub read_buffer_size: usize,
    /// What happens to a client that stops reading. Default: disconnected after 30 s.
    pub slow_client: SlowClientPolicy,
    /// How often an open WebSocket is pinged (keep-alive through proxies, and dead-peer
    /// detection); `None`: never. Default 20 s.
    pub ping_interval: Option<Duration>,
    /// A peer that sends nothing at all (not even the pong) within this long after a ping is
    /// dropped; its `disconnect` runs with 1006. Default 20 s.
    pub pong_timeout: Duration,
    /// How long a consumer's `connect` may take to answer the handshake; past it the client gets
    /// 503 and `disconnect` runs with 1006. Default 10 s.
    pub handshake_timeout: Duration,
    /// Open WebSockets at most; handshakes beyond it are answered with 503 (logged at `WARN`).
    /// `None`: only the process's open-file limit bounds them (each needs one). Default `None`.
    pub max_connections: Option<usize>,
    /// Reverse proxies (addresses or networks, e.g. `127.0.0.1/32`, `10.0.0.0/8`) whose
    /// `Forwarded` (RFC 7239) or `X-Forwarded-For` / `-Proto` / `-Host` headers are believed:
    /// from them, the scope's [`client`](crate::scope::Scope::client),
    /// [`scheme`](crate::scope::Scope::scheme) and [`host`](crate::scope::Scope::host) are the
    /// original client's (the right-most address of the chain that is not a trusted proxy).
    /// From anyone else those headers are ignored: a client could write anything in them.
    /// HTTP handlers get the same in a [`ClientInfo`](crate::scope::ClientInfo) extension.
    /// Default: none (uvicorn's `--forwarded-allow-ips`, daphne's `--proxy-headers`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The prefix the application is mounted under behind a proxy (ASGI's `root_path`, e.g.
    /// `/chat`): it is put in [`Scope::root_path`](crate::scope::Scope::root_path), and when a
    /// WebSocket's path starts with it, routing matches what follows (a proxy that strips the
    /// prefix works too). Default: empty.
    pub root_path: String,
}

/// What happens to a WebSocket client that stops reading (a frozen tab, a dead network).
///
/// Either way it costs bounded memory: its socket's buffers, and its channel, whose capacity
/// bounds the events waiting for it; group messages beyond that are dropped and counted in
/// [`LayerStats::dropped_full`](crate::layer::LayerStats::dropped_full). The rest of its groups
/// are not slowed: every connection writes on its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowClientPolicy {
    /// Keep the connection; drop (and count) what does not fit in its channel.
    DropMessages,
    /// Also disconnect it once a write to its socket has waited `after`: `disconnect` runs with
    /// 1013 (try again later), logged at `INFO`. No close frame is sent: the client is not
    /// reading.
    Disconnect {
        /// How long one write may wait for the client.
        after: Duration,
    },
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(30),
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            read_buffer_size: 1 << 10,
            slow_client: SlowClientPolicy::Disconnect {
                after: Duration::from_secs(30),
            },
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            max_connections: None,
            trusted_proxies: Vec::new(),
            root_path: String::new(),
        }
    }
}

impl ServerConfig {
    fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size))
    }
}

/// Serves `app` on `listener`: HTTP requests and WebSocket handshakes on the same port.
///
/// Await the returned [`Serve`] to run until an I/O error; call
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown) to stop on a signal. Consumers get an
/// [`InMemoryChannelLayer`] unless [`channel_layer`](Serve::channel_layer) says otherwise.
///
/// ```no_run
/// use switchboard::routing::ProtocolTypeRouter;
///
/// # #[allow(dead_code)]
/// # async fn run(app: ProtocolTypeRouter) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// switchboard::serve(listener, app)
///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
///     .await
/// # }
/// ```
pub fn serve(listener: TcpListener, app: ProtocolTypeRouter) -> Serve {
    Serve {
        listener,
        app,
        layer: Arc::new(InMemoryChannelLayer::new()),
        config: ServerConfig::default(),
        counters: Arc::new(ServerCounters::default()),
        #[cfg(feature = "tls")]
        tls: None,
    }
}

#[derive(Debug, Default)]
struct ServerCounters {
    /// WebSockets being served (handshake dispatched, task not finished).
    open: AtomicUsize,
    handshakes: AtomicU64,
    refused_full: AtomicU64,
    accepted: AtomicU64,
    /// Refused handshakes by HTTP status: 400 (and 405, 426), 401, 403, 404, 500, 503, other.
    refused: [AtomicU64; 7],
    traffic: Arc<Traffic>,
}

impl ServerCounters {
    fn refused(&self, status: StatusCode) {
        let slot = match status.as_u16() {
            400 | 405 | 426 => 0,
            401 => 1,
            403 => 2,
            404 => 3,
            500 => 4,
            503 => 5,
            _ => 6,
        };
        self.refused[slot].fetch_add(1, Ordering::Relaxed);
    }
}

/// Refused WebSocket handshakes since the server started, by the HTTP status they were answered
/// with, which says why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeRefusals {
    /// 400, 405, 426: not a valid WebSocket handshake (bad headers, method, version, path).
    pub bad_request: u64,
    /// 401: no credentials where `AuthMiddleware` requires them.
    pub unauthorized: u64,
    /// 403: a disallowed origin, or the consumer closed before accepting.
    pub forbidden: u64,
    /// 404: no route for the path.
    pub not_found: u64,
    /// 500: the consumer's `connect` failed or panicked, or the authenticator failed.
    pub server_error: u64,
    /// 503: `max_connections` reached, or `connect` took longer than the handshake timeout.
    pub unavailable: u64,
    /// Any other status a consumer or middleware refused with.
    pub other: u64,
}

/// A handle on a running server's counts, for metrics; made by [`Serve::stats`]. Cheap to clone
/// and to read.
#[derive(Clone)]
pub struct StatsHandle {
    counters: Arc<ServerCounters>,
    layer: Arc<dyn ChannelLayer>,
}

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatsHandle")
            .field(&self.snapshot())
            .finish()
    }
}

/// A snapshot of a server's counts: its WebSockets and its channel layer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// WebSockets open now (from the handshake being answered to the end of `disconnect`).
    pub connections: usize,
    /// WebSocket handshakes received since the server started, refused ones included.
    pub handshakes: u64,
    /// Handshakes refused with 503 because `max_connections` was reached.
    pub refused_max_connections: u64,
    /// Handshakes accepted (answered with 101).
    pub accepted: u64,
    /// Handshakes refused, by cause.
    pub refused: HandshakeRefusals,
    /// WebSocket messages (text or binary) received from clients.
    pub messages_received: u64,
    /// WebSocket messages written to clients.
    pub messages_sent: u64,
    /// Clients disconnected because they stopped reading ([`SlowClientPolicy::Disconnect`]).
    pub slow_clients_disconnected: u64,
    /// The channel layer's counts: channels, groups, memberships, dropped messages.
    pub layer: crate::layer::LayerStats,
}

impl StatsHandle {
    /// The counts now.
    pub fn snapshot(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connections: c.open.load(Ordering::Relaxed),
            handshakes: c.handshakes.load(Ordering::Relaxed),
            refused_max_connections: c.refused_full.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: HandshakeRefusals {
                bad_request: c.refused[0].load(Ordering::Relaxed),
                unauthorized: c.refused[1].load(Ordering::Relaxed),
                forbidden: c.refused[2].load(Ordering::Relaxed),
                not_found: c.refused[3].load(Ordering::Relaxed),
                server_error: c.refused[4].load(Ordering::Relaxed),
                unavailable: c.refused[5].load(Ordering::Relaxed),
                other: c.refused[6].load(Ordering::Relaxed),
            },
            messages_received: c.traffic.received.load(Ordering::Relaxed),
            messages_sent: c.traffic.sent.load(Ordering::Relaxed),
            slow_clients_disconnected: c.traffic.slow_clients.load(Ordering::Relaxed),
            layer: self.layer.stats(),
        }
    }
}

/// A server that is ready to run: await it, or add a shutdown signal first. Made by [`serve`].
#[must_use = "a server does nothing until awaited"]
pub struct Serve {
    listener: TcpListener,
    app: ProtocolTypeRouter,
    layer: Arc<dyn ChannelLayer>,
    config: ServerConfig,
    counters: Arc<ServerCounters>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("app", &self.app)
            .field("layer", &self.layer)
            .field("config", &self.config)
            .finish()
    }
}

impl Serve {
    /// Gives consumers `layer` (share a clone of it with HTTP handlers that send to groups).
    pub fn channel_layer(mut self, layer: impl ChannelLayer) -> Self {
        self.layer = Arc::new(layer);
        self
    }

    /// A handle on the server's counts (open connections, handshakes, and the channel layer's
    /// [`LayerStats`](crate::layer::LayerStats)), to read while it runs. Take it after
    /// [`channel_layer`](Self::channel_layer).
    pub fn stats(&self) -> StatsHandle {
        StatsHandle {
            counters: self.counters.clone(),
            layer: self.layer.clone(),
        }
    }

    /// Replaces the server settings.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves TLS on the port (feature `tls`): `wss://` and `https://`. Each connection's TLS
    /// handshake must end within [`ServerConfig::header_read_timeout`]; scopes say `"wss"`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The address the server listens on (useful after binding port 0).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Stops when `signal` completes: no new connections are accepted, idle HTTP connections are
    /// closed, open WebSockets are closed with 1001 (Going Away) and their `disconnect` runs, and
    /// the returned future completes when all are done or after
    /// [`ServerConfig::shutdown_timeout`].
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = BoxFuture<io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self, std::future::pending()))
    }
}

/// Completes when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
/// systemd, Docker and Kubernetes send). Give it to
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown): open WebSockets then close with
/// 1001 within [`ServerConfig::shutdown_timeout`] (the grace period).
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn run(app: switchboard::routing::ProtocolTypeRouter) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// switchboard::serve(listener, app)
///     .with_graceful_shutdown(switchboard::shutdown_signal())
///     .await
/// # }
/// ```
///
/// # Panics
///
/// If the signal handlers cannot be installed (outside a tokio runtime with signals enabled).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: shutting down");
    }
}

/// A server with a shutdown signal, made by [`Serve::with_graceful_shutdown`]. Await it.
#[must_use = "a server does nothing until awaited"]
pub struct WithGracefulShutdown<F> {
    serve: Serve,
    signal: F,
}

impl<F> std::fmt::Debug for WithGracefulShutdown<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<F> IntoFuture for WithGracefulShutdown<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = BoxFuture<io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve, self.signal))
    }
}

/// What the server tells HTTP handlers about their connection, in the request's extensions:
/// read by [`sse::respond`](crate::sse::respond).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMeta {
    pub(crate) client: SocketAddr,
    pub(crate) server: Option<SocketAddr>,
    pub(crate) shutdown: CancellationToken,
    /// Whether the connection is TLS.
    pub(crate) secure: bool,
    pub(crate) proxy: Arc<ProxySettings>,
}

/// What [`crate::proxy::apply`] needs: whom to believe, and the mount prefix.
#[derive(Debug, Default)]
pub(crate) struct ProxySettings {
    pub(crate) trusted: Vec<ipnet::IpNet>,
    pub(crate) root_path: String,
}

struct Shared {
    app: ProtocolTypeRouter,
    env: Arc<ConnectionEnv>,
    tracker: TaskTracker,
    header_read_timeout: Duration,
    max_connections: Option<usize>,
    counters: Arc<ServerCounters>,
    proxy: Arc<ProxySettings>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Gives a WebSocket's place back when its task ends, however it ends.
struct OpenConnection(Arc<ServerCounters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(serve: Serve, signal: impl Future<Output = ()>) -> io::Result<()> {
    let Serve {
        listener,
        app,
        layer,
        config,
        counters,
        #[cfg(feature = "tls")]
        tls,
    } = serve;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shared = Arc::new(Shared {
        app,
        env: Arc::new(ConnectionEnv {
            layer,
            websocket: config.websocket(),
            close_timeout: config.close_timeout,
            write_timeout: match config.slow_client {
                SlowClientPolicy::DropMessages => None,
                SlowClientPolicy::Disconnect { after } => Some(after),
            },
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            handshake_timeout: config.handshake_timeout,
            shutdown: shutdown.clone(),
            traffic: counters.traffic.clone(),
        }),
        tracker: tracker.clone(),
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        counters,
        proxy: Arc::new(ProxySettings {
            trusted: config.trusted_proxies.clone(),
            root_path: config.root_path.clone(),
        }),
        #[cfg(feature = "tls")]
        tls: tls.as_ref().map(crate::tls::TlsConfig::acceptor),
    });
    tracing::info!(target: "switchboard::server", addr = ?listener.local_addr().ok(), "listening");

    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracker.spawn(serve_connection(stream, peer, shared.clone()));
                }
                Err(error) => {
                    // Out of file descriptors or similar: log, back off, go on accepting.
                    tracing::error!(target: "switchboard::server", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    drop(listener);
    tracing::info!(target: "switchboard::server", tasks = tracker.len(), "shutting down: closing connections");
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            target: "switchboard::server",
            tasks = tracker.len(),
            "shutdown timeout passed with connections still open; returning anyway"
        );
    }
    Ok(())
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let local = stream.local_addr().ok();
    // Small frames must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.tls.clone() {
        let handshake = tokio::time::timeout(shared.header_read_timeout, acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(stream)) => serve_http(stream, peer, local, true, shared).await,
            Ok(Err(error)) => {
                tracing::debug!(target: "switchboard::server", %error, %peer, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(target: "switchboard::server", %peer, "TLS handshake timed out");
            }
        }
        return;
    }
    serve_http(stream, peer, local, false, shared).await;
}

/// Serves HTTP/1.1 (and upgrades) on `io`, plain or TLS (`secure`).
async fn serve_http<S>(
    io: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    secure: bool,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = shared.env.shutdown.clone();
    let header_read_timeout = shared.header_read_timeout;
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { shared.handle(request, peer, local, secure).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(target: "switchboard::server", %error, %peer, "HTTP connection ended with an error");
    }
}

impl Shared {
    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        secure: bool,
    ) -> Result<Response<HttpBody>, Infallible> {
        if !has_token(&request, header::UPGRADE, "websocket") {
            let mut request = request;
            let info = crate::proxy::client_info(
                request.headers(),
                request.uri(),
                peer,
                secure,
                &self.proxy,
            );
            request.extensions_mut().insert(info);
            request.extensions_mut().insert(ConnectionMeta {
                client: peer,
                server: local,
                shutdown: self.env.shutdown.clone(),
                secure,
                proxy: self.proxy.clone(),
            });
            return self.app.call_http(request).await;
        }
        Ok(self.handle_websocket(request, peer, local, secure).await)
    }

    async fn handle_websocket(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        secure: bool,
    ) -> Response<HttpBody> {
        let key = match check_handshake(&request) {
            Ok(key) => key,
            Err(refusal) => {
                tracing::debug!(target: "switchboard::server", %peer, reason = refusal.reason, "bad WebSocket handshake");
                self.counters.refused(refusal.response.status());
                return *refusal.response;
            }
        };
        let Some(app) = self.app.websocket_app() else {
            self.counters.refused(StatusCode::NOT_FOUND);
            return status_response(StatusCode::NOT_FOUND);
        };
        let upgrade = Upgrade::Hyper(hyper::upgrade::on(&mut request));
        let (parts, _body) = request.into_parts();
        let mut scope = match Scope::from_request_parts(
            Protocol::Websocket,
            &parts,
            Some(peer),
            local,
        ) {
            Ok(scope) => scope,
            Err(error) => {
                tracing::debug!(target: "switchboard::server", %peer, %error, "bad WebSocket request");
                self.counters.refused(StatusCode::BAD_REQUEST);
                return status_response(StatusCode::BAD_REQUEST);
            }
        };
        if secure {
            scope.scheme = "wss";
        }
        crate::proxy::apply(&mut scope, &self.proxy);
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        let open = self.counters.open.fetch_add(1, Ordering::Relaxed);
        let place = OpenConnection(self.counters.clone());
        if self.max_connections.is_some_and(|max| open >= max) {
            self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
            self.counters.refused(StatusCode::SERVICE_UNAVAILABLE);
            tracing::warn!(target: "switchboard::server", open, "max_connections reached: WebSocket refused with 503");
            return status_response(StatusCode::SERVICE_UNAVAILABLE);
        }
        let (respond, answer) = oneshot::channel();
        let handshake = Handshake::new(scope, respond, upgrade, self.env.clone());
        let connection = app.call(handshake);
        self.tracker.spawn(async move {
            connection.await;
            drop(place);
        });
        match answer.await {
            Ok(HandshakeResponse::Accept {
                subprotocol,
                headers,
            }) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                switching_protocols(&key, subprotocol, &headers)
            }
            Ok(HandshakeResponse::Reject { status }) => {
                self.counters.refused(status);
                status_response(status)
            }
            Err(_) => {
                tracing::error!(target: "switchboard::server", "the WebSocket application dropped a handshake without answering it");
                self.counters.refused(StatusCode::INTERNAL_SERVER_ERROR);
                status_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// Whether header `name` holds `token` in its comma-separated list (case-insensitive).
fn has_token<B>(request: &Request<B>, name: header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

struct Refusal {
    response: Box<Response<HttpBody>>,
    reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal {
        response: Box::new(status_response(status)),
        reason,
    }
}

/// Checks an `Upgrade: websocket` request against RFC 6455 §4.2.1; returns its key.
fn check_handshake<B>(request: &Request<B>) -> Result<HeaderValue, Refusal> {
    if request.method() != http::Method::GET {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket handshake must be GET",
        ));
    }
    if request.version() != http::Version::HTTP_11 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "WebSocket handshake must be HTTP/1.1",
        ));
    }
    if !has_token(request, header::CONNECTION, "upgrade") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Connection header lacks 'upgrade'",
        ));
    }
    if request
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        // RFC 6455 §4.4: answer 426 and name the version we speak.
        let mut refusal = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version",
        );
        refusal.response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(refusal);
    }
    let key = request.headers().get(header::SEC_WEBSOCKET_KEY);
    match key {
        // The key is 16 random bytes in base64: 22 characters and "==" padding.
        Some(key) if is_handshake_key(key.as_bytes()) => Ok(key.clone()),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        )),
    }
}

fn is_handshake_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn switching_protocols(
    key: &HeaderValue,
    subprotocol: Option<String>,
    extra: &http::HeaderMap,
) -> Response<HttpBody> {
    let body = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    for (name, value) in extra {
        headers.append(name.clone(), value.clone());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Some(protocol) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_keys() {
        assert!(is_handshake_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_handshake_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_handshake_key(b"dGhlIHNhbXBsZSBub25jZ!=="));
        assert!(!is_handshake_key(b""));
    }
}
