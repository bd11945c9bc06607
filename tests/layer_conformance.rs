//! The layer contract (`switchboard::testing::conformance`, a public suite any layer can run),
//! run on both of switchboard's layers: every case against `InMemoryChannelLayer` and against
//! `RedisChannelLayer` on a real `redis-server` started for the test. For Redis each "process" is
//! a layer of its own (its own connections and process name) on the same server, so the cases
//! that use two prove delivery between processes; for memory both are the same layer.

mod common;

use common::redis_server::RedisServer;
use switchboard::layer::{
    InMemoryChannelLayer, InMemoryConfig, LayerHandle, RedisChannelLayer, RedisConfig,
};
use switchboard::testing::conformance::{self, Case, LayerFactory};

fn rand_suffix() -> u32 {
    std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos())
}

/// Makes the "processes" of a case.
enum Backend {
    Memory(InMemoryChannelLayer),
    Redis(Box<RedisServer>, String),
}

impl Backend {
    async fn memory() -> Self {
        Self::Memory(InMemoryChannelLayer::with_config(
            InMemoryConfig::default().capacity(5).group_history(
                "stream.*",
                5,
                std::time::Duration::from_secs(300),
            ),
        ))
    }

    async fn redis() -> Self {
        let server = RedisServer::start().await;
        let prefix = format!("test{}", rand_suffix());
        Self::Redis(Box::new(server), prefix)
    }
}

#[switchboard::async_trait]
impl LayerFactory for Backend {
    /// A layer for one process (capacity 5).
    async fn process(&self) -> LayerHandle {
        match self {
            Self::Memory(layer) => LayerHandle::new(layer.clone()),
            Self::Redis(server, prefix) => LayerHandle::new(
                RedisChannelLayer::connect(
                    RedisConfig::new(server.url())
                        .prefix(prefix.clone())
                        .capacity(5)
                        .group_history("stream.*", 5, std::time::Duration::from_secs(300)),
                )
                .await
                .expect("connects to the test's redis-server"),
            ),
        }
    }

    fn separate_processes(&self) -> bool {
        matches!(self, Self::Redis(..))
    }
}

macro_rules! conformance {
    ($($case:ident => $variant:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::conformance::run(super::Case::$variant, &super::Backend::memory().await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::conformance::run(super::Case::$variant, &super::Backend::redis().await).await;
                }
            )*
        }
    };
}

conformance!(
    point_to_point_between_processes => PointToPointBetweenProcesses,
    groups_reach_members_of_every_process => GroupsReachMembersOfEveryProcess,
    a_group_keeps_one_order_for_all_members => AGroupKeepsOneOrderForAllMembers,
    channels_added_by_another_process_get_group_messages => ChannelsAddedByAnotherProcessGetGroupMessages,
    a_full_channel_refuses_sends_and_groups_skip_it => AFullChannelRefusesSendsAndGroupsSkipIt,
    named_channels_hand_each_message_to_one_reader => NamedChannelsHandEachMessageToOneReader,
    named_channels_are_bounded => NamedChannelsAreBounded,
    names_are_checked => NamesAreChecked,
    presence_is_shared_by_every_process => PresenceIsSharedByEveryProcess,
    flush_empties_channels_and_groups => FlushEmptiesChannelsAndGroups,
    receiving_from_another_process_channel_fails_at_once => ReceivingFromAnotherProcessChannelFailsAtOnce,
    a_stream_gives_back_what_was_missed => AStreamGivesBackWhatWasMissed,
);

/// Every case of the public suite runs here (a case added to `Case::ALL` but not above fails).
#[test]
fn every_case_runs_on_both_layers() {
    assert_eq!(Case::ALL.len(), 12);
}
