//! Location sharing, as the Channels tutorial's `LocationConsumer`: everyone on the page sees
//! everyone's last position on a map, live.
//!
//! ```text
//! cargo run --release --example location          # http://127.0.0.1:8000/
//! ```
//!
//! WebSocket `/ws/location/?name=ada`: send `{"latitude": 48.85, "longitude": 2.35}`; every
//! connected client, the sender too, receives `{"latitude": 48.85, "longitude": 2.35, "from":
//! "<id>", "name": "ada"}`. On connecting, a client gets `{"you": "<id>"}` and then the last
//! position of everyone already there; when someone leaves, `{"left": "<id>"}`. A position out
//! of range, or not numbers, gets `{"error": "..."}` and the connection carries on. Each
//! connection may send 5 positions a second (10 at once); past that they are dropped and the
//! client told at most once a second.

use std::net::SocketAddr;

use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::consumer::{Context, InvalidMessagePolicy, JsonWebSocketConsumer};
use switchboard::middleware::RateLimit;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::{InboundRateLimit, Rate};

const GROUP: &str = "locations";

/// What a client sends.
#[derive(Deserialize)]
pub(crate) struct Position {
    latitude: f64,
    longitude: f64,
}

/// What the group hears: a move, and (from the layer's presence) who came and went.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum LocationEvent {
    #[serde(rename = "location.update")]
    Moved {
        latitude: f64,
        longitude: f64,
        from: String,
        name: String,
    },
    #[serde(rename = "presence.join")]
    Joined { channel: String },
    #[serde(rename = "presence.leave")]
    Left { channel: String },
}

/// One map viewer: remembers its own last position, to show it to whoever joins later.
#[derive(Default)]
pub(crate) struct LocationConsumer {
    name: String,
    last: Option<(f64, f64)>,
}

impl LocationConsumer {
    fn moved(&self, ctx: &Context, (latitude, longitude): (f64, f64)) -> LocationEvent {
        LocationEvent::Moved {
            latitude,
            longitude,
            from: ctx.channel_name().to_owned(),
            name: self.name.clone(),
        }
    }
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for LocationConsumer {
    type Incoming = Position;
    type Event = LocationEvent;
    // A bad message gets `{"error": ..}` and the connection carries on.
    const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Reply;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let name = ctx.scope().query_param("name").unwrap_or_default();
        let name: String = name.trim().chars().take(32).collect();
        self.name = if name.is_empty() {
            "guest".into()
        } else {
            name
        };
        ctx.presence_add(GROUP, &json!({ "name": self.name }))
            .await?; // joins the group too
        ctx.accept().await?;
        ctx.send_json(&json!({ "you": ctx.channel_name() })).await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, at: Position) -> switchboard::Result<()> {
        if !(-90.0..=90.0).contains(&at.latitude) || !(-180.0..=180.0).contains(&at.longitude) {
            ctx.send_json(&json!({ "error": "latitude is -90..90, longitude -180..180" }))
                .await?;
            return Ok(());
        }
        self.last = Some((at.latitude, at.longitude));
        ctx.group_send(GROUP, &self.moved(ctx, (at.latitude, at.longitude)))
            .await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: LocationEvent) -> switchboard::Result<()> {
        match event {
            LocationEvent::Moved {
                latitude,
                longitude,
                from,
                name,
            } => {
                let frame = json!({ "latitude": latitude, "longitude": longitude, "from": from, "name": name });
                ctx.send_json(&frame).await?;
            }
            // Someone new: tell them, point to point, where this one is.
            LocationEvent::Joined { channel } if channel != ctx.channel_name() => {
                if let Some(at) = self.last {
                    ctx.send_to_channel(&channel, &self.moved(ctx, at)).await?;
                }
            }
            LocationEvent::Joined { .. } => {}
            LocationEvent::Left { channel } => ctx.send_json(&json!({ "left": channel })).await?,
        }
        Ok(())
    }
}

/// The page at `/` and the WebSocket at `/ws/location/`.
pub(crate) fn application() -> ProtocolTypeRouter {
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(include_str!("index.html")) }),
    );
    // A phone sending 100 fixes a second does not flood everyone.
    let limit = InboundRateLimit::messages(Rate::new(5.0, 10.0));
    ProtocolTypeRouter::new()
        .http(page)
        .websocket(UrlRouter::new().route(
            "/ws/location/",
            RateLimit::new(LocationConsumer::default, limit),
        ))
}

#[derive(Parser)]
#[command(about = "switchboard's location-sharing example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "location: open http://{}/ in a browser",
        listener.local_addr()?
    );
    switchboard::serve(listener, application())
        .config(switchboard::ServerConfig::from_env()?)
        .with_graceful_shutdown(switchboard::shutdown_signal())
        .await?;
    Ok(())
}
