//! The in-memory layer does not grow with the number of distinct names it has seen: after a
//! warm-up of 100,000 distinct named channels and groups used and left, 100,000 more leave the
//! process's resident memory flat. (Its own test binary, so that no other test allocates
//! meanwhile.)

use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer};

/// Resident memory of this process, in KiB (`VmRSS` in /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

async fn churn(layer: &InMemoryChannelLayer, from: u32, count: u32) {
    let inbox = layer.new_channel().await.unwrap();
    let event = Event::from_json(r#"{"type":"job"}"#).unwrap();
    for n in from..from + count {
        let name = format!("job.{n}");
        layer.send(&name, event.clone()).await.unwrap();
        layer.receive(&name).await.unwrap();
        let group = format!("g.{n}");
        layer.group_add(&group, inbox.name()).await.unwrap();
        layer.group_add(&group, &name).await.unwrap();
        layer.group_discard(&group, &name).await.unwrap();
        layer.group_discard(&group, inbox.name()).await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn distinct_names_leave_memory_flat() {
    let layer = InMemoryChannelLayer::new();
    churn(&layer, 0, 100_000).await;
    let warm = rss_kib();
    churn(&layer, 100_000, 100_000).await;
    let after = rss_kib();
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.groups, stats.memberships), (0, 0, 0));
    // Kept entries would cost well over 100 bytes each: 100,000 of them, more than 10 MiB.
    assert!(
        after <= warm + 2048,
        "resident memory grew from {warm} KiB to {after} KiB over 100,000 distinct names"
    );
}
