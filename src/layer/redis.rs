//! `RedisChannelLayer`: the layer for several processes, on Redis (feature `redis`).
//!
//! The design is in the docs of [`RedisChannelLayer`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    is_process_specific, validate_channel_name, validate_group_name, BackendError, ChannelLayer,
    ChannelReceiver, Event, GroupSent, InMemoryChannelLayer, InMemoryConfig, LayerError,
    LayerStats, Presence, PRESENCE_JOIN, PRESENCE_LEAVE,
};

/// Settings of a [`RedisChannelLayer`]. Capacity and expiries default to Channels'
/// (`channels_redis`) values.
///
/// ```
/// use std::time::Duration;
/// use switchboard::layer::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .capacity(500)
///     .command_timeout(Duration::from_secs(1));
/// assert_eq!(config.prefix, "myapp");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server, as a `redis://[user:password@]host[:port][/db]` URL.
    pub url: String,
    /// Start of every Redis key and channel the layer uses, so that several apps can share one
    /// server. Default `"switchboard"` (Channels: `"asgi"`).
    pub prefix: String,
    /// Messages a channel holds before `send` fails with `ChannelFull` (count). Default 100.
    pub capacity: usize,
    /// How long a message waits to be received before it is dropped. Default 60 s.
    pub expiry: Duration,
    /// How long a group membership lasts after its last `group_add`. Default 86400 s.
    pub group_expiry: Duration,
    /// Longest wait for one Redis command; past it the operation fails with
    /// [`LayerError::Unavailable`]. Default 3 s. The subscription connection has no read timeout:
    /// an idle subscriber is never cut off (the failure `channels_redis` users meet in
    /// django/channels_redis#422); it is checked by a `PING` every
    /// [`health_check_interval`](Self::health_check_interval) instead.
    pub command_timeout: Duration,
    /// How often the subscription connection is checked with a `PING`. Default 15 s.
    pub health_check_interval: Duration,
    /// How long a process counts as alive after its last heartbeat (for presence lists); it
    /// beats three times per period. Default 30 s.
    pub process_ttl: Duration,
    /// How often messages found lost are logged, and groups that lost their last local member
    /// are checked for (they are also unsubscribed as soon as a member leaves). Default 30 s.
    pub unsubscribe_interval: Duration,
}

impl RedisConfig {
    /// Settings for the server at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchboard".to_owned(),
            capacity: 100,
            expiry: Duration::from_secs(60),
            group_expiry: Duration::from_secs(86_400),
            command_timeout: Duration::from_secs(3),
            health_check_interval: Duration::from_secs(15),
            process_ttl: Duration::from_secs(30),
            unsubscribe_interval: Duration::from_secs(30),
        }
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`capacity`](Self::capacity): messages per channel.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages;
        self
    }

    /// Sets [`expiry`](Self::expiry): how long a message may wait.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets [`group_expiry`](Self::group_expiry): how long a membership lasts.
    pub fn group_expiry(mut self, expiry: Duration) -> Self {
        self.group_expiry = expiry;
        self
    }

    /// Sets [`command_timeout`](Self::command_timeout).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets [`health_check_interval`](Self::health_check_interval).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// Sets [`process_ttl`](Self::process_ttl).
    pub fn process_ttl(mut self, ttl: Duration) -> Self {
        self.process_ttl = ttl;
        self
    }

    /// Sets [`unsubscribe_interval`](Self::unsubscribe_interval).
    pub fn unsubscribe_interval(mut self, interval: Duration) -> Self {
        self.unsubscribe_interval = interval;
        self
    }
}

