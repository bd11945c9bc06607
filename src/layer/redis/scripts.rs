//! The layer's Lua scripts (in `scripts/`, each run atomically by Redis), hashed once.

use redis::Script;

/// The scripts, loaded by hash (`EVALSHA`; the `redis` crate reloads them after a `NOSCRIPT`).
pub(super) struct Scripts {
    /// `send` to a named channel: capacity and expiry checked in Redis.
    pub(super) send: Script,
    /// `group_send`: one `PUBLISH` to the group's processes, and delivery to members added from
    /// elsewhere.
    pub(super) group_send: Script,
    /// Takes a channel off a presence list, returning what it was listed with.
    pub(super) presence_take: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            send: Script::new(concat!(
                include_str!("scripts/push.lua"),
                include_str!("scripts/send.lua")
            )),
            group_send: Script::new(concat!(
                include_str!("scripts/push.lua"),
                include_str!("scripts/group_send.lua")
            )),
            presence_take: Script::new(include_str!("scripts/presence_take.lua")),
        }
    }
}
