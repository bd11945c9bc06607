//! Channel-layer micro-benchmarks: `group_send` fan-out, point-to-point `send`, and a listed
//! member joining and leaving a room (presence events to every member, or gathered in a diff).
//!
//! `cargo bench --bench layer`. Each measurement includes draining what it queued, so queues
//! never fill and the figure is the cost of one operation plus its receipt.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Event, InMemoryChannelLayer, InMemoryConfig,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

async fn members(layer: &InMemoryChannelLayer, group: &str, n: usize) -> Vec<ChannelReceiver> {
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let receiver = layer.new_channel().await.unwrap();
        layer.group_add(group, receiver.name()).await.unwrap();
        receivers.push(receiver);
    }
    receivers
}

fn group_send(c: &mut Criterion) {
    let rt = runtime();
    let event = Event::from_json(
        r#"{"type":"chat.message","message":"0123456789abcdef0123456789abcdef0123456789abcdef"}"#,
    )
    .unwrap();
    let mut group = c.benchmark_group("group_send");
    group.measurement_time(Duration::from_secs(3));
    for n in [1usize, 100, 10_000] {
        let layer = InMemoryChannelLayer::new();
        let mut receivers = rt.block_on(members(&layer, "room", n));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                rt.block_on(layer.group_send("room", event.clone()))
                    .unwrap();
                for receiver in &mut receivers {
                    receiver.try_recv().unwrap();
                }
            });
        });
    }
    group.finish();
}

fn send(c: &mut Criterion) {
    let rt = runtime();
    let event = Event::from_json(r#"{"type":"job","id":1}"#).unwrap();
    let mut group = c.benchmark_group("send");
    group.measurement_time(Duration::from_secs(3));
    // The same send with 0 and with 10,000 unrelated channels and groups in the layer: the cost
    // must not grow with them (Channels' in-memory layer walks them all).
    for unrelated in [0usize, 10_000] {
        let layer = InMemoryChannelLayer::new();
        let _others = rt.block_on(members(&layer, "others", unrelated));
        let mut receiver = rt.block_on(layer.new_channel()).unwrap();
        let name = receiver.name().to_owned();
        group.bench_with_input(
            BenchmarkId::new("unrelated_channels", unrelated),
            &unrelated,
            |b, _| {
                b.iter(|| {
                    rt.block_on(layer.send(&name, event.clone())).unwrap();
                    receiver.try_recv().unwrap();
                });
            },
        );
    }
    group.finish();
}

/// One connection joins a room of N listed members (`presence_add`) and leaves (its channel
/// dropped): without a presence window every member gets a join and a leave (O(N) per join);
/// with one, the two go into the room's pending diff and cancel out (O(1); the diff of a real
/// window is one event per member per window, whatever the number of joins).
fn join_leave(c: &mut Criterion) {
    let rt = runtime();
    let meta = serde_json::json!({ "name": "someone" });
    let mut group = c.benchmark_group("join_leave");
    group.measurement_time(Duration::from_secs(3));
    for n in [100usize, 1_000] {
        for (label, window) in [
            ("one_event_per_change", None),
            ("presence_window", Some(Duration::from_secs(3600))),
        ] {
            let mut config = InMemoryConfig::default();
            config.presence_window = window;
            let layer = InMemoryChannelLayer::with_config(config);
            let mut receivers = rt.block_on(members(&layer, "room", n));
            for receiver in &receivers {
                rt.block_on(layer.presence_add("room", receiver.name(), meta.clone()))
                    .unwrap();
            }
            for receiver in &mut receivers {
                while receiver.try_recv().is_some() {}
            }
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        let joiner = layer.new_channel().await.unwrap();
                        layer
                            .presence_add("room", joiner.name(), meta.clone())
                            .await
                            .unwrap();
                    });
                    for receiver in &mut receivers {
                        while receiver.try_recv().is_some() {}
                    }
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, group_send, send, join_leave);
criterion_main!(benches);
