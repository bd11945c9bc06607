//! The scope: what is known about one connection before any message, as in ASGI and Channels.

pub(crate) mod proxy;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use http::{Extensions, HeaderMap, Method, Version};

/// The kind of connection a [`Scope`] describes (ASGI's `scope["type"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// A plain HTTP request.
    Http,
    /// A WebSocket connection (an HTTP/1.1 upgrade).
    WebSocket,
}

/// Path parameters captured by [`UrlRouter`](crate::routing::UrlRouter) routes, by name
/// (Channels' `scope["url_route"]["kwargs"]`). Nested routers add theirs after their parents'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRoute {
    params: Vec<(String, String)>,
}

impl UrlRoute {
    /// The value of the parameter `name` (`{name}` or `{*name}` in the route), percent-decoded.
    /// If nested routes captured the same name, the innermost wins.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// All parameters as `(name, value)`, outermost route first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no parameter was captured.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub(crate) fn push(&mut self, name: &str, value: &str) {
        self.params.push((name.to_owned(), value.to_owned()));
    }
}

/// Everything known about a connection before its first message: the request line, headers,
/// addresses, requested subprotocols, path parameters from routing, and typed extensions that
/// middleware fills (a user, a session).
///
/// Fields are public so that middleware can read and change them, as it does the scope dict in
/// Channels.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Scope {
    /// HTTP or WebSocket.
    pub protocol: Protocol,
    /// The request method: `GET` for every WebSocket handshake, one that came as an HTTP/2
    /// extended CONNECT included (RFC 8441's `CONNECT` carries the handshake; it asks what an
    /// HTTP/1.1 `GET` with `Upgrade` asks).
    pub method: Method,
    /// The HTTP version of the request: a WebSocket over an HTTP/2 stream (RFC 8441) says
    /// `HTTP/2.0`, one upgraded from an HTTP/1.1 request `HTTP/1.1`.
    pub http_version: Version,
    /// The path with percent-escapes decoded (ASGI's `path`); routing matches this.
    pub path: String,
    /// The path exactly as the client sent it, without the query string (ASGI's `raw_path`).
    pub raw_path: String,
    /// The query string as sent, without the `?`, still percent-encoded; see
    /// [`Scope::query_pairs`].
    pub query_string: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The client's address: the TCP peer, or the original client a trusted proxy names in
    /// `X-Forwarded-For` / `Forwarded: for=` (port 0 when the proxy gives none).
    pub client: Option<SocketAddr>,
    /// The server's address the client connected to.
    pub server: Option<SocketAddr>,
    /// The subprotocols the client asked for in `Sec-WebSocket-Protocol`, in its order of
    /// preference.
    pub subprotocols: Vec<String>,
    /// Path parameters captured by routing.
    pub url_route: UrlRoute,
    /// Typed values that middleware adds for the consumer (e.g. the authenticated user).
    pub extensions: Extensions,
    /// ASGI's `scheme`: `"ws"` or `"wss"` for a WebSocket, `"http"` or `"https"` for HTTP; from
    /// a trusted proxy's `X-Forwarded-Proto` / `Forwarded: proto=` when there is one
    /// ([`ServerConfig::trusted_proxies`](crate::ServerConfig::trusted_proxies)).
    pub scheme: &'static str,
    /// The host the client asked for: the `Host` header, or a trusted proxy's
    /// `X-Forwarded-Host` / `Forwarded: host=`.
    pub host: Option<String>,
    /// ASGI's `root_path`: the prefix the application is mounted under
    /// ([`ServerConfig::root_path`](crate::ServerConfig::root_path)), without a trailing `/`;
    /// empty when mounted at the root.
    pub root_path: String,
    /// Where in `path` routing goes on: nested routers match `path[route_offset..]`.
    pub(crate) route_offset: usize,
}

/// Who sent an HTTP request and how it reached the server, as far as the server can tell: the
/// peer, or what a [trusted proxy](crate::ServerConfig::trusted_proxies) says. The server puts
/// one in every HTTP request's extensions (axum: `Extension<ClientInfo>`); WebSocket and SSE
/// consumers read the same from their [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client's address (port 0 when a proxy gave none); `None` when the server carrying
    /// the request does not say (an [`AppService`](crate::AppService) mounted in a host that
    /// gives no `ConnectInfo`).
    pub client: Option<SocketAddr>,
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
    /// The host the client asked for (`Host`, or the proxy's forwarded host).
    pub host: Option<String>,
}

/// What the server tells HTTP handlers about their connection, in the request's extensions:
/// read by [`sse::respond`](crate::sse::respond) to build its scope as the server builds a WebSocket's.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMeta {
    pub(crate) client: Option<SocketAddr>,
    pub(crate) server: Option<SocketAddr>,
    pub(crate) shutdown: CancellationToken,
    /// Whether the connection is TLS.
    pub(crate) secure: bool,
    pub(crate) proxy: Arc<ProxySettings>,
}

