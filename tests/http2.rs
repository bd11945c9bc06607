//! HTTP/2 on the same port as HTTP/1.1, and WebSockets over it (RFC 8441 extended CONNECT):
//! hyper's own HTTP/2 client over real sockets, in clear text (prior knowledge) and over TLS
//! (ALPN), against `switchboard::serve` and against `AppService` inside `axum::serve`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::tls::{certificate, Certificate};
use common::{within, TestServer};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{Event, InMemoryChannelLayer};
use switchboard::middleware::{authenticator_fn, AuthMiddleware, CookieMiddleware, TokenSource};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};
use switchboard::websocket::Message;
use switchboard::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, protocol::Role};
use tokio_tungstenite::WebSocketStream;

type H2Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A chat room: says which HTTP carried it, then relays what its members say to all of them.
/// `close` closes it from the server (4000); `panic` panics its handler.
struct Room;

#[switchboard::async_trait]
impl WebSocketConsumer for Room {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("room").await?;
        ctx.accept().await?;
        let scope = ctx.scope();
        let hello = json!({
            "http_version": format!("{:?}", scope.http_version),
            "method": scope.method.as_str(),
            "scheme": scope.scheme,
            "host": scope.host,
        });
        ctx.send_json(&hello).await?;
        Ok(())
    }

    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        let Message::Text(text) = message else {
            return Ok(());
        };
        match text.as_str() {
            "close" => ctx.close(4000, "closed by the room").await?,
            "panic" => panic!("a consumer that panics (on purpose)"),
            _ => {
                let event = Event::new(&json!({ "type": "room.message", "text": text.as_str() }))?;
                ctx.group_send("room", event).await?;
            }
        }
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: Event) -> switchboard::Result<()> {
        #[derive(serde::Deserialize)]
        struct Said {
            text: String,
        }
        let said: Said = event.decode()?;
        ctx.send_text(said.text).await?;
        Ok(())
    }
}

#[derive(Clone)]
struct Account;

/// A news feed as server-sent events: every `news` event of its group.
struct Feed;

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename = "news")]
struct News {
    text: String,
}

#[switchboard::async_trait]
impl SseConsumer for Feed {
    type Event = News;

    async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        ctx.group_add("news").await?;
        ctx.send(SseEvent::data("hello")).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut SseContext, news: News) -> switchboard::Result<()> {
        ctx.send(SseEvent::data(news.text)).await?;
        Ok(())
    }
}

/// WebSockets on `/ws/room/` and (needing a session nobody has) `/ws/private/`; HTTP on
/// `/hello` and server-sent events on `/events`.
fn app(layer: &InMemoryChannelLayer) -> ProtocolTypeRouter {
    let nobody = authenticator_fn(|_token: String| async move { Ok(None::<Account>) });
    let websocket = UrlRouter::new().route("/ws/room/", || Room).route(
        "/ws/private/",
        CookieMiddleware::new(
            AuthMiddleware::new(UrlRouter::new().route("/ws/private/", || Room), nobody)
                .token_sources([TokenSource::cookie("session")])
                .allow_anonymous(false),
        ),
    );
    let http = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .route(
            "/events",
            axum::routing::get(
                |axum::extract::State(layer): axum::extract::State<InMemoryChannelLayer>,
                 parts: http::request::Parts| async move {
                    sse::respond(Feed, &parts, layer).await
                },
            ),
        )
        .with_state(layer.clone());
    ProtocolTypeRouter::new().http(http).websocket(websocket)
}

async fn start(config: ServerConfig) -> (TestServer, InMemoryChannelLayer) {
    let layer = InMemoryChannelLayer::new();
    let server = TestServer::start_with(app(&layer), layer.clone(), config).await;
    (server, layer)
}

/// One HTTP/2 connection, from hyper's client.
struct H2 {
    send: SendRequest<Empty<Bytes>>,
    /// Ends when the connection does.
    closed: tokio::task::JoinHandle<()>,
    /// `http://127.0.0.1:port` or `https://localhost:port`: the URIs' scheme and authority.
    base: String,
}

