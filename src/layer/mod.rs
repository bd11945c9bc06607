//! The channel layer: process-wide (or cluster-wide) messaging between consumers, as in Channels.
//!
//! # Semantics
//!
//! A *channel* is a bounded queue with a name. [`ChannelLayer::new_channel`] makes a
//! process-specific channel (its name has a `!`, e.g. `specific.1f0c…!42`) and hands back the one
//! [`ChannelReceiver`] that reads it; every consumer gets one on connect. Any other valid name is a
//! *named channel* that exists as soon as somebody sends to it or receives from it (a worker's
//! `"thumbnails"`), read with [`ChannelLayer::receive`], and is deleted again, as in Channels, once
//! it holds no message (expired ones count as gone), nobody waits in `receive` on it and it is in
//! no group: an app may use a fresh name per job or per user without the layer growing.
//!
//! A *group* is a named set of channel names. [`ChannelLayer::group_send`] delivers one message to
//! every member; the message is encoded once and shared by all of them ([`Event`] is a
//! reference-counted JSON text).
//!
//! **Capacity.** Each channel holds at most `capacity` messages (Channels' default, 100).
//! [`ChannelLayer::send`] to a full channel fails with [`LayerError::ChannelFull`];
//! [`ChannelLayer::group_send`] skips a full member, and — unlike Channels, which loses those
//! messages silently — counts each skip in [`LayerStats::dropped_full`] and logs it at `WARN` on the
//! target `switchboard::layer`.
//!
//! **Expiry.** A message not received within `expiry` (default 60 s) is dropped and counted in
//! [`LayerStats::expired`]. A group membership lasts `group_expiry` (default 86400 s, Channels'
//! `group_expiry`) from its last `group_add`; an expired member gets no more group messages.
//!
//! **Names.** Channel and group names are ASCII letters, digits, `-`, `_` and `.`, fewer than 100
//! characters; a channel name may carry one `!` that separates a process prefix from a local part.
//! Anything else is refused with [`LayerError::InvalidName`].
//!
//! **Leaving.** Dropping a [`ChannelReceiver`] deletes its channel and takes it out of every group,
//! so a consumer that goes, however it goes, leaves nothing behind.
//!
//! # Guarantees, layer by layer
//!
//! | | Channels' `InMemoryChannelLayer` | `channels_redis` | [`InMemoryChannelLayer`] | `RedisChannelLayer` |
//! | --- | --- | --- | --- | --- |
//! | order of one sender's messages to one channel | FIFO | FIFO | FIFO | FIFO |
//! | order of a group's messages | per member, as sent | per member, as sent | one order for every member (one lock per group) | one order for every member: every process, the sender's too, gets group messages from Redis in `PUBLISH` order |
//! | delivery | at most once | at most once | at most once | at most once; a publish retried after a closed connection is recognised by its number and not delivered twice |
//! | a full channel | `send` raises `ChannelFull`; `group_send` skips it silently | the same | `send` fails with `ChannelFull`; `group_send` skips and counts it (`dropped_full`) | the same, except that a `send` to another process's channel cannot see it full: the owner drops and counts it |
//! | an expired message | dropped silently | dropped silently | dropped and counted (`expired`) | dropped and counted |
//! | what a restart or partition loses | everything (one process) | messages published while a process is away from Redis, silently | everything (one process) | messages published to a process while its subscription is down: lost and counted (`lost`, from gaps in each publisher's numbers) and logged; named channels' messages wait in Redis; presence of a crashed process is removed within `process_ttl` |
//! | a channel nobody uses any more | deleted when empty | its key expires | deleted when empty, no reader waits and it is in no group | the same here; its Redis list expires a minute after its last message would have |
//! | `receive` on a name the layer cannot serve | waits | raises (wrong client prefix) | fails at once ([`LayerError::ForeignChannel`]) | fails at once |
//! | recovery of what a reconnecting client missed | — | — | for groups that keep a stream ([`InMemoryConfig::group_history`], [`ChannelLayer::recover`], [`Context::recover`](crate::consumer::Context::recover)); lost with the process (a new epoch) | for groups that keep a stream (a Redis stream per group, `RedisConfig::group_history`), from any process; lost with Redis' data (a new epoch) |
//! | past one server | — | several servers by consistent hashing (`hosts`); group messages can go to a shard nobody reads (django/channels_redis#221) | — | a Redis Cluster (`RedisConfig::cluster`): sharded pub/sub on the shard that owns each group; when a primary dies its groups fail typed ([`LayerError::Unavailable`]) until a replica takes over, then carry on by themselves; what the dead primary had not delivered is lost and counted |
//!
//! # Users as addresses
//!
//! To reach every open connection of one user — all their tabs, on any process — each consumer
//! of a signed-in user joins the user's group, [`user_group`]`(id)` (Channels' `f"user_{id}"`
//! pattern, escaped so that any id makes a valid, distinct group name), and anyone sends to it:
//!
//! ```
//! use switchboard::consumer::{Context, WebSocketConsumer};
//! use switchboard::layer::{user_group, LayerHandle};
//! use switchboard::websocket::Message;
//!
//! /// What the authentication middleware puts in the scope.
//! #[derive(Clone)]
//! struct User { id: String }
//! # let _ = User { id: String::new() };
//!
//! struct Notifications;
//!
//! #[switchboard::async_trait]
//! impl WebSocketConsumer for Notifications {
//!     async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
//!         if let Some(user) = ctx.scope().extensions.get::<User>().cloned() {
//!             ctx.group_add(&user_group(&user.id)).await?; // left when the connection ends
//!         }
//!         ctx.accept().await?;
//!         Ok(())
//!     }
//!     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
//!         Ok(())
//!     }
//! }
//!
//! /// From an HTTP handler, a worker, anywhere: `false` when the user has no connection open.
//! async fn notify(layer: &LayerHandle, user: &str, text: &str) -> Result<bool, switchboard::layer::LayerError> {
//!     let event = serde_json::json!({ "type": "notify", "text": text });
//!     Ok(layer.group_send(&user_group(user), &event).await?.reached_anyone())
//! }
//! # let _ = notify;
//! # let _ = switchboard::routing::UrlRouter::new().route("/ws/notifications/", || Notifications);
//! ```
//!
//! The group is only as private as the id is authenticated: take it from what your
//! authentication middleware put in the scope, never from what the client says it is.

