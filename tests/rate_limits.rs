//! Inbound rate limits over real sockets: messages past a client's allowance never reach its
//! consumer, are counted, and the client is told; the close policy ends a flood with 1008; a
//! route's own limit replaces the server's; a flooder does not hold up another client.

mod common;

use std::time::Duration;

use common::{
    disconnected, notes, recv_close, recv_text, text, within, Echo, Note, Observed, TestServer,
};
use futures_util::SinkExt;
use switchboard::layer::InMemoryChannelLayer;
use switchboard::middleware::RateLimit;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::{close_code, Message};
use switchboard::{InboundRateLimit, Rate, RateLimitPolicy, ServerConfig};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

/// `/ws/` under the server's limit, `/ws/free/` with a route limit of its own (generous), both
/// observed on `notes`.
async fn server(limit: Option<InboundRateLimit>) -> (TestServer, mpsc::Receiver<Note>) {
    let (tx, rx) = notes();
    let free = tx.clone();
    let generous = InboundRateLimit::messages(Rate::new(10_000.0, 10_000.0));
    let app = ProtocolTypeRouter::new().websocket(
        UrlRouter::new()
            .route("/ws/", move || Observed::new(Echo, tx.clone()))
            .route(
                "/ws/free/",
                RateLimit::new(move || Observed::new(Echo, free.clone()), generous),
            ),
    );
    let mut config = ServerConfig::default();
    config.inbound_rate_limit = limit;
    (
        TestServer::start_with(app, InMemoryChannelLayer::new(), config).await,
        rx,
    )
}

/// Sends `count` messages `m0`, `m1`, … at once (one flush).
async fn flood(client: &mut common::Client, count: usize) {
    for n in 0..count {
        client
            .feed(tungstenite::Message::text(format!("m{n}")))
            .await
            .unwrap();
    }
    within(client.flush()).await.unwrap();
}

/// How many `Received` notes arrive before `marker` is received (the marker's own excluded).
async fn received_before(notes: &mut mpsc::Receiver<Note>, marker: &str) -> usize {
    let mut count = 0;
    loop {
        match common::next_note(notes).await {
            Note::Received(Message::Text(text)) if text.as_str() == marker => return count,
            Note::Received(_) => count += 1,
            _ => {}
        }
    }
}

#[tokio::test]
async fn messages_past_the_allowance_are_dropped_counted_and_told() {
    // 5 at once, then 1 a second: a flood of 50 gets 5 through.
    let limit = InboundRateLimit::messages(Rate::new(1.0, 5.0));
    let (server, mut notes) = server(Some(limit)).await;
    let mut client = server.connect("/ws/").await;
    flood(&mut client, 50).await;
    let mut echoed = Vec::new();
    let mut told = None;
    while echoed.len() < 5 || told.is_none() {
        let got = recv_text(&mut client).await;
        if got.starts_with('{') {
            told = Some(got);
        } else {
            echoed.push(got);
        }
    }
    assert_eq!(
        echoed,
        ["m0", "m1", "m2", "m3", "m4"],
        "the burst, in order"
    );
    let told = told.unwrap();
    assert!(told.contains("rate limited"), "{told}");
    // The server may still be reading the flood when the notice arrives: wait for all 50.
    let stats = within(async {
        loop {
            let stats = server.stats.snapshot();
            if stats.messages_received == 50 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(stats.messages_rate_limited, 45);
    // The consumer saw the five only.
    let mut seen = 0;
    while let Ok(note) = notes.try_recv() {
        if matches!(note, Note::Received(_)) {
            seen += 1;
        }
    }
    assert_eq!(seen, 5);
    // Once the allowance comes back (a second), messages pass again: wait for it by asking.
    // (A dropped message gets no answer, so each try waits a short while for its echo.)
    within(async {
        loop {
            text(&mut client, "again").await;
            let reply = tokio::time::timeout(Duration::from_millis(300), recv_text(&mut client));
            if reply.await.is_ok_and(|got| got == "again") {
                break;
            }
        }
    })
    .await;
    let metrics = switchboard::metrics::render(&server.stats.snapshot());
    assert!(
        metrics.contains("switchboard_messages_rate_limited_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_close_policy_ends_a_flood_with_1008() {
    let limit = InboundRateLimit::messages(Rate::new(1.0, 3.0))
        .policy(RateLimitPolicy::Close { after: 10 });
    let (server, mut notes) = server(Some(limit)).await;
    let mut client = server.connect("/ws/").await;
    let mut bystander = server.connect("/ws/").await;
    flood(&mut client, 200).await;
    let frame = recv_close(&mut client).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), close_code::POLICY_VIOLATION);
    assert_eq!(disconnected(&mut notes).await, close_code::POLICY_VIOLATION);
    let stats = server.stats.snapshot();
    assert_eq!(stats.rate_limit_closes, 1);
    assert!(stats.messages_rate_limited >= 10);
    // The other client is its own: its allowance is untouched.
    text(&mut bystander, "still here").await;
    assert_eq!(recv_text(&mut bystander).await, "still here");
}

#[tokio::test]
async fn a_byte_limit_drops_large_messages_past_it() {
    let limit = InboundRateLimit::bytes_only(Rate::new(100.0, 1000.0));
    let (server, mut notes) = server(Some(limit)).await;
    let mut client = server.connect("/ws/").await;
    let big = "x".repeat(600);
    for _ in 0..3 {
        client
            .feed(tungstenite::Message::text(big.clone()))
            .await
            .unwrap();
    }
    client
        .feed(tungstenite::Message::text("end"))
        .await
        .unwrap();
    within(client.flush()).await.unwrap();
    // 1,000 bytes at once: the first 600 pass, the next two do not, "end" (3 bytes) does.
    assert_eq!(received_before(&mut notes, "end").await, 1);
    assert_eq!(server.stats.snapshot().messages_rate_limited, 2);
}

#[tokio::test]
async fn a_route_s_own_limit_replaces_the_server_s() {
    let tight = InboundRateLimit::messages(Rate::new(1.0, 2.0));
    let (limited, mut notes) = server(Some(tight)).await;
    let mut free = limited.connect("/ws/free/").await;
    flood(&mut free, 100).await;
    text(&mut free, "end").await;
    assert_eq!(received_before(&mut notes, "end").await, 100);
    assert_eq!(limited.stats.snapshot().messages_rate_limited, 0);

    // No limit at all on the server: nothing is dropped on `/ws/`.
    let (open, mut notes) = server(None).await;
    let mut client = open.connect("/ws/").await;
    flood(&mut client, 300).await;
    text(&mut client, "end").await;
    assert_eq!(received_before(&mut notes, "end").await, 300);
    assert_eq!(open.stats.snapshot().messages_rate_limited, 0);
}

#[tokio::test]
async fn a_flooder_does_not_hold_up_another_client() {
    let limit = InboundRateLimit::messages(Rate::new(10.0, 10.0));
    let (server, _notes) = server(Some(limit)).await;
    let mut flooder = server.connect("/ws/").await;
    let mut other = server.connect("/ws/").await;
    let flooding = tokio::spawn(async move {
        for _ in 0..20 {
            flood(&mut flooder, 500).await;
        }
        flooder
    });
    // While 10,000 messages pour in on the other connection, this one's echoes keep coming.
    for n in 0..5 {
        text(&mut other, &format!("ping {n}")).await;
        assert_eq!(recv_text(&mut other).await, format!("ping {n}"));
    }
    let _flooder = within(flooding).await.unwrap();
    // ... while the flood was being dropped, not passed on.
    let stats = server.stats.snapshot();
    assert!(stats.messages_rate_limited > 0, "{stats:?}");
}
