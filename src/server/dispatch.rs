//! The dispatcher: one request — plain HTTP or a WebSocket handshake — handed to the application
//! with the server's environment. [`serve`](crate::serve) and [`AppService`](crate::AppService)
//! both answer through it, so the two forms behave alike.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{ServerConfig, SlowClientPolicy};
use super::handshake::{
    accepting_response, check_handshake, has_token, is_extended_connect, HandshakeKind,
};
pub(crate) use super::stats::Http2Streams;
use super::stats::{OpenConnection, ServerCounters, StatsHandle};
use crate::application::{ConnectionEnv, Handshake, HandshakeResponse, Upgrade};
use crate::body::{Body, BoxError};
use crate::layer::LayerHandle;
use crate::middleware::OriginVerdict;
use crate::routing::{status_response, ProtocolTypeRouter};
use crate::scope::{proxy, ConnectionMeta, Protocol, ProxySettings, Scope};

/// Where a request came from, as far as the server carrying it knows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) client: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) secure: bool,
}

/// The application with everything its connections share.
pub(crate) struct Dispatcher {
    pub(crate) app: ProtocolTypeRouter,
    pub(crate) env: Arc<ConnectionEnv>,
    /// Every WebSocket's task, for graceful shutdown to wait on.
    pub(crate) tracker: TaskTracker,
    pub(crate) config: ServerConfig,
    pub(crate) counters: Arc<ServerCounters>,
    pub(crate) proxy: Arc<ProxySettings>,
    pub(crate) stats: StatsHandle,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("app", &self.app)
            .field("layer", &self.env.layer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub(crate) fn new(
        app: ProtocolTypeRouter,
        layer: LayerHandle,
        config: ServerConfig,
        counters: Arc<ServerCounters>,
    ) -> Self {
        let env = Arc::new(ConnectionEnv {
            layer: layer.clone(),
            websocket: config.websocket(),
            close_timeout: config.close_timeout,
            write_timeout: match config.slow_client {
                SlowClientPolicy::DropMessages => None,
                SlowClientPolicy::Disconnect { after } => Some(after),
            },
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            handshake_timeout: config.handshake_timeout,
            shutdown: CancellationToken::new(),
            traffic: counters.traffic.clone(),
            inbound_rate_limit: config.inbound_rate_limit,
        });
        if config.origin_check.allows_any_origin() {
            tracing::warn!(target: "switchboard::server", "origin check off (OriginCheck::dangerously_allow_any_origin): any web page can open WebSockets here with its visitors' cookies");
        }
        let proxy = Arc::new(ProxySettings {
            trusted: config.trusted_proxies.clone(),
            root_path: config.root_path.clone(),
        });
        Self {
            app,
            env,
            tracker: TaskTracker::new(),
            config,
            stats: StatsHandle {
                counters: counters.clone(),
                layer,
            },
            counters,
            proxy,
        }
    }

    /// Answers one request: a WebSocket handshake (`Upgrade: websocket`) is checked, routed and,
    /// once accepted, served on its own task; anything else goes to the HTTP application with the
    /// server's extensions.
    pub(crate) async fn handle<B>(&self, request: Request<B>, peer: Peer) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if request
            .headers()
            .get_all(header::HOST)
            .iter()
            .nth(1)
            .is_some()
        {
            // Two `Host`s: the proxy in front and this server could each route by another one
            // (RFC 9112 §3.2: answer 400).
            tracing::debug!(target: "switchboard::server", client = ?peer.client, "request with more than one Host header: 400");
            return bad_request_and_close();
        }
        if has_token(&request, header::UPGRADE, "websocket") || is_extended_connect(&request) {
            return self.handle_websocket(request, peer, None).await;
        }
        if request.method() == http::Method::CONNECT
            && request.extensions().get::<hyper::ext::Protocol>().is_some()
        {
            // An extended CONNECT for a protocol other than WebSocket (RFC 9220 §3: 501).
            tracing::debug!(target: "switchboard::server", client = ?peer.client, "extended CONNECT for an unknown protocol: 501");
            return status_response(StatusCode::NOT_IMPLEMENTED);
        }
        let (mut parts, body) = request.into_parts();
        let info = proxy::client_info(
            &parts.headers,
            &parts.uri,
            peer.client,
            peer.secure,
            &self.proxy,
        );
        parts.extensions.insert(info);
        parts.extensions.insert(ConnectionMeta {
            client: peer.client,
            server: peer.local,
            shutdown: self.env.shutdown.clone(),
            secure: peer.secure,
            proxy: self.proxy.clone(),
        });
        parts.extensions.insert(self.env.layer.clone());
        parts.extensions.insert(self.stats.clone());
        match self
            .app
            .call_http(Request::from_parts(parts, Body::new(body)))
            .await
        {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Answers a WebSocket handshake. The connection's bytes come from `upgrade`, or, when it is
    /// `None`, from hyper's upgrade of the request (the server's and a host's case; the testing
    /// module passes an in-memory pipe).
    pub(crate) async fn handle_websocket<B>(
        &self,
        mut request: Request<B>,
        peer: Peer,
        upgrade: Option<Upgrade>,
    ) -> Response<Body> {
        let client = peer.client;
        let carrier = request.extensions_mut().remove::<Http2Streams>();
        let kind = match check_handshake(&request) {
            Ok(kind) => kind,
            Err(refusal) => {
                tracing::debug!(target: "switchboard::server", ?client, reason = refusal.reason, "bad WebSocket handshake");
                self.counters.refused(refusal.response.status());
                return *refusal.response;
            }
        };
        let Some(app) = self.app.websocket_app() else {
            self.counters.refused(StatusCode::NOT_FOUND);
            return status_response(StatusCode::NOT_FOUND);
        };
        let upgrade = match upgrade {
            Some(upgrade) => upgrade,
            None if request
                .extensions()
                .get::<hyper::upgrade::OnUpgrade>()
                .is_none() =>
            {
                // A host server that does not hand over upgraded connections (hyper without
                // `with_upgrades`): accepting would answer 101 and then have no socket.
                tracing::error!(target: "switchboard::server", "the server carrying this request does not support upgrades: WebSocket refused with 500");
                self.counters.refused(StatusCode::INTERNAL_SERVER_ERROR);
                return status_response(StatusCode::INTERNAL_SERVER_ERROR);
            }
            None => Upgrade::Hyper(hyper::upgrade::on(&mut request)),
        };
        let (parts, _body) = request.into_parts();
        let mut scope = match Scope::from_request_parts(
            Protocol::WebSocket,
            &parts,
            client,
            peer.local,
        ) {
            Ok(scope) => scope,
            Err(error) => {
                tracing::debug!(target: "switchboard::server", ?client, %error, "bad WebSocket request");
                self.counters.refused(StatusCode::BAD_REQUEST);
                return status_response(StatusCode::BAD_REQUEST);
            }
        };
        if peer.secure {
            scope.scheme = "wss";
        }
        // RFC 8441's CONNECT asks what HTTP/1.1's GET + Upgrade asks: one method for both.
        scope.method = http::Method::GET;
        proxy::apply(&mut scope, &self.proxy);
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        match self.config.origin_check.judge(&scope) {
            OriginVerdict::Allowed => {}
            verdict => {
                let origin = scope.header(header::ORIGIN).unwrap_or("(none)");
                if verdict == OriginVerdict::RefusedScheme {
                    tracing::info!(target: "switchboard::server", origin, host = scope.host.as_deref(), client = ?scope.client, path = %scope.path, "WebSocket from another origin refused with 403: the page is https and this request is not; behind a TLS-terminating proxy, list it in ServerConfig::trusted_proxies");
                } else {
                    tracing::info!(target: "switchboard::server", origin, host = scope.host.as_deref(), client = ?scope.client, path = %scope.path, "WebSocket from another origin refused with 403 (ServerConfig::origin_check)");
                }
                self.counters.refused(StatusCode::FORBIDDEN);
                return status_response(StatusCode::FORBIDDEN);
            }
        }
        let open = self.counters.open.fetch_add(1, Ordering::Relaxed);
        let mut place = OpenConnection {
            counters: self.counters.clone(),
            client: None,
            carrier: None,
        };
        if self.config.max_connections.is_some_and(|max| open >= max) {
            self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
            self.counters.refused(StatusCode::SERVICE_UNAVAILABLE);
            tracing::warn!(target: "switchboard::server", open, "max_connections reached: WebSocket refused with 503");
            return status_response(StatusCode::SERVICE_UNAVAILABLE);
        }
        if let (Some(max), Some(client)) = (self.config.max_connections_per_client, scope.client) {
            if !place.take_client_place(client.ip(), max) {
                self.counters
                    .refused_per_client
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.refused(StatusCode::SERVICE_UNAVAILABLE);
                tracing::debug!(target: "switchboard::server", client = %client.ip(), max, "max_connections_per_client reached: WebSocket refused with 503");
                return status_response(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        if let Some(carrier) = &carrier {
            if !place.take_carrier_place(carrier) {
                self.counters
                    .refused_per_carrier
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.refused(StatusCode::SERVICE_UNAVAILABLE);
                tracing::debug!(target: "switchboard::server", client = ?scope.client, "max_websockets_per_connection reached on this HTTP/2 connection: WebSocket refused with 503");
                return status_response(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        if self.env.shutdown.is_cancelled() {
            self.counters.refused(StatusCode::SERVICE_UNAVAILABLE);
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
                if matches!(kind, HandshakeKind::ExtendedConnect) {
                    self.counters.accepted_http2.fetch_add(1, Ordering::Relaxed);
                }
                accepting_response(&kind, subprotocol, &headers)
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

    /// Starts a graceful shutdown: open WebSockets close with 1001, event streams end, and new
    /// handshakes are refused with 503.
    pub(crate) fn shutdown(&self) {
        self.env.shutdown.cancel();
        self.tracker.close();
    }
}

/// 400, and the connection closes after it: what follows on it cannot be trusted to be a request.
fn bad_request_and_close() -> Response<Body> {
    let mut response = status_response(StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}
