//! The bundled chat: rooms, user names, who is online, history, and announcements over HTTP.
//!
//! ```text
//! cargo run --release --example chat            # http://127.0.0.1:8000/
//! cargo run --release --example chat -- --addr 127.0.0.1:9000 --db /tmp/chat.sqlite3
//! curl -X POST -H 'content-type: application/json' -d '{"message":"maintenance at noon"}' \
//!      http://127.0.0.1:8000/rooms/lobby/announce
//! ```
//!
//! The WebSocket protocol extends the Channels tutorial's: connect to `/ws/chat/{room}/?name=ada`
//! (or with a `name` cookie), send `{"message": "..."}`; every member of the room, the sender too,
//! receives `{"type": "message", "id": 7, "message": "...", "user": "ada", "time": <ms>}`. On
//! joining, the last 50 messages arrive the same way with `"history": true`, then
//! `{"type": "presence", "online": [{"channel": "...", "name": "ada"}, ...]}`; after that, who
//! comes and goes arrives as `{"type": "presence.join" | "presence.leave", "channel": "...",
//! "meta": {"name": "bob"}}`. Malformed input gets `{"error": "..."}` and the connection carries on.
//!
//! The room's events go to browsers as they are (`FORWARDED_EVENTS`): a message is encoded once,
//! whatever the size of the room.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::Extension;
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard::application::WebSocketApplication;
use switchboard::consumer::{Context, InvalidMessage, JsonWebSocketConsumer};
use switchboard::layer::{
    user_group, InMemoryChannelLayer, InMemoryConfig, LayerHandle, RedisChannelLayer, RedisConfig,
};
use switchboard::middleware::{
    authenticator_fn, AllowedHostsOriginValidator, AuthMiddleware, TokenSource,
};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::StatsHandle;

/// Longest message accepted, in characters.
const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest user name kept, in characters.
const MAX_USER_CHARS: usize = 32;
/// Longest room name accepted (the group name adds a 5-character prefix; groups stay under 100).
const MAX_ROOM_CHARS: usize = 64;
/// Messages sent to a client when it joins a room.
pub(crate) const HISTORY_ON_JOIN: usize = 50;

#[derive(Parser, Debug)]
#[command(about = "switchboard's chat example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
    /// SQLite file that keeps each room's history (made if missing).
    #[arg(long, env = "SWITCHBOARD_CHAT_DB", default_value_os_t = std::env::temp_dir().join("switchboard-chat.sqlite3"))]
    db: PathBuf,
    /// Hosts whose pages may open WebSockets here (Origin check), besides localhost and the
    /// address listened on. Repeat for several.
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long, env = "SWITCHBOARD_THREADS")]
    threads: Option<usize>,
    /// Messages each connection's channel holds before a room's messages to it are dropped (and
    /// counted). A room's senders can have this many messages on their way to one reader.
    #[arg(long, default_value_t = 1000)]
    capacity: usize,
    /// Share rooms with other chat processes through this Redis server
    /// (`redis://127.0.0.1:6379`): the channel layer, the message ids and each room's recent
    /// history live there. Without it, everything stays in this process.
    #[arg(long, env = "SWITCHBOARD_REDIS")]
    redis: Option<String>,
    /// With `--redis`: seconds after which the users of a process that stopped beating (it
    /// crashed) are shown as gone by the others.
    #[arg(long, default_value_t = 30.0)]
    process_ttl: f64,
    /// Serve `https://` and `wss://` with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Who a connection is, set by the auth middleware from `?name=` or the `name` cookie.
#[derive(Clone, Debug)]
pub(crate) struct ChatUser {
    name: String,
}

/// A stored message, as the browser receives it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct StoredMessage {
    id: i64,
    message: String,
    user: String,
    time: u64,
}

/// Each room's messages: the last [`HISTORY_ON_JOIN`] of every room in memory (read from SQLite
/// the first time the room is asked for), and every message written to SQLite behind the
/// conversation by one writer thread that commits in batches. Joining and talking never wait for
/// the disk; a crash may lose the last messages not yet written, [`History::close`] writes them.
///
/// Shared by several processes ([`History::share_through`]), the ids come from one Redis counter
/// and each room's recent messages from a Redis list, so every process sees every process's
/// messages; SQLite still keeps each process's own messages.
#[derive(Clone)]
pub(crate) struct History {
    inner: Arc<HistoryInner>,
}

