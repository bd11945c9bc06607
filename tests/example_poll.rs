//! The poll example (`examples/poll/`), over real sockets: the tally worker counting one vote per
//! voter (a second vote moves it), direct replies to the voter, live counts for every viewer.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/poll/main.rs"]
mod poll;

use std::collections::HashMap;
use std::sync::Arc;

use common::{get, handshake_status, recv_json, send_json, within, Client, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn polls() -> poll::Polls {
    let question = poll::Poll {
        question: "Lunch?".into(),
        options: vec!["Pizza".into(), "Salad".into(), "<b>Soup</b>".into()],
    };
    Arc::new(HashMap::from([("1".to_owned(), question)]))
}

fn request(server: &TestServer, path: &str, voter: Option<&str>) -> http::Request<()> {
    let mut request = server.url(path).into_client_request().unwrap();
    if let Some(voter) = voter {
        request
            .headers_mut()
            .insert("cookie", format!("voter={voter}").parse().unwrap());
    }
    request
}

/// A viewer with `voter`'s cookie: returns it and the first counts it got.
async fn view(server: &TestServer, voter: &str) -> (Client, Value) {
    let (mut client, _) = within(tokio_tungstenite::connect_async(request(
        server,
        "/ws/poll/1/",
        Some(voter),
    )))
    .await
    .unwrap();
    let question = recv_json(&mut client).await;
    assert_eq!(
        question,
        json!({ "question": "Lunch?", "options": ["Pizza", "Salad", "<b>Soup</b>"] })
    );
    let first = recv_json(&mut client).await;
    (client, first)
}

fn counts(pizza: u64, salad: u64, soup: u64) -> Value {
    json!({ "Pizza": pizza, "Salad": salad, "<b>Soup</b>": soup })
}

#[tokio::test]
async fn one_vote_per_voter_counted_by_the_worker_seen_live_by_everyone() {
    let server = TestServer::start(poll::application(polls())).await;
    let workers = poll::workers(polls()).spawn(server.layer.clone());
    const ADA: &str = "ada-voter-0123456789";
    const BOB: &str = "bob-voter-0123456789";

    let (mut ada, first) = view(&server, ADA).await;
    assert_eq!(first, json!({ "counts": counts(0, 0, 0), "yours": null }));
    let (mut bob, _) = view(&server, BOB).await;

    send_json(&mut ada, &json!({ "vote": "Pizza" })).await;
    // The tally answers the voter directly, then tells everyone watching.
    assert_eq!(recv_json(&mut ada).await, json!({ "voted": "Pizza" }));
    assert_eq!(
        recv_json(&mut ada).await,
        json!({ "counts": counts(1, 0, 0) })
    );
    assert_eq!(
        recv_json(&mut bob).await,
        json!({ "counts": counts(1, 0, 0) })
    );

    // A second vote moves the first.
    send_json(&mut ada, &json!({ "vote": "<b>Soup</b>" })).await;
    assert_eq!(recv_json(&mut ada).await, json!({ "voted": "<b>Soup</b>" }));
    assert_eq!(
        recv_json(&mut bob).await,
        json!({ "counts": counts(0, 0, 1) })
    );
    send_json(&mut bob, &json!({ "vote": "<b>Soup</b>" })).await;
    assert_eq!(recv_json(&mut bob).await, json!({ "voted": "<b>Soup</b>" }));
    assert_eq!(
        recv_json(&mut bob).await,
        json!({ "counts": counts(0, 0, 2) })
    );

    // Another tab of ada's browser: the counts, and her vote.
    let (ada_again, first) = view(&server, ADA).await;
    assert_eq!(
        first,
        json!({ "counts": counts(0, 0, 2), "yours": "<b>Soup</b>" })
    );

    // Not an option, not a vote: an error, and the connection carries on.
    send_json(&mut bob, &json!({ "vote": "Steak" })).await;
    assert!(recv_json(&mut bob).await["error"].is_string());
    send_json(&mut bob, &json!({ "ballot": 1 })).await;
    assert!(recv_json(&mut bob).await["error"].is_string());
    drop((ada, bob, ada_again));
    server.shutdown().await;
    workers.shutdown().await;
}

#[tokio::test]
async fn no_voter_cookie_or_no_such_poll_is_refused_and_the_page_hands_out_cookies() {
    let server = TestServer::start(poll::application(polls())).await;
    assert_eq!(
        handshake_status(request(&server, "/ws/poll/1/", None)).await,
        401
    );
    assert_eq!(
        handshake_status(request(
            &server,
            "/ws/poll/2/",
            Some("some-voter-0123456789")
        ))
        .await,
        404
    );
    let page = get(server.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let cookie = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: voter="))
        .expect("a voter cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    server.shutdown().await;
}
