//! The testing helpers a Channels user expects: `HttpCommunicator` (requests and event streams
//! through a whole `ProtocolTypeRouter`), `WebSocketCommunicator` building its scope as the server
//! does (Host, subprotocol header, proxy settings, `ServerConfig` limits, a whole router), and
//! `TestServer` on a real port.

use std::time::Duration;

use axum::extract::Path;
use axum::Extension;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{user_group, ChannelLayer, InMemoryChannelLayer, LayerHandle};
use switchboard::middleware::OriginValidator;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};
use switchboard::testing::{
    HandshakeOutcome, HttpCommunicator, Received, TestServer, WebSocketCommunicator,
};
use switchboard::websocket::{close_code, Message};
use switchboard::ServerConfig;

const T: Duration = Duration::from_secs(5);

/// Joins the group of the user named in `?user=`, and reports its scope on every message.
#[derive(Default)]
struct Inbox;

#[switchboard::async_trait]
impl WebSocketConsumer for Inbox {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        if let Some(user) = ctx.scope().query_param("user") {
            ctx.group_add(&user_group(&user)).await?;
        }
        match ctx.scope().subprotocols.first().cloned() {
            Some(protocol) => ctx.accept_subprotocol(&protocol).await?,
            None => ctx.accept().await?,
        }
        Ok(())
    }
    async fn receive(&mut self, ctx: &mut Context, _: Message) -> switchboard::Result<()> {
        let scope = ctx.scope();
        let report = json!({
            "host": scope.host,
            "scheme": scope.scheme,
            "client": scope.client.map(|c| c.to_string()),
            "subprotocols": scope.subprotocols,
        });
        ctx.send_json(&report).await?;
        Ok(())
    }
    async fn event(
        &mut self,
        ctx: &mut Context,
        event: switchboard::layer::Event,
    ) -> switchboard::Result<()> {
        ctx.send_text(event.to_text()).await?;
        Ok(())
    }
}

/// An event stream of one user's notifications.
struct Feed {
    user: String,
}

#[derive(Deserialize)]
struct Notify {
    text: String,
}

#[switchboard::async_trait]
impl SseConsumer for Feed {
    type Event = Notify;
    async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        ctx.group_add(&user_group(&self.user)).await?;
        ctx.send(SseEvent::data("ready").event("hello")).await?;
        Ok(())
    }
    async fn event(&mut self, ctx: &mut SseContext, n: Notify) -> switchboard::Result<()> {
        ctx.send(SseEvent::data(n.text).event("notify")).await?;
        Ok(())
    }
}

/// `POST /notify/{user}` (202, or 404 when the user has nothing open) and `GET /feed/{user}`.
fn notifications_app() -> ProtocolTypeRouter {
    let http = axum::Router::new()
        .route(
            "/notify/{user}",
            axum::routing::post(
                |Path(user): Path<String>,
                 Extension(layer): Extension<LayerHandle>,
                 axum::Json(body): axum::Json<Value>| async move {
                    let event = json!({ "type": "notify", "text": body["text"] });
                    match layer.group_send(&user_group(&user), &event).await {
                        Ok(sent) if sent.reached_anyone() => axum::http::StatusCode::ACCEPTED,
                        Ok(_) => axum::http::StatusCode::NOT_FOUND,
                        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    }
                },
            ),
        )
        .route(
            "/feed/{user}",
            axum::routing::get(
                |Path(user): Path<String>,
                 Extension(layer): Extension<LayerHandle>,
                 parts: http::request::Parts| async move {
                    sse::respond(Feed { user }, &parts, layer).await
                },
            ),
        );
    ProtocolTypeRouter::new()
        .http(http)
        .websocket(UrlRouter::new().route("/ws/inbox/", Inbox::default))
}

#[tokio::test]
async fn http_communicator_reaches_handlers_websockets_and_event_streams_through_one_layer() {
    let layer = InMemoryChannelLayer::new();
    let http = HttpCommunicator::new(notifications_app()).channel_layer(layer.clone());

    // Nobody to notify yet.
    let nobody = http
        .post_json("/notify/ada", &json!({ "text": "x" }))
        .await
        .unwrap();
    assert_eq!(nobody.status(), 404);

    // An event stream and a WebSocket of ada's, on the same layer.
    let mut feed = http.events("/feed/ada").await;
    assert_eq!(feed.status(), 200);
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let hello = feed.next_event(T).await.unwrap();
    assert_eq!(
        (hello.event.as_deref(), hello.data.as_str()),
        (Some("hello"), "ready")
    );
    let mut tab = WebSocketCommunicator::new(notifications_app(), "/ws/inbox/?user=ada")
        .channel_layer(layer.clone());
    tab.connect().await.unwrap().expect_accepted();

    let sent = http
        .post_json("/notify/ada", &json!({ "text": "your build passed" }))
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let event = feed.next_event(T).await.unwrap();
    assert_eq!(
        (event.event.as_deref(), event.data.as_str()),
        (Some("notify"), "your build passed")
    );
    let frame: Value = tab.receive_json(T).await.unwrap();
    assert_eq!(frame["text"], "your build passed");

    // The handler's extensions hold the same layer the communicator was given.
    assert_eq!(http.layer().stats().memberships, 2);
    tab.disconnect(close_code::NORMAL).await.unwrap();
    drop(feed);
    // A plain 404 from the HTTP side.
    assert_eq!(http.get("/nowhere").await.unwrap().status(), 404);
}