mod blocking;
mod errors;
mod event;
mod handle;
mod in_memory;
mod names;
mod presence;
mod queue;
#[cfg(feature = "redis")]
mod redis;
mod stream;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use blocking::BlockingChannelLayer;
pub use errors::{BackendError, InvalidNameReason, LayerError, NameKind};
pub use event::{Event, EventError, IntoEvent};
pub use handle::LayerHandle;
pub use in_memory::{InMemoryChannelLayer, InMemoryConfig};
pub(crate) use names::Capacities;
pub use names::{
    is_process_specific, user_group, validate_channel_name, validate_group_name, MAX_NAME_LENGTH,
};
pub use presence::PRESENCE_DIFF;
pub(crate) use queue::ChannelQueue;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisChannelLayer, RedisConfig};
pub(crate) use stream::{GroupStream, Histories};
pub use stream::{InvalidStreamPosition, Recovery, StreamPosition};

/// A channel layer: named channels (point to point) and groups (broadcast).
///
/// The methods are Channels' `channel_layer` API; every backend (in memory, Redis) keeps the
/// semantics in the [module docs](self). The trait is object safe: consumers, handlers and
/// workers hold a [`LayerHandle`] (a shared `dyn ChannelLayer`), so their code does not change
/// between layers.
///
/// # Cancel safety
///
/// [`receive`](Self::receive) is cancel safe: a message is taken off its queue only when the call
/// returns it. The other methods complete their one change before their first await point in the
/// in-memory layer; a networked layer documents its own guarantee.
#[async_trait]
pub trait ChannelLayer: Send + Sync + fmt::Debug + 'static {
    /// Creates a process-specific channel and returns its receiver; the channel's name is
    /// [`ChannelReceiver::name`]. Dropping the receiver deletes the channel and its group
    /// memberships.
    ///
    /// # Errors
    ///
    /// A networked layer fails when it cannot register the channel; the in-memory layer never fails.
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError>;

    /// Sends `event` to the channel named `channel`.
    ///
    /// A send to a process-specific name whose receiver is gone is dropped and counted in
    /// [`LayerStats::dropped_no_receiver`], as Channels drops it (the peer left; the sender is not
    /// at fault). A named channel is created by its first send.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad name; [`LayerError::ChannelFull`] when the channel
    /// holds its capacity of unexpired messages.
    async fn send(&self, channel: &str, event: Event) -> Result<(), LayerError>;

    /// Waits for the next message on the channel named `channel` (for workers and tasks that are
    /// not consumers; a consumer's own channel is read by its connection). Expired messages are
    /// skipped and counted.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad name; [`LayerError::ForeignChannel`] at once for a
    /// process-specific name this layer cannot serve (another process's, or one no receiver
    /// holds), on which nothing could ever arrive.
    async fn receive(&self, channel: &str) -> Result<Event, LayerError>;

    /// Adds `channel` to `group`, or renews its membership (the group expiry counts from now).
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group or channel name.
    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError>;

    /// Takes `channel` out of `group`; nothing happens if it was not a member.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group or channel name.
    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError>;

    /// Sends `event` to every current member of `group`, sharing one encoding. Full members are
    /// skipped and counted ([`LayerStats::dropped_full`]); a group with no members is not an error.
    /// Returns what the layer knows of who received it ([`GroupSent`]): whether anybody did.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group name.
    async fn group_send(&self, group: &str, event: Event) -> Result<GroupSent, LayerError>;

    /// Lists `channel` in `group`'s presence with `meta` (a name, a status: any JSON), joining the
    /// group if it is not a member, and sends a [`PRESENCE_JOIN`] event to the group, the new
    /// member included. Listing again replaces the metadata and sends another join. With a
    /// presence window (`InMemoryConfig::presence_window`, `RedisConfig::presence_window`) the
    /// join goes out in the group's next [`PRESENCE_DIFF`] instead, within the window.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group or channel name.
    async fn presence_add(
        &self,
        group: &str,
        channel: &str,
        meta: serde_json::Value,
    ) -> Result<(), LayerError>;

    /// Takes `channel` off `group`'s presence list (it stays a member) and sends a
    /// [`PRESENCE_LEAVE`] event to the group if it was listed (with a presence window: in the
    /// next [`PRESENCE_DIFF`]). Leaving the group, the channel's deletion (the connection ended,
    /// however) and membership expiry do the same.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group or channel name.
    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError>;

    /// Who is listed in `group` right now, in no particular order.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group name.
    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError>;

    /// Empties every channel and deletes every group (for tests; as Channels' `flush`). Receivers
    /// stay valid.
    ///
    /// # Errors
    ///
    /// A networked layer fails when its backend does; the in-memory layer never fails.
    async fn flush(&self) -> Result<(), LayerError>;

    /// A snapshot of the layer's counts, for metrics.
    fn stats(&self) -> LayerStats;

    /// What `group` sent after `since`, for a client that reconnects: the events it missed, in
    /// order, or [`Recovery::NotRecovered`] when the group's stream no longer holds them all
    /// (then the client reloads its state). Only groups that keep a stream can recover (see
    /// [`InMemoryConfig::group_history`]); the default, for layers that keep none, never does.
    ///
    /// A consumer that recovers joins the group first and then recovers, and skips live events
    /// at or before the recovered position, so that nothing is missed or shown twice between
    /// the two.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group name; a networked layer's own failure.
    async fn recover(&self, group: &str, since: &StreamPosition) -> Result<Recovery, LayerError> {
        let _ = since;
        validate_group_name(group)?;
        Ok(Recovery::NotRecovered { position: None })
    }

    /// Shares this layer as a [`LayerHandle`]. A handle returns itself; other layers are put
    /// behind one `Arc`. Layers need not override it.
    fn into_handle(self) -> LayerHandle
    where
        Self: Sized,
    {
        LayerHandle::from_arc(Arc::new(self))
    }
}

