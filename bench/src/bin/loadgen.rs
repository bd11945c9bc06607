//! switchboard's load generator: `fanout`, `idle` and `churn` against any chat server that speaks
//! the chat example's protocol (`/ws/chat/{room}/?name=..`, `{"message": ".."}` in, objects with a
//! `"message"` out). Bounded in count and time; talks to loopback only.
//!
//! ```text
//! loadgen fanout --server 127.0.0.1:8000 --clients 1000 --senders 10 --window 16 --duration 10
//! loadgen fanout --server 127.0.0.1:8001 --also-server 127.0.0.1:8002 --clients 1000
//! loadgen fanout --server 127.0.0.1:8000 --clients 100 --senders 10 --rate 100 --duration 10
//! loadgen idle   --server 127.0.0.1:8000 --clients 19000 --server-pid 1234
//! loadgen churn  --server 127.0.0.1:8000 --concurrency 64 --duration 10
//! loadgen idle   --server 127.0.0.1:8000 --clients 10000 --http2 100 --server-pid 1234
//! ```
//!
//! With `--http2 N`, WebSockets are extended CONNECTs (RFC 8441) on HTTP/2 connections in clear
//! text, `N` per connection, instead of one TCP connection each.
//!
//! Fan-out is closed loop: each sender keeps at most `--window` of its messages in flight, and a
//! message is in flight until every client in the room has it. With `--rate`, senders instead send
//! that many messages per second each (open loop), for latency at a fixed load.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args as ClapArgs, Parser, Subcommand};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::OnceCell;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<Conn>;

/// A WebSocket's bytes: its own TCP connection, or one stream of a shared HTTP/2 connection.
enum Conn {
    Tcp(TcpStream),
    Http2(TokioIo<hyper::upgrade::Upgraded>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Http2(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Conn::Http2(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_flush(cx),
            Conn::Http2(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Http2(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// The HTTP/2 connections `--http2` opens: connection `n / per_connection` carries WebSocket `n`,
/// made by the first WebSocket that needs it and forgotten once its last one is opened (its
/// WebSockets keep it alive).
#[derive(Default)]
struct Http2Pool {
    /// By index: the connection (once made) and how many WebSockets were given it.
    connections: std::sync::Mutex<HashMap<usize, Http2Slot>>,
}

type Http2Slot = (Arc<OnceCell<Http2Sender>>, usize);

type Http2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

#[derive(Parser)]
#[command(about = "switchboard's load generator (loopback only)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Broadcast throughput and latency in one room.
    Fanout(FanoutArgs),
    /// Many idle connections; the server's memory per connection.
    Idle(IdleArgs),
    /// Connect-and-close handshakes per second.
    Churn(ChurnArgs),
    /// Many clients joining one room at once: the frames the room's members receive over the
    /// storm (presence traffic, history), per client.
    Storm(StormArgs),
}

#[derive(ClapArgs)]
struct StormArgs {
    #[command(flatten)]
    target: Target,
    /// Clients that join.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Seconds to keep reading after the last client joined.
    #[arg(long, default_value_t = 2)]
    settle: u64,
    /// The room (default: a new one for each run).
    #[arg(long)]
    room: Option<String>,
}

async fn storm(args: StormArgs) -> std::io::Result<()> {
    let target = Arc::new(args.target.clone());
    let room = args.room.clone().unwrap_or_else(|| {
        format!(
            "storm{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        )
    });
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let joined = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let all_joined = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let clients = args.clients as u64;
    let tasks: Vec<_> = (0..args.clients)
        .map(|n| {
            let (target, room, permits) = (target.clone(), room.clone(), permits.clone());
            let (frames, bytes, joined, failed) = (
                frames.clone(),
                bytes.clone(),
                joined.clone(),
                failed.clone(),
            );
            let all_joined = all_joined.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let permit = permits.acquire_owned().await;
                let ws = connect(&target, n, &room, &format!("s{n}"), 64 << 10).await;
                drop(permit);
                let done = |count: &AtomicU64| {
                    count.fetch_add(1, Ordering::Relaxed);
                };
                let mut ws = match ws {
                    Ok(ws) => ws,
                    Err(_) => {
                        done(&failed);
                        if joined.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)
                            == clients
                        {
                            all_joined.notify_one();
                        }
                        return;
                    }
                };
                done(&joined);
                if joined.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) == clients {
                    all_joined.notify_one();
                }
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        frame = ws.next() => match frame {
                            Some(Ok(Message::Text(text))) => {
                                frames.fetch_add(1, Ordering::Relaxed);
                                bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
                let _ = ws.close(None).await;
            })
        })
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(120), all_joined.notified()).await;
    let storm_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.settle)).await; // the last frames of the storm
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let (frames, joined) = (
        frames.load(Ordering::Relaxed),
        joined.load(Ordering::Relaxed),
    );
    let report = serde_json::json!({
        "mode": "storm", "clients": args.clients, "joined": joined,
        "failed": failed.load(Ordering::Relaxed), "storm_s": storm_s,
        "frames": frames, "bytes": bytes.load(Ordering::Relaxed),
        "frames_per_client": frames as f64 / joined.max(1) as f64,
    });
    print_report(&report, args.target.json);
    Ok(())
}

#[derive(ClapArgs, Clone)]
struct Target {
    /// Server address (loopback).
    #[arg(long, default_value = "127.0.0.1:8000")]
    server: SocketAddr,
    /// More servers of the same app (e.g. chat processes sharing rooms through Redis): client n
    /// connects to the (n mod count)-th of `--server` and these, so a room is split over them.
    #[arg(long = "also-server")]
    also_servers: Vec<SocketAddr>,
    /// WebSocket path; `{room}` and `{name}` are filled in.
    #[arg(
        long,
        default_value = "/ws/chat/{room}/?name={name}&key=loadgen-test-key-{name}"
    )]
    path: String,
    /// `Origin` header to send (servers check it); default: the server's own origin,
    /// `http://<the address connected to>`, as a page it served would send.
    #[arg(long)]
    origin: Option<String>,
    /// Source addresses 127.0.0.1 .. 127.0.0.N to spread connections over (about 7,000 each).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// The server's process id, to report its memory (VmRSS).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Open WebSockets over HTTP/2 in clear text (RFC 8441 extended CONNECT), this many on each
    /// connection; default: one TCP connection (HTTP/1.1) each.
    #[arg(long, value_name = "PER_CONNECTION")]
    http2: Option<usize>,
    #[arg(skip)]
    http2_pool: Arc<Http2Pool>,
}

