//! `InMemoryChannelLayer` semantics: capacity, expiry, group expiry, names, flush, leaving, and
//! one shared encoding per broadcast. Expiry runs on tokio's paused clock: no waiting.

use std::time::Duration;

use switchboard::layer::{
    ChannelLayer, Event, InMemoryChannelLayer, InMemoryConfig, InvalidNameReason, LayerError,
    NameKind,
};

fn event(n: u32) -> Event {
    Event::from_json(format!(r#"{{"type":"test","n":{n}}}"#)).unwrap()
}

fn n_of(event: &Event) -> u64 {
    serde_json::from_str::<serde_json::Value>(event.json()).unwrap()["n"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn send_to_a_full_channel_is_channel_full() {
    let layer = InMemoryChannelLayer::new();
    let mut inbox = layer.new_channel().await.unwrap();
    for n in 0..100 {
        layer.send(inbox.name(), event(n)).await.unwrap();
    }
    match layer.send(inbox.name(), event(100)).await {
        Err(LayerError::ChannelFull { channel, capacity }) => {
            assert_eq!(channel, inbox.name());
            assert_eq!(capacity, 100);
        }
        other => panic!("expected ChannelFull, got {other:?}"),
    }
    assert_eq!(layer.stats().rejected_full, 1);
    assert_eq!(n_of(&inbox.recv().await), 0); // FIFO
    layer.send(inbox.name(), event(100)).await.unwrap(); // room again
    assert_eq!(layer.stats().queued, 101);
}

#[tokio::test]
async fn group_send_skips_full_members_and_counts_them() {
    let layer = InMemoryChannelLayer::with_config(InMemoryConfig::default().capacity(2));
    let mut full = layer.new_channel().await.unwrap();
    let mut free = layer.new_channel().await.unwrap();
    layer.group_add("room", full.name()).await.unwrap();
    layer.group_add("room", free.name()).await.unwrap();
    layer.send(full.name(), event(0)).await.unwrap();
    layer.send(full.name(), event(1)).await.unwrap();
    layer.group_send("room", event(2)).await.unwrap();
    assert_eq!(n_of(&free.try_recv().unwrap()), 2);
    assert_eq!(n_of(&full.try_recv().unwrap()), 0);
    assert_eq!(n_of(&full.try_recv().unwrap()), 1);
    assert!(
        full.try_recv().is_none(),
        "the full member must have been skipped"
    );
    let stats = layer.stats();
    assert_eq!(stats.dropped_full, 1);
    assert_eq!(stats.queued, 3);
}

#[tokio::test(start_paused = true)]
async fn messages_expire_and_free_their_place() {
    let layer = InMemoryChannelLayer::with_config(InMemoryConfig::default().capacity(3));
    let mut inbox = layer.new_channel().await.unwrap();
    layer.send(inbox.name(), event(0)).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    layer.send(inbox.name(), event(1)).await.unwrap();
    layer.send(inbox.name(), event(2)).await.unwrap();
    tokio::time::advance(Duration::from_secs(31)).await; // message 0 is 61 s old
    layer.send(inbox.name(), event(3)).await.unwrap(); // fits: the expired one gave its place
    assert_eq!(n_of(&inbox.recv().await), 1);
    assert_eq!(layer.stats().expired, 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(inbox.try_recv().is_none());
    assert_eq!(layer.stats().expired, 3);
}

#[tokio::test(start_paused = true)]
async fn group_memberships_expire_unless_renewed() {
    let layer = InMemoryChannelLayer::with_config(
        InMemoryConfig::default().group_expiry(Duration::from_secs(10)),
    );
    let mut renewed = layer.new_channel().await.unwrap();
    let mut lapsed = layer.new_channel().await.unwrap();
    layer.group_add("room", renewed.name()).await.unwrap();
    layer.group_add("room", lapsed.name()).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    layer.group_add("room", renewed.name()).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    layer.group_send("room", event(1)).await.unwrap();
    assert_eq!(n_of(&renewed.try_recv().unwrap()), 1);
    assert!(lapsed.try_recv().is_none());
    let stats = layer.stats();
    assert_eq!(stats.expired_memberships, 1);
    assert_eq!(stats.memberships, 1);
}

#[tokio::test]
async fn bad_names_are_typed_errors() {
    let layer = InMemoryChannelLayer::new();
    let inbox = layer.new_channel().await.unwrap();
    let check = |result: Result<(), LayerError>, want_kind: NameKind| match result {
        Err(LayerError::InvalidName { kind, reason, .. }) => {
            assert_eq!(kind, want_kind);
            reason
        }
        other => panic!("expected InvalidName, got {other:?}"),
    };
    assert_eq!(
        check(layer.send("no spaces", event(0)).await, NameKind::Channel),
        InvalidNameReason::InvalidCharacter {
            character: ' ',
            index: 2
        }
    );
    assert_eq!(
        check(
            layer.group_add("room!", inbox.name()).await,
            NameKind::Group
        ),
        InvalidNameReason::InvalidCharacter {
            character: '!',
            index: 4
        }
    );
    assert_eq!(
        check(
            layer.group_send(&"g".repeat(100), event(0)).await.map(drop),
            NameKind::Group
        ),
        InvalidNameReason::TooLong { length: 100 }
    );
    assert_eq!(
        check(layer.group_discard("", inbox.name()).await, NameKind::Group),
        InvalidNameReason::Empty
    );
    assert!(matches!(
        layer.receive("bad/name").await,
        Err(LayerError::InvalidName { .. })
    ));
}

#[tokio::test]
async fn flush_empties_channels_and_groups_but_keeps_receivers() {
    let layer = InMemoryChannelLayer::new();
    let mut inbox = layer.new_channel().await.unwrap();
    layer.group_add("room", inbox.name()).await.unwrap();
    layer.send(inbox.name(), event(0)).await.unwrap();
    layer.flush().await.unwrap();
    assert!(inbox.try_recv().is_none());
    let stats = layer.stats();
    assert_eq!((stats.groups, stats.memberships), (0, 0));
    layer.group_send("room", event(1)).await.unwrap();
    assert!(inbox.try_recv().is_none());
    layer.send(inbox.name(), event(2)).await.unwrap();
    assert_eq!(n_of(&inbox.recv().await), 2);
}

#[tokio::test]
async fn dropping_a_receiver_deletes_its_channel_and_memberships() {
    let layer = InMemoryChannelLayer::new();
    let inbox = layer.new_channel().await.unwrap();
    let name = inbox.name().to_owned();
    layer.group_add("a", &name).await.unwrap();
    layer.group_add("b", &name).await.unwrap();
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.groups, stats.memberships), (1, 2, 2));
    drop(inbox);
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.groups, stats.memberships), (0, 0, 0));
    // A send to the departed channel is not the sender's error, but it is counted.
    layer.send(&name, event(0)).await.unwrap();
    layer.group_add("a", &name).await.unwrap(); // ignored: it would never be cleaned up
    let stats = layer.stats();
    assert_eq!(stats.dropped_no_receiver, 1);
    assert_eq!((stats.channels, stats.groups), (0, 0));
}

#[tokio::test]
async fn group_discard_and_empty_groups() {
    let layer = InMemoryChannelLayer::new();
    let mut inbox = layer.new_channel().await.unwrap();
    layer.group_add("room", inbox.name()).await.unwrap();
    layer.group_discard("room", inbox.name()).await.unwrap();
    layer.group_discard("room", inbox.name()).await.unwrap(); // twice is fine
    layer.group_send("room", event(0)).await.unwrap(); // no members: not an error
    layer.group_send("never-made", event(0)).await.unwrap();
    assert!(inbox.try_recv().is_none());
    assert_eq!(layer.stats().groups, 0);
}

#[tokio::test]
async fn named_channels_serve_workers_and_receive_is_cancel_safe() {
    let layer = InMemoryChannelLayer::new();
    // A receive that gives up (cancelled) loses nothing.
    let gave_up = tokio::time::timeout(Duration::from_millis(1), layer.receive("jobs")).await;
    assert!(gave_up.is_err());
    let worker = {
        let layer = layer.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(n_of(&layer.receive("jobs").await.unwrap()));
            }
            got
        })
    };
    for n in 0..3 {
        layer.send("jobs", event(n)).await.unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, [0, 1, 2]);
}

