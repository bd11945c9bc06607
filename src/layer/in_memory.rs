//! `InMemoryChannelLayer`: the one-process layer, as Channels' `InMemoryChannelLayer` but with
//! costs that depend only on the channel or group touched.
//!
//! Locking: a map of channels, a map of groups, and a lock per group. The groups map is only ever
//! taken before a group's lock, never after; the channels map is never held with either. A
//! broadcast holds only its own group's lock while it fans out, so it never delays sends to other
//! channels or broadcasts to other groups.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::presence::{Change, PresenceDiffs};
use super::{
    is_process_specific, validate_channel_name, validate_group_name, ChannelLayer, ChannelQueue,
    ChannelReceiver, Event, GroupSent, LayerError, LayerStats, Presence,
};
use super::{GroupStream, Recovery, StreamPosition};

/// Settings of an [`InMemoryChannelLayer`]; the defaults are Channels'.
///
/// ```
/// use std::time::Duration;
/// use switchboard::layer::{InMemoryChannelLayer, InMemoryConfig};
///
/// let layer = InMemoryChannelLayer::with_config(
///     InMemoryConfig::default().capacity(500).expiry(Duration::from_secs(10)),
/// );
/// assert_eq!(layer.config().capacity, 500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InMemoryConfig {
    /// Messages a channel holds before `send` fails with `ChannelFull` (count), unless a
    /// [`channel_capacity`](Self::channel_capacity) pattern says otherwise. Default 100.
    pub capacity: usize,
    /// How long a message waits to be received before it is dropped. Default 60 s.
    pub expiry: Duration,
    /// How long a group membership lasts after its last `group_add`. Default 86400 s.
    pub group_expiry: Duration,
    /// Capacities by channel-name pattern, first match first.
    capacities: super::Capacities,
    /// Groups that keep a stream: (pattern, events, age), first match first.
    histories: super::Histories,
    /// With a window, presence changes go to a group as one [`PRESENCE_DIFF`](super::PRESENCE_DIFF)
    /// event per window instead of one event per change. Default `None`.
    pub presence_window: Option<Duration>,
}

impl InMemoryConfig {
    /// Gathers each group's presence changes (joins and leaves) over `window` and sends them as
    /// one [`PRESENCE_DIFF`](super::PRESENCE_DIFF) event (Phoenix's `presence_diff`) instead of
    /// one `presence.join` or `presence.leave` per change: a join storm of N into a room of N
    /// then costs each member a frame per window, not N frames. A change waits at most `window`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::layer::InMemoryConfig;
    ///
    /// let config = InMemoryConfig::default().presence_window(Duration::from_millis(50));
    /// assert_eq!(config.presence_window, Some(Duration::from_millis(50)));
    /// ```
    pub fn presence_window(mut self, window: Duration) -> Self {
        self.presence_window = Some(window);
        self
    }

    /// Gives channels whose name matches `pattern` (a glob: `*` any characters, `?` one,
    /// `[..]` a set) a capacity of `messages` instead of [`capacity`](Self::capacity); the first
    /// pattern that matches wins (Channels' `channel_capacity`). It applies to named channels and
    /// to process-specific ones (`specific.*!*`).
    ///
    /// ```
    /// use switchboard::layer::InMemoryConfig;
    ///
    /// let config = InMemoryConfig::default()
    ///     .channel_capacity("thumbnails", 1000)
    ///     .channel_capacity("jobs.*", 10);
    /// assert_eq!(config.capacity_for("thumbnails"), 1000);
    /// assert_eq!(config.capacity_for("jobs.resize"), 10);
    /// assert_eq!(config.capacity_for("other"), 100);
    /// ```
    ///
    /// # Panics
    ///
    /// If `pattern` is not a valid glob, or `messages` is 0 (programmer errors, caught at
    /// start-up).
    #[track_caller]
    pub fn channel_capacity(mut self, pattern: &str, messages: usize) -> Self {
        self.capacities.add(pattern, messages);
        self
    }

