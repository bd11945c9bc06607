//! Consumer micro-benchmarks, in process (`WebSocketCommunicator`: real WebSocket frames over an
//! in-memory pipe, no sockets): handshake through URL routing, and a message round trip.
//!
//! `cargo bench --bench consumer`

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::routing::UrlRouter;
use switchboard::testing::WebSocketCommunicator;
use switchboard::websocket::Message;

#[derive(Default)]
struct Echo;

#[switchboard::async_trait]
impl WebSocketConsumer for Echo {
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        if let Message::Text(text) = message {
            ctx.send_text(text).await?;
        }
        Ok(())
    }
}

/// A router with nesting and parameters, as an application would have.
fn router() -> UrlRouter {
    let mut rooms = UrlRouter::new();
    for n in 0..50 {
        rooms = rooms.route(&format!("/static{n}/"), Echo::default);
    }
    let rooms = rooms
        .route("/{room}/", Echo::default)
        .route("/{room}/files/{*path}", Echo::default);
    UrlRouter::new()
        .route("/ws/echo/", Echo::default)
        .nest("/ws/rooms", rooms)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn handshake(c: &mut Criterion) {
    let rt = runtime();
    let app: std::sync::Arc<dyn switchboard::application::WebSocketApplication> =
        std::sync::Arc::new(router());
    let mut group = c.benchmark_group("handshake");
    group.measurement_time(Duration::from_secs(3));
    // Routing decides alone: no route, answered with 404.
    group.bench_function("routed_404", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut client = WebSocketCommunicator::new(app.clone(), "/ws/rooms/a/b/c/");
                client.connect().await.unwrap();
            })
        })
    });
    // A nested, parameterized route; the consumer accepts; then disconnect runs.
    group.bench_function("nested_route_accept_disconnect", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut client = WebSocketCommunicator::new(app.clone(), "/ws/rooms/lobby/");
                client.connect().await.unwrap().expect_accepted();
                client.disconnect(1000).await.unwrap();
            })
        })
    });
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut client = WebSocketCommunicator::new(Echo::default, "/ws/echo/");
    rt.block_on(client.connect()).unwrap().expect_accepted();
    let mut group = c.benchmark_group("round_trip");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("text_echo_64_bytes", |b| {
        let text = "x".repeat(64);
        b.iter(|| {
            rt.block_on(async {
                client.send_text(&text).await.unwrap();
                client.receive(Duration::from_secs(1)).await.unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, handshake, round_trip);
criterion_main!(benches);