/// The channel layer for several processes, on Redis: the same [`ChannelLayer`] API and
/// semantics as [`InMemoryChannelLayer`], so consumer code does not change (Channels'
/// `channels_redis`).
///
/// One process uses two Redis connections however many consumers it serves; a `group_send` costs
/// one `PUBLISH` fanned out by Redis to the processes that have members. Redis is used as a single server (not Redis Cluster, not sharded over
/// several servers: nothing here can send to a shard nobody reads, django/channels_redis#221).
///
/// # How it works
///
/// Each process keeps an [`InMemoryChannelLayer`] for its own consumers' channels and its own
/// group memberships, and talks to Redis over two connections whatever the number of consumers:
/// one multiplexed connection for commands and one subscription connection.
///
/// - **Process-specific channels** (`specific.<process>!<n>`) live in the process that made them. A
///   send from another process is one `PUBLISH` to that process's Redis channel
///   (`<prefix>:p:<process>`); a send within the process does not touch Redis.
/// - **Groups.** A process subscribes to `<prefix>:g:<group>` while it has local members of the
///   group. `group_send` is one `PUBLISH` (inside one script call): Redis hands the message to each
///   of the P subscribed processes, and each fans it out to its members from one shared encoding.
///   The cost is O(P) in Redis whatever the number of members.
/// - **Channels added from elsewhere.** A channel added to a group by a process that does not own
///   it (a worker adding a consumer's channel, or a named channel) is kept in a sorted set
///   `<prefix>:gn:<group>` scored by its expiry; `group_send` also reaches those members, one
///   command each.
/// - **Named channels** (`"thumbnails"`) are Redis lists `<prefix>:c:<name>`, shared by every
///   process: a message is taken by exactly one receiver. Capacity and expiry are checked in Redis.
/// - **Presence** lists are hashes `<prefix>:pr:<group>`. Each process beats every
///   [`process_ttl`](RedisConfig::process_ttl)/3 in a registry of processes, and the first process
///   to see that another stopped beating takes that one's channels off every presence list,
///   announcing their leave: users of a crashed process leave within about `process_ttl`.
///
/// Every message a process publishes carries its name and a number counted per destination; a
/// receiving process that sees a gap counts the missing messages in [`LayerStats::lost`] and logs
/// them, so messages lost while Redis or a subscription was down are known, not silent.
///
/// # Where it differs from the in-memory layer
///
/// - A message to a group or to another process's channel reaches its receivers asynchronously,
///   after the call returned, as in every networked layer; a process's own members get group
///   messages through Redis too, so all members see a group's messages in the same order.
/// - [`send`](ChannelLayer::send) to a process-specific channel of *another* process cannot see
///   that channel's queue: it never fails with `ChannelFull`; the owner drops the message and
///   counts it in [`LayerStats::dropped_full`] instead. Sends within the process, and sends to
///   named channels, fail with `ChannelFull` as in memory.
/// - A process reading a named channel takes one message at a time from Redis and holds at most
///   one that its readers have not yet taken.
/// - Presence listings of a process that died without cleaning up are removed (with a
///   `presence.leave` to the group) within about its [`process_ttl`](RedisConfig::process_ttl)
///   plus a third of it, and `presence_list` leaves them out from `process_ttl` on. A membership
///   that lapses by group expiry does not announce a leave.
/// - Redis unreachable: operations that need it fail within
///   [`command_timeout`](RedisConfig::command_timeout) with [`LayerError::Unavailable`]
///   (counted in [`LayerStats::unavailable`]); consumers stay connected; the layer reconnects by
///   itself and subscribes again to every group it has members of. Messages published in the
///   meantime are lost, as in any pub/sub; they are counted in [`LayerStats::lost`] by the
///   processes that missed them and logged at `WARN`. A `group_add` of a process's own channel
///   succeeds during an outage: the subscription is made when Redis is back.
///
/// # Example
///
/// ```no_run
/// use switchboard::layer::{ChannelLayer, Event, RedisChannelLayer, RedisConfig};
///
/// # #[tokio::main] async fn main() -> Result<(), switchboard::layer::LayerError> {
/// let layer = RedisChannelLayer::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let mut inbox = layer.new_channel().await?;
/// layer.group_add("lobby", inbox.name()).await?;
/// layer.group_send("lobby", Event::from_json(r#"{"type":"hello"}"#)?).await?;
/// assert_eq!(inbox.recv().await.event_type(), "hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisChannelLayer {
    shared: Arc<Shared>,
    /// Stops the background tasks when the last clone goes.
    _tasks: Arc<DropGuard>,
}

/// What the layer and its tasks share.
struct Shared {
    config: RedisConfig,
    local: InMemoryChannelLayer,
    /// This process's channel-name prefix (`specific.<hex>`), which names it in Redis.
    process: Box<str>,
    /// `<prefix>:p:<process>`: where other processes publish to this one's channels.
    process_channel: Box<str>,
    client: Client,
    commands: ConnectionManager,
    scripts: Scripts,
    /// Groups this process is subscribed to (or about to be): `true` once Redis confirmed.
    subscribed: tokio::sync::Mutex<HashMap<Box<str>, bool>>,
    to_subscriber: mpsc::Sender<SubscriberCommand>,
    /// Next message number per Redis channel published to.
    next_number: Mutex<HashMap<Box<str>, u64>>,
    received: Mutex<Received>,
    /// (group, channel) pairs this process listed in a presence, by channel.
    listed: Mutex<HashMap<Box<str>, HashSet<Box<str>>>>,
    /// Readers of named channels: the notification their pump waits on.
    pumps: Mutex<HashMap<Box<str>, Arc<Notify>>>,
    /// Woken when a local channel left a group (or went): unsubscribe from emptied groups now,
    /// so that `PUBLISH` stops counting this process for them.
    left_a_group: Notify,
    subscriber_connected: AtomicBool,
    counters: Counters,
    stop: CancellationToken,
}

#[derive(Default)]
struct Counters {
    unavailable: AtomicU64,
    reconnections: AtomicU64,
    dropped_no_receiver: AtomicU64,
    dropped_full: AtomicU64,
    rejected_full: AtomicU64,
    queued: AtomicU64,
    expired: AtomicU64,
    expired_memberships: AtomicU64,
}

/// What has been received from each publisher on each Redis channel, to find gaps.
#[derive(Default)]
struct Received {
    by_channel: HashMap<Box<str>, HashMap<Box<str>, Numbers>>,
    /// Losses of entries already forgotten (after an unsubscribe).
    settled_lost: u64,
}

struct Numbers {
    first: u64,
    highest: u64,
    count: u64,
}

impl Numbers {
    fn lost(&self) -> u64 {
        (self.highest - self.first + 1).saturating_sub(self.count)
    }
}

enum SubscriberCommand {
    Subscribe(Box<str>, oneshot::Sender<()>),
    Unsubscribe(Box<str>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().max(1) as u64
}

/// `<publisher> <number> <target>\n<json>`: the header says who sent it, its number on this
/// Redis channel (0: not numbered) and, for a process's channel, which local channel it is for.
fn encode(publisher: &str, number: u64, target: &str, json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(publisher.len() + target.len() + json.len() + 24);
    out.extend_from_slice(publisher.as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json.as_bytes());
    out
}

struct Decoded<'a> {
    publisher: &'a str,
    number: u64,
    target: &'a str,
    json: &'a str,
}

fn decode(payload: &[u8]) -> Option<Decoded<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (header, json) = text.split_once('\n')?;
    let mut parts = header.splitn(3, ' ');
    let publisher = parts.next()?;
    let number = parts.next()?.parse().ok()?;
    let target = parts.next()?;
    Some(Decoded {
        publisher,
        number,
        target,
        json,
    })
}

