//! The chat's history: each room's recent messages in memory (or in Redis, shared by several
//! processes) and every message in SQLite, written behind the conversation.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use switchboard::websocket::Utf8Bytes;

use super::consumer::now_ms;
use super::HISTORY_ON_JOIN;

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
/// Shared by several processes ([`History::share_in`]), the ids come from one Redis counter
/// and each room's recent messages from a Redis list, so every process sees every process's
/// messages; SQLite still keeps each process's own messages.
#[derive(Clone)]
pub(crate) struct History {
    inner: Arc<HistoryInner>,
}

struct HistoryInner {
    db: Arc<Mutex<rusqlite::Connection>>,
    /// Each room's last messages, as the history frames a joiner receives (encoded once each).
    rooms: Mutex<HashMap<String, VecDeque<Utf8Bytes>>>,
    next_id: AtomicI64,
    writes: Mutex<Option<tokio::sync::mpsc::Sender<Write>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Option<SharedStore>,
    /// Who holds each user name: the SHA-256 (hex) of the key of the page that used it first.
    /// Every name in SQLite, read when the history opens (in Redis when shared).
    names: Mutex<HashMap<String, String>>,
}

/// Where the shared history lives: one Redis server, or a Redis Cluster.
#[derive(Clone)]
pub(crate) enum SharedStore {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl SharedStore {
    /// Connects to one server (`urls` of one) or to the cluster `urls` seed.
    pub(crate) async fn connect(urls: &[String], cluster: bool) -> redis::RedisResult<Self> {
        Ok(if cluster {
            Self::Cluster(
                redis::cluster::ClusterClient::new(urls.to_vec())?
                    .get_async_connection()
                    .await?,
            )
        } else {
            Self::Single(
                redis::Client::open(urls[0].as_str())?
                    .get_connection_manager()
                    .await?,
            )
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Self::Single(connection) => cmd.query_async(&mut connection.clone()).await,
            Self::Cluster(connection) => cmd.query_async(&mut connection.clone()).await,
        }
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self {
            Self::Single(connection) => invocation.invoke_async(&mut connection.clone()).await,
            Self::Cluster(connection) => invocation.invoke_async(&mut connection.clone()).await,
        }
    }
}

/// A stored message as a joiner receives it: `{"type": "message", .., "history": true}`.
#[derive(Serialize)]
struct HistoryOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    stored: &'a StoredMessage,
    history: bool,
}

fn history_frame(stored: &StoredMessage) -> Utf8Bytes {
    let out = HistoryOut {
        kind: "message",
        stored,
        history: true,
    };
    serde_json::to_string(&out).unwrap_or_default().into()
}

/// Redis key of the message-id counter shared by every chat process.
const REDIS_NEXT_ID: &str = "chat:next_id";

/// `add` in Redis: the message (`ARGV[2]`, a JSON object without the id, given id `ARGV[1]` as
/// its first field) pushed onto the room's list `KEYS[1]`, trimmed to the last `ARGV[3]`. The id
/// comes first from the shared counter (`INCR`), which on a cluster lives in another slot.
static ADD_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "redis.call('RPUSH', KEYS[1], '{\"id\":' .. ARGV[1] .. ',' .. string.sub(ARGV[2], 2)) \
         redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)",
    )
});

/// `add` on one server: the next id of counter `KEYS[1]`, and the message (`ARGV[1]`, as in
/// [`ADD_SCRIPT`]) pushed onto the room's list `KEYS[2]`, trimmed to the last `ARGV[2]`; returns
/// the id.
static ADD_WITH_ID_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
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

/// Names one process without Redis holds at most (every one stays in memory).
pub(crate) const MAX_HELD_NAMES: usize = 100_000;