#[derive(ClapArgs)]
struct FanoutArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages each sender keeps in flight (closed loop).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Messages per second per sender (open loop) instead of the window.
    #[arg(long)]
    rate: Option<u32>,
    /// Bytes of each message's text.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds at the start not counted.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Extra clients in the room that never read (4 KiB receive buffer), not counted: the others
    /// must not slow down.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Extra clients in the room that send as fast as their socket takes (and read, to stay
    /// connected), not counted: the room's latency with a flooder in it, against a server with
    /// and without an inbound rate limit.
    #[arg(long, default_value_t = 0)]
    flooders: usize,
    /// The room (default: a new one for each run).
    #[arg(long)]
    room: Option<String>,
}

#[derive(ClapArgs)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Connections per room (rooms are `idle0`, `idle1`, ...).
    #[arg(long, default_value_t = 10)]
    per_room: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Seconds to wait after the last connect before reading the server's memory.
    #[arg(long, default_value_t = 3)]
    settle: u64,
}

#[derive(ClapArgs)]
struct ChurnArgs {
    #[command(flatten)]
    target: Target,
    /// Connections in progress at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rooms the connections spread over.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Each connection also sends one message and waits until it comes back before it closes
    /// (a user who joins, says something, and leaves); a cycle then counts only when it did.
    #[arg(long)]
    message: bool,
}

/// Sends `{"message": token}` and reads until a frame whose `"message"` is `token` arrives
/// (skipping history and presence frames), within 10 s.
async fn say_and_hear(ws: &mut Ws, token: &str) -> bool {
    let text = serde_json::json!({ "message": token }).to_string();
    if ws.send(Message::Text(text.into())).await.is_err() {
        return false;
    }
    let heard = async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame {
                // Only a frame that mentions the token is parsed (a joiner gets a history first).
                if !text.contains(token) {
                    continue;
                }
                let back = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
                if back.as_deref() == Some(token) {
                    return true;
                }
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .unwrap_or(false)
}

fn config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
}

