//! Recovery in a consumer, over real sockets: a client that comes back with the last position it
//! saw (`?since=<epoch>:<offset>`) gets exactly what it missed, then live events, with nothing
//! twice and nothing lost between the two, even while the group keeps talking.

mod common;

use std::time::Duration;

use common::{recv_json, TestServer};
use serde_json::Value;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::{Event, InMemoryChannelLayer, InMemoryConfig, Recovery, StreamPosition};
use switchboard::routing::ProtocolTypeRouter;
use switchboard::websocket::Message;
use switchboard::ServerConfig;

/// Joins `feed`; with `?since=`, recovers and sends the missed events (with positions), or
/// `{"type":"reload"}`; then forwards live events with their positions.
struct Feed;

#[switchboard::async_trait]
impl WebSocketConsumer for Feed {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let since: Option<StreamPosition> = ctx
            .scope()
            .query_param("since")
            .and_then(|since| since.parse().ok());
        ctx.group_add("feed").await?;
        if let Some(n) = ctx.scope().query_param("announce") {
            // An event sent between joining and recovering: it is both in this connection's
            // channel and in what the recovery gives back.
            ctx.group_send("feed", item(n.parse().unwrap())).await?;
        }
        ctx.accept().await?;
        if let Some(since) = since {
            match ctx.recover("feed", &since).await? {
                Recovery::Recovered { events, .. } => {
                    for event in events {
                        ctx.feed_text(event.to_text_with_position()).await?;
                    }
                    ctx.feed_text(r#"{"type":"recovered"}"#).await?;
                    ctx.flush().await?;
                }
                _ => ctx.send_text(r#"{"type":"reload"}"#).await?,
            }
        }
        Ok(())
    }

    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }

    fn forwards_event(&self, event_type: &str) -> bool {
        event_type == "item"
    }

    fn forwards_positions(&self) -> bool {
        true
    }
}

async fn start() -> TestServer {
    let layer = InMemoryChannelLayer::with_config(InMemoryConfig::default().group_history(
        "feed",
        1000,
        Duration::from_secs(600),
    ));
    let app = ProtocolTypeRouter::new()
        .websocket(switchboard::routing::UrlRouter::new().route("/ws/feed/", || Feed));
    TestServer::start_with(app, layer, ServerConfig::default()).await
}

fn item(n: u64) -> Event {
    Event::from_json(format!(r#"{{"type":"item","n":{n}}}"#)).unwrap()
}

/// The `n` and position of a forwarded item.
fn seen(value: &Value) -> (u64, StreamPosition) {
    assert_eq!(value["type"], "item", "{value}");
    let position = StreamPosition {
        epoch: value["position"]["epoch"].as_str().unwrap().to_owned(),
        offset: value["position"]["offset"].as_u64().unwrap(),
    };
    (value["n"].as_u64().unwrap(), position)
}

#[tokio::test]
async fn a_client_that_comes_back_gets_what_it_missed_then_live_events() {
    let server = start().await;
    let mut client = server.connect("/ws/feed/").await;
    let mut last = None;
    for n in 1..=3 {
        let sent = server.layer.group_send("feed", item(n)).await.unwrap();
        let (got, position) = seen(&recv_json(&mut client).await);
        assert_eq!(got, n);
        assert_eq!(Some(&position), sent.position.as_ref());
        last = Some(position);
    }
    drop(client);
    for n in 4..=13 {
        server.layer.group_send("feed", item(n)).await.unwrap();
    }
    let since = last.unwrap();
    let mut client = server.connect(&format!("/ws/feed/?since={since}")).await;
    for n in 4..=13 {
        let (got, position) = seen(&recv_json(&mut client).await);
        assert_eq!((got, position.offset), (n, n));
        assert_eq!(position.epoch, since.epoch);
    }
    assert_eq!(recv_json(&mut client).await["type"], "recovered");
    server.layer.group_send("feed", item(14)).await.unwrap();
    assert_eq!(seen(&recv_json(&mut client).await).0, 14);
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_doubled_while_the_group_keeps_talking() {
    let server = start().await;
    let first = server.layer.group_send("feed", item(1)).await.unwrap();
    let since = first.position.unwrap();
    // A sender that talks all the time (2,000 events a second, well within what a client reads,
    // so that none is dropped for a full channel), so that events arrive between the join and
    // the recovery.
    let layer = server.layer.clone();
    let talker = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_micros(500));
        for n in 2.. {
            pace.tick().await;
            layer.group_send("feed", item(n)).await.unwrap();
        }
    });
    let mut since = since;
    for _ in 0..5 {
        // Comes back from where the last connection stopped: what was said meanwhile comes
        // recovered, what is said during the join comes live, each exactly once.
        let mut client = server.connect(&format!("/ws/feed/?since={since}")).await;
        let mut expected = since.offset + 1;
        let mut live = None;
        while live.is_none_or(|live| expected < live + 100) {
            let value = recv_json(&mut client).await;
            if value["type"] == "recovered" {
                assert!(live.is_none());
                live = Some(expected);
                continue;
            }
            let (n, position) = seen(&value);
            assert_eq!(position.offset, expected, "no gap, no repeat");
            assert_eq!(n, expected);
            since = position;
            expected += 1;
        }
    }
    talker.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_both_recovered_and_live_arrives_once() {
    let server = start().await;
    let mut client = server.connect("/ws/feed/").await;
    server.layer.group_send("feed", item(1)).await.unwrap();
    let (_, since) = seen(&recv_json(&mut client).await);
    drop(client);
    server.layer.group_send("feed", item(2)).await.unwrap();
    let mut client = server
        .connect(&format!("/ws/feed/?since={since}&announce=3"))
        .await;
    for n in 2..=3 {
        assert_eq!(
            seen(&recv_json(&mut client).await),
            (
                n,
                StreamPosition {
                    offset: n,
                    ..since.clone()
                }
            )
        );
    }
    assert_eq!(recv_json(&mut client).await["type"], "recovered");
    server.layer.group_send("feed", item(4)).await.unwrap();
    assert_eq!(seen(&recv_json(&mut client).await).0, 4, "3 came once");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_position_the_stream_cannot_serve_asks_the_client_to_reload() {
    let server = start().await;
    server.layer.group_send("feed", item(1)).await.unwrap();
    let mut client = server.connect("/ws/feed/?since=another-epoch:1").await;
    assert_eq!(recv_json(&mut client).await["type"], "reload");
    server.layer.group_send("feed", item(2)).await.unwrap();
    let (n, position) = seen(&recv_json(&mut client).await);
    assert_eq!((n, position.offset), (2, 2));
    drop(client);
    server.shutdown().await;
}
