//! The server: HTTP/1.1, HTTP/2 and WebSocket on one port, with graceful shutdown ([`serve`]), and the
//! same application as a tower service inside a host's server ([`AppService`]).
//!
//! One idea per file: `config` (settings), `env` (settings from `SWITCHBOARD_*` variables),
//! `stats` (counts), `handshake` (RFC 6455 and RFC 8441 checks), `transport` (which HTTP a
//! connection speaks),
//! `dispatch` (one request to the application, shared by both forms), `service` (the mounted
//! form), and this file (the listener and its connections).

mod config;
mod dispatch;
mod env;
mod handshake;
mod service;
mod stats;
mod transport;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::application::BoxFuture;
use crate::layer::ChannelLayer;
use crate::routing::ProtocolTypeRouter;

pub use config::{
    Http2Config, InboundRateLimit, Rate, RateLimitPolicy, ServerConfig, SlowClientPolicy,
};
use dispatch::Http2Streams;
pub(crate) use dispatch::{Dispatcher, Peer};
pub use env::ConfigError;
pub use service::{AppService, ShutdownHandle};
#[cfg(feature = "testing")]
pub(crate) use stats::ServerCounters;
pub use stats::{HandshakeRefusals, Stats, StatsHandle};

/// Serves `app` on `listener`: HTTP requests and WebSocket handshakes on the same port.
///
/// Await the returned [`Serve`] to run until an I/O error; call
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown) to stop on a signal. Consumers and
/// HTTP handlers get an in-memory channel layer ([`LayerHandle::in_memory`](crate::layer::LayerHandle::in_memory))
/// unless [`channel_layer`](Serve::channel_layer) says otherwise; handlers find it in their
/// requests' extensions (axum: `Extension<LayerHandle>`).
///
/// To mount the application inside a server of your own (`axum::serve`), use [`AppService`].
///
/// `Serve` is a future: await it, or run it on a task of its own.
///
/// ```
/// use switchboard::routing::ProtocolTypeRouter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = tokio::spawn(switchboard::serve(listener, ProtocolTypeRouter::new()));
/// // ... the app's other work ...
/// server.abort();
/// # Ok(()) }
/// ```
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
        listener: Some(listener),
        service: AppService::new(app),
        #[cfg(feature = "tls")]
        tls: None,
        running: None,
    }
}

/// A server that is ready to run: a future to await (or `tokio::spawn`), or add a shutdown
/// signal first. Made by [`serve`]. It starts listening when first polled.
#[must_use = "a server does nothing until awaited or spawned"]
pub struct Serve {
    listener: Option<TcpListener>,
    service: AppService,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
    /// The running server, once polled.
    running: Option<BoxFuture<io::Result<()>>>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("service", &self.service)
            .finish()
    }
}

impl Serve {
    /// Gives consumers `layer`; HTTP handlers find the same one in their requests' extensions
    /// (axum: `Extension<LayerHandle>`).
    pub fn channel_layer(mut self, layer: impl ChannelLayer) -> Self {
        self.service = self.service.channel_layer(layer);
        self
    }

    /// A handle on the server's counts (open connections, handshakes, and the channel layer's
    /// [`LayerStats`](crate::layer::LayerStats)), to read while it runs. Take it after
    /// [`channel_layer`](Self::channel_layer). HTTP handlers find it in their requests'
    /// extensions too.
    pub fn stats(&self) -> StatsHandle {
        self.service.stats()
    }

    /// Replaces the server settings.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.service = self.service.config(config);
        self
    }

    /// Serves TLS on the port (feature `tls`): `wss://` and `https://`. Each connection's TLS
    /// handshake must end within [`ServerConfig::header_read_timeout`]; scopes say `"wss"`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The address the server listens on (useful after binding port 0).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`]; once the server runs, it has handed its listener over and
    /// answers `ErrorKind::Other`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::other("the server is running")),
        }
    }

    /// Stops when `signal` completes: no new connections are accepted, idle HTTP connections are
    /// closed, open WebSockets are closed with 1001 (Going Away) and their `disconnect` runs, and
    /// the returned future completes when all are done or after
    /// [`ServerConfig::shutdown_timeout`].
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: Some((self, Box::pin(signal))),
            running: None,
        }
    }
}