    /// Makes groups whose name matches `pattern` (a glob) keep a stream of their last `events`
    /// events, for `age` at most, so that a client that reconnects can
    /// [`recover`](crate::layer::ChannelLayer::recover) what it missed; the first pattern that
    /// matches wins. Events those groups deliver carry their
    /// [`position`](crate::layer::Event::position); `group_send` reports it. Groups that keep
    /// no stream cost nothing more.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::layer::InMemoryConfig;
    ///
    /// let config = InMemoryConfig::default().group_history("chat_*", 100, Duration::from_secs(300));
    /// # drop(config);
    /// ```
    ///
    /// # Panics
    ///
    /// If `pattern` is not a valid glob, or `events` is 0.
    #[track_caller]
    pub fn group_history(mut self, pattern: &str, events: usize, age: Duration) -> Self {
        self.histories.add(pattern, events, age);
        self
    }

    /// The stream bounds of `group`: (events, age), if it keeps a stream.
    pub(crate) fn history_of(&self, group: &str) -> Option<(usize, Duration)> {
        self.histories.of(group)
    }

    /// The capacity of the channel named `channel`: the first matching
    /// [`channel_capacity`](Self::channel_capacity) pattern's, or [`capacity`](Self::capacity).
    pub fn capacity_for(&self, channel: &str) -> usize {
        self.capacities.of(channel, self.capacity)
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
}

impl Default for InMemoryConfig {
    fn default() -> Self {
        Self {
            capacity: 100,
            expiry: Duration::from_secs(60),
            group_expiry: Duration::from_secs(86_400),
            capacities: super::Capacities::default(),
            histories: super::Histories::default(),
            presence_window: None,
        }
    }
}

/// The in-process channel layer: the default, no setup.
///
/// Semantics are those of the [layer module](crate::layer). Unlike Channels' in-memory layer,
/// whose `receive` and `group_send` walk every channel and membership, here `send` and
/// `receive` cost O(1) and `group_send` O(members of that group), however many other channels and
/// groups exist. Cloning it is cheap and every clone is the same layer.
///
/// ```
/// use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), switchboard::layer::LayerError> {
/// let layer = InMemoryChannelLayer::new();
/// let mut inbox = layer.new_channel().await?;
/// layer.group_add("lobby", inbox.name()).await?;
/// layer.group_send("lobby", Event::from_json(r#"{"type":"hello"}"#)?).await?;
/// assert_eq!(inbox.recv().await.event_type(), "hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryChannelLayer {
    inner: Arc<Inner>,
}

struct Inner {
    config: InMemoryConfig,
    /// `specific.<random>`: this layer's process-specific prefix.
    prefix: String,
    next_local: AtomicU64,
    channels: Mutex<Channels>,
    groups: Mutex<HashMap<Box<str>, Arc<Group>>>,
    counters: Counters,
    /// Named channels made since the last sweep for idle ones.
    made_since_sweep: AtomicU64,
    /// When the last sweep ran.
    last_sweep: Mutex<Instant>,
    /// The streams of groups that keep one (see `InMemoryConfig::group_history`).
    streams: Mutex<HashMap<Box<str>, Arc<Mutex<GroupStream>>>>,
    /// `group_send`s to streamed groups since spent streams were last swept.
    sent_since_stream_sweep: AtomicU64,
    /// Groups that lost their last member since the last [`InMemoryChannelLayer::take_emptied_groups`],
    /// kept only once somebody asked (the Redis layer unsubscribes from them).
    emptied: Mutex<Option<Vec<Box<str>>>>,
    /// Presence changes being gathered, with a presence window.
    diffs: Option<PresenceDiffs>,
    /// This layer, for the tasks that close presence windows.
    me: std::sync::Weak<Inner>,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    rejected_full: AtomicU64,
    dropped_full: AtomicU64,
    dropped_no_receiver: AtomicU64,
    expired_memberships: AtomicU64,
    /// Shared with every queue, which counts its own expired messages.
    expired: Arc<AtomicU64>,
}

struct ChannelEntry {
    queue: Arc<ChannelQueue>,
    /// The groups this channel is in, so that deleting it is O(its groups). May name a group it
    /// has lapsed from; leaving such a group finds nothing to do.
    groups: HashSet<Box<str>>,
    /// Calls of `receive` waiting on this (named) channel now.
    readers: usize,
}

