//! Helpers shared by the socket tests: a real server on 127.0.0.1:0 and real WebSocket clients.
#![allow(dead_code, unreachable_pub)]
pub mod redis_cluster;
pub mod redis_server;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer, LayerHandle};
use switchboard::routing::ProtocolTypeRouter;
use switchboard::websocket::Message;
use switchboard::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::CloseFrame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A switchboard server on 127.0.0.1:0, stopped with [`TestServer::shutdown`].
pub struct TestServer {
    pub addr: SocketAddr,
    pub layer: LayerHandle,
    pub stats: switchboard::StatsHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(app: ProtocolTypeRouter) -> Self {
        Self::start_with(app, InMemoryChannelLayer::new(), ServerConfig::default()).await
    }

    pub async fn start_with(
        app: ProtocolTypeRouter,
        layer: impl ChannelLayer,
        config: ServerConfig,
    ) -> Self {
        let layer = layer.into_handle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = switchboard::serve(listener, app)
            .channel_layer(layer.clone())
            .config(config);
        let stats = server.stats();
        let server = server.with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(server);
        Self {
            addr,
            layer,
            stats,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Connects a WebSocket client to `path`; panics if the handshake fails.
    pub async fn connect(&self, path: &str) -> Client {
        let (client, response) = within(tokio_tungstenite::connect_async(self.url(path)))
            .await
            .unwrap_or_else(|e| panic!("connect to {path}: {e}"));
        assert_eq!(response.status(), 101);
        client
    }

    /// Connects as a browser page from `origin` would (with an `Origin` header).
    pub async fn connect_from(&self, path: &str, origin: &str) -> Client {
        let mut request = self.url(path).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", http::HeaderValue::from_str(origin).unwrap());
        let (client, response) = within(tokio_tungstenite::connect_async(request))
            .await
            .unwrap_or_else(|e| panic!("connect to {path} from {origin}: {e}"));
        assert_eq!(response.status(), 101);
        client
    }

    /// Tries a WebSocket handshake on `path` and returns the HTTP status it was answered with.
    pub async fn handshake_status(&self, path: &str) -> u16 {
        handshake_status(self.url(path)).await
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within(&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn handshake_status(request: impl IntoClientRequest + Unpin) -> u16 {
    match within(tokio_tungstenite::connect_async(request)).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed without an HTTP answer: {other}"),
    }
}

/// Awaits `future`, failing the test after [`WAIT`].
pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting")
}

/// The next data message from the server (text or binary), skipping pings.
pub async fn recv(client: &mut Client) -> tungstenite::Message {
    loop {
        let message = within(client.next())
            .await
            .expect("connection ended")
            .expect("read failed");
        match message {
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// The next message from the server, parsed as JSON.
pub async fn recv_json(client: &mut Client) -> Value {
    match recv(client).await {
        tungstenite::Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Waits for the server's close frame and returns it, discarding messages before it. Reads on
/// until the connection ends, which sends the client's close reply as a browser would.
pub async fn recv_close(client: &mut Client) -> Option<CloseFrame> {
    loop {
        match within(client.next()).await {
            Some(Ok(tungstenite::Message::Close(frame))) => {
                until_closed(client).await;
                return frame;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("read failed before close: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// Waits until the server has closed the TCP connection (after its close frame, if any).
pub async fn until_closed(client: &mut Client) {
    loop {
        match within(client.next()).await {
            None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    }
}

/// Sends a text message.
pub async fn text(client: &mut Client, line: &str) {
    within(client.send(tungstenite::Message::text(line)))
        .await
        .unwrap();
}

/// The next text message from the server.
pub async fn recv_text(client: &mut Client) -> String {
    match recv(client).await {
        tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

pub async fn send_json(client: &mut Client, value: &Value) {
    within(client.send(tungstenite::Message::text(value.to_string())))
        .await
        .unwrap();
}

/// Echoes every message back as it came (text as text, binary as binary).
#[derive(Default)]
pub struct Echo;

#[switchboard::async_trait]
impl WebSocketConsumer for Echo {
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        match message {
            Message::Text(text) => ctx.send_text(text).await?,
            Message::Binary(bytes) => ctx.send_binary(bytes).await?,
        }
        Ok(())
    }
}

/// What an [`Observed`] consumer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Connected { channel: String },
    Received(Message),
    Event(String),
    Disconnected(u16),
}

/// Wraps a consumer and reports its lifecycle on a bounded channel. `Disconnected` is sent after
/// the inner `disconnect` returns, by which time the connection has left every group.
pub struct Observed<C> {
    pub inner: C,
    notes: mpsc::Sender<Note>,
}

impl<C> Observed<C> {
    pub fn new(inner: C, notes: mpsc::Sender<Note>) -> Self {
        Self { inner, notes }
    }
    fn note(&self, note: Note) {
        self.notes.try_send(note).expect("test notes channel full");
    }
}

#[switchboard::async_trait]
impl<C: WebSocketConsumer> WebSocketConsumer for Observed<C> {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        self.note(Note::Connected {
            channel: ctx.channel_name().to_owned(),
        });
        self.inner.connect(ctx).await
    }
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        self.note(Note::Received(message.clone()));
        self.inner.receive(ctx, message).await
    }
    async fn event(&mut self, ctx: &mut Context, event: Event) -> switchboard::Result<()> {
        self.note(Note::Event(event.event_type().to_owned()));
        self.inner.event(ctx, event).await
    }
    fn forwards_event(&self, event_type: &str) -> bool {
        self.inner.forwards_event(event_type)
    }
    async fn disconnect(&mut self, ctx: &mut Context, code: u16) -> switchboard::Result<()> {
        let result = self.inner.disconnect(ctx, code).await;
        self.note(Note::Disconnected(code));
        result
    }
}

/// A bounded notes channel big enough for any one test.
pub fn notes() -> (mpsc::Sender<Note>, mpsc::Receiver<Note>) {
    mpsc::channel(10_000)
}

/// The next note, within [`WAIT`].
pub async fn next_note(notes: &mut mpsc::Receiver<Note>) -> Note {
    within(notes.recv()).await.expect("notes channel closed")
}

/// Skips notes until a `Disconnected` and returns its code.
pub async fn disconnected(notes: &mut mpsc::Receiver<Note>) -> u16 {
    loop {
        if let Note::Disconnected(code) = next_note(notes).await {
            return code;
        }
    }
}

/// Sends one raw HTTP/1.1 request (it should say `Connection: close`) to `addr` and returns the
/// whole response as text.
pub async fn http_raw(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within(stream.read_to_string(&mut response)).await.unwrap();
    response
}

/// `POST path` with a JSON body to `addr`; the whole response as text.
pub async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> String {
    let body = body.to_string();
    http_raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// `GET path` from `addr`; the whole response as text.
pub async fn get(addr: SocketAddr, path: &str) -> String {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Connects a WebSocket client to `ws://{addr}{path}`; panics if the handshake fails.
pub async fn connect_to(addr: SocketAddr, path: &str) -> Client {
    let url = format!("ws://{addr}{path}");
    let (client, response) = within(tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|e| panic!("connect to {path}: {e}"));
    assert_eq!(response.status(), 101);
    client
}

/// Opens a WebSocket to `path` by hand (a fixed key) and returns the raw stream after the 101;
/// panics if the answer is not 101.
pub async fn raw_websocket(server: &TestServer, path: &str) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within(stream.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads one server frame off a raw stream: (FIN, opcode, payload), or `None` if the connection
/// ends first. Panics if the frame is masked (server frames never are).
pub async fn read_server_frame(stream: &mut TcpStream) -> Option<(bool, u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 2];
    within(stream.read_exact(&mut header)).await.ok()?;
    assert_eq!(header[1] & 0x80, 0, "a server frame is not masked");
    let mut len = u64::from(header[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        within(stream.read_exact(&mut ext)).await.ok()?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        within(stream.read_exact(&mut ext)).await.ok()?;
        len = u64::from_be_bytes(ext);
    }
    let mut payload = vec![0u8; len as usize];
    within(stream.read_exact(&mut payload)).await.ok()?;
    Some((header[0] & 0x80 != 0, header[0] & 0x0f, payload))
}

/// Reads `data:` lines of a server-sent event stream over a real socket.
pub struct EventReader {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl EventReader {
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut lines = tokio::io::BufReader::new(stream).lines();
        let status = within(lines.next_line()).await.unwrap().unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        Self { lines }
    }

    pub async fn next_data(&mut self) -> String {
        loop {
            let line = within(self.lines.next_line())
                .await
                .unwrap()
                .expect("stream open");
            if let Some(data) = line.strip_prefix("data: ") {
                return data.to_owned();
            }
        }
    }
}

/// Serves `router` with plain `axum::serve` (with `ConnectInfo`) on 127.0.0.1:0.
pub async fn axum_serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}