impl Future for Serve {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.running.is_none() {
            let Some(listener) = self.listener.take() else {
                return Poll::Ready(Err(io::Error::other(
                    "the server was polled after it ended",
                )));
            };
            let running = run(
                listener,
                self.service.clone(),
                #[cfg(feature = "tls")]
                self.tls.take(),
                std::future::pending(),
            );
            self.running = Some(Box::pin(running));
        }
        let poll = self
            .running
            .as_mut()
            .map_or(Poll::Pending, |r| r.as_mut().poll(cx));
        if poll.is_ready() {
            self.running = None;
        }
        poll
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

/// A server with a shutdown signal, made by [`Serve::with_graceful_shutdown`]: a future to await
/// (or `tokio::spawn`).
#[must_use = "a server does nothing until awaited or spawned"]
pub struct WithGracefulShutdown {
    serve: Option<(Serve, BoxFuture<()>)>,
    running: Option<BoxFuture<io::Result<()>>>,
}

impl std::fmt::Debug for WithGracefulShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve.as_ref().map(|(serve, _)| serve))
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl Future for WithGracefulShutdown {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((mut serve, signal)) = self.serve.take() {
            let Some(listener) = serve.listener.take() else {
                return Poll::Ready(Err(io::Error::other("the server was already run")));
            };
            let running = run(
                listener,
                serve.service.clone(),
                #[cfg(feature = "tls")]
                serve.tls.take(),
                signal,
            );
            self.running = Some(Box::pin(running));
        }
        let Some(running) = self.running.as_mut() else {
            return Poll::Ready(Err(io::Error::other(
                "the server was polled after it ended",
            )));
        };
        let poll = running.as_mut().poll(cx);
        if poll.is_ready() {
            self.running = None;
        }
        poll
    }
}

