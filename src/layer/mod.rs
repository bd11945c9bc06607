//! The channel layer: process-wide (or cluster-wide) messaging between consumers, as in Channels.
//!
//! # Semantics
//!
//! A *channel* is a bounded queue with a name. [`ChannelLayer::new_channel`] makes a
//! process-specific channel (its name has a `!`, e.g. `specific.1f0c…!42`) and hands back the one
//! [`ChannelReceiver`] that reads it; every consumer gets one on connect. Any other valid name is a
//! *named channel* that exists as soon as somebody sends to it or receives from it (a worker's
//! `"thumbnails"`), read with [`ChannelLayer::receive`].
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

mod handle;
mod in_memory;
mod queue;
#[cfg(feature = "redis")]
mod redis;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::websocket::Utf8Bytes;

pub use handle::LayerHandle;
pub use in_memory::{InMemoryChannelLayer, InMemoryConfig};
pub(crate) use queue::ChannelQueue;
#[cfg(feature = "redis")]
pub use redis::{RedisChannelLayer, RedisConfig};

/// Names must be shorter than this many characters (Channels' `MAX_NAME_LENGTH`).
pub const MAX_NAME_LENGTH: usize = 100;

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
    /// [`LayerError::InvalidName`] for a bad name.
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
    /// member included. Listing again replaces the metadata and sends another join.
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
    /// [`PRESENCE_LEAVE`] event to the group if it was listed. Leaving the group, the channel's
    /// deletion (the connection ended, however) and membership expiry do the same.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

impl GroupSent {
    /// Whether the event reached at least one member (or one process with members).
    pub fn reached_anyone(&self) -> bool {
        self.queued > 0 || self.processes > 0
    }
}

/// What can be sent through a channel layer: an [`Event`], or a reference to any serializable
/// value whose JSON is an object with a string `"type"` (a `#[serde(tag = "type")]` enum or
/// struct). The sending calls of [`LayerHandle`] and
/// [`ChannelContext`](crate::consumer::ChannelContext) take it, so one signature serves both:
///
/// ```
/// use serde::Serialize;
/// use switchboard::layer::{Event, IntoEvent};
///
/// #[derive(Serialize)]
/// #[serde(tag = "type", rename = "chat.message")]
/// struct ChatMessage { message: String }
///
/// let typed = (&ChatMessage { message: "hi".into() }).into_event()?;
/// let ready = Event::from_json(r#"{"type":"chat.message","message":"hi"}"#)?;
/// assert_eq!(typed, ready.clone().into_event()?);
/// # Ok::<(), switchboard::layer::EventError>(())
/// ```
pub trait IntoEvent {
    /// Makes the event (an [`Event`] is returned as it is, without copying its JSON).
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if the value does not serialize; [`EventError::MissingType`] if its
    /// JSON is not an object with a string `"type"`.
    fn into_event(self) -> Result<Event, EventError>;
}

impl IntoEvent for Event {
    fn into_event(self) -> Result<Event, EventError> {
        Ok(self)
    }
}

impl<T: Serialize + ?Sized> IntoEvent for &T {
    fn into_event(self) -> Result<Event, EventError> {
        Event::new(self)
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

/// Whether a channel or a group is meant, in [`LayerError::InvalidName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A channel name.
    Channel,
    /// A group name.
    Group,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Channel => "channel",
            Self::Group => "group",
        })
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNameReason {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// The name has [`MAX_NAME_LENGTH`] characters or more.
    #[error("it has {length} characters; names are shorter than {MAX_NAME_LENGTH}")]
    TooLong {
        /// The name's length in bytes.
        length: usize,
    },
    /// A character outside ASCII letters, digits, `-`, `_`, `.` (and one `!` in channel names).
    #[error("{character:?} at byte {index} is not an ASCII letter, digit, '-', '_' or '.'")]
    InvalidCharacter {
        /// The character.
        character: char,
        /// Its byte offset in the name.
        index: usize,
    },
}

/// An error from a channel layer operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A channel or group name broke the naming rules.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// Channel or group.
        kind: NameKind,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: InvalidNameReason,
    },
    /// `send` found the channel holding its capacity of unexpired messages.
    #[error("channel {channel:?} is full ({capacity} messages waiting)")]
    ChannelFull {
        /// The channel's name.
        channel: String,
        /// Its capacity, in messages.
        capacity: usize,
    },
    /// The message could not be made into an [`Event`].
    #[error(transparent)]
    Event(#[from] EventError),
    /// A networked layer's backend could not be reached or did not answer in time; the
    /// operation did not happen (or, for a timed-out send, may not have). The in-memory layer
    /// never returns it.
    #[error("channel layer backend unavailable: {0}")]
    Unavailable(#[source] BackendError),
}

/// Why a networked layer's backend was unavailable, in [`LayerError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No answer within the layer's command timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The backend's client failed (connection refused or dropped, protocol error).
    #[error(transparent)]
    Client(Box<dyn std::error::Error + Send + Sync>),
}