/// What [`History::claim_name`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameClaim {
    /// The key holds the name (now, or since before).
    Held,
    /// Another key holds it.
    Taken,
    /// The name is free, but this process holds [`MAX_HELD_NAMES`] already.
    NoRoom,
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
                 CREATE INDEX IF NOT EXISTS messages_room ON messages (room, id);
                 CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, key_hash TEXT NOT NULL);",
            )?;
            Ok(db)
        };
        let reader = open()?;
        let next_id: i64 =
            reader.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM messages", [], |row| {
                row.get(0)
            })?;
        let names = reader
            .prepare("SELECT name, key_hash FROM names")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<HashMap<String, String>>>()?;
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
                names: Mutex::new(names),
            }),
        })
    }

    /// The same history shared with every chat process using `store` (one Redis server or a
    /// cluster); the id counter starts above every id in this process's SQLite file.
    pub(crate) async fn share_in(
        self,
        store: SharedStore,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let redis = store;
        let first_free = self.inner.next_id.load(Ordering::Relaxed);
        let raise = redis::Script::new(
            "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then \
             redis.call('SET', KEYS[1], ARGV[1]) end",
        );
        let mut invocation = raise.key(REDIS_NEXT_ID);
        invocation.arg(first_free - 1);
        redis.invoke::<()>(&invocation).await?;
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
        let loaded = tokio::task::spawn_blocking(move || -> rusqlite::Result<VecDeque<Utf8Bytes>> {
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
            let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            messages.reverse();
            Ok(messages.iter().map(history_frame).collect())
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

    /// Whether the page with `key` may use `name`: it is the first to use it (and now holds it),
    /// or it already holds it. Names are held for good: by this history's SQLite file, or by
    /// Redis when shared. Without Redis every held name is also in memory (about 100 bytes
    /// each), at most [`MAX_HELD_NAMES`]: past that, new names are refused.
    pub(crate) async fn claim_name(&self, name: &str, key: &str) -> switchboard::Result<NameClaim> {
        use sha2::Digest;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key_hash = String::with_capacity(64);
        for byte in sha2::Sha256::digest(key.as_bytes()) {
            key_hash.push(char::from(HEX[usize::from(byte >> 4)]));
            key_hash.push(char::from(HEX[usize::from(byte & 15)]));
        }
        if let Some(redis) = &self.inner.shared {
            // One round trip: set if free, and say who held it before.
            let held: Option<String> = redis
                .query(
                    redis::cmd("SET")
                        .arg(format!("chat:name:{{{name}}}"))
                        .arg(&key_hash)
                        .arg("NX")
                        .arg("GET"),
                )
                .await?;
            return Ok(if held.is_none_or(|held| held == key_hash) {
                NameClaim::Held
            } else {
                NameClaim::Taken
            });
        }
        {
            let mut names = self.inner.names.lock().unwrap();
            if let Some(held) = names.get(name) {
                return Ok(if *held == key_hash {
                    NameClaim::Held
                } else {
                    NameClaim::Taken
                });
            }
            if names.len() >= MAX_HELD_NAMES {
                return Ok(NameClaim::NoRoom);
            }
            names.insert(name.to_owned(), key_hash.clone());
        }
        // Written behind, with the messages: a claim never waits for the disk.
        let writes = self.inner.writes.lock().unwrap().clone();
        if let Some(writes) = writes {
            writes.send(Write::Name(name.to_owned(), key_hash)).await?;
        }
        Ok(NameClaim::Held)
    }

    /// Stores a message and returns it with its id.
    pub(crate) async fn add(
        &self,
        room: &str,
        user: &str,
        message: &str,
    ) -> switchboard::Result<StoredMessage> {
        if let Some(redis) = &self.inner.shared {
            // The id from the shared counter, the message onto the room's list (its JSON
            // completed with the id in Redis), the list trimmed to the last 50.
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
            if matches!(redis, SharedStore::Single(_)) {
                // One round trip: the id and the push in one script (both keys on the server).
                let mut add = ADD_WITH_ID_SCRIPT.key(REDIS_NEXT_ID);
                add.key(redis_room_key(room))
                    .arg(fields.to_string())
                    .arg(HISTORY_ON_JOIN);
                stored.id = redis.invoke(&add).await?;
            } else {
                // On a cluster the counter and the room's list are in different slots.
                stored.id = redis.query(redis::cmd("INCR").arg(REDIS_NEXT_ID)).await?;
                let mut add = ADD_SCRIPT.key(redis_room_key(room));
                add.arg(stored.id)
                    .arg(fields.to_string())
                    .arg(HISTORY_ON_JOIN);
                redis.invoke::<()>(&add).await?;
            }
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
            recent.push_back(history_frame(&stored));
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
            writes
                .send(Write::Message(room.to_owned(), stored.clone()))
                .await?;
        }
        Ok(())
    }

    /// The last `limit` messages of `room`, oldest first, as history frames
    /// (`{"type": "message", .., "history": true}`): encoded once per message, shared by every
    /// joiner (in memory), or completed from Redis' JSON without parsing it (shared).
    pub(crate) async fn recent_frames(
        &self,
        room: &str,
        limit: usize,
    ) -> switchboard::Result<Vec<Utf8Bytes>> {
        if let Some(redis) = &self.inner.shared {
            let stored: Vec<String> = redis
                .query(
                    redis::cmd("LRANGE")
                        .arg(redis_room_key(room))
                        .arg(-(limit as isize))
                        .arg(-1),
                )
                .await?;
            if !stored.is_empty() {
                return Ok(stored
                    .iter()
                    .filter_map(|json| {
                        // `{"id":..,..}` → `{"type":"message","id":..,..,"history":true}`
                        let fields = json.trim().strip_prefix('{')?.strip_suffix('}')?;
                        Some(Utf8Bytes::from(format!(
                            "{{\"type\":\"message\",{fields},\"history\":true}}"
                        )))
                    })
                    .collect());
            }
        }
        self.load(room).await?;
        let rooms = self.inner.rooms.lock().unwrap();
        let recent = rooms.get(room).map(|r| {
            r.iter()
                .skip(r.len().saturating_sub(limit))
                .cloned()
                .collect()
        });
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

/// How long the writer gathers messages after the first of a batch: one wake-up and one commit
/// per period at most, however busy the rooms are (a message reaches the disk within this, or
/// within [`History::close`]).
const WRITE_PERIOD: std::time::Duration = std::time::Duration::from_millis(20);

/// The writer thread: takes what is queued, commits it in one transaction, repeats.
fn write_behind(db: &WriterDb, mut queue: tokio::sync::mpsc::Receiver<Write>) {
    let mut batch = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        // Not a wait for anything: the messages of the next few milliseconds join this batch,
        // so that a busy chat wakes this thread (and commits) ~50 times a second, not per message.
        // This is the writer's own thread, never the runtime's.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(WRITE_PERIOD);
        while batch.len() < WRITE_QUEUE {
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

/// What the writer thread writes: a message of a room, or a name newly held by a key's hash.
enum Write {
    Message(String, StoredMessage),
    Name(String, String),
}

fn write_batch(db: &rusqlite::Connection, batch: &[Write]) -> rusqlite::Result<()> {
    db.execute_batch("BEGIN")?;
    {
        let mut insert = db.prepare_cached(
            "INSERT INTO messages (id, room, user, message, time) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut hold =
            db.prepare_cached("INSERT OR IGNORE INTO names (name, key_hash) VALUES (?1, ?2)")?;
        for write in batch {
            match write {
                Write::Message(room, m) => {
                    insert.execute(rusqlite::params![
                        m.id,
                        room,
                        m.user,
                        m.message,
                        m.time as i64
                    ])?;
                }
                Write::Name(name, key_hash) => {
                    hold.execute(rusqlite::params![name, key_hash])?;
                }
            }
        }
    }
    db.execute_batch("COMMIT")
}
