//! Origin checks for WebSocket handshakes (Channels' `security/websocket.py`).

use http::StatusCode;

use crate::application::{BoxFuture, Handshake, WebsocketApplication};

/// One allowed-origin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: HostPattern,
    /// `None`: any port (or the scheme's default when a scheme is given).
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: subdomains only.
    Subdomains(String),
    /// `.example.com` (Django's form): the domain and its subdomains.
    DomainAndSubdomains(String),
}

impl HostPattern {
    fn parse(host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        if host == "*" {
            Self::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            Self::Subdomains(domain.to_owned())
        } else if let Some(domain) = host.strip_prefix('.') {
            Self::DomainAndSubdomains(domain.to_owned())
        } else {
            Self::Exact(host)
        }
    }

    fn matches(&self, host: &str) -> bool {
        let is_subdomain = |domain: &str| {
            host.len() > domain.len() + 1
                && host.ends_with(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        };
        match self {
            Self::Any => true,
            Self::Exact(exact) => host == exact,
            Self::Subdomains(domain) => is_subdomain(domain),
            Self::DomainAndSubdomains(domain) => host == domain || is_subdomain(domain),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

impl Pattern {
    fn parse(pattern: &str) -> Self {
        let (scheme, rest) = match pattern.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, pattern),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
                (host, port.parse().ok())
            }
            _ => (rest, None),
        };
        let port = port.or_else(|| scheme.as_deref().and_then(default_port));
        Self {
            scheme,
            host: HostPattern::parse(host.trim_end_matches('/')),
            port,
        }
    }

    fn matches(&self, origin: &Origin) -> bool {
        self.scheme.as_ref().is_none_or(|s| *s == origin.scheme)
            && self.host.matches(&origin.host)
            && self.port.is_none_or(|p| Some(p) == origin.port)
    }
}

/// A parsed `Origin` header: scheme, lowercase host, port (explicit or the scheme's default).
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(value: &str) -> Option<Self> {
        let uri: http::Uri = value.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme));
        Some(Self { scheme, host, port })
    }
}

/// Refuses (HTTP 403) WebSocket handshakes whose `Origin` header matches none of the allowed
/// patterns; the inner application never sees them (Channels' `OriginValidator`).
///
/// Patterns: `https://example.com` (that scheme, host and port — 443 unless given),
/// `example.com` (that host, any scheme and port), `*.example.com` (any subdomain, not the
/// domain itself), `.example.com` (the domain and its subdomains, as in Django), `*` (anything,
/// even no `Origin` at all). A handshake without `Origin` (non-browser clients) is refused unless
/// `*` is allowed, as in Channels.
#[derive(Debug)]
pub struct OriginValidator<A> {
    inner: A,
    allowed: Vec<Pattern>,
}

impl<A> OriginValidator<A> {
    /// Wraps `inner`, allowing the origins that match `allowed`.
    pub fn new<I, S>(inner: A, allowed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            inner,
            allowed: allowed
                .into_iter()
                .map(|p| Pattern::parse(p.as_ref()))
                .collect(),
        }
    }

    fn allows(&self, origin: Option<&str>) -> bool {
        match origin.and_then(Origin::parse) {
            Some(origin) => self.allowed.iter().any(|p| p.matches(&origin)),
            None => self
                .allowed
                .iter()
                .any(|p| p.host == HostPattern::Any && p.scheme.is_none()),
        }
    }
}

impl<A: WebsocketApplication> WebsocketApplication for OriginValidator<A> {
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        let origin = handshake.scope().header(http::header::ORIGIN);
        if self.allows(origin) {
            return self.inner.call(handshake);
        }
        tracing::info!(
            target: "switchboard::middleware",
            origin = origin.unwrap_or("(none)"),
            path = %handshake.scope().path,
            "WebSocket from a disallowed origin: refused with 403"
        );
        handshake.reject(StatusCode::FORBIDDEN);
        Box::pin(std::future::ready(()))
    }
}

/// An [`OriginValidator`] over a list of hosts, as Channels' `AllowedHostsOriginValidator` over
/// Django's `ALLOWED_HOSTS`: `example.com`, `.example.com` (domain and subdomains), `*.example.com`
/// (subdomains), `*`. Any scheme and port of an allowed host is allowed.
#[derive(Debug)]
pub struct AllowedHostsOriginValidator<A>(OriginValidator<A>);

impl<A> AllowedHostsOriginValidator<A> {
    /// Wraps `inner`, allowing origins whose host matches one of `hosts`.
    pub fn new<I, S>(inner: A, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| {
                let h = h.as_ref();
                // A host is a pattern with no scheme; drop a port if one was given ("[::1]:80").
                match h.find(']') {
                    Some(end) => h[..=end].to_owned(),
                    None => h.split_once(':').map_or(h, |(host, _)| host).to_owned(),
                }
            })
            .collect();
        Self(OriginValidator::new(inner, hosts))
    }
}

impl<A: WebsocketApplication> WebsocketApplication for AllowedHostsOriginValidator<A> {
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        self.0.call(handshake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], origin: Option<&str>) -> bool {
        OriginValidator::new((), patterns).allows(origin)
    }

    #[test]
    fn origin_patterns() {
        let p = &[
            "https://example.com",
            "*.apps.test",
            ".corp.test",
            "localhost",
        ];
        assert!(allows(p, Some("https://example.com")));
        assert!(allows(p, Some("https://EXAMPLE.com:443")));
        assert!(!allows(p, Some("http://example.com")));
        assert!(!allows(p, Some("https://example.com:8443")));
        assert!(!allows(p, Some("https://evil-example.com")));
        assert!(allows(p, Some("https://a.apps.test")));
        assert!(allows(p, Some("http://a.b.apps.test:9000")));
        assert!(!allows(p, Some("https://apps.test")));
        assert!(!allows(p, Some("https://xapps.test")));
        assert!(allows(p, Some("https://corp.test")));
        assert!(allows(p, Some("https://www.corp.test")));
        assert!(allows(p, Some("http://localhost:8000")));
        assert!(!allows(p, Some("null")));
        assert!(!allows(p, None));
        assert!(allows(&["*"], None));
        assert!(allows(&["*"], Some("https://anything.example")));
        assert!(allows(
            &["http://localhost:8000"],
            Some("http://localhost:8000")
        ));
        assert!(!allows(
            &["http://localhost:8000"],
            Some("http://localhost:8001")
        ));
    }

    #[test]
    fn allowed_hosts_keep_ipv6_literals() {
        let v = AllowedHostsOriginValidator::new((), ["[::1]", "[::2]:8000", "example.com:443"]);
        assert!(v.0.allows(Some("http://[::1]:8000")));
        assert!(v.0.allows(Some("https://[::2]")));
        assert!(v.0.allows(Some("http://example.com:8080")));
        assert!(!v.0.allows(Some("http://[::3]")));
    }
}