struct HistoryInner {
    db: Arc<Mutex<rusqlite::Connection>>,
    rooms: Mutex<HashMap<String, VecDeque<StoredMessage>>>,
    next_id: AtomicI64,
    writes: Mutex<Option<tokio::sync::mpsc::Sender<(String, StoredMessage)>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Option<redis::aio::ConnectionManager>,
}

/// Redis key of the message-id counter shared by every chat process.
const REDIS_NEXT_ID: &str = "chat:next_id";

/// `add` in Redis: the next id, and the message (`ARGV[1]`, a JSON object without the id, given
/// the id as its first field) pushed onto the room's list, trimmed to the last `ARGV[2]`.
static ADD_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local id = redis.call('INCR', KEYS[1]) \
         redis.call('RPUSH', KEYS[2], '{\"id\":' .. id .. ',' .. string.sub(ARGV[1], 2)) \
         redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1) \
         return id",
    )
});

fn redis_room_key(room: &str) -> String {
    format!("chat:history:{room}")
}

/// Messages waiting for the writer before `add` waits for it.
const WRITE_QUEUE: usize = 4096;

impl History {
    pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<Self> {
        let open = || -> rusqlite::Result<rusqlite::Connection> {
            let db = rusqlite::Connection::open(path)?;
            // WAL with synchronous=NORMAL: a commit does not wait for the disk (a power cut may
            // lose the last messages, never corrupt the file), as SQLite recommends with WAL.
            db.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS messages (
                     id INTEGER PRIMARY KEY, room TEXT NOT NULL, user TEXT NOT NULL,
                     message TEXT NOT NULL, time INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS messages_room ON messages (room, id);",
            )?;
            Ok(db)
        };
        let reader = open()?;
        let next_id: i64 =
            reader.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM messages", [], |row| {
                row.get(0)
            })?;
        // ":memory:" is a new database per connection: there, one connection serves both sides.
        let shared = Arc::new(Mutex::new(reader));
        let writer_db = if path == std::path::Path::new(":memory:") {
            WriterDb::Shared(shared.clone())
        } else {
            WriterDb::Own(open()?)
        };
        let (writes, queue) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("chat-history".into())
            .spawn(move || write_behind(&writer_db, queue))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            inner: Arc::new(HistoryInner {
                db: shared,
                rooms: Mutex::new(HashMap::new()),
                next_id: AtomicI64::new(next_id),
                writes: Mutex::new(Some(writes)),
                writer: Mutex::new(Some(writer)),
                shared: None,
            }),
        })
    }

    /// The same history shared with every chat process using the Redis server at `url`; the id
    /// counter starts above every id in this process's SQLite file.
    pub(crate) async fn share_through(
        self,
        url: &str,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut redis = redis::Client::open(url)?.get_connection_manager().await?;
        let first_free = self.inner.next_id.load(Ordering::Relaxed);
        redis::Script::new(
            "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then \
             redis.call('SET', KEYS[1], ARGV[1]) end",
        )
        .key(REDIS_NEXT_ID)
        .arg(first_free - 1)
        .invoke_async::<()>(&mut redis)
        .await?;
        let inner = Arc::into_inner(self.inner).ok_or("history already in use")?;
        Ok(Self {
            inner: Arc::new(HistoryInner {
                shared: Some(redis),
                ..inner
            }),
        })
    }

    /// Makes sure `room`'s recent messages are in memory.
    async fn load(&self, room: &str) -> switchboard::Result<()> {
        if self.inner.rooms.lock().unwrap().contains_key(room) {
            return Ok(());
        }
        let db = self.inner.db.clone();
        let key = room.to_owned();
        let loaded = tokio::task::spawn_blocking(move || -> rusqlite::Result<VecDeque<StoredMessage>> {
            let db = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut query = db.prepare_cached(
                "SELECT id, message, user, time FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = query.query_map(rusqlite::params![key, HISTORY_ON_JOIN as i64], |row| {
                Ok(StoredMessage {
                    id: row.get(0)?,
                    message: row.get(1)?,
                    user: row.get(2)?,
                    time: row.get::<_, i64>(3)? as u64,
                })
            })?;
            let mut messages = rows.collect::<rusqlite::Result<VecDeque<_>>>()?;
            messages.make_contiguous().reverse();
            Ok(messages)
        })
        .await??;
        // A load that lost a race keeps what the winner (and any message since) put there.
        self.inner
            .rooms
            .lock()
            .unwrap()
            .entry(room.to_owned())
            .or_insert(loaded);
        Ok(())
    }

    /// Stores a message and returns it with its id.
    pub(crate) async fn add(
        &self,
        room: &str,
        user: &str,
        message: &str,
    ) -> switchboard::Result<StoredMessage> {
        if let Some(redis) = &self.inner.shared {
            // One round trip: the id from the shared counter, the message onto the room's list
            // (its JSON completed with the id in Redis), the list trimmed to the last 50.
            let mut stored = StoredMessage {
                id: 0,
                message: message.to_owned(),
                user: user.to_owned(),
                time: now_ms(),
            };
            // `{"message":..,"user":..,"time":..}`, which the script completes with the id.
            let mut fields = serde_json::to_value(&stored)?;
            if let Some(fields) = fields.as_object_mut() {
                fields.remove("id");
            }
            stored.id = ADD_SCRIPT
                .key(REDIS_NEXT_ID)
                .key(redis_room_key(room))
                .arg(fields.to_string())
                .arg(HISTORY_ON_JOIN)
                .invoke_async(&mut redis.clone())
                .await?;
            self.write_behind(room, &stored).await?;
            return Ok(stored);
        }
        self.load(room).await?;
        let stored = StoredMessage {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            message: message.to_owned(),
            user: user.to_owned(),
            time: now_ms(),
        };
        {
            let mut rooms = self.inner.rooms.lock().unwrap();
            let recent = rooms.entry(room.to_owned()).or_default();
            recent.push_back(stored.clone());
            while recent.len() > HISTORY_ON_JOIN {
                recent.pop_front();
            }
        }
        self.write_behind(room, &stored).await?;
        Ok(stored)
    }

    /// Queues `stored` for the SQLite writer.
    async fn write_behind(&self, room: &str, stored: &StoredMessage) -> switchboard::Result<()> {
        let writes = self.inner.writes.lock().unwrap().clone();
        if let Some(writes) = writes {
            // Waits only when the writer is 4096 messages behind.
            writes.send((room.to_owned(), stored.clone())).await?;
        }
        Ok(())
    }

    /// The last `limit` messages of `room`, oldest first.
    pub(crate) async fn recent(
        &self,
        room: &str,
        limit: usize,
    ) -> switchboard::Result<Vec<StoredMessage>> {
        if let Some(redis) = &self.inner.shared {
            let mut redis = redis.clone();
            let stored: Vec<String> = redis::cmd("LRANGE")
                .arg(redis_room_key(room))
                .arg(-(limit as isize))
                .arg(-1)
                .query_async(&mut redis)
                .await?;
            if !stored.is_empty() {
                return Ok(stored
                    .iter()
                    .filter_map(|json| serde_json::from_str(json).ok())
                    .collect());
            }
        }
        self.load(room).await?;
        let rooms = self.inner.rooms.lock().unwrap();
        let recent = rooms
            .get(room)
            .map(|r| r.iter().rev().take(limit).rev().cloned().collect());
        Ok(recent.unwrap_or_default())
    }

    /// Writes what is still queued and stops the writer.
    pub(crate) async fn close(&self) {
        self.inner.writes.lock().unwrap().take();
        let writer = self.inner.writer.lock().unwrap().take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

enum WriterDb {
    Own(rusqlite::Connection),
    Shared(Arc<Mutex<rusqlite::Connection>>),
}

/// The writer thread: takes what is queued, commits it in one transaction, repeats.
fn write_behind(db: &WriterDb, mut queue: tokio::sync::mpsc::Receiver<(String, StoredMessage)>) {
    let mut batch = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < 512 {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = match db {
            WriterDb::Own(db) => write_batch(db, &batch),
            WriterDb::Shared(db) => {
                write_batch(&db.lock().unwrap_or_else(|p| p.into_inner()), &batch)
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, lost = batch.len(), "could not write chat history");
        }
        batch.clear();
    }
}

fn write_batch(
    db: &rusqlite::Connection,
    batch: &[(String, StoredMessage)],
) -> rusqlite::Result<()> {
    db.execute_batch("BEGIN")?;
    {
        let mut insert = db.prepare_cached(
            "INSERT INTO messages (id, room, user, message, time) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (room, m) in batch {
            insert.execute(rusqlite::params![
                m.id,
                room,
                m.user,
                m.message,
                m.time as i64
            ])?;
        }
    }
    db.execute_batch("COMMIT")
}

/// What the browser sends: a message for the room, or, with `to`, for one user only.
#[derive(Deserialize)]
pub(crate) struct ChatIn {
    message: String,
    #[serde(default)]
    to: Option<String>,
}

/// A private message, to every connection of `to` and of the sender, in any room or process:
/// `{"type": "message", "message": .., "user": .., "time": .., "private": true, "to": ..}`. Not
/// kept in the room's history.
#[derive(Serialize)]
#[serde(tag = "type", rename = "message")]
struct PrivateMessage<'a> {
    message: &'a str,
    user: &'a str,
    time: u64,
    private: bool,
    to: &'a str,
}

