//! The security suite: attacks on a real server over real sockets, with the defaults a fresh
//! `switchboard::serve` app gets. SECURITY.md lists what each test tries and what must happen.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{notes, within, Echo, Note, Observed, TestServer};
use futures_util::{SinkExt, StreamExt};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::InMemoryChannelLayer;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use switchboard::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A server with the default configuration but what `configure` changes: `/ws/echo/` (its
/// consumers report on the returned notes), and an HTTP application that counts the requests
/// it is given.
async fn server(
    configure: impl FnOnce(&mut ServerConfig),
) -> (TestServer, mpsc::Receiver<Note>, Arc<AtomicUsize>) {
    let (tx, rx) = notes();
    let routed = Arc::new(AtomicUsize::new(0));
    let counted = routed.clone();
    let http = tower_service_fn(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let app = ProtocolTypeRouter::new()
        .http(http)
        .websocket(UrlRouter::new().route("/ws/echo/", move || Observed::new(Echo, tx.clone())));
    let mut config = ServerConfig::default();
    configure(&mut config);
    let server = TestServer::start_with(app, InMemoryChannelLayer::new(), config).await;
    (server, rx, routed)
}

/// An axum router answering `200 routed` to everything, calling `seen` each time.
fn tower_service_fn(seen: impl Fn() + Clone + Send + Sync + 'static) -> axum::Router {
    axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen();
            "routed"
        }
    })
}

/// Sends `request` as raw bytes from `source` (a loopback address) and reads the response head's
/// status, or `None` when the server closed without answering.
async fn raw_status_from(source: &str, addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = within(socket.connect(addr)).await.unwrap();
    stream.write_all(request).await.unwrap();
    status_line(&mut stream).await
}