/// What a [`group_send`](ChannelLayer::group_send) knows of who received the event, as far as the
/// layer can know it at once.
///
/// In memory every member is counted: `queued` is exactly the members that got it. On Redis the
/// event travels by `PUBLISH`: `processes` is the number of processes Redis handed it to (those
/// with members of the group, this one included, and the owners of channels added to the group
/// from elsewhere), as `PUBLISH` reports it; each process then fans it out to its own members
/// after the call returned, and `queued` counts only named channels (Redis lists) it was pushed
/// to. So [`reached_anyone`](Self::reached_anyone) answers "was anybody a member?" on both:
/// `false` means nobody was (a user with no open connection, for a [`user_group`]). On Redis a
/// process unsubscribes from a group as soon as its last member there leaves; until Redis has
/// that (a round trip), `PUBLISH` still counts it, so `true` may come a moment after a user's
/// last connection closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupSent {
    /// Channels the event was put on by this call.
    pub queued: usize,
    /// Members skipped because their channel was full (also counted in
    /// [`LayerStats::dropped_full`]).
    pub skipped_full: usize,
    /// Processes a networked layer handed the event to, for their own members to receive; 0 in
    /// the in-memory layer.
    pub processes: usize,
    /// Where the event stands in the group's stream, for a group that keeps one.
    pub position: Option<StreamPosition>,
}

