//! `RedisChannelLayer`: the layer for several processes, on Redis (feature `redis`).
//!
//! The design is in the docs of [`RedisChannelLayer`]. The files: `config` (settings), `wire`
//! (the message format between processes), `scripts` (the Lua scripts, in `scripts/`), `tasks`
//! (the background tasks), and this one (the layer and its operations).

mod config;
mod scripts;
mod tasks;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use config::RedisConfig;
use scripts::Scripts;
use tasks::{cluster_subscriber, heartbeat, pump, subscriber, unsubscriber};
use wire::{decode, encode};

use super::presence::{Change, PresenceDiffs};
use super::{
    is_process_specific, validate_channel_name, validate_group_name, BackendError, ChannelLayer,
    ChannelReceiver, Event, GroupSent, InMemoryChannelLayer, InMemoryConfig, LayerError,
    LayerStats, Presence, Recovery, StreamPosition,
};

/// A Redis request that can be sent again: a command, a pipeline or a script invocation.
trait Request: Send + Sync {
    fn send<'a, T, C>(&'a self, connection: &'a mut C) -> redis::RedisFuture<'a, T>
    where
        T: redis::FromRedisValue + Send + 'a,
        C: redis::aio::ConnectionLike + Send + 'a;
}

macro_rules! request {
    ($($request:ty => $method:ident),* $(,)?) => {$(
        impl Request for $request {
            fn send<'a, T, C>(&'a self, connection: &'a mut C) -> redis::RedisFuture<'a, T>
            where
                T: redis::FromRedisValue + Send + 'a,
                C: redis::aio::ConnectionLike + Send + 'a,
            {
                Box::pin(self.$method(connection))
            }
        }
    )*};
}

request!(
    &redis::Cmd => query_async,
    &mut redis::Cmd => query_async,
    &redis::Pipeline => query_async,
    &mut redis::Pipeline => query_async,
    &redis::ScriptInvocation<'_> => invoke_async,
    &mut redis::ScriptInvocation<'_> => invoke_async,
);

/// How the layer reaches Redis.
enum Backend {
    /// One server: commands on a connection manager; the subscription and each named channel's
    /// pump on connections of their own, made from `client`.
    Single {
        client: Box<Client>,
        commands: ConnectionManager,
    },
    /// A Redis Cluster: commands on a cluster connection (redirections followed, the slot map
    /// refreshed after a failover); pumps on cluster connections of their own from
    /// `blocking` (whose response timeout allows a whole `BLPOP`). The subscription connection
    /// belongs to its task.
    Cluster {
        commands: ClusterConnection,
        blocking: Box<ClusterClient>,
    },
}

