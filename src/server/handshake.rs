//! The WebSocket handshake's checks and answer (RFC 6455 §4.2).

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

/// Checks an `Upgrade: websocket` request against RFC 6455 §4.2.1; returns its key.
pub(crate) fn check_handshake<B>(request: &Request<B>) -> Result<HeaderValue, Refusal> {
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

pub(crate) fn switching_protocols(
    key: &HeaderValue,
    subprotocol: Option<String>,
    extra: &http::HeaderMap,
) -> Response<Body> {
    let mut response = Response::new(Body::empty());
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
