//! Proxy headers: the client's address, the scheme and the host as a trusted reverse proxy saw
//! them (`Forwarded`, RFC 7239, or `X-Forwarded-For` / `-Proto` / `-Host`), and the root path.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

use super::{ClientInfo, ProxySettings, Scope};

/// Whether `peer` is one of the `trusted` proxies.
fn trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&peer))
}

/// One hop of a proxy chain, as a proxy recorded it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Hop {
    client: Option<SocketAddr>,
    proto: Option<String>,
    host: Option<String>,
}

/// A `for=` / `X-Forwarded-For` node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`. `unknown` and obfuscated names give `None`. A missing port is 0.
fn parse_node(node: &str) -> Option<SocketAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = node
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(node);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// The hops of the `Forwarded` headers, first proxy first.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for element in super::header_items(headers, http::header::FORWARDED) {
        let mut hop = Hop::default();
        for pair in element.split(';') {
            let Some((name, raw)) = pair.split_once('=') else {
                continue;
            };
            let raw = raw.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "for" => hop.client = parse_node(raw),
                "proto" => hop.proto = Some(raw.to_ascii_lowercase()),
                "host" => hop.host = Some(raw.to_owned()),
                _ => {}
            }
        }
        hops.push(hop);
    }
    hops
}

/// The comma-separated values of header `name` across all its lines, first first.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    super::header_items(headers, name)
        .map(str::to_owned)
        .collect()
}

/// What a trusted proxy says about the request, if `peer` is one: the original client (the
/// right-most address of the chain that is not itself a trusted proxy), scheme and host.
fn forwarded(headers: &HeaderMap, peer: IpAddr, proxies: &[IpNet]) -> Option<Hop> {
    if !trusted(peer, proxies) {
        return None;
    }
    let hops = forwarded_hops(headers);
    if !hops.is_empty() {
        // Walk back from the proxy nearest to us while the hops are trusted proxies too.
        let mut chosen = hops.last().cloned().unwrap_or_default();
        for hop in hops.iter().rev() {
            chosen = hop.clone();
            match hop.client {
                Some(client) if trusted(client.ip(), proxies) => continue,
                _ => break,
            }
        }
        return Some(chosen);
    }
    let chain: Vec<SocketAddr> = list(headers, "x-forwarded-for")
        .iter()
        .filter_map(|n| parse_node(n))
        .collect();
    let client = chain
        .iter()
        .rev()
        .find(|addr| !trusted(addr.ip(), proxies))
        .or(chain.first())
        .copied();
    Some(Hop {
        client,
        proto: list(headers, "x-forwarded-proto")
            .pop()
            .map(|p| p.to_ascii_lowercase()),
        host: list(headers, "x-forwarded-host").pop(),
    })
}

/// Applies what a trusted proxy says (client, scheme, host) and the root path to `scope`.
pub(crate) fn apply(scope: &mut Scope, settings: &ProxySettings) {
    apply_with(scope, &settings.trusted, &settings.root_path);
}

/// The [`ClientInfo`] of an HTTP request from `peer` (over TLS if `secure`).
pub(crate) fn client_info(
    headers: &HeaderMap,
    uri: &http::Uri,
    peer: Option<SocketAddr>,
    secure: bool,
    settings: &ProxySettings,
) -> ClientInfo {
    let mut info = ClientInfo {
        client: peer,
        scheme: if secure { "https" } else { "http" },
        host: headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.as_str().to_owned())),
    };
    let hop = peer.and_then(|client| forwarded(headers, client.ip(), &settings.trusted));
    if let Some(hop) = hop {
        if let Some(client) = hop.client {
            info.client = Some(client);
        }
        if let Some(proto) = hop.proto {
            info.scheme = if matches!(proto.as_str(), "https" | "wss") {
                "https"
            } else {
                "http"
            };
        }
        if hop.host.is_some() {
            info.host = hop.host;
        }
    }
    info
}

