//! `InMemoryChannelLayer`: the one-process layer, as Channels' `InMemoryChannelLayer` but with
//! costs that depend only on the channel or group touched.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    is_process_specific, validate_channel_name, validate_group_name, ChannelLayer, ChannelQueue,
    ChannelReceiver, Event, LayerError, LayerStats, Presence, PRESENCE_JOIN, PRESENCE_LEAVE,
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InMemoryConfig {
    /// Messages a channel holds before `send` fails with `ChannelFull` (count). Default 100.
    pub capacity: usize,
    /// How long a message waits to be received before it is dropped. Default 60 s.
    pub expiry: Duration,
    /// How long a group membership lasts after its last `group_add`. Default 86400 s.
    pub group_expiry: Duration,
}

impl InMemoryConfig {
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
    state: Mutex<State>,
    counters: Counters,
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

#[derive(Default)]
struct State {
    channels: HashMap<Arc<str>, ChannelEntry>,
    groups: HashMap<Box<str>, HashMap<Arc<str>, Member>>,
}

struct ChannelEntry {
    queue: Arc<ChannelQueue>,
    /// The groups this channel is in, so that deleting it is O(its groups).
    groups: HashSet<Box<str>>,
}

struct Member {
    queue: Arc<ChannelQueue>,
    expires_at: Instant,
    /// Set when the member is listed in the group's presence.
    presence: Option<Arc<serde_json::Value>>,
}

type Members = HashMap<Arc<str>, Member>;

/// What one delivery to a group did.
#[derive(Default)]
struct FanOut {
    queued: u64,
    full: u64,
    lapsed: u64,
    /// Listed members whose membership lapsed: each owes the group a leave event.
    left: Vec<Presence>,
}

impl FanOut {
    /// Adds `other`'s counts (its `left` is the caller's to deliver).
    fn add(&mut self, other: &FanOut) {
        self.queued += other.queued;
        self.full += other.full;
        self.lapsed += other.lapsed;
    }
}

/// Puts `event` on the queue of every unexpired member of `group`, dropping lapsed members (and
/// their channels' note of the group). O(members).
fn fan_out(
    channels: &mut HashMap<Arc<str>, ChannelEntry>,
    group: &str,
    members: &mut Members,
    event: &Event,
) -> FanOut {
    let now = Instant::now();
    let mut out = FanOut::default();
    members.retain(|channel, member| {
        if member.expires_at <= now {
            out.lapsed += 1;
            if let Some(entry) = channels.get_mut(channel) {
                entry.groups.remove(group);
            }
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
    out
}

/// Delivers `event` to `group`, then the leave events of listed members that lapsed on the way
/// (and of any that lapse while those go out). Drops the group if it emptied.
fn deliver(state: &mut State, group: &str, event: &Event) -> FanOut {
    let State { channels, groups } = state;
    let Some(members) = groups.get_mut(group) else {
        return FanOut::default();
    };
    let mut out = fan_out(channels, group, members, event);
    let mut owed = std::mem::take(&mut out.left);
    while let Some(left) = owed.pop() {
        let mut more = fan_out(channels, group, members, &left.event(PRESENCE_LEAVE));
        out.add(&more);
        owed.append(&mut more.left);
    }
    if members.is_empty() {
        groups.remove(group);
    }
    out
}

/// Tells `group` that `channel`, listed with `meta`, has left its presence.
fn announce_leave(
    state: &mut State,
    group: &str,
    channel: &str,
    meta: &serde_json::Value,
) -> FanOut {
    let left = Presence {
        channel: channel.to_owned(),
        meta: meta.clone(),
    };
    deliver(state, group, &left.event(PRESENCE_LEAVE))
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
        Self {
            inner: Arc::new(Inner {
                config,
                prefix: format!("specific.{:012x}", rand::random::<u64>() >> 16),
                next_local: AtomicU64::new(1),
                state: Mutex::new(State::default()),
                counters: Counters::default(),
            }),
        }
    }

    /// The layer's settings.
    pub fn config(&self) -> &InMemoryConfig {
        &self.inner.config
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
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to `State` is completed before any call that could panic: take it anyway.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A queue for a consumer's own channel (`single_reader`) or a named channel.
    fn new_queue(&self, single_reader: bool) -> Arc<ChannelQueue> {
        Arc::new(ChannelQueue::new(
            self.config.capacity,
            self.config.expiry,
            self.counters.expired.clone(),
            single_reader,
        ))
    }

    /// The queue of `channel`, making a named channel if there is none; `None` for a
    /// process-specific channel that is gone.
    fn queue_of(&self, state: &mut State, channel: &str) -> Option<Arc<ChannelQueue>> {
        if let Some(entry) = state.channels.get(channel) {
            return Some(entry.queue.clone());
        }
        if is_process_specific(channel) {
            return None;
        }
        let queue = self.new_queue(false);
        state.channels.insert(
            channel.into(),
            ChannelEntry {
                queue: queue.clone(),
                groups: HashSet::new(),
            },
        );
        Some(queue)
    }

    fn forget_channel(&self, channel: &str) {
        let mut out = FanOut::default();
        {
            let mut state = self.lock();
            let Some(entry) = state.channels.remove(channel) else {
                return;
            };
            for group in entry.groups {
                out.add(&self.leave_group(&mut state, &group, channel));
            }
        }
        self.record(&out, "(departed member's groups)");
    }

    /// Takes `channel` out of `group`, telling the group if it was listed there.
    fn leave_group(&self, state: &mut State, group: &str, channel: &str) -> FanOut {
        let Some(members) = state.groups.get_mut(group) else {
            return FanOut::default();
        };
        let Some(member) = members.remove(channel) else {
            return FanOut::default();
        };
        if members.is_empty() {
            state.groups.remove(group);
        }
        if let Some(entry) = state.channels.get_mut(channel) {
            entry.groups.remove(group);
        }
        match member.presence {
            Some(meta) => announce_leave(state, group, channel, &meta),
            None => FanOut::default(),
        }
    }

    /// Adds `channel` to `group` (renewing its expiry), listed with `presence` if given; keeps a
    /// listing it had when `presence` is `None`. `false` if the channel is a departed one.
    fn join_group(
        &self,
        state: &mut State,
        group: &str,
        channel: &str,
        presence: Option<Arc<serde_json::Value>>,
    ) -> bool {
        let Some(queue) = self.queue_of(state, channel) else {
            tracing::debug!(target: "switchboard::layer", group, channel, "group_add of a channel whose receiver is gone: ignored");
            return false;
        };
        let State { channels, groups } = state;
        let Some((key, entry)) = channels.get_key_value(channel) else {
            return false;
        };
        let key = key.clone();
        if !entry.groups.contains(group) {
            if let Some(entry) = channels.get_mut(channel) {
                entry.groups.insert(group.into());
            }
        }
        let expires_at = Instant::now() + self.config.group_expiry;
        let members = groups.entry(group.into()).or_default();
        let presence = presence.or_else(|| members.get(channel).and_then(|m| m.presence.clone()));
        members.insert(
            key,
            Member {
                queue,
                expires_at,
                presence,
            },
        );
        true
    }

    /// Counts a delivery and says so in the log when members were skipped.
    fn record(&self, out: &FanOut, group: &str) {
        let counters = &self.counters;
        counters.queued.fetch_add(out.queued, Ordering::Relaxed);
        if out.lapsed > 0 {
            counters
                .expired_memberships
                .fetch_add(out.lapsed, Ordering::Relaxed);
        }
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
    }
}

#[async_trait]
impl ChannelLayer for InMemoryChannelLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        let inner = &self.inner;
        let local = inner.next_local.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = format!("{}!{local}", inner.prefix).into();
        let queue = inner.new_queue(true);
        inner.lock().channels.insert(
            name.clone(),
            ChannelEntry {
                queue: queue.clone(),
                groups: HashSet::new(),
            },
        );
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
        let queue = inner.queue_of(&mut inner.lock(), channel);
        let Some(queue) = queue else {
            inner
                .counters
                .dropped_no_receiver
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "switchboard::layer", channel, "send to a channel whose receiver is gone: dropped");
            return Ok(());
        };
        match queue.push(event, Instant::now()) {
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
        let queue = {
            let mut state = self.inner.lock();
            match self.inner.queue_of(&mut state, channel) {
                Some(queue) => queue,
                // A process-specific name nobody owns: make it, so that sends reach this caller.
                None => {
                    let queue = self.inner.new_queue(false);
                    state.channels.insert(
                        channel.into(),
                        ChannelEntry {
                            queue: queue.clone(),
                            groups: HashSet::new(),
                        },
                    );
                    queue
                }
            }
        };
        Ok(queue.pop().await)
    }

    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        self.inner
            .join_group(&mut self.inner.lock(), group, channel, None);
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let out = self
            .inner
            .leave_group(&mut self.inner.lock(), group, channel);
        self.inner.record(&out, group);
        Ok(())
    }

    async fn group_send(&self, group: &str, event: Event) -> Result<(), LayerError> {
        validate_group_name(group)?;
        let out = deliver(&mut self.inner.lock(), group, &event);
        self.inner.record(&out, group);
        Ok(())
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
        let event = joined.event(PRESENCE_JOIN);
        let out = {
            let mut state = self.inner.lock();
            if !self
                .inner
                .join_group(&mut state, group, channel, Some(Arc::new(joined.meta)))
            {
                return Ok(());
            }
            deliver(&mut state, group, &event)
        };
        self.inner.record(&out, group);
        Ok(())
    }

    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let out = {
            let mut state = self.inner.lock();
            let meta = state
                .groups
                .get_mut(group)
                .and_then(|members| members.get_mut(channel))
                .and_then(|member| member.presence.take());
            match meta {
                Some(meta) => announce_leave(&mut state, group, channel, &meta),
                None => return Ok(()),
            }
        };
        self.inner.record(&out, group);
        Ok(())
    }

    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        validate_group_name(group)?;
        let now = Instant::now();
        let state = self.inner.lock();
        let Some(members) = state.groups.get(group) else {
            return Ok(Vec::new());
        };
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
        let mut state = self.inner.lock();
        for entry in state.channels.values_mut() {
            entry.queue.clear();
            entry.groups.clear();
        }
        state.groups.clear();
        Ok(())
    }

    fn stats(&self) -> LayerStats {
        let (channels, groups, memberships) = {
            let state = self.inner.lock();
            (
                state.channels.len(),
                state.groups.len(),
                state.groups.values().map(HashMap::len).sum(),
            )
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
        }
    }
}