async fn connect(
    target: &Target,
    n: usize,
    room: &str,
    name: &str,
    read_buffer: usize,
) -> std::io::Result<Ws> {
    connect_with(target, n, room, name, read_buffer, None).await
}

async fn connect_with(
    target: &Target,
    n: usize,
    room: &str,
    name: &str,
    read_buffer: usize,
    receive_buffer: Option<u32>,
) -> std::io::Result<Ws> {
    let source = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (n % target.sources.max(1) as usize) as u8,
    ));
    let server = match n % (1 + target.also_servers.len()) {
        0 => target.server,
        i => target.also_servers[i - 1],
    };
    let path = target.path.replace("{room}", room).replace("{name}", name);
    let origin = match &target.origin {
        Some(origin) => origin.clone(),
        None => format!("http://{server}"),
    };
    if let Some(per_connection) = target.http2 {
        let io = http2_websocket(
            target,
            n / per_connection.max(1),
            source,
            server,
            &path,
            &origin,
        )
        .await?;
        let ws = WebSocketStream::from_raw_socket(
            Conn::Http2(io),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            Some(config(read_buffer)),
        )
        .await;
        return Ok(ws);
    }
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{server}{path}")
        .into_client_request()
        .map_err(std::io::Error::other)?;
    request
        .headers_mut()
        .insert("origin", origin.parse().map_err(std::io::Error::other)?);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        Conn::Tcp(stream),
        Some(config(read_buffer)),
    )
    .await
    .map_err(std::io::Error::other)?;
    Ok(ws)
}

