//! The channel layer contract as a test suite any layer can run (feature `testing`): the cases
//! switchboard's own layers pass, in memory and on Redis, for a layer of your own.
//!
//! A [`LayerFactory`] makes the "processes" of a case: layers on one shared backend (for a
//! networked layer each its own connections and process name; for an in-memory layer the same
//! layer each time). Give each case a fresh backend, since cases read `stats()`:
//!
//! ```
//! use switchboard::layer::{InMemoryChannelLayer, InMemoryConfig, LayerHandle};
//! use switchboard::testing::conformance::{self, Case, LayerFactory};
//!
//! struct Memory(InMemoryChannelLayer);
//!
//! #[switchboard::async_trait]
//! impl LayerFactory for Memory {
//!     async fn process(&self) -> LayerHandle {
//!         LayerHandle::new(self.0.clone())
//!     }
//!     fn separate_processes(&self) -> bool {
//!         false
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! for case in Case::ALL {
//!     let config = InMemoryConfig::default()
//!         .capacity(5)
//!         .group_history("stream.*", 5, std::time::Duration::from_secs(300));
//!     let fresh = Memory(InMemoryChannelLayer::with_config(config));
//!     conformance::run(*case, &fresh).await; // panics, naming what broke, on a failure
//! }
//! # }
//! ```
//!
//! The contract the cases check is the layer module's "Semantics" section: delivery between
//! processes, one order per group for all members, members added by another process, capacity 5
//! with `ChannelFull` and counted group skips, named channels handing each message to one reader
//! and bounded, name checks, shared presence with join/leave events, `flush`, `receive` on a
//! channel the layer cannot serve failing at once, and a group stream giving back what a client
//! missed (or, for a layer that keeps none, never claiming to).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::layer::{
    ChannelLayer, ChannelReceiver, Event, LayerError, LayerHandle, PRESENCE_JOIN, PRESENCE_LEAVE,
};

/// How long one wait of a case may take before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// Makes the layers ("processes") of one case, on one backend.
#[async_trait]
pub trait LayerFactory: Send + Sync {
    /// A layer for one more process on the backend, with a capacity of 5 messages per channel
    /// (the cases fill channels to 5) and, unless [`keeps_streams`](Self::keeps_streams) says
    /// otherwise, a stream of 5 events for groups whose name starts with `stream.` (the
    /// `group_history("stream.*", 5, ..)` of switchboard's layers, with an age of a minute or
    /// more).
    async fn process(&self) -> LayerHandle;

    /// Whether the layer keeps group streams for recovery
    /// ([`ChannelLayer::recover`]). A layer that answers
    /// `false` is checked to never claim a recovery instead. Default `true`.
    fn keeps_streams(&self) -> bool {
        true
    }

    /// Whether each [`process`](Self::process) is a process of its own, with its own
    /// process-specific channel names (a networked layer), rather than the same layer again (an
    /// in-memory layer). Default `true`.
    fn separate_processes(&self) -> bool {
        true
    }
}

/// One case of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Case {
    /// `point_to_point_between_processes`.
    PointToPointBetweenProcesses,
    /// `groups_reach_members_of_every_process`.
    GroupsReachMembersOfEveryProcess,
    /// `a_group_keeps_one_order_for_all_members`.
    AGroupKeepsOneOrderForAllMembers,
    /// `channels_added_by_another_process_get_group_messages`.
    ChannelsAddedByAnotherProcessGetGroupMessages,
    /// `a_full_channel_refuses_sends_and_groups_skip_it`.
    AFullChannelRefusesSendsAndGroupsSkipIt,
    /// `named_channels_hand_each_message_to_one_reader`.
    NamedChannelsHandEachMessageToOneReader,
    /// `named_channels_are_bounded`.
    NamedChannelsAreBounded,
    /// `names_are_checked`.
    NamesAreChecked,
    /// `presence_is_shared_by_every_process`.
    PresenceIsSharedByEveryProcess,
    /// `flush_empties_channels_and_groups`.
    FlushEmptiesChannelsAndGroups,
    /// `receiving_from_another_process_channel_fails_at_once`.
    ReceivingFromAnotherProcessChannelFailsAtOnce,
    /// `a_stream_gives_back_what_was_missed`.
    AStreamGivesBackWhatWasMissed,
}