/// Pushes `ARGV[4]` (`<deadline ms> <json>`) onto list `KEYS[1]` unless it holds `ARGV[1]`
/// unexpired messages (expired ones, at the front, are dropped first). Returns
/// `{queued (0 or 1), expired dropped}`. The list itself lives a minute past its newest
/// message's expiry: long enough for a reader or a sender to find (and count) expired messages,
/// short enough that an abandoned channel does not stay in Redis.
const PUSH_SCRIPT: &str = r"
local function push(key, capacity, now, expiry, item)
  local expired = 0
  if redis.call('LLEN', key) >= capacity then
    while true do
      local head = redis.call('LINDEX', key, 0)
      if not head then break end
      local deadline = tonumber(string.match(head, '^(%d+)'))
      if deadline and deadline <= now then
        redis.call('LPOP', key)
        expired = expired + 1
      else
        break
      end
    end
    if redis.call('LLEN', key) >= capacity then return {0, expired} end
  end
  redis.call('RPUSH', key, item)
  redis.call('PEXPIRE', key, expiry + 60000)
  return {1, expired}
end
";

fn send_script() -> Script {
    Script::new(&format!(
        "{PUSH_SCRIPT}
return push(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])"
    ))
}

/// `group_send`: drops lapsed members of `KEYS[1]` (channels added from elsewhere), publishes
/// `ARGV[2]` to the group's Redis channel `ARGV[1]`, then delivers to each remaining member: a
/// process-specific one by publishing to its process, a named one by pushing to its list.
/// Returns `{processes reached, named queued, named full, expired dropped, lapsed}`.
fn group_send_script() -> Script {
    Script::new(&format!(
        "{PUSH_SCRIPT}
local now = tonumber(ARGV[3])
local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local reached = redis.call('PUBLISH', ARGV[1], ARGV[2])
local queued, full, expired = 0, 0, 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(member, '!', 1, true)
  if bang then
    local process = string.sub(member, 1, bang - 1)
    reached = reached + redis.call('PUBLISH', ARGV[7] .. ':p:' .. process,
      ARGV[8] .. ' 0 ' .. member .. '\\n' .. ARGV[6])
  else
    local r = push(ARGV[7] .. ':c:' .. member, tonumber(ARGV[4]), now, tonumber(ARGV[5]),
      (now + tonumber(ARGV[5])) .. ' ' .. ARGV[6])
    queued = queued + r[1]
    full = full + 1 - r[1]
    expired = expired + r[2]
  end
end
return {{reached, queued, full, expired, lapsed}}"
    ))
}

/// Takes `ARGV[1]` off presence hash `KEYS[1]` and returns the metadata it had (nil if none).
const PRESENCE_TAKE_SCRIPT: &str = r"
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if meta then redis.call('HDEL', KEYS[1], ARGV[1]) end
return meta
";

/// How long one `BLPOP` of a named channel's pump waits before it asks again, in seconds.
const BLOCK_SECONDS: f64 = 5.0;

/// The layer's scripts, hashed once.
struct Scripts {
    send: Script,
    group_send: Script,
    presence_take: Script,
}

