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
    /// Parses an origin as browsers serialize it (RFC 6454 §6.2): `scheme://host[:port]` and
    /// nothing else — no user, path, query or fragment.
    fn parse(value: &str) -> Option<Self> {
        let uri: http::Uri = value.parse().ok()?;
        let authority = uri.authority()?;
        if authority.as_str().contains('@')
            || uri.query().is_some()
            || !uri.path().is_empty() && uri.path() != "/"
            || value.ends_with('/')
        {
            return None;
        }
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme));
        Some(Self { scheme, host, port })
    }
}

/// The server's own check of every WebSocket handshake's `Origin` header, made before any
/// middleware or consumer runs: [`ServerConfig::origin_check`](crate::ServerConfig::origin_check).
///
/// A browser sends `Origin` with every WebSocket handshake, and sends the visitor's cookies with
/// it whatever page opened the socket: without this check any site could act as your logged-in
/// users (cross-site WebSocket hijacking). The default, [`OriginCheck::same_origin`], is on, as
/// Phoenix's `check_origin`:
///
/// - an `Origin` equal to the server's own origin — the scope's scheme (`ws` is `http`, `wss`
///   is `https`), host and port, which behind one of
///   [`trusted_proxies`](crate::ServerConfig::trusted_proxies) are the forwarded ones — is
///   accepted;
/// - a handshake without `Origin` (non-browser clients: CLIs, servers, test suites) is accepted,
///   unless [`refuse_missing`](Self::refuse_missing) says otherwise;
/// - `Origin: null` (sandboxed frames, `file:` pages, some redirects) and any other origin are
///   refused with 403, logged at `INFO`, counted in
///   [`HandshakeRefusals::forbidden`](crate::HandshakeRefusals::forbidden).
///
/// Other origins are allowed with [`allow`](Self::allow) (patterns as [`OriginValidator`]'s).
/// [`OriginValidator`] and [`AllowedHostsOriginValidator`] still narrow it per application; they
/// cannot widen it.
///
/// ```
/// use switchboard::{OriginCheck, ServerConfig};
///
/// let mut config = ServerConfig::default();
/// // Pages from the app itself, and from the marketing site and its subdomains.
/// config.origin_check = OriginCheck::same_origin().allow(["https://example.com", "*.example.com"]);
/// # drop(config);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(alias = "check_origin")]
#[doc(alias = "AllowedHostsOriginValidator")]
pub struct OriginCheck {
    allowed: Vec<Pattern>,
    any: bool,
    refuse_missing: bool,
}

impl Default for OriginCheck {
    /// [`OriginCheck::same_origin`].
    fn default() -> Self {
        Self::same_origin()
    }
}

/// What [`OriginCheck`] made of one handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginVerdict {
    Allowed,
    /// Another origin (or `null`, or no `Origin` under `refuse_missing`).
    Refused,
    /// The server's own host and port, but another scheme: the page is `https` and the scope
    /// says `ws` — typically a TLS-terminating proxy that is not in `trusted_proxies`.
    RefusedScheme,
}

impl OriginCheck {
    /// The default: the server's own origin, and handshakes without `Origin`.
    pub fn same_origin() -> Self {
        Self {
            allowed: Vec::new(),
            any: false,
            refuse_missing: false,
        }
    }

    /// Also allows origins matching `patterns`: `https://example.com` (that scheme, host and
    /// port — 443 unless given), `example.com` (that host, any scheme and port), `*.example.com`
    /// (its subdomains), `.example.com` (the domain and its subdomains, as Django's
    /// `ALLOWED_HOSTS`). `*` allows any origin, as
    /// [`dangerously_allow_any_origin`](Self::dangerously_allow_any_origin).
    pub fn allow<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for pattern in patterns {
            let pattern = Pattern::parse(pattern.as_ref().trim());
            if pattern.host == HostPattern::Any && pattern.scheme.is_none() {
                self.any = true;
            } else {
                self.allowed.push(pattern);
            }
        }
        self
    }

    /// Also refuses (403) handshakes without an `Origin` header: only browsers may connect.
    pub fn refuse_missing(mut self) -> Self {
        self.refuse_missing = true;
        self
    }

    /// No check at all: any page on any site may open a WebSocket to this server with its
    /// visitors' cookies. Only for servers whose WebSockets carry no ambient credentials (no
    /// cookies, no HTTP authentication) or that check origins themselves; [`serve`](crate::serve)
    /// logs a `WARN` when it starts with it.
    pub fn dangerously_allow_any_origin() -> Self {
        Self {
            allowed: Vec::new(),
            any: true,
            refuse_missing: false,
        }
    }

    /// Whether every origin is allowed (no check at all).
    pub fn allows_any_origin(&self) -> bool {
        self.any
    }

    pub(crate) fn judge(&self, scope: &crate::scope::Scope) -> OriginVerdict {
        if self.any {
            return OriginVerdict::Allowed;
        }
        let mut values = scope.headers.get_all(http::header::ORIGIN).iter();
        let Some(value) = values.next() else {
            return if self.refuse_missing {
                OriginVerdict::Refused
            } else {
                OriginVerdict::Allowed
            };
        };
        // Two `Origin`s, or one that is not text, say nothing certain: refused, never taken for
        // a missing one (found by the handshake fuzz target).
        if values.next().is_some() {
            return OriginVerdict::Refused;
        }
        let Some(origin) = value.to_str().ok().and_then(Origin::parse) else {
            return OriginVerdict::Refused;
        };
        if same_origin(&origin, scope) || self.allowed.iter().any(|p| p.matches(&origin)) {
            return OriginVerdict::Allowed;
        }
        let insecure_scope = matches!(scope.scheme, "ws" | "http");
        let same_host = own_origin(scope).is_some_and(|own| own.host.matches(&origin.host));
        if origin.scheme == "https" && insecure_scope && same_host {
            OriginVerdict::RefusedScheme
        } else {
            OriginVerdict::Refused
        }
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
    own_origin(scope).is_some_and(|own| own.matches(origin))
}

