//! The floor: the least a chat server can do per delivery, in plain tokio-tungstenite, for the
//! benchmarks to measure the framework against. Rooms are `tokio::sync::broadcast` channels of
//! frames encoded once; each connection is one task that, when its room has messages, queues
//! every one that is ready and writes them with one flush (no per-message write). `TCP_NODELAY`
//! on, as a tuned server has it, and a 4 KiB read buffer (tungstenite's default, 128 KiB, is
//! zero-filled before every read: a third of this server's fan-out time went to `memset`). No history, no presence, no names, no checks beyond the JSON.
//! Same protocol as the chat example: connect to `/ws/chat/{room}/?name=..`, send
//! `{"message": ".."}`, everyone in the room (the sender too) receives `{"message": "..",
//! "user": "..", "time": ..}`.
//!
//! `floor --addr 127.0.0.1:8003 --threads 1`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8003")]
    addr: SocketAddr,
    /// Worker threads of the runtime (the comparisons use 1).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Room name → the room's broadcast of encoded frames.
type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>;

#[derive(Deserialize)]
struct ChatIn {
    message: String,
}

#[derive(Serialize)]
struct ChatOut<'a> {
    message: &'a str,
    user: &'a str,
    time: u64,
}

/// `/ws/chat/{room}/?name=..` → (room, name).
fn room_and_name(uri: &str) -> Option<(String, String)> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let room = path.strip_prefix("/ws/chat/")?.trim_end_matches('/');
    let name = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .unwrap_or("anonymous");
    Some((room.to_owned(), name.to_owned()))
}

// The handshake callback's error type is tungstenite's (an HTTP response), not ours to shrink.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, rooms: Rooms) {
    let _ = stream.set_nodelay(true);
    let mut target = None;
    let config = WebSocketConfig::default().read_buffer_size(4 << 10);
    let accepted = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |request: &Request, response| {
            target = room_and_name(&request.uri().to_string());
            Ok::<Response, _>(response)
        },
        Some(config),
    )
    .await;
    let (Ok(socket), Some((room, name))) = (accepted, target) else {
        return;
    };
    let room = rooms
        .lock()
        .unwrap()
        .entry(room)
        .or_insert_with(|| broadcast::channel(4096).0)
        .clone();
    let mut inbox = room.subscribe();
    let (mut sink, mut source) = socket.split();
    loop {
        tokio::select! {
            frame = source.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let Ok(incoming) = serde_json::from_str::<ChatIn>(&text) else { continue };
                    let time = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    let out = ChatOut { message: &incoming.message, user: &name, time };
                    if let Ok(json) = serde_json::to_string(&out) {
                        let _ = room.send(Utf8Bytes::from(json));
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            got = inbox.recv() => {
                let first = match got {
                    Ok(frame) => frame,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                // Everything ready goes out with one flush.
                if sink.feed(Message::Text(first)).await.is_err() {
                    break;
                }
                let mut failed = false;
                while let Ok(frame) = inbox.try_recv() {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.addr).await?;
            println!("floor: listening on {}", listener.local_addr()?);
            let rooms = Rooms::default();
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(connection(stream, rooms.clone()));
            }
        })
}