/// Checks a group name: ASCII letters, digits, `-`, `_`, `.`, 1 to 99 characters.
///
/// # Errors
///
/// [`LayerError::InvalidName`] saying what is wrong.
pub fn validate_group_name(name: &str) -> Result<(), LayerError> {
    check_name(name, NameKind::Group)
}

/// Checks a channel name: as a group name, and it may hold one `!` (process-specific names such
/// as `specific.ab12!7`; the part after `!` may be empty).
///
/// # Errors
///
/// [`LayerError::InvalidName`] saying what is wrong.
pub fn validate_channel_name(name: &str) -> Result<(), LayerError> {
    check_name(name, NameKind::Channel)
}

fn check_name(name: &str, kind: NameKind) -> Result<(), LayerError> {
    let refuse = |reason| {
        Err(LayerError::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse(InvalidNameReason::Empty);
    }
    if name.len() >= MAX_NAME_LENGTH {
        return refuse(InvalidNameReason::TooLong { length: name.len() });
    }
    let mut bang_seen = false;
    for (index, byte) in name.bytes().enumerate() {
        let ok = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.')
            || (byte == b'!' && kind == NameKind::Channel && !bang_seen && index > 0);
        if !ok {
            let character = name[index..].chars().next().unwrap_or('\u{fffd}');
            return refuse(InvalidNameReason::InvalidCharacter { character, index });
        }
        bang_seen |= byte == b'!';
    }
    Ok(())
}

/// The group that reaches every connection of one user, whoever they are and on whichever process
/// they are connected: Channels' per-user group (`f"user_{user.id}"`), made safe for any user id.
///
/// A consumer adds itself when a user connects (`ctx.group_add(&user_group(&user.id))`, left by
/// itself on disconnect); anyone then sends to all of that user's tabs with
/// `group_send(&user_group(id), ..)`, and [`GroupSent::reached_anyone`] says whether the user
/// had any connection open (on Redis too: it counts the processes `PUBLISH` reached).
///
/// The name is `user.` followed by the id with every byte outside ASCII letters, digits and `-`
/// written as `_XX` (hex), so two ids never share a group. An id whose escaped form would not
/// fit in a group name ([`MAX_NAME_LENGTH`]) keeps its first 40 escaped characters and ends in
/// `.h` and 32 hex digits of its SHA-256: still one group per id (the hash resists chosen
/// collisions).
///
/// ```
/// use switchboard::layer::{user_group, validate_group_name};
///
/// assert_eq!(user_group("ada"), "user.ada");
/// assert_eq!(user_group("Zoë Smith"), "user.Zo_C3_AB_20Smith");
/// assert_eq!(user_group("a_b"), "user.a_5Fb"); // never the same as the id "a" + "_5F" + "b"...
/// assert_eq!(user_group("a_5Fb"), "user.a_5F5Fb");
/// let long = user_group(&"x".repeat(500));
/// assert!(validate_group_name(&long).is_ok());
/// assert_ne!(long, user_group(&"x".repeat(501)));
/// ```
pub fn user_group(user: &str) -> String {
    const PREFIX: &str = "user.";
    const KEPT: usize = 40;
    let mut name = String::with_capacity(PREFIX.len() + user.len());
    name.push_str(PREFIX);
    for byte in user.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            name.push(byte as char);
        } else {
            name.push('_');
            name.push(char::from(HEX[usize::from(byte >> 4)]));
            name.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    if name.len() < MAX_NAME_LENGTH {
        return name;
    }
    let mut cut = PREFIX.len() + KEPT;
    // Never cut an `_XX` escape in two.
    while name.as_bytes()[cut - 1] == b'_' || name.as_bytes()[cut - 2] == b'_' {
        cut -= 1;
    }
    name.truncate(cut);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(user.as_bytes());
    name.push_str(".h");
    for byte in &digest[..16] {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 15)]));
    }
    name
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `channel` is a process-specific name (one made by [`ChannelLayer::new_channel`]).
pub fn is_process_specific(channel: &str) -> bool {
    channel.contains('!')
}

