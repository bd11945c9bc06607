//! `RedisChannelLayer` on a real Redis Cluster (`redis-server` nodes on 127.0.0.1 joined by
//! `redis-cli --cluster create`): the public conformance suite, sharded pub/sub, and a primary
//! killed under the layer (its replica takes over; operations on its slots fail typed for a
//! moment, then work again by themselves; nothing comes twice).

mod common;

use std::time::Duration;

use common::redis_cluster::RedisCluster;
use switchboard::layer::{
    ChannelLayer, Event, LayerError, LayerHandle, RedisChannelLayer, RedisConfig,
};
use switchboard::testing::conformance::{self, Case, LayerFactory};

/// Layers ("processes") on the cluster, under one key prefix.
struct OnCluster {
    nodes: Vec<String>,
    prefix: String,
}

impl OnCluster {
    fn config(&self) -> RedisConfig {
        RedisConfig::cluster(self.nodes.clone())
            .prefix(self.prefix.clone())
            .capacity(5)
            .group_history("stream.*", 5, Duration::from_secs(300))
    }
}

#[switchboard::async_trait]
impl LayerFactory for OnCluster {
    async fn process(&self) -> LayerHandle {
        LayerHandle::new(
            RedisChannelLayer::connect(self.config())
                .await
                .expect("connects to the test's cluster"),
        )
    }

    fn separate_processes(&self) -> bool {
        true
    }
}

