//! Server-sent events over real sockets: streaming layer events, `Last-Event-ID`, refusal,
//! the client going away, and shutdown.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use common::{within, TestServer};
use serde::Deserialize;
use serde_json::json;
use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer};
use switchboard::routing::ProtocolTypeRouter;
use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};
use switchboard::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Deserialize)]
#[serde(tag = "type", rename = "news")]
struct News {
    id: u64,
    text: String,
}

/// Streams a topic's news; replays what a reconnecting client missed from `history`.
struct Feed {
    topic: String,
    history: Arc<Mutex<Vec<(u64, String)>>>,
    gone: mpsc::Sender<String>,
}

#[switchboard::async_trait]
impl SseConsumer for Feed {
    type Event = News;

    async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        if self.topic == "secret" {
            ctx.reject(http::StatusCode::FORBIDDEN);
            return Ok(());
        }
        ctx.group_add(&format!("news_{}", self.topic)).await?;
        let after: u64 = ctx
            .last_event_id()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        let missed: Vec<(u64, String)> = self
            .history
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| *id > after)
            .cloned()
            .collect();
        for (id, text) in missed {
            ctx.send(SseEvent::data(text).id(id.to_string()).event("news"))
                .await?;
        }
        Ok(())
    }

    async fn event(&mut self, ctx: &mut SseContext, news: News) -> switchboard::Result<()> {
        ctx.send(
            SseEvent::data(news.text)
                .id(news.id.to_string())
                .event("news"),
        )
        .await?;
        Ok(())
    }

    async fn disconnect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        let _ = self.gone.try_send(ctx.channel_name().to_owned());
        Ok(())
    }
}

struct Setup {
    server: TestServer,
    gone: mpsc::Receiver<String>,
}

async fn setup() -> Setup {
    let layer = InMemoryChannelLayer::new();
    let history = Arc::new(Mutex::new(vec![
        (1, "one".to_owned()),
        (2, "two".to_owned()),
        (3, "three".to_owned()),
    ]));
    let (tx, gone) = mpsc::channel(16);
    let http = axum::Router::new()
        .route(
            "/news/{topic}",
            axum::routing::get(
                move |Path(topic): Path<String>,
                      State(layer): State<InMemoryChannelLayer>,
                      parts: http::request::Parts| {
                    let feed = Feed {
                        topic,
                        history: history.clone(),
                        gone: tx.clone(),
                    };
                    async move { sse::respond(feed, &parts, layer).await }
                },
            ),
        )
        .with_state(layer.clone());
    // A shutdown timeout far above the tests' 10 s waits: a stream that shutdown did not end
    // would make `server_shutdown_ends_open_streams` time out.
    let mut config = ServerConfig::default();
    config.shutdown_timeout = std::time::Duration::from_secs(60);
    let server = TestServer::start_with(ProtocolTypeRouter::new().http(http), layer, config).await;
    Setup { server, gone }
}

/// Opens the stream and returns the socket with what was read so far (the head at least).
async fn open(server: &TestServer, path: &str, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let seen = read_until(&mut stream, String::new(), "\r\n\r\n").await;
    (stream, seen)
}

/// Reads until `needle` has been seen in what was read (kept in `seen`).
async fn read_until(stream: &mut TcpStream, mut seen: String, needle: &str) -> String {
    let mut buffer = [0u8; 4096];
    while !seen.contains(needle) {
        let n = within(stream.read(&mut buffer)).await.unwrap();
        assert!(n > 0, "stream ended before {needle:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    seen
}

async fn publish(layer: &dyn ChannelLayer, topic: &str, id: u64, text: &str) {
    let news = Event::new(&json!({ "type": "news", "id": id, "text": text })).unwrap();
    layer
        .group_send(&format!("news_{topic}"), news)
        .await
        .unwrap();
}

#[tokio::test]
async fn streams_history_then_live_events() {
    let Setup { server, .. } = setup().await;
    let (mut stream, head) = open(&server, "/news/rust", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let seen = read_until(&mut stream, head, "data: three\n\n").await;
    assert!(seen.contains("id: 1\nevent: news\ndata: one\n\n"), "{seen}");
    publish(&server.layer, "rust", 4, "four").await;
    publish(&server.layer, "other", 5, "not for rust").await;
    publish(&server.layer, "rust", 6, "six").await;
    let seen = read_until(&mut stream, seen, "data: six\n\n").await;
    assert!(seen.contains("id: 4\nevent: news\ndata: four\n\n"));
    assert!(!seen.contains("not for rust"));
}

#[tokio::test]
async fn last_event_id_replays_only_what_was_missed() {
    let Setup { server, .. } = setup().await;
    let (mut stream, head) = open(&server, "/news/rust", "Last-Event-ID: 2\r\n").await;
    let seen = read_until(&mut stream, head, "data: three\n\n").await;
    assert!(
        !seen.contains("data: one") && !seen.contains("data: two"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_refused_stream_gets_its_status() {
    let Setup { server, .. } = setup().await;
    let (_, head) = open(&server, "/news/secret", "").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[tokio::test]
async fn disconnect_runs_when_the_client_goes_and_groups_are_left() {
    let Setup { server, mut gone } = setup().await;
    let (stream, _) = open(&server, "/news/rust", "").await;
    assert_eq!(server.layer.stats().memberships, 1);
    drop(stream);
    // The next event's write finds the client gone, if hyper has not noticed already.
    publish(&server.layer, "rust", 9, "anyone?").await;
    within(gone.recv()).await.unwrap();
    assert_eq!(server.layer.stats().memberships, 0);
    assert_eq!(server.layer.stats().channels, 0);
}

#[tokio::test]
async fn server_shutdown_ends_open_streams() {
    let Setup { server, mut gone } = setup().await;
    let (mut stream, head) = open(&server, "/news/rust", "").await;
    let _ = read_until(&mut stream, head, "data: three\n\n").await;
    // shutdown() returns when every connection is done: a stream that shutdown did not end would
    // hold it for the whole shutdown timeout (60 s), and within() allows 10 s.
    server.shutdown().await;
    within(gone.recv()).await.unwrap();
    let mut rest = Vec::new();
    let _ = within(stream.read_to_end(&mut rest)).await;
}
