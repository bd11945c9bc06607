//! The server's counts: [`Stats`] snapshots read through a [`StatsHandle`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::StatusCode;

use crate::application::Traffic;
use crate::layer::{ChannelLayer, LayerHandle};

#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    /// WebSockets being served (handshake dispatched, task not finished).
    pub(crate) open: AtomicUsize,
    pub(crate) handshakes: AtomicU64,
    pub(crate) refused_full: AtomicU64,
    pub(crate) refused_per_client: AtomicU64,
    pub(crate) refused_per_carrier: AtomicU64,
    pub(crate) accepted_http2: AtomicU64,
    /// Open WebSockets by client address key (see [`client_key`]), kept only under
    /// `max_connections_per_client`.
    pub(crate) per_client: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) accepted: AtomicU64,
    /// Refused handshakes by HTTP status: 400 (and 405, 426), 401, 403, 404, 500, 503, other.
    refused: [AtomicU64; 7],
    pub(crate) traffic: Arc<Traffic>,
}

impl ServerCounters {
    pub(crate) fn refused(&self, status: StatusCode) {
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

/// A handle on a running server's counts, for metrics; made by [`Serve::stats`](crate::Serve::stats) or
/// [`AppService::stats`](crate::AppService::stats), and found in every HTTP request's extensions
/// (axum: `Extension<StatsHandle>`). Cheap to clone and to read.
#[derive(Clone)]
pub struct StatsHandle {
    pub(crate) counters: Arc<ServerCounters>,
    pub(crate) layer: LayerHandle,
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
    /// Handshakes refused with 503 because their client address had
    /// [`max_connections_per_client`](crate::ServerConfig::max_connections_per_client) open.
    pub refused_max_connections_per_client: u64,
    /// Handshakes refused with 503 because their HTTP/2 connection carried
    /// [`max_websockets_per_connection`](crate::Http2Config::max_websockets_per_connection).
    pub refused_max_websockets_per_connection: u64,
    /// Handshakes accepted (answered with 101 over HTTP/1.1, 200 over HTTP/2).
    pub accepted: u64,
    /// Of those, the ones over HTTP/2 (RFC 8441 extended CONNECT).
    pub accepted_http2: u64,
    /// Handshakes refused, by cause.
    pub refused: HandshakeRefusals,
    /// WebSocket messages (text or binary) received from clients.
    pub messages_received: u64,
    /// WebSocket messages written to clients.
    pub messages_sent: u64,
    /// Clients disconnected because they stopped reading ([`SlowClientPolicy::Disconnect`](crate::SlowClientPolicy::Disconnect)).
    pub slow_clients_disconnected: u64,
    /// Messages from clients dropped by an [`InboundRateLimit`](crate::InboundRateLimit).
    pub messages_rate_limited: u64,
    /// Connections closed with 1008 by [`RateLimitPolicy::Close`](crate::RateLimitPolicy::Close).
    pub rate_limit_closes: u64,
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
            refused_max_connections_per_client: c.refused_per_client.load(Ordering::Relaxed),
            refused_max_websockets_per_connection: c.refused_per_carrier.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            accepted_http2: c.accepted_http2.load(Ordering::Relaxed),
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
            messages_rate_limited: c.traffic.rate_limited.load(Ordering::Relaxed),
            rate_limit_closes: c.traffic.rate_limit_closes.load(Ordering::Relaxed),
            layer: self.layer.stats(),
        }
    }
}

/// The address a per-client cap counts: an IPv4 address, or an IPv6 address's /64 network.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

/// Gives a WebSocket's place back when its task ends, however it ends: in the server's count,
/// and in its client's when one was taken.
pub(crate) struct OpenConnection {
    pub(crate) counters: Arc<ServerCounters>,
    pub(crate) client: Option<IpAddr>,
    /// The HTTP/2 connection carrying it, whose count it holds a place in.
    pub(crate) carrier: Option<Http2Streams>,
}