impl ChannelEntry {
    fn new(queue: Arc<ChannelQueue>) -> Self {
        Self {
            queue,
            groups: HashSet::new(),
            readers: 0,
        }
    }
}

type Channels = HashMap<Arc<str>, ChannelEntry>;

/// Frees named channel `name` if nothing holds it: no message left (expired ones count as gone),
/// no `receive` waiting, no group membership — as Channels deletes an empty channel. Called with
/// the channels lock held, after every operation that may have left it idle.
fn free_if_idle(channels: &mut Channels, name: &str) {
    if is_process_specific(name) {
        return; // lives as long as its receiver
    }
    let idle = channels
        .get(name)
        .is_some_and(|e| e.readers == 0 && e.groups.is_empty() && e.queue.is_empty_now());
    if idle {
        channels.remove(name);
    }
}

/// Frees every idle named channel (those whose messages all expired with nobody reading).
fn sweep(channels: &mut Channels) {
    channels.retain(|name, e| {
        is_process_specific(name)
            || e.readers > 0
            || !e.groups.is_empty()
            || !e.queue.is_empty_now()
    });
}

#[derive(Default)]
struct Group {
    members: Mutex<Members>,
}

struct Member {
    queue: Arc<ChannelQueue>,
    expires_at: Instant,
    /// Set when the member is listed in the group's presence.
    presence: Option<Arc<serde_json::Value>>,
}

type Members = HashMap<Arc<str>, Member>;

/// Takes a lock; a panic while holding one of these locks cannot leave its map inconsistent
/// (every change completes before anything that could panic), so a poisoned lock is taken too.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one delivery to a group did.
#[derive(Default)]
struct FanOut {
    queued: u64,
    full: u64,
    /// Members dropped because their membership lapsed.
    lapsed: Vec<Arc<str>>,
    /// Of those, the ones that were listed: their leaves are announced once the lock is let go.
    left: Vec<Presence>,
    /// Whether the group has no members left.
    emptied: bool,
}

/// Puts `event` on the queue of every unexpired member, and drops the lapsed ones (the listed
/// among them are in `left`, for the caller to announce once it let the lock go). O(members);
/// the caller holds the group's lock and nothing else.
fn deliver(members: &mut Members, event: &Event) -> FanOut {
    let now = Instant::now();
    let mut out = FanOut::default();
    members.retain(|channel, member| {
        if member.expires_at <= now {
            out.lapsed.push(channel.clone());
            if let Some(meta) = member.presence.take() {
                out.left.push(Presence {
                    channel: channel.to_string(),
                    meta: (*meta).clone(),
                });
            }
            return false;
        }
        match member.queue.push(event.clone(), now) {
            Ok(()) => out.queued += 1,
            Err(_) => out.full += 1,
        }
        true
    });
    out.emptied = members.is_empty();
    out
}

impl InMemoryChannelLayer {
    /// A layer with Channels' defaults: capacity 100, expiry 60 s, group expiry 86400 s.
    pub fn new() -> Self {
        Self::with_config(InMemoryConfig::default())
    }

    /// A layer with the given settings.
    ///
    /// # Panics
    ///
    /// If `config.capacity` is 0.
    #[track_caller]
    pub fn with_config(config: InMemoryConfig) -> Self {
        assert!(config.capacity > 0, "channel capacity must be at least 1");
        let diffs = config.presence_window.map(PresenceDiffs::new);
        Self {
            inner: Arc::new_cyclic(|me| Inner {
                diffs,
                me: me.clone(),
                config,
                prefix: format!("specific.{:012x}", rand::random::<u64>() >> 16),
                next_local: AtomicU64::new(1),
                channels: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                made_since_sweep: AtomicU64::new(0),
                last_sweep: Mutex::new(Instant::now()),
                streams: Mutex::new(HashMap::new()),
                sent_since_stream_sweep: AtomicU64::new(0),
                emptied: Mutex::new(None),
            }),
        }
    }

    /// The layer's settings.
    pub fn config(&self) -> &InMemoryConfig {
        &self.inner.config
    }

