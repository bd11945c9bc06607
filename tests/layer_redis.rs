//! `RedisChannelLayer` beyond the shared suite (`layer_conformance.rs`): Redis going away and
//! coming back, an idle subscription outliving the command timeout, processes that stop, and
//! prefixes that keep apps apart. Each test runs its own `redis-server`.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::WAIT;
use serde_json::json;
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Event, LayerError, RedisChannelLayer, RedisConfig,
    PRESENCE_LEAVE,
};

fn event(n: u64) -> Event {
    Event::from_json(format!(r#"{{"type":"test","n":{n}}}"#)).unwrap()
}

fn n_of(event: &Event) -> u64 {
    serde_json::from_str::<serde_json::Value>(event.json()).unwrap()["n"]
        .as_u64()
        .unwrap()
}

async fn recv(inbox: &mut ChannelReceiver) -> Event {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a message within 10 s")
}

/// A short command timeout, so that an outage shows at once. (A lost connection is noticed
/// when it closes; the health-check `PING`, for connections that hang, keeps its default.)
fn fast(server: &RedisServer) -> RedisConfig {
    RedisConfig::new(server.url()).command_timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_its_losses_counted() {
    let mut server = RedisServer::start().await;
    let receiving = RedisChannelLayer::connect(fast(&server)).await.unwrap();
    let sending = RedisChannelLayer::connect(fast(&server)).await.unwrap();
    let mut inbox = receiving.new_channel().await.unwrap();
    receiving.group_add("room", inbox.name()).await.unwrap();
    sending.group_send("room", event(1)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 1);

    server.kill().await;
    // Sends fail with a typed error within the command timeout instead of hanging.
    let failed = tokio::time::timeout(WAIT, sending.group_send("room", event(2)))
        .await
        .expect("the send returns");
    assert!(
        matches!(failed, Err(LayerError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(sending.stats().unavailable >= 1);
    // A local send does not need Redis: the consumer's channel still works.
    receiving.send(inbox.name(), event(100)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 100);

    server.restart().await;
    // Send numbered messages until one arrives: the receiving layer reconnects and subscribes
    // again by itself. Every number skipped (failed sends, sends before the resubscription) is
    // a message lost, and must be counted as such.
    let mut n = 2;
    let first = tokio::time::timeout(WAIT, async {
        let mut every = tokio::time::interval(Duration::from_millis(20));
        loop {
            every.tick().await;
            n += 1;
            let _ = sending.group_send("room", event(n)).await;
            if let Some(got) = inbox.try_recv() {
                return n_of(&got);
            }
        }
    })
    .await
    .expect("delivery resumes after Redis restarts");
    assert!(receiving.is_connected());
    assert!(receiving.stats().reconnections >= 1);
    let lost = receiving.stats().lost;
    assert_eq!(
        lost,
        first - 2,
        "messages 2..{first} were lost, and counted"
    );
    // From now on nothing is lost.
    while let Ok(event) = tokio::time::timeout(Duration::from_millis(300), inbox.recv()).await {
        assert!(n_of(&event) > first);
    }
    sending.group_send("room", event(1000)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 1000);
}

#[tokio::test]
async fn an_idle_subscription_outlives_the_command_timeout() {
    let server = RedisServer::start().await;
    // Health checks every 100 ms during the silence: they must pass, not reconnect.
    let config = fast(&server)
        .command_timeout(Duration::from_millis(100))
        .health_check_interval(Duration::from_millis(100));
    let receiving = RedisChannelLayer::connect(config.clone()).await.unwrap();
    let sending = RedisChannelLayer::connect(config).await.unwrap();
    let mut inbox = receiving.new_channel().await.unwrap();
    receiving.group_add("quiet", inbox.name()).await.unwrap();
    // The scenario itself: ten command timeouts of silence (django/channels_redis#422).
    tokio::time::sleep(Duration::from_secs(1)).await;
    sending.group_send("quiet", event(1)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 1);
    assert_eq!(receiving.stats().lost, 0);
    assert_eq!(receiving.stats().unavailable, 0);
    assert_eq!(
        receiving.stats().reconnections,
        0,
        "an idle subscription is kept"
    );
}

#[tokio::test]
async fn connecting_to_no_server_is_a_typed_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .command_timeout(Duration::from_millis(300));
    let result = RedisChannelLayer::connect(config).await;
    assert!(
        matches!(result, Err(LayerError::Unavailable(_))),
        "{result:?}"
    );
    assert!(matches!(
        RedisChannelLayer::connect(RedisConfig::new("not a url")).await,
        Err(LayerError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_stopped_process_leaves_the_presence_lists() {
    let server = RedisServer::start().await;
    let staying = RedisChannelLayer::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let mut ada = staying.new_channel().await.unwrap();
    staying
        .presence_add("room", ada.name(), json!({"user": "ada"}))
        .await
        .unwrap();
    recv(&mut ada).await; // her own join
    {
        let stopping = RedisChannelLayer::connect(RedisConfig::new(server.url()))
            .await
            .unwrap();
        let bob = stopping.new_channel().await.unwrap();
        stopping
            .presence_add("room", bob.name(), json!({"user": "bob"}))
            .await
            .unwrap();
        recv(&mut ada).await; // bob's join
                              // The process goes without its consumers saying goodbye (a crash loses this too; its
                              // liveness key then lapses after `process_ttl`).
        std::mem::forget(bob);
    }
    // The stopped process's heartbeat task deletes its liveness key as it ends.
    let listed = tokio::time::timeout(WAIT, async {
        loop {
            let listed = staying.presence_list("room").await.unwrap();
            if listed.len() == 1 {
                return listed;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("bob's process is seen gone");
    assert_eq!(listed[0].meta["user"], "ada");
    let left: serde_json::Value = recv(&mut ada).await.decode().unwrap();
    assert_eq!(left["type"], PRESENCE_LEAVE);
    assert_eq!(left["meta"]["user"], "bob");
}

#[tokio::test]
async fn a_crashed_process_is_reaped_and_its_users_leave() {
    let server = RedisServer::start().await;
    let config = RedisConfig::new(server.url()).process_ttl(Duration::from_millis(600));
    let staying = RedisChannelLayer::connect(config).await.unwrap();
    let mut ada = staying.new_channel().await.unwrap();
    staying
        .presence_add("room", ada.name(), json!({"user": "ada"}))
        .await
        .unwrap();
    recv(&mut ada).await; // her own join
                          // What a process that crashed leaves behind: a listing, a note of where it is, and a last
                          // beat long ago. Written by hand, as that process's layer would have.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    redis::pipe()
        .hset(
            "switchboard:pr:{room}",
            "specific.crashed!1",
            r#"{"user":"bob"}"#,
        )
        .sadd("switchboard:listed:{specific.crashed}", "room")
        .zadd("switchboard:processes", "specific.crashed", 1)
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    // Nobody asks for the list: the staying process's heartbeat finds the dead one by itself.
    let left: serde_json::Value = recv(&mut ada).await.decode().unwrap();
    assert_eq!(left["type"], PRESENCE_LEAVE);
    assert_eq!(left["channel"], "specific.crashed!1");
    assert_eq!(left["meta"]["user"], "bob");
    let listed = staying.presence_list("room").await.unwrap();
    assert_eq!(listed.len(), 1);
    let registry: Vec<String> = redis::cmd("ZRANGE")
        .arg("switchboard:processes")
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!registry.iter().any(|p| p == "specific.crashed"));
}

#[tokio::test]
async fn prefixes_keep_apps_apart() {
    let server = RedisServer::start().await;
    let one = RedisChannelLayer::connect(RedisConfig::new(server.url()).prefix("one"))
        .await
        .unwrap();
    let two = RedisChannelLayer::connect(RedisConfig::new(server.url()).prefix("two"))
        .await
        .unwrap();
    let mut on_one = one.new_channel().await.unwrap();
    let mut on_two = two.new_channel().await.unwrap();
    one.group_add("room", on_one.name()).await.unwrap();
    two.group_add("room", on_two.name()).await.unwrap();
    one.group_send("room", event(1)).await.unwrap();
    two.group_send("room", event(2)).await.unwrap();
    assert_eq!(n_of(&recv(&mut on_one).await), 1);
    assert_eq!(n_of(&recv(&mut on_two).await), 2);
    one.send("jobs", event(3)).await.unwrap();
    two.send("jobs", event(4)).await.unwrap();
    assert_eq!(n_of(&two.receive("jobs").await.unwrap()), 4);
    assert_eq!(n_of(&one.receive("jobs").await.unwrap()), 3);
    // Flushing one app leaves the other's queue alone.
    two.send("jobs", event(5)).await.unwrap();
    one.flush().await.unwrap();
    assert_eq!(n_of(&two.receive("jobs").await.unwrap()), 5);
}

#[tokio::test]
async fn expired_messages_are_dropped_and_counted() {
    let server = RedisServer::start().await;
    let layer = RedisChannelLayer::connect(
        RedisConfig::new(server.url()).expiry(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    layer.send("slow", event(1)).await.unwrap();
    // The scenario: the message waits longer than its expiry.
    tokio::time::sleep(Duration::from_millis(400)).await;
    layer.send("slow", event(2)).await.unwrap();
    assert_eq!(n_of(&layer.receive("slow").await.unwrap()), 2);
    assert_eq!(layer.stats().expired, 1);
}

/// Normal (not pub/sub) clients of `server` other than the one asking.
async fn normal_clients(server: &RedisServer) -> usize {
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut admin)
        .await
        .unwrap();
    list.lines().count().saturating_sub(1)
}

/// A sending process and a receiving one whose channel is in "room", after one message went
/// through: (sending, receiving, the receiver's inbox).
async fn two_processes_in_a_room(
    server: &RedisServer,
) -> (RedisChannelLayer, RedisChannelLayer, ChannelReceiver) {
    let receiving = RedisChannelLayer::connect(fast(server)).await.unwrap();
    let sending = RedisChannelLayer::connect(fast(server)).await.unwrap();
    let mut inbox = receiving.new_channel().await.unwrap();
    receiving.group_add("room", inbox.name()).await.unwrap();
    sending.group_send("room", event(1)).await.unwrap();
    assert_eq!(n_of(&recv(&mut inbox).await), 1);
    (sending, receiving, inbox)
}

fn no_caller_saw_it(sending: &RedisChannelLayer) {
    assert_eq!(
        sending.stats().unavailable,
        0,
        "no caller saw the closed connection"
    );
}

/// Sends 2, 3, 4 and a marker through `sending` and checks `inbox` gets each once, in order.
async fn each_once_in_order(sending: &RedisChannelLayer, inbox: &mut ChannelReceiver) {
    for n in 2..5 {
        sending.group_send("room", event(n)).await.unwrap();
    }
    sending.group_send("room", event(99)).await.unwrap();
    for n in [2, 3, 4, 99] {
        assert_eq!(n_of(&recv(inbox).await), n, "each message once, in order");
    }
}

#[tokio::test]
async fn a_command_connection_killed_by_the_server_is_made_again_without_failing_the_caller() {
    let server = RedisServer::start().await;
    let (sending, _receiving, mut inbox) = two_processes_in_a_room(&server).await;

    // Every command connection goes (pub/sub ones are another type and stay).
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 2, "both layers' command connections: {killed}");
    each_once_in_order(&sending, &mut inbox).await;
    no_caller_saw_it(&sending);
}

#[tokio::test]
async fn an_idle_connection_closed_by_redis_timeout_is_made_again_without_failing_the_caller() {
    let server = RedisServer::start_with(&["--timeout", "1"]).await;
    let (sending, _receiving, mut inbox) = two_processes_in_a_room(&server).await;

    // Wait (on what Redis says, at most 10 s) until it has closed the idle command connections.
    tokio::time::timeout(WAIT, async {
        while normal_clients(&server).await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("redis closes idle clients after `timeout 1`");
    each_once_in_order(&sending, &mut inbox).await;
    no_caller_saw_it(&sending);
}

#[tokio::test]
async fn a_named_channel_read_no_more_gives_its_pump_and_connection_back() {
    let server = RedisServer::start().await;
    let layer = RedisChannelLayer::connect(fast(&server)).await.unwrap();
    let before = normal_clients(&server).await;
    // A reader that gives up: its pump (one blocking connection) starts...
    let gave_up = tokio::time::timeout(Duration::from_millis(200), layer.receive("job.17")).await;
    assert!(gave_up.is_err());
    tokio::time::timeout(WAIT, async {
        while normal_clients(&server).await <= before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the pump connected");
    // ...and ends by itself within one idle BLPOP (5 s), closing its connection.
    tokio::time::timeout(Duration::from_secs(15), async {
        while normal_clients(&server).await > before {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the pump's connection is closed once nobody reads the channel");
    // Reading again works: a new pump.
    layer.send("job.17", event(5)).await.unwrap();
    let got = tokio::time::timeout(WAIT, layer.receive("job.17"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n_of(&got), 5);
}

#[tokio::test]
async fn capacity_by_channel_name_pattern() {
    let server = RedisServer::start().await;
    let layer = RedisChannelLayer::connect(
        fast(&server)
            .capacity(3)
            .channel_capacity("bulk.*", 5)
            .channel_capacity("specific.*!*", 2),
    )
    .await
    .unwrap();
    for (name, capacity) in [("bulk.images", 5), ("other", 3)] {
        for n in 0..capacity {
            layer.send(name, event(n)).await.unwrap();
        }
        match layer.send(name, event(99)).await {
            Err(LayerError::ChannelFull { capacity: c, .. }) => assert_eq!(c as u64, capacity),
            other => panic!("{name}: expected ChannelFull, got {other:?}"),
        }
    }
    let inbox = layer.new_channel().await.unwrap();
    layer.send(inbox.name(), event(1)).await.unwrap();
    layer.send(inbox.name(), event(2)).await.unwrap();
    assert!(matches!(
        layer.send(inbox.name(), event(3)).await,
        Err(LayerError::ChannelFull { capacity: 2, .. })
    ));
}
