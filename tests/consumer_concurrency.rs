//! Over real sockets: long work handed to a spawned task through a `ConnectionHandle`, the layer
//! from a plain thread, and presence that survives a dropped TCP connection.

mod common;

use common::{recv_json, recv_text, text, within, TestServer};
use serde_json::{json, Value};
use switchboard::consumer::{Context, WebSocketConsumer, WebSocketError};
use switchboard::layer::{BlockingChannelLayer, Event};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use tokio::sync::Semaphore;

/// Where the "close-via-handle" task reports whether a send after the close failed as it should.
static AFTER_CLOSE: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<bool>>> =
    std::sync::Mutex::new(None);

/// Lets the spawned "work" go on only when the test says so.
static WORK_GATE: Semaphore = Semaphore::const_new(0);

#[derive(Default)]
struct Worker;

#[switchboard::async_trait]
impl WebSocketConsumer for Worker {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("everyone").await?;
        let name = ctx.scope().query_param("name").unwrap_or_default();
        ctx.presence_add("everyone", &json!({ "name": name }))
            .await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        let Message::Text(text) = message else {
            return Ok(());
        };
        match text.as_str() {
            "work" => {
                let handle = ctx.handle();
                tokio::spawn(async move {
                    WORK_GATE.acquire().await.unwrap().forget();
                    handle.send_text("progress: half way").await.unwrap();
                    handle
                        .post_event(&json!({ "type": "work.done", "result": 42 }))
                        .await
                        .unwrap();
                });
            }
            "ping" => ctx.send_text("pong").await?,
            "who" => {
                let mut names: Vec<String> = ctx
                    .presence_list("everyone")
                    .await?
                    .into_iter()
                    .map(|p| p.meta["name"].as_str().unwrap_or("").to_owned())
                    .collect();
                names.sort();
                ctx.send_json(&json!({ "online": names })).await?;
            }
            "close-via-handle" => {
                let handle = ctx.handle();
                tokio::spawn(async move {
                    handle.close(4100, "closed from a task").await.unwrap();
                    handle.closed().await;
                    // Once the connection is over, a handle says so instead of losing frames.
                    let late = handle.send_text("late").await;
                    let report = AFTER_CLOSE.lock().unwrap().take();
                    if let Some(report) = report {
                        let _ = report.send(matches!(late, Err(WebSocketError::Closed)));
                    }
                });
            }
            _ => {}
        }
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: Event) -> switchboard::Result<()> {
        ctx.send_text(event.to_text()).await?;
        Ok(())
    }
}

fn app() -> ProtocolTypeRouter {
    ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/", Worker::default))
}

/// Skips presence events.
async fn recv_non_presence(client: &mut common::Client) -> String {
    loop {
        let text = recv_text(client).await;
        if !text.contains("\"presence.") {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_work_runs_beside_the_handlers_and_reports_back() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/ws/?name=ada").await;
    text(&mut client, "work").await;
    // The work is held back, yet the next message is handled at once.
    text(&mut client, "ping").await;
    assert_eq!(recv_non_presence(&mut client).await, "pong");
    WORK_GATE.add_permits(1);
    assert_eq!(recv_non_presence(&mut client).await, "progress: half way");
    let done: Value = serde_json::from_str(&recv_non_presence(&mut client).await).unwrap();
    assert_eq!(done, json!({ "type": "work.done", "result": 42 }));
}

#[tokio::test]
async fn a_handle_can_close_the_connection() {
    let server = TestServer::start(app()).await;
    let (report, reported) = tokio::sync::oneshot::channel();
    *AFTER_CLOSE.lock().unwrap() = Some(report);
    let mut client = server.connect("/ws/?name=ada").await;
    text(&mut client, "close-via-handle").await;
    let frame = common::recv_close(&mut client).await.unwrap();
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4100, "closed from a task")
    );
    assert!(
        within(reported).await.unwrap(),
        "a send after the close must fail with Closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_works_from_a_plain_thread() {
    let server = TestServer::start(app()).await;
    let mut client = server.connect("/ws/?name=ada").await;
    let blocking =
        BlockingChannelLayer::new(server.layer.clone(), tokio::runtime::Handle::current());
    let sent = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let event = Event::from_json(r#"{"type":"from.thread","n":7}"#).unwrap();
            blocking.group_send("everyone", event)?;
            blocking.presence_list("everyone").map(|list| list.len())
        })
        .join()
        .unwrap()
    });
    assert_eq!(within(sent).await.unwrap().unwrap(), 1);
    let got: Value = serde_json::from_str(&recv_non_presence(&mut client).await).unwrap();
    assert_eq!(got["type"], "from.thread");
}

#[tokio::test]
async fn presence_survives_a_dropped_tcp_connection() {
    let server = TestServer::start(app()).await;
    let mut ada = server.connect("/ws/?name=ada").await;
    let bob = server.connect("/ws/?name=bob").await;
    // ada hears her own join, then bob's.
    for name in ["ada", "bob"] {
        let join = recv_json(&mut ada).await;
        assert_eq!(
            (join["type"].as_str(), join["meta"]["name"].as_str()),
            (Some("presence.join"), Some(name))
        );
    }
    text(&mut ada, "who").await;
    assert_eq!(
        recv_json(&mut ada).await,
        json!({ "online": ["ada", "bob"] })
    );
    drop(bob); // no close frame: TCP just goes
    let leave = recv_json(&mut ada).await;
    assert_eq!(
        (leave["type"].as_str(), leave["meta"]["name"].as_str()),
        (Some("presence.leave"), Some("bob"))
    );
    text(&mut ada, "who").await;
    assert_eq!(recv_json(&mut ada).await, json!({ "online": ["ada"] }));
}