impl Case {
    /// Every case, in the order they are documented.
    pub const ALL: &'static [Case] = &[
        Case::PointToPointBetweenProcesses,
        Case::GroupsReachMembersOfEveryProcess,
        Case::AGroupKeepsOneOrderForAllMembers,
        Case::ChannelsAddedByAnotherProcessGetGroupMessages,
        Case::AFullChannelRefusesSendsAndGroupsSkipIt,
        Case::NamedChannelsHandEachMessageToOneReader,
        Case::NamedChannelsAreBounded,
        Case::NamesAreChecked,
        Case::PresenceIsSharedByEveryProcess,
        Case::FlushEmptiesChannelsAndGroups,
        Case::ReceivingFromAnotherProcessChannelFailsAtOnce,
        Case::AStreamGivesBackWhatWasMissed,
    ];

    /// The case's name.
    pub fn name(self) -> &'static str {
        match self {
            Case::PointToPointBetweenProcesses => "point_to_point_between_processes",
            Case::GroupsReachMembersOfEveryProcess => "groups_reach_members_of_every_process",
            Case::AGroupKeepsOneOrderForAllMembers => "a_group_keeps_one_order_for_all_members",
            Case::ChannelsAddedByAnotherProcessGetGroupMessages => {
                "channels_added_by_another_process_get_group_messages"
            }
            Case::AFullChannelRefusesSendsAndGroupsSkipIt => {
                "a_full_channel_refuses_sends_and_groups_skip_it"
            }
            Case::NamedChannelsHandEachMessageToOneReader => {
                "named_channels_hand_each_message_to_one_reader"
            }
            Case::NamedChannelsAreBounded => "named_channels_are_bounded",
            Case::NamesAreChecked => "names_are_checked",
            Case::PresenceIsSharedByEveryProcess => "presence_is_shared_by_every_process",
            Case::FlushEmptiesChannelsAndGroups => "flush_empties_channels_and_groups",
            Case::ReceivingFromAnotherProcessChannelFailsAtOnce => {
                "receiving_from_another_process_channel_fails_at_once"
            }
            Case::AStreamGivesBackWhatWasMissed => "a_stream_gives_back_what_was_missed",
        }
    }
}

/// Runs `case` on layers from `factory`.
///
/// # Panics
///
/// When the layer breaks the contract: the message names the case and what differed.
pub async fn run(case: Case, factory: &dyn LayerFactory) {
    /// Names the case on the way out of a panic (a failed assertion inside it).
    struct Naming(Case);
    impl Drop for Naming {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("channel layer conformance case `{}` failed", self.0.name());
            }
        }
    }
    let _naming = Naming(case);
    match case {
        Case::PointToPointBetweenProcesses => point_to_point_between_processes(factory).await,
        Case::GroupsReachMembersOfEveryProcess => {
            groups_reach_members_of_every_process(factory).await
        }
        Case::AGroupKeepsOneOrderForAllMembers => {
            a_group_keeps_one_order_for_all_members(factory).await
        }
        Case::ChannelsAddedByAnotherProcessGetGroupMessages => {
            channels_added_by_another_process_get_group_messages(factory).await
        }
        Case::AFullChannelRefusesSendsAndGroupsSkipIt => {
            a_full_channel_refuses_sends_and_groups_skip_it(factory).await
        }
        Case::NamedChannelsHandEachMessageToOneReader => {
            named_channels_hand_each_message_to_one_reader(factory).await
        }
        Case::NamedChannelsAreBounded => named_channels_are_bounded(factory).await,
        Case::NamesAreChecked => names_are_checked(factory).await,
        Case::PresenceIsSharedByEveryProcess => presence_is_shared_by_every_process(factory).await,
        Case::FlushEmptiesChannelsAndGroups => flush_empties_channels_and_groups(factory).await,
        Case::ReceivingFromAnotherProcessChannelFailsAtOnce => {
            receiving_from_another_process_channel_fails_at_once(factory).await
        }
        Case::AStreamGivesBackWhatWasMissed => a_stream_gives_back_what_was_missed(factory).await,
    }
}

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

