//! The layer's background tasks: the subscription connection, heartbeats and reaping of dead
//! processes, prompt and periodic unsubscription, and one pump per named channel read here.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, Notify};

use super::*;

/// Connects the subscription connection: this process's channel and every group in `groups`.
async fn subscribe_all(
    shared: &Shared,
    groups: &HashSet<Box<str>>,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let Backend::Single { client, .. } = &shared.backend else {
        unreachable!("the single-server subscriber runs only on a single server");
    };
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    let mut channels: Vec<String> = vec![shared.process_channel.to_string()];
    channels.extend(groups.iter().map(|group| shared.key("g", group)));
    for chunk in channels.chunks(1000) {
        sink.subscribe(chunk).await?;
    }
    Ok((sink, stream))
}

/// The subscription connection: receives for every local consumer, and makes it again (with
/// every subscription) when it fails.
pub(super) async fn subscriber(
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<SubscriberCommand>,
    mut ready: Option<oneshot::Sender<redis::RedisResult<()>>>,
) {
    let mut groups: HashSet<Box<str>> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut was_connected = false;
    loop {
        let connecting = tokio::time::timeout(
            shared.config.command_timeout,
            subscribe_all(&shared, &groups),
        );
        let connected = tokio::select! {
            () = shared.stop.cancelled() => return,
            result = connecting => result,
        };
        let (mut sink, mut stream) = match connected {
            Ok(Ok(connection)) => connection,
            failed => {
                if let Ok(Err(error)) = &failed {
                    if let BackendError::Refused(_) = backend_error(error.clone()) {
                        if let Some(ready) = ready.take() {
                            // At start-up: `connect` fails with it.
                            let _ = ready.send(Err(error.clone()));
                            return;
                        }
                    }
                }
                if was_connected || ready.is_some() {
                    match failed {
                        Ok(Err(error)) => {
                            tracing::warn!(target: "switchboard::layer", %error, "Redis subscription connection failed; retrying")
                        }
                        _ => {
                            tracing::warn!(target: "switchboard::layer", "Redis subscription connection timed out; retrying")
                        }
                    }
                }
                was_connected = false;
                // While Redis is away, subscriptions are noted and answered at once.
                let pause = tokio::time::sleep(backoff);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        () = shared.stop.cancelled() => return,
                        () = &mut pause => break,
                        command = commands.recv() => match command {
                            None => return,
                            Some(SubscriberCommand::Subscribe(group, done)) => {
                                groups.insert(group);
                                let _ = done.send(());
                            }
                            Some(SubscriberCommand::Unsubscribe(group)) => {
                                shared.forget_received(&shared.key("g", &group));
                                groups.remove(&group);
                            }
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        shared.subscriber_connected.store(true, Ordering::Relaxed);
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        } else {
            shared
                .counters
                .reconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "switchboard::layer", groups = groups.len(), "Redis subscription connection made again; groups subscribed again");
        }
        was_connected = true;
        let mut health = tokio::time::interval(shared.config.health_check_interval);
        health.tick().await;
        loop {
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => return,
                message = stream.next() => match message {
                    Some(message) => {
                        shared.dispatch(message.get_channel_name(), message.get_payload_bytes()).await;
                    }
                    None => {
                        tracing::warn!(target: "switchboard::layer", "Redis subscription connection lost; reconnecting");
                        break;
                    }
                },
                command = commands.recv() => match command {
                    None => return,
                    Some(SubscriberCommand::Subscribe(group, done)) => {
                        let redis_channel = shared.key("g", &group);
                        groups.insert(group);
                        let result = tokio::time::timeout(
                            shared.config.command_timeout,
                            sink.subscribe(&redis_channel),
                        ).await;
                        let _ = done.send(());
                        if !matches!(result, Ok(Ok(()))) {
                            tracing::warn!(target: "switchboard::layer", "Redis SUBSCRIBE failed; reconnecting");
                            break;
                        }
                    }
                    Some(SubscriberCommand::Unsubscribe(group)) => {
                        let redis_channel = shared.key("g", &group);
                        groups.remove(&group);
                        let result = tokio::time::timeout(
                            shared.config.command_timeout,
                            sink.unsubscribe(&redis_channel),
                        ).await;
                        shared.forget_received(&redis_channel);
                        if !matches!(result, Ok(Ok(()))) {
                            break;
                        }
                    }
                },
                _ = health.tick() => {
                    let pong = tokio::time::timeout(shared.config.command_timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        tracing::warn!(target: "switchboard::layer", "Redis subscription connection did not answer PING; reconnecting");
                        break;
                    }
                }
            }
        }
        shared.subscriber_connected.store(false, Ordering::Relaxed);
    }
}

