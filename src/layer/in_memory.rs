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
    ChannelReceiver, Event, LayerError, LayerStats,
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

    fn new_queue(&self) -> Arc<ChannelQueue> {
        Arc::new(ChannelQueue::new(
            self.config.capacity,
            self.config.expiry,
            self.counters.expired.clone(),
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
        let queue = self.new_queue();
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
        let mut state = self.lock();
        let State { channels, groups } = &mut *state;
        let Some(entry) = channels.remove(channel) else {
            return;
        };
        for group in entry.groups {
            if let Some(members) = groups.get_mut(&group) {
                members.remove(channel);
                if members.is_empty() {
                    groups.remove(&group);
                }
            }
        }
    }
}

#[async_trait]
impl ChannelLayer for InMemoryChannelLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        let inner = &self.inner;
        let local = inner.next_local.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = format!("{}!{local}", inner.prefix).into();
        let queue = inner.new_queue();
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
        match queue.push(event) {
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
                    let queue = self.inner.new_queue();
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
        let inner = &self.inner;
        let mut state = inner.lock();
        let Some(queue) = inner.queue_of(&mut state, channel) else {
            tracing::debug!(target: "switchboard::layer", group, channel, "group_add of a channel whose receiver is gone: ignored");
            return Ok(());
        };
        let State { channels, groups } = &mut *state;
        if let Some(entry) = channels.get_mut(channel) {
            if !entry.groups.contains(group) {
                entry.groups.insert(group.into());
            }
        }
        let key: Arc<str> = channels
            .get_key_value(channel)
            .map_or_else(|| channel.into(), |(key, _)| key.clone());
        let expires_at = Instant::now() + inner.config.group_expiry;
        groups
            .entry(group.into())
            .or_default()
            .insert(key, Member { queue, expires_at });
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut state = self.inner.lock();
        let State { channels, groups } = &mut *state;
        if let Some(members) = groups.get_mut(group) {
            members.remove(channel);
            if members.is_empty() {
                groups.remove(group);
            }
        }
        if let Some(entry) = channels.get_mut(channel) {
            entry.groups.remove(group);
        }
        Ok(())
    }

    async fn group_send(&self, group: &str, event: Event) -> Result<(), LayerError> {
        validate_group_name(group)?;
        let inner = &self.inner;
        let (mut queued, mut full, mut lapsed) = (0u64, 0u64, 0u64);
        {
            let mut state = inner.lock();
            let State { channels, groups } = &mut *state;
            let Some(members) = groups.get_mut(group) else {
                return Ok(());
            };
            let now = Instant::now();
            members.retain(|channel, member| {
                if member.expires_at <= now {
                    lapsed += 1;
                    if let Some(entry) = channels.get_mut(channel) {
                        entry.groups.remove(group);
                    }
                    return false;
                }
                match member.queue.push(event.clone()) {
                    Ok(()) => queued += 1,
                    Err(_) => full += 1,
                }
                true
            });
            if members.is_empty() {
                groups.remove(group);
            }
        }
        let counters = &inner.counters;
        counters.queued.fetch_add(queued, Ordering::Relaxed);
        if lapsed > 0 {
            counters
                .expired_memberships
                .fetch_add(lapsed, Ordering::Relaxed);
        }
        if full > 0 {
            counters.dropped_full.fetch_add(full, Ordering::Relaxed);
            tracing::warn!(
                target: "switchboard::layer",
                group,
                skipped = full,
                delivered = queued,
                "group_send skipped members whose channel was full"
            );
        }
        Ok(())
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
