//! [`ServerConfig`]: timeouts and limits, for [`serve`](crate::serve) and
//! [`AppService`](crate::AppService) alike.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::middleware::OriginCheck;

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
    /// Bytes of outgoing frames a WebSocket gathers before it writes them to its socket: frames
    /// that are ready together (a broadcast burst, a history on joining) go out in one write up
    /// to this size, and a sender that gets past it waits for the socket. The buffer is freed
    /// once written, so an idle connection keeps none. Default 64 KiB.
    pub write_buffer_size: usize,
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
    /// Open WebSockets at most; handshakes beyond it are answered with 503 (logged at `WARN`,
    /// counted in [`Stats::refused_max_connections`](crate::Stats::refused_max_connections)).
    /// `None`: only the process's open-file limit bounds them, and a flood past it meets failed
    /// accepts instead of 503s. Default: [`ServerConfig::open_file_connection_limit`] — the
    /// process's open-file limit less room for its other files — where there is one.
    pub max_connections: Option<usize>,
    /// Open WebSockets at most from one client address (an IPv6 client: from its /64 network,
    /// which one host commonly holds whole), as nginx's `limit_conn` on `$binary_remote_addr`;
    /// behind [`trusted_proxies`](Self::trusted_proxies) the forwarded client's address. Beyond
    /// it handshakes get 503 (logged at `INFO`, counted in
    /// [`Stats::refused_max_connections_per_client`](crate::Stats::refused_max_connections_per_client)).
    /// Clients behind one NAT share an address: size it for an office, not for a person.
    /// `None`: no such cap. Default `None`.
    pub max_connections_per_client: Option<usize>,
    /// What one WebSocket client may send: messages and bytes per second, and what happens past
    /// that. A route can set its own with [`RateLimit`](crate::middleware::RateLimit).
    /// `None`: no limit. Default `None` (Channels, Phoenix and socket.io have none either).
    pub inbound_rate_limit: Option<InboundRateLimit>,
    /// Which pages may open WebSockets: the `Origin` check made on every handshake before any
    /// application code runs. Default: [`OriginCheck::same_origin`] (the server's own origin,
    /// and clients that send no `Origin`).
    pub origin_check: OriginCheck,
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
    /// HTTP/2 beside HTTP/1.1 on the same port (negotiated by ALPN under TLS, by prior knowledge
    /// in clear text), with WebSockets over it (RFC 8441), and HTTP/2's own limits.
    /// `None`: HTTP/1.1 only. Default: [`Http2Config::default`].
    ///
    /// Over HTTP/2 every WebSocket is a stream of one connection; the limits above apply to
    /// each WebSocket as over HTTP/1.1 (each counts in `max_connections` and
    /// `max_connections_per_client`; sizes, pings, slow clients and rate limits are per
    /// WebSocket), [`header_read_timeout`](Self::header_read_timeout) bounds the wait for a
    /// connection's first bytes, and [`Http2Config`] bounds what one connection may hold.
    /// Only [`serve`](crate::serve) reads it: mounted in another server, that server's HTTP/2
    /// settings apply (axum's `serve` enables extended CONNECT).
    pub http2: Option<Http2Config>,
}

/// HTTP/2's limits for one connection, as hyper's HTTP/2 server takes them (RFC 9113 §6.5.2
/// settings, and keep-alive pings). The defaults are safe for a public server.
///
/// ```
/// let mut config = switchboard::ServerConfig::default();
/// if let Some(http2) = config.http2.as_mut() {
///     http2.max_websockets_per_connection = 20;
/// }
/// # drop(config);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[doc(alias = "h2")]
pub struct Http2Config {
    /// Streams (requests, event streams and WebSockets) open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); the client waits, or is refused, beyond it.
    /// Default 256.
    pub max_concurrent_streams: u32,
    /// WebSockets open at once on one connection; handshakes beyond it are answered with 503
    /// on their stream (logged at `DEBUG`, counted in
    /// [`Stats::refused_max_websockets_per_connection`](crate::Stats::refused_max_websockets_per_connection)).
    /// Below `max_concurrent_streams`, so that HTTP requests still pass beside full WebSockets.
    /// Default 128.
    pub max_websockets_per_connection: usize,
    /// Bytes a client may send on one stream before the server has read them (the stream's
    /// flow-control window): what one WebSocket's unread input can cost. Default 256 KiB.
    pub initial_stream_window_size: u32,
    /// Bytes a client may send on the whole connection before the server has read them.
    /// Default 1 MiB.
    pub initial_connection_window_size: u32,
    /// Bytes of headers one request may carry, decoded (`SETTINGS_MAX_HEADER_LIST_SIZE`);
    /// beyond it the request is refused. Default 16 KiB.
    pub max_header_list_size: u32,
    /// Bytes the server buffers for one stream while the client's window is closed; a writer
    /// past it waits, as a WebSocket waits for a slow socket over HTTP/1.1. Default 128 KiB.
    pub max_send_buffer_size: usize,
    /// How often an HTTP/2 PING checks that the connection's peer is alive; `None`: never.
    /// Default 20 s.
    pub keep_alive_interval: Option<Duration>,
    /// A connection whose PING is not answered within this long is closed, with all its
    /// streams. Default 20 s.
    pub keep_alive_timeout: Duration,
    /// A connection with no open stream (no request, response body, event stream or WebSocket)
    /// for this long is closed with GOAWAY, as HTTP/1.1's idle keep-alive connections are by
    /// [`ServerConfig::header_read_timeout`]; `None`: kept while it answers PINGs.
    /// Default 60 s.
    pub idle_timeout: Option<Duration>,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_websockets_per_connection: 128,
            initial_stream_window_size: 256 << 10,
            initial_connection_window_size: 1 << 20,
            max_header_list_size: 16 << 10,
            max_send_buffer_size: 128 << 10,
            keep_alive_interval: Some(Duration::from_secs(20)),
            keep_alive_timeout: Duration::from_secs(20),
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// A rate with a burst, as a token bucket: `per_second` tokens come back each second, up to
/// `burst` held at once. A client that was quiet may send `burst` at once, then `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained rate, in tokens (messages, or bytes) per second.
    pub per_second: f64,
    /// Most tokens held at once (messages, or bytes).
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained, `burst` at once.
    ///
    /// # Panics
    ///
    /// If either is not a positive finite number.
    pub fn new(per_second: f64, burst: f64) -> Self {
        assert!(
            per_second.is_finite() && per_second > 0.0 && burst.is_finite() && burst > 0.0,
            "a rate and its burst are positive: {per_second}/s, burst {burst}"
        );
        Self { per_second, burst }
    }
}