/// Beats for this process in the registry `<prefix>:processes` (a sorted set scored by the time
/// of each process's last beat, in ms) and reaps processes that stopped beating: the first
/// process to remove a dead one from the registry takes its channels off every presence list it
/// was on, announcing each leave.
pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let registry = shared.registry_key();
    let mut beat = tokio::time::interval(shared.config.process_ttl / 3);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            _ = beat.tick() => {
                if let Err(error) = beat_once(&shared, &registry).await {
                    tracing::debug!(target: "switchboard::layer", %error, "heartbeat failed");
                }
            }
        }
    }
    // Stopped: marked dead at once, so that the next beat of another process reaps it (a crash
    // is reaped after `process_ttl`).
    let mut mark = redis::cmd("ZADD");
    mark.arg(&registry).arg(0).arg(&*shared.process);
    let _ = shared.run::<(), _>(&mark).await;
}

async fn beat_once(shared: &Shared, registry: &str) -> Result<(), LayerError> {
    let now = now_ms();
    let mut add = redis::cmd("ZADD");
    add.arg(registry).arg(now).arg(&*shared.process);
    shared.run::<(), _>(&add).await?;
    let oldest_alive = now.saturating_sub(millis(shared.config.process_ttl));
    let mut find = redis::cmd("ZRANGEBYSCORE");
    find.arg(registry)
        .arg("-inf")
        .arg(format!("({oldest_alive}"));
    let dead: Vec<String> = shared.run(&find).await?;
    for process in dead {
        let mut claim = redis::cmd("ZREM");
        claim.arg(registry).arg(&process);
        let claimed: u64 = shared.run(&claim).await?;
        if claimed == 1 {
            reap(shared, &process).await?;
        }
    }
    Ok(())
}

/// Takes the channels of stopped process `process` off the presence lists it was on.
async fn reap(shared: &Shared, process: &str) -> Result<(), LayerError> {
    let listed_key = shared.key("listed", process);
    let mut members = redis::cmd("SMEMBERS");
    members.arg(&listed_key);
    let groups: Vec<String> = shared.run(&members).await?;
    let own = format!("{process}!");
    let mut reaped = 0;
    for group in &groups {
        let mut fields = redis::cmd("HKEYS");
        fields.arg(shared.key("pr", group));
        let channels: Vec<String> = shared.run(&fields).await?;
        for channel in channels.iter().filter(|c| c.starts_with(&own)) {
            shared.presence_take(group, channel).await?;
            reaped += 1;
        }
    }
    let mut delete = redis::cmd("DEL");
    delete.arg(&listed_key);
    shared.run::<(), _>(&delete).await?;
    if reaped > 0 {
        tracing::info!(target: "switchboard::layer", process, listings = reaped, "a stopped process's presence listings were removed");
    }
    Ok(())
}