/// A channel-layer message: a JSON object with a string `"type"` (e.g. `"chat.message"`),
/// encoded once and shared by every recipient (cloning it is one atomic increment).
///
/// Consumers dispatch on the type; the typed form is a `#[serde(tag = "type")]` enum:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::layer::Event;
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// #[serde(tag = "type", rename_all = "snake_case")]
/// enum RoomEvent {
///     Message { text: String },
///     Joined { user: String },
/// }
///
/// let event = Event::new(&RoomEvent::Joined { user: "ada".into() })?;
/// assert_eq!(event.event_type(), "joined");
/// assert_eq!(event.json(), r#"{"type":"joined","user":"ada"}"#);
/// assert_eq!(event.decode::<RoomEvent>()?, RoomEvent::Joined { user: "ada".into() });
/// # Ok::<(), switchboard::layer::EventError>(())
/// ```
#[derive(Clone)]
pub struct Event(Arc<EventInner>);

struct EventInner {
    event_type: Box<str>,
    json: Utf8Bytes,
}

/// Why a value could not be made into an [`Event`], or an event into a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The value did not serialize, or the JSON did not parse into the wanted type.
    #[error("event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not an object with a string `"type"` field.
    #[error("an event must be a JSON object with a string \"type\" field")]
    MissingType,
    /// [`Event::typed`] was given a body that is not a JSON object.
    #[error("an event's body must serialize to a JSON object")]
    NotAnObject,
}

#[derive(Deserialize)]
struct TypeField<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
}

impl Event {
    /// Serializes `value` (once) into an event.
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if it does not serialize; [`EventError::MissingType`] if it is not a
    /// JSON object with a string `"type"`.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self, EventError> {
        Self::from_json(serde_json::to_string(value)?)
    }

    /// Makes an event of type `event_type` whose other fields are `body`'s: the type is given
    /// here, so it cannot be missing (Channels' `{"type": "chat.message", **body}`).
    ///
    /// ```
    /// use switchboard::layer::Event;
    ///
    /// let event = Event::typed("chat.message", &serde_json::json!({ "message": "hi" }))?;
    /// assert_eq!(event.json(), r#"{"type":"chat.message","message":"hi"}"#);
    /// # Ok::<(), switchboard::layer::EventError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if `body` does not serialize; [`EventError::NotAnObject`] if it is
    /// not a JSON object (or `null`, for an event with no fields).
    pub fn typed<T: Serialize + ?Sized>(event_type: &str, body: &T) -> Result<Self, EventError> {
        let fields = match serde_json::to_value(body)? {
            serde_json::Value::Object(fields) => fields,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => return Err(EventError::NotAnObject),
        };
        let mut json = String::with_capacity(event_type.len() + 16);
        json.push_str("{\"type\":");
        json.push_str(&serde_json::to_string(event_type)?);
        for (name, value) in fields.iter().filter(|(name, _)| *name != "type") {
            json.push(',');
            json.push_str(&serde_json::to_string(name)?);
            json.push(':');
            json.push_str(&serde_json::to_string(value)?);
        }
        json.push('}');
        Ok(Self(Arc::new(EventInner {
            event_type: event_type.into(),
            json: json.into(),
        })))
    }

    /// Makes an event of JSON text that is already encoded (e.g. read from a network broker).
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if it is not JSON; [`EventError::MissingType`] if it is not an object
    /// with a string `"type"`.
    pub fn from_json(json: impl Into<String>) -> Result<Self, EventError> {
        let json: String = json.into();
        if !json.trim_start().starts_with('{') {
            return Err(EventError::MissingType);
        }
        let field: TypeField<'_> = serde_json::from_str(&json).map_err(|error| {
            if error.is_data() {
                EventError::MissingType
            } else {
                EventError::Json(error)
            }
        })?;
        let event_type = field.event_type.into_owned().into_boxed_str();
        Ok(Self(Arc::new(EventInner {
            event_type,
            json: json.into(),
        })))
    }

    /// The event's `"type"`.
    pub fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// The whole event as JSON text.
    pub fn json(&self) -> &str {
        self.0.json.as_str()
    }

    /// The JSON text, shared: send it as a text frame without copying or re-encoding.
    pub fn to_text(&self) -> Utf8Bytes {
        self.0.json.clone()
    }

    /// Parses the event into `T` (usually a `#[serde(tag = "type")]` enum).
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if the JSON does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        Ok(serde_json::from_str(self.json())?)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Event").field(&self.json()).finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
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

