//! Group streams: the recent events of a group, each at an offset in an epoch, so that a client
//! that reconnects gets exactly what it missed (Centrifugo's recovery model).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Event;

/// Where an event stands in its group's stream: the stream's `epoch` (a new one whenever the
/// stream's history was lost: the process restarted, the stream aged out) and the event's
/// `offset` in it (1, 2, 3, … with no gaps). A client keeps the last one it saw and sends it back
/// when it reconnects; [`ChannelLayer::recover`](super::ChannelLayer::recover) answers with what
/// it missed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The stream's epoch.
    pub epoch: String,
    /// The event's offset in the epoch.
    pub offset: u64,
}

/// `<epoch>:<offset>`, the form a client can keep and send back (e.g. as a query parameter).
impl std::fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// A [`StreamPosition`] that did not parse from `<epoch>:<offset>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stream position is `<epoch>:<offset>` with a decimal offset")]
pub struct InvalidStreamPosition;

/// Parses `<epoch>:<offset>` (as [`Display`](std::fmt::Display) writes it; the offset is what
/// follows the last `:`).
///
/// ```
/// use switchboard::layer::StreamPosition;
/// let position: StreamPosition = "5f2a:17".parse()?;
/// assert_eq!(position, StreamPosition { epoch: "5f2a".into(), offset: 17 });
/// assert_eq!(position.to_string(), "5f2a:17");
/// assert!("17".parse::<StreamPosition>().is_err());
/// # Ok::<(), switchboard::layer::InvalidStreamPosition>(())
/// ```
impl std::str::FromStr for StreamPosition {
    type Err = InvalidStreamPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (epoch, offset) = text.rsplit_once(':').ok_or(InvalidStreamPosition)?;
        Ok(Self {
            epoch: epoch.to_owned(),
            offset: offset.parse().map_err(|_| InvalidStreamPosition)?,
        })
    }
}

/// What [`ChannelLayer::recover`](super::ChannelLayer::recover) could give back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Recovery {
    /// Every event after the position asked for, in order (none if nothing was missed);
    /// `position` is the stream's position now.
    Recovered {
        /// The missed events, oldest first; each has its [`Event::position`].
        events: Vec<Event>,
        /// The stream's position after them.
        position: StreamPosition,
    },
    /// The stream no longer holds all that followed (trimmed by size or age, or another epoch:
    /// its history was lost): reload the state another way. `position` is where the stream is
    /// now, to resume from (`None` when the group keeps no stream or has had no event yet).
    NotRecovered {
        /// The stream's position now.
        position: Option<StreamPosition>,
    },
}

impl Recovery {
    /// Where the stream is now (after the recovered events): what a client resumes from next
    /// time; `None` when the group keeps no stream or has had no event yet.
    pub fn position(&self) -> Option<&StreamPosition> {
        match self {
            Self::Recovered { position, .. } => Some(position),
            Self::NotRecovered { position } => position.as_ref(),
        }
    }
}

/// Which groups keep a stream, by group-name pattern (first match first): shared by the layers'
/// configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histories(Vec<(glob::Pattern, usize, Duration)>);

impl Histories {
    /// Adds `pattern` → keep `events` events for `age`.
    ///
    /// # Panics
    ///
    /// If `pattern` is not a valid glob, or `events` is 0.
    #[track_caller]
    pub(crate) fn add(&mut self, pattern: &str, events: usize, age: Duration) {
        assert!(events > 0, "a group stream keeps at least one event");
        let pattern = glob::Pattern::new(pattern)
            .unwrap_or_else(|error| panic!("invalid group pattern {pattern:?}: {error}"));
        self.0.push((pattern, events, age));
    }

    /// The stream bounds of `group`: (events, age), if it keeps a stream.
    pub(crate) fn of(&self, group: &str) -> Option<(usize, Duration)> {
        self.0
            .iter()
            .find(|(pattern, _, _)| pattern.matches(group))
            .map(|(_, events, age)| (*events, *age))
    }
}

/// One group's stream in memory: bounded by count and by age.
pub(crate) struct GroupStream {
    epoch: String,
    /// The offset the next event gets.
    next: u64,
    entries: VecDeque<(u64, Instant, Event)>,
    size: usize,
    age: Duration,
}

impl GroupStream {
    pub(crate) fn new(size: usize, age: Duration) -> Self {
        Self {
            epoch: format!("{:016x}", rand::random::<u64>()),
            next: 1,
            entries: VecDeque::new(),
            size,
            age,
        }
    }

    /// Drops entries older than the stream's age.
    pub(crate) fn trim(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) >= self.age)
        {
            self.entries.pop_front();
        }
    }

    /// Whether the stream holds nothing and its last event is past its age (it can go).
    pub(crate) fn is_spent(&mut self, now: Instant) -> bool {
        self.trim(now);
        self.entries.is_empty()
    }

    fn position(&self) -> Option<StreamPosition> {
        (self.next > 1).then(|| StreamPosition {
            epoch: self.epoch.clone(),
            offset: self.next - 1,
        })
    }

    /// Gives `event` the next offset, keeps it, and returns it with its position.
    pub(crate) fn append(&mut self, event: &Event, now: Instant) -> Event {
        self.trim(now);
        let position = StreamPosition {
            epoch: self.epoch.clone(),
            offset: self.next,
        };
        self.next += 1;
        let event = event.with_position(position);
        self.entries.push_back((self.next - 1, now, event.clone()));
        while self.entries.len() > self.size {
            self.entries.pop_front();
        }
        event
    }

    /// What followed `since`, if the stream still holds all of it.
    pub(crate) fn recover(&mut self, since: &StreamPosition, now: Instant) -> Recovery {
        self.trim(now);
        let position = self.position();
        let first = self
            .entries
            .front()
            .map_or(self.next, |(offset, _, _)| *offset);
        if since.epoch != self.epoch || since.offset >= self.next || since.offset + 1 < first {
            return Recovery::NotRecovered { position };
        }
        let events = self
            .entries
            .iter()
            .filter(|(offset, _, _)| *offset > since.offset)
            .map(|(_, _, event)| event.clone())
            .collect();
        Recovery::Recovered {
            events,
            position: position.unwrap_or_else(|| since.clone()),
        }
    }
}
