//! One suite, two layers: every case runs against `InMemoryChannelLayer` and against
//! `RedisChannelLayer` on a real `redis-server` started for the test. For Redis each "process" is
//! a layer of its own (its own connections and process name) on the same server, so the cases
//! that use two prove delivery between processes; for memory both are the same layer.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::WAIT;
use serde_json::json;
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Event, InMemoryChannelLayer, InMemoryConfig, LayerError,
    RedisChannelLayer, RedisConfig, PRESENCE_JOIN, PRESENCE_LEAVE,
};

fn event(n: u64) -> Event {
    Event::from_json(format!(r#"{{"type":"test","n":{n}}}"#)).unwrap()
}

fn n_of(event: &Event) -> u64 {
    serde_json::from_str::<serde_json::Value>(event.json()).unwrap()["n"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

async fn recv(inbox: &mut ChannelReceiver) -> Event {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a message within 10 s")
}

/// Nothing more arrives: a marker sent after the checked operation comes first. Works for both
/// layers because a channel's messages from one sender arrive in order.
async fn next_is_marker(layer: &dyn ChannelLayer, inbox: &mut ChannelReceiver) {
    layer.send(inbox.name(), event(999)).await.unwrap();
    assert_eq!(
        n_of(&recv(inbox).await),
        999,
        "a message came before the marker"
    );
}

/// Makes the "processes" of a case.
enum Backend {
    Memory(InMemoryChannelLayer),
    Redis(Box<RedisServer>, String),
}

impl Backend {
    async fn memory() -> Self {
        Self::Memory(InMemoryChannelLayer::with_config(
            InMemoryConfig::default().capacity(5),
        ))
    }

    async fn redis() -> Self {
        let server = RedisServer::start().await;
        let prefix = format!("test{}", rand_suffix());
        Self::Redis(Box::new(server), prefix)
    }

    /// A layer for one process (capacity 5).
    async fn process(&self) -> Arc<dyn ChannelLayer> {
        match self {
            Self::Memory(layer) => Arc::new(layer.clone()),
            Self::Redis(server, prefix) => Arc::new(
                RedisChannelLayer::connect(
                    RedisConfig::new(server.url())
                        .prefix(prefix.clone())
                        .capacity(5),
                )
                .await
                .expect("connects to the test's redis-server"),
            ),
        }
    }
}

fn rand_suffix() -> u32 {
    std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos())
}

async fn point_to_point_between_processes(backend: Backend) {
    let (a, b) = (backend.process().await, backend.process().await);
    let mut inbox = a.new_channel().await.unwrap();
    for n in 0..3 {
        b.send(inbox.name(), event(n)).await.unwrap();
    }
    for n in 0..3 {
        assert_eq!(n_of(&recv(&mut inbox).await), n, "in order");
    }
}

async fn groups_reach_members_of_every_process(backend: Backend) {
    let (a, b, c) = (
        backend.process().await,
        backend.process().await,
        backend.process().await,
    );
    let mut on_a = a.new_channel().await.unwrap();
    let mut on_b = b.new_channel().await.unwrap();
    let mut also_on_b = b.new_channel().await.unwrap();
    a.group_add("room", on_a.name()).await.unwrap();
    b.group_add("room", on_b.name()).await.unwrap();
    b.group_add("room", also_on_b.name()).await.unwrap();
    c.group_send("room", event(1)).await.unwrap();
    for inbox in [&mut on_a, &mut on_b, &mut also_on_b] {
        assert_eq!(n_of(&recv(inbox).await), 1);
    }
    b.group_discard("room", on_b.name()).await.unwrap();
    c.group_send("room", event(2)).await.unwrap();
    assert_eq!(n_of(&recv(&mut on_a).await), 2);
    assert_eq!(n_of(&recv(&mut also_on_b).await), 2);
    next_is_marker(&*b, &mut on_b).await;
    // A member that goes (its receiver dropped) leaves the group.
    let before = b.stats().memberships;
    drop(also_on_b);
    c.group_send("room", event(3)).await.unwrap();
    assert_eq!(n_of(&recv(&mut on_a).await), 3);
    assert_eq!(b.stats().memberships, before - 1);
    assert!(c.group_send("nobody-here", event(4)).await.is_ok());
}

async fn a_group_keeps_one_order_for_all_members(backend: Backend) {
    let (a, b) = (backend.process().await, backend.process().await);
    let mut on_a = a.new_channel().await.unwrap();
    let mut on_b = b.new_channel().await.unwrap();
    a.group_add("ordered", on_a.name()).await.unwrap();
    b.group_add("ordered", on_b.name()).await.unwrap();
    for n in 0..4 {
        // Capacity is 5: read as we go.
        a.group_send("ordered", event(n)).await.unwrap();
        assert_eq!(n_of(&recv(&mut on_a).await), n);
        assert_eq!(n_of(&recv(&mut on_b).await), n);
    }
}

async fn channels_added_by_another_process_get_group_messages(backend: Backend) {
    let (worker, owner) = (backend.process().await, backend.process().await);
    let mut inbox = owner.new_channel().await.unwrap();
    worker.group_add("alerts", inbox.name()).await.unwrap();
    worker.group_send("alerts", event(7)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 7);
    worker.group_discard("alerts", inbox.name()).await.unwrap();
    worker.group_send("alerts", event(8)).await.unwrap();
    next_is_marker(&*owner, &mut inbox).await;
}

async fn a_full_channel_refuses_sends_and_groups_skip_it(backend: Backend) {
    let a = backend.process().await;
    let mut full = a.new_channel().await.unwrap();
    let mut free = a.new_channel().await.unwrap();
    for n in 0..5 {
        a.send(full.name(), event(n)).await.unwrap();
    }
    match a.send(full.name(), event(5)).await {
        Err(LayerError::ChannelFull { capacity, .. }) => assert_eq!(capacity, 5),
        other => panic!("expected ChannelFull, got {other:?}"),
    }
    assert_eq!(a.stats().rejected_full, 1);
    a.group_add("g", full.name()).await.unwrap();
    a.group_add("g", free.name()).await.unwrap();
    a.group_send("g", event(6)).await.unwrap();
    assert_eq!(n_of(&recv(&mut free).await), 6);
    assert_eq!(
        a.stats().dropped_full,
        1,
        "the full member's skip is counted"
    );
    for n in 0..5 {
        assert_eq!(n_of(&recv(&mut full).await), n);
    }
}

async fn named_channels_hand_each_message_to_one_reader(backend: Backend) {
    let (a, b) = (backend.process().await, backend.process().await);
    let readers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|layer| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Ok(Ok(event)) =
                    tokio::time::timeout(Duration::from_millis(1500), layer.receive("jobs")).await
                {
                    got.push(n_of(&event));
                }
                got
            })
        })
        .collect();
    let mut sent = 0;
    while sent < 20 {
        match a.send("jobs", event(sent)).await {
            Ok(()) => sent += 1,
            // Capacity 5: wait for the readers to make room.
            Err(LayerError::ChannelFull { .. }) => tokio::task::yield_now().await,
            Err(other) => panic!("{other}"),
        }
    }
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>(), "each job once, none lost");
}