/// The scope's own origin — its scheme (`ws` as `http`, `wss` as `https`), host and port (the
/// scheme's default unless given) — when its host is a plain host, not a pattern.
fn own_origin(scope: &crate::scope::Scope) -> Option<Pattern> {
    let host = scope.host.as_deref()?;
    let scheme = match scope.scheme {
        "wss" | "https" => "https",
        _ => "http",
    };
    let own = Pattern::parse(&format!("{scheme}://{host}"));
    matches!(own.host, HostPattern::Exact(_)).then_some(own)
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

    fn with_origin(mut scope: crate::scope::Scope, origin: &str) -> crate::scope::Scope {
        scope
            .headers
            .insert(http::header::ORIGIN, origin.parse().unwrap());
        scope
    }

    #[test]
    fn the_default_check_allows_the_own_origin_and_no_origin_only() {
        let check = OriginCheck::default();
        let own = scope("chat.test:8080", None);
        let judge = |origin: &str| check.judge(&with_origin(own.clone(), origin));
        assert_eq!(check.judge(&own), OriginVerdict::Allowed, "no Origin");
        assert_eq!(judge("http://chat.test:8080"), OriginVerdict::Allowed);
        assert_eq!(judge("HTTP://Chat.Test:8080"), OriginVerdict::Allowed);
        assert_eq!(judge("http://chat.test:8081"), OriginVerdict::Refused);
        assert_eq!(judge("http://chat.test"), OriginVerdict::Refused);
        assert_eq!(judge("http://evil.test:8080"), OriginVerdict::Refused);
        assert_eq!(
            judge("http://chat.test.evil.test:8080"),
            OriginVerdict::Refused
        );
        assert_eq!(judge("null"), OriginVerdict::Refused);
        assert_eq!(judge(""), OriginVerdict::Refused);
        assert_eq!(judge("chat.test:8080"), OriginVerdict::Refused);
        for malformed in [
            "http://user@chat.test:8080",
            "http://chat.test:8080/",
            "http://chat.test:8080/path",
            "http://chat.test:8080?q",
        ] {
            assert_eq!(judge(malformed), OriginVerdict::Refused, "{malformed}");
        }
        assert_eq!(
            judge("https://chat.test:8080"),
            OriginVerdict::RefusedScheme,
            "an https page and a plain request: an untrusted TLS proxy, said in the log"
        );
        let mut opaque = own.clone();
        opaque.headers.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_bytes(b"\xff\xff//chat.test:8080").unwrap(),
        );
        assert_eq!(check.judge(&opaque), OriginVerdict::Refused, "not text");
        let mut twice = with_origin(own.clone(), "http://chat.test:8080");
        twice.headers.append(
            http::header::ORIGIN,
            "http://chat.test:8080".parse().unwrap(),
        );
        assert_eq!(check.judge(&twice), OriginVerdict::Refused, "two Origins");
        let no_host = scope("", None);
        assert_eq!(
            check.judge(&with_origin(no_host, "http://chat.test")),
            OriginVerdict::Refused
        );
    }

    #[test]
    fn the_check_widens_with_patterns_and_can_refuse_missing_origins() {
        let own = scope("chat.test", None);
        let check = OriginCheck::same_origin().allow(["https://app.test", ".corp.test"]);
        let judge =
            |check: &OriginCheck, origin: &str| check.judge(&with_origin(own.clone(), origin));
        assert_eq!(judge(&check, "https://app.test"), OriginVerdict::Allowed);
        assert_eq!(judge(&check, "http://app.test"), OriginVerdict::Refused);
        assert_eq!(
            judge(&check, "http://www.corp.test:9"),
            OriginVerdict::Allowed
        );
        assert_eq!(judge(&check, "http://chat.test"), OriginVerdict::Allowed);
        assert!(!check.allows_any_origin());
        let strict = check.refuse_missing();
        assert_eq!(strict.judge(&own), OriginVerdict::Refused);
        assert_eq!(judge(&strict, "http://chat.test"), OriginVerdict::Allowed);
        for any in [
            OriginCheck::dangerously_allow_any_origin(),
            OriginCheck::same_origin().allow(["*"]),
        ] {
            assert!(any.allows_any_origin());
            assert_eq!(judge(&any, "null"), OriginVerdict::Allowed);
            assert_eq!(judge(&any, "https://evil.test"), OriginVerdict::Allowed);
            assert_eq!(any.judge(&own), OriginVerdict::Allowed);
        }
    }
}
