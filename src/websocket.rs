//! WebSocket messages, close frames and close codes: switchboard's own types, so that upgrading
//! tungstenite never breaks users (as axum does in `axum::extract::ws`).

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A UTF-8 string held in reference-counted bytes: cloning it is one atomic increment, not a copy.
///
/// Text frames carry it, and a broadcast shares one of them among every recipient.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Utf8Bytes(tokio_tungstenite::tungstenite::Utf8Bytes);

impl Utf8Bytes {
    /// A `Utf8Bytes` that points at a static string, without copying it.
    pub const fn from_static(text: &'static str) -> Self {
        Self(tokio_tungstenite::tungstenite::Utf8Bytes::from_static(text))
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text's bytes, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0.into()
    }

    pub(crate) fn into_tungstenite(self) -> tokio_tungstenite::tungstenite::Utf8Bytes {
        self.0
    }

    pub(crate) fn from_tungstenite(text: tokio_tungstenite::tungstenite::Utf8Bytes) -> Self {
        Self(text)
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<&str> for Utf8Bytes {
    /// Copies the string.
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A data message from the client: a text frame or a binary frame (fragments already joined).
///
/// Pings, pongs and close frames never reach a consumer: the connection answers pings itself and
/// turns a close frame into a call of `disconnect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// WebSocket close codes (RFC 6455 §7.4), as `u16`.
pub mod close_code {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the server is going down, or the browser navigated away.
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a kind of data the endpoint does not accept (e.g. binary where only text is).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1005: no code was present in the close frame. Never sent; only reported.
    pub const NO_STATUS: u16 = 1005;
    /// 1006: the connection dropped without a close frame. Never sent; only reported.
    pub const ABNORMAL: u16 = 1006;
    /// 1007: the data in a message was not consistent with its type (bad UTF-8, bad JSON).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: the server hit an unexpected condition (a handler error or panic).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: u16 = 1012;
    /// 1013: try again later (e.g. overloaded).
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// Whether `code` may be sent in a close frame: 1000–1003, 1007–1014 and the application
    /// range 3000–4999 (RFC 6455 §7.4.1 and the IANA registry). 1004, 1005, 1006 and 1015 are
    /// reserved and never sent.
    pub fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// The largest close reason that fits in a close frame: 125 bytes of payload less the 2-byte code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Cuts `reason` to at most [`MAX_CLOSE_REASON_BYTES`] at a character boundary.
pub(crate) fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES);
        assert_eq!(cut.len(), 122);
        assert_eq!(truncate_reason("bye"), "bye");
    }

    #[test]
    fn reserved_codes_are_not_sendable() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!close_code::is_sendable(code), "{code}");
        }
        for code in [1000, 1001, 1003, 1007, 1011, 3000, 4000, 4999] {
            assert!(close_code::is_sendable(code), "{code}");
        }
    }
}
