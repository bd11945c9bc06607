//! Routing over real sockets: `ProtocolTypeRouter` by protocol, `UrlRouter` by path with params,
//! catch-alls and nesting; malformed handshakes.

mod common;

use common::{handshake_status, recv, within, TestServer};
use futures_util::SinkExt;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

/// Answers every message with what it knows: a label, the scope's route params, and its path.
struct Describe(&'static str);

#[switchboard::async_trait]
impl WebSocketConsumer for Describe {
    async fn receive(&mut self, ctx: &mut Context, _: Message) -> switchboard::Result<()> {
        let scope = ctx.scope();
        let params: Vec<String> = scope
            .url_route
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let text = format!(
            "{} [{}] {} q={}",
            self.0,
            params.join(","),
            scope.path,
            scope.query_string
        );
        ctx.send_text(text).await?;
        Ok(())
    }
}

fn router() -> UrlRouter {
    let rooms = UrlRouter::new()
        .route("/", || Describe("rooms-index"))
        .route("/{room}/", || Describe("room"))
        .route("/{room}/files/{*path}", || Describe("files"));
    UrlRouter::new()
        .route("/ws/echo/", || Describe("echo"))
        .nest("/ws/rooms", rooms)
        .nest(
            "/ws/v2/",
            UrlRouter::new().nest(
                "/deep",
                UrlRouter::new().route("/{leaf}", || Describe("deep")),
            ),
        )
}

async fn describe(server: &TestServer, path: &str) -> String {
    let mut client = server.connect(path).await;
    within(client.send(tungstenite::Message::text("?")))
        .await
        .unwrap();
    match recv(&mut client).await {
        tungstenite::Message::Text(text) => text.to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn paths_params_catch_alls_and_nesting() {
    let server = TestServer::start(ProtocolTypeRouter::new().websocket(router())).await;
    assert_eq!(
        describe(&server, "/ws/echo/?a=1").await,
        "echo [] /ws/echo/ q=a=1"
    );
    assert_eq!(
        describe(&server, "/ws/rooms/lobby/").await,
        "room [room=lobby] /ws/rooms/lobby/ q="
    );
    assert_eq!(
        describe(&server, "/ws/rooms").await,
        "rooms-index [] /ws/rooms q="
    );
    assert_eq!(
        describe(&server, "/ws/rooms/").await,
        "rooms-index [] /ws/rooms/ q="
    );
    assert_eq!(
        describe(&server, "/ws/rooms/caf%C3%A9/files/a/b%20c.txt").await,
        "files [room=café,path=a/b c.txt] /ws/rooms/café/files/a/b c.txt q="
    );
    assert_eq!(
        describe(&server, "/ws/v2/deep/x").await,
        "deep [leaf=x] /ws/v2/deep/x q="
    );
    for missing in [
        "/",
        "/ws/echo",
        "/ws/rooms/lobby",
        "/ws/rooms/a/b/",
        "/ws/v2/deep/",
        "/ws/v3/",
    ] {
        assert_eq!(server.handshake_status(missing).await, 404, "{missing}");
    }
}

#[test]
#[should_panic(expected = "invalid route")]
fn conflicting_routes_panic_at_startup() {
    let _ = UrlRouter::new()
        .route("/ws/{a}/", || Describe("a"))
        .route("/ws/{b}/", || Describe("b"));
}

async fn raw_request(server: &TestServer, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0; 1024];
    let n = within(stream.read(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response[..n]).into_owned()
}

#[tokio::test]
async fn a_protocol_without_an_application_gets_404() {
    let server = TestServer::start(ProtocolTypeRouter::new()).await;
    assert_eq!(server.handshake_status("/ws/echo/").await, 404);
    let response = raw_request(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test]
async fn http_goes_to_the_http_service_and_websockets_to_the_router() {
    let http =
        axum::Router::new().route("/ws/echo/", axum::routing::get(|| async { "plain http" }));
    let server = TestServer::start(ProtocolTypeRouter::new().http(http).websocket(router())).await;
    let response = raw_request(&server, "GET /ws/echo/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("plain http"),
        "{response}"
    );
    assert_eq!(describe(&server, "/ws/echo/").await, "echo [] /ws/echo/ q=");
}

#[tokio::test]
async fn malformed_handshakes_are_refused_with_the_right_status() {
    let server = TestServer::start(ProtocolTypeRouter::new().websocket(router())).await;
    let handshake = |version: &str, key: &str| {
        format!(
            "GET /ws/echo/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    let response = raw_request(&server, &handshake("8", "dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{response}"
    );
    let response = raw_request(&server, &handshake("13", "short")).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let response = raw_request(
        &server,
        "POST /ws/echo/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    let response = raw_request(
        &server,
        "GET /ws/echo/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let response = raw_request(
        &server,
        &handshake("13", "dGhlIHNhbXBsZSBub25jZQ==").replace("/ws/echo/", "/ws/%FF/"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    // The server carries on.
    let mut request = server.url("/ws/echo/").into_client_request().unwrap();
    request.headers_mut().insert(
        "origin",
        http::HeaderValue::from_str(&format!("http://{}", server.addr)).unwrap(),
    );
    assert_eq!(handshake_status(request).await, 101);
}

#[test]
fn resolve_says_what_a_path_would_capture() {
    let router = router();
    let params = |path: &str| {
        router.resolve(path).map(|route| {
            route
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    };
    assert_eq!(params("/ws/echo/").as_deref(), Some(""));
    assert_eq!(params("/ws/rooms/lobby/").as_deref(), Some("room=lobby"));
    assert_eq!(params("/ws/rooms").as_deref(), Some(""));
    assert_eq!(
        params("/ws/rooms/café/files/a/b c.txt").as_deref(),
        Some("room=café,path=a/b c.txt")
    );
    assert_eq!(params("/ws/v2/deep/x").as_deref(), Some("leaf=x"));
    for missing in [
        "/",
        "",
        "/ws/echo",
        "/ws/rooms/a/b/",
        "/ws/v2/deep/",
        "//",
        "/ws//rooms/",
    ] {
        assert_eq!(params(missing), None, "{missing:?}");
    }
}
