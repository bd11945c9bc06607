//! A live sensor dashboard, as the Channels tutorial's `SensorDataConsumer`: sensors send
//! readings, every open dashboard plots them as they come.
//!
//! ```text
//! cargo run --release --example dashboard -- --simulate 3   # http://127.0.0.1:8000/
//! curl -X POST -H 'content-type: application/json' -d '{"value": 21.5}' \
//!      http://127.0.0.1:8000/sensors/greenhouse
//! curl -N http://127.0.0.1:8000/events
//! ```
//!
//! WebSocket `/ws/sensor_data/`: a sensor sends `{"sensor_id": "t1", "sensor_value": 21.5}`;
//! every connected client receives `{"type": "sensor.reading", "sensor_id": "t1",
//! "sensor_value": 21.5, "position": {"epoch": "..", "offset": 7}}`. Bad input gets
//! `{"error": ".."}` and the connection carries on. `POST /sensors/{id}` with `{"value": 21.5}`
//! feeds the same stream (202), and `GET /events` serves it as server-sent events (`event:
//! reading`). A dashboard that comes back connects with `?since=<epoch>:<offset>` of the last
//! reading it has: it first gets the readings it missed (from the layer's stream of the group,
//! the last 1,000 of 10 minutes), then `{"type": "recovery", "asked": true, "recovered": true,
//! "missed": 3}` (`recovered: false`: the stream no longer holds them, e.g. after a restart). A
//! new page gets the last 120 readings the same way (`"asked": false`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::{Extension, Json};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::consumer::{Context, InvalidMessagePolicy, JsonWebSocketConsumer};
use switchboard::layer::{
    InMemoryChannelLayer, InMemoryConfig, LayerHandle, Recovery, StreamPosition,
};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};

const GROUP: &str = "sensors";
/// Readings a new page gets at once, from the group's stream.
const RECENT: u64 = 120;

/// A reading, as sensors send it and as the group carries it (with its `type`).
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "sensor.reading")]
pub(crate) struct SensorReading {
    sensor_id: String,
    sensor_value: f64,
}

/// What a sensor sends.
#[derive(Deserialize)]
pub(crate) struct Reading {
    sensor_id: String,
    sensor_value: f64,
}

fn valid_sensor(id: &str) -> bool {
    (1..=64).contains(&id.chars().count())
}

/// Sensors and dashboards alike: every reading goes to the group, and the group's readings go
/// to every client as they are, with their stream position.
#[derive(Default)]
pub(crate) struct SensorDataConsumer;

#[switchboard::async_trait]
impl JsonWebSocketConsumer for SensorDataConsumer {
    type Incoming = Reading;
    type Event = SensorReading;
    // A bad message gets `{"error": ..}` and the connection carries on.
    const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Reply;
    const FORWARDED_EVENTS: &'static [&'static str] = &["sensor.reading"];
    const FORWARDS_POSITIONS: bool = true;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add(GROUP).await?;
        ctx.accept().await?;
        let asked: Option<StreamPosition> = ctx
            .scope()
            .query_param("since")
            .and_then(|s| s.parse().ok());
        let since = match &asked {
            Some(since) => since.clone(),
            // A new page: the stream's last readings, to draw at once. Offsets have no gaps,
            // so the last RECENT are those after `now - RECENT`.
            None => match ctx
                .recover(
                    GROUP,
                    &StreamPosition {
                        epoch: String::new(),
                        offset: 0,
                    },
                )
                .await?
                .position()
            {
                Some(now) => StreamPosition {
                    epoch: now.epoch.clone(),
                    offset: now.offset.saturating_sub(RECENT),
                },
                None => return Ok(()), // no reading yet
            },
        };
        // What this dashboard missed (or the recent readings), then how that went; live
        // readings it already got here are not sent again.
        let recovery = ctx.recover(GROUP, &since).await?;
        let mut missed = 0;
        if let Recovery::Recovered { events, .. } = &recovery {
            for event in events {
                ctx.feed_text(event.to_text_with_position()).await?;
            }
            missed = events.len();
        }
        let recovered = matches!(recovery, Recovery::Recovered { .. });
        let asked = asked.is_some();
        ctx.send_json(&json!({ "type": "recovery", "asked": asked, "recovered": recovered, "missed": missed }))
            .await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, r: Reading) -> switchboard::Result<()> {
        if !valid_sensor(&r.sensor_id) {
            ctx.send_json(&json!({ "error": "sensor_id is 1 to 64 characters" }))
                .await?;
            return Ok(());
        }
        let reading = SensorReading {
            sensor_id: r.sensor_id,
            sensor_value: r.sensor_value,
        };
        ctx.group_send(GROUP, &reading).await?;
        Ok(())
    }

    async fn event(&mut self, _: &mut Context, _: SensorReading) -> switchboard::Result<()> {
        Ok(()) // readings are forwarded as they are (FORWARDED_EVENTS)
    }
}