impl Shared {
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.config.prefix)
    }

    /// `<prefix>:processes`: every process's last beat.
    fn registry_key(&self) -> String {
        format!("{}:processes", self.config.prefix)
    }

    fn unavailable(&self, error: BackendError) -> LayerError {
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        LayerError::Unavailable(error)
    }

    /// Runs one Redis operation within the command timeout.
    async fn run<T, F>(&self, operation: F) -> Result<T, LayerError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.config.command_timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::warn!(target: "switchboard::layer", %error, "Redis command failed");
                Err(self.unavailable(BackendError::Client(Box::new(error))))
            }
            Err(_) => {
                tracing::warn!(target: "switchboard::layer", timeout = ?self.config.command_timeout, "Redis command timed out");
                Err(self.unavailable(BackendError::Timeout(self.config.command_timeout)))
            }
        }
    }

    fn next_number(&self, redis_channel: &str) -> u64 {
        let mut numbers = lock(&self.next_number);
        if let Some(n) = numbers.get_mut(redis_channel) {
            *n += 1;
            return *n;
        }
        numbers.insert(redis_channel.into(), 1);
        1
    }

    fn owns(&self, channel: &str) -> bool {
        channel
            .split_once('!')
            .is_some_and(|(process, _)| process == &*self.process)
    }

    /// Counts a message numbered `number` from `publisher` on `redis_channel`; logs a gap.
    fn note_received(&self, redis_channel: &str, publisher: &str, number: u64) {
        let mut received = lock(&self.received);
        if !received.by_channel.contains_key(redis_channel) {
            received
                .by_channel
                .insert(redis_channel.into(), HashMap::new());
        }
        let Some(publishers) = received.by_channel.get_mut(redis_channel) else {
            return;
        };
        match publishers.get_mut(publisher) {
            None => {
                publishers.insert(
                    publisher.into(),
                    Numbers {
                        first: number,
                        highest: number,
                        count: 1,
                    },
                );
            }
            Some(seen) => {
                seen.count += 1;
                seen.highest = seen.highest.max(number);
                seen.first = seen.first.min(number);
            }
        }
    }

    /// Forgets the numbers seen on `redis_channel` (it was unsubscribed: a later gap is not a loss).
    fn forget_received(&self, redis_channel: &str) {
        let mut received = lock(&self.received);
        if let Some(publishers) = received.by_channel.remove(redis_channel) {
            received.settled_lost += publishers.values().map(Numbers::lost).sum::<u64>();
        }
    }

    fn lost(&self) -> u64 {
        let received = lock(&self.received);
        received.settled_lost
            + received
                .by_channel
                .values()
                .flat_map(|publishers| publishers.values())
                .map(Numbers::lost)
                .sum::<u64>()
    }

    /// A message from the subscription connection.
    async fn dispatch(&self, redis_channel: &str, payload: &[u8]) {
        let Some(message) = decode(payload) else {
            tracing::warn!(target: "switchboard::layer", channel = redis_channel, "undecodable message from Redis: dropped");
            return;
        };
        if message.number != 0 {
            self.note_received(redis_channel, message.publisher, message.number);
        }
        let event = match Event::from_json(message.json) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(target: "switchboard::layer", channel = redis_channel, %error, "bad event from Redis: dropped");
                return;
            }
        };
        if redis_channel == &*self.process_channel {
            match self.local.send(message.target, event).await {
                Ok(()) => {}
                Err(LayerError::ChannelFull { channel, capacity }) => {
                    self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "switchboard::layer", channel, capacity, "message from another process to a full channel: dropped");
                }
                Err(error) => {
                    tracing::warn!(target: "switchboard::layer", %error, "message from another process: dropped");
                }
            }
        } else if let Some(group) = redis_channel
            .strip_prefix(&*self.config.prefix)
            .and_then(|rest| rest.strip_prefix(":g:"))
        {
            let _ = self.local.group_send(group, event).await;
        }
    }

    /// Makes sure this process is subscribed to `group` (`group_add` of a local channel).
    async fn subscribe(&self, group: &str) {
        let mut subscribed = self.subscribed.lock().await;
        if subscribed.get(group) == Some(&true) {
            return;
        }
        subscribed.insert(group.into(), false);
        let (done, confirmed) = oneshot::channel();
        if self
            .to_subscriber
            .send(SubscriberCommand::Subscribe(group.into(), done))
            .await
            .is_err()
        {
            return;
        }
        drop(subscribed);
        // Answered once Redis confirmed, or at once while it is unreachable (the subscription
        // is then made at the reconnection, before any message can be missed by it).
        if confirmed.await.is_ok() {
            if let Some(state) = self.subscribed.lock().await.get_mut(group) {
                *state = true;
            }
        }
    }

    /// Unsubscribes from groups this process no longer has members of.
    async fn unsubscribe_unused(&self) {
        let mut subscribed = self.subscribed.lock().await;
        let unused: Vec<Box<str>> = subscribed
            .keys()
            .filter(|group| !self.local.has_group(group))
            .cloned()
            .collect();
        for group in unused {
            subscribed.remove(&group);
            let _ = self
                .to_subscriber
                .send(SubscriberCommand::Unsubscribe(group))
                .await;
        }
    }

    async fn publish_group(&self, group: &str, event: &Event) -> Result<GroupSent, LayerError> {
        let redis_channel = self.key("g", group);
        let number = self.next_number(&redis_channel);
        let payload = encode(&self.process, number, "", event.json());
        let mut invocation = self.scripts.group_send.key(self.key("gn", group));
        invocation
            .arg(&redis_channel)
            .arg(payload)
            .arg(now_ms())
            .arg(self.config.capacity)
            .arg(millis(self.config.expiry))
            .arg(event.json())
            .arg(&self.config.prefix)
            .arg(&*self.process);
        let mut connection = self.commands.clone();
        let (reached, queued, full, expired, lapsed): (u64, u64, u64, u64, u64) =
            self.run(invocation.invoke_async(&mut connection)).await?;
        let c = &self.counters;
        c.queued.fetch_add(queued, Ordering::Relaxed);
        c.expired.fetch_add(expired, Ordering::Relaxed);
        c.expired_memberships.fetch_add(lapsed, Ordering::Relaxed);
        if full > 0 {
            c.dropped_full.fetch_add(full, Ordering::Relaxed);
            tracing::warn!(target: "switchboard::layer", group, skipped = full, "group delivery skipped named channels that were full");
        }
        Ok(GroupSent {
            queued: queued as usize,
            skipped_full: full as usize,
            processes: reached as usize,
        })
    }

    /// Takes `channel` off `group`'s presence and tells the group, if it was listed.
    async fn presence_take(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        {
            let mut listed = lock(&self.listed);
            if let Some(groups) = listed.get_mut(channel) {
                groups.remove(group);
                if groups.is_empty() {
                    listed.remove(channel);
                }
            }
        }
        let mut invocation = self.scripts.presence_take.key(self.key("pr", group));
        invocation.arg(channel);
        let mut connection = self.commands.clone();
        let meta: Option<String> = self.run(invocation.invoke_async(&mut connection)).await?;
        if let Some(meta) = meta {
            let left = Presence {
                channel: channel.to_owned(),
                meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
            };
            self.publish_group(group, &left.event(PRESENCE_LEAVE))
                .await?;
        }
        Ok(())
    }

    /// A local channel was dropped: take it off the presence lists it was on.
    async fn channel_gone(&self, channel: &str) {
        let groups = lock(&self.listed).remove(channel).unwrap_or_default();
        for group in groups {
            if let Err(error) = self.presence_take(&group, channel).await {
                tracing::warn!(target: "switchboard::layer", group = &*group, channel, %error, "could not take a departed channel off a presence list");
            }
        }
    }
}

