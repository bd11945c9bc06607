//! The server's counts in Prometheus' text exposition format (feature `metrics`, on the
//! `prometheus-client` crate), for a `GET /metrics` route the application mounts itself.
//!
//! ```
//! use axum::routing::get;
//!
//! # #[allow(dead_code)]
//! # fn app(stats: switchboard::StatsHandle) -> axum::Router {
//! // `stats` comes from `serve(listener, app).stats()`.
//! axum::Router::new().route(
//!     "/metrics",
//!     get(move || {
//!         let stats = stats.clone();
//!         async move { switchboard::metrics::response(&stats) }
//!     }),
//! )
//! # }
//! ```
//!
//! Every metric is named `switchboard_…`; counters end in `_total`. Gauges: open connections,
//! channels, groups, memberships. Counters: handshakes (accepted, refused by `cause`, and refused
//! by `max_connections` and `max_connections_per_client`),
//! messages in and out (and dropped by a rate limit, and connections it closed), clients dropped
//! for not reading, and the channel layer's deliveries,
//! drops (`reason`), losses and backend failures.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{Stats, StatsHandle};

/// The `Content-Type` of [`render`]'s text: OpenMetrics text 1.0, which Prometheus scrapes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let metric = Gauge::<i64>::default();
    metric.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, metric);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let metric = Counter::<u64>::default();
    metric.inc_by(value);
    registry.register(name, help, metric);
}

fn family(registry: &mut Registry, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    let metric = Family::<Vec<(String, String)>, Counter<u64>>::default();
    for (value, count) in values {
        metric
            .get_or_create(&vec![(label.to_owned(), (*value).to_owned())])
            .inc_by(*count);
    }
    registry.register(name, help, metric);
}

/// `stats` as Prometheus text.
pub fn render(stats: &Stats) -> String {
    let mut registry = Registry::with_prefix("switchboard");
    let r = &mut registry;
    gauge(
        r,
        "connections",
        "Open WebSocket connections",
        stats.connections,
    );
    counter(
        r,
        "handshakes",
        "WebSocket handshakes received",
        stats.handshakes,
    );
    counter(
        r,
        "handshakes_accepted",
        "WebSocket handshakes accepted",
        stats.accepted,
    );
    counter(
        r,
        "handshakes_accepted_http2",
        "WebSocket handshakes accepted over HTTP/2 (RFC 8441 extended CONNECT)",
        stats.accepted_http2,
    );
    let refused = &stats.refused;
    family(
        r,
        "handshakes_refused",
        "WebSocket handshakes refused, by cause (the HTTP status answered)",
        "cause",
        &[
            ("bad_request", refused.bad_request),
            ("unauthorized", refused.unauthorized),
            ("forbidden", refused.forbidden),
            ("not_found", refused.not_found),
            ("server_error", refused.server_error),
            ("unavailable", refused.unavailable),
            ("other", refused.other),
        ],
    );
    counter(
        r,
        "handshakes_refused_max_connections",
        "WebSocket handshakes refused with 503 because max_connections was reached",
        stats.refused_max_connections,
    );
    counter(
        r,
        "handshakes_refused_max_connections_per_client",
        "WebSocket handshakes refused with 503 because their client address had max_connections_per_client open",
        stats.refused_max_connections_per_client,
    );
    counter(
        r,
        "handshakes_refused_max_websockets_per_connection",
        "WebSocket handshakes refused with 503 because their HTTP/2 connection carried max_websockets_per_connection",
        stats.refused_max_websockets_per_connection,
    );
    counter(
        r,
        "messages_received",
        "WebSocket messages received from clients",
        stats.messages_received,
    );
    counter(
        r,
        "messages_sent",
        "WebSocket messages written to clients",
        stats.messages_sent,
    );
    counter(
        r,
        "slow_clients_disconnected",
        "Clients disconnected because they stopped reading",
        stats.slow_clients_disconnected,
    );
    counter(
        r,
        "messages_rate_limited",
        "WebSocket messages from clients dropped by an inbound rate limit",
        stats.messages_rate_limited,
    );
    counter(
        r,
        "rate_limit_closes",
        "WebSocket connections closed (1008) for going on past an inbound rate limit",
        stats.rate_limit_closes,
    );
    let layer = &stats.layer;
    gauge(
        r,
        "layer_channels",
        "Channels the channel layer knows",
        layer.channels,
    );
    gauge(r, "layer_groups", "Groups with members", layer.groups);
    gauge(
        r,
        "layer_memberships",
        "Group memberships",
        layer.memberships,
    );
    counter(
        r,
        "layer_queued",
        "Messages put on a channel's queue",
        layer.queued,
    );
    family(
        r,
        "layer_dropped",
        "Messages the channel layer dropped, by reason",
        "reason",
        &[
            ("channel_full", layer.dropped_full),
            ("expired", layer.expired),
            ("no_receiver", layer.dropped_no_receiver),
        ],
    );
    counter(
        r,
        "layer_send_rejected_full",
        "Sends refused with ChannelFull",
        layer.rejected_full,
    );
    counter(
        r,
        "layer_memberships_expired",
        "Group memberships that outlived the group expiry",
        layer.expired_memberships,
    );
    counter(
        r,
        "layer_lost",
        "Messages from other processes known lost in transit",
        layer.lost,
    );
    counter(
        r,
        "layer_unavailable",
        "Operations failed because the layer's backend was unavailable",
        layer.unavailable,
    );
    counter(
        r,
        "layer_reconnections",
        "Times the layer's receiving connection was made again",
        layer.reconnections,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// A `200 OK` response with [`render`]`(stats.snapshot())` and its content type: return it from
/// any HTTP handler (axum, hyper, tower).
pub fn response(stats: &StatsHandle) -> http::Response<String> {
    let mut response = http::Response::new(render(&stats.snapshot()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}