impl H2 {
    /// HTTP/2 in clear text, by prior knowledge.
    async fn h2c(addr: SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        Self::handshake(tcp, format!("http://{addr}")).await
    }

    /// HTTP/2 over TLS, chosen by ALPN, trusting only `certificate`.
    async fn tls(addr: SocketAddr, certificate: &Certificate) -> Self {
        let tls = common::tls::connect(addr, certificate, &[b"h2"]).await;
        Self::handshake(tls, format!("https://localhost:{}", addr.port())).await
    }

    async fn handshake<S>(io: S, base: String) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = within(
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(io)),
        )
        .await
        .unwrap();
        let closed = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut this = Self { send, closed, base };
        // The first answer also means the server's SETTINGS (extended CONNECT) have arrived.
        assert_eq!(
            this.get("/hello").await,
            (StatusCode::OK, "hello".to_owned())
        );
        this
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let request = Request::get(format!("{}{path}", self.base))
            .body(Empty::new())
            .unwrap();
        let response = within(self.send.send_request(request)).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let status = response.status();
        let body = within(response.into_body().collect()).await.unwrap();
        (status, String::from_utf8(body.to_bytes().to_vec()).unwrap())
    }

    /// An extended CONNECT to `path` (RFC 8441) with `headers`: the WebSocket, or the status it
    /// was refused with.
    async fn websocket(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(H2Socket, HeaderMap), StatusCode> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("{}{path}", self.base))
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).unwrap();
        let mut response = within(self.send.send_request(request)).await.unwrap();
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        let headers = response.headers().clone();
        let upgraded = within(hyper::upgrade::on(&mut response)).await.unwrap();
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        Ok((socket, headers))
    }

    /// A WebSocket to the room, as a page of this origin opens it; returns it and its greeting.
    async fn join(&mut self) -> (H2Socket, Value) {
        let origin = self.base.clone();
        let (mut socket, _) = self
            .websocket("/ws/room/", &[("origin", &origin)])
            .await
            .expect("the room accepts");
        let hello = recv_json(&mut socket).await;
        (socket, hello)
    }
}

