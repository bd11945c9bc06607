//! `AppService` mounted in plain `axum::serve`, over real sockets: the axum_app example speaks the
//! chat protocol, its axum handler broadcasts through the same layer, shutdown closes the
//! WebSockets with 1001; a whole `ProtocolTypeRouter` mounted as the fallback gets the server's
//! extensions; limits and the client address hold in the mounted form.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum_app.rs"]
mod axum_app;

use std::net::SocketAddr;

use common::{
    axum_serve, connect_to, get, handshake_status, recv_close, recv_json, send_json, within, Client,
};
use serde_json::json;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::LayerHandle;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::{close_code, Message};
use switchboard::{AppService, ServerConfig, StatsHandle};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The axum_app example on 127.0.0.1:0, served by its own `run` (plain `axum::serve`).
struct AxumApp {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AxumApp {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(axum_app::run(listener, LayerHandle::in_memory(), async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn join(&self, room: &str) -> Client {
        connect_to(self.addr, &format!("/ws/chat/{room}/")).await
    }
}

#[tokio::test]
async fn the_chat_protocol_works_under_plain_axum_serve() {
    let app = AxumApp::start().await;
    let mut alice = app.join("lobby").await;
    let mut bob = app.join("lobby").await;
    let mut carol = app.join("kitchen").await;

    send_json(&mut alice, &json!({ "message": "hello" })).await;
    // Every member of the room, the sender too, gets an object with that "message".
    assert_eq!(recv_json(&mut alice).await["message"], "hello");
    assert_eq!(recv_json(&mut bob).await["message"], "hello");

    // Order per sender holds for every member.
    for n in 0..20 {
        send_json(&mut bob, &json!({ "message": format!("m{n}") })).await;
    }
    for client in [&mut alice, &mut bob] {
        for n in 0..20 {
            assert_eq!(recv_json(client).await["message"], format!("m{n}"));
        }
    }

    // Nothing leaked into the other room.
    send_json(&mut carol, &json!({ "message": "only here" })).await;
    assert_eq!(recv_json(&mut carol).await["message"], "only here");
}

#[tokio::test]
async fn an_axum_handler_broadcasts_through_the_same_layer() {
    let app = AxumApp::start().await;
    let mut alice = app.join("lobby").await;
    let mut bob = app.join("lobby").await;

    let response = common::post_json(
        app.addr,
        "/rooms/lobby/announce",
        &json!({ "message": "maintenance at noon" }),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    assert!(response.contains(r#""delivered":2"#), "{response}");
    for client in [&mut alice, &mut bob] {
        assert_eq!(recv_json(client).await["message"], "maintenance at noon");
    }

    // Nobody in that room: the handler can tell, since group_send says who received.
    let response = common::post_json(
        app.addr,
        "/rooms/empty/announce",
        &json!({ "message": "x" }),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    let page = get(app.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("new WebSocket"), "the chat page");
}

#[tokio::test]
async fn shutting_down_the_host_closes_mounted_websockets_with_1001() {
    let mut app = AxumApp::start().await;
    let mut alice = app.join("lobby").await;
    let _ = app.stop.take().unwrap().send(());
    let frame = recv_close(&mut alice).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), close_code::GOING_AWAY);
    within(&mut app.task).await.unwrap().unwrap();
}

/// Answers every message with what the scope said about the connection.
#[derive(Default)]
struct WhoAmI;

#[switchboard::async_trait]
impl WebSocketConsumer for WhoAmI {
    async fn receive(&mut self, ctx: &mut Context, _: Message) -> switchboard::Result<()> {
        let scope = ctx.scope();
        let answer = json!({
            "client": scope.client.map(|c| c.to_string()),
            "path": scope.path,
            "room": scope.url_route.get("room"),
        });
        ctx.send_json(&answer).await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_whole_protocol_type_router_mounts_as_the_fallback_with_the_server_extensions() {
    // The app's own HTTP side reads the layer and the stats from its requests' extensions.
    let http = axum::Router::new().route(
        "/api/stats",
        axum::routing::get(
            |axum::Extension(layer): axum::Extension<LayerHandle>,
             axum::Extension(stats): axum::Extension<StatsHandle>| async move {
                let sent = layer
                    .group_send("room_lobby", &json!({ "type": "ping" }))
                    .await
                    .unwrap();
                format!(
                    "connections={} reached={}",
                    stats.snapshot().connections,
                    sent.queued
                )
            },
        ),
    );
    #[derive(Default)]
    struct Member;
    #[switchboard::async_trait]
    impl WebSocketConsumer for Member {
        async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
            ctx.group_add("room_lobby").await?;
            ctx.accept().await?;
            Ok(())
        }
        async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
            Ok(())
        }
    }
    let app = ProtocolTypeRouter::new().http(http).websocket(
        UrlRouter::new()
            .route("/ws/who/{room}/", WhoAmI::default)
            .route("/ws/member/", Member::default),
    );
    let host = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .fallback_service(AppService::new(app));
    let addr = axum_serve(host).await;

    assert!(get(addr, "/health").await.ends_with("ok"));
    let mut who = connect_to(addr, "/ws/who/lobby/").await;
    send_json(&mut who, &json!({})).await;
    let answer = recv_json(&mut who).await;
    assert_eq!(answer["path"], "/ws/who/lobby/");
    assert_eq!(answer["room"], "lobby");
    let client: SocketAddr = answer["client"].as_str().unwrap().parse().unwrap();
    assert!(
        client.ip().is_loopback(),
        "ConnectInfo reached the scope: {answer}"
    );

    let _member = connect_to(addr, "/ws/member/").await;
    let stats = get(addr, "/api/stats").await;
    assert!(stats.ends_with("connections=2 reached=1"), "{stats}");

    assert_eq!(
        handshake_status(format!("ws://{addr}/ws/nowhere/")).await,
        404
    );
    assert!(get(addr, "/nowhere").await.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn server_config_limits_hold_in_the_mounted_form() {
    let mut config = ServerConfig::default();
    config.max_connections = Some(1);
    let service =
        AppService::new(UrlRouter::new().route("/ws/who/{room}/", WhoAmI::default)).config(config);
    let stats = service.stats();
    let addr = axum_serve(axum::Router::new().route_service("/ws/who/{room}/", service)).await;

    let mut first = connect_to(addr, "/ws/who/a/").await;
    assert_eq!(
        handshake_status(format!("ws://{addr}/ws/who/b/")).await,
        503
    );
    assert_eq!(stats.snapshot().refused_max_connections, 1);
    // The first one is still served.
    send_json(&mut first, &json!({})).await;
    assert_eq!(recv_json(&mut first).await["room"], "a");
}

#[tokio::test]
async fn the_default_origin_check_holds_in_the_mounted_form() {
    // No security configuration at all: `AppService::new` inside `axum::serve`.
    let service = AppService::new(UrlRouter::new().route("/ws/who/{room}/", WhoAmI::default));
    let stats = service.stats();
    let addr = axum_serve(axum::Router::new().route_service("/ws/who/{room}/", service)).await;
    let from = |origin: &str| {
        let mut request = format!("ws://{addr}/ws/who/a/")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", http::HeaderValue::from_str(origin).unwrap());
        request
    };
    assert_eq!(handshake_status(from("https://evil.example")).await, 403);
    assert_eq!(
        handshake_status(from(&format!("http://127.0.0.1:{}", addr.port() + 1))).await,
        403
    );
    assert_eq!(handshake_status(from("null")).await, 403);
    assert_eq!(stats.snapshot().refused.forbidden, 3);
    assert_eq!(stats.snapshot().layer.channels, 0, "no consumer ran");
    assert_eq!(handshake_status(from(&format!("http://{addr}"))).await, 101);
    assert_eq!(
        handshake_status(format!("ws://{addr}/ws/who/a/")).await,
        101
    );
}

/// Serves `service` with hyper's own HTTP/1 server on 127.0.0.1:0, with or without upgrades.
async fn hyper_serve(service: AppService, upgrades: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let service = service.clone();
            tokio::spawn(async move {
                let hyper_service = hyper::service::service_fn(move |mut request| {
                    // A host that knows the peer can say so with a `SocketAddr` extension.
                    request.extensions_mut().insert(peer);
                    let mut service = service.clone();
                    tower_service::Service::call(&mut service, request)
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let builder = hyper::server::conn::http1::Builder::new();
                if upgrades {
                    let _ = builder
                        .serve_connection(io, hyper_service)
                        .with_upgrades()
                        .await;
                } else {
                    let _ = builder.serve_connection(io, hyper_service).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn hyper_as_host_works_with_upgrades_and_refuses_cleanly_without() {
    let service = AppService::new(UrlRouter::new().route("/ws/who/{room}/", WhoAmI::default));
    let addr = hyper_serve(service.clone(), true).await;
    let mut who = connect_to(addr, "/ws/who/attic/").await;
    send_json(&mut who, &json!({})).await;
    let answer = recv_json(&mut who).await;
    assert_eq!(answer["room"], "attic");
    assert!(
        answer["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{answer}"
    );

    drop(who);

    // A hyper host without `with_upgrades()` answers the 101 but never hands the connection
    // over: the client's socket ends, the consumer's place is given back (and a WARN says why).
    let addr = hyper_serve(service.clone(), false).await;
    let (mut client, response) = within(tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws/who/attic/"
    )))
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    common::until_closed(&mut client).await;
    let stats = service.stats();
    within(async {
        while stats.snapshot().connections > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn hyper_util_auto_server_as_host() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let service = AppService::new(UrlRouter::new().route("/ws/who/{room}/", WhoAmI::default));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let host = service.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(host.clone());
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut who = connect_to(addr, "/ws/who/cellar/").await;
    send_json(&mut who, &json!({})).await;
    assert_eq!(recv_json(&mut who).await["room"], "cellar");
    assert_eq!(service.stats().snapshot().accepted, 1);
}