impl GroupSent {
    /// Whether the event reached at least one member (or one process with members).
    pub fn reached_anyone(&self) -> bool {
        self.queued > 0 || self.processes > 0
    }
}

/// The event type sent to a group when a member is listed: `{"type": "presence.join",
/// "channel": "...", "meta": ...}`.
pub const PRESENCE_JOIN: &str = "presence.join";
/// The event type sent to a group when a listed member leaves: `{"type": "presence.leave",
/// "channel": "...", "meta": ...}` (the metadata it had).
pub const PRESENCE_LEAVE: &str = "presence.leave";

/// A listed member of a group: its channel name and the metadata it was listed with. Phoenix's
/// Presence, which Channels lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The member's channel name.
    pub channel: String,
    /// What it was listed with.
    pub meta: serde_json::Value,
}

impl Presence {
    /// The `presence.join` or `presence.leave` event for this member.
    pub(crate) fn event(&self, event_type: &str) -> Event {
        let json =
            serde_json::json!({ "type": event_type, "channel": self.channel, "meta": self.meta });
        Event::new(&json).expect("a JSON object with a type")
    }
}

/// A snapshot of a layer's counts. Gauges (`channels`, `groups`, `memberships`) are current;
/// the rest are totals since the layer was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerStats {
    /// Channels the layer knows now (process-specific and named).
    pub channels: usize,
    /// Groups with at least one member.
    pub groups: usize,
    /// Group memberships, summed over all groups.
    pub memberships: usize,
    /// Messages put on a queue (each group member's copy counts once).
    pub queued: u64,
    /// `send` calls refused with [`LayerError::ChannelFull`].
    pub rejected_full: u64,
    /// Group deliveries skipped because the member's channel was full.
    pub dropped_full: u64,
    /// Messages dropped because they were not received within the expiry.
    pub expired: u64,
    /// Sends to a process-specific channel whose receiver was gone.
    pub dropped_no_receiver: u64,
    /// Group memberships dropped because they outlived the group expiry.
    pub expired_memberships: u64,
    /// Messages known to be lost between processes: gaps in another process's numbered messages
    /// seen by this one (e.g. published while this process's subscription was down). A message
    /// overtaken by a later one from the same process counts until it arrives. Always 0 in the
    /// in-memory layer.
    pub lost: u64,
    /// Operations that failed with [`LayerError::Unavailable`] (the backend was unreachable or
    /// slow). Always 0 in the in-memory layer.
    pub unavailable: u64,
    /// Times a networked layer's receiving connection was lost and made again. Always 0 in the
    /// in-memory layer.
    pub reconnections: u64,
}

/// The receiving end of a process-specific channel, made by [`ChannelLayer::new_channel`].
///
/// Dropping it deletes the channel and takes it out of every group it was in.
pub struct ChannelReceiver {
    name: Arc<str>,
    queue: Arc<ChannelQueue>,
    on_drop: Option<OnDrop>,
}

/// What a layer does when a receiver is dropped: forget the channel named by the argument.
pub(crate) type OnDrop = Box<dyn FnOnce(&str) + Send + Sync>;

/// The sending side of a channel made with [`ChannelReceiver::with_queue`], for a channel layer of
/// your own: it puts events on the receiver's bounded, expiring queue (the same queue the
/// in-memory layer uses, with the same semantics). Cheap to clone.
#[derive(Clone)]
pub struct ChannelSender {
    name: Arc<str>,
    queue: Arc<ChannelQueue>,
    expired: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSender")
            .field("name", &self.name)
            .field("waiting", &self.queue.len())
            .finish()
    }
}

impl ChannelSender {
    /// Puts `event` on the channel.
    ///
    /// # Errors
    ///
    /// [`LayerError::ChannelFull`] when the channel holds its capacity of unexpired messages.
    pub fn send(&self, event: Event) -> Result<(), LayerError> {
        self.queue
            .push(event, tokio::time::Instant::now())
            .map_err(|_| LayerError::ChannelFull {
                channel: self.name.to_string(),
                capacity: self.queue.capacity(),
            })
    }

