//! The channel layer's errors: one enum for its operations, with the reasons it gives.

use std::fmt;

use super::{EventError, MAX_NAME_LENGTH};

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
    /// `receive` on a process-specific channel this layer does not own (another process's, or
    /// one whose receiver is gone): nothing could ever arrive, so it fails at once (as
    /// channels_redis' "wrong client prefix").
    #[error("channel {channel:?} is another process's (or gone): it cannot be received from here")]
    ForeignChannel {
        /// The channel's name.
        channel: String,
    },
    /// The message could not be made into an [`Event`](super::Event).
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
    /// The backend's client failed (connection refused or dropped, protocol error, TLS
    /// handshake).
    #[error(transparent)]
    Client(Box<dyn std::error::Error + Send + Sync>),
    /// The backend refused this client's credentials or permissions: a wrong password or user
    /// (Redis `WRONGPASS`), none given where one is required (`NOAUTH`), or a key, channel or
    /// command its ACL user may not use (`NOPERM`). Retrying does not help: fix the
    /// configuration.
    #[error("refused by the backend (credentials or ACL): {0}")]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}
