//! The baseline: a chat as a Rust user writes it with axum alone, after axum's own chat example —
//! rooms of `tokio::sync::broadcast`, one task per socket forwarding the room's messages, each frame
//! written and flushed on its own, `TCP_NODELAY` on every connection as axum's docs show
//! (`ListenerExt::tap_io`) and a 4 KiB read buffer (`WebSocketUpgrade::read_buffer_size`, as
//! tungstenite's docs advise for many connections; `--no-nodelay` for the untuned variant, with
//! neither). Same protocol as switchboard's chat example: connect to
//! `/ws/chat/{room}/?name=..`, send `{"message": ".."}`, everyone in the room (the sender too)
//! receives `{"message": "..", "user": "..", "time": ..}`.
//!
//! `axum-chat --addr 127.0.0.1:8001`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8001")]
    addr: SocketAddr,
    /// Worker threads of the runtime (the comparisons use 1).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Leave Nagle's algorithm on (axum's default; the untuned variant).
    #[arg(long)]
    no_nodelay: bool,
}

#[derive(Default)]
struct AppState {
    rooms: Mutex<HashMap<String, broadcast::Sender<String>>>,
    /// `WebSocketUpgrade::read_buffer_size`: 4 KiB when tuned (tungstenite zero-fills the spare
    /// read buffer before every read, and its docs advise a small one for many connections);
    /// axum's default 128 KiB for the untuned variant.
    read_buffer: usize,
}

#[derive(Deserialize)]
struct Join {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ChatIn {
    message: String,
}

async fn ws_handler(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    Query(join): Query<Join>,
    State(state): State<Arc<AppState>>,
) -> impl IntoResponse {
    let name = join.name.unwrap_or_else(|| "anonymous".into());
    ws.read_buffer_size(state.read_buffer)
        .on_upgrade(move |socket| handle(socket, state, room, name))
}

async fn handle(socket: WebSocket, state: Arc<AppState>, room: String, name: String) {
    let tx = {
        let mut rooms = state.rooms.lock().unwrap();
        rooms
            .entry(room)
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    };
    let mut rx = tx.subscribe();
    let (mut sender, mut receiver) = socket.split();
    let mut send_task = tokio::spawn(async move {
        while let Ok(text) = rx.recv().await {
            if sender.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(message)) = receiver.next().await {
            if let Message::Text(text) = message {
                let Ok(incoming) = serde_json::from_str::<ChatIn>(&text) else {
                    continue;
                };
                let time = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let out =
                    serde_json::json!({ "message": incoming.message, "user": name, "time": time });
                let _ = tx.send(out.to_string());
            }
        }
    });
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(async move {
            let app = axum::Router::new()
                .route("/ws/chat/{room}/", get(ws_handler))
                .with_state(Arc::new(AppState {
                    rooms: Mutex::default(),
                    read_buffer: if args.no_nodelay { 128 << 10 } else { 4 << 10 },
                }));
            let listener = tokio::net::TcpListener::bind(args.addr).await?;
            println!("axum-chat: listening on {}", listener.local_addr()?);
            let nodelay = !args.no_nodelay;
            let listener = listener.tap_io(move |stream| {
                if nodelay {
                    let _ = stream.set_nodelay(true);
                }
            });
            axum::serve(listener, app).await
        })
}