#[tokio::test]
async fn websocket_communicator_builds_the_scope_as_the_server_does() {
    // Host reaches scope.host, so a same-origin check passes; the subprotocol header reaches
    // scope.subprotocols; a whole ProtocolTypeRouter is accepted.
    let app = ProtocolTypeRouter::new().websocket(
        OriginValidator::new(
            UrlRouter::new().route("/ws/inbox/", Inbox::default),
            Vec::<String>::new(),
        )
        .allow_same_origin(),
    );
    let mut same = WebSocketCommunicator::new(app.clone(), "/ws/inbox/")
        .header(
            http::header::HOST,
            http::HeaderValue::from_static("chat.example"),
        )
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("http://chat.example"),
        )
        .subprotocols(&["v2.chat", "v1.chat"]);
    assert_eq!(
        same.connect().await.unwrap().expect_accepted().as_deref(),
        Some("v2.chat")
    );
    same.send_text("who").await.unwrap();
    let report: Value = same.receive_json(T).await.unwrap();
    assert_eq!(report["host"], "chat.example");
    assert_eq!(report["subprotocols"], json!(["v2.chat", "v1.chat"]));
    same.disconnect(close_code::NORMAL).await.unwrap();

    let mut other = WebSocketCommunicator::new(app, "/ws/inbox/")
        .header(
            http::header::HOST,
            http::HeaderValue::from_static("chat.example"),
        )
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("http://evil.example"),
        );
    assert_eq!(
        other.connect().await.unwrap(),
        HandshakeOutcome::Rejected(http::StatusCode::FORBIDDEN)
    );
}

#[tokio::test]
async fn websocket_communicator_applies_server_config() {
    // Proxy headers from a trusted proxy, and the message size limit.
    let mut config = ServerConfig::default();
    config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    config.max_message_size = 64;
    let mut client = WebSocketCommunicator::new(Inbox::default, "/ws/")
        .config(config)
        .client("10.1.2.3:4000".parse().unwrap())
        .header(
            http::HeaderName::from_static("x-forwarded-for"),
            http::HeaderValue::from_static("203.0.113.9"),
        )
        .header(
            http::HeaderName::from_static("x-forwarded-proto"),
            http::HeaderValue::from_static("https"),
        );
    client.connect().await.unwrap().expect_accepted();
    client.send_text("who").await.unwrap();
    let report: Value = client.receive_json(T).await.unwrap();
    assert_eq!(report["client"], "203.0.113.9:0");
    assert_eq!(report["scheme"], "wss");
    client.send_text(&"x".repeat(100)).await.unwrap();
    match client.receive(T).await.unwrap() {
        Received::Close { code, .. } => assert_eq!(code, close_code::MESSAGE_TOO_BIG),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

#[tokio::test]
async fn test_server_serves_on_a_free_port_and_shuts_down_gracefully() {
    let server = TestServer::builder(notifications_app())
        .channel_layer(InMemoryChannelLayer::new())
        .start()
        .await
        .unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url("/ws/inbox/?user=bob"))
        .await
        .unwrap();
    // The test reaches the server's consumers through its layer.
    let sent = server
        .layer()
        .group_send(
            &user_group("bob"),
            &json!({ "type": "notify", "text": "hi" }),
        )
        .await
        .unwrap();
    assert!(sent.reached_anyone());
    let frame = tokio::time::timeout(T, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(frame.to_text().unwrap().contains("hi"));
    assert_eq!(server.stats().snapshot().connections, 1);
    let stop = tokio::spawn(server.shutdown());
    let close = loop {
        match tokio::time::timeout(T, socket.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), close_code::GOING_AWAY);
    // Reading on sends the close reply, as a browser does, until the server hangs up.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(T, socket.next()).await {}
    tokio::time::timeout(T, stop)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