/// The same readings as server-sent events.
struct SensorStream;

#[switchboard::async_trait]
impl SseConsumer for SensorStream {
    type Event = SensorReading;

    async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        ctx.group_add(GROUP).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut SseContext, r: SensorReading) -> switchboard::Result<()> {
        ctx.send(SseEvent::json(&r)?.event("reading")).await?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct Posted {
    value: f64,
}

/// `POST /sensors/{id} {"value": 21.5}`, for devices that cannot hold a socket.
async fn post_reading(
    Path(sensor_id): Path<String>,
    Extension(layer): Extension<LayerHandle>,
    Json(body): Json<Posted>,
) -> StatusCode {
    if !valid_sensor(&sensor_id) {
        return StatusCode::BAD_REQUEST;
    }
    let reading = SensorReading {
        sensor_id,
        sensor_value: body.value,
    };
    match layer.group_send(GROUP, &reading).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The page at `/`, `POST /sensors/{id}`, `GET /events` and the WebSocket.
pub(crate) fn application() -> ProtocolTypeRouter {
    let http = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(include_str!("index.html")) }),
        )
        .route("/sensors/{id}", axum::routing::post(post_reading))
        .route(
            "/events",
            axum::routing::get(
                |Extension(layer): Extension<LayerHandle>, parts: http::request::Parts| async move {
                    sse::respond(SensorStream, &parts, layer).await
                },
            ),
        );
    ProtocolTypeRouter::new()
        .http(http)
        .websocket(UrlRouter::new().route("/ws/sensor_data/", SensorDataConsumer::default))
}

/// The layer: the group keeps a stream of its last 1,000 readings (10 minutes) for dashboards
/// that come back.
pub(crate) fn layer() -> InMemoryChannelLayer {
    InMemoryChannelLayer::with_config(InMemoryConfig::default().group_history(
        GROUP,
        1000,
        Duration::from_secs(600),
    ))
}

/// `count` simulated sensors (`sim-1`, ...), each sending a wavy reading every `every`, as any
/// other code holding the layer would.
pub(crate) fn simulate(layer: &LayerHandle, count: usize, every: Duration) {
    for n in 1..=count {
        let layer = layer.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            for step in 0u64.. {
                tick.tick().await;
                let t = step as f64 / 4.0 + n as f64;
                let reading = SensorReading {
                    sensor_id: format!("sim-{n}"),
                    sensor_value: 20.0 + 5.0 * (t / 2.0).sin() + 1.5 * (t * 1.7).sin() + n as f64,
                };
                let _ = layer.group_send(GROUP, &reading).await;
            }
        });
    }
}

#[derive(Parser)]
#[command(about = "switchboard's sensor dashboard example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
    /// Simulated sensors to run in this process, each sending a reading every half second.
    #[arg(long, default_value_t = 0)]
    simulate: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let layer = LayerHandle::new(layer());
    simulate(&layer, args.simulate, Duration::from_millis(500));
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "dashboard: open http://{}/ in a browser",
        listener.local_addr()?
    );
    switchboard::serve(listener, application())
        .channel_layer(layer)
        .config(switchboard::ServerConfig::from_env()?)
        .with_graceful_shutdown(switchboard::shutdown_signal())
        .await?;
    Ok(())
}