/// The channel layer for several processes, on Redis: the same [`ChannelLayer`] API and
/// semantics as [`InMemoryChannelLayer`], so consumer code does not change (Channels'
/// `channels_redis`).
///
/// One process uses two Redis connections however many consumers it serves; a `group_send` costs
/// one `PUBLISH` fanned out by Redis to the processes that have members. On one server
/// ([`RedisConfig::new`]) or on a Redis Cluster ([`RedisConfig::cluster`], below).
///
/// # How it works
///
/// Each process keeps an [`InMemoryChannelLayer`] for its own consumers' channels and its own
/// group memberships, and talks to Redis over two connections whatever the number of consumers:
/// one multiplexed connection for commands and one subscription connection.
///
/// - **Process-specific channels** (`specific.<process>!<n>`) live in the process that made them. A
///   send from another process is one `PUBLISH` to that process's Redis channel
///   (`<prefix>:p:{<process>}`); a send within the process does not touch Redis.
/// - **Groups.** A process subscribes to `<prefix>:g:{<group>}` while it has local members of the
///   group. `group_send` is one `PUBLISH` (inside one script call): Redis hands the message to each
///   of the P subscribed processes, and each fans it out to its members from one shared encoding.
///   The cost is O(P) in Redis whatever the number of members.
/// - **Channels added from elsewhere.** A channel added to a group by a process that does not own
///   it (a worker adding a consumer's channel, or a named channel) is kept in a sorted set
///   `<prefix>:gn:<group>` scored by its expiry; `group_send` also reaches those members, one
///   command each.
/// - **Named channels** (`"thumbnails"`) are Redis lists `<prefix>:c:{<name>}`, shared by every
///   process: a message is taken by exactly one receiver. Capacity and expiry are checked in Redis.
/// - **Presence** lists are hashes `<prefix>:pr:{<group>}`. Each process beats every
///   [`process_ttl`](RedisConfig::process_ttl)/3 in a registry of processes, and the first process
///   to see that another stopped beating takes that one's channels off every presence list,
///   announcing their leave: users of a crashed process leave within about `process_ttl`.
///
/// Every message a process publishes carries its name and a number counted per destination; a
/// receiving process that sees a gap counts the missing messages in [`LayerStats::lost`] and logs
/// them, so messages lost while Redis or a subscription was down are known, not silent.
///
/// # On a Redis Cluster
///
/// With [`RedisConfig::cluster`] (Redis 7 or later) the same design is spread over the cluster's
/// shards, which neither `channels_redis` (django/channels_redis#221: its sharding can send to a
/// shard nobody reads) nor socket.io's Redis adapter does:
///
/// - Every key and Redis channel of one group (or one named channel, one process) carries the
///   same hash tag, `{<name>}`, so each script runs in one slot and a group's stream, members and
///   presence live on one shard. Groups spread over the shards by name.
/// - Groups and processes talk by **sharded pub/sub**: `SPUBLISH` reaches only the shard that
///   owns the channel's slot (classic `PUBLISH` is copied to every node of a cluster, so its cost
///   grows with the cluster), and each process `SSUBSCRIBE`s on the owning shard over one RESP3
///   cluster connection. A group's members added from elsewhere live in other slots: `group_send`
///   reaches them with one command each after its script (not atomically with it).
/// - `MOVED` and `ASK` are followed by the `redis` crate's cluster connection. When a primary
///   dies, operations on its slots fail with [`LayerError::Unavailable`] within
///   [`command_timeout`](RedisConfig::command_timeout) until a replica takes over (about two
///   node timeouts), then work again by themselves; the subscription connection subscribes
///   again on the new primary (it learns the cluster's new shape by doing so). Messages the dead
///   primary accepted but had not delivered are lost with it, and counted in
///   [`LayerStats::lost`] by the processes that missed them; a receiver cannot tell such a loss
///   from a publish that failed for its sender, so those are counted too.
/// - A group's stream lives on its shard: recovery after a failover works from what the replica
///   had received; a stream whose epoch went with the primary starts a new one (not recovered).
/// - [`flush`](ChannelLayer::flush) uses `KEYS` on every primary (it is meant for tests).
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
///   one that its readers have not yet taken; the task and the connection that read it end once
///   nobody has waited on the channel here for 5 s (a message already taken then waits here for
///   the next reader, or expires and is counted).
/// - Presence listings of a process that died without cleaning up are removed (with a
///   `presence.leave` to the group) within about its [`process_ttl`](RedisConfig::process_ttl)
///   plus a third of it, and `presence_list` leaves them out from `process_ttl` on. A membership
///   that lapses by group expiry does not announce a leave.
/// - A connection Redis closed (its `timeout` for idle clients, `CLIENT KILL`, a proxy) is made
///   again and the request sent once more, within the same command timeout: callers do not see
///   it. A retried publish that had gone through is recognised by its number and dropped by the
///   receivers (they remember the last 128 numbers of each publisher per Redis channel).
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
    backend: Backend,
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
    pumps: Mutex<HashMap<Box<str>, Pump>>,
    /// Woken when a local channel left a group (or went): unsubscribe from emptied groups now,
    /// so that `PUBLISH` stops counting this process for them.
    left_a_group: Notify,
    subscriber_connected: AtomicBool,
    counters: Counters,
    stop: CancellationToken,
    /// Presence changes being gathered, with a presence window.
    diffs: Option<PresenceDiffs>,
    /// This layer, for the tasks that close presence windows.
    me: Weak<Shared>,
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
    /// Which of the 128 numbers up to `highest` were seen (bit `i`: `highest - i`), to drop a
    /// message that comes twice (a publish retried after its connection closed).
    recent: u128,
}

impl Numbers {
    fn new(number: u64) -> Self {
        Self {
            first: number,
            highest: number,
            count: 1,
            recent: 1,
        }
    }