async fn status_line(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match within(stream.read(&mut byte)).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

async fn raw_status(addr: SocketAddr, request: &str) -> Option<u16> {
    raw_status_from("127.0.0.1", addr, request.as_bytes()).await
}

fn handshake(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /ws/echo/ HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// No consumer has run: nothing was reported on `notes`.
fn no_consumer_ran(notes: &mut mpsc::Receiver<Note>) {
    if let Ok(note) = notes.try_recv() {
        panic!("a consumer ran: {note:?}");
    }
}

async fn echoes(client: &mut common::Client) {
    within(client.send(tungstenite::Message::text("hi")))
        .await
        .unwrap();
    assert_eq!(common::recv_text(client).await, "hi");
}

// ---------------------------------------------------------------------------------------------
// Cross-site WebSocket hijacking: the default origin check.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fresh_server_refuses_cross_site_handshakes() {
    let (server, mut notes, _) = server(|_| {}).await;
    let addr = server.addr;
    for origin in [
        "https://evil.example".to_owned(),
        format!("http://127.0.0.1:{}", addr.port() + 1),
        format!("https://{addr}"),
        format!("http://localhost:{}", addr.port()),
        "null".to_owned(),
        "http://127.0.0.1:99999".to_owned(),
        "file://".to_owned(),
    ] {
        let status = raw_status(addr, &handshake(addr, &format!("Origin: {origin}\r\n"))).await;
        assert_eq!(status, Some(403), "Origin: {origin}");
    }
    no_consumer_ran(&mut notes);
    assert_eq!(server.stats.snapshot().refused.forbidden, 7);

    // The server's own pages, and clients that send no Origin, connect.
    let mut own = server
        .connect_from("/ws/echo/", &format!("http://{addr}"))
        .await;
    echoes(&mut own).await;
    let mut cli = server.connect("/ws/echo/").await;
    echoes(&mut cli).await;
    assert!(matches!(notes.try_recv(), Ok(Note::Connected { .. })));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_origin_is_judged() {
    let (behind, _notes, _) = server(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let addr = behind.addr;
    let forwarded = "X-Forwarded-Host: chat.example\r\nX-Forwarded-Proto: https\r\n";
    let with = |origin: &str| handshake(addr, &format!("{forwarded}Origin: {origin}\r\n"));
    assert_eq!(
        raw_status(addr, &with("https://chat.example")).await,
        Some(101)
    );
    assert_eq!(
        raw_status(addr, &with("http://chat.example")).await,
        Some(403),
        "the proxy says the page was https"
    );
    assert_eq!(
        raw_status(addr, &with(&format!("http://{addr}"))).await,
        Some(403),
        "the proxy's own address is not the page's origin"
    );

    // From an address that is not a trusted proxy the same headers are the client's own words:
    // the request's Host is judged.
    let (untrusted, _notes, _) = server(|_| {}).await;
    let addr = untrusted.addr;
    let with = |origin: &str| handshake(addr, &format!("{forwarded}Origin: {origin}\r\n"));
    assert_eq!(
        raw_status(addr, &with("https://chat.example")).await,
        Some(403)
    );
    assert_eq!(
        raw_status(addr, &with(&format!("http://{addr}"))).await,
        Some(101)
    );
}

// ---------------------------------------------------------------------------------------------
// Connection caps.
// ---------------------------------------------------------------------------------------------

#[test]
fn max_connections_defaults_to_the_open_file_limit_less_room() {
    let limit = ServerConfig::open_file_connection_limit().expect("a Unix open-file limit");
    assert_eq!(ServerConfig::default().max_connections, Some(limit));
    let soft = std::process::Command::new("sh")
        .args(["-c", "ulimit -n"])
        .output()
        .unwrap();
    let soft: usize = String::from_utf8_lossy(&soft.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(limit < soft && limit >= soft / 2, "{limit} of {soft}");
}

#[tokio::test]
async fn ten_thousand_handshakes_from_one_address_meet_its_cap() {
    const CAP: usize = 10;
    const ATTEMPTS: usize = 10_000;
    let (server, _notes, routed) = server(|config| {
        config.max_connections_per_client = Some(CAP);
    })
    .await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(server.connect("/ws/echo/").await);
    }
    // 16 clients at once, each handshaking again and again from 127.0.0.1.
    let request = Arc::new(handshake(addr, ""));
    let mut attackers = Vec::new();
    for worker in 0..16 {
        let request = request.clone();
        attackers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in (worker..ATTEMPTS).step_by(16) {
                statuses.push(raw_status_from("127.0.0.1", addr, request.as_bytes()).await);
            }
            statuses
        }));
    }
    let mut refused = 0;
    for attacker in attackers {
        for status in within(attacker).await.unwrap() {
            assert_eq!(status, Some(503));
            refused += 1;
        }
    }
    assert_eq!(refused, ATTEMPTS);
    let stats = server.stats.snapshot();
    assert_eq!(stats.refused_max_connections_per_client, ATTEMPTS as u64);
    assert_eq!(stats.connections, CAP);
    let metrics = switchboard::metrics::render(&server.stats.snapshot());
    assert!(
        metrics.contains("switchboard_handshakes_refused_max_connections_per_client_total 10000"),
        "{metrics}"
    );

    // The server serves everyone else meanwhile: another address, HTTP, the held sockets.
    let other = raw_status_from("127.0.0.2", addr, handshake(addr, "").as_bytes()).await;
    assert_eq!(other, Some(101));
    let before = routed.load(Ordering::SeqCst);
    assert!(common::get(addr, "/").await.starts_with("HTTP/1.1 200"));
    assert_eq!(routed.load(Ordering::SeqCst), before + 1);
    for client in &mut held {
        echoes(client).await;
    }

    // A place given back is a place taken again.
    let mut gone = held.pop().unwrap();
    gone.close(None).await.unwrap();
    while gone.next().await.is_some() {}
    within(async {
        while server.stats.snapshot().connections > CAP {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut again = server.connect("/ws/echo/").await;
    echoes(&mut again).await;
}

// ---------------------------------------------------------------------------------------------
// Request smuggling and malformed heads: 400 (or 431), nothing routed.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn smuggled_and_malformed_requests_are_refused_and_not_routed() {
    let (server, mut notes, routed) = server(|_| {}).await;
    let addr = server.addr;
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(512 << 10));
    let cases: Vec<(&str, String)> = vec![
        (
            "two Host headers",
            "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n".into(),
        ),
        (
            "two Host headers on a handshake",
            handshake(addr, "Host: b.example\r\n"),
        ),
        (
            "two different Content-Lengths",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"
                .into(),
        ),
        (
            "a Transfer-Encoding that is not chunked last",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
                .into(),
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n".into(),
        ),
        (
            "a space before the colon",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n".into(),
        ),
        (
            "200 headers",
            format!("GET / HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n"),
        ),
        (
            "a 512 KiB header",
            format!("GET / HTTP/1.1\r\nHost: a\r\n{huge_header}\r\n"),
        ),
    ];
    for (what, request) in &cases {
        let status = raw_status(addr, request).await;
        assert!(
            matches!(status, Some(400 | 431) | None),
            "{what}: answered {status:?}"
        );
        assert_eq!(routed.load(Ordering::SeqCst), 0, "{what}: routed");
    }
    no_consumer_ran(&mut notes);

    // Content-Length beside Transfer-Encoding: hyper reads the body as chunked (RFC 9112 §6.1
    // lets a server do that, or refuse), answers that one request and closes the connection, so
    // what a proxy going by Content-Length would take for a second request is never read as one.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    within(stream.read_to_string(&mut answer)).await.unwrap();
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(routed.load(Ordering::SeqCst), 1, "only the first request");

    // And the server carries on.
    assert!(common::get(addr, "/").await.starts_with("HTTP/1.1 200"));
    let mut client = server.connect("/ws/echo/").await;
    echoes(&mut client).await;
}

#[tokio::test]
async fn websocket_key_and_version_abuse_is_refused() {
    let (server, mut notes, routed) = server(|_| {}).await;
    let addr = server.addr;
    let head = |lines: &str| {
        format!("GET /ws/echo/ HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{lines}\r\n")
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        ("no key", head(v13), 400),
        (
            "a short key",
            head(&format!("{v13}Sec-WebSocket-Key: c2hvcnQ=\r\n")),
            400,
        ),
        (
            "a key that is not base64",
            head(&format!(
                "{v13}Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"
            )),
            400,
        ),
        (
            "a 32-byte key",
            head(&format!(
                "{v13}Sec-WebSocket-Key: {}\r\n",
                "QUFB".repeat(10) + "QUFBQQ=="
            )),
            400,
        ),
        (
            "two keys",
            head(&format!(
                "{v13}{key}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
            )),
            400,
        ),
        ("no version", head(key), 426),
        (
            "version 8",
            head(&format!("{key}Sec-WebSocket-Version: 8\r\n")),
            426,
        ),
        (
            "two versions",
            head(&format!("{key}Sec-WebSocket-Version: 13, 8\r\n")),
            426,
        ),
        ("version 13 twice", head(&format!("{key}{v13}{v13}")), 426),
        (
            "a huge version",
            head(&format!(
                "{key}Sec-WebSocket-Version: {}\r\n",
                "9".repeat(100)
            )),
            426,
        ),
    ];
    for (what, request, expected) in &cases {
        let status = raw_status(addr, request).await;
        assert_eq!(status, Some(*expected), "{what}");
    }
    no_consumer_ran(&mut notes);
    assert_eq!(routed.load(Ordering::SeqCst), 0);
    let mut client = server.connect("/ws/echo/").await;
    echoes(&mut client).await;
}

// ---------------------------------------------------------------------------------------------
// URL routing: traversal and encoding tricks reach no route they do not name.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn traversal_and_encoding_tricks_do_not_reach_other_routes() {
    let (public, mut public_notes) = notes();
    let (admin, mut admin_notes) = notes();
    let app = ProtocolTypeRouter::new().websocket(
        UrlRouter::new()
            .route("/ws/public/{room}/", move || {
                Observed::new(Echo, public.clone())
            })
            .route("/ws/admin/", move || Observed::new(Echo, admin.clone())),
    );
    let server = TestServer::start(app).await;
    let addr = server.addr;
    let at = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    for path in [
        "/ws/public/../admin/",
        "/ws/public/x/../../admin/",
        "/ws/public/%2e%2e/admin/",
        "/ws/public/%2E%2E%2Fadmin/",
        "/ws/public/..%2fadmin/",
        "/ws/public/..%5cadmin/",
        "/ws/public/%2e%2e%2f%2e%2e%2fws%2fadmin/",
        "/ws//admin/",
        "//ws/admin/",
        "/ws/ADMIN/",
        "/ws/admin%2F",
        "/ws/admin/%00",
        "/ws/admin/.",
        "/ws/admin/;x",
        "/ws/admin/%2e",
        "/ws/./admin/",
        "/ws/public/a/b/",
        "/ws/public/%00/",
        "*",
    ] {
        let status = raw_status(addr, &at(path)).await;
        assert!(
            matches!(status, Some(101 | 400 | 403 | 404)),
            "{path}: answered {status:?}"
        );
        assert!(
            admin_notes.try_recv().is_err(),
            "{path}: reached the admin consumer"
        );
        if status == Some(101) {
            // Only a single-segment room of the public route, never a traversal.
            while !matches!(
                common::next_note(&mut public_notes).await,
                Note::Connected { .. }
            ) {}
        }
    }
    // What does reach the admin route: its path, also spelt with percent-encoded unreserved
    // characters (the same URL, RFC 3986 §6.2.2.2), as Channels routes the decoded path.
    for path in ["/ws/admin/", "/ws/%61dmin/"] {
        assert_eq!(raw_status(addr, &at(path)).await, Some(101), "{path}");
        while !matches!(
            common::next_note(&mut admin_notes).await,
            Note::Connected { .. }
        ) {}
    }
    // Percent-decoding happens once: `%252e` is the text `%2e`, a room name, not `.`.
    let mut client = server.connect("/ws/public/%252e%252e/").await;
    echoes(&mut client).await;
}