/// Limits on the messages one WebSocket client sends (each connection counts its own): a
/// [`Rate`] of messages, of payload bytes, or both, and a [`RateLimitPolicy`] for what goes past
/// them. A dropped message never reaches the consumer's `receive`; it is counted in
/// [`Stats::messages_rate_limited`](crate::Stats::messages_rate_limited).
///
/// ```
/// use switchboard::{InboundRateLimit, Rate, RateLimitPolicy, ServerConfig};
///
/// let mut config = ServerConfig::default();
/// config.inbound_rate_limit = Some(
///     InboundRateLimit::messages(Rate::new(20.0, 40.0))      // 20 messages/s, 40 at once
///         .bytes(Rate::new(64.0 * 1024.0, 256.0 * 1024.0))   // 64 KiB/s, 256 KiB at once
///         .policy(RateLimitPolicy::Close { after: 100 }),
/// );
/// # drop(config);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[doc(alias = "throttle")]
pub struct InboundRateLimit {
    /// Messages (text or binary) per second; `None`: not limited.
    pub messages: Option<Rate>,
    /// Payload bytes per second; `None`: not limited. A message larger than the burst passes
    /// when the bucket is full, and leaves it in debt.
    pub bytes: Option<Rate>,
    /// What happens to messages past the limit. Default [`RateLimitPolicy::Drop`].
    pub policy: RateLimitPolicy,
}

impl InboundRateLimit {
    /// A limit on messages per second.
    pub fn messages(rate: Rate) -> Self {
        Self {
            messages: Some(rate),
            bytes: None,
            policy: RateLimitPolicy::Drop,
        }
    }

    /// A limit on payload bytes per second.
    pub fn bytes_only(rate: Rate) -> Self {
        Self {
            messages: None,
            bytes: Some(rate),
            policy: RateLimitPolicy::Drop,
        }
    }

    /// Also limits payload bytes per second.
    pub fn bytes(mut self, rate: Rate) -> Self {
        self.bytes = Some(rate);
        self
    }

    /// Sets the [`policy`](Self::policy).
    pub fn policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// What happens to a message past an [`InboundRateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitPolicy {
    /// Drop it and count it; the consumer's
    /// [`rate_limited`](crate::consumer::WebSocketConsumer::rate_limited) tells the client (by
    /// default an error frame), at most once a second.
    Drop,
    /// As `Drop`, and once `after` messages in a row were dropped (none accepted between them),
    /// close the connection with 1008 (policy violation), logged at `INFO`.
    Close {
        /// Dropped messages in a row that close the connection.
        after: u32,
    },
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
            write_buffer_size: 64 << 10,
            slow_client: SlowClientPolicy::Disconnect {
                after: Duration::from_secs(30),
            },
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            max_connections: Self::open_file_connection_limit(),
            max_connections_per_client: None,
            origin_check: OriginCheck::same_origin(),
            inbound_rate_limit: None,
            trusted_proxies: Vec::new(),
            root_path: String::new(),
            http2: Some(Http2Config::default()),
        }
    }
}

impl ServerConfig {
    /// The default [`max_connections`](Self::max_connections): the process's open-file limit
    /// (`ulimit -n`, the soft limit, read now) less a tenth of it — at least 64 and at most
    /// 1,024 files — for listeners, HTTP connections, the channel layer's connections and the
    /// app's own files; never below half the limit. `None` where the limit is unlimited or
    /// unknown (not a Unix).
    ///
    /// The limit is the process's, not the host's: raise it (`ulimit -n`, systemd's
    /// `LimitNOFILE=`) for more connections; each WebSocket holds one file.
    pub fn open_file_connection_limit() -> Option<usize> {
        #[cfg(unix)]
        {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
            let limit = usize::try_from(limit).ok()?;
            let reserve = (limit / 10).clamp(64, 1024);
            Some(limit.saturating_sub(reserve).max(limit / 2))
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    pub(crate) fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size))
    }
}