#[tokio::test]
async fn a_broadcast_is_encoded_once_and_shared() {
    let layer = InMemoryChannelLayer::new();
    let mut inboxes = Vec::new();
    for _ in 0..10 {
        let inbox = layer.new_channel().await.unwrap();
        layer.group_add("room", inbox.name()).await.unwrap();
        inboxes.push(inbox);
    }
    let sent = event(7);
    layer.group_send("room", sent.clone()).await.unwrap();
    for inbox in &mut inboxes {
        let got = inbox.try_recv().unwrap();
        // The same bytes, not a copy: every member holds the one encoding.
        assert_eq!(got.json().as_ptr(), sent.json().as_ptr());
    }
}

#[tokio::test]
async fn channel_names_are_unique_and_process_specific() {
    let a = InMemoryChannelLayer::new();
    let b = InMemoryChannelLayer::new();
    let (x, y, z) = (
        a.new_channel().await.unwrap(),
        a.new_channel().await.unwrap(),
        b.new_channel().await.unwrap(),
    );
    assert_ne!(x.name(), y.name());
    assert_ne!(x.name(), z.name());
    for name in [x.name(), y.name(), z.name()] {
        assert!(
            name.starts_with("specific.") && name.contains('!'),
            "{name}"
        );
        switchboard::layer::validate_channel_name(name).unwrap();
    }
}

