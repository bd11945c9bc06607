//! The dashboard example (`examples/dashboard/`), over real sockets: the tutorial's protocol,
//! readings from sensors, from `POST /sensors/{id}` and from the simulator, the same as
//! server-sent events, bad input, and a dashboard that comes back getting what it missed.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/dashboard/main.rs"]
mod dashboard;

use std::time::Duration;

use common::{post_json, recv_json, send_json, within, EventReader, TestServer};
use serde_json::{json, Value};
use switchboard::ServerConfig;

async fn start() -> TestServer {
    TestServer::start_with(
        dashboard::application(),
        dashboard::layer(),
        ServerConfig::default(),
    )
    .await
}

fn reading(frame: &Value) -> (&str, f64) {
    assert_eq!(frame["type"], "sensor.reading", "{frame}");
    (
        frame["sensor_id"].as_str().unwrap(),
        frame["sensor_value"].as_f64().unwrap(),
    )
}

#[tokio::test]
async fn readings_from_sensors_and_http_reach_dashboards_and_event_streams() {
    let server = start().await;
    let mut board = server.connect("/ws/sensor_data/").await;
    let mut sensor = server.connect("/ws/sensor_data/").await;
    let mut events = EventReader::open(server.addr, "/events").await;

    send_json(
        &mut sensor,
        &json!({ "sensor_id": "t1", "sensor_value": 21.5 }),
    )
    .await;
    for client in [&mut board, &mut sensor] {
        assert_eq!(reading(&recv_json(client).await), ("t1", 21.5));
    }
    let posted = post_json(server.addr, "/sensors/h7", &json!({ "value": 0.4 })).await;
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    assert_eq!(reading(&recv_json(&mut board).await), ("h7", 0.4));
    let long = "x".repeat(65);
    let refused = post_json(
        server.addr,
        &format!("/sensors/{long}"),
        &json!({ "value": 1 }),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let refused = post_json(server.addr, "/sensors/h7", &json!({ "value": "hot" })).await;
    assert!(refused.starts_with("HTTP/1.1 4"), "{refused}");

    let first: Value = serde_json::from_str(&events.next_data().await).unwrap();
    let second: Value = serde_json::from_str(&events.next_data().await).unwrap();
    assert_eq!(
        (reading(&first), reading(&second)),
        (("t1", 21.5), ("h7", 0.4))
    );
    drop((board, sensor));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_readings_get_an_error_and_the_connection_carries_on() {
    let server = start().await;
    let mut sensor = server.connect("/ws/sensor_data/").await;
    for bad in [
        json!({ "sensor_id": "t1", "sensor_value": "warm" }),
        json!({ "sensor_id": "", "sensor_value": 1.0 }),
        json!({ "sensor_value": 1.0 }),
        json!([1, 2]),
    ] {
        send_json(&mut sensor, &bad).await;
        assert!(recv_json(&mut sensor).await["error"].is_string(), "{bad}");
    }
    send_json(
        &mut sensor,
        &json!({ "sensor_id": "t1", "sensor_value": -4.25 }),
    )
    .await;
    assert_eq!(reading(&recv_json(&mut sensor).await), ("t1", -4.25));
    drop(sensor);
    server.shutdown().await;
}

#[tokio::test]
async fn a_dashboard_that_comes_back_gets_exactly_what_it_missed() {
    let server = start().await;
    let mut board = server.connect("/ws/sensor_data/").await;
    post_json(server.addr, "/sensors/a", &json!({ "value": 1.0 })).await;
    let seen = recv_json(&mut board).await;
    let since = format!(
        "{}:{}",
        seen["position"]["epoch"].as_str().unwrap(),
        seen["position"]["offset"]
    );
    drop(board);

    for value in [2.0, 3.0, 4.0] {
        post_json(server.addr, "/sensors/a", &json!({ "value": value })).await;
    }
    let mut board = server
        .connect(&format!("/ws/sensor_data/?since={since}"))
        .await;
    for value in [2.0, 3.0, 4.0] {
        assert_eq!(reading(&recv_json(&mut board).await), ("a", value));
    }
    assert_eq!(
        recv_json(&mut board).await,
        json!({ "type": "recovery", "asked": true, "recovered": true, "missed": 3 })
    );
    post_json(server.addr, "/sensors/a", &json!({ "value": 5.0 })).await;
    assert_eq!(reading(&recv_json(&mut board).await), ("a", 5.0));

    // A position the stream does not know (another epoch: the server restarted): a gap, said so.
    let mut lost = server.connect("/ws/sensor_data/?since=gone:7").await;
    assert_eq!(
        recv_json(&mut lost).await,
        json!({ "type": "recovery", "asked": true, "recovered": false, "missed": 0 })
    );
    drop((board, lost));
    server.shutdown().await;
}

#[tokio::test]
async fn simulated_sensors_feed_the_same_stream() {
    let server = start().await;
    let mut board = server.connect("/ws/sensor_data/").await;
    dashboard::simulate(&server.layer, 2, Duration::from_millis(5));
    let mut seen = std::collections::HashSet::new();
    within(async {
        while seen.len() < 2 {
            let frame = recv_json(&mut board).await;
            seen.insert(reading(&frame).0.to_owned());
        }
    })
    .await;
    assert_eq!(seen, ["sim-1".to_owned(), "sim-2".to_owned()].into());
    drop(board);
    server.shutdown().await;
}

#[tokio::test]
async fn a_new_dashboard_draws_the_last_readings_at_once() {
    let server = start().await;
    for value in [1.0, 2.0, 3.0] {
        post_json(server.addr, "/sensors/a", &json!({ "value": value })).await;
    }
    let mut board = server.connect("/ws/sensor_data/").await;
    for value in [1.0, 2.0, 3.0] {
        assert_eq!(reading(&recv_json(&mut board).await), ("a", value));
    }
    assert_eq!(
        recv_json(&mut board).await,
        json!({ "type": "recovery", "asked": false, "recovered": true, "missed": 3 })
    );
    post_json(server.addr, "/sensors/a", &json!({ "value": 4.0 })).await;
    assert_eq!(reading(&recv_json(&mut board).await), ("a", 4.0));
    drop(board);
    server.shutdown().await;
}
