//! An ordinary axum app (`axum::serve`) with switchboard mounted in it: the Channels tutorial's
//! chat at `/ws/chat/{room}/`, a page at `/`, and `POST /rooms/{room}/announce` (JSON
//! `{"message": ".."}`), an axum handler that broadcasts to the room through the same channel
//! layer.
//!
//! ```sh
//! cargo run --example axum_app -- --addr 127.0.0.1:8000
//! curl -X POST -H 'content-type: application/json' -d '{"message":"hi all"}' \
//!     http://127.0.0.1:8000/rooms/lobby/announce
//! ```

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard::consumer::{Context, JsonWebSocketConsumer};
use switchboard::layer::LayerHandle;
use switchboard::routing::UrlRouter;
use switchboard::{AppService, ShutdownHandle};

/// The Channels tutorial's consumer: join `chat_<room>`, broadcast what is said, forward it.
#[derive(Default)]
struct ChatConsumer {
    group: String,
}

/// What the browser sends, and what `POST /rooms/{room}/announce` takes.
#[derive(Deserialize)]
struct ChatIn {
    message: String,
}

/// What travels through the channel layer.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "chat.message")]
struct ChatMessage {
    message: String,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for ChatConsumer {
    type Incoming = ChatIn;
    type Event = ChatMessage;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let room = ctx.scope().url_route.get("room").unwrap_or("lobby");
        self.group = format!("chat_{room}");
        ctx.group_add(&self.group).await?; // left automatically on disconnect
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, msg: ChatIn) -> switchboard::Result<()> {
        let event = ChatMessage {
            message: msg.message,
        };
        ctx.group_send(&self.group, &event).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: ChatMessage) -> switchboard::Result<()> {
        ctx.send_json(&serde_json::json!({ "message": event.message }))
            .await?;
        Ok(())
    }
}

/// `POST /rooms/{room}/announce`: 202 with how many got it, 404 when the room is empty.
async fn announce(
    Path(room): Path<String>,
    Extension(layer): Extension<LayerHandle>,
    Json(body): Json<ChatIn>,
) -> (StatusCode, Json<serde_json::Value>) {
    let event = ChatMessage {
        message: body.message,
    };
    match layer.group_send(&format!("chat_{room}"), &event).await {
        Ok(sent) if sent.reached_anyone() => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "delivered": sent.queued })),
        ),
        Ok(_) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "nobody is in that room" })),
        ),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error.to_string() })),
        ),
    }
}

/// The app: axum routes, with the chat's WebSockets mounted as a service. Both sides share
/// `layer`; `ShutdownHandle` closes the WebSockets when the app stops.
fn app(layer: LayerHandle) -> (Router, ShutdownHandle) {
    let chat = UrlRouter::new().route("/ws/chat/{room}/", ChatConsumer::default);
    let websockets = AppService::new(chat).channel_layer(layer.clone());
    let shutdown = websockets.shutdown_handle();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/rooms/{room}/announce", post(announce))
        .route_service("/ws/chat/{room}/", websockets)
        .layer(Extension(layer));
    (router, shutdown)
}

/// Serves the app on `listener` with plain `axum::serve` until `signal`, then closes the
/// WebSockets (1001) and waits for their `disconnect`s.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    layer: LayerHandle,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, shutdown) = app(layer);
    let stop = shutdown.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        signal.await;
        stop.shutdown();
    })
    .await?;
    shutdown.wait().await;
    Ok(())
}

/// An axum app with the Channels tutorial's chat mounted in it.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(
        "axum app with the chat at http://{}/",
        listener.local_addr()?
    );
    run(
        listener,
        LayerHandle::in_memory(),
        switchboard::shutdown_signal(),
    )
    .await
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Chat (axum app)</title>
<style>
body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
#log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; }
#log p { margin: .2rem 0; }
</style></head>
<body>
<h1>Chat in an axum app</h1>
<p><label>Room <input id="room" value="lobby"></label> <button id="join">Join</button> <span id="status">not connected</span></p>
<div id="log"></div>
<form id="say"><input id="message" size="50" autocomplete="off" placeholder="Say something"> <button>Send</button></form>
<script>
let socket = null;
const log = document.getElementById("log");
const status = document.getElementById("status");
function show(text) {
  const line = document.createElement("p");
  line.textContent = text; // never innerHTML: what users type stays text
  log.append(line);
  log.scrollTop = log.scrollHeight;
}
function join() {
  if (socket) socket.close();
  const room = encodeURIComponent(document.getElementById("room").value || "lobby");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${room}/`);
  socket.onopen = () => { status.textContent = "connected"; };
  socket.onclose = () => { status.textContent = "disconnected"; };
  socket.onmessage = (e) => show(JSON.parse(e.data).message);
}
document.getElementById("join").onclick = join;
document.getElementById("say").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("message");
  if (socket && input.value) socket.send(JSON.stringify({ message: input.value }));
  input.value = "";
};
join();
</script>
</body>
</html>
"#;
