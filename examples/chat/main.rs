//! The bundled chat: rooms, user names, who is online, history, and announcements over HTTP.
//!
//! ```text
//! cargo run --release --example chat            # http://127.0.0.1:8000/
//! cargo run --release --example chat -- --addr 127.0.0.1:9000 --db /tmp/chat.sqlite3
//! cargo run --release --example chat -- --redis-cluster redis://127.0.0.1:7000,redis://127.0.0.1:7001
//! curl -X POST -H 'content-type: application/json' -d '{"message":"maintenance at noon"}' \
//!      http://127.0.0.1:8000/rooms/lobby/announce
//! ```
//!
//! The WebSocket protocol extends the Channels tutorial's: connect to `/ws/chat/{room}/?name=ada`
//! (or with a `name` cookie) with a `key` cookie (or `&key=`: a secret of 16 characters or more;
//! the page makes 32 random hex digits once) — the first key to use a name holds it, another key
//! gets `{"error": ".. someone else's .."}` and close 4009, no key is `anonymous` — and send
//! `{"message": "..."}`; every member of the room, the sender too,
//! receives `{"type": "message", "id": 7, "message": "...", "user": "ada", "time": <ms>}`. On
//! joining, the last 50 messages arrive the same way with `"history": true`, then
//! `{"type": "presence", "online": [{"channel": "...", "name": "ada"}, ...]}`; after that, who
//! comes and goes arrives at most every 100 ms as `{"type": "presence.diff", "joins":
//! [{"channel": "...", "meta": {"name": "bob"}}, ...], "leaves": [...]}` (Phoenix's
//! `presence_diff`; apply the leaves, then the joins). Malformed input gets `{"error": "..."}` and the connection carries on.
//!
//! Room messages carry `"position": {"epoch": "...", "offset": 7}`, their place in the room's
//! stream. A page that comes back (a network blip, a restarted process with `--redis`) connects
//! with `?since=<epoch>:<offset>` of the last one it saw and gets exactly the messages it missed
//! instead of the history; before the presence list comes `{"type": "recovery", "asked": true,
//! "recovered": true, "missed": 10, "position": "<epoch>:<offset>"}` (`recovered: false`: the
//! stream no longer held them all, and the history came instead).
//!
//! The room's events go to browsers as they are (`FORWARDED_EVENTS`): a message is encoded once,
//! whatever the size of the room.

mod consumer;
mod history;
mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use switchboard::layer::{
    InMemoryChannelLayer, InMemoryConfig, LayerHandle, RedisChannelLayer, RedisConfig,
};
use switchboard::{InboundRateLimit, Rate, RateLimitPolicy};

#[allow(unused_imports)] // for the tests that include this file
pub(crate) use consumer::{websocket_app, ChatConsumer, NAME_TAKEN};
pub(crate) use history::{History, SharedStore};
pub(crate) use pages::application;

/// Messages sent to a client when it joins a room.
pub(crate) const HISTORY_ON_JOIN: usize = 50;
/// Each room's last messages kept in its stream for pages that come back (`?since=`), and for how
/// long: a page away for longer, or for more, gets the recent history instead.
pub(crate) const RECOVERABLE_MESSAGES: usize = 500;
pub(crate) const RECOVERABLE_FOR: Duration = Duration::from_secs(15 * 60);

/// A room hears who came and went as one `presence.diff` per this window: a crowd arriving
/// at once costs each member a few frames, not one per arrival.
pub(crate) const PRESENCE_WINDOW: Duration = Duration::from_millis(100);

/// The in-memory layer as the chat configures it: `capacity` per connection, a stream per room
/// for recovery, presence diffs.
pub(crate) fn memory_layer_config(capacity: usize) -> InMemoryConfig {
    InMemoryConfig::default()
        .capacity(capacity.max(1))
        .group_history("chat_*", RECOVERABLE_MESSAGES, RECOVERABLE_FOR)
        .presence_window(PRESENCE_WINDOW)
}