/// An extended CONNECT (RFC 8441) to `path` on HTTP/2 connection `index` (opened from `source`
/// if this is its first WebSocket): the stream, once answered 200.
async fn http2_websocket(
    target: &Target,
    index: usize,
    source: IpAddr,
    server: SocketAddr,
    path: &str,
    origin: &str,
) -> std::io::Result<TokioIo<hyper::upgrade::Upgraded>> {
    let per_connection = target.http2.unwrap_or(1).max(1);
    let cell = {
        let mut connections = target.http2_pool.connections.lock().unwrap();
        let entry = connections
            .entry(index)
            .or_insert_with(|| (Arc::new(OnceCell::new()), 0));
        entry.1 += 1;
        let cell = entry.0.clone();
        if entry.1 >= per_connection {
            connections.remove(&index);
        }
        cell
    };
    let sender = cell
        .get_or_try_init(|| async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(server).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            // One answered request: the server's SETTINGS (extended CONNECT allowed) are in.
            let settle = Request::get(format!("http://{server}/loadgen-settle"))
                .body(Empty::new())
                .map_err(std::io::Error::other)?;
            sender
                .send_request(settle)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(sender)
        })
        .await?;
    let mut sender = sender.clone();
    let request = Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{server}{path}"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .header("origin", origin)
        .body(Empty::new())
        .map_err(std::io::Error::other)?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    if response.status() != http::StatusCode::OK {
        return Err(std::io::Error::other(format!(
            "extended CONNECT answered {}",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(std::io::Error::other)?;
    Ok(TokioIo::new(upgraded))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Finds a bench payload (`"b` then a digit, which only a payload starts with) and returns it up
/// to the next quote. A byte scan: this runs for every message and must cost next to nothing.
fn message_text(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let start = bytes
        .windows(3)
        .position(|w| w[0] == b'"' && w[1] == b'b' && w[2].is_ascii_digit())?
        + 1;
    let end = bytes[start..].iter().position(|&b| b == b'"')? + start;
    Some(&json[start..end])
}

/// A bench payload: `sender:seq:sent_us:` then padding.
fn parse_payload(text: &str) -> Option<(usize, u64, u64)> {
    let mut parts = text.splitn(4, ':');
    let sender = parts.next()?.strip_prefix('b')?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((sender, seq, sent))
}

struct Run {
    clock: Instant,
    clients: u32,
    window: usize,
    /// Per sender, per window slot: how many clients have the message in that slot.
    slots: Vec<Vec<AtomicU32>>,
    permits: Vec<Semaphore>,
    measuring: AtomicBool,
    stopping: AtomicBool,
    sent: Vec<AtomicU64>,
}

impl Run {
    fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }
}

#[derive(Default)]
struct Tally {
    received: u64,
    counted: u64,
    duplicates: u64,
    reordered: u64,
    latency: Option<Histogram<u64>>,
}

/// Receives one client's messages until told to stop.
async fn reader(
    mut stream: SplitStream<Ws>,
    run: Arc<Run>,
    senders: usize,
    mut done: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally {
        latency: Some(Histogram::new(3).unwrap()),
        ..Tally::default()
    };
    let mut next = vec![0u64; senders];
    let mut seen = vec![[0u64; 16]; senders]; // a 1024-message window of sequence numbers
    let stop = done.changed();
    tokio::pin!(stop);
    loop {
        let message = tokio::select! {
            biased;
            message = stream.next() => message,
            _ = &mut stop => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            _ => break,
        };
        // History a server sends on joining is not part of this run.
        if text.contains("\"history\":true") {
            continue;
        }
        let Some((s, seq, sent_us)) = message_text(&text).and_then(parse_payload) else {
            continue;
        };
        if s >= senders {
            continue;
        }
        let bit = (seq % 1024) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if seq < next[s] {
            if next[s] - seq > 1024 || seen[s][word] & mask != 0 {
                tally.duplicates += 1;
                continue;
            }
            tally.reordered += 1;
        } else {
            // Clear the bits of the sequence numbers skipped over, then move the window on.
            for skipped in next[s]..seq.min(next[s] + 1024) {
                let b = (skipped % 1024) as usize;
                seen[s][b / 64] &= !(1u64 << (b % 64));
            }
            next[s] = seq + 1;
        }
        seen[s][word] |= mask;
        tally.received += 1;
        if run.measuring.load(Ordering::Relaxed) {
            tally.counted += 1;
            // Latency of one message in 8: reading the clock for each would make this process,
            // not the server, the bottleneck.
            if tally.counted.is_multiple_of(8) {
                let _ = tally
                    .latency
                    .as_mut()
                    .unwrap()
                    .record(run.now_us().saturating_sub(sent_us).max(1));
            }
        }
        let slot = &run.slots[s][seq as usize % run.window];
        if slot.fetch_add(1, Ordering::AcqRel) + 1 == run.clients {
            slot.store(0, Ordering::Release);
            run.permits[s].add_permits(1);
        }
    }
    tally
}

/// Sends until told to stop, and returns the sink: the connection stays open, so that this
/// client goes on receiving what the others still have in flight.
async fn sender(
    mut sink: SplitSink<Ws, Message>,
    run: Arc<Run>,
    s: usize,
    size: usize,
    rate: Option<u32>,
) -> SplitSink<Ws, Message> {
    // Open loop: sender `s` of `n` starts s/n of a period late, so that the senders' messages
    // are spread evenly instead of all arriving (and being read back) at the same instants.
    let mut ticker = rate.map(|r| {
        let period = Duration::from_secs_f64(1.0 / f64::from(r.max(1)));
        let offset = period.mul_f64(s as f64 / run.permits.len().max(1) as f64);
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut seq = 0u64;
    loop {
        match &mut ticker {
            Some(ticker) => {
                ticker.tick().await;
            }
            None => match run.permits[s].acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            },
        }
        if run.stopping.load(Ordering::Relaxed) {
            break;
        }
        let mut payload = format!("b{s}:{seq}:{}:", run.now_us());
        while payload.len() < size {
            payload.push('x');
        }
        let text = format!("{{\"message\":\"{payload}\"}}");
        if sink.send(Message::text(text)).await.is_err() {
            break;
        }
        run.sent[s].fetch_add(1, Ordering::Relaxed);
        seq += 1;
    }
    sink
}

async fn fanout(args: FanoutArgs) -> std::io::Result<()> {
    let senders = args.senders.min(args.clients);
    let run = Arc::new(Run {
        clock: Instant::now(),
        clients: args.clients as u32,
        window: args.window.max(1),
        slots: (0..senders)
            .map(|_| (0..args.window.max(1)).map(|_| AtomicU32::new(0)).collect())
            .collect(),
        permits: (0..senders).map(|_| Semaphore::new(0)).collect(),
        measuring: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
    });
    let (done_tx, done_rx) = watch::channel(false);
    let rss_before = args.target.server_pid.and_then(rss_kib);
    let mut readers = Vec::with_capacity(args.clients);
    let mut sinks = Vec::with_capacity(senders);
    let started = Instant::now();
    let room = args.room.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("bench{}-{stamp}", std::process::id())
    });
    for n in 0..args.clients {
        // 8 KiB: tungstenite zeroes the whole read buffer on each read.
        let ws = connect(&args.target, n, &room, &format!("c{n}"), 8 << 10).await?;
        let (sink, stream) = ws.split();
        readers.push(tokio::spawn(reader(
            stream,
            run.clone(),
            senders,
            done_rx.clone(),
        )));
        if n < senders {
            sinks.push(sink);
        }
    }
    let mut stalled = Vec::with_capacity(args.stalled);
    for n in 0..args.stalled {
        let name = format!("stalled{n}");
        stalled.push(
            connect_with(
                &args.target,
                args.clients + n,
                &room,
                &name,
                1024,
                Some(4096),
            )
            .await?,
        );
    }
    let flooded = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::with_capacity(args.flooders);
    for n in 0..args.flooders {
        let ws = connect(
            &args.target,
            args.clients + args.stalled + n,
            &room,
            &format!("flooder{n}"),
            8 << 10,
        )
        .await?;
        let (mut sink, mut stream) = ws.split();
        let mut done = done_rx.clone();
        // Its own reads, thrown away (a flooder that did not read would be a slow client).
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = done.changed() => break,
                    frame = stream.next() => if frame.is_none() { break },
                }
            }
        });
        let (run, flooded) = (run.clone(), flooded.clone());
        flooders.push(tokio::spawn(async move {
            let text = tokio_tungstenite::tungstenite::Message::text(r#"{"message":"flood"}"#);
            while !run.stopping.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    if sink.feed(text.clone()).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
                flooded.fetch_add(64, Ordering::Relaxed);
            }
        }));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the join traffic (history, presence) drain before sending.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = args.target.server_pid.and_then(rss_kib);
    let tasks: Vec<_> = sinks
        .into_iter()
        .enumerate()
        .map(|(s, sink)| tokio::spawn(sender(sink, run.clone(), s, args.size, args.rate)))
        .collect();
    for permits in &run.permits {
        permits.add_permits(run.window);
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    run.measuring.store(true, Ordering::Relaxed);
    let measured_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    run.measuring.store(false, Ordering::Relaxed);
    let measured = measured_from.elapsed().as_secs_f64();
    run.stopping.store(true, Ordering::Relaxed);
    for permits in &run.permits {
        permits.add_permits(1); // wake senders waiting for a permit
    }
    let mut sinks = Vec::new();
    for task in tasks {
        sinks.extend(task.await);
    }
    // Give what is in flight time to arrive, then stop the readers.
    let drain_until = Instant::now() + Duration::from_secs(3);
    let expected: u64 = run
        .sent
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .sum::<u64>()
        * args.clients as u64;
    let mut tally = Tally {
        latency: Some(Histogram::new(3).unwrap()),
        ..Tally::default()
    };
    loop {
        let incomplete = run
            .slots
            .iter()
            .flatten()
            .any(|slot| slot.load(Ordering::Acquire) != 0);
        if !incomplete || Instant::now() > drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = done_tx.send(true);
    drop(sinks);
    for reader in readers {
        let t = reader.await.unwrap_or_default();
        tally.received += t.received;
        tally.counted += t.counted;
        tally.duplicates += t.duplicates;
        tally.reordered += t.reordered;
        if let (Some(all), Some(one)) = (tally.latency.as_mut(), t.latency.as_ref()) {
            let _ = all.add(one);
        }
    }
    let lost = expected.saturating_sub(tally.received);
    let h = tally.latency.unwrap();
    let report = serde_json::json!({
        "mode": "fanout",
        "clients": args.clients, "stalled": args.stalled, "flooders": args.flooders,
        "flooded": flooded.load(Ordering::Relaxed), "senders": senders, "window": args.window, "rate": args.rate, "size": args.size,
        "deliveries_per_s": (tally.counted as f64 / measured).round(),
        "sent": run.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum::<u64>(),
        "delivered": tally.received, "lost": lost, "duplicates": tally.duplicates, "out_of_order": tally.reordered,
        "latency_us": { "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
                        "p999": h.value_at_quantile(0.999), "max": h.max() },
        "connect_s": connect_secs,
        "server_kib_per_connection": rss_per_connection(rss_before, rss_connected, args.clients),
    });
    print_report(&report, args.target.json);
    Ok(())
}

fn rss_per_connection(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    Some(((after? as f64 - before? as f64) / n as f64 * 10.0).round() / 10.0)
}

fn print_report(report: &serde_json::Value, json: bool) {
    if json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(report).unwrap());
    }
}