async fn named_channels_are_bounded(backend: Backend) {
    let a = backend.process().await;
    for n in 0..5 {
        a.send("bounded", event(n)).await.unwrap();
    }
    assert!(matches!(
        a.send("bounded", event(5)).await,
        Err(LayerError::ChannelFull { capacity: 5, .. })
    ));
    assert_eq!(n_of(&a.receive("bounded").await.unwrap()), 0);
}

async fn names_are_checked(backend: Backend) {
    let a = backend.process().await;
    for result in [
        a.send("bad name", event(0)).await,
        a.group_send("bad!group", event(0)).await.map(drop),
        a.group_add("", "x").await,
        a.group_discard("g", &"x".repeat(100)).await,
    ] {
        assert!(
            matches!(result, Err(LayerError::InvalidName { .. })),
            "{result:?}"
        );
    }
}

async fn presence_is_shared_by_every_process(backend: Backend) {
    let (a, b) = (backend.process().await, backend.process().await);
    let mut ada = a.new_channel().await.unwrap();
    let mut bob = b.new_channel().await.unwrap();
    a.presence_add("room", ada.name(), json!({"user": "ada"}))
        .await
        .unwrap();
    let joined = recv(&mut ada).await;
    assert_eq!(joined.event_type(), PRESENCE_JOIN);
    b.presence_add("room", bob.name(), json!({"user": "bob"}))
        .await
        .unwrap();
    for inbox in [&mut ada, &mut bob] {
        let joined: serde_json::Value = recv(inbox).await.decode().unwrap();
        assert_eq!(joined["type"], PRESENCE_JOIN);
        assert_eq!(joined["meta"]["user"], "bob");
    }
    for layer in [&a, &b] {
        let users: HashSet<String> = layer
            .presence_list("room")
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.meta["user"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(users, HashSet::from(["ada".to_owned(), "bob".to_owned()]));
    }
    let bob_name = bob.name().to_owned();
    drop(bob); // the connection ended
    let left: serde_json::Value = recv(&mut ada).await.decode().unwrap();
    assert_eq!(left["type"], PRESENCE_LEAVE);
    assert_eq!(left["channel"], bob_name);
    assert_eq!(left["meta"]["user"], "bob");
    let listed = a.presence_list("room").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].meta["user"], "ada");
    a.presence_remove("room", ada.name()).await.unwrap();
    assert_eq!(recv(&mut ada).await.event_type(), PRESENCE_LEAVE);
    assert!(b.presence_list("room").await.unwrap().is_empty());
}

