//! Cookie parsing into the scope (Channels' `CookieMiddleware`), on the `cookie` crate.

use std::collections::HashMap;

use http::HeaderMap;

use crate::application::{BoxFuture, Handshake, WebSocketApplication};

/// The request's cookies by name (values as sent, not percent-decoded). Put in
/// [`Scope::extensions`](crate::scope::Scope::extensions) by [`CookieMiddleware`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cookies {
    values: HashMap<String, String>,
}

impl Cookies {
    /// Parses every `Cookie` header. A malformed pair is skipped; for a repeated name the first
    /// wins (browsers send the most specific cookie first).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut values = HashMap::new();
        let pairs = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok);
        for pair in pairs {
            values
                .entry(pair.name().to_owned())
                .or_insert_with(|| pair.value().to_owned());
        }
        Self { values }
    }

    /// The value of cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// How many cookies were sent.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no cookie was sent.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Parses the handshake's cookies into a [`Cookies`] in the scope's extensions.
#[derive(Debug)]
pub struct CookieMiddleware<A> {
    inner: A,
}

impl<A> CookieMiddleware<A> {
    /// Wraps `inner`.
    pub fn new(inner: A) -> Self {
        Self { inner }
    }
}

impl<A: WebSocketApplication> WebSocketApplication for CookieMiddleware<A> {
    fn call(&self, mut handshake: Handshake) -> BoxFuture<()> {
        let scope = handshake.scope_mut();
        let cookies = Cookies::from_headers(&scope.headers);
        scope.extensions.insert(cookies);
        self.inner.call(handshake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "session=abc; theme=dark".parse().unwrap());
        headers.append("cookie", "session=later; lang=en".parse().unwrap());
        headers.append("cookie", "garbage".parse().unwrap());
        let cookies = Cookies::from_headers(&headers);
        assert_eq!(cookies.get("session"), Some("abc"));
        assert_eq!(cookies.get("theme"), Some("dark"));
        assert_eq!(cookies.get("lang"), Some("en"));
        assert_eq!(cookies.len(), 3);
    }
}