    /// The part before `!` of the channel names this layer makes (`specific.<12 hex digits>`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn process_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The groups that lost their last member since the last call (the first call starts the
    /// record and returns nothing).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn take_emptied_groups(&self) -> Vec<Box<str>> {
        lock(&self.inner.emptied)
            .replace(Vec::new())
            .unwrap_or_default()
    }

    /// Whether `group` has members here.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn has_group(&self, group: &str) -> bool {
        lock(&self.inner.groups).contains_key(group)
    }
}

impl Default for InMemoryChannelLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InMemoryChannelLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryChannelLayer")
            .field("prefix", &self.inner.prefix)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// A queue for a consumer's own channel (`single_reader`) or a named channel.
    fn new_queue(&self, channel: &str, single_reader: bool) -> Arc<ChannelQueue> {
        Arc::new(ChannelQueue::new(
            self.config.capacity_for(channel),
            self.config.expiry,
            self.counters.expired.clone(),
            single_reader,
        ))
    }

    /// The queue of `channel` (and its key), making a named channel if there is none and, with
    /// `join`, noting that it is in that group; `None` for a process-specific channel that is gone.
    fn queue_of(&self, channel: &str, join: Option<&str>) -> Option<(Arc<str>, Arc<ChannelQueue>)> {
        let mut channels = lock(&self.channels);
        self.entry(&mut channels, channel)?;
        self.queue_in(&mut channels, channel, join)
    }

    /// Makes named channel `channel` if it does not exist; `None` for a process-specific channel
    /// that is gone. When as many channels were made as exist, or an expiry period passed, since
    /// the last sweep, frees the idle ones first (amortized O(1) per channel made).
    fn entry<'a>(&self, channels: &'a mut Channels, channel: &str) -> Option<&'a mut ChannelEntry> {
        if !channels.contains_key(channel) {
            if is_process_specific(channel) {
                return None;
            }
            let made = self.made_since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
            let now = Instant::now();
            let mut last_sweep = lock(&self.last_sweep);
            let due = (made >= 1024 && made as usize >= channels.len())
                || now.duration_since(*last_sweep) >= self.config.expiry;
            if due {
                self.made_since_sweep.store(0, Ordering::Relaxed);
                *last_sweep = now;
                drop(last_sweep);
                sweep(channels);
            }
            channels.insert(
                channel.into(),
                ChannelEntry::new(self.new_queue(channel, false)),
            );
        }
        channels.get_mut(channel)
    }

    fn queue_in(
        &self,
        channels: &mut Channels,
        channel: &str,
        join: Option<&str>,
    ) -> Option<(Arc<str>, Arc<ChannelQueue>)> {
        let (key, entry) = channels.get_key_value(channel)?;
        let found = (key.clone(), entry.queue.clone());
        if let Some(group) = join {
            if let Some(entry) = channels.get_mut(channel) {
                if !entry.groups.contains(group) {
                    entry.groups.insert(group.into());
                }
            }
        }
        Some(found)
    }

    fn group(&self, group: &str) -> Option<Arc<Group>> {
        lock(&self.groups).get(group).cloned()
    }

    /// Delivers `event` to `group` and tidies up after it: lapsed members, an emptied group.
    fn broadcast(&self, group: &str, event: &Event) -> GroupSent {
        let Some(members) = self.group(group) else {
            return GroupSent::default();
        };
        let out = deliver(&mut lock(&members.members), event);
        self.settle(group, &out);
        GroupSent {
            queued: out.queued as usize,
            skipped_full: out.full as usize,
            processes: 0,
            position: None,
        }
    }

    /// Counts a delivery, says so in the log when members were skipped, and does the cleanup
    /// that needs the other locks.
    fn settle(&self, group: &str, out: &FanOut) {
        let counters = &self.counters;
        counters.queued.fetch_add(out.queued, Ordering::Relaxed);
        if out.full > 0 {
            counters.dropped_full.fetch_add(out.full, Ordering::Relaxed);
            tracing::warn!(
                target: "switchboard::layer",
                group,
                skipped = out.full,
                delivered = out.queued,
                "group delivery skipped members whose channel was full"
            );
        }
        if !out.lapsed.is_empty() {
            counters
                .expired_memberships
                .fetch_add(out.lapsed.len() as u64, Ordering::Relaxed);
            let mut channels = lock(&self.channels);
            for channel in &out.lapsed {
                if let Some(entry) = channels.get_mut(channel) {
                    entry.groups.remove(group);
                }
                free_if_idle(&mut channels, channel);
            }
        }
        if out.emptied {
            self.drop_if_empty(group);
        }
        for left in &out.left {
            self.announce(group, Change::Leave(left.clone()));
        }
    }

    /// Tells `group` that a listing joined or left: at once as its own event, or, with a
    /// presence window, in the group's next diff (the first change of a window schedules it).
    fn announce(&self, group: &str, change: Change) {
        let Some(diffs) = &self.diffs else {
            self.broadcast(group, &change.event());
            return;
        };
        let opened = diffs.note(group, change);
        if !opened {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on (a receiver dropped outside one): the window closes now.
            if let Some(diff) = diffs.take(group) {
                self.broadcast(group, &diff);
            }
            return;
        };
        let (me, group, window) = (self.me.clone(), Box::<str>::from(group), diffs.window());
        runtime.spawn(async move {
            tokio::time::sleep(window).await;
            let Some(inner) = me.upgrade() else { return };
            if let Some(diff) = inner.diffs.as_ref().and_then(|diffs| diffs.take(&group)) {
                inner.broadcast(&group, &diff);
            }
        });
    }

    fn drop_if_empty(&self, group: &str) {
        let mut groups = lock(&self.groups);
        let empty = groups
            .get(group)
            .is_some_and(|g| lock(&g.members).is_empty());
        if empty {
            groups.remove(group);
            drop(groups);
            if let Some(emptied) = lock(&self.emptied).as_mut() {
                emptied.push(group.into());
            }
        }
    }

    /// Adds `channel` to `group` (renewing its expiry), listed with `presence` if given; keeps a
    /// listing it had when `presence` is `None`. `false` if the channel is a departed one.
    fn join_group(
        &self,
        group: &str,
        channel: &str,
        presence: Option<Arc<serde_json::Value>>,
    ) -> bool {
        let Some((key, queue)) = self.queue_of(channel, Some(group)) else {
            tracing::debug!(target: "switchboard::layer", group, channel, "group_add of a channel whose receiver is gone: ignored");
            return false;
        };
        let expires_at = Instant::now() + self.config.group_expiry;
        {
            let mut groups = lock(&self.groups);
            let members = groups.entry(group.into()).or_default().clone();
            let mut members = lock(&members.members);
            drop(groups);
            let presence =
                presence.or_else(|| members.get(channel).and_then(|m| m.presence.clone()));
            members.insert(
                key,
                Member {
                    queue,
                    expires_at,
                    presence,
                },
            );
        }
        // The channel may have been deleted since it was looked up: then undo the membership.
        if !lock(&self.channels).contains_key(channel) {
            self.leave_group(group, channel);
            return false;
        }
        true
    }

    /// Takes `channel` out of `group`, telling the group if it was listed there.
    fn leave_group(&self, group: &str, channel: &str) {
        let Some(members) = self.group(group) else {
            return;
        };
        let mut out = FanOut::default();
        {
            let mut members = lock(&members.members);
            if let Some(member) = members.remove(channel) {
                if let Some(meta) = member.presence {
                    out.left.push(Presence {
                        channel: channel.to_owned(),
                        meta: (*meta).clone(),
                    });
                }
            }
            out.emptied = members.is_empty();
        }
        self.settle(group, &out);
    }

    /// The stream of `group`, made if it has none. Every so many sends, streams whose events all
    /// aged out are dropped (their next event starts a new epoch).
    fn stream(&self, group: &str, events: usize, age: Duration) -> Arc<Mutex<GroupStream>> {
        let mut streams = lock(&self.streams);
        let sent = self.sent_since_stream_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        if sent >= 1024 && sent as usize >= streams.len() {
            self.sent_since_stream_sweep.store(0, Ordering::Relaxed);
            let now = Instant::now();
            streams.retain(|name, stream| &**name == group || !lock(stream).is_spent(now));
        }
        streams
            .entry(group.into())
            .or_insert_with(|| Arc::new(Mutex::new(GroupStream::new(events, age))))
            .clone()
    }

    /// Takes `group` off `channel`'s memberships, and frees the channel if that left it idle.
    fn forget_membership(&self, group: &str, channel: &str) {
        let mut channels = lock(&self.channels);
        if let Some(entry) = channels.get_mut(channel) {
            entry.groups.remove(group);
        }
        free_if_idle(&mut channels, channel);
    }

    fn forget_channel(&self, channel: &str) {
        let Some(entry) = lock(&self.channels).remove(channel) else {
            return;
        };
        for group in entry.groups {
            self.leave_group(&group, channel);
        }
    }
}

