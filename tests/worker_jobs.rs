//! Workers on named channels, fed by consumers, by plain code and by an axum handler over HTTP.

mod common;

use axum::extract::State;
use axum::routing::post;
use common::{recv_json, within, TestServer};
use serde::Deserialize;
use serde_json::json;
use switchboard::consumer::{ChannelContext, Context, WebSocketConsumer};
use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer, InMemoryConfig, LayerError};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use switchboard::worker::{ChannelConsumer, ChannelNameRouter};
use switchboard::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Job {
    Square { n: i64, reply_to: String },
    Fail,
    Panic,
    Gated { n: i64, reply_to: String },
}

/// Holds `gated` jobs until the test adds permits.
static GATE: Semaphore = Semaphore::const_new(0);

struct Squarer;

#[switchboard::async_trait]
impl ChannelConsumer for Squarer {
    type Event = Job;

    async fn event(&mut self, ctx: &ChannelContext, job: Job) -> switchboard::Result<()> {
        match job {
            Job::Square { n, reply_to } => {
                ctx.send_to_channel(&reply_to, &json!({ "type": "result", "n": n * n }))
                    .await?
            }
            Job::Gated { n, reply_to } => {
                ctx.send_to_channel(&reply_to, &json!({ "type": "started", "n": n }))
                    .await?;
                GATE.acquire().await?.forget();
                ctx.send_to_channel(&reply_to, &json!({ "type": "result", "n": n }))
                    .await?
            }
            Job::Fail => return Err(switchboard::Error::msg("job failed")),
            Job::Panic => panic!("job panicked"),
        }
        Ok(())
    }
}

fn job(value: &serde_json::Value) -> Event {
    Event::new(value).unwrap()
}

/// The next result, skipping "started" notes.
async fn result(inbox: &mut switchboard::layer::ChannelReceiver) -> i64 {
    loop {
        let event = within(inbox.recv()).await;
        if event.event_type() == "result" {
            return event.decode::<serde_json::Value>().unwrap()["n"]
                .as_i64()
                .unwrap();
        }
    }
}

#[tokio::test]
async fn jobs_are_handled_in_order_and_failures_do_not_stop_the_worker() {
    let layer = InMemoryChannelLayer::new();
    let workers = ChannelNameRouter::new()
        .route("math", Squarer)
        .spawn(layer.clone());
    let mut inbox = layer.new_channel().await.unwrap();
    let me = inbox.name().to_owned();
    layer
        .send(
            "math",
            job(&json!({ "type": "square", "n": 3, "reply_to": me })),
        )
        .await
        .unwrap();
    layer
        .send("math", job(&json!({ "type": "fail" })))
        .await
        .unwrap();
    layer
        .send("math", job(&json!({ "type": "panic" })))
        .await
        .unwrap();
    layer
        .send("math", job(&json!({ "type": "not_a_job" })))
        .await
        .unwrap();
    layer
        .send(
            "math",
            job(&json!({ "type": "square", "n": 4, "reply_to": me })),
        )
        .await
        .unwrap();
    assert_eq!(result(&mut inbox).await, 9);
    assert_eq!(result(&mut inbox).await, 16);
    workers.shutdown().await;
}

#[tokio::test]
async fn a_busy_worker_queues_jobs_and_a_full_queue_is_an_error_not_a_loss() {
    let layer = InMemoryChannelLayer::with_config(InMemoryConfig::default().capacity(3));
    let workers = ChannelNameRouter::new()
        .route("slow", Squarer)
        .spawn(layer.clone());
    let mut inbox = layer.new_channel().await.unwrap();
    let me = inbox.name().to_owned();
    // The first job occupies the worker: it says so, then waits at the gate ...
    layer
        .send(
            "slow",
            job(&json!({ "type": "gated", "n": 0, "reply_to": me })),
        )
        .await
        .unwrap();
    assert_eq!(within(inbox.recv()).await.event_type(), "started");
    // ... the next three wait in its queue (capacity 3), and the rest are refused, visibly.
    let mut outcomes = Vec::new();
    for n in 1..=5 {
        outcomes.push(
            layer
                .send(
                    "slow",
                    job(&json!({ "type": "gated", "n": n, "reply_to": me })),
                )
                .await,
        );
    }
    assert!(outcomes[..3].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        outcomes[3..]
            .iter()
            .all(|r| matches!(r, Err(LayerError::ChannelFull { capacity: 3, .. }))),
        "{outcomes:?}"
    );
    assert_eq!(layer.stats().rejected_full, 2);
    // One job at a time, so that the replies (a "started" and a result each) fit this test's own
    // inbox, which has the same capacity of 3.
    for n in 0..=3 {
        GATE.add_permits(1);
        assert_eq!(
            result(&mut inbox).await,
            n,
            "jobs come back in order, none lost"
        );
    }
    workers.shutdown().await;
}