/// Public types that cross tasks are `Send` (and `Sync` where shared).
#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<InMemoryChannelLayer>();
    send_sync::<Event>();
    send_sync::<LayerError>();
    send::<switchboard::layer::ChannelReceiver>();
    send::<switchboard::consumer::Context>();
    send_sync::<switchboard::routing::ProtocolTypeRouter>();
    send_sync::<switchboard::routing::UrlRouter>();
    send::<switchboard::Error>();
}

mod presence {
    use super::*;
    use serde_json::json;
    use switchboard::layer::{Presence, PRESENCE_JOIN, PRESENCE_LEAVE};

    fn kind_and_channel(event: &Event) -> (String, String) {
        let v: serde_json::Value = serde_json::from_str(event.json()).unwrap();
        (
            v["type"].as_str().unwrap().to_owned(),
            v["channel"].as_str().unwrap().to_owned(),
        )
    }

    #[tokio::test]
    async fn join_list_and_leave() {
        let layer = InMemoryChannelLayer::new();
        let mut ada = layer.new_channel().await.unwrap();
        let mut bob = layer.new_channel().await.unwrap();
        let silent = layer.new_channel().await.unwrap();
        layer.group_add("room", silent.name()).await.unwrap(); // a member that is not listed
        layer
            .presence_add("room", ada.name(), json!({ "name": "ada" }))
            .await
            .unwrap();
        // The new member hears its own join.
        assert_eq!(
            kind_and_channel(&ada.try_recv().unwrap()),
            (PRESENCE_JOIN.into(), ada.name().into())
        );
        layer
            .presence_add("room", bob.name(), json!({ "name": "bob" }))
            .await
            .unwrap();
        assert_eq!(
            kind_and_channel(&ada.try_recv().unwrap()),
            (PRESENCE_JOIN.into(), bob.name().into())
        );
        assert_eq!(kind_and_channel(&bob.try_recv().unwrap()).1, bob.name());
        let mut names: Vec<_> = layer
            .presence_list("room")
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.meta["name"].clone())
            .collect();
        names.sort_by_key(|n| n.to_string());
        assert_eq!(names, [json!("ada"), json!("bob")]);

