//! Origin checks for WebSocket handshakes (Channels' `security/websocket.py`).

use http::StatusCode;

use crate::application::{BoxFuture, Handshake, WebSocketApplication};

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
    same_origin: bool,
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
            same_origin: false,
        }
    }

    /// Also allows an `Origin` equal to the server's own origin as the client addressed it:
    /// the scope's [`scheme`](crate::scope::Scope::scheme) and
    /// [`host`](crate::scope::Scope::host) — which behind a proxy are the proxy's
    /// `X-Forwarded-Proto` / `-Host` only when it is one of
    /// [`ServerConfig::trusted_proxies`](crate::ServerConfig::trusted_proxies), and the request's
    /// own otherwise. Pages served by the app itself then need no list of hosts.
    pub fn allow_same_origin(mut self) -> Self {
        self.same_origin = true;
        self
    }

    fn allows(&self, origin: Option<&str>, scope: &crate::scope::Scope) -> bool {
        match origin.and_then(Origin::parse) {
            Some(origin) => {
                self.allowed.iter().any(|p| p.matches(&origin))
                    || (self.same_origin && same_origin(&origin, scope))
            }
            None => self
                .allowed
                .iter()
                .any(|p| p.host == HostPattern::Any && p.scheme.is_none()),
        }
    }
}

/// Whether `origin` is the scope's own `scheme://host[:port]` (`ws` counts as `http`).
fn same_origin(origin: &Origin, scope: &crate::scope::Scope) -> bool {
    let Some(host) = scope.host.as_deref() else {
        return false;
    };
    let scheme = match scope.scheme {
        "wss" | "https" => "https",
        _ => "http",
    };
    let own = Pattern::parse(&format!("{scheme}://{host}"));
    own.scheme.as_deref() == Some(origin.scheme.as_str())
        && own.host.matches(&origin.host)
        && own.port == origin.port
        && matches!(own.host, HostPattern::Exact(_))
}

impl<A: WebSocketApplication> WebSocketApplication for OriginValidator<A> {
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        let origin = handshake.scope().header(http::header::ORIGIN);
        if self.allows(origin, handshake.scope()) {
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

    /// As [`OriginValidator::allow_same_origin`].
    pub fn allow_same_origin(self) -> Self {
        Self(self.0.allow_same_origin())
    }
}

impl<A: WebSocketApplication> WebSocketApplication for AllowedHostsOriginValidator<A> {
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        self.0.call(handshake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(host: &str, forwarded_proto: Option<&str>) -> crate::scope::Scope {
        let mut request = http::Request::get("/ws/").header("host", host);
        if let Some(proto) = forwarded_proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let parts = request.body(()).unwrap().into_parts().0;
        crate::scope::Scope::from_request_parts(
            crate::scope::Protocol::WebSocket,
            &parts,
            Some("127.0.0.1:1".parse().unwrap()),
            None,
        )
        .unwrap()
    }

    fn allows(patterns: &[&str], origin: Option<&str>) -> bool {
        OriginValidator::new((), patterns).allows(origin, &scope("unused.test", None))
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
        let s = scope("unused.test", None);
        assert!(v.0.allows(Some("http://[::1]:8000"), &s));
        assert!(v.0.allows(Some("https://[::2]"), &s));
        assert!(v.0.allows(Some("http://example.com:8080"), &s));
        assert!(!v.0.allows(Some("http://[::3]"), &s));
    }

    #[test]
    fn same_origin_is_the_scope_s_own_scheme_and_host() {
        let v = OriginValidator::new((), ["other.test"]).allow_same_origin();
        let own = scope("chat.test:8080", None);
        assert!(v.allows(Some("http://chat.test:8080"), &own));
        assert!(!v.allows(Some("https://chat.test:8080"), &own));
        assert!(!v.allows(Some("http://chat.test"), &own));
        assert!(!v.allows(Some("http://evil.test:8080"), &own));
        assert!(
            v.allows(Some("http://other.test"), &own),
            "the list still counts"
        );
        // Behind a trusted proxy the scope says https (the proxy module sets it).
        let mut behind = scope("chat.test", None);
        behind.scheme = "wss";
        assert!(v.allows(Some("https://chat.test"), &behind));
        assert!(!v.allows(Some("http://chat.test"), &behind));
        // A Host that is a pattern is no origin.
        assert!(!v.allows(Some("http://a.evil.test"), &scope("*.evil.test", None)));
        assert!(!OriginValidator::new((), ["x.test"]).allows(Some("http://chat.test:8080"), &own));
    }
}