#[async_trait]
impl ChannelLayer for InMemoryChannelLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        let inner = &self.inner;
        let local = inner.next_local.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = format!("{}!{local}", inner.prefix).into();
        let queue = inner.new_queue(&name, true);
        lock(&inner.channels).insert(name.clone(), ChannelEntry::new(queue.clone()));
        let weak: Weak<Inner> = Arc::downgrade(inner);
        Ok(ChannelReceiver::new(
            name,
            queue,
            Box::new(move |name| {
                if let Some(inner) = weak.upgrade() {
                    inner.forget_channel(name);
                }
            }),
        ))
    }

    async fn send(&self, channel: &str, event: Event) -> Result<(), LayerError> {
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let pushed = if is_process_specific(channel) {
            inner
                .queue_of(channel, None)
                .map(|(_, queue)| (queue.push(event, Instant::now()), queue))
        } else {
            // A named channel is pushed to under the channels lock, so that it cannot be freed
            // between being found and receiving the message.
            let mut channels = lock(&inner.channels);
            inner
                .entry(&mut channels, channel)
                .map(|entry| (entry.queue.push(event, Instant::now()), entry.queue.clone()))
        };
        let Some((pushed, queue)) = pushed else {
            inner
                .counters
                .dropped_no_receiver
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "switchboard::layer", channel, "send to a channel whose receiver is gone: dropped");
            return Ok(());
        };
        match pushed {
            Ok(()) => {
                inner.counters.queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                inner.counters.rejected_full.fetch_add(1, Ordering::Relaxed);
                Err(LayerError::ChannelFull {
                    channel: channel.to_owned(),
                    capacity: queue.capacity(),
                })
            }
        }
    }

    async fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let queue = {
            let mut channels = lock(&inner.channels);
            if is_process_specific(channel) && !channels.contains_key(channel) {
                // A process-specific name this layer did not make (or whose receiver is gone):
                // nothing will ever arrive on it here (channels_redis raises the same).
                return Err(LayerError::ForeignChannel {
                    channel: channel.to_owned(),
                });
            }
            let Some(entry) = inner.entry(&mut channels, channel) else {
                unreachable!("named channels are made on demand")
            };
            entry.readers += 1;
            entry.queue.clone()
        };
        /// Gives the reader's place back however `receive` ends (it is cancel safe), freeing the
        /// channel if it was the last thing holding it.
        struct Reading<'a> {
            inner: &'a Inner,
            channel: &'a str,
        }
        impl Drop for Reading<'_> {
            fn drop(&mut self) {
                let mut channels = lock(&self.inner.channels);
                if let Some(entry) = channels.get_mut(self.channel) {
                    entry.readers = entry.readers.saturating_sub(1);
                }
                free_if_idle(&mut channels, self.channel);
            }
        }
        let _reading = Reading { inner, channel };
        Ok(queue.pop().await)
    }

    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        self.inner.join_group(group, channel, None);
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        self.inner.leave_group(group, channel);
        self.inner.forget_membership(group, channel);
        Ok(())
    }

    async fn group_send(&self, group: &str, event: Event) -> Result<GroupSent, LayerError> {
        validate_group_name(group)?;
        let inner = &self.inner;
        let Some((events, age)) = inner.config.history_of(group) else {
            return Ok(inner.broadcast(group, &event));
        };
        let stream = inner.stream(group, events, age);
        // The stream's lock is held while members get the event, so that offsets go out in order.
        let mut stream = lock(&stream);
        let event = stream.append(&event, Instant::now());
        let mut sent = inner.broadcast(group, &event);
        sent.position = event.position().cloned();
        Ok(sent)
    }

    async fn recover(&self, group: &str, since: &StreamPosition) -> Result<Recovery, LayerError> {
        validate_group_name(group)?;
        let Some(stream) = lock(&self.inner.streams).get(group).cloned() else {
            return Ok(Recovery::NotRecovered { position: None });
        };
        let recovery = lock(&stream).recover(since, Instant::now());
        Ok(recovery)
    }

    async fn presence_add(
        &self,
        group: &str,
        channel: &str,
        meta: serde_json::Value,
    ) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let joined = Presence {
            channel: channel.to_owned(),
            meta,
        };
        if self
            .inner
            .join_group(group, channel, Some(Arc::new(joined.meta.clone())))
        {
            self.inner.announce(group, Change::Join(joined));
        }
        Ok(())
    }

    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let Some(members) = self.inner.group(group) else {
            return Ok(());
        };
        let meta = lock(&members.members)
            .get_mut(channel)
            .and_then(|member| member.presence.take());
        if let Some(meta) = meta {
            let left = Presence {
                channel: channel.to_owned(),
                meta: (*meta).clone(),
            };
            self.inner.announce(group, Change::Leave(left));
        }
        Ok(())
    }

    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        validate_group_name(group)?;
        let Some(members) = self.inner.group(group) else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let members = lock(&members.members);
        Ok(members
            .iter()
            .filter(|(_, member)| member.expires_at > now)
            .filter_map(|(channel, member)| {
                member.presence.as_ref().map(|meta| Presence {
                    channel: channel.to_string(),
                    meta: (**meta).clone(),
                })
            })
            .collect())
    }

    async fn flush(&self) -> Result<(), LayerError> {
        {
            let mut channels = lock(&self.inner.channels);
            for entry in channels.values_mut() {
                entry.queue.clear();
                entry.groups.clear();
            }
            sweep(&mut channels);
        }
        lock(&self.inner.groups).clear();
        Ok(())
    }

    fn stats(&self) -> LayerStats {
        let channels = lock(&self.inner.channels).len();
        let (groups, memberships) = {
            let groups = lock(&self.inner.groups);
            let memberships = groups.values().map(|g| lock(&g.members).len()).sum();
            (groups.len(), memberships)
        };
        let c = &self.inner.counters;
        LayerStats {
            channels,
            groups,
            memberships,
            queued: c.queued.load(Ordering::Relaxed),
            rejected_full: c.rejected_full.load(Ordering::Relaxed),
            dropped_full: c.dropped_full.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            dropped_no_receiver: c.dropped_no_receiver.load(Ordering::Relaxed),
            expired_memberships: c.expired_memberships.load(Ordering::Relaxed),
            lost: 0,
            unavailable: 0,
            reconnections: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While one group's lock is held (as during a long fan-out), everything that does not
    /// touch that group goes on: the layer has no global lock on the broadcast path.
    #[tokio::test]
    #[allow(
        clippy::await_holding_lock,
        reason = "the point: in-memory operations finish without suspending, the lock held"
    )]
    async fn a_busy_group_blocks_nothing_else() {
        let layer = InMemoryChannelLayer::new();
        let big = layer.new_channel().await.unwrap();
        layer.group_add("big", big.name()).await.unwrap();
        let mut other = layer.new_channel().await.unwrap();
        layer.group_add("small", other.name()).await.unwrap();

        let group = layer.inner.group("big").unwrap();
        let held = lock(&group.members);
        let event = Event::from_json(r#"{"type":"t"}"#).unwrap();
        layer.send(other.name(), event.clone()).await.unwrap();
        layer.group_send("small", event.clone()).await.unwrap();
        layer.group_add("third", other.name()).await.unwrap();
        assert_eq!(other.try_recv().unwrap().event_type(), "t");
        assert_eq!(other.try_recv().unwrap().event_type(), "t");
        drop(held); // `stats` counts every group's members, that one too
        assert_eq!(layer.stats().groups, 3);
    }
}