fn apply_with(scope: &mut Scope, proxies: &[IpNet], root_path: &str) {
    if let Some(peer) = scope.client {
        if let Some(hop) = forwarded(&scope.headers, peer.ip(), proxies) {
            if let Some(client) = hop.client {
                scope.client = Some(client);
            }
            if let Some(proto) = hop.proto {
                let secure = matches!(proto.as_str(), "https" | "wss");
                scope.scheme = match (scope.protocol, secure) {
                    (crate::scope::Protocol::WebSocket, true) => "wss",
                    (crate::scope::Protocol::WebSocket, false) => "ws",
                    (_, true) => "https",
                    (_, false) => "http",
                };
            }
            if let Some(host) = hop.host {
                scope.host = Some(host);
            }
        }
    }
    if !root_path.is_empty() {
        let root = root_path.trim_end_matches('/');
        scope.root_path = root.to_owned();
        // Mounted under a prefix the proxy did not strip: route what follows it.
        if scope.path.starts_with(root)
            && scope.path[root.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == '/')
        {
            scope.set_route_offset(root.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Protocol;

    fn apply(scope: &mut Scope, proxies: &[IpNet], root_path: &str) {
        apply_with(scope, proxies, root_path);
    }

    fn scope(peer: &str, headers: &[(&str, &str)]) -> Scope {
        let mut builder = http::Request::get("/ws/chat/lobby/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let parts = builder.body(()).unwrap().into_parts().0;
        Scope::from_request_parts(
            Protocol::WebSocket,
            &parts,
            Some(peer.parse().unwrap()),
            None,
        )
        .unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn x_forwarded_headers_count_only_from_trusted_proxies() {
        let headers = [
            ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "chat.example.com"),
            ("host", "backend:8000"),
        ];
        let mut from_proxy = scope("10.0.0.1:5000", &headers);
        apply(&mut from_proxy, &nets(&["10.0.0.0/8"]), "");
        assert_eq!(from_proxy.client, Some("203.0.113.7:0".parse().unwrap()));
        assert_eq!(from_proxy.scheme, "wss");
        assert_eq!(from_proxy.host.as_deref(), Some("chat.example.com"));

        let mut from_anyone = scope("198.51.100.9:5000", &headers);
        apply(&mut from_anyone, &nets(&["10.0.0.0/8"]), "");
        assert_eq!(
            from_anyone.client,
            Some("198.51.100.9:5000".parse().unwrap())
        );
        assert_eq!(from_anyone.scheme, "ws");
        assert_eq!(from_anyone.host.as_deref(), Some("backend:8000"));
    }

    #[test]
    fn a_spoofed_first_address_is_not_taken_for_the_client() {
        // The client itself wrote "1.2.3.4"; our proxy appended the address it saw.
        let mut s = scope(
            "127.0.0.1:5000",
            &[("x-forwarded-for", "1.2.3.4, 203.0.113.7")],
        );
        apply(&mut s, &nets(&["127.0.0.1/32"]), "");
        assert_eq!(s.client, Some("203.0.113.7:0".parse().unwrap()));
    }

    #[test]
    fn the_forwarded_header_wins_and_keeps_ports_and_ipv6() {
        let mut s = scope(
            "[::1]:5000",
            &[
                (
                    "forwarded",
                    r#"for="[2001:db8:cafe::17]:4711";proto=https;host=example.org"#,
                ),
                ("x-forwarded-for", "198.51.100.1"),
            ],
        );
        apply(&mut s, &nets(&["::1/128"]), "");
        assert_eq!(s.client, Some("[2001:db8:cafe::17]:4711".parse().unwrap()));
        assert_eq!(s.scheme, "wss");
        assert_eq!(s.host.as_deref(), Some("example.org"));
        let mut unknown = scope("127.0.0.1:1", &[("forwarded", "for=unknown")]);
        apply(&mut unknown, &nets(&["127.0.0.0/8"]), "");
        assert_eq!(unknown.client, Some("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn root_path_is_noted_and_skipped_by_routing() {
        let mut s = scope("127.0.0.1:1", &[]);
        apply(&mut s, &[], "/ws/");
        assert_eq!(s.root_path, "/ws");
        assert_eq!(s.path_remaining(), "/chat/lobby/");
        let mut other = scope("127.0.0.1:1", &[]);
        apply(&mut other, &[], "/w");
        assert_eq!(
            other.path_remaining(),
            "/ws/chat/lobby/",
            "not a path prefix"
        );
    }
}
