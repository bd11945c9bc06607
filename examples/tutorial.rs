//! The Channels tutorial's chat consumer, line for line, and nothing more: join `chat_<room>` on
//! connect, `group_send` a `chat.message` on receive, send it to the socket from the event
//! handler, leave on disconnect. The framework-only row of the benchmarks (PERFORMANCE.md).
//!
//! ```text
//! cargo run --release --example tutorial -- --addr 127.0.0.1:8000
//! # then open http://127.0.0.1:8000/chat/lobby/ in two tabs
//! ```
//!
//! The protocol is the tutorial's: connect to `/ws/chat/{room}/`, send `{"message": "..."}`;
//! everyone in the room, the sender too, receives `{"message": "..."}`.

use std::net::SocketAddr;

use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard::consumer::{Context, JsonWebSocketConsumer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};

#[derive(Parser)]
#[command(about = "The Channels tutorial's chat on switchboard")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// What the browser sends.
#[derive(Deserialize)]
struct ChatIn {
    message: String,
}

/// What goes through the channel layer: `{"type": "chat.message", "message": "..."}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "chat.message")]
struct ChatMessage {
    message: String,
}

/// What the browser receives.
#[derive(Serialize)]
struct ChatOut<'a> {
    message: &'a str,
}

#[derive(Default)]
struct ChatConsumer {
    room_group_name: String,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for ChatConsumer {
    type Incoming = ChatIn;
    type Event = ChatMessage;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let room_name = ctx.scope().url_route.get("room_name").unwrap_or("lobby");
        self.room_group_name = format!("chat_{room_name}");
        ctx.group_add(&self.room_group_name).await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn disconnect(&mut self, ctx: &mut Context, _code: u16) -> switchboard::Result<()> {
        ctx.group_discard(&self.room_group_name).await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, msg: ChatIn) -> switchboard::Result<()> {
        let event = ChatMessage {
            message: msg.message,
        };
        ctx.group_send(&self.room_group_name, &event).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: ChatMessage) -> switchboard::Result<()> {
        ctx.send_json(&ChatOut {
            message: &event.message,
        })
        .await?;
        Ok(())
    }
}

/// The tutorial's room page: a log, an input, and the socket (what users type is shown as text).
const ROOM_PAGE: &str = r##"<!doctype html>
<meta charset="utf-8"><title>Chat room</title>
<textarea id="chat-log" cols="100" rows="20" readonly></textarea><br>
<input id="chat-message-input" type="text" size="100" autofocus><br>
<input id="chat-message-submit" type="button" value="Send">
<script>
  const roomName = decodeURIComponent(location.pathname.split("/")[2] || "lobby");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const chatSocket = new WebSocket(scheme + location.host + "/ws/chat/" + encodeURIComponent(roomName) + "/");
  chatSocket.onmessage = (e) => {
    document.querySelector("#chat-log").value += JSON.parse(e.data).message + "\n";
  };
  chatSocket.onclose = () => console.error("Chat socket closed unexpectedly");
  const input = document.querySelector("#chat-message-input");
  input.onkeyup = (e) => { if (e.key === "Enter") document.querySelector("#chat-message-submit").click(); };
  document.querySelector("#chat-message-submit").onclick = () => {
    chatSocket.send(JSON.stringify({ message: input.value }));
    input.value = "";
  };
</script>
"##;

/// The room page at `/chat/{room}/` and the consumer at `/ws/chat/{room_name}/`.
pub(crate) fn application() -> ProtocolTypeRouter {
    let pages = axum::Router::new().route(
        "/chat/{room}/",
        axum::routing::get(|| async { axum::response::Html(ROOM_PAGE) }),
    );
    ProtocolTypeRouter::new()
        .http(pages)
        .websocket(UrlRouter::new().route("/ws/chat/{room_name}/", ChatConsumer::default))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        println!(
            "tutorial: open http://{}/chat/lobby/ in a browser",
            listener.local_addr()?
        );
        switchboard::serve(listener, application())
            .with_graceful_shutdown(switchboard::shutdown_signal())
            .await?;
        Ok(())
    })
}
