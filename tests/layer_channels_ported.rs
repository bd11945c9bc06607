//! Channels' own tests of its `InMemoryChannelLayer` (`tests/test_inmemorychannel.py`), ported
//! one for one to `InMemoryChannelLayer`, with Channels' settings (capacity 3, expiry 0.1 s). The
//! clock is tokio's paused one: expiry without waiting. Where switchboard differs, the case says
//! so and checks what switchboard does instead.

use std::time::Duration;

use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer, InMemoryConfig, LayerError};

fn message(event_type: &str) -> Event {
    Event::typed(event_type, &serde_json::json!({ "text": "Ahoy-hoy!" })).unwrap()
}

fn layer() -> InMemoryChannelLayer {
    InMemoryChannelLayer::with_config(InMemoryConfig::default().capacity(3))
}

fn expiring() -> InMemoryChannelLayer {
    InMemoryChannelLayer::with_config(InMemoryConfig::default().expiry(Duration::from_millis(100)))
}

/// Waits (on the paused clock) up to `seconds` for a message; `None` if none came.
async fn receive_within(
    layer: &InMemoryChannelLayer,
    channel: &str,
    seconds: f64,
) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs_f64(seconds), layer.receive(channel))
        .await
        .ok()
        .map(|received| received.unwrap())
}

#[tokio::test(start_paused = true)]
async fn test_send_receive() {
    let layer = layer();
    layer
        .send("test-channel-1", message("test.message"))
        .await
        .unwrap();
    layer
        .send("test-channel-1", message("test.message"))
        .await
        .unwrap();
    let got = layer.receive("test-channel-1").await.unwrap();
    assert_eq!(got.event_type(), "test.message");
    assert_eq!(
        got.decode::<serde_json::Value>().unwrap()["text"],
        "Ahoy-hoy!"
    );
    assert_eq!(layer.stats().channels, 1, "not removed because not empty");
    layer.receive("test-channel-1").await.unwrap();
    assert_eq!(layer.stats().channels, 0, "removed because empty");
}

#[tokio::test(start_paused = true)]
async fn test_race_empty() {
    let layer = layer();
    let waiting = tokio::spawn({
        let layer = layer.clone();
        async move { layer.receive("test-channel-1").await }
    });
    tokio::task::yield_now().await; // the receive waits
    layer
        .send("test-channel-1", message("test.message"))
        .await
        .unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.event_type(), "test.message");
    assert_eq!(layer.stats().channels, 0);
}

#[tokio::test(start_paused = true)]
async fn test_send_capacity() {
    let layer = layer();
    for _ in 0..3 {
        layer
            .send("test-channel-1", message("test.message"))
            .await
            .unwrap();
    }
    assert!(matches!(
        layer.send("test-channel-1", message("test.message")).await,
        Err(LayerError::ChannelFull { capacity: 3, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn test_process_local_send_receive() {
    let layer = layer();
    let inbox = layer.new_channel().await.unwrap();
    layer
        .send(inbox.name(), message("test.message"))
        .await
        .unwrap();
    let got = layer.receive(inbox.name()).await.unwrap();
    assert_eq!(got.event_type(), "test.message");
}

#[tokio::test(start_paused = true)]
async fn test_multi_send_receive() {
    let layer = layer();
    for n in 1..=3 {
        layer
            .send("test-channel-3", message(&format!("message.{n}")))
            .await
            .unwrap();
    }
    for n in 1..=3 {
        let got = layer.receive("test-channel-3").await.unwrap();
        assert_eq!(got.event_type(), format!("message.{n}"));
    }
}

#[tokio::test(start_paused = true)]
async fn test_groups_basic() {
    let layer = layer();
    for channel in ["test-gr-chan-1", "test-gr-chan-2", "test-gr-chan-3"] {
        layer.group_add("test-group", channel).await.unwrap();
    }
    layer
        .group_discard("test-group", "test-gr-chan-2")
        .await
        .unwrap();
    layer
        .group_send("test-group", message("message.1"))
        .await
        .unwrap();
    for channel in ["test-gr-chan-1", "test-gr-chan-3"] {
        let got = receive_within(&layer, channel, 1.0)
            .await
            .expect("a member got it");
        assert_eq!(got.event_type(), "message.1");
    }
    assert!(
        receive_within(&layer, "test-gr-chan-2", 1.0)
            .await
            .is_none(),
        "the removed channel did not get the message"
    );
}

#[tokio::test(start_paused = true)]
async fn test_groups_channel_full() {
    let layer = layer();
    layer
        .group_add("test-group", "test-gr-chan-1")
        .await
        .unwrap();
    for _ in 0..5 {
        layer
            .group_send("test-group", message("message.1"))
            .await
            .unwrap();
    }
    // Channels ignores the full channel silently; switchboard counts what it skipped.
    assert_eq!(layer.stats().dropped_full, 2);
}

#[tokio::test(start_paused = true)]
async fn test_expiry_single() {
    let layer = expiring();
    layer
        .send("test-channel-1", message("message.1"))
        .await
        .unwrap();
    assert_eq!(layer.stats().channels, 1);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(
        receive_within(&layer, "test-channel-1", 0.5)
            .await
            .is_none(),
        "the message expired and was dropped"
    );
    assert_eq!(layer.stats().channels, 0, "the channel was cleaned up");
    assert_eq!(layer.stats().expired, 1);
}

#[tokio::test(start_paused = true)]
async fn test_expiry_unread() {
    let layer = expiring();
    layer
        .send("test-channel-1", message("message.1"))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(100)).await;
    layer
        .send("test-channel-2", message("message.2"))
        .await
        .unwrap();
    // Channels still counts 2 channels here (it cleans on receive); switchboard already swept
    // the expired one while making the new channel.
    assert_eq!(layer.stats().channels, 1);
    let got = layer.receive("test-channel-2").await.unwrap();
    assert_eq!(got.event_type(), "message.2");
    assert_eq!(layer.stats().channels, 0, "both channels were cleaned up");
}

#[tokio::test(start_paused = true)]
async fn test_expiry_multi() {
    let layer = expiring();
    for n in 1..=3 {
        layer
            .send("test-channel-1", message(&format!("message.{n}")))
            .await
            .unwrap();
    }
    assert_eq!(
        layer.receive("test-channel-1").await.unwrap().event_type(),
        "message.1"
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    layer
        .send("test-channel-1", message("message.4"))
        .await
        .unwrap();
    assert_eq!(
        layer.receive("test-channel-1").await.unwrap().event_type(),
        "message.4"
    );
    assert!(
        receive_within(&layer, "test-channel-1", 0.5)
            .await
            .is_none(),
        "the second and third messages expired and were dropped"
    );
    assert_eq!(layer.stats().channels, 0, "the channel was cleaned up");
}