// ---------------------------------------------------------------------------------------------
// Per-user groups: one authenticated user cannot read another's notifications.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Account {
    id: String,
}

/// Joins its user's group and forwards `notify` events to the client.
struct Inbox;

#[switchboard::async_trait]
impl WebSocketConsumer for Inbox {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let id = ctx
            .scope()
            .extensions
            .get::<Account>()
            .map(|a| a.id.clone());
        let Some(id) = id else {
            ctx.close(4401, "no account").await?;
            return Ok(());
        };
        ctx.group_add(&switchboard::layer::user_group(&id)).await?;
        ctx.accept().await?;
        Ok(())
    }
    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
    fn forwards_event(&self, event_type: &str) -> bool {
        event_type == "notify"
    }
}

#[tokio::test]
async fn a_user_cannot_read_another_user_s_notifications() {
    use switchboard::layer::{user_group, ChannelLayer};
    use switchboard::middleware::{
        authenticator_fn, AuthMiddleware, CookieMiddleware, TokenSource,
    };
    // Session tokens are secrets the server resolves; ids never come from the client.
    let sessions = authenticator_fn(|token: String| async move {
        Ok(match token.as_str() {
            "s-ada-8f3a" => Some(Account { id: "ada".into() }),
            "s-bob-77c1" => Some(Account { id: "bob".into() }),
            _ => None,
        })
    });
    let app = ProtocolTypeRouter::new().websocket(CookieMiddleware::new(
        AuthMiddleware::new(UrlRouter::new().route("/ws/inbox/", || Inbox), sessions)
            .token_sources([TokenSource::cookie("session")])
            .allow_anonymous(false),
    ));
    let server = TestServer::start(app).await;
    let addr = server.addr;
    let with = |lines: &str| {
        format!(
            "GET /ws/inbox/?user=bob&id=bob HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{lines}\r\n"
        )
    };
    // Without a valid session: refused, whatever else the request claims.
    for attempt in [
        "",
        "Cookie: session=bob\r\n",
        "Cookie: session=s-bob\r\n",
        "Cookie: session=S-BOB-77C1\r\n",
        "Cookie: session=s-bob-77c1%00\r\n",
        "Authorization: Bearer s-bob-77c1\r\nX-User: bob\r\n",
        "Cookie: user=bob; id=bob\r\n",
    ] {
        assert_eq!(
            raw_status(addr, &with(attempt)).await,
            Some(401),
            "{attempt:?}"
        );
    }
    assert_eq!(server.layer.stats().groups, 0, "nobody joined any group");

    // Ada, signed in, asking for bob's in every way a request can: she is ada.
    let mut request = server
        .url("/ws/inbox/?user=bob")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        "session=s-ada-8f3a; user=bob; session_user=bob"
            .parse()
            .unwrap(),
    );
    headers.insert("x-user", "bob".parse().unwrap());
    let (mut ada, _) = within(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    // A second `session` cookie after hers is not taken either: the first one wins.
    let mut request = server.url("/ws/inbox/").into_client_request().unwrap();
    request.headers_mut().insert(
        "cookie",
        "session=s-ada-8f3a; session=s-bob-77c1".parse().unwrap(),
    );
    let (mut ada_again, _) = within(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut request = server.url("/ws/inbox/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", "session=s-bob-77c1".parse().unwrap());
    let (mut bob, _) = within(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();

    let sent = server
        .layer
        .group_send(
            &user_group("bob"),
            &serde_json::json!({"type": "notify", "for": "bob"}),
        )
        .await
        .unwrap();
    assert!(sent.reached_anyone());
    assert_eq!(common::recv_json(&mut bob).await["for"], "bob");
    server
        .layer
        .group_send(
            &user_group("ada"),
            &serde_json::json!({"type": "notify", "for": "ada"}),
        )
        .await
        .unwrap();
    // Each of ada's tabs gets ada's, and nothing sent to bob came first.
    assert_eq!(common::recv_json(&mut ada).await["for"], "ada");
    assert_eq!(common::recv_json(&mut ada_again).await["for"], "ada");
    // Ids that look alike are other groups: "Bob", "bob " and "bob\u{200b}" are not bob.
    for lookalike in ["Bob", "bob ", "bob\u{200b}", "bob\0", "user.bob"] {
        assert_ne!(user_group(lookalike), user_group("bob"), "{lookalike:?}");
    }
}