impl RedisChannelLayer {
    /// Connects to the server in `config.url` and starts the layer's background tasks (the
    /// subscription, the liveness heartbeat, unsubscribing from unused groups) on the current
    /// tokio runtime. They stop when the last clone of the layer is dropped.
    ///
    /// # Errors
    ///
    /// [`LayerError::Unavailable`] if the URL is not a Redis URL or the server cannot be reached
    /// within the command timeout.
    ///
    /// # Panics
    ///
    /// If `config.capacity` is 0, or if called outside a tokio runtime.
    pub async fn connect(config: RedisConfig) -> Result<Self, LayerError> {
        assert!(config.capacity > 0, "channel capacity must be at least 1");
        let client = Client::open(config.url.as_str())
            .map_err(|error| LayerError::Unavailable(BackendError::Client(Box::new(error))))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1);
        let commands = match tokio::time::timeout(
            config.command_timeout,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        {
            Ok(Ok(manager)) => manager,
            Ok(Err(error)) => {
                return Err(LayerError::Unavailable(BackendError::Client(Box::new(
                    error,
                ))))
            }
            Err(_) => {
                return Err(LayerError::Unavailable(BackendError::Timeout(
                    config.command_timeout,
                )))
            }
        };
        let local = InMemoryChannelLayer::with_config(
            InMemoryConfig::default()
                .capacity(config.capacity)
                .expiry(config.expiry)
                .group_expiry(config.group_expiry),
        );
        let process: Box<str> = local.process_prefix().into();
        let (to_subscriber, commands_in) = mpsc::channel(256);
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            process_channel: format!("{}:p:{process}", config.prefix).into(),
            process,
            config,
            local,
            client,
            commands,
            scripts: Scripts {
                send: send_script(),
                group_send: group_send_script(),
                presence_take: Script::new(PRESENCE_TAKE_SCRIPT),
            },
            subscribed: tokio::sync::Mutex::new(HashMap::new()),
            to_subscriber,
            next_number: Mutex::new(HashMap::new()),
            received: Mutex::new(Received::default()),
            listed: Mutex::new(HashMap::new()),
            pumps: Mutex::new(HashMap::new()),
            left_a_group: Notify::new(),
            subscriber_connected: AtomicBool::new(false),
            counters: Counters::default(),
            stop: stop.clone(),
        });
        // The first subscription is made before `connect` returns, so that messages to this
        // process's channels are received from the start.
        let (ready, is_ready) = oneshot::channel();
        tokio::spawn(subscriber(shared.clone(), commands_in, Some(ready)));
        tokio::spawn(heartbeat(shared.clone()));
        tokio::spawn(unsubscriber(shared.clone()));
        let layer = Self {
            shared: shared.clone(),
            _tasks: Arc::new(stop.drop_guard()),
        };
        match tokio::time::timeout(shared.config.command_timeout, is_ready).await {
            Ok(Ok(())) => Ok(layer),
            _ => Err(LayerError::Unavailable(BackendError::Timeout(
                shared.config.command_timeout,
            ))),
        }
    }

    /// The layer's settings.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Whether the subscription connection is up now (it reconnects by itself when not).
    pub fn is_connected(&self) -> bool {
        self.shared.subscriber_connected.load(Ordering::Relaxed)
    }

    fn ensure_pump(&self, channel: &str) -> Arc<Notify> {
        let mut pumps = lock(&self.shared.pumps);
        if let Some(taken) = pumps.get(channel) {
            return taken.clone();
        }
        let taken = Arc::new(Notify::new());
        pumps.insert(channel.into(), taken.clone());
        tokio::spawn(pump(self.shared.clone(), channel.into(), taken.clone()));
        taken
    }
}

impl std::fmt::Debug for RedisChannelLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannelLayer")
            .field("process", &self.shared.process)
            .field("prefix", &self.shared.config.prefix)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Connects the subscription connection: this process's channel and every group in `groups`.
async fn subscribe_all(
    shared: &Shared,
    groups: &HashSet<Box<str>>,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let (mut sink, stream) = shared.client.get_async_pubsub().await?.split();
    let mut channels: Vec<String> = vec![shared.process_channel.to_string()];
    channels.extend(groups.iter().map(|group| shared.key("g", group)));
    for chunk in channels.chunks(1000) {
        sink.subscribe(chunk).await?;
    }
    Ok((sink, stream))
}

