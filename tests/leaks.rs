//! Nothing leaks: thousands of connect / join / send / leave cycles, half of them ending with a
//! dropped TCP connection, leave no channel, group, membership or connection behind.

mod common;

use std::sync::Arc;

use common::{text, within, TestServer};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::Event;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use tokio::sync::Semaphore;

/// Joins its room (listed in presence) and broadcasts what it gets; counts its disconnects.
struct Member {
    gone: Arc<Semaphore>,
    room: String,
}

#[switchboard::async_trait]
impl WebSocketConsumer for Member {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        self.room = format!("room_{}", ctx.scope().url_route.get("room").unwrap_or("0"));
        ctx.presence_add(&self.room, &serde_json::json!({ "n": 1 }))
            .await?;
        ctx.accept().await?;
        Ok(())
    }
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        if let Message::Text(t) = message {
            ctx.group_send(
                &self.room,
                &serde_json::json!({ "type": "said", "text": t.as_str() }),
            )
            .await?;
        }
        Ok(())
    }
    async fn event(&mut self, ctx: &mut Context, event: Event) -> switchboard::Result<()> {
        let _ = ctx.send_text(event.to_text()).await; // the client may be gone already
        Ok(())
    }
    async fn disconnect(&mut self, _: &mut Context, _: u16) -> switchboard::Result<()> {
        self.gone.add_permits(1);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    const CYCLES: usize = 2000;
    const AT_ONCE: usize = 50;
    let gone = Arc::new(Semaphore::new(0));
    let counter = gone.clone();
    let app =
        ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/{room}/", move || {
            Member {
                gone: counter.clone(),
                room: String::new(),
            }
        }));
    let server = Arc::new(TestServer::start(app).await);
    for batch in 0..CYCLES / AT_ONCE {
        let mut cycles = Vec::new();
        for i in 0..AT_ONCE {
            let server = server.clone();
            cycles.push(tokio::spawn(async move {
                let n = batch * AT_ONCE + i;
                let mut client = server.connect(&format!("/ws/{}/", n % 10)).await;
                text(&mut client, "hello").await;
                if n % 2 == 0 {
                    let _ = client.close(None).await; // a clean close
                }
                drop(client); // the other half: the TCP connection just goes
            }));
        }
        for cycle in cycles {
            within(cycle).await.unwrap();
        }
    }
    // Every connection's disconnect has run (an event, not a guess about time) ...
    within(gone.acquire_many(CYCLES as u32))
        .await
        .unwrap()
        .forget();
    // ... and by then each had left its groups and its channel was gone.
    let stats = server.stats.snapshot();
    let layer = stats.layer;
    assert_eq!(
        (layer.channels, layer.groups, layer.memberships),
        (0, 0, 0),
        "{layer:?}"
    );
    assert_eq!(stats.handshakes, CYCLES as u64);
    let server = Arc::into_inner(server).expect("no other reference");
    let stats_handle = server.stats.clone();
    server.shutdown().await;
    assert_eq!(stats_handle.snapshot().connections, 0);
}
