//! Behind a reverse proxy, over real sockets: forwarded headers count only from trusted proxies,
//! the root path is routed through, and same-origin checks use the forwarded scheme and host.

mod common;

use common::{recv_json, TestServer};
use serde_json::json;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::InMemoryChannelLayer;
use switchboard::middleware::OriginValidator;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::scope::ClientInfo;
use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};
use switchboard::websocket::Message;
use switchboard::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Sends what its scope says of the connection, then nothing more.
struct Reporter;

#[switchboard::async_trait]
impl WebSocketConsumer for Reporter {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.accept().await?;
        let scope = ctx.scope();
        let report = json!({
            "client": scope.client.map(|c| c.to_string()),
            "scheme": scope.scheme,
            "host": scope.host,
            "root_path": scope.root_path,
            "path": scope.path,
        });
        ctx.send_json(&report).await?;
        Ok(())
    }

    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
}

/// An event stream whose one event is what its scope says of the connection.
struct SseReporter;

#[switchboard::async_trait]
impl SseConsumer for SseReporter {
    type Event = serde::de::IgnoredAny;

    async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        let scope = ctx.scope();
        let report = json!({
            "client": scope.client.map(|c| c.to_string()),
            "scheme": scope.scheme,
            "host": scope.host,
        });
        ctx.send(SseEvent::data(report.to_string())).await?;
        Ok(())
    }

    async fn event(&mut self, _: &mut SseContext, _: Self::Event) -> switchboard::Result<()> {
        Ok(())
    }
}

async fn server(config: ServerConfig) -> TestServer {
    let events = axum::Router::new()
        .route(
            "/events",
            axum::routing::get(|request: axum::extract::Request| async move {
                let (parts, _) = request.into_parts();
                sse::respond(SseReporter, &parts, InMemoryChannelLayer::new()).await
            }),
        )
        .route(
            "/whoami",
            axum::routing::get(
                |axum::Extension(info): axum::Extension<ClientInfo>| async move {
                    axum::Json(json!({
                        "client": info.client.map(|c| c.to_string()),
                        "scheme": info.scheme,
                        "host": info.host,
                    }))
                },
            ),
        );
    let app = ProtocolTypeRouter::new().http(events).websocket(
        OriginValidator::new(
            UrlRouter::new().route("/ws/", || Reporter),
            ["allowed.test"],
        )
        .allow_same_origin(),
    );
    // The server lets `allowed.test` through too; the validator then narrows nothing more.
    let mut config = config;
    config.origin_check = switchboard::OriginCheck::same_origin().allow(["allowed.test"]);
    TestServer::start_with(app, InMemoryChannelLayer::new(), config).await
}

/// Connects to `path` with `headers` and returns the report, or the refusal's status.
async fn report(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<serde_json::Value, u16> {
    let mut request = server.url(path).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match common::within(tokio_tungstenite::connect_async(request)).await {
        Ok((mut client, _)) => Ok(recv_json(&mut client).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("{other}"),
    }
}

const FORWARDED: [(&str, &str); 4] = [
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "chat.example.com"),
    ("origin", "https://chat.example.com"),
];

#[tokio::test]
async fn a_trusted_proxy_sets_client_scheme_and_host() {
    let mut config = ServerConfig::default();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let server = server(config).await;
    let got = report(&server, "/ws/", &FORWARDED).await.unwrap();
    assert_eq!(got["client"], "203.0.113.7:0");
    assert_eq!(got["scheme"], "wss");
    assert_eq!(got["host"], "chat.example.com");
    // The same origin as forwarded is accepted; another is not.
    let mut other = FORWARDED;
    other[3] = ("origin", "https://evil.example.com");
    assert_eq!(report(&server, "/ws/", &other).await.unwrap_err(), 403);
}

#[tokio::test]
async fn from_anyone_else_forwarded_headers_are_ignored() {
    let server = server(ServerConfig::default()).await;
    // The forwarded origin is not ours when nobody is trusted: refused.
    assert_eq!(report(&server, "/ws/", &FORWARDED).await.unwrap_err(), 403);
    let mut headers = FORWARDED;
    let own = format!("http://{}", server.addr);
    headers[3] = ("origin", &own);
    let got = report(&server, "/ws/", &headers).await.unwrap();
    assert!(got["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_ne!(got["client"], "127.0.0.1:0");
    assert_eq!(got["scheme"], "ws");
    assert_eq!(got["host"], server.addr.to_string());
}

#[tokio::test]
async fn the_root_path_is_routed_through_and_reported() {
    let mut config = ServerConfig::default();
    config.root_path = "/app".into();
    let server = server(config).await;
    let origin = [("origin", "http://allowed.test")];
    let got = report(&server, "/app/ws/", &origin).await.unwrap();
    assert_eq!(
        (got["root_path"].as_str(), got["path"].as_str()),
        (Some("/app"), Some("/app/ws/"))
    );
    // A proxy that strips the prefix works too.
    let got = report(&server, "/ws/", &origin).await.unwrap();
    assert_eq!(got["root_path"], "/app");
    assert_eq!(
        report(&server, "/other/ws/", &origin).await.unwrap_err(),
        404
    );
}

#[tokio::test]
async fn event_streams_get_the_forwarded_client_too() {
    let mut config = ServerConfig::default();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let server = server(config).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"GET /events HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: 203.0.113.9\r\n\
              X-Forwarded-Proto: https\r\nX-Forwarded-Host: news.example.com\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 1024];
    while !seen.contains("news.example.com") {
        let n = tokio::time::timeout(common::WAIT, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("so far: {seen}"))
            .unwrap();
        assert!(n > 0, "stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(seen.contains(r#""client":"203.0.113.9:0""#), "{seen}");
    assert!(seen.contains(r#""scheme":"https""#), "{seen}");
}

/// `GET /whoami` with `headers`; the JSON the handler answered.
async fn whoami(server: &TestServer, headers: &str) -> serde_json::Value {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request =
        format!("GET /whoami HTTP/1.1\r\nHost: backend:8000\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    common::within(stream.read_to_string(&mut response))
        .await
        .unwrap();
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{response}"))
}

#[tokio::test]
async fn http_handlers_get_the_client_info_too() {
    let forwarded = "X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: https\r\n\
                     X-Forwarded-Host: app.example.com\r\n";
    let mut config = ServerConfig::default();
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let trusting = server(config).await;
    let got = whoami(&trusting, forwarded).await;
    assert_eq!(
        (&got["client"], &got["scheme"], &got["host"]),
        (
            &json!("203.0.113.5:0"),
            &json!("https"),
            &json!("app.example.com")
        )
    );
    let untrusting = server(ServerConfig::default()).await;
    let got = whoami(&untrusting, forwarded).await;
    assert!(got["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        (&got["scheme"], &got["host"]),
        (&json!("http"), &json!("backend:8000"))
    );
}