/// The subscription connection: receives for every local consumer, and makes it again (with
/// every subscription) when it fails.
async fn subscriber(
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<SubscriberCommand>,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let mut groups: HashSet<Box<str>> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut was_connected = false;
    loop {
        let connecting = tokio::time::timeout(
            shared.config.command_timeout,
            subscribe_all(&shared, &groups),
        );
        let connected = tokio::select! {
            () = shared.stop.cancelled() => return,
            result = connecting => result,
        };
        let (mut sink, mut stream) = match connected {
            Ok(Ok(connection)) => connection,
            failed => {
                if was_connected || ready.is_some() {
                    match failed {
                        Ok(Err(error)) => {
                            tracing::warn!(target: "switchboard::layer", %error, "Redis subscription connection failed; retrying")
                        }
                        _ => {
                            tracing::warn!(target: "switchboard::layer", "Redis subscription connection timed out; retrying")
                        }
                    }
                }
                was_connected = false;
                // While Redis is away, subscriptions are noted and answered at once.
                let pause = tokio::time::sleep(backoff);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        () = shared.stop.cancelled() => return,
                        () = &mut pause => break,
                        command = commands.recv() => match command {
                            None => return,
                            Some(SubscriberCommand::Subscribe(group, done)) => {
                                groups.insert(group);
                                let _ = done.send(());
                            }
                            Some(SubscriberCommand::Unsubscribe(group)) => {
                                shared.forget_received(&shared.key("g", &group));
                                groups.remove(&group);
                            }
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        shared.subscriber_connected.store(true, Ordering::Relaxed);
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        } else {
            shared
                .counters
                .reconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "switchboard::layer", groups = groups.len(), "Redis subscription connection made again; groups subscribed again");
        }
        was_connected = true;
        let mut health = tokio::time::interval(shared.config.health_check_interval);
        health.tick().await;
        loop {
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => return,
                message = stream.next() => match message {
                    Some(message) => {
                        shared.dispatch(message.get_channel_name(), message.get_payload_bytes()).await;
                    }
                    None => {
                        tracing::warn!(target: "switchboard::layer", "Redis subscription connection lost; reconnecting");
                        break;
                    }
                },
                command = commands.recv() => match command {
                    None => return,
                    Some(SubscriberCommand::Subscribe(group, done)) => {
                        let redis_channel = shared.key("g", &group);
                        groups.insert(group);
                        let result = tokio::time::timeout(
                            shared.config.command_timeout,
                            sink.subscribe(&redis_channel),
                        ).await;
                        let _ = done.send(());
                        if !matches!(result, Ok(Ok(()))) {
                            tracing::warn!(target: "switchboard::layer", "Redis SUBSCRIBE failed; reconnecting");
                            break;
                        }
                    }
                    Some(SubscriberCommand::Unsubscribe(group)) => {
                        let redis_channel = shared.key("g", &group);
                        groups.remove(&group);
                        let result = tokio::time::timeout(
                            shared.config.command_timeout,
                            sink.unsubscribe(&redis_channel),
                        ).await;
                        shared.forget_received(&redis_channel);
                        if !matches!(result, Ok(Ok(()))) {
                            break;
                        }
                    }
                },
                _ = health.tick() => {
                    let pong = tokio::time::timeout(shared.config.command_timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        tracing::warn!(target: "switchboard::layer", "Redis subscription connection did not answer PING; reconnecting");
                        break;
                    }
                }
            }
        }
        shared.subscriber_connected.store(false, Ordering::Relaxed);
    }
}

/// Beats for this process in the registry `<prefix>:processes` (a sorted set scored by the time
/// of each process's last beat, in ms) and reaps processes that stopped beating: the first
/// process to remove a dead one from the registry takes its channels off every presence list it
/// was on, announcing each leave.
async fn heartbeat(shared: Arc<Shared>) {
    let registry = shared.registry_key();
    let mut beat = tokio::time::interval(shared.config.process_ttl / 3);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            _ = beat.tick() => {
                if let Err(error) = beat_once(&shared, &registry).await {
                    tracing::debug!(target: "switchboard::layer", %error, "heartbeat failed");
                }
            }
        }
    }
    // Stopped: marked dead at once, so that the next beat of another process reaps it (a crash
    // is reaped after `process_ttl`).
    let mut connection = shared.commands.clone();
    let mut mark = redis::cmd("ZADD");
    mark.arg(&registry).arg(0).arg(&*shared.process);
    let _ = shared.run(mark.query_async::<()>(&mut connection)).await;
}

async fn beat_once(shared: &Shared, registry: &str) -> Result<(), LayerError> {
    let mut connection = shared.commands.clone();
    let now = now_ms();
    let mut add = redis::cmd("ZADD");
    add.arg(registry).arg(now).arg(&*shared.process);
    shared.run(add.query_async::<()>(&mut connection)).await?;
    let oldest_alive = now.saturating_sub(millis(shared.config.process_ttl));
    let mut find = redis::cmd("ZRANGEBYSCORE");
    find.arg(registry)
        .arg("-inf")
        .arg(format!("({oldest_alive}"));
    let dead: Vec<String> = shared.run(find.query_async(&mut connection)).await?;
    for process in dead {
        let mut claim = redis::cmd("ZREM");
        claim.arg(registry).arg(&process);
        let claimed: u64 = shared.run(claim.query_async(&mut connection)).await?;
        if claimed == 1 {
            reap(shared, &process).await?;
        }
    }
    Ok(())
}

/// Takes the channels of stopped process `process` off the presence lists it was on.
async fn reap(shared: &Shared, process: &str) -> Result<(), LayerError> {
    let mut connection = shared.commands.clone();
    let listed_key = shared.key("listed", process);
    let mut members = redis::cmd("SMEMBERS");
    members.arg(&listed_key);
    let groups: Vec<String> = shared.run(members.query_async(&mut connection)).await?;
    let own = format!("{process}!");
    let mut reaped = 0;
    for group in &groups {
        let mut fields = redis::cmd("HKEYS");
        fields.arg(shared.key("pr", group));
        let channels: Vec<String> = shared.run(fields.query_async(&mut connection)).await?;
        for channel in channels.iter().filter(|c| c.starts_with(&own)) {
            shared.presence_take(group, channel).await?;
            reaped += 1;
        }
    }
    let mut delete = redis::cmd("DEL");
    delete.arg(&listed_key);
    shared
        .run(delete.query_async::<()>(&mut connection))
        .await?;
    if reaped > 0 {
        tracing::info!(target: "switchboard::layer", process, listings = reaped, "a stopped process's presence listings were removed");
    }
    Ok(())
}