/// The streams one HTTP/2 connection carries: its WebSockets (counted against their cap) and
/// all its open streams (requests being answered, response bodies being sent, WebSockets), for
/// its idle timeout. Shared by the connection's requests (as an extension) and the places taken.
#[derive(Debug, Clone)]
pub(crate) struct Http2Streams(Arc<StreamCounts>);

#[derive(Debug)]
pub(crate) struct StreamCounts {
    websockets: AtomicUsize,
    max_websockets: usize,
    active: AtomicUsize,
    /// When `active` last fell to zero.
    idle_since: Mutex<tokio::time::Instant>,
    no_websockets: tokio::sync::Notify,
    went_idle: tokio::sync::Notify,
}

/// One open stream of an [`Http2Streams`]: counted until dropped.
#[derive(Debug)]
pub(crate) struct ActiveStream(Http2Streams);

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.end_stream();
    }
}

impl Http2Streams {
    pub(crate) fn new(max_websockets: usize) -> Self {
        Self(Arc::new(StreamCounts {
            websockets: AtomicUsize::new(0),
            max_websockets,
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(tokio::time::Instant::now()),
            no_websockets: tokio::sync::Notify::new(),
            went_idle: tokio::sync::Notify::new(),
        }))
    }

    /// Counts a stream open until the returned guard is dropped.
    pub(crate) fn begin_stream(&self) -> ActiveStream {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        ActiveStream(self.clone())
    }

    fn end_stream(&self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = tokio::time::Instant::now();
            self.0.went_idle.notify_waiters();
        }
    }

    /// Takes a WebSocket's place if fewer than the cap are open.
    fn take_websocket(&self) -> bool {
        let taken = self
            .0
            .websockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.0.max_websockets).then_some(open + 1)
            })
            .is_ok();
        if taken {
            self.0.active.fetch_add(1, Ordering::AcqRel);
        }
        taken
    }

    fn give_back_websocket(&self) {
        if self.0.websockets.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.no_websockets.notify_waiters();
        }
        self.end_stream();
    }

    /// Resolves once none of the connection's WebSockets is open.
    pub(crate) async fn all_websockets_closed(&self) {
        loop {
            let notified = self.0.no_websockets.notified();
            if self.0.websockets.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once the connection has had no open stream for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: std::time::Duration) {
        loop {
            let notified = self.0.went_idle.notified();
            if self.0.active.load(Ordering::Acquire) > 0 {
                notified.await;
                continue;
            }
            let since = *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let deadline = since + timeout;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl OpenConnection {
    /// Takes a place in `carrier`'s WebSockets if it has room; `false` (and nothing taken)
    /// otherwise.
    pub(crate) fn take_carrier_place(&mut self, carrier: &Http2Streams) -> bool {
        if !carrier.take_websocket() {
            return false;
        }
        self.carrier = Some(carrier.clone());
        true
    }

    /// Takes a place for `client` if it has fewer than `max` open; `false` (and nothing taken)
    /// otherwise.
    pub(crate) fn take_client_place(&mut self, client: IpAddr, max: usize) -> bool {
        let key = client_key(client);
        let mut open = self
            .counters
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&key);
            }
            return false;
        }
        *count += 1;
        self.client = Some(key);
        true
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(carrier) = &self.carrier {
            carrier.give_back_websocket();
        }
        if let Some(key) = self.client {
            let mut open = self
                .counters
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = open.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key(mapped), v4);
    }

    #[test]
    fn client_places_are_given_back() {
        let counters = Arc::new(ServerCounters::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let place = |counters: &Arc<ServerCounters>| OpenConnection {
            counters: counters.clone(),
            client: None,
            carrier: None,
        };
        let (mut one, mut two, mut three) = (place(&counters), place(&counters), place(&counters));
        assert!(one.take_client_place(ip, 2));
        assert!(two.take_client_place(ip, 2));
        assert!(!three.take_client_place(ip, 2));
        drop(one);
        assert!(three.take_client_place(ip, 2));
        drop((two, three));
        assert!(counters.per_client.lock().unwrap().is_empty());
    }
}