    /// Messages waiting (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages dropped because nobody received them within the expiry, so far (for
    /// [`LayerStats::expired`]).
    pub fn expired(&self) -> u64 {
        self.expired.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ChannelReceiver {
    /// A process-specific channel for a channel layer of your own (what its
    /// [`ChannelLayer::new_channel`] returns): a bounded queue of `capacity` messages whose
    /// messages expire after `expiry`, the receiver that reads it, and the [`ChannelSender`] the
    /// layer delivers with. `on_drop` runs with the channel's name when the receiver is dropped
    /// (the consumer ended): forget the channel and its group memberships there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::layer::{ChannelReceiver, Event};
    ///
    /// let (mut receiver, sender) = ChannelReceiver::with_queue("mine.1!1", 2, Duration::from_secs(60), |name| {
    ///     println!("{name} is gone: forget it");
    /// });
    /// sender.send(Event::typed("hello", &())?)?;
    /// assert_eq!(receiver.try_recv().unwrap().event_type(), "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    pub fn with_queue(
        name: impl Into<Arc<str>>,
        capacity: usize,
        expiry: std::time::Duration,
        on_drop: impl FnOnce(&str) + Send + Sync + 'static,
    ) -> (ChannelReceiver, ChannelSender) {
        assert!(capacity > 0, "channel capacity must be at least 1");
        let name = name.into();
        let expired = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let queue = Arc::new(ChannelQueue::new(capacity, expiry, expired.clone(), true));
        let sender = ChannelSender {
            name: name.clone(),
            queue: queue.clone(),
            expired,
        };
        (Self::new(name, queue, Box::new(on_drop)), sender)
    }

    pub(crate) fn new(name: Arc<str>, queue: Arc<ChannelQueue>, on_drop: OnDrop) -> Self {
        Self {
            name,
            queue,
            on_drop: Some(on_drop),
        }
    }

    /// Runs `also` after the layer's own clean-up when the receiver is dropped (a networked
    /// layer's clean-up of what it keeps outside the process).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn also_on_drop(mut self, also: OnDrop) -> Self {
        let first = self.on_drop.take();
        self.on_drop = Some(Box::new(move |name| {
            if let Some(first) = first {
                first(name);
            }
            also(name);
        }));
        self
    }

    /// The channel's name: give it to others so they can `send` to this channel.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the next unexpired message.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message leaves the queue only when this returns it.
    pub async fn recv(&mut self) -> Event {
        self.queue.pop().await
    }

    /// The next unexpired message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.queue.try_pop()
    }

    /// As [`try_recv`](Self::try_recv), judging expiry at `now` (read once for a burst).
    pub(crate) fn try_recv_at(&mut self, now: tokio::time::Instant) -> Option<Event> {
        self.queue.try_pop_at(Some(now))
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(&self.name);
        }
    }
}

impl fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("name", &self.name)
            .field("waiting", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_channels_rules() {
        for good in ["chat_lobby", "a", "A-b_c.d", &"x".repeat(99)] {
            validate_group_name(good).unwrap();
            validate_channel_name(good).unwrap();
        }
        validate_channel_name("specific.abc!12").unwrap();
        validate_channel_name("specific.abc!").unwrap();

        let reason = |r: Result<(), LayerError>| match r {
            Err(LayerError::InvalidName { reason, .. }) => reason,
            other => panic!("expected InvalidName, got {other:?}"),
        };
        assert_eq!(reason(validate_group_name("")), InvalidNameReason::Empty);
        assert_eq!(
            reason(validate_group_name(&"x".repeat(100))),
            InvalidNameReason::TooLong { length: 100 }
        );
        assert_eq!(
            reason(validate_group_name("room 1")),
            InvalidNameReason::InvalidCharacter {
                character: ' ',
                index: 4
            }
        );
        assert_eq!(
            reason(validate_group_name("a!b")),
            InvalidNameReason::InvalidCharacter {
                character: '!',
                index: 1
            }
        );
        assert_eq!(
            reason(validate_channel_name("a!b!c")),
            InvalidNameReason::InvalidCharacter {
                character: '!',
                index: 3
            }
        );
        assert_eq!(
            reason(validate_channel_name("!abc")),
            InvalidNameReason::InvalidCharacter {
                character: '!',
                index: 0
            }
        );
        assert_eq!(
            reason(validate_group_name("café")),
            InvalidNameReason::InvalidCharacter {
                character: 'é',
                index: 3
            }
        );
    }

    #[test]
    fn events_need_a_string_type() {
        assert!(matches!(
            Event::from_json("[1]"),
            Err(EventError::MissingType)
        ));
        assert!(matches!(
            Event::from_json(r#"{"message":"hi"}"#),
            Err(EventError::MissingType)
        ));
        assert!(matches!(
            Event::from_json(r#"{"type":3}"#),
            Err(EventError::MissingType)
        ));
        assert!(matches!(Event::from_json("{"), Err(EventError::Json(_))));
        let event = Event::from_json(r#"{"type":"chat.m\u0065ssage","n":1}"#).unwrap();
        assert_eq!(event.event_type(), "chat.message");
    }
}