/// Waits (up to [`WAIT`]) for the layer's `dropped_full` count to reach `count`.
async fn dropped_full_reaches(layer: &dyn ChannelLayer, count: u64) {
    let counted = async {
        while layer.stats().dropped_full < count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    if tokio::time::timeout(WAIT, counted).await.is_err() {
        panic!(
            "the full member's skip is counted: dropped_full is {}, not {count}",
            layer.stats().dropped_full
        );
    }
    assert_eq!(layer.stats().dropped_full, count, "counted once");
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

async fn point_to_point_between_processes(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
    let mut inbox = a.new_channel().await.unwrap();
    for n in 0..3 {
        b.send(inbox.name(), event(n)).await.unwrap();
    }
    for n in 0..3 {
        assert_eq!(n_of(&recv(&mut inbox).await), n, "in order");
    }
}

async fn groups_reach_members_of_every_process(factory: &dyn LayerFactory) {
    let (a, b, c) = (
        factory.process().await,
        factory.process().await,
        factory.process().await,
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
    next_is_marker(&b, &mut on_b).await;
    // A member that goes (its receiver dropped) leaves the group.
    let before = b.stats().memberships;
    drop(also_on_b);
    c.group_send("room", event(3)).await.unwrap();
    assert_eq!(n_of(&recv(&mut on_a).await), 3);
    assert_eq!(b.stats().memberships, before - 1);
    assert!(c.group_send("nobody-here", event(4)).await.is_ok());
}

async fn a_group_keeps_one_order_for_all_members(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
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

async fn channels_added_by_another_process_get_group_messages(factory: &dyn LayerFactory) {
    let (worker, owner) = (factory.process().await, factory.process().await);
    let mut inbox = owner.new_channel().await.unwrap();
    worker.group_add("alerts", inbox.name()).await.unwrap();
    worker.group_send("alerts", event(7)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 7);
    worker.group_discard("alerts", inbox.name()).await.unwrap();
    worker.group_send("alerts", event(8)).await.unwrap();
    next_is_marker(&owner, &mut inbox).await;
}

async fn a_full_channel_refuses_sends_and_groups_skip_it(factory: &dyn LayerFactory) {
    let a = factory.process().await;
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
    // A networked layer's owning process counts the skip as it fans the event out, which may be
    // just after the free member got it.
    dropped_full_reaches(&a, 1).await;
    for n in 0..5 {
        assert_eq!(n_of(&recv(&mut full).await), n);
    }
}

async fn named_channels_hand_each_message_to_one_reader(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
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

async fn named_channels_are_bounded(factory: &dyn LayerFactory) {
    let a = factory.process().await;
    for n in 0..5 {
        a.send("bounded", event(n)).await.unwrap();
    }
    assert!(matches!(
        a.send("bounded", event(5)).await,
        Err(LayerError::ChannelFull { capacity: 5, .. })
    ));
    assert_eq!(n_of(&a.receive("bounded").await.unwrap()), 0);
}

async fn names_are_checked(factory: &dyn LayerFactory) {
    let a = factory.process().await;
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

async fn presence_is_shared_by_every_process(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
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

async fn flush_empties_channels_and_groups(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
    let mut inbox = a.new_channel().await.unwrap();
    a.group_add("room", inbox.name()).await.unwrap();
    b.send("queued", event(1)).await.unwrap();
    a.send(inbox.name(), event(2)).await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    b.group_send("room", event(3)).await.unwrap();
    next_is_marker(&a, &mut inbox).await;
    b.send("queued", event(4)).await.unwrap();
    assert_eq!(n_of(&a.receive("queued").await.unwrap()), 4);
}

async fn receiving_from_another_process_channel_fails_at_once(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
    let inbox = a.new_channel().await.unwrap();
    // No layer made this name; and on Redis, b is another process than a, whose channel it is.
    let mut names = vec![format!("{}x!1", inbox.name().split('!').next().unwrap())];
    if factory.separate_processes() {
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

async fn a_stream_gives_back_what_was_missed(factory: &dyn LayerFactory) {
    let (a, b) = (factory.process().await, factory.process().await);
    let mut inbox = a.new_channel().await.unwrap();
    a.group_add("stream.room", inbox.name()).await.unwrap();
    let sent = b.group_send("stream.room", event(1)).await.unwrap();
    let got = recv(&mut inbox).await;
    assert_eq!(n_of(&got), 1);
    if !factory.keeps_streams() {
        assert_eq!(
            sent.position, None,
            "a layer without streams gives no position"
        );
        let since = crate::layer::StreamPosition {
            epoch: "any".into(),
            offset: 0,
        };
        assert!(
            matches!(
                a.recover("stream.room", &since).await.unwrap(),
                crate::layer::Recovery::NotRecovered { .. }
            ),
            "a layer without streams never claims a recovery"
        );
        return;
    }
    let seen = got
        .position()
        .cloned()
        .expect("a streamed group's event has a position");
    assert_eq!(
        sent.position.as_ref(),
        Some(&seen),
        "sender and member agree"
    );
    drop(inbox);
    for n in 2..=4 {
        b.group_send("stream.room", event(n)).await.unwrap();
    }
    for layer in [&a, &b] {
        match layer.recover("stream.room", &seen).await.unwrap() {
            crate::layer::Recovery::Recovered { events, position } => {
                let missed: Vec<u64> = events.iter().map(n_of).collect();
                assert_eq!(missed, [2, 3, 4], "what was missed, once, in order");
                assert_eq!(position.offset, seen.offset + 3);
            }
            other => panic!("expected a recovery, got {other:?}"),
        }
    }
    for n in 5..=10 {
        b.group_send("stream.room", event(n)).await.unwrap();
    }
    assert!(
        matches!(
            a.recover("stream.room", &seen).await.unwrap(),
            crate::layer::Recovery::NotRecovered { position: Some(_) }
        ),
        "more than the stream keeps (5) is not recovered"
    );
}