        // Unlisting keeps the membership; leaving the group unlists.
        layer.presence_remove("room", bob.name()).await.unwrap();
        let leave = ada.try_recv().unwrap();
        assert_eq!(
            kind_and_channel(&leave),
            (PRESENCE_LEAVE.into(), bob.name().into())
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(leave.json()).unwrap()["meta"]["name"],
            "bob"
        );
        bob.try_recv().unwrap(); // bob hears his own leave: he is still a member
        layer.group_send("room", event(1)).await.unwrap();
        assert_eq!(n_of(&bob.try_recv().unwrap()), 1);
        assert_eq!(layer.presence_list("room").await.unwrap().len(), 1);
        layer.group_discard("room", ada.name()).await.unwrap();
        assert_eq!(
            kind_and_channel(&bob.try_recv().unwrap()),
            (PRESENCE_LEAVE.into(), ada.name().into())
        );
        assert_eq!(
            layer.presence_list("room").await.unwrap(),
            Vec::<Presence>::new()
        );
        drop(silent);
    }

    #[tokio::test]
    async fn a_dropped_channel_leaves_every_list_it_was_on() {
        let layer = InMemoryChannelLayer::new();
        let mut stays = layer.new_channel().await.unwrap();
        let goes = layer.new_channel().await.unwrap();
        let gone = goes.name().to_owned();
        for group in ["a", "b"] {
            layer
                .presence_add(group, stays.name(), json!("stays"))
                .await
                .unwrap();
            layer
                .presence_add(group, &gone, json!("goes"))
                .await
                .unwrap();
        }
        while stays.try_recv().is_some() {}
        drop(goes); // the connection ended, however it ended
        for _ in ["a", "b"] {
            assert_eq!(
                kind_and_channel(&stays.try_recv().unwrap()),
                (PRESENCE_LEAVE.into(), gone.clone())
            );
        }
        for group in ["a", "b"] {
            let list = layer.presence_list(group).await.unwrap();
            assert_eq!(
                list,
                [Presence {
                    channel: stays.name().into(),
                    meta: json!("stays")
                }]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_membership_leaves_the_list() {
        let layer = InMemoryChannelLayer::with_config(
            InMemoryConfig::default().group_expiry(Duration::from_secs(10)),
        );
        let mut fresh = layer.new_channel().await.unwrap();
        let stale = layer.new_channel().await.unwrap();
        layer
            .presence_add("room", stale.name(), json!("stale"))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        layer
            .presence_add("room", fresh.name(), json!("fresh"))
            .await
            .unwrap();
        while fresh.try_recv().is_some() {}
        tokio::time::advance(Duration::from_secs(6)).await; // stale is 12 s old, fresh 6 s
        assert_eq!(
            layer.presence_list("room").await.unwrap().len(),
            1,
            "lapsed members are not listed"
        );
        layer.group_send("room", event(5)).await.unwrap();
        assert_eq!(n_of(&fresh.try_recv().unwrap()), 5);
        assert_eq!(
            kind_and_channel(&fresh.try_recv().unwrap()),
            (PRESENCE_LEAVE.into(), stale.name().into())
        );
    }
}

/// Channels deletes a channel that is empty; so does this layer: 100,000 distinct named channels
/// and groups, used and left, leave nothing behind.
#[tokio::test]
async fn named_channels_and_groups_are_freed_when_empty() {
    let layer = InMemoryChannelLayer::new();
    let inbox = layer.new_channel().await.unwrap();
    for n in 0..100_000u32 {
        let name = format!("job.{n}");
        layer.send(&name, event(n)).await.unwrap();
        assert_eq!(n_of(&layer.receive(&name).await.unwrap()), u64::from(n));
        let group = format!("g.{n}");
        layer
            .group_add(&group, &format!("named.{n}"))
            .await
            .unwrap();
        layer.group_add(&group, inbox.name()).await.unwrap();
        layer
            .group_discard(&group, &format!("named.{n}"))
            .await
            .unwrap();
        layer.group_discard(&group, inbox.name()).await.unwrap();
    }
    let stats = layer.stats();
    assert_eq!(
        (stats.channels, stats.groups, stats.memberships),
        (1, 0, 0),
        "only the process-specific inbox is left"
    );
    // A receive that gives up (cancelled) does not keep its channel either.
    let waited =
        tokio::time::timeout(Duration::from_millis(1), layer.receive("nobody.sends")).await;
    assert!(waited.is_err());
    assert_eq!(layer.stats().channels, 1);
    drop(inbox);
    assert_eq!(layer.stats().channels, 0);
}

/// Messages nobody received expire; their channels then go too (swept as new ones are made).
#[tokio::test(start_paused = true)]
async fn channels_whose_messages_expired_are_freed() {
    let config = InMemoryConfig::default().expiry(Duration::from_secs(60));
    let layer = InMemoryChannelLayer::with_config(config);
    for n in 0..2000u32 {
        layer
            .send(&format!("abandoned.{n}"), event(n))
            .await
            .unwrap();
    }
    assert_eq!(layer.stats().channels, 2000);
    tokio::time::advance(Duration::from_secs(61)).await;
    for n in 0..2048u32 {
        let name = format!("fresh.{n}");
        layer.send(&name, event(n)).await.unwrap();
        layer.receive(&name).await.unwrap();
    }
    let stats = layer.stats();
    assert_eq!(stats.channels, 0, "the expired channels were swept");
    assert_eq!(stats.expired, 2000, "and their messages counted as expired");
}

/// Channels' `channel_capacity`: capacities by name pattern, first match first, for named and
/// process-specific channels.
#[tokio::test]
async fn capacity_by_channel_name_pattern() {
    let layer = InMemoryChannelLayer::with_config(
        InMemoryConfig::default()
            .capacity(3)
            .channel_capacity("bulk.*", 5)
            .channel_capacity("specific.*!*", 2),
    );
    let fill = |name: String| {
        let layer = layer.clone();
        async move {
            let mut n = 0;
            loop {
                match layer.send(&name, event(n)).await {
                    Ok(()) => n += 1,
                    Err(LayerError::ChannelFull { capacity, .. }) => return (n, capacity),
                    Err(other) => panic!("{other}"),
                }
            }
        }
    };
    assert_eq!(fill("bulk.images".into()).await, (5, 5));
    assert_eq!(fill("other".into()).await, (3, 3));
    let inbox = layer.new_channel().await.unwrap();
    assert_eq!(fill(inbox.name().to_owned()).await, (2, 2));
}
