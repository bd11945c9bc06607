//! channels_redis' own tests (`tests/test_core.py`) that have a counterpart here, ported to
//! `RedisChannelLayer` against a real `redis-server`, with channels_redis' settings (capacity 3,
//! `channel_capacity={"tiny": 1}`). The multiple-hosts (sharding) cases run on a Redis Cluster,
//! switchboard's counterpart, in `layer_redis_cluster.rs`. Left out: `async_to_sync` ones, and the
//! timed expiry ones (`layer_redis.rs` covers expiry).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::WAIT;
use switchboard::layer::{ChannelLayer, Event, LayerError, RedisChannelLayer, RedisConfig};

fn message(event_type: &str, text: &str) -> Event {
    Event::typed(event_type, &serde_json::json!({ "text": text })).unwrap()
}

fn text_of(event: &Event) -> String {
    event.decode::<serde_json::Value>().unwrap()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn layer(server: &RedisServer) -> RedisChannelLayer {
    RedisChannelLayer::connect(
        RedisConfig::new(server.url())
            .capacity(3)
            .channel_capacity("tiny", 1)
            .channel_capacity("one", 1),
    )
    .await
    .unwrap()
}

async fn receive_within(layer: &RedisChannelLayer, channel: &str, wait: Duration) -> Option<Event> {
    tokio::time::timeout(wait, layer.receive(channel))
        .await
        .ok()
        .map(|received| received.unwrap())
}

#[tokio::test]
async fn test_send_receive() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    layer
        .send("test-channel-1", message("test.message", "Ahoy-hoy!"))
        .await
        .unwrap();
    let got = receive_within(&layer, "test-channel-1", WAIT)
        .await
        .unwrap();
    assert_eq!(
        (got.event_type(), text_of(&got).as_str()),
        ("test.message", "Ahoy-hoy!")
    );
}

#[tokio::test]
async fn test_send_capacity_and_specific_capacity() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    for _ in 0..3 {
        layer
            .send("test-channel-1", message("test.message", ""))
            .await
            .unwrap();
    }
    assert!(matches!(
        layer
            .send("test-channel-1", message("test.message", ""))
            .await,
        Err(LayerError::ChannelFull { capacity: 3, .. })
    ));
    layer
        .send("one", message("test.message", ""))
        .await
        .unwrap();
    assert!(matches!(
        layer.send("one", message("test.message", "")).await,
        Err(LayerError::ChannelFull { capacity: 1, .. })
    ));
}

#[tokio::test]
async fn test_process_local_send_receive() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    let inbox = layer.new_channel().await.unwrap();
    layer
        .send(inbox.name(), message("test.message", "Local only please"))
        .await
        .unwrap();
    let got = receive_within(&layer, inbox.name(), WAIT).await.unwrap();
    assert_eq!(text_of(&got), "Local only please");
}

#[tokio::test]
async fn test_multi_send_receive() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    for n in 1..=3 {
        layer
            .send("test-channel-3", message(&format!("message.{n}"), ""))
            .await
            .unwrap();
    }
    for n in 1..=3 {
        let got = receive_within(&layer, "test-channel-3", WAIT)
            .await
            .unwrap();
        assert_eq!(got.event_type(), format!("message.{n}"));
    }
}

#[tokio::test]
async fn test_reject_bad_channel_and_client_prefix() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    assert!(matches!(
        layer.send("=+135!", message("foom", "")).await,
        Err(LayerError::InvalidName { .. })
    ));
    assert!(matches!(
        layer.receive("=+135!").await,
        Err(LayerError::InvalidName { .. })
    ));
    // channels_redis asserts; here a typed error, at once.
    assert!(matches!(
        layer.receive("not-client-prefix!local_part").await,
        Err(LayerError::ForeignChannel { .. })
    ));
}

#[tokio::test]
async fn test_groups_basic() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    let one = layer.new_channel().await.unwrap();
    let two = layer.new_channel().await.unwrap();
    let three = layer.new_channel().await.unwrap();
    for inbox in [&one, &two, &three] {
        layer.group_add("test-group", inbox.name()).await.unwrap();
    }
    layer.group_discard("test-group", two.name()).await.unwrap();
    layer
        .group_send("test-group", message("message.1", ""))
        .await
        .unwrap();
    for inbox in [&one, &three] {
        let got = receive_within(&layer, inbox.name(), Duration::from_secs(1)).await;
        assert_eq!(got.expect("a member got it").event_type(), "message.1");
    }
    assert!(
        receive_within(&layer, two.name(), Duration::from_secs(1))
            .await
            .is_none(),
        "the removed channel did not get the message"
    );
}

#[tokio::test]
async fn test_groups_channel_full() {
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    layer
        .group_add("test-group", "test-gr-chan-1")
        .await
        .unwrap();
    for _ in 0..5 {
        layer
            .group_send("test-group", message("message.1", ""))
            .await
            .unwrap();
    }
    // channels_redis ignores the full channel; switchboard counts the skips too.
    assert_eq!(layer.stats().dropped_full, 2);
}

#[tokio::test]
async fn test_receive_cancel() {
    // A receive cancelled at any moment loses nothing: every message sent is received once.
    let server = RedisServer::start().await;
    let layer = layer(&server).await;
    let inbox = layer.new_channel().await.unwrap();
    for n in 0..50u32 {
        layer
            .send(inbox.name(), message("test.message", &n.to_string()))
            .await
            .unwrap();
        let cancelled = tokio::time::timeout(
            Duration::from_micros(u64::from(n) * 20),
            layer.receive(inbox.name()),
        )
        .await;
        if let Ok(got) = cancelled {
            assert_eq!(text_of(&got.unwrap()), n.to_string());
        } else {
            let got = receive_within(&layer, inbox.name(), WAIT).await.unwrap();
            assert_eq!(
                text_of(&got),
                n.to_string(),
                "the cancelled receive lost nothing"
            );
        }
    }
}

#[tokio::test]
async fn test_random_reset_channel_names_and_prefixes() {
    let server = RedisServer::start().await;
    let (a, b) = (layer(&server).await, layer(&server).await);
    let mut names = HashSet::new();
    for layer in [&a, &b] {
        for _ in 0..100 {
            let inbox = layer.new_channel().await.unwrap();
            assert!(
                names.insert(inbox.name().to_owned()),
                "a channel name came twice"
            );
        }
    }
    let prefix = |name: &str| name.split('!').next().unwrap().to_owned();
    let prefixes: HashSet<String> = names.iter().map(|name| prefix(name)).collect();
    assert_eq!(prefixes.len(), 2, "each process has its own client prefix");
}
