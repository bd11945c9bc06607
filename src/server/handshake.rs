//! The WebSocket handshake's checks and answer: an HTTP/1.1 upgrade (RFC 6455 §4.2) or an
//! HTTP/2 extended CONNECT (RFC 8441 §4–5).

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::body::Body;
use crate::routing::status_response;

/// Whether header `name` holds `token` in its comma-separated list (case-insensitive).
pub(crate) fn has_token<B>(request: &Request<B>, name: header::HeaderName, token: &str) -> bool {
    crate::scope::header_items(request.headers(), name).any(|item| item.eq_ignore_ascii_case(token))
}

pub(crate) struct Refusal {
    pub(crate) response: Box<Response<Body>>,
    pub(crate) reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal {
        response: Box::new(status_response(status)),
        reason,
    }
}

/// Whether `request` is an HTTP/2 extended CONNECT for a WebSocket (RFC 8441 §4: `:method
/// CONNECT`, `:protocol websocket`).
pub(crate) fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// How a WebSocket handshake came, which says how it is answered.
#[derive(Debug)]
pub(crate) enum HandshakeKind {
    /// HTTP/1.1's `Upgrade: websocket`, answered with 101 and the key's accept value.
    Upgrade { key: HeaderValue },
    /// HTTP/2's extended CONNECT (RFC 8441), answered with 200 on its stream: no key, no accept.
    ExtendedConnect,
}

/// Checks a WebSocket handshake: an `Upgrade: websocket` request against RFC 6455 §4.2.1, an
/// extended CONNECT against RFC 8441 §5 (its `Sec-WebSocket-Version` as RFC 6455's).
pub(crate) fn check_handshake<B>(request: &Request<B>) -> Result<HandshakeKind, Refusal> {
    if is_extended_connect(request) {
        check_version(request)?;
        return Ok(HandshakeKind::ExtendedConnect);
    }
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
    check_version(request)?;
    let headers = request.headers();
    if headers
        .get_all(header::SEC_WEBSOCKET_KEY)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "more than one Sec-WebSocket-Key",
        ));
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    match key {
        // The key is 16 random bytes in base64: 22 characters and "==" padding.
        Some(key) if is_handshake_key(key.as_bytes()) => {
            Ok(HandshakeKind::Upgrade { key: key.clone() })
        }
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        )),
    }
}

/// One `Sec-WebSocket-Version: 13`, or 426 naming the version we speak (RFC 6455 §4.4).
fn check_version<B>(request: &Request<B>) -> Result<(), Refusal> {
    let headers = request.headers();
    let versions = headers.get_all(header::SEC_WEBSOCKET_VERSION);
    if versions.iter().nth(1).is_some()
        || headers
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
    Ok(())
}

fn is_handshake_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The answer that accepts a handshake: 101 with the accept value over HTTP/1.1, 200 over
/// HTTP/2; the consumer's headers and chosen subprotocol either way.
pub(crate) fn accepting_response(
    kind: &HandshakeKind,
    subprotocol: Option<String>,
    extra: &http::HeaderMap,
) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    for (name, value) in extra {
        headers.append(name.clone(), value.clone());
    }
    if let HandshakeKind::Upgrade { key } = kind {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = derive_accept_key(key.as_bytes());
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
    } else {
        // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2).
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::TRANSFER_ENCODING,
        ] {
            response.headers_mut().remove(name);
        }
    }
    let headers = response.headers_mut();
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