/// What [`proxy::apply`] needs: whom to believe, and the mount prefix.
#[derive(Debug, Default)]
pub(crate) struct ProxySettings {
    pub(crate) trusted: Vec<ipnet::IpNet>,
    pub(crate) root_path: String,
}

/// The items of header `name`'s comma-separated lists, across all its lines, in order: trimmed,
/// empty ones left out, lines that are not text skipped.
pub(crate) fn header_items(
    headers: &HeaderMap,
    name: impl http::header::AsHeaderName,
) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Why a request head could not become a [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The percent-decoded path is not UTF-8.
    #[error("the request path is not UTF-8 once percent-decoded")]
    PathNotUtf8,
    /// The path holds an encoded separator or NUL (`%2F`, `%5C`, `%00`): decoded, it would cross
    /// segments that a proxy in front saw as one (Apache's `AllowEncodedSlashes Off`, Tomcat's
    /// default).
    #[error("the request path holds an encoded slash, backslash or NUL")]
    EncodedSeparator,
}

/// Whether `path` holds `%2F`, `%5C` or `%00` (any case).
fn has_encoded_separator(path: &[u8]) -> bool {
    path.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_uppercase()),
                (b'2', b'F') | (b'5', b'C') | (b'0', b'0')
            )
    })
}

/// A copy of `headers` whose values own their bytes. hyper parses header values as slices of the
/// connection's read buffer; a scope that kept those would keep that whole buffer (8 KiB or more)
/// alive for as long as the connection lasts.
fn own_headers(headers: &HeaderMap) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = http::HeaderValue::from_bytes(value.as_bytes())
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    owned
}

impl Scope {
    /// Builds a scope from a request head. `path` comes from the request target (an absolute-form
    /// target contributes only its path).
    ///
    /// # Errors
    ///
    /// [`ScopeError::PathNotUtf8`] when the decoded path is not UTF-8,
    /// [`ScopeError::EncodedSeparator`] when the path holds `%2F`, `%5C` or `%00` (both answered
    /// with 400 by the server).
    pub fn from_request_parts(
        protocol: Protocol,
        parts: &http::request::Parts,
        client: Option<SocketAddr>,
        server: Option<SocketAddr>,
    ) -> Result<Self, ScopeError> {
        let raw_path = parts.uri.path().to_owned();
        if has_encoded_separator(raw_path.as_bytes()) {
            return Err(ScopeError::EncodedSeparator);
        }
        let path = percent_encoding::percent_decode_str(&raw_path)
            .decode_utf8()
            .map_err(|_| ScopeError::PathNotUtf8)?
            .into_owned();
        let subprotocols = header_items(&parts.headers, http::header::SEC_WEBSOCKET_PROTOCOL)
            .map(str::to_owned)
            .collect();
        Ok(Self {
            protocol,
            method: parts.method.clone(),
            http_version: parts.version,
            path,
            raw_path,
            query_string: parts.uri.query().unwrap_or("").to_owned(),
            headers: own_headers(&parts.headers),
            client,
            server,
            subprotocols,
            url_route: UrlRoute::default(),
            extensions: Extensions::new(),
            scheme: match protocol {
                Protocol::WebSocket => "ws",
                Protocol::Http => "http",
            },
            host: parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned())),
            root_path: String::new(),
            route_offset: 0,
        })
    }

    /// The query string as decoded `(name, value)` pairs (`application/x-www-form-urlencoded`
    /// rules: `+` is a space).
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        form_urlencoded::parse(self.query_string.as_bytes())
    }

    /// The first value of the query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The part of the path that routing has not matched yet (Channels' `path_remaining`); the
    /// whole path before any router ran.
    pub fn path_remaining(&self) -> &str {
        &self.path[self.route_offset.min(self.path.len())..]
    }

    /// Makes routing start at byte `offset` of `path` (a mount prefix).
    pub(crate) fn set_route_offset(&mut self, offset: usize) {
        self.route_offset = offset;
    }

    /// The first value of header `name` as text, if it is present and visible ASCII.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn path_query_and_subprotocols() {
        let p = parts(
            "/ws/chat/caf%C3%A9%20room/?user=ada+l&x=1",
            &[
                ("sec-websocket-protocol", "chat.v2, chat.v1"),
                ("sec-websocket-protocol", "json"),
            ],
        );
        let scope = Scope::from_request_parts(Protocol::WebSocket, &p, None, None).unwrap();
        assert_eq!(scope.path, "/ws/chat/café room/");
        assert_eq!(scope.raw_path, "/ws/chat/caf%C3%A9%20room/");
        assert_eq!(scope.query_string, "user=ada+l&x=1");
        assert_eq!(scope.query_param("user").as_deref(), Some("ada l"));
        assert_eq!(scope.subprotocols, ["chat.v2", "chat.v1", "json"]);
        assert_eq!(scope.path_remaining(), scope.path);
    }

    #[test]
    fn undecodable_path_is_an_error() {
        let p = parts("/bad%FF", &[]);
        assert_eq!(
            Scope::from_request_parts(Protocol::Http, &p, None, None).unwrap_err(),
            ScopeError::PathNotUtf8
        );
    }
}