    /// Notes `number`; `false` if it was seen already (a duplicate, to drop). A number more than
    /// 128 behind the highest cannot be checked and counts as new.
    fn note(&mut self, number: u64) -> bool {
        if number > self.highest {
            let shift = number - self.highest;
            self.recent = if shift >= 128 {
                0
            } else {
                self.recent << shift
            };
            self.recent |= 1;
            self.highest = number;
        } else {
            let behind = self.highest - number;
            if behind < 128 {
                let bit = 1u128 << behind;
                if self.recent & bit != 0 {
                    return false;
                }
                self.recent |= bit;
            }
        }
        self.count += 1;
        self.first = self.first.min(number);
        true
    }

    fn lost(&self) -> u64 {
        (self.highest - self.first + 1).saturating_sub(self.count)
    }
}

/// The task that moves a named channel's messages from Redis to this process's readers, while
/// there are any: once none has waited for a while (one idle `BLPOP`), it ends and frees its
/// connection.
struct Pump {
    /// Notified when a reader took the message the pump handed over.
    taken: Arc<Notify>,
    /// `receive` calls waiting on the channel here now.
    readers: usize,
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

/// How long one `BLPOP` of a named channel's pump waits before it asks again, in seconds.
const BLOCK_SECONDS: f64 = 5.0;

/// Sharded messages (a cluster's) waiting for the subscription task before more are dropped.
const PUSH_QUEUE: usize = 65_536;

impl Shared {
    /// `<prefix>:<kind>:{<name>}`: every key and Redis channel of one group (or one channel, one
    /// process) has the same hash tag, so that on a Redis Cluster each script's keys and the
    /// group's shard channel are in one slot.
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{{{name}}}", self.config.prefix)
    }

    fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    /// The publishing command: sharded (`SPUBLISH`, to the shard that owns the channel) on a
    /// cluster, `PUBLISH` on one server.
    fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
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
    /// Sends `request` within the command timeout. A connection the server had already closed
    /// (Redis' `timeout` for idle clients, `CLIENT KILL`, a proxy) is made again and the request
    /// sent once more, within the same timeout, so that the caller does not see it; what a retried
    /// publish might deliver twice, receivers drop by its number.
    async fn run<T, R>(&self, request: R) -> Result<T, LayerError>
    where
        T: redis::FromRedisValue + Send,
        R: Request,
    {
        let deadline = tokio::time::Instant::now() + self.config.command_timeout;
        let mut retried = false;
        loop {
            let sent = match &self.backend {
                Backend::Single { commands, .. } => {
                    let mut connection = commands.clone();
                    tokio::time::timeout_at(deadline, request.send::<T, _>(&mut connection)).await
                }
                Backend::Cluster { commands, .. } => {
                    let mut connection = commands.clone();
                    tokio::time::timeout_at(deadline, request.send::<T, _>(&mut connection)).await
                }
            };
            match sent {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error))
                    if !retried && (error.is_connection_dropped() || error.is_io_error()) =>
                {
                    tracing::debug!(target: "switchboard::layer", %error, "Redis connection was closed; sending again on a new one");
                    retried = true;
                }
                Ok(Err(error)) => {
                    tracing::warn!(target: "switchboard::layer", %error, "Redis command failed");
                    return Err(self.unavailable(backend_error(error)));
                }
                Err(_) => {
                    tracing::warn!(target: "switchboard::layer", timeout = ?self.config.command_timeout, "Redis command timed out");
                    return Err(
                        self.unavailable(BackendError::Timeout(self.config.command_timeout))
                    );
                }
            }
        }
    }

    /// Whether the pump of `channel` may end: nobody reads it here. If so it is forgotten, under
    /// the same lock a new reader would take, so that reader starts a pump of its own.
    fn pump_may_end(&self, channel: &str) -> bool {
        let mut pumps = lock(&self.pumps);
        if pumps.get(channel).is_some_and(|pump| pump.readers > 0) {
            return false;
        }
        pumps.remove(channel);
        true
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

    /// Counts a message numbered `number` from `publisher` on `redis_channel`; `false` if it
    /// came already (to drop).
    fn note_received(&self, redis_channel: &str, publisher: &str, number: u64) -> bool {
        let mut received = lock(&self.received);
        if !received.by_channel.contains_key(redis_channel) {
            received
                .by_channel
                .insert(redis_channel.into(), HashMap::new());
        }
        let Some(publishers) = received.by_channel.get_mut(redis_channel) else {
            return true;
        };
        match publishers.get_mut(publisher) {
            None => {
                publishers.insert(publisher.into(), Numbers::new(number));
                true
            }
            Some(seen) => seen.note(number),
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
        if message.number != 0
            && !self.note_received(redis_channel, message.publisher, message.number)
        {
            tracing::debug!(target: "switchboard::layer", channel = redis_channel, publisher = message.publisher, number = message.number, "a message came twice (a retried publish): dropped");
            return;
        }
        let event = match Event::from_json(message.json) {
            // A group event from a stream carries its position as `@epoch:offset`.
            Ok(event) => match message
                .target
                .strip_prefix('@')
                .and_then(|at| at.rsplit_once(':'))
                .and_then(|(epoch, offset)| Some((epoch, offset.parse().ok()?)))
            {
                Some((epoch, offset)) => event.with_position(StreamPosition {
                    epoch: epoch.to_owned(),
                    offset,
                }),
                None => event,
            },
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
            .and_then(|rest| rest.strip_prefix(":g:{"))
            .and_then(|rest| rest.strip_suffix('}'))
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
    /// Unsubscribes from the groups that lost their last local member since the last time
    /// (O(those groups), for the notice every leave sends).
    async fn unsubscribe_emptied(&self) {
        let emptied = self.local.take_emptied_groups();
        if emptied.is_empty() {
            return;
        }
        let mut subscribed = self.subscribed.lock().await;
        for group in emptied {
            if subscribed.contains_key(&group) && !self.local.has_group(&group) {
                subscribed.remove(&group);
                let _ = self
                    .to_subscriber
                    .send(SubscriberCommand::Unsubscribe(group))
                    .await;
            }
        }
    }

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

    /// Sends `event` to `group` through Redis; with `stream`, a group that keeps a stream gets
    /// it appended there too (presence events are not).
    async fn publish_group(
        &self,
        group: &str,
        event: &Event,
        stream: bool,
    ) -> Result<GroupSent, LayerError> {
        let redis_channel = self.key("g", group);
        let number = self.next_number(&redis_channel);
        let payload = encode(&self.process, number, "", event.json());
        let history = stream.then(|| self.config.histories.of(group)).flatten();
        let mut invocation = self.scripts.group_send.key(self.key("gn", group));
        invocation
            .key(self.key("s", group))
            .key(self.key("se", group))
            .key(self.key("so", group))
            .arg(&redis_channel)
            .arg(payload)
            .arg(now_ms())
            .arg(self.config.capacity)
            .arg(millis(self.config.expiry))
            .arg(event.json())
            .arg(&self.config.prefix)
            .arg(&*self.process)
            .arg(history.map_or(String::new(), |(events, _)| events.to_string()))
            .arg(history.map_or(0, |(_, age)| millis(age)));
        // Only a group that keeps a stream needs an epoch candidate and the bare header.
        if history.is_some() {
            invocation
                .arg(format!("{:016x}", rand::random::<u64>()))
                .arg(format!("{} {number} ", self.process));
        } else if self.is_cluster() {
            invocation.arg("").arg("");
        }
        if self.is_cluster() {
            // Members added from elsewhere live in other slots: they are returned, not reached.
            invocation.arg("1");
        }
        let (mut reached, mut queued, mut full, mut expired, lapsed, epoch, offset, members): (
            u64,
            u64,
            u64,
            u64,
            u64,
            String,
            u64,
            Vec<String>,
        ) = self.run(&invocation).await?;
        for member in &members {
            // One command each (a cluster only): to another process's channel, or a named list.
            match member.split_once('!') {
                Some((process, _)) => {
                    let mut publish = redis::cmd("SPUBLISH");
                    publish.arg(self.key("p", process)).arg(encode(
                        &self.process,
                        0,
                        member,
                        event.json(),
                    ));
                    reached += self.run::<u64, _>(&publish).await?;
                }
                None => {
                    let (pushed, dropped) =
                        self.push_named(member, self.config.capacity, event).await?;
                    queued += pushed;
                    full += 1 - pushed;
                    expired += dropped;
                }
            }
        }
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
            position: (!epoch.is_empty()).then_some(StreamPosition { epoch, offset }),
        })
    }

    /// Pushes `event` onto named channel `channel`'s list unless it holds `capacity` unexpired
    /// messages: (1 if queued else 0, expired messages dropped on the way).
    async fn push_named(
        &self,
        channel: &str,
        capacity: usize,
        event: &Event,
    ) -> Result<(u64, u64), LayerError> {
        let now = now_ms();
        let expiry = millis(self.config.expiry);
        let mut invocation = self.scripts.send.key(self.key("c", channel));
        invocation.arg(capacity).arg(now).arg(expiry).arg(format!(
            "{} {}",
            now + expiry,
            event.json()
        ));
        self.run(&invocation).await
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
        let meta: Option<String> = self.run(&invocation).await?;
        if let Some(meta) = meta {
            let left = Presence {
                channel: channel.to_owned(),
                meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
            };
            self.announce(group, Change::Leave(left)).await?;
        }
        Ok(())
    }

    /// Tells `group` (every process) that a listing joined or left: at once as its own event,
    /// or, with a presence window, in this process's next diff for the group (the first change
    /// of a window schedules it).
    async fn announce(&self, group: &str, change: Change) -> Result<(), LayerError> {
        let Some(diffs) = &self.diffs else {
            self.publish_group(group, &change.event(), false).await?;
            return Ok(());
        };
        if diffs.note(group, change) {
            let (me, group, window) = (self.me.clone(), Box::<str>::from(group), diffs.window());
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                let Some(shared) = me.upgrade() else { return };
                let diff = shared.diffs.as_ref().and_then(|diffs| diffs.take(&group));
                if let Some(diff) = diff {
                    if let Err(error) = shared.publish_group(&group, &diff, false).await {
                        tracing::warn!(target: "switchboard::layer", group = &*group, %error, "could not send a presence diff");
                    }
                }
            });
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
        let client_error = |error: redis::RedisError| LayerError::Unavailable(backend_error(error));
        let timeout = config.command_timeout;
        fn in_time<T>(
            made: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
            timeout: Duration,
        ) -> Result<T, LayerError> {
            match made {
                Ok(Ok(made)) => Ok(made),
                Ok(Err(error)) => Err(LayerError::Unavailable(backend_error(error))),
                Err(_) => Err(LayerError::Unavailable(BackendError::Timeout(timeout))),
            }
        }
        let (to_subscriber, commands_in) = mpsc::channel(256);
        let (backend, subscription) = if config.is_cluster() {
            let nodes = config.cluster_nodes.clone();
            let certificates = config.tls_certificates();
            let builder = || {
                let builder = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout);
                match &certificates {
                    Some(certificates) => builder.certs(certificates.clone()),
                    None => builder,
                }
            };
            let commands_client = builder().build().map_err(client_error)?;
            let commands = in_time(
                tokio::time::timeout(timeout, commands_client.get_async_connection()).await,
                timeout,
            )?;
            let blocking = builder()
                .response_timeout(Duration::from_secs_f64(BLOCK_SECONDS) + timeout)
                .build()
                .map_err(client_error)?;
            // Sharded messages arrive as RESP3 pushes, handed over without waiting: a full queue
            // drops the message, which its number then shows as lost.
            let (pushes, pushed) = mpsc::channel(PUSH_QUEUE);
            let subscriptions = builder()
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(move |push: redis::PushInfo| pushes.try_send(push))
                .build()
                .map_err(client_error)?;
            (
                Backend::Cluster {
                    commands,
                    blocking: Box::new(blocking),
                },
                Some((subscriptions, pushed)),
            )
        } else {
            let client = match config.tls_certificates() {
                Some(certificates) => Client::build_with_tls(config.url.as_str(), certificates),
                None => Client::open(config.url.as_str()),
            }
            .map_err(client_error)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            let commands = in_time(
                tokio::time::timeout(
                    timeout,
                    client.get_connection_manager_with_config(manager_config),
                )
                .await,
                timeout,
            )?;
            (
                Backend::Single {
                    client: Box::new(client),
                    commands,
                },
                None,
            )
        };
        // Credentials and ACL at start-up, not at the first send: a key under the prefix.
        let probe = format!("{}:probe", config.prefix);
        async fn exists(
            mut connection: impl redis::aio::ConnectionLike,
            key: &str,
        ) -> redis::RedisResult<bool> {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut connection)
                .await
        }
        let probed = match &backend {
            Backend::Single { commands, .. } => {
                tokio::time::timeout(timeout, exists(commands.clone(), &probe)).await
            }
            Backend::Cluster { commands, .. } => {
                tokio::time::timeout(timeout, exists(commands.clone(), &probe)).await
            }
        };
        in_time(probed, timeout)?;
        let mut local_config = InMemoryConfig::default()
            .capacity(config.capacity)
            .expiry(config.expiry)
            .group_expiry(config.group_expiry);
        for (pattern, messages) in config.capacities.iter() {
            local_config = local_config.channel_capacity(pattern, messages);
        }
        let local = InMemoryChannelLayer::with_config(local_config);
        // Start recording the groups emptied here, to unsubscribe from exactly those.
        local.take_emptied_groups();
        let process: Box<str> = local.process_prefix().into();
        let stop = CancellationToken::new();
        let diffs = config.presence_window.map(PresenceDiffs::new);
        let shared = Arc::new_cyclic(|me| Shared {
            diffs,
            me: me.clone(),
            process_channel: format!("{}:p:{{{process}}}", config.prefix).into(),
            process,
            config,
            local,
            backend,
            scripts: Scripts::new(),
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
        match subscription {
            Some((client, pushes)) => {
                tokio::spawn(cluster_subscriber(
                    shared.clone(),
                    client,
                    pushes,
                    commands_in,
                    ready,
                ));
            }
            None => {
                tokio::spawn(subscriber(shared.clone(), commands_in, Some(ready)));
            }
        }
        tokio::spawn(heartbeat(shared.clone()));
        tokio::spawn(unsubscriber(shared.clone()));
        let layer = Self {
            shared: shared.clone(),
            _tasks: Arc::new(stop.drop_guard()),
        };
        match tokio::time::timeout(shared.config.command_timeout, is_ready).await {
            Ok(Ok(Ok(()))) => Ok(layer),
            Ok(Ok(Err(error))) => Err(LayerError::Unavailable(backend_error(error))),
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

    /// Counts a reader of named channel `channel`, starting its pump if it has none.
    fn start_reading(&self, channel: &str) -> Arc<Notify> {
        let mut pumps = lock(&self.shared.pumps);
        if let Some(pump) = pumps.get_mut(channel) {
            pump.readers += 1;
            return pump.taken.clone();
        }
        let taken = Arc::new(Notify::new());
        pumps.insert(
            channel.into(),
            Pump {
                taken: taken.clone(),
                readers: 1,
            },
        );
        tokio::spawn(pump(self.shared.clone(), channel.into(), taken.clone()));
        taken
    }

    /// Takes a reader of `channel` off (its pump ends by itself once idle with none).
    fn stop_reading(shared: &Shared, channel: &str) {
        if let Some(pump) = lock(&shared.pumps).get_mut(channel) {
            pump.readers = pump.readers.saturating_sub(1);
        }
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
        if let Some((process, _)) = channel.split_once('!') {
            let redis_channel = shared.key("p", process);
            let number = shared.next_number(&redis_channel);
            let payload = encode(&shared.process, number, channel, event.json());
            let reached: u64 = shared
                .run(
                    redis::cmd(shared.publish_command())
                        .arg(&redis_channel)
                        .arg(payload),
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
        let capacity = shared.config.capacity_for(channel);
        let (queued, expired) = shared.push_named(channel, capacity, &event).await?;
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
                capacity,
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
        /// Gives the reader's place back however `receive` ends (it is cancel safe).
        struct Reading<'a> {
            shared: &'a Shared,
            channel: &'a str,
        }
        impl Drop for Reading<'_> {
            fn drop(&mut self) {
                RedisChannelLayer::stop_reading(self.shared, self.channel);
            }
        }
        let taken = self.start_reading(channel);
        let _reading = Reading {
            shared: &self.shared,
            channel,
        };
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
        shared.run::<(), _>(&pipe).await
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
        shared
            .run::<(), _>(redis::cmd("ZREM").arg(shared.key("gn", group)).arg(channel))
            .await
    }

    async fn group_send(&self, group: &str, event: Event) -> Result<GroupSent, LayerError> {
        validate_group_name(group)?;
        self.shared.publish_group(group, &event, true).await
    }

    async fn recover(&self, group: &str, since: &StreamPosition) -> Result<Recovery, LayerError> {
        validate_group_name(group)?;
        let shared = &self.shared;
        let Some((_, age)) = shared.config.histories.of(group) else {
            return Ok(Recovery::NotRecovered { position: None });
        };
        let mut read = redis::pipe();
        read.get(shared.key("se", group))
            .get(shared.key("so", group))
            .cmd("XRANGE")
            .arg(shared.key("s", group))
            .arg(format!("{}-0", since.offset.saturating_add(1)))
            .arg("+");
        type Entries = Vec<(String, Vec<String>)>;
        let (epoch, offset, entries): (Option<String>, Option<u64>, Entries) =
            shared.run(&read).await?;
        let (Some(epoch), Some(offset)) = (epoch, offset) else {
            return Ok(Recovery::NotRecovered { position: None });
        };
        let position = StreamPosition { epoch, offset };
        if position.epoch != since.epoch || since.offset > offset {
            return Ok(Recovery::NotRecovered {
                position: Some(position),
            });
        }
        let oldest = now_ms().saturating_sub(millis(age));
        let mut events = Vec::with_capacity(entries.len());
        for (expected, (id, fields)) in (since.offset + 1..).zip(&entries) {
            let at_offset = id.split('-').next().and_then(|o| o.parse::<u64>().ok());
            let mut time = None;
            let mut json = None;
            for pair in fields.chunks(2) {
                match pair {
                    [name, value] if name == "t" => time = value.parse::<u64>().ok(),
                    [name, value] if name == "e" => json = Some(value),
                    _ => {}
                }
            }
            let event = json.and_then(|json| Event::from_json(json.as_str()).ok());
            match (at_offset, time, event) {
                (Some(at), Some(time), Some(event)) if at == expected && time > oldest => {
                    events.push(event.with_position(StreamPosition {
                        epoch: position.epoch.clone(),
                        offset: at,
                    }));
                }
                // Trimmed (a gap), too old, or unreadable: not all of what was missed is here.
                _ => {
                    return Ok(Recovery::NotRecovered {
                        position: Some(position),
                    })
                }
            }
        }
        if since.offset + events.len() as u64 != offset {
            return Ok(Recovery::NotRecovered {
                position: Some(position),
            });
        }
        Ok(Recovery::Recovered { events, position })
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
        shared
            .run::<(), _>(
                redis::cmd("HSET")
                    .arg(shared.key("pr", group))
                    .arg(channel)
                    .arg(meta_json),
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
            shared.run::<(), _>(&note).await?;
        }
        let joined = Presence {
            channel: channel.to_owned(),
            meta,
        };
        shared.announce(group, Change::Join(joined)).await?;
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
        let listed: HashMap<String, String> = shared
            .run(redis::cmd("HGETALL").arg(shared.key("pr", group)))
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
            let beats: Vec<Option<f64>> = shared.run(&scores).await?;
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
        let pattern = format!("{}:*", shared.config.prefix);
        if shared.is_cluster() {
            // `KEYS` goes to every primary (for tests, as `flush` is); `DEL` is split by slot.
            let registry = shared.registry_key();
            let keys: Vec<String> = shared.run(redis::cmd("KEYS").arg(&pattern)).await?;
            for key in keys.iter().filter(|key| **key != registry) {
                shared.run::<(), _>(redis::cmd("DEL").arg(key)).await?;
            }
            lock(&shared.listed).clear();
            return shared.local.flush().await;
        }
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = shared
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            // The registry says which processes run: not the layer's data.
            let registry = shared.registry_key();
            let keys: Vec<String> = keys.into_iter().filter(|key| *key != registry).collect();
            if !keys.is_empty() {
                shared.run::<(), _>(redis::cmd("DEL").arg(&keys)).await?;
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

/// A Redis error as the layer reports it: credentials and ACL refusals apart, since retrying
/// cannot mend them.
pub(super) fn backend_error(error: redis::RedisError) -> BackendError {
    let refused = error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "NOPERM" | "WRONGPASS"));
    if refused {
        BackendError::Refused(Box::new(error))
    } else {
        BackendError::Client(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_counts_gaps_and_late_arrivals() {
        let mut numbers = Numbers::new(3);
        for n in [4, 5, 7, 8, 10] {
            assert!(numbers.note(n));
        }
        assert_eq!(numbers.lost(), 2); // 6 and 9
        assert!(numbers.note(9), "a late arrival is new");
        assert_eq!(numbers.lost(), 1);
        for n in [3, 9, 10] {
            assert!(!numbers.note(n), "{n} came twice");
        }
        assert_eq!(numbers.lost(), 1);
        assert!(numbers.note(400), "far ahead");
        assert!(!numbers.note(400));
        assert!(numbers.note(10), "too far behind to tell: counted as new");
    }
}
