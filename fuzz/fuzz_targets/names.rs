//! Channel-layer names and events from arbitrary strings: validation never panics and agrees
//! with the rules (ASCII letters, digits, '-', '_', '.', one '!' in channel names, under 100).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::layer::{validate_channel_name, validate_group_name, Event, MAX_NAME_LENGTH};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let group_ok = !text.is_empty() && text.len() < MAX_NAME_LENGTH && text.chars().all(plain);
    assert_eq!(validate_group_name(&text).is_ok(), group_ok, "{text:?}");
    if let Ok(()) = validate_channel_name(&text) {
        assert!(
            text.len() < MAX_NAME_LENGTH
                && text.matches('!').count() <= 1
                && !text.starts_with('!')
        );
    }
    if let Ok(event) = Event::from_json(text.as_ref()) {
        let _ = event.event_type();
        let _ = event.decode::<serde::de::IgnoredAny>();
    }
});