async fn recv_text(socket: &mut H2Socket) -> String {
    loop {
        match within(socket.next()).await {
            Some(Ok(tungstenite::Message::Text(text))) => return text.to_string(),
            Some(Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn recv_json(socket: &mut H2Socket) -> Value {
    serde_json::from_str(&recv_text(socket).await).unwrap()
}

/// The close code the server sent, once the socket has closed (reading on sends tungstenite's
/// reply to the server's close frame).
async fn recv_close(socket: &mut H2Socket) -> Option<u16> {
    loop {
        match within(socket.next()).await {
            Some(Ok(tungstenite::Message::Close(frame))) => {
                while let Some(Ok(_)) = within(socket.next()).await {}
                return frame.map(|frame| u16::from(frame.code));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

async fn say(socket: &mut H2Socket, text: &str) {
    within(socket.send(tungstenite::Message::text(text)))
        .await
        .unwrap();
}

/// Shuts the server down while `sockets` answer its close frames (1001) as browsers do.
async fn shutdown_answering(server: TestServer, sockets: &mut [H2Socket]) {
    let stopped = tokio::spawn(server.shutdown());
    for socket in sockets {
        assert_eq!(recv_close(socket).await, Some(1001));
    }
    within(stopped).await.unwrap();
}

/// Ten WebSockets on one connection chat in one room, in order; one is closed by its client,
/// one by its consumer, one's consumer panics, and the other seven carry on; HTTP requests and
/// an event stream share the connection.
async fn ten_websockets_in_one_room(client: &mut H2, server: &TestServer, scheme: &str) {
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let (socket, hello) = client.join().await;
        assert_eq!(hello["http_version"], "HTTP/2.0");
        assert_eq!(hello["method"], "GET");
        assert_eq!(hello["scheme"], scheme);
        sockets.push(socket);
    }
    let stats = server.stats.snapshot();
    assert_eq!((stats.accepted, stats.accepted_http2), (10, 10));
    assert_eq!(stats.connections, 10);

    // Every member says three lines; every member hears all thirty, each sender's in order.
    for round in 0..3 {
        for (i, socket) in sockets.iter_mut().enumerate() {
            say(socket, &format!("{i}:{round}")).await;
        }
    }
    for socket in &mut sockets {
        let mut next = [0; 10];
        for _ in 0..30 {
            let line = recv_text(socket).await;
            let (sender, round) = line.split_once(':').unwrap();
            let sender: usize = sender.parse().unwrap();
            assert_eq!(round.parse::<usize>().unwrap(), next[sender], "{line}");
            next[sender] += 1;
        }
        assert_eq!(next, [3; 10]);
    }

    // An event stream and plain requests on the same connection, beside the WebSockets.
    let request = Request::get(format!("{}/events", client.base))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .unwrap();
    let events = within(client.send.send_request(request)).await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let mut events = events.into_body();
    let first = within(events.frame()).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(first.data_ref().unwrap()).contains("data: hello"));
    assert_eq!(client.get("/hello").await.0, StatusCode::OK);

    // One closed by its client, one by its consumer, one whose consumer panics.
    let mut closed_by_client = sockets.remove(0);
    let bye = tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    };
    // The server answers the close at once and resets the stream (NO_ERROR: "send no more");
    // hyper's client may report that reset as the close's own flush failing.
    let _ = within(closed_by_client.close(Some(bye))).await;
    assert_eq!(recv_close(&mut closed_by_client).await, Some(1000));
    let mut closed_by_consumer = sockets.remove(0);
    say(&mut closed_by_consumer, "close").await;
    assert_eq!(recv_close(&mut closed_by_consumer).await, Some(4000));
    let mut panicking = sockets.remove(0);
    say(&mut panicking, "panic").await;
    assert_eq!(recv_close(&mut panicking).await, Some(1011));

    // The seven others carry on, and so do the event stream and requests.
    say(&mut sockets[0], "still here").await;
    for socket in &mut sockets {
        assert_eq!(recv_text(socket).await, "still here");
    }
    let news = Event::new(&json!({ "type": "news", "text": "over http/2" })).unwrap();
    server.layer.group_send("news", news).await.unwrap();
    let next = within(events.frame()).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(next.data_ref().unwrap()).contains("data: over http/2"));
    assert_eq!(client.get("/hello").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_websockets_share_one_cleartext_connection() {
    let (server, _layer) = start(ServerConfig::default()).await;
    let mut client = H2::h2c(server.addr).await;
    ten_websockets_in_one_room(&mut client, &server, "ws").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_websockets_share_one_tls_connection_chosen_by_alpn() {
    let certificate = certificate();
    let tls = switchboard::TlsConfig::from_pem(
        certificate.pem.as_bytes(),
        certificate.key_pem.as_bytes(),
    )
    .unwrap();
    let layer = InMemoryChannelLayer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = switchboard::serve(listener, app(&layer))
        .channel_layer(layer.clone())
        .tls(tls);
    let stats = serve.stats();
    let task = tokio::spawn(std::future::IntoFuture::into_future(serve));
    let mut client = H2::tls(addr, &certificate).await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let (socket, hello) = client.join().await;
        assert_eq!(hello["http_version"], "HTTP/2.0");
        assert_eq!(hello["scheme"], "wss");
        assert_eq!(hello["host"], format!("localhost:{}", addr.port()));
        sockets.push(socket);
    }
    assert_eq!(stats.snapshot().accepted_http2, 10);
    for (i, socket) in sockets.iter_mut().enumerate() {
        say(socket, &format!("from {i}")).await;
    }
    for socket in &mut sockets {
        let mut heard = Vec::new();
        for _ in 0..10 {
            heard.push(recv_text(socket).await);
        }
        heard.sort();
        let mut said: Vec<String> = (0..10).map(|i| format!("from {i}")).collect();
        said.sort();
        assert_eq!(heard, said);
    }
    // A browser still choosing HTTP/1.1 gets it on the same port.
    let mut old = tokio_tungstenite_tls(addr, &certificate).await;
    let hello: Value = match within(old.next()).await {
        Some(Ok(tungstenite::Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hello["http_version"], "HTTP/1.1");
    task.abort();
}

/// A WebSocket over TLS with ALPN `http/1.1`.
async fn tokio_tungstenite_tls(
    addr: SocketAddr,
    certificate: &Certificate,
) -> WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = common::tls::connect(addr, certificate, &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{}/ws/room/", addr.port());
    let (socket, response) = within(tokio_tungstenite::client_async(url, tls))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

#[tokio::test]
async fn refusals_arrive_as_stream_statuses_and_the_connection_carries_on() {
    let (server, _layer) = start(ServerConfig::default()).await;
    let mut client = H2::h2c(server.addr).await;
    let own = client.base.clone();
    let refused = |result: Result<(H2Socket, HeaderMap), StatusCode>| match result {
        Ok(_) => panic!("accepted"),
        Err(status) => status,
    };
    assert_eq!(
        refused(client.websocket("/ws/nowhere/", &[("origin", &own)]).await),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        refused(
            client
                .websocket("/ws/room/", &[("origin", "https://evil.example")])
                .await
        ),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        refused(
            client
                .websocket("/ws/room/", &[("origin", "http://127.0.0.1:1")])
                .await
        ),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        refused(
            client
                .websocket(
                    "/ws/private/",
                    &[("origin", &own), ("cookie", "session=forged")]
                )
                .await
        ),
        StatusCode::UNAUTHORIZED
    );
    // RFC 8441 keeps RFC 6455's version: anything but 13 is 426, naming 13.
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{own}/ws/room/"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "8")
        .body(Empty::new())
        .unwrap();
    let response = within(client.send.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");

    // Another protocol than WebSocket: 501 (RFC 9220 §3), and not a WebSocket refusal.
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{own}/ws/room/"))
        .extension(hyper::ext::Protocol::from_static("webtransport"))
        .body(Empty::new())
        .unwrap();
    let response = within(client.send.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);

    let refusals = server.stats.snapshot().refused;
    assert_eq!(
        (
            refusals.not_found,
            refusals.forbidden,
            refusals.unauthorized,
            refusals.bad_request
        ),
        (1, 2, 1, 1)
    );
    // The same connection still opens WebSockets and answers requests.
    let (mut socket, hello) = client.join().await;
    assert_eq!(hello["http_version"], "HTTP/2.0");
    say(&mut socket, "after the refusals").await;
    assert_eq!(recv_text(&mut socket).await, "after the refusals");
    assert_eq!(client.get("/hello").await.0, StatusCode::OK);
    shutdown_answering(server, &mut [socket]).await;
}

#[tokio::test]
async fn websockets_per_connection_and_max_connections_count_streams() {
    let mut config = ServerConfig::default();
    config.http2.as_mut().unwrap().max_websockets_per_connection = 3;
    config.max_connections = Some(5);
    let (server, _layer) = start(config).await;
    let mut first = H2::h2c(server.addr).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(first.join().await.0);
    }
    let origin = first.base.clone();
    let over = first.websocket("/ws/room/", &[("origin", &origin)]).await;
    assert_eq!(over.err(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        server
            .stats
            .snapshot()
            .refused_max_websockets_per_connection,
        1
    );
    // Another connection has its own three; but every WebSocket counts in max_connections.
    let mut second = H2::h2c(server.addr).await;
    held.push(second.join().await.0);
    held.push(second.join().await.0);
    let over = second.websocket("/ws/room/", &[("origin", &origin)]).await;
    assert_eq!(over.err(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let stats = server.stats.snapshot();
    assert_eq!(
        (
            stats.connections,
            stats.refused_max_connections,
            stats.refused_max_websockets_per_connection
        ),
        (5, 1, 1)
    );
    // Requests still pass on a connection whose WebSockets are full.
    assert_eq!(first.get("/hello").await.0, StatusCode::OK);
    shutdown_answering(server, &mut held).await;
}

#[tokio::test]
async fn shutdown_closes_each_websocket_with_1001_then_ends_the_connection() {
    let (server, _layer) = start(ServerConfig::default()).await;
    let mut client = H2::h2c(server.addr).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(client.join().await.0);
    }
    shutdown_answering(server, &mut sockets).await;
    // GOAWAY: the connection takes no new streams.
    let request = Request::get(format!("{}/hello", client.base))
        .body(Empty::new())
        .unwrap();
    assert!(within(client.send.send_request(request)).await.is_err());
}

#[tokio::test]
async fn a_client_that_sends_nothing_meets_the_header_read_timeout() {
    let mut config = ServerConfig::default();
    config.header_read_timeout = Duration::from_millis(200);
    let (server, _layer) = start(config).await;
    // Nothing at all, and the first bytes of HTTP/2's preface: both closed by the server.
    for sent in [&b""[..], b"PRI * HT"] {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let mut buffer = [0u8; 64];
        let read = within(tcp.read(&mut buffer)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // HTTP/1.1 still works on the same port.
    let hello = common::get(server.addr, "/hello").await;
    assert!(hello.starts_with("HTTP/1.1 200"), "{hello}");
    server.shutdown().await;
}

#[tokio::test]
async fn http2_can_be_turned_off() {
    let mut config = ServerConfig::default();
    config.http2 = None;
    let (server, _layer) = start(config).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp));
    let (mut send, connection) = within(handshake).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/hello", server.addr))
        .body(Empty::new())
        .unwrap();
    assert!(within(send.send_request(request)).await.is_err());
    let hello = common::get(server.addr, "/hello").await;
    assert!(hello.starts_with("HTTP/1.1 200"), "{hello}");
    server.shutdown().await;
}

#[tokio::test]
async fn mounted_in_axum_serve_websockets_come_over_http2_too() {
    let layer = InMemoryChannelLayer::new();
    let router = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .fallback_service(switchboard::AppService::new(app(&layer)).channel_layer(layer.clone()));
    let addr = common::axum_serve(router).await;
    let mut client = H2::h2c(addr).await;
    let (mut a, hello) = client.join().await;
    assert_eq!(hello["http_version"], "HTTP/2.0");
    let (mut b, _) = client.join().await;
    say(&mut a, "mounted").await;
    assert_eq!(recv_text(&mut a).await, "mounted");
    assert_eq!(recv_text(&mut b).await, "mounted");
    let origin = client.base.clone();
    let evil = client
        .websocket("/ws/room/", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(evil.err(), Some(StatusCode::FORBIDDEN));
    assert!(client
        .websocket("/ws/room/", &[("origin", &origin)])
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sizes_and_slow_clients_are_judged_per_websocket_stream() {
    use common::{disconnected, notes, Observed};
    let mut config = ServerConfig::default();
    config.max_message_size = 1024;
    // Long enough that the reader, busy reading, is never taken for a slow client.
    config.slow_client = switchboard::SlowClientPolicy::Disconnect {
        after: Duration::from_secs(1),
    };
    let (notes_tx, mut notes) = notes();
    let app = ProtocolTypeRouter::new()
        .http(axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" })))
        .websocket(
            UrlRouter::new().route("/ws/room/", move || Observed::new(Room, notes_tx.clone())),
        );
    let server = TestServer::start_with(app, InMemoryChannelLayer::new(), config).await;
    let mut client = H2::h2c(server.addr).await;
    let (mut reader, _) = client.join().await;
    let (mut oversize, _) = client.join().await;
    let (frozen, _) = client.join().await;

    // A message past max_message_size closes its own stream with 1009, no other.
    say(&mut oversize, &"x".repeat(2048)).await;
    assert_eq!(recv_close(&mut oversize).await, Some(1009));
    assert_eq!(disconnected(&mut notes).await, 1009);

    // A stream whose client stops reading fills its HTTP/2 window, then the server's buffers;
    // past `slow_client` it is dropped (1013) while the reader on the same connection reads on.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reading = tokio::spawn(async move {
        let mut bytes = 0usize;
        loop {
            tokio::select! {
                _ = &mut stopped => return (reader, bytes),
                frame = reader.next() => match frame {
                    Some(Ok(tungstenite::Message::Text(text))) => bytes += text.len(),
                    Some(Ok(_)) => {}
                    other => panic!("the reader's stream ended: {other:?}"),
                },
            }
        }
    });
    let big = "y".repeat(32 << 10);
    for _ in 0..200 {
        let event = Event::new(&json!({ "type": "room.message", "text": big })).unwrap();
        server.layer.group_send("room", event).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(disconnected(&mut notes).await, 1013);
    assert_eq!(server.stats.snapshot().slow_clients_disconnected, 1);
    stop.send(()).unwrap();
    let (mut reader, bytes) = within(reading).await.unwrap();
    // More than the frozen stream's window: the reader was not held back with it.
    assert!(bytes > 2 << 20, "the reader read {bytes} bytes");
    say(&mut reader, "still reading").await;
    while recv_text(&mut reader).await != "still reading" {}
    assert_eq!(client.get("/hello").await.0, StatusCode::OK);
    drop(frozen);
    shutdown_answering(server, &mut [reader]).await;
}

#[tokio::test]
async fn a_connection_without_open_streams_is_closed_after_its_idle_timeout() {
    let mut config = ServerConfig::default();
    // Long enough that the busy connections open their streams after their first request
    // without meeting it, even on a loaded machine.
    config.http2.as_mut().unwrap().idle_timeout = Some(Duration::from_secs(1));
    let (server, _layer) = start(config).await;
    // Three connections: one holds a WebSocket, one an event stream, and, opened last, one
    // that only asked for a page.
    let mut with_websocket = H2::h2c(server.addr).await;
    let (mut socket, _) = with_websocket.join().await;
    let mut with_events = H2::h2c(server.addr).await;
    let request = Request::get(format!("{}/events", with_events.base))
        .body(Empty::new())
        .unwrap();
    let events = within(with_events.send.send_request(request))
        .await
        .unwrap();
    let mut events = events.into_body();
    within(events.frame()).await.unwrap().unwrap();
    let idle = H2::h2c(server.addr).await;

    // The idle one is closed (GOAWAY, then the connection ends)...
    within(idle.closed).await.unwrap();
    // ...the others, without a request for longer, are not: their streams are open.
    say(&mut socket, "still open").await;
    assert_eq!(recv_text(&mut socket).await, "still open");
    assert_eq!(with_events.get("/hello").await.0, StatusCode::OK);
    assert!(!with_websocket.closed.is_finished());
    shutdown_answering(server, &mut [socket]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_that_closes_gets_the_server_s_close_frame() {
    // The server answers a client's close and ends the stream; its answer must reach the client
    // before the stream is reset, fifty times at once on one connection.
    let (server, _layer) = start(ServerConfig::default()).await;
    let mut client = H2::h2c(server.addr).await;
    let mut sockets = Vec::new();
    for _ in 0..50 {
        sockets.push(client.join().await.0);
    }
    let closes = sockets.into_iter().map(|mut socket| async move {
        let bye = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "".into(),
        };
        let _ = socket.close(Some(bye)).await;
        recv_close(&mut socket).await
    });
    let codes = within(futures_util::future::join_all(closes)).await;
    assert!(codes.iter().all(|code| *code == Some(1001)), "{codes:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_never_sent_a_byte() {
    // Both timeouts far above the test's 10 s wait: only closing the silent connection at once
    // lets `serve` return in time.
    let mut config = ServerConfig::default();
    config.header_read_timeout = Duration::from_secs(60);
    config.shutdown_timeout = Duration::from_secs(60);
    let (server, _layer) = start(config).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The server has taken the connection once it answers on another one.
    assert!(common::get(server.addr, "/hello")
        .await
        .starts_with("HTTP/1.1 200"));
    server.shutdown().await;
    let mut buffer = [0u8; 16];
    assert!(matches!(
        within(silent.read(&mut buffer)).await,
        Ok(0) | Err(_)
    ));
}
