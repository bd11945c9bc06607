//! The bundled chat: rooms, user names, a page a person can use in a browser.
//!
//! ```text
//! cargo run --release --example chat            # http://127.0.0.1:8000/
//! cargo run --release --example chat -- --addr 127.0.0.1:9000
//! ```
//!
//! The WebSocket protocol is the Channels tutorial's: connect to `/ws/chat/{room}/`, send
//! `{"message": "..."}` (optionally `"user": "..."`); every member of the room, the sender too,
//! receives `{"message": "...", "user": "...", "time": <ms since 1970>}`. Malformed input is
//! answered with `{"error": "..."}` and the connection carries on.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Html;
use axum::routing::get;
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard::consumer::{Context, InvalidMessage, JsonWebsocketConsumer};
use switchboard::routing::{ProtocolTypeRouter, URLRouter};

/// Longest message accepted, in characters.
const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest user name kept, in characters.
const MAX_USER_CHARS: usize = 32;
/// Longest room name accepted (the group name adds a 5-character prefix; groups stay under 100).
const MAX_ROOM_CHARS: usize = 64;

#[derive(Parser, Debug)]
#[command(about = "switchboard's chat example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
}

/// What the browser sends.
#[derive(Deserialize)]
pub(crate) struct ChatIn {
    message: String,
    #[serde(default)]
    user: Option<String>,
}

/// What travels through the channel layer to every member of the room.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum ChatEvent {
    #[serde(rename = "chat.message")]
    Message {
        message: String,
        user: String,
        time: u64,
    },
}

/// What the browser receives.
#[derive(Serialize)]
struct ChatOut<'a> {
    message: &'a str,
    user: &'a str,
    time: u64,
}

#[derive(Default)]
pub(crate) struct ChatConsumer {
    group: String,
}

fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_CHARS
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[switchboard::async_trait]
impl JsonWebsocketConsumer for ChatConsumer {
    type Incoming = ChatIn;
    type Event = ChatEvent;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let room = ctx.scope().url_route.get("room").unwrap_or("lobby");
        if !valid_room(room) {
            // Before accept, close refuses the handshake with HTTP 403.
            ctx.close(4000, "bad room name").await?;
            return Ok(());
        }
        self.group = format!("chat_{room}");
        ctx.group_add(&self.group).await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, msg: ChatIn) -> switchboard::Result<()> {
        let message = msg.message.trim();
        if message.is_empty() {
            return send_error(ctx, "empty message").await;
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return send_error(ctx, "message too long").await;
        }
        let user = msg.user.as_deref().map(str::trim).unwrap_or_default();
        let user: String = match user {
            "" => "anonymous".into(),
            name => name.chars().take(MAX_USER_CHARS).collect(),
        };
        let event = ChatEvent::Message {
            message: message.to_owned(),
            user,
            time: now_ms(),
        };
        ctx.group_send(&self.group, &event).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: ChatEvent) -> switchboard::Result<()> {
        match event {
            ChatEvent::Message {
                message,
                user,
                time,
            } => {
                let out = ChatOut {
                    message: &message,
                    user: &user,
                    time,
                };
                ctx.send_json(&out).await?;
            }
        }
        Ok(())
    }

    async fn invalid_message(
        &mut self,
        ctx: &mut Context,
        error: InvalidMessage,
    ) -> switchboard::Result<()> {
        send_error(ctx, &error.to_string()).await
    }
}

async fn send_error(ctx: &mut Context, error: &str) -> switchboard::Result<()> {
    ctx.send_json(&serde_json::json!({ "error": error }))
        .await?;
    Ok(())
}

/// The HTTP side: an ordinary axum router.
fn pages() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route(
            "/chat/{room}/",
            get(|| async { Html(include_str!("room.html")) }),
        )
}

/// The whole application: axum for pages, the chat consumer for `/ws/chat/{room}/`.
pub(crate) fn application() -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(pages())
        .websocket(URLRouter::new().nest(
            "/ws",
            URLRouter::new().route("/chat/{room}/", ChatConsumer::default),
        ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("chat: open http://{}/ in a browser", listener.local_addr()?);
    switchboard::serve(listener, application())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