/// What a user is listed in a room's presence with.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Listed {
    name: String,
}

/// What travels through the channel layer to every member of the room, and, unchanged, to their
/// browsers: `{"type": "message", "id": .., "message": .., "user": .., "time": ..}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "message")]
pub(crate) struct ChatMessage {
    #[serde(flatten)]
    stored: StoredMessage,
}

/// A history message, as the browser receives it.
#[derive(Serialize)]
struct HistoryOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    stored: &'a StoredMessage,
    history: bool,
}

/// One entry of the online list sent on joining.
#[derive(Serialize)]
struct Online {
    channel: String,
    name: String,
}

pub(crate) struct ChatConsumer {
    history: History,
    room: String,
    group: String,
}

impl ChatConsumer {
    pub(crate) fn new(history: History) -> Self {
        Self {
            history,
            room: String::new(),
            group: String::new(),
        }
    }
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

fn clean_name(name: &str) -> Option<String> {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

fn user_of(ctx: &Context) -> String {
    ctx.scope()
        .extensions
        .get::<ChatUser>()
        .map_or("anonymous", |u| &u.name)
        .to_owned()
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for ChatConsumer {
    type Incoming = ChatIn;
    /// Every event this consumer gets is forwarded as it is (below); none is parsed.
    type Event = serde::de::IgnoredAny;
    const FORWARDED_EVENTS: &'static [&'static str] =
        &["message", "presence.join", "presence.leave"];

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let room = ctx
            .scope()
            .url_route
            .get("room")
            .unwrap_or("lobby")
            .to_owned();
        if !valid_room(&room) {
            // Before accept, close refuses the handshake with HTTP 403.
            ctx.close(4000, "bad room name").await?;
            return Ok(());
        }
        self.group = format!("chat_{room}");
        self.room = room;
        let name = user_of(ctx);
        if ctx.scope().extensions.get::<ChatUser>().is_some() {
            // Every tab of this user, on any process, is in the user's group: private messages.
            ctx.group_add(&user_group(&name)).await?;
        }
        ctx.presence_add(&self.group, &Listed { name }).await?; // joins the group too
        let online: Vec<Online> = ctx
            .presence_list(&self.group)
            .await?
            .into_iter()
            .filter_map(|p| {
                let listed: Listed = serde_json::from_value(p.meta).ok()?;
                Some(Online {
                    channel: p.channel,
                    name: listed.name,
                })
            })
            .collect();
        ctx.accept().await?;
        // The history and the online list go out together, in one write.
        for stored in self.history.recent(&self.room, HISTORY_ON_JOIN).await? {
            let out = HistoryOut {
                kind: "message",
                stored: &stored,
                history: true,
            };
            ctx.feed_json(&out).await?;
        }
        ctx.feed_json(&serde_json::json!({ "type": "presence", "online": online }))
            .await?;
        ctx.flush().await?;
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
        let user = user_of(ctx);
        if let Some(to) = msg.to.as_deref().map(str::trim).filter(|to| !to.is_empty()) {
            return private_message(ctx, &user, to, message).await;
        }
        let stored = self.history.add(&self.room, &user, message).await?;
        ctx.group_send(&self.group, &ChatMessage { stored }).await?;
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

/// Sends `message` from `user` to every connection of `to` and of `user` (all their tabs), or
/// answers with an error when `to` has none open.
async fn private_message(
    ctx: &mut Context,
    user: &str,
    to: &str,
    message: &str,
) -> switchboard::Result<()> {
    let event = PrivateMessage {
        message,
        user,
        time: now_ms(),
        private: true,
        to,
    };
    let signed_in = ctx.scope().extensions.get::<ChatUser>().is_some();
    let sent = ctx.group_send(&user_group(to), &event).await?;
    if !sent.reached_anyone() {
        return send_error(ctx, &format!("{to} is not online")).await;
    }
    if !signed_in {
        // Anonymous senders have no group of their own: this connection alone gets its copy.
        ctx.send_json(&event).await?;
    } else if to != user {
        ctx.group_send(&user_group(user), &event).await?;
    }
    Ok(())
}

async fn send_error(ctx: &mut Context, error: &str) -> switchboard::Result<()> {
    ctx.send_json(&serde_json::json!({ "error": error }))
        .await?;
    Ok(())
}

/// The chat's WebSocket side: origin check → user name → `/ws/chat/{room}/`.
pub(crate) fn websocket_app(
    history: History,
    allowed_hosts: &[String],
) -> impl WebSocketApplication {
    let names = authenticator_fn(|name: String| async move {
        Ok(clean_name(&name).map(|name| ChatUser { name }))
    });
    AllowedHostsOriginValidator::new(
        AuthMiddleware::new(
            UrlRouter::new().nest(
                "/ws",
                UrlRouter::new().route("/chat/{room}/", move || ChatConsumer::new(history.clone())),
            ),
            names,
        )
        .token_sources([TokenSource::query("name"), TokenSource::cookie("name")]),
        allowed_hosts,
    )
    // Pages this server (or the proxy in front of it, if trusted) served may connect.
    .allow_same_origin()
}

#[derive(Clone)]
struct AppState {
    history: History,
}

/// `GET /metrics`: the server's counts for Prometheus (the server puts its `StatsHandle` in every
/// request's extensions).
async fn metrics(Extension(stats): Extension<StatsHandle>) -> axum::response::Response {
    use axum::response::IntoResponse;
    switchboard::metrics::response(&stats).into_response()
}

#[derive(Deserialize)]
struct Announcement {
    message: String,
}

/// `POST /rooms/{room}/announce {"message": "..."}`: stored, and sent to everyone in the room.
async fn announce(
    State(state): State<AppState>,
    Extension(layer): Extension<LayerHandle>,
    Path(room): Path<String>,
    axum::Json(body): axum::Json<Announcement>,
) -> Result<(StatusCode, axum::Json<StoredMessage>), (StatusCode, String)> {
    let message = body.message.trim();
    if !valid_room(&room) || message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err((
            StatusCode::BAD_REQUEST,
            "a valid room and a message of 1 to 2000 characters\n".into(),
        ));
    }
    let stored = state
        .history
        .add(&room, "announcement", message)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    let event = ChatMessage {
        stored: stored.clone(),
    };
    layer
        .group_send(&format!("chat_{room}"), &event)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    Ok((StatusCode::ACCEPTED, axum::Json(stored)))
}

/// The HTTP side: an ordinary axum router.
fn pages(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route(
            "/chat/{room}/",
            get(|| async { Html(include_str!("room.html")) }),
        )
        .route("/rooms/{room}/announce", post(announce))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The whole application: axum for pages and announcements, the chat consumer for
/// `/ws/chat/{room}/`. Handlers find the server's layer and counts in their requests.
pub(crate) fn application(history: History, allowed_hosts: &[String]) -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(pages(AppState {
            history: history.clone(),
        }))
        .websocket(websocket_app(history, allowed_hosts))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // No colour codes where stderr is a file or a pipe (logs collected by systemd, CI).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Limits and timeouts from SWITCHBOARD_* variables (see `ServerConfig::from_env`).
    let config = switchboard::ServerConfig::from_env()?;
    let mut history = History::open(&args.db)?;
    let layer: LayerHandle = match &args.redis {
        Some(url) => {
            history = history
                .share_through(url)
                .await
                .map_err(|e| e as Box<dyn std::error::Error>)?;
            let config = RedisConfig::new(url.as_str())
                .capacity(args.capacity.max(1))
                .process_ttl(Duration::from_secs_f64(args.process_ttl.max(0.1)));
            LayerHandle::new(RedisChannelLayer::connect(config).await?)
        }
        None => LayerHandle::new(InMemoryChannelLayer::with_config(
            InMemoryConfig::default().capacity(args.capacity.max(1)),
        )),
    };
    let mut hosts = args.allowed_hosts;
    hosts.extend([
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
        args.addr.ip().to_string(),
    ]);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "chat: open {}://{}/ in a browser (history in {}{})",
        if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        },
        listener.local_addr()?,
        args.db.display(),
        match &args.redis {
            Some(url) => format!(", rooms shared through {url}"),
            None => String::new(),
        }
    );
    let mut server = switchboard::serve(listener, application(history.clone(), &hosts))
        .channel_layer(layer)
        .config(config);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        server = server.tls(switchboard::TlsConfig::from_pem_files(cert, key)?);
    }
    server
        .with_graceful_shutdown(switchboard::shutdown_signal())
        .await?;
    history.close().await;
    Ok(())
}