async fn idle(args: IdleArgs) -> std::io::Result<()> {
    let target = Arc::new(args.target.clone());
    let rss_before = args.target.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let per_room = args.per_room.max(1);
    let connections: Vec<std::io::Result<Ws>> = futures_util::stream::iter(0..args.clients)
        .map(|n| {
            let target = target.clone();
            async move {
                connect(
                    &target,
                    n,
                    &format!("idle{}", n / per_room),
                    &format!("i{n}"),
                    1024,
                )
                .await
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let failed = connections.iter().filter(|c| c.is_err()).count();
    if let Some(Err(error)) = connections.iter().find(|c| c.is_err()) {
        eprintln!("first connect error: {error}");
    }
    // Keep reading what the server sends (history, presence) so nothing waits on us.
    let (done_tx, done_rx) = watch::channel(false);
    let mut drains = Vec::new();
    for ws in connections.into_iter().flatten() {
        let mut done = done_rx.clone();
        drains.push(tokio::spawn(async move {
            let mut ws = ws;
            loop {
                tokio::select! {
                    m = ws.next() => if m.is_none() { break },
                    _ = done.changed() => break,
                }
            }
        }));
    }
    let open = drains.len();
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = args.target.server_pid.and_then(rss_kib);
    let report = serde_json::json!({
        "mode": "idle", "clients": args.clients, "open": open, "failed": failed,
        "connects_per_s": (open as f64 / connect_secs).round(),
        "server_rss_kib_before": rss_before, "server_rss_kib_after": rss_after,
        "server_kib_per_connection": rss_per_connection(rss_before, rss_after, open.max(1)),
    });
    let _ = done_tx.send(true);
    for d in drains {
        let _ = d.await;
    }
    print_report(&report, args.target.json);
    Ok(())
}

async fn churn(args: ChurnArgs) -> std::io::Result<()> {
    let target = Arc::new(args.target.clone());
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            let rooms = args.rooms.max(1);
            let message = args.message;
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut latency = Histogram::<u64>::new(3).unwrap();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let t = Instant::now();
                    match connect(
                        &target,
                        n,
                        &format!("churn{}", n % rooms),
                        &format!("u{n}"),
                        1024,
                    )
                    .await
                    {
                        Ok(mut ws) => {
                            if message && !say_and_hear(&mut ws, &format!("churn-{n}")).await {
                                failed += 1;
                                continue;
                            }
                            ok += 1;
                            let _ = latency.record(t.elapsed().as_micros() as u64);
                            let _ = ws.close(None).await;
                        }
                        Err(_) => failed += 1,
                    }
                }
                (ok, failed, latency)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    let mut latency = Histogram::<u64>::new(3).unwrap();
    for w in workers {
        let (o, f, h) = w.await.unwrap();
        ok += o;
        failed += f;
        let _ = latency.add(&h);
    }
    let secs = started.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "mode": "churn", "concurrency": args.concurrency, "message": args.message, "handshakes": ok, "failed": failed,
        "connects_per_s": (ok as f64 / secs).round(),
        "handshake_us": { "p50": latency.value_at_quantile(0.5), "p99": latency.value_at_quantile(0.99) },
    });
    print_report(&report, args.target.json);
    Ok(())
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.mode {
            Mode::Fanout(args) => fanout(args).await,
            Mode::Idle(args) => idle(args).await,
            Mode::Churn(args) => churn(args).await,
            Mode::Storm(args) => storm(args).await,
        }
    })
}