impl ChannelReceiver {
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

/// A shared layer is a layer: an `Arc<dyn ChannelLayer>` can go wherever a layer is asked for, and
/// becomes a [`LayerHandle`] without being wrapped again.
#[async_trait]
impl ChannelLayer for Arc<dyn ChannelLayer> {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        (**self).new_channel().await
    }
    async fn send(&self, channel: &str, event: Event) -> Result<(), LayerError> {
        (**self).send(channel, event).await
    }
    async fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        (**self).receive(channel).await
    }
    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        (**self).group_add(group, channel).await
    }
    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        (**self).group_discard(group, channel).await
    }
    async fn group_send(&self, group: &str, event: Event) -> Result<GroupSent, LayerError> {
        (**self).group_send(group, event).await
    }
    async fn presence_add(
        &self,
        group: &str,
        channel: &str,
        meta: serde_json::Value,
    ) -> Result<(), LayerError> {
        (**self).presence_add(group, channel, meta).await
    }
    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        (**self).presence_remove(group, channel).await
    }
    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        (**self).presence_list(group).await
    }
    async fn flush(&self) -> Result<(), LayerError> {
        (**self).flush().await
    }
    fn stats(&self) -> LayerStats {
        (**self).stats()
    }
    fn into_handle(self) -> LayerHandle {
        LayerHandle::from_arc(self)
    }
}

/// The layer for code that is not async: a thread of its own, a callback from a C library. Each
/// call blocks the calling thread until the layer has answered, driving the operation on the
/// given tokio runtime.
///
/// ```
/// use switchboard::layer::{BlockingChannelLayer, ChannelLayer, Event, InMemoryChannelLayer};
///
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// let layer = InMemoryChannelLayer::new();
/// let mut inbox = runtime.block_on(layer.new_channel()).unwrap();
/// let blocking = BlockingChannelLayer::new(layer, runtime.handle().clone());
/// let name = inbox.name().to_owned();
/// std::thread::spawn(move || {
///     blocking.send(&name, Event::from_json(r#"{"type":"tick"}"#).unwrap()).unwrap();
/// })
/// .join()
/// .unwrap();
/// assert_eq!(inbox.try_recv().unwrap().event_type(), "tick");
/// ```
#[derive(Clone)]
pub struct BlockingChannelLayer {
    layer: LayerHandle,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for BlockingChannelLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingChannelLayer")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl BlockingChannelLayer {
    /// Wraps `layer`; operations run on `runtime` (e.g. `Handle::current()` taken in async code
    /// before spawning the thread).
    pub fn new(layer: impl ChannelLayer, runtime: tokio::runtime::Handle) -> Self {
        Self {
            layer: layer.into_handle(),
            runtime,
        }
    }

    /// As [`ChannelLayer::send`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::send`].
    ///
    /// # Panics
    ///
    /// If called from async code (a tokio runtime thread), as `Handle::block_on` does: use the
    /// async layer there.
    pub fn send(&self, channel: &str, event: impl IntoEvent) -> Result<(), LayerError> {
        self.runtime.block_on(self.layer.send(channel, event))
    }

    /// As [`ChannelLayer::group_send`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::group_send`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn group_send(&self, group: &str, event: impl IntoEvent) -> Result<GroupSent, LayerError> {
        self.runtime.block_on(self.layer.group_send(group, event))
    }

    /// As [`ChannelLayer::group_add`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::group_add`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.runtime.block_on(self.layer.group_add(group, channel))
    }

    /// As [`ChannelLayer::group_discard`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::group_discard`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.runtime
            .block_on(self.layer.group_discard(group, channel))
    }

    /// As [`ChannelLayer::receive`]: blocks until a message comes.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::receive`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        self.runtime.block_on(self.layer.receive(channel))
    }

    /// As [`ChannelLayer::presence_list`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::presence_list`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        self.runtime.block_on(self.layer.presence_list(group))
    }
}

#[cfg(test)]
mod user_group_tests {
    use super::*;

    #[test]
    fn user_groups_are_valid_and_distinct() {
        let ids = [
            "ada",
            "Ada",
            "a.b",
            "a_2Eb",
            "a b",
            "Zoë",
            "名前",
            "",
            "-",
            &"é".repeat(40),
            &"é".repeat(41),
            &"x".repeat(94),
            &"x".repeat(95),
            &"x".repeat(1000),
        ];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let group = user_group(id);
            validate_group_name(&group).unwrap_or_else(|e| panic!("{id:?}: {e}"));
            assert!(seen.insert(group.clone()), "{id:?} shares {group}");
            assert_eq!(user_group(id), group, "stable");
        }
        assert_eq!(
            user_group(&"x".repeat(94)),
            format!("user.{}", "x".repeat(94))
        );
        assert!(user_group(&"x".repeat(95)).contains(".h"));
    }
}