fn event(n: u64) -> Event {
    Event::from_json(format!(r#"{{"type":"m","n":{n}}}"#)).unwrap()
}

fn n_of(event: &Event) -> u64 {
    event.decode::<serde_json::Value>().unwrap()["n"]
        .as_u64()
        .unwrap()
}

/// One cluster for the whole suite (three primaries): each case under a prefix of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_passes_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0).await;
    assert_eq!(Case::ALL.len(), 12);
    for (n, case) in Case::ALL.iter().enumerate() {
        let factory = OnCluster {
            nodes: cluster.urls(),
            prefix: format!("case{n}"),
        };
        conformance::run(*case, &factory).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_use_sharded_pub_sub_on_the_node_that_owns_them() {
    let cluster = RedisCluster::start(3, 0).await;
    let factory = OnCluster {
        nodes: cluster.urls()[..1].to_vec(), // one seed finds the rest
        prefix: "sharded".into(),
    };
    let (one, two) = (factory.process().await, factory.process().await);
    // Groups spread over every primary: each still reaches its members on the other process.
    let mut inbox = two.new_channel().await.unwrap();
    let groups: Vec<String> = (0..12).map(|n| format!("room{n}")).collect();
    for group in &groups {
        two.group_add(group, inbox.name()).await.unwrap();
    }
    for (n, group) in groups.iter().enumerate() {
        let sent = one.group_send(group, event(n as u64)).await.unwrap();
        assert_eq!(sent.processes, 1, "{group}: the subscribed process");
        let got = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("delivered");
        assert_eq!(n_of(&got), n as u64);
    }
    // The shard channel is on the primary owning the group's slot; no classic channel is used.
    let owner = cluster.primary_of("room3").await;
    let client = redis::Client::open(format!("redis://127.0.0.1:{owner}")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let shard: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(shard.contains(&"sharded:g:{room3}".to_owned()), "{shard:?}");
    let classic: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(classic.is_empty(), "{classic:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_dies_fails_over_and_the_layer_carries_on() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let factory = OnCluster {
        nodes: cluster.urls(),
        prefix: "failover".into(),
    };
    let config = factory.config().command_timeout(Duration::from_secs(1));
    let one = RedisChannelLayer::connect(config.clone()).await.unwrap();
    let two = RedisChannelLayer::connect(config).await.unwrap();
    let mut inbox = two.new_channel().await.unwrap();
    two.group_add("lobby", inbox.name()).await.unwrap();
    let mut next = 0;
    for _ in 0..3 {
        one.group_send("lobby", event(next)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await;
        assert_eq!(n_of(&got.unwrap()), next);
        next += 1;
    }

    let killed = cluster.kill_primary_of("lobby").await;
    // Sends go on: while the slot has no primary they fail, typed, and none waits past the
    // command timeout; after the failover they succeed again without anybody reconnecting.
    let mut failures = 0;
    let mut sent_after = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sent_after.len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery in 60 s"
        );
        let started = tokio::time::Instant::now();
        match one.group_send("lobby", event(next)).await {
            Ok(_) => sent_after.push(next),
            Err(LayerError::Unavailable(_)) => {
                failures += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "bounded by the timeout"
                );
            }
            Err(other) => panic!("an untyped failure: {other}"),
        }
        next += 1;
    }
    cluster.wait_for_failover("lobby", killed).await;
    // What was sent after the failover arrives once each, in order; the member's process found
    // the group's new primary by itself. Sends accepted while the old primary was dying may be
    // lost with it: they are counted, not silent.
    let mut got = Vec::new();
    let last = *sent_after.last().unwrap();
    while got.last() != Some(&last) {
        let event = tokio::time::timeout(Duration::from_secs(15), inbox.recv())
            .await
            .expect("the group works again after the failover");
        got.push(n_of(&event));
    }
    let mut deduped = got.clone();
    deduped.dedup();
    assert_eq!(deduped, got, "nothing twice");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    let missing = sent_after.iter().filter(|n| !got.contains(n)).count() as u64;
    assert!(
        two.stats().lost >= missing,
        "{missing} accepted but lost, {} counted",
        two.stats().lost
    );
    eprintln!(
        "failover: {failures} sends failed typed, {} accepted, {missing} of those lost (counted {})",
        sent_after.len(),
        two.stats().lost
    );
    // Fresh operations on the failed-over slot keep working.
    one.group_send("lobby", event(1000)).await.unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .unwrap();
        if n_of(&event) == 1000 {
            break;
        }
    }
}

/// channels_redis' multiple-hosts cases (`test_groups_multiple_hosts`,
/// `test_groups_multiple_hosts_performance` with 1, 10 and 100 channels), ported to the cluster,
/// its counterpart of sharding over several hosts. The channels are named ones (Redis lists, each
/// in its own slot), so the group's deliveries cross slots; the performance case's time limits
/// become a hang guard (timing belongs to benchmarks here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_redis_multiple_hosts_cases_pass_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0).await;
    let layer = |prefix: &str| {
        RedisChannelLayer::connect(
            RedisConfig::cluster(cluster.urls())
                .prefix(prefix)
                .capacity(100),
        )
    };
    let wait = Duration::from_secs(10);

    // test_groups_multiple_hosts
    let layer1 = layer("hosts").await.unwrap();
    for channel in ["channel1", "channel2", "channel3"] {
        layer1.group_add("test-group", channel).await.unwrap();
    }
    layer1
        .group_discard("test-group", "channel2")
        .await
        .unwrap();
    for _ in 0..2 {
        let sent = layer1
            .group_send("test-group", Event::typed("message.1", &()).unwrap())
            .await
            .unwrap();
        assert_eq!(sent.queued, 2);
    }
    for channel in ["channel1", "channel3"] {
        let got = tokio::time::timeout(wait, layer1.receive(channel)).await;
        assert_eq!(got.unwrap().unwrap().event_type(), "message.1");
    }
    let nothing = tokio::time::timeout(Duration::from_secs(1), layer1.receive("channel2")).await;
    assert!(nothing.is_err(), "channel2 left the group");
    layer1.flush().await.unwrap();

    // test_groups_multiple_hosts_performance
    for count in [1, 10, 100] {
        let layer = layer(&format!("perf{count}")).await.unwrap();
        let channels: Vec<String> = (0..count).map(|n| format!("channel{n}")).collect();
        for channel in &channels {
            layer.group_add("test-group", channel).await.unwrap();
        }
        let sent = layer
            .group_send("test-group", Event::typed("message.1", &()).unwrap())
            .await
            .unwrap();
        assert_eq!(sent.queued, count);
        for channel in &channels {
            let got = tokio::time::timeout(wait, layer.receive(channel)).await;
            assert_eq!(got.unwrap().unwrap().event_type(), "message.1");
        }
        layer.flush().await.unwrap();
    }
}