#[tokio::test]
async fn queued_jobs_outlive_a_stopped_worker() {
    let layer = InMemoryChannelLayer::new();
    let workers = ChannelNameRouter::new()
        .route("later", Squarer)
        .spawn(layer.clone());
    workers.shutdown().await;
    let mut inbox = layer.new_channel().await.unwrap();
    let me = inbox.name().to_owned();
    layer
        .send(
            "later",
            job(&json!({ "type": "square", "n": 5, "reply_to": me })),
        )
        .await
        .unwrap();
    let workers = ChannelNameRouter::new()
        .route("later", Squarer)
        .spawn(layer.clone());
    assert_eq!(result(&mut inbox).await, 25);
    workers.shutdown().await;
}

#[test]
#[should_panic(expected = "invalid channel name")]
fn bad_worker_names_panic_at_startup() {
    let _ = ChannelNameRouter::new().route("no spaces", Squarer);
}

#[test]
#[should_panic(expected = "routed twice")]
fn a_channel_is_routed_once() {
    let _ = ChannelNameRouter::new()
        .route("a", Squarer)
        .route("a", Squarer);
}

/// Joins the "results" group and forwards what arrives.
struct Listener;

#[switchboard::async_trait]
impl WebSocketConsumer for Listener {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("results").await?;
        ctx.accept().await?;
        Ok(())
    }
    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
    async fn event(&mut self, ctx: &mut Context, event: Event) -> switchboard::Result<()> {
        ctx.send_text(event.to_text()).await?;
        Ok(())
    }
}

/// Squares and announces the result to the "results" group.
struct Announcer;

#[switchboard::async_trait]
impl ChannelConsumer for Announcer {
    type Event = serde_json::Value;
    async fn event(
        &mut self,
        ctx: &ChannelContext,
        job: serde_json::Value,
    ) -> switchboard::Result<()> {
        let n = job["n"].as_i64().unwrap_or(0);
        ctx.group_send("results", &json!({ "type": "result", "n": n * n }))
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn an_http_handler_queues_a_job_whose_result_reaches_websockets() {
    let layer = InMemoryChannelLayer::new();
    let workers = ChannelNameRouter::new()
        .route("squares", Announcer)
        .spawn(layer.clone());
    let http = axum::Router::new()
        .route(
            "/jobs",
            post(
                |State(layer): State<InMemoryChannelLayer>,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    let job = Event::new(&json!({ "type": "square", "n": body["n"] })).unwrap();
                    match layer.send("squares", job).await {
                        Ok(()) => axum::http::StatusCode::ACCEPTED,
                        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    }
                },
            ),
        )
        .with_state(layer.clone());
    let app = ProtocolTypeRouter::new()
        .http(http)
        .websocket(UrlRouter::new().route("/ws/", || Listener));
    let server = TestServer::start_with(app, layer.clone(), ServerConfig::default()).await;
    let mut a = server.connect("/ws/").await;
    let mut b = server.connect("/ws/").await;

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = r#"{"n":12}"#;
    let request = format!(
        "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within(stream.read_to_string(&mut response)).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");

    for client in [&mut a, &mut b] {
        assert_eq!(
            recv_json(client).await,
            json!({ "type": "result", "n": 144 })
        );
    }
    workers.shutdown().await;
}