async fn flush_empties_channels_and_groups(backend: Backend) {
    let (a, b) = (backend.process().await, backend.process().await);
    let mut inbox = a.new_channel().await.unwrap();
    a.group_add("room", inbox.name()).await.unwrap();
    b.send("queued", event(1)).await.unwrap();
    a.send(inbox.name(), event(2)).await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    b.group_send("room", event(3)).await.unwrap();
    next_is_marker(&*a, &mut inbox).await;
    b.send("queued", event(4)).await.unwrap();
    assert_eq!(n_of(&a.receive("queued").await.unwrap()), 4);
}

async fn receiving_from_another_process_channel_fails_at_once(backend: Backend) {
    let (a, b) = (backend.process().await, backend.process().await);
    let inbox = a.new_channel().await.unwrap();
    // No layer made this name; and on Redis, b is another process than a, whose channel it is.
    let mut names = vec![format!("{}x!1", inbox.name().split('!').next().unwrap())];
    if matches!(backend, Backend::Redis(..)) {
        names.push(inbox.name().to_owned());
    }
    // Neither call may wait.
    for name in names {
        match tokio::time::timeout(std::time::Duration::from_secs(5), b.receive(&name)).await {
            Ok(Err(LayerError::ForeignChannel { channel })) => assert_eq!(channel, name),
            other => panic!("receive({name}) should fail at once, got {other:?}"),
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::memory().await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::redis().await).await;
                }
            )*
        }
    };
}

conformance!(
    point_to_point_between_processes,
    groups_reach_members_of_every_process,
    a_group_keeps_one_order_for_all_members,
    channels_added_by_another_process_get_group_messages,
    a_full_channel_refuses_sends_and_groups_skip_it,
    named_channels_hand_each_message_to_one_reader,
    named_channels_are_bounded,
    names_are_checked,
    presence_is_shared_by_every_process,
    flush_empties_channels_and_groups,
    receiving_from_another_process_channel_fails_at_once,
);