/// Unsubscribes from groups that lost their last local member as soon as one leaves (notices
/// that come while it works are taken together), and every `unsubscribe_interval` as well; logs
/// the messages found lost since the last time then (not at each gap: a message overtaken by a
/// later one from the same process leaves a gap that closes a moment later).
async fn unsubscriber(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.config.unsubscribe_interval);
    every.tick().await;
    let mut reported = 0;
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = shared.left_a_group.notified() => shared.unsubscribe_unused().await,
            _ = every.tick() => {
                shared.unsubscribe_unused().await;
                let lost = shared.lost();
                if lost > reported {
                    tracing::warn!(target: "switchboard::layer", lost = lost - reported, total = lost, "messages from other processes lost in transit (Redis or the subscription was down)");
                    reported = lost;
                }
            }
        }
    }
}

/// Moves messages of named channel `channel` from Redis to this process's readers, one at a
/// time: the next is taken only after a reader took the last.
async fn pump(shared: Arc<Shared>, channel: Box<str>, taken: Arc<Notify>) {
    let key = shared.key("c", &channel);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.command_timeout))
        .set_response_timeout(Some(
            Duration::from_secs_f64(BLOCK_SECONDS) + shared.config.command_timeout,
        ));
    let mut connection = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => {
                let made = tokio::select! {
                    () = shared.stop.cancelled() => return,
                    made = shared.client.get_multiplexed_async_connection_with_config(&config) => made,
                };
                match made {
                    Ok(made) => connection.insert(made),
                    Err(error) => {
                        tracing::warn!(target: "switchboard::layer", channel = &*channel, %error, "cannot reach Redis to read a named channel; retrying");
                        tokio::select! {
                            () = shared.stop.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&key).arg(BLOCK_SECONDS);
        let popped = tokio::select! {
            () = shared.stop.cancelled() => return,
            popped = blpop.query_async::<Option<(String, String)>>(conn) => popped,
        };
        let item = match popped {
            Ok(Some((_, item))) => item,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(target: "switchboard::layer", channel = &*channel, %error, "reading a named channel failed; reconnecting");
                connection = None;
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let Some((deadline, json)) = item.split_once(' ') else {
            continue;
        };
        if deadline.parse::<u64>().is_ok_and(|d| d <= now_ms()) {
            shared.counters.expired.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(event) = Event::from_json(json) else {
            tracing::warn!(target: "switchboard::layer", channel = &*channel, "bad event in a named channel: dropped");
            continue;
        };
        if shared.local.send(&channel, event).await.is_err() {
            continue;
        }
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = taken.notified() => {}
        }
    }
}

#[async_trait]
impl ChannelLayer for RedisChannelLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        let receiver = self.shared.local.new_channel().await?;
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let runtime = tokio::runtime::Handle::current();
        Ok(receiver.also_on_drop(Box::new(move |name| {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            shared.left_a_group.notify_one();
            if !lock(&shared.listed).contains_key(name) {
                return;
            }
            let name = name.to_owned();
            runtime.spawn(async move { shared.channel_gone(&name).await });
        })))
    }

    async fn send(&self, channel: &str, event: Event) -> Result<(), LayerError> {
        validate_channel_name(channel)?;
        let shared = &self.shared;
        if shared.owns(channel) {
            return shared.local.send(channel, event).await;
        }
        let mut connection = shared.commands.clone();
        if let Some((process, _)) = channel.split_once('!') {
            let redis_channel = shared.key("p", process);
            let number = shared.next_number(&redis_channel);
            let payload = encode(&shared.process, number, channel, event.json());
            let reached: u64 = shared
                .run(
                    redis::cmd("PUBLISH")
                        .arg(&redis_channel)
                        .arg(payload)
                        .query_async(&mut connection),
                )
                .await?;
            if reached == 0 {
                shared
                    .counters
                    .dropped_no_receiver
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "switchboard::layer", channel, "send to a channel whose process is gone: dropped");
            }
            return Ok(());
        }
        let now = now_ms();
        let expiry = millis(shared.config.expiry);
        let mut invocation = shared.scripts.send.key(shared.key("c", channel));
        invocation
            .arg(shared.config.capacity)
            .arg(now)
            .arg(expiry)
            .arg(format!("{} {}", now + expiry, event.json()));
        let (queued, expired): (u64, u64) =
            shared.run(invocation.invoke_async(&mut connection)).await?;
        shared
            .counters
            .expired
            .fetch_add(expired, Ordering::Relaxed);
        if queued == 0 {
            shared
                .counters
                .rejected_full
                .fetch_add(1, Ordering::Relaxed);
            return Err(LayerError::ChannelFull {
                channel: channel.to_owned(),
                capacity: shared.config.capacity,
            });
        }
        shared.counters.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        validate_channel_name(channel)?;
        if is_process_specific(channel) {
            return self.shared.local.receive(channel).await;
        }
        let taken = self.ensure_pump(channel);
        let event = self.shared.local.receive(channel).await?;
        taken.notify_one();
        Ok(event)
    }

    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let shared = &self.shared;
        if shared.owns(channel) {
            shared.local.group_add(group, channel).await?;
            shared.subscribe(group).await;
            return Ok(());
        }
        let key = shared.key("gn", group);
        let expires = now_ms() + millis(shared.config.group_expiry);
        let mut connection = shared.commands.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(&key)
            .arg(expires)
            .arg(channel)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(shared.config.group_expiry))
            .ignore();
        shared.run(pipe.query_async::<()>(&mut connection)).await
    }

    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let shared = &self.shared;
        let listed = lock(&shared.listed)
            .get(channel)
            .is_some_and(|groups| groups.contains(group));
        if listed || !shared.owns(channel) {
            shared.presence_take(group, channel).await?;
        }
        if shared.owns(channel) {
            shared.local.group_discard(group, channel).await?;
            shared.left_a_group.notify_one();
            return Ok(());
        }
        let mut connection = shared.commands.clone();
        shared
            .run(
                redis::cmd("ZREM")
                    .arg(shared.key("gn", group))
                    .arg(channel)
                    .query_async::<()>(&mut connection),
            )
            .await
    }

    async fn group_send(&self, group: &str, event: Event) -> Result<GroupSent, LayerError> {
        validate_group_name(group)?;
        self.shared.publish_group(group, &event).await
    }

    async fn presence_add(
        &self,
        group: &str,
        channel: &str,
        meta: serde_json::Value,
    ) -> Result<(), LayerError> {
        self.group_add(group, channel).await?;
        let shared = &self.shared;
        let meta_json = serde_json::to_string(&meta).map_err(super::EventError::from)?;
        let mut connection = shared.commands.clone();
        shared
            .run(
                redis::cmd("HSET")
                    .arg(shared.key("pr", group))
                    .arg(channel)
                    .arg(meta_json)
                    .query_async::<()>(&mut connection),
            )
            .await?;
        if shared.owns(channel) {
            lock(&shared.listed)
                .entry(channel.into())
                .or_default()
                .insert(group.into());
        }
        if let Some((process, _)) = channel.split_once('!') {
            // Where to look for this process's listings if it stops without taking them off.
            let mut note = redis::cmd("SADD");
            note.arg(shared.key("listed", process)).arg(group);
            shared.run(note.query_async::<()>(&mut connection)).await?;
        }
        let joined = Presence {
            channel: channel.to_owned(),
            meta,
        };
        shared
            .publish_group(group, &joined.event(PRESENCE_JOIN))
            .await?;
        Ok(())
    }

    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        self.shared.presence_take(group, channel).await
    }

    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        validate_group_name(group)?;
        let shared = &self.shared;
        let mut connection = shared.commands.clone();
        let listed: HashMap<String, String> = shared
            .run(
                redis::cmd("HGETALL")
                    .arg(shared.key("pr", group))
                    .query_async(&mut connection),
            )
            .await?;
        // Which of the processes named in the list are alive: beaten within `process_ttl`.
        let processes: Vec<&str> = listed
            .keys()
            .filter_map(|channel| channel.split_once('!').map(|(process, _)| process))
            .filter(|process| *process != &*shared.process)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut dead = HashSet::new();
        if !processes.is_empty() {
            let mut scores = redis::cmd("ZMSCORE");
            scores.arg(shared.registry_key()).arg(&processes);
            let beats: Vec<Option<f64>> = shared.run(scores.query_async(&mut connection)).await?;
            let oldest_alive = now_ms().saturating_sub(millis(shared.config.process_ttl)) as f64;
            for (process, beat) in processes.iter().zip(beats) {
                if beat.is_none_or(|beat| beat < oldest_alive) {
                    dead.insert(process.to_string());
                }
            }
        }
        let mut present = Vec::with_capacity(listed.len());
        for (channel, meta) in listed {
            let process = channel.split_once('!').map(|(process, _)| process);
            if process.is_some_and(|process| dead.contains(process)) {
                tracing::info!(target: "switchboard::layer", group, channel, "presence of a process that stopped: removed");
                shared.presence_take(group, &channel).await?;
                continue;
            }
            present.push(Presence {
                channel,
                meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
            });
        }
        Ok(present)
    }

    async fn flush(&self) -> Result<(), LayerError> {
        let shared = &self.shared;
        let mut connection = shared.commands.clone();
        let pattern = format!("{}:*", shared.config.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = shared
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut connection),
                )
                .await?;
            // The registry says which processes run: not the layer's data.
            let registry = shared.registry_key();
            let keys: Vec<String> = keys.into_iter().filter(|key| *key != registry).collect();
            if !keys.is_empty() {
                shared
                    .run(
                        redis::cmd("DEL")
                            .arg(&keys)
                            .query_async::<()>(&mut connection),
                    )
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        lock(&shared.listed).clear();
        shared.local.flush().await
    }

    fn stats(&self) -> LayerStats {
        let local = self.shared.local.stats();
        let c = &self.shared.counters;
        let mut stats = local;
        stats.queued += c.queued.load(Ordering::Relaxed);
        stats.rejected_full += c.rejected_full.load(Ordering::Relaxed);
        stats.dropped_full += c.dropped_full.load(Ordering::Relaxed);
        stats.expired += c.expired.load(Ordering::Relaxed);
        stats.dropped_no_receiver += c.dropped_no_receiver.load(Ordering::Relaxed);
        stats.expired_memberships += c.expired_memberships.load(Ordering::Relaxed);
        stats.lost = self.shared.lost();
        stats.unavailable = c.unavailable.load(Ordering::Relaxed);
        stats.reconnections = c.reconnections.load(Ordering::Relaxed);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let payload = encode("specific.ab!", 7, "specific.ab!3", r#"{"type":"x"}"#);
        let message = decode(&payload).unwrap();
        assert_eq!(message.publisher, "specific.ab!");
        assert_eq!(message.number, 7);
        assert_eq!(message.target, "specific.ab!3");
        assert_eq!(message.json, r#"{"type":"x"}"#);
        let group = encode("p", 1, "", "{\n}");
        let message = decode(&group).unwrap();
        assert_eq!(message.target, "");
        assert_eq!(message.json, "{\n}");
        assert!(decode(b"no header").is_none());
    }

    #[test]
    fn lost_counts_gaps_and_late_arrivals() {
        let numbers = Numbers {
            first: 3,
            highest: 10,
            count: 6,
        };
        assert_eq!(numbers.lost(), 2);
    }
}
