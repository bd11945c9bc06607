//! Presence diffs: a group's joins and leaves over a short window, sent as one event (Phoenix's
//! `presence_diff`), so that a join storm costs each member a few frames instead of one per
//! joiner.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::{Event, Presence, PRESENCE_JOIN, PRESENCE_LEAVE};

/// The event type of a batch of presence changes: `{"type": "presence.diff", "joins":
/// [{"channel": "...", "meta": ...}, ...], "leaves": [...]}`, sent to a group once per window
/// when its layer is configured with a presence window (`InMemoryConfig::presence_window`,
/// `RedisConfig::presence_window`), instead of one [`PRESENCE_JOIN`] or [`PRESENCE_LEAVE`] per
/// change. A client applies the leaves, then the joins. A channel that joined and left within one
/// window is in neither.
pub const PRESENCE_DIFF: &str = "presence.diff";

/// One listing that joined or left.
pub(crate) enum Change {
    Join(Presence),
    Leave(Presence),
}

impl Change {
    /// The single event of this change (`presence.join` or `presence.leave`).
    pub(crate) fn event(&self) -> Event {
        match self {
            Self::Join(presence) => presence.event(PRESENCE_JOIN),
            Self::Leave(presence) => presence.event(PRESENCE_LEAVE),
        }
    }
}

/// A group's changes over one window.
#[derive(Default, Serialize)]
struct Diff {
    joins: Vec<Presence>,
    leaves: Vec<Presence>,
}

#[derive(Serialize)]
struct DiffEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    diff: &'a Diff,
}

impl Diff {
    fn add(&mut self, change: Change) {
        match change {
            Change::Join(presence) => self.joins.push(presence),
            Change::Leave(presence) => {
                // Joined within this window: the group never needs to hear of it.
                match self
                    .joins
                    .iter()
                    .rposition(|joined| joined.channel == presence.channel)
                {
                    Some(at) => {
                        self.joins.remove(at);
                    }
                    None => self.leaves.push(presence),
                }
            }
        }
    }

    fn event(&self) -> Option<Event> {
        if self.joins.is_empty() && self.leaves.is_empty() {
            return None;
        }
        Event::new(&DiffEvent {
            kind: PRESENCE_DIFF,
            diff: self,
        })
        .ok()
    }
}

/// The diffs being gathered, by group: the first change of a window opens it, and whoever
/// noted that change sends the diff when the window ends ([`PresenceDiffs::take`]).
#[derive(Debug)]
pub(crate) struct PresenceDiffs {
    window: Duration,
    pending: Mutex<HashMap<Box<str>, Diff>>,
}

impl std::fmt::Debug for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diff")
            .field("joins", &self.joins.len())
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl PresenceDiffs {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// How long a window lasts.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Adds `change` to `group`'s diff; `true` when it opened a window, whose diff the caller
    /// then sends with [`take`](Self::take) after [`window`](Self::window).
    pub(crate) fn note(&self, group: &str, change: Change) -> bool {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match pending.get_mut(group) {
            Some(diff) => {
                diff.add(change);
                false
            }
            None => {
                let mut diff = Diff::default();
                diff.add(change);
                pending.insert(group.into(), diff);
                true
            }
        }
    }

    /// Closes `group`'s window: its diff as one event (`None` if the changes cancelled out).
    pub(crate) fn take(&self, group: &str) -> Option<Event> {
        let diff = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(group)?;
        diff.event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(channel: &str) -> Presence {
        Presence {
            channel: channel.into(),
            meta: serde_json::json!({ "name": channel }),
        }
    }

    #[test]
    fn a_window_gathers_changes_and_a_join_then_leave_cancels_out() {
        let diffs = PresenceDiffs::new(Duration::from_millis(50));
        assert!(diffs.note("room", Change::Join(listed("a"))));
        assert!(!diffs.note("room", Change::Join(listed("b"))));
        assert!(!diffs.note("room", Change::Leave(listed("c"))));
        assert!(!diffs.note("room", Change::Leave(listed("a"))));
        assert!(diffs.note("other", Change::Join(listed("z"))));
        let event = diffs.take("room").unwrap();
        assert_eq!(event.event_type(), PRESENCE_DIFF);
        assert_eq!(
            event.decode::<serde_json::Value>().unwrap(),
            serde_json::json!({
                "type": "presence.diff",
                "joins": [{ "channel": "b", "meta": { "name": "b" } }],
                "leaves": [{ "channel": "c", "meta": { "name": "c" } }],
            })
        );
        assert!(diffs.take("room").is_none(), "the window is closed");
        assert!(
            diffs.note("room", Change::Join(listed("d"))),
            "a new one opens"
        );
        assert!(diffs.note("lone", Change::Join(listed("e"))));
        diffs.note("lone", Change::Leave(listed("e")));
        assert!(
            diffs.take("lone").is_none(),
            "cancelled out: nothing to send"
        );
    }
}