/// What every connection of a [`serve`] server shares.
struct Listening {
    dispatcher: Arc<Dispatcher>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

async fn run(
    listener: TcpListener,
    service: AppService,
    #[cfg(feature = "tls")] tls: Option<crate::tls::TlsConfig>,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let dispatcher = service.dispatcher().clone();
    let tracker = dispatcher.tracker.clone();
    let shutdown_timeout = dispatcher.config.shutdown_timeout;
    let shared = Arc::new(Listening {
        #[cfg(feature = "tls")]
        tls: tls
            .as_ref()
            .map(|tls| tls.acceptor(dispatcher.config.http2.is_some())),
        dispatcher,
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
    shared.dispatcher.shutdown();
    if tokio::time::timeout(shutdown_timeout, tracker.wait())
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

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Listening>) {
    let local = stream.local_addr().ok();
    // Small frames must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let origin = Peer {
        client: Some(peer),
        local,
        secure: false,
    };
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.tls.clone() {
        let timeout = shared.dispatcher.config.header_read_timeout;
        let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
        let shutdown = shared.dispatcher.env.shutdown.clone();
        let handshake = tokio::select! {
            handshake = handshake => handshake,
            // Nothing asked yet: nothing to finish.
            () = shutdown.cancelled() => return,
        };
        match handshake {
            Ok(Ok(stream)) => {
                let origin = Peer {
                    secure: true,
                    ..origin
                };
                // ALPN decides; a client that negotiated nothing may still send HTTP/2's preface.
                let speaks = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Some(transport::Speaks::Http2),
                    Some(_) => Some(transport::Speaks::Http1),
                    None => None,
                };
                serve_http(stream, speaks, origin, shared.dispatcher.clone()).await;
            }
            Ok(Err(error)) => {
                tracing::debug!(target: "switchboard::server", %error, %peer, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(target: "switchboard::server", %peer, "TLS handshake timed out");
            }
        }
        return;
    }
    serve_http(stream, None, origin, shared.dispatcher.clone()).await;
}

/// Serves HTTP/1.1 (and upgrades) or HTTP/2 (and extended CONNECTs) on `io`, plain or TLS
/// (`origin.secure`): as `speaks` says, or, when it is `None`, as the first bytes say.
async fn serve_http<S>(
    io: S,
    speaks: Option<transport::Speaks>,
    origin: Peer,
    dispatcher: Arc<Dispatcher>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = &dispatcher.config;
    let (speaks, io) = match (speaks, &config.http2) {
        (Some(speaks), _) => (speaks, transport::Prefixed::empty(io)),
        (None, None) => (transport::Speaks::Http1, transport::Prefixed::empty(io)),
        (None, Some(_)) => {
            // A client that connects and sends nothing is bound by the header read timeout
            // here as in HTTP/1.1's head (a peek with no timeout would hold its socket forever).
            let first_bytes =
                tokio::time::timeout(config.header_read_timeout, transport::sniff(io));
            let shutdown = dispatcher.env.shutdown.clone();
            let first_bytes = tokio::select! {
                read = first_bytes => read,
                // Nothing asked yet: nothing to finish.
                () = shutdown.cancelled() => return,
            };
            match first_bytes {
                Ok(Ok(sniffed)) => sniffed,
                Ok(Err(error)) => {
                    tracing::debug!(target: "switchboard::server", %error, peer = ?origin.client, "connection failed before its first request");
                    return;
                }
                Err(_) => {
                    tracing::debug!(target: "switchboard::server", peer = ?origin.client, "no request within the header read timeout: connection closed");
                    return;
                }
            }
        }
    };
    match (speaks, config.http2) {
        (transport::Speaks::Http2, Some(http2)) => serve_http2(io, http2, origin, dispatcher).await,
        _ => serve_http1(io, origin, dispatcher).await,
    }
}

async fn serve_http1<S>(io: S, origin: Peer, dispatcher: Arc<Dispatcher>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = dispatcher.env.shutdown.clone();
    let header_read_timeout = dispatcher.config.header_read_timeout;
    let service = hyper::service::service_fn(move |request| {
        let dispatcher = dispatcher.clone();
        async move { Ok::<_, std::convert::Infallible>(dispatcher.handle(request, origin).await) }
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
        tracing::debug!(target: "switchboard::server", %error, peer = ?origin.client, "HTTP connection ended with an error");
    }
}

async fn serve_http2<S>(io: S, http2: Http2Config, origin: Peer, dispatcher: Arc<Dispatcher>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = dispatcher.env.shutdown.clone();
    // This connection's streams: its WebSockets, for `max_websockets_per_connection`, and all
    // of them, for `idle_timeout`.
    let streams = Http2Streams::new(http2.max_websockets_per_connection);
    let executor = transport::TrackedExecutor(dispatcher.tracker.clone());
    let carried = streams.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
        let dispatcher = dispatcher.clone();
        let stream = carried.begin_stream();
        request.extensions_mut().insert(carried.clone());
        async move {
            let response = dispatcher.handle(request, origin).await;
            Ok::<_, std::convert::Infallible>(response.map(|body| transport::CountedBody {
                body,
                _stream: stream,
            }))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(executor);
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(http2.max_concurrent_streams)
        .initial_stream_window_size(http2.initial_stream_window_size)
        .initial_connection_window_size(http2.initial_connection_window_size)
        .max_header_list_size(http2.max_header_list_size)
        .max_send_buf_size(http2.max_send_buffer_size)
        .keep_alive_interval(http2.keep_alive_interval)
        .keep_alive_timeout(http2.keep_alive_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let idle = async {
        match http2.idle_timeout {
            Some(timeout) => streams.idle_for(timeout).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = idle => {
            tracing::debug!(target: "switchboard::server", peer = ?origin.client, "HTTP/2 connection idle past Http2Config::idle_timeout: GOAWAY");
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = shutdown.cancelled() => {
            // The WebSockets close with 1001 on their own tasks, over this connection, which
            // must go on running meanwhile; then GOAWAY lets the streams still open finish.
            tokio::select! {
                result = connection.as_mut() => result,
                () = streams.all_websockets_closed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(target: "switchboard::server", %error, peer = ?origin.client, "HTTP/2 connection ended with an error");
    }
}
