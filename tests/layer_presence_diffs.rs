//! Presence diffs (Phoenix's `presence_diff`): with a presence window, a group hears its joins
//! and leaves as one `presence.diff` event per window, on both layers (Redis: a real
//! `redis-server`, two processes).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::redis_server::RedisServer;
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Event, InMemoryChannelLayer, InMemoryConfig, LayerHandle,
    RedisChannelLayer, RedisConfig, PRESENCE_DIFF,
};

const WINDOW: Duration = Duration::from_millis(500);

/// The channels a diff lists under `field` ("joins" or "leaves").
fn listed(diff: &Event, field: &str) -> BTreeSet<String> {
    let value = diff.decode::<serde_json::Value>().unwrap();
    value[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["channel"].as_str().unwrap().to_owned())
        .collect()
}

/// Reads diffs from `watcher` until `joins` have all been seen joining and `leaves` leaving;
/// returns how many events it took. Any other presence event fails.
async fn until_seen(
    watcher: &mut ChannelReceiver,
    mut joins: BTreeSet<String>,
    mut leaves: BTreeSet<String>,
) -> usize {
    let mut events = 0;
    while !joins.is_empty() || !leaves.is_empty() {
        let event = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
            .await
            .expect("the diffs come");
        assert_eq!(event.event_type(), PRESENCE_DIFF, "{event:?}");
        events += 1;
        for joined in listed(&event, "joins") {
            joins.remove(&joined);
        }
        for left in listed(&event, "leaves") {
            leaves.remove(&left);
        }
    }
    events
}

/// Twenty listings join `room` on `joining` at once, then leave; `watching` hears each wave as
/// one diff (or a few, if a wave straddles a window), never twenty events. A listing that joins
/// and leaves within one window is never heard of.
async fn a_storm_is_heard_as_a_few_diffs(watching: LayerHandle, joining: LayerHandle) {
    let mut watcher = watching.new_channel().await.unwrap();
    watching.group_add("room", watcher.name()).await.unwrap();
    let mut joiners = Vec::new();
    for n in 0..20 {
        let joiner = joining.new_channel().await.unwrap();
        let meta = serde_json::json!({ "n": n });
        joining
            .presence_add("room", joiner.name(), meta)
            .await
            .unwrap();
        joiners.push(joiner);
    }
    let names: BTreeSet<String> = joiners.iter().map(|j| j.name().to_owned()).collect();
    let events = until_seen(&mut watcher, names.clone(), BTreeSet::new()).await;
    assert!(events <= 3, "twenty joins came as {events} events");
    assert_eq!(watching.presence_list("room").await.unwrap().len(), 20);

    drop(joiners); // every connection goes at once
    let events = until_seen(&mut watcher, BTreeSet::new(), names).await;
    assert!(events <= 3, "twenty leaves came as {events} events");

    // In and out within one window: the group never hears of it.
    let brief = joining.new_channel().await.unwrap();
    joining
        .presence_add("room", brief.name(), serde_json::json!({}))
        .await
        .unwrap();
    drop(brief);
    let stays = joining.new_channel().await.unwrap();
    joining
        .presence_add("room", stays.name(), serde_json::json!({}))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
        .await
        .unwrap();
    assert_eq!(
        listed(&event, "joins"),
        BTreeSet::from([stays.name().to_owned()])
    );
    assert!(listed(&event, "leaves").is_empty(), "{event:?}");
}

#[tokio::test]
async fn in_memory_a_storm_is_heard_as_a_few_diffs() {
    let layer = LayerHandle::new(InMemoryChannelLayer::with_config(
        InMemoryConfig::default().presence_window(WINDOW),
    ));
    a_storm_is_heard_as_a_few_diffs(layer.clone(), layer).await;
}

#[tokio::test]
async fn on_redis_a_storm_is_heard_as_a_few_diffs_across_processes() {
    let server = RedisServer::start().await;
    let config = RedisConfig::new(server.url()).presence_window(WINDOW);
    let watching = RedisChannelLayer::connect(config.clone()).await.unwrap();
    let joining = RedisChannelLayer::connect(config).await.unwrap();
    a_storm_is_heard_as_a_few_diffs(LayerHandle::new(watching), LayerHandle::new(joining)).await;
}

#[tokio::test]
async fn without_a_window_each_change_is_its_own_event() {
    let layer = InMemoryChannelLayer::new();
    let mut watcher = layer.new_channel().await.unwrap();
    layer.group_add("room", watcher.name()).await.unwrap();
    let joiner = layer.new_channel().await.unwrap();
    layer
        .presence_add("room", joiner.name(), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(watcher.recv().await.event_type(), "presence.join");
    drop(joiner);
    assert_eq!(watcher.recv().await.event_type(), "presence.leave");
}
