//! Recovery after reconnect (in memory): a group that keeps a stream gives a client that comes
//! back exactly what it missed, in order, or says it cannot. Expiry runs on tokio's paused clock.

mod common;

use std::time::Duration;

use switchboard::layer::{
    ChannelLayer, Event, InMemoryChannelLayer, InMemoryConfig, Recovery, StreamPosition,
};

fn event(n: u64) -> Event {
    Event::from_json(format!(r#"{{"type":"chat.message","n":{n}}}"#)).unwrap()
}

fn n_of(event: &Event) -> u64 {
    event.decode::<serde_json::Value>().unwrap()["n"]
        .as_u64()
        .unwrap()
}

fn streamed(events: usize, age: Duration) -> InMemoryChannelLayer {
    InMemoryChannelLayer::with_config(
        InMemoryConfig::default().group_history("chat_*", events, age),
    )
}

/// A member of `chat_lobby` on `member` receives 1..=3 sent through `sender`, each with the
/// position `group_send` reported; then it goes, and 4..=13 are sent. Returns the position of 3.
async fn follow_then_miss_ten(
    member: &dyn ChannelLayer,
    sender: &dyn ChannelLayer,
) -> StreamPosition {
    let mut inbox = member.new_channel().await.unwrap();
    member.group_add("chat_lobby", inbox.name()).await.unwrap();
    let mut last = None;
    for n in 1..=3 {
        let sent = sender.group_send("chat_lobby", event(n)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .unwrap();
        assert_eq!(n_of(&got), n);
        assert_eq!(
            got.position(),
            sent.position.as_ref(),
            "member and sender agree"
        );
        last = got.position().cloned();
    }
    let last = last.unwrap();
    assert_eq!(last.offset, 3);
    drop(inbox); // the connection drops; ten messages are said meanwhile
    for n in 4..=13 {
        sender.group_send("chat_lobby", event(n)).await.unwrap();
    }
    last
}

#[tokio::test(start_paused = true)]
async fn a_client_that_comes_back_gets_exactly_what_it_missed_in_order() {
    let layer = streamed(100, Duration::from_secs(300));
    let last = follow_then_miss_ten(&layer, &layer).await;
    match layer.recover("chat_lobby", &last).await.unwrap() {
        Recovery::Recovered { events, position } => {
            let ns: Vec<u64> = events.iter().map(n_of).collect();
            assert_eq!(ns, (4..=13).collect::<Vec<_>>(), "all ten, once, in order");
            let offsets: Vec<u64> = events
                .iter()
                .map(|e| e.position().unwrap().offset)
                .collect();
            assert_eq!(offsets, (4..=13).collect::<Vec<_>>());
            assert_eq!(position.offset, 13);
            assert_eq!(position.epoch, last.epoch);
        }
        other => panic!("expected the missed events, got {other:?}"),
    }
    // Nothing missed: recovered, with no event.
    let now = StreamPosition {
        epoch: last.epoch.clone(),
        offset: 13,
    };
    assert!(matches!(
        layer.recover("chat_lobby", &now).await.unwrap(),
        Recovery::Recovered { events, .. } if events.is_empty()
    ));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_lost_what_was_missed_says_so() {
    let layer = streamed(5, Duration::from_secs(60));
    let first = layer
        .group_send("chat_busy", event(1))
        .await
        .unwrap()
        .position
        .unwrap();
    // More than the stream keeps.
    for n in 2..=10 {
        layer.group_send("chat_busy", event(n)).await.unwrap();
    }
    match layer.recover("chat_busy", &first).await.unwrap() {
        Recovery::NotRecovered {
            position: Some(now),
        } => assert_eq!(now.offset, 10),
        other => panic!("expected NotRecovered, got {other:?}"),
    }
    // Older than the stream's age.
    let tenth = StreamPosition {
        epoch: first.epoch.clone(),
        offset: 9,
    };
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(matches!(
        layer.recover("chat_busy", &tenth).await.unwrap(),
        Recovery::NotRecovered { .. }
    ));
    // Another epoch (a restarted process has a new stream).
    let restarted = streamed(5, Duration::from_secs(60));
    restarted.group_send("chat_busy", event(1)).await.unwrap();
    assert!(matches!(
        restarted.recover("chat_busy", &first).await.unwrap(),
        Recovery::NotRecovered { position: Some(now) } if now.epoch != first.epoch
    ));
}

#[tokio::test(start_paused = true)]
async fn groups_without_a_stream_cost_nothing_and_never_recover() {
    let layer = streamed(5, Duration::from_secs(60));
    let mut inbox = layer.new_channel().await.unwrap();
    layer.group_add("plain", inbox.name()).await.unwrap();
    let sent = layer.group_send("plain", event(1)).await.unwrap();
    assert_eq!(sent.position, None);
    assert_eq!(inbox.recv().await.position(), None);
    let anywhere = StreamPosition {
        epoch: "x".into(),
        offset: 0,
    };
    assert_eq!(
        layer.recover("plain", &anywhere).await.unwrap(),
        Recovery::NotRecovered { position: None }
    );
}

mod redis {
    //! The same on Redis, across two processes sharing one real redis-server.

    use super::{event, n_of};
    use std::time::Duration;

    use switchboard::layer::{ChannelLayer, Recovery, RedisChannelLayer, RedisConfig};

    use crate::common::redis_server::RedisServer;

    async fn process(server: &RedisServer, events: usize) -> RedisChannelLayer {
        RedisChannelLayer::connect(RedisConfig::new(server.url()).group_history(
            "chat_*",
            events,
            Duration::from_secs(300),
        ))
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_client_that_comes_back_gets_exactly_what_it_missed_across_processes() {
        let server = RedisServer::start().await;
        let (a, b) = (process(&server, 100).await, process(&server, 100).await);
        let last = super::follow_then_miss_ten(&a, &b).await;
        for layer in [&a, &b] {
            match layer.recover("chat_lobby", &last).await.unwrap() {
                Recovery::Recovered { events, position } => {
                    let ns: Vec<u64> = events.iter().map(n_of).collect();
                    assert_eq!(ns, (4..=13).collect::<Vec<_>>(), "all ten, once, in order");
                    assert_eq!(position.offset, 13);
                }
                other => panic!("expected the missed events, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn lost_history_is_said_and_groups_without_a_stream_never_recover() {
        let server = RedisServer::start().await;
        let layer = process(&server, 5).await;
        let first = layer
            .group_send("chat_busy", event(1))
            .await
            .unwrap()
            .position
            .unwrap();
        for n in 2..=10 {
            layer.group_send("chat_busy", event(n)).await.unwrap();
        }
        // More than the stream keeps.
        assert!(matches!(
            layer.recover("chat_busy", &first).await.unwrap(),
            Recovery::NotRecovered { position: Some(now) } if now.offset == 10
        ));
        // Redis lost everything: the next event starts a new epoch.
        let mut admin = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        let after = layer
            .group_send("chat_busy", event(11))
            .await
            .unwrap()
            .position
            .unwrap();
        assert_ne!(after.epoch, first.epoch);
        assert_eq!(after.offset, 1);
        let ninth = switchboard::layer::StreamPosition {
            epoch: first.epoch.clone(),
            offset: 9,
        };
        assert!(matches!(
            layer.recover("chat_busy", &ninth).await.unwrap(),
            Recovery::NotRecovered { .. }
        ));
        // A group that keeps no stream.
        let sent = layer.group_send("plain", event(1)).await.unwrap();
        assert_eq!(sent.position, None);
        assert_eq!(
            layer.recover("plain", &first).await.unwrap(),
            Recovery::NotRecovered { position: None }
        );
    }
}
