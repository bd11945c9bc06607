//! The location example (`examples/location/`), over real sockets: the tutorial's protocol,
//! positions of those already there for a newcomer, leaving, bad input and the rate limit.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/location/main.rs"]
mod location;

use common::{recv_json, send_json, within, Client, TestServer};
use serde_json::{json, Value};

async fn join(server: &TestServer, name: &str) -> (Client, String) {
    let mut client = server.connect(&format!("/ws/location/?name={name}")).await;
    let you = recv_json(&mut client).await;
    let id = you["you"].as_str().expect("{you: id} first").to_owned();
    (client, id)
}

fn position(frame: &Value) -> (f64, f64) {
    (
        frame["latitude"].as_f64().unwrap(),
        frame["longitude"].as_f64().unwrap(),
    )
}

#[tokio::test]
async fn everyone_sees_every_position_and_newcomers_see_the_last_ones() {
    let server = TestServer::start(location::application()).await;
    let (mut ada, ada_id) = join(&server, "ada").await;
    let (mut bob, bob_id) = join(&server, "bob").await;

    send_json(&mut ada, &json!({ "latitude": 48.85, "longitude": 2.35 })).await;
    for client in [&mut ada, &mut bob] {
        let got = recv_json(client).await;
        assert_eq!(position(&got), (48.85, 2.35));
        assert_eq!(
            (got["from"].as_str(), got["name"].as_str()),
            (Some(ada_id.as_str()), Some("ada"))
        );
    }
    send_json(&mut ada, &json!({ "latitude": -33.9, "longitude": 18.4 })).await;
    assert_eq!(position(&recv_json(&mut bob).await), (-33.9, 18.4));
    assert_eq!(position(&recv_json(&mut ada).await), (-33.9, 18.4));

    // A newcomer gets ada's last position (bob never shared one), point to point from ada.
    let (mut carol, _) = join(&server, "carol").await;
    let got = recv_json(&mut carol).await;
    assert_eq!(
        (got["name"].as_str(), position(&got)),
        (Some("ada"), (-33.9, 18.4))
    );

    // Leaving removes the marker everywhere.
    within(bob.close(None)).await.unwrap();
    assert_eq!(recv_json(&mut ada).await, json!({ "left": bob_id }));
    assert_eq!(recv_json(&mut carol).await, json!({ "left": bob_id }));
    drop((ada, carol));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_positions_get_an_error_and_the_connection_carries_on() {
    let server = TestServer::start(location::application()).await;
    let (mut ada, _) = join(&server, "ada").await;
    for bad in [
        json!({ "latitude": 123.0, "longitude": 0.0 }),
        json!({ "latitude": 0.0, "longitude": -181.0 }),
        json!({ "latitude": "north", "longitude": 0.0 }),
        json!({ "lat": 1.0 }),
    ] {
        send_json(&mut ada, &bad).await;
        assert!(recv_json(&mut ada).await["error"].is_string(), "{bad}");
    }
    send_json(&mut ada, &json!({ "latitude": 90.0, "longitude": -180.0 })).await;
    assert_eq!(position(&recv_json(&mut ada).await), (90.0, -180.0));
    drop(ada);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_sending_too_fast_is_held_to_five_a_second() {
    let server = TestServer::start(location::application()).await;
    let (mut phone, _) = join(&server, "phone").await;
    for i in 0..30 {
        send_json(
            &mut phone,
            &json!({ "latitude": i as f64, "longitude": 0.0 }),
        )
        .await;
    }
    // Wait until the server has read all thirty (the event, not a sleep).
    within(async {
        while server.stats.snapshot().messages_received < 30 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let dropped = server.stats.snapshot().messages_rate_limited;
    // A burst of 10 passes (and whatever came back in the milliseconds the burst took).
    assert!((18..=20).contains(&dropped), "dropped {dropped}");
    let mut told = false;
    let mut heard = 0;
    while heard + usize::from(told) < 30 - dropped as usize + 1 {
        let frame = recv_json(&mut phone).await;
        if frame["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("rate limited"))
        {
            told = true;
        } else {
            heard += 1;
        }
    }
    assert!(told);
    assert_eq!(heard, 30 - dropped as usize);
    drop(phone);
    server.shutdown().await;
}