/// The Redis layer as the chat configures it (see [`memory_layer_config`]), on one server
/// (`RedisConfig::new`) or a cluster (`RedisConfig::cluster`).
pub(crate) fn redis_layer_config(base: RedisConfig, capacity: usize) -> RedisConfig {
    base.capacity(capacity.max(1))
        .group_history("chat_*", RECOVERABLE_MESSAGES, RECOVERABLE_FOR)
        .presence_window(PRESENCE_WINDOW)
}

#[derive(Parser, Debug)]
#[command(about = "switchboard's chat example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
    /// SQLite file that keeps each room's history (made if missing).
    #[arg(long, env = "SWITCHBOARD_CHAT_DB", default_value_os_t = std::env::temp_dir().join("switchboard-chat.sqlite3"))]
    db: PathBuf,
    /// Origins whose pages may open WebSockets here besides the chat's own (e.g.
    /// `https://example.com`, `*.example.com`; see `OriginCheck::allow`). Repeat for several.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
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
    #[arg(long, env = "SWITCHBOARD_REDIS", conflicts_with = "redis_cluster")]
    redis: Option<String>,
    /// Share rooms with other chat processes through this Redis Cluster, given by seed nodes
    /// (`redis://127.0.0.1:7000,redis://127.0.0.1:7001`), as `--redis` does through one server.
    #[arg(long, env = "SWITCHBOARD_REDIS_CLUSTER", value_delimiter = ',')]
    redis_cluster: Vec<String>,
    /// Milliseconds over which a room's joins and leaves are gathered into one `presence.diff`
    /// (0: one `presence.join` or `presence.leave` per change).
    #[arg(long, default_value_t = PRESENCE_WINDOW.as_millis() as u64)]
    presence_window_ms: u64,
    /// With `--redis` or `--redis-cluster`: seconds after which the users of a process that stopped beating (it
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
    // A page sends a few messages a second at most: past 20 a second (40 at once) or 64 KiB a
    // second (256 KiB at once) a client's messages are dropped, and 200 dropped in a row close
    // it with 1008. Then limits and timeouts from SWITCHBOARD_* variables (see
    // `ServerConfig::from_env`; `SWITCHBOARD_RATE_LIMIT_MESSAGES=off` turns a part off).
    let mut config = switchboard::ServerConfig::default();
    config.inbound_rate_limit = Some(
        InboundRateLimit::messages(Rate::new(20.0, 40.0))
            .bytes(Rate::new(64.0 * 1024.0, 256.0 * 1024.0))
            .policy(RateLimitPolicy::Close { after: 200 }),
    );
    let mut config = config.apply_env()?;
    // Pages the chat served (its own origin) may connect, and those of `--allowed-origin`.
    config.origin_check = config.origin_check.allow(&args.allowed_origins);
    let mut history = History::open(&args.db)?;
    let redis = match (&args.redis, args.redis_cluster.is_empty()) {
        (Some(url), _) => Some((RedisConfig::new(url.as_str()), vec![url.clone()])),
        (None, false) => Some((
            RedisConfig::cluster(args.redis_cluster.clone()),
            args.redis_cluster.clone(),
        )),
        (None, true) => None,
    };
    let presence_window =
        (args.presence_window_ms > 0).then(|| Duration::from_millis(args.presence_window_ms));
    let layer: LayerHandle = match &redis {
        Some((base, urls)) => {
            let store = SharedStore::connect(urls, base.is_cluster()).await?;
            history = history
                .share_in(store)
                .await
                .map_err(|e| e as Box<dyn std::error::Error>)?;
            let mut config = redis_layer_config(base.clone(), args.capacity)
                .process_ttl(Duration::from_secs_f64(args.process_ttl.max(0.1)));
            config.presence_window = presence_window;
            LayerHandle::new(RedisChannelLayer::connect(config).await?)
        }
        None => {
            let mut config = memory_layer_config(args.capacity);
            config.presence_window = presence_window;
            LayerHandle::new(InMemoryChannelLayer::with_config(config))
        }
    };
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
        match &redis {
            Some((_, urls)) => format!(", rooms shared through {}", urls.join(",")),
            None => String::new(),
        }
    );
    let mut server = switchboard::serve(listener, application(history.clone()))
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