/// Unsubscribes from groups that lost their last local member as soon as one leaves (notices
/// that come while it works are taken together), and every `unsubscribe_interval` as well; logs
/// the messages found lost since the last time then (not at each gap: a message overtaken by a
/// later one from the same process leaves a gap that closes a moment later).
pub(super) async fn unsubscriber(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.config.unsubscribe_interval);
    every.tick().await;
    let mut reported = 0;
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = shared.left_a_group.notified() => shared.unsubscribe_emptied().await,
            _ = every.tick() => {
                shared.unsubscribe_unused().await;
                let lost = shared.lost();
                if lost > reported {
                    tracing::warn!(target: "switchboard::layer", lost = lost - reported, total = lost, "messages from other processes lost in transit (Redis or the subscription was down)");
                    reported = lost;
                }
            }
        }
    }
}

/// Moves messages of named channel `channel` from Redis to this process's readers, one at a
/// time: the next is taken only after a reader took the last.
pub(super) async fn pump(shared: Arc<Shared>, channel: Box<str>, taken: Arc<Notify>) {
    let key = shared.key("c", &channel);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.command_timeout))
        .set_response_timeout(Some(
            Duration::from_secs_f64(BLOCK_SECONDS) + shared.config.command_timeout,
        ));
    let mut connection = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => {
                let made = tokio::select! {
                    () = shared.stop.cancelled() => return,
                    made = blocking_connection(&shared, &config) => made,
                };
                match made {
                    Ok(made) => connection.insert(made),
                    Err(error) => {
                        tracing::warn!(target: "switchboard::layer", channel = &*channel, %error, "cannot reach Redis to read a named channel; retrying");
                        tokio::select! {
                            () = shared.stop.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&key).arg(BLOCK_SECONDS);
        let popped = tokio::select! {
            () = shared.stop.cancelled() => return,
            popped = conn.blpop(&blpop) => popped,
        };
        let item = match popped {
            Ok(Some((_, item))) => item,
            // A whole `BLPOP` with nothing: end if nobody reads here any more.
            Ok(None) if shared.pump_may_end(&channel) => return,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(target: "switchboard::layer", channel = &*channel, %error, "reading a named channel failed; reconnecting");
                connection = None;
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let Some((deadline, json)) = item.split_once(' ') else {
            continue;
        };
        if deadline.parse::<u64>().is_ok_and(|d| d <= now_ms()) {
            shared.counters.expired.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(event) = Event::from_json(json) else {
            tracing::warn!(target: "switchboard::layer", channel = &*channel, "bad event in a named channel: dropped");
            continue;
        };
        if shared.local.send(&channel, event).await.is_err() {
            continue;
        }
        // Hold no second message until a reader took this one. With no reader for a whole
        // block period, end: the message waits here for the next reader, or expires (counted).
        loop {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                () = taken.notified() => break,
                () = tokio::time::sleep(Duration::from_secs_f64(BLOCK_SECONDS)) => {
                    if shared.pump_may_end(&channel) {
                        return;
                    }
                }
            }
        }
    }
}

/// A connection of a named channel's pump, on which a `BLPOP` may block.
enum BlockingConnection {
    Single(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl BlockingConnection {
    async fn blpop(&mut self, blpop: &redis::Cmd) -> redis::RedisResult<Option<(String, String)>> {
        match self {
            Self::Single(connection) => blpop.query_async(connection).await,
            Self::Cluster(connection) => blpop.query_async(connection).await,
        }
    }
}

async fn blocking_connection(
    shared: &Shared,
    config: &AsyncConnectionConfig,
) -> redis::RedisResult<BlockingConnection> {
    Ok(match &shared.backend {
        Backend::Single { client, .. } => BlockingConnection::Single(
            client
                .get_multiplexed_async_connection_with_config(config)
                .await?,
        ),
        Backend::Cluster { blocking, .. } => {
            BlockingConnection::Cluster(blocking.get_async_connection().await?)
        }
    })
}

/// The subscription connection on a Redis Cluster: a RESP3 cluster connection whose sharded
/// subscriptions (`SSUBSCRIBE`) the `redis` crate makes again by itself after a disconnection or
/// a failover, on whichever node then owns each channel's slot. Messages arrive as pushes.
pub(super) async fn cluster_subscriber(
    shared: Arc<Shared>,
    client: ClusterClient,
    mut pushes: mpsc::Receiver<redis::PushInfo>,
    mut commands: mpsc::Receiver<SubscriberCommand>,
    ready: oneshot::Sender<redis::RedisResult<()>>,
) {
    let timeout = shared.config.command_timeout;
    let connected = tokio::select! {
        () = shared.stop.cancelled() => return,
        connected = tokio::time::timeout(timeout, async {
            let mut connection = client.get_async_connection().await?;
            connection.ssubscribe(&*shared.process_channel).await?;
            redis::RedisResult::Ok(connection)
        }) => connected,
    };
    let mut connection = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::warn!(target: "switchboard::layer", %error, "Redis Cluster subscription connection failed");
            let _ = ready.send(Err(error));
            return;
        }
        Err(_) => {
            tracing::warn!(target: "switchboard::layer", "Redis Cluster subscription connection timed out");
            return;
        }
    };
    shared.subscriber_connected.store(true, Ordering::Relaxed);
    let _ = ready.send(Ok(()));
    // Every shard channel subscribed to, and those to subscribe again: after a failed
    // `SSUBSCRIBE`, and all of them after a node went away (a new `SSUBSCRIBE` goes to the slot's
    // owner now, which also makes the connection learn the cluster's new shape: an idle
    // subscription connection would otherwise stay with the dead node). Tried every second.
    let mut channels: HashSet<String> = HashSet::from([shared.process_channel.to_string()]);
    let mut pending: HashSet<String> = HashSet::new();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    let mut disconnected = false;
    loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            push = pushes.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    redis::PushKind::SMessage => {
                        if let [channel, payload, ..] = push.data.as_slice() {
                            if let (Ok(channel), Ok(payload)) = (
                                redis::from_redis_value_ref::<String>(channel),
                                redis::from_redis_value_ref::<Vec<u8>>(payload),
                            ) {
                                shared.dispatch(&channel, &payload).await;
                            }
                        }
                    }
                    redis::PushKind::Disconnection => {
                        if !disconnected {
                            tracing::warn!(target: "switchboard::layer", "a Redis Cluster node of the subscription connection went away; subscribing again where its slots go");
                        }
                        disconnected = true;
                        shared.subscriber_connected.store(false, Ordering::Relaxed);
                        pending.extend(channels.iter().cloned());
                    }
                    redis::PushKind::SSubscribe if disconnected => {
                        disconnected = false;
                        shared.subscriber_connected.store(true, Ordering::Relaxed);
                        shared.counters.reconnections.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(target: "switchboard::layer", "Redis Cluster subscriptions made again");
                    }
                    _ => {}
                }
            }
            command = commands.recv() => match command {
                None => return,
                Some(SubscriberCommand::Subscribe(group, done)) => {
                    let redis_channel = shared.key("g", &group);
                    let made = tokio::time::timeout(timeout, connection.ssubscribe(&redis_channel)).await;
                    if !matches!(made, Ok(Ok(()))) {
                        tracing::warn!(target: "switchboard::layer", group = &*group, "Redis SSUBSCRIBE failed; trying again");
                        pending.insert(redis_channel.clone());
                    }
                    channels.insert(redis_channel);
                    let _ = done.send(());
                }
                Some(SubscriberCommand::Unsubscribe(group)) => {
                    let redis_channel = shared.key("g", &group);
                    pending.remove(&redis_channel);
                    channels.remove(&redis_channel);
                    let _ = tokio::time::timeout(timeout, connection.sunsubscribe(&redis_channel)).await;
                    shared.forget_received(&redis_channel);
                }
            },
            _ = retry.tick(), if !pending.is_empty() => {
                for redis_channel in std::mem::take(&mut pending) {
                    let made = tokio::time::timeout(timeout, connection.ssubscribe(&redis_channel)).await;
                    if !matches!(made, Ok(Ok(()))) {
                        pending.insert(redis_channel);
                    }
                }
            }
        }
    }
}
