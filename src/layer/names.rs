//! Channel and group names: the rules every layer checks (Channels' own), and the per-user group.

use super::{InvalidNameReason, LayerError, NameKind};

/// Names must be shorter than this many characters (Channels' `MAX_NAME_LENGTH`).
pub const MAX_NAME_LENGTH: usize = 100;

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
/// `group_send(&user_group(id), ..)`, and [`GroupSent::reached_anyone`](super::GroupSent::reached_anyone) says whether the user
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

/// Channel capacities by name pattern (Channels' `channel_capacity`), first match first: shared
/// by the layers' configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Capacities(Vec<(glob::Pattern, usize)>);

impl Capacities {
    /// Adds `pattern` → `messages`.
    ///
    /// # Panics
    ///
    /// If `pattern` is not a valid glob, or `messages` is 0.
    #[track_caller]
    pub(crate) fn add(&mut self, pattern: &str, messages: usize) {
        assert!(messages > 0, "channel capacity must be at least 1");
        let pattern = glob::Pattern::new(pattern)
            .unwrap_or_else(|error| panic!("invalid channel pattern {pattern:?}: {error}"));
        self.0.push((pattern, messages));
    }

    /// The first matching pattern's capacity for `channel`, or `default`.
    pub(crate) fn of(&self, channel: &str, default: usize) -> usize {
        self.0
            .iter()
            .find(|(pattern, _)| pattern.matches(channel))
            .map_or(default, |(_, messages)| *messages)
    }

    /// The patterns with their capacities, first first.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, usize)> {
        self.0
            .iter()
            .map(|(pattern, messages)| (pattern.as_str(), *messages))
    }
}

/// Whether `channel` is a process-specific name (one made by [`ChannelLayer::new_channel`](super::ChannelLayer::new_channel)).
pub fn is_process_specific(channel: &str) -> bool {
    channel.contains('!')
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
