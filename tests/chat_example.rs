//! The chat example, over real sockets: rooms, names, echo to the sender, fan-out order, bad
//! input, history, presence, announcements over HTTP, origin checks, and leaving groups.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat/main.rs"]
mod chat;

use std::collections::HashMap;

use common::redis_server::RedisServer;
use common::{
    disconnected, notes, recv_json, send_json, within, Client, Note, Observed, TestServer,
};
use futures_util::SinkExt;
use serde_json::{json, Value};
use switchboard::layer::{ChannelLayer, InMemoryChannelLayer, RedisChannelLayer, RedisConfig};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::close_code;
use switchboard::{OriginCheck, ServerConfig};
use tokio_tungstenite::tungstenite;

const ORIGIN: &str = "http://localhost:8000";

/// The chat's whole application on `layer`, served as the example serves it (`/metrics` included),
/// as `--allowed-origin http://localhost:8000` would: the tests' pages come from there.
async fn chat_server_on(layer: impl ChannelLayer, history: chat::History) -> TestServer {
    let app = chat::application(history);
    let mut config = ServerConfig::default();
    config.origin_check = OriginCheck::same_origin().allow([ORIGIN]);
    TestServer::start_with(app, layer, config).await
}

async fn chat_server_with(history: chat::History) -> TestServer {
    let layer = InMemoryChannelLayer::with_config(chat::memory_layer_config(1000));
    chat_server_on(layer, history).await
}

async fn chat_server() -> TestServer {
    chat_server_with(chat::History::open(std::path::Path::new(":memory:")).unwrap()).await
}

/// The key a test's page `name` holds its name with (a page makes 32 random hex digits).
fn key_of(name: &str) -> String {
    format!("test-key-of-the-page-of-{name}")
}

/// Joins `room` as `name` and reads up to the first presence list (after any history).
async fn join(server: &TestServer, room: &str, name: &str) -> (Client, Vec<Value>, Vec<String>) {
    let (client, history, online, _) = rejoin(server, room, name, None).await;
    (client, history, online)
}

/// Joins `room` as `name`, coming back from `since` if given; reads the history (or what was
/// recovered), the recovery message, and the first presence list.
async fn rejoin(
    server: &TestServer,
    room: &str,
    name: &str,
    since: Option<&str>,
) -> (Client, Vec<Value>, Vec<String>, Value) {
    let since = since.map_or(String::new(), |since| format!("&since={since}"));
    let mut client = server
        .connect_from(
            &format!("/ws/chat/{room}/?name={name}&key={}{since}", key_of(name)),
            ORIGIN,
        )
        .await;
    let mut history = Vec::new();
    let mut recovery = Value::Null;
    loop {
        let got = recv_json(&mut client).await;
        match got["type"].as_str() {
            Some("message") => history.push(got),
            Some("recovery") => recovery = got,
            Some("presence") => {
                let mut online: Vec<String> = got["online"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["name"].as_str().unwrap().to_owned())
                    .collect();
                online.sort();
                assert_eq!(
                    recovery["type"], "recovery",
                    "a recovery message before presence"
                );
                return (client, history, online, recovery);
            }
            _ => panic!("unexpected before the presence list: {got}"),
        }
    }
}

/// The next live chat message (or error), skipping history and presence traffic.
async fn next_message(client: &mut Client) -> Value {
    loop {
        let got = recv_json(client).await;
        if (got["type"] == "message" && got.get("history").is_none()) || got.get("error").is_some()
        {
            return got;
        }
    }
}

/// The listing of `name` from the next presence diff that has `name` joining.
async fn next_join(client: &mut Client, name: &str) -> Value {
    loop {
        let diff = next_of(client, "presence.diff").await;
        let joins = diff["joins"].as_array().unwrap();
        if let Some(joined) = joins.iter().find(|j| j["meta"]["name"] == name) {
            return joined.clone();
        }
    }
}

/// The one listing that left, from the next presence diff with leaves.
async fn next_leave(client: &mut Client) -> Value {
    loop {
        let diff = next_of(client, "presence.diff").await;
        let leaves = diff["leaves"].as_array().unwrap();
        if !leaves.is_empty() {
            assert_eq!(leaves.len(), 1, "{diff}");
            return leaves[0].clone();
        }
    }
}

/// The next message of type `kind`, skipping others.
async fn next_of(client: &mut Client, kind: &str) -> Value {
    loop {
        let got = recv_json(client).await;
        if got["type"] == kind {
            return got;
        }
    }
}

#[tokio::test]
async fn the_sender_gets_its_own_message_with_its_name_id_and_time() {
    let server = chat_server().await;
    let (mut alice, history, online) = join(&server, "lobby", "alice").await;
    assert!(history.is_empty());
    assert_eq!(online, ["alice"]);
    // The Channels tutorial's client sends only "message".
    send_json(&mut alice, &json!({ "message": "hello" })).await;
    let got = next_message(&mut alice).await;
    assert_eq!(
        (got["message"].as_str(), got["user"].as_str()),
        (Some("hello"), Some("alice"))
    );
    assert!(got["time"].as_u64().unwrap() > 0);
    assert!(got["id"].as_i64().unwrap() > 0);
    assert!(got.get("history").is_none());
    let mut anonymous = server.connect_from("/ws/chat/lobby/", ORIGIN).await;
    send_json(&mut anonymous, &json!({ "message": "who am I" })).await;
    assert_eq!(next_message(&mut anonymous).await["user"], "anonymous");
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = chat_server().await;
    let (mut red1, ..) = join(&server, "red", "r1").await;
    let (mut red2, ..) = join(&server, "red", "r2").await;
    let (mut blue, ..) = join(&server, "blue", "b").await;
    send_json(&mut red1, &json!({ "message": "for red" })).await;
    send_json(&mut blue, &json!({ "message": "for blue" })).await;
    assert_eq!(next_message(&mut red1).await["message"], "for red");
    assert_eq!(next_message(&mut red2).await["message"], "for red");
    assert_eq!(next_message(&mut blue).await["message"], "for blue");
    // Had "for red" leaked to blue, or "for blue" to red, it would be the next message.
    send_json(&mut red2, &json!({ "message": "red again" })).await;
    send_json(&mut blue, &json!({ "message": "blue again" })).await;
    assert_eq!(next_message(&mut red1).await["message"], "red again");
    assert_eq!(next_message(&mut red2).await["message"], "red again");
    assert_eq!(next_message(&mut blue).await["message"], "blue again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_receive_every_message_in_per_sender_order() {
    const CLIENTS: usize = 50;
    const SENDERS: usize = 5;
    const PER_SENDER: usize = 20;
    let server = chat_server().await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(join(&server, "crowd", &format!("c{i}")).await.0);
    }
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut sent = 0;
            // Senders send their next message once the previous one came back (closed loop), so
            // the room is never more than SENDERS messages behind and no channel fills up.
            let sender = i < SENDERS;
            if sender {
                send_json(&mut client, &json!({ "message": format!("{i}:{sent}") })).await;
            }
            while seen.len() < SENDERS * PER_SENDER {
                let text = next_message(&mut client).await["message"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if sender && text == format!("{i}:{sent}") && sent + 1 < PER_SENDER {
                    sent += 1;
                    send_json(&mut client, &json!({ "message": format!("{i}:{sent}") })).await;
                }
                seen.push(text);
            }
            seen
        }));
    }
    for task in tasks {
        let seen = within(task).await.unwrap();
        let mut next: HashMap<usize, usize> = HashMap::new();
        for text in &seen {
            let (s, n) = text.split_once(':').unwrap();
            let (s, n): (usize, usize) = (s.parse().unwrap(), n.parse().unwrap());
            let expected = next.entry(s).or_default();
            assert_eq!(
                n, *expected,
                "sender {s} out of order or duplicated in {seen:?}"
            );
            *expected += 1;
        }
        assert_eq!(next.len(), SENDERS);
        assert!(next.values().all(|&n| n == PER_SENDER));
    }
    assert_eq!(server.layer.stats().dropped_full, 0);
}

#[tokio::test]
async fn malformed_input_gets_an_error_and_the_connection_carries_on() {
    let server = chat_server().await;
    let (mut client, ..) = join(&server, "lobby", "ada").await;
    client
        .send(tungstenite::Message::text("{not json"))
        .await
        .unwrap();
    let error = next_message(&mut client).await;
    assert!(
        error["error"].as_str().unwrap().contains("invalid message"),
        "{error}"
    );
    send_json(&mut client, &json!({ "text": "wrong field" })).await;
    assert!(next_message(&mut client).await["error"].is_string());
    client
        .send(tungstenite::Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert!(next_message(&mut client).await["error"]
        .as_str()
        .unwrap()
        .contains("binary"));
    send_json(&mut client, &json!({ "message": "   " })).await;
    assert_eq!(next_message(&mut client).await["error"], "empty message");
    send_json(&mut client, &json!({ "message": "x".repeat(2001) })).await;
    assert_eq!(next_message(&mut client).await["error"], "message too long");
    send_json(&mut client, &json!({ "message": "still here" })).await;
    assert_eq!(next_message(&mut client).await["message"], "still here");
}

async fn status_from(server: &TestServer, path: &str, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.url(path).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", http::HeaderValue::from_str(origin).unwrap());
    }
    common::handshake_status(request).await
}

#[tokio::test]
async fn unknown_paths_bad_rooms_and_other_origins_are_refused() {
    let server = chat_server().await;
    assert_eq!(
        status_from(&server, "/ws/nowhere/", Some(ORIGIN)).await,
        404
    );
    assert_eq!(status_from(&server, "/ws/chat/", Some(ORIGIN)).await, 404);
    assert_eq!(
        status_from(&server, "/ws/chat/bad%20room/", Some(ORIGIN)).await,
        403
    );
    assert_eq!(
        status_from(&server, "/chat/lobby/", Some(ORIGIN)).await,
        404
    ); // pages are not WebSockets
    assert_eq!(
        status_from(&server, "/ws/chat/lobby/", Some("https://evil.example")).await,
        403
    );
    let other_port = format!("http://127.0.0.1:{}", server.addr.port() + 1);
    assert_eq!(
        status_from(&server, "/ws/chat/lobby/", Some(&other_port)).await,
        403,
        "another port of the same host is another origin"
    );
    assert_eq!(
        status_from(&server, "/ws/chat/lobby/", Some("null")).await,
        403
    );
    assert_eq!(
        server.layer.stats().channels,
        0,
        "refused handshakes reached no consumer"
    );
    let own = format!("http://{}", server.addr);
    assert_eq!(
        status_from(&server, "/ws/chat/lobby/?name=ada", Some(&own)).await,
        101,
        "the chat's own pages connect"
    );
    assert_eq!(
        status_from(&server, "/ws/chat/lobby/?name=ada", None).await,
        101,
        "clients that send no Origin (not browsers) connect"
    );
    assert_eq!(
        server.stats.snapshot().refused.forbidden,
        4,
        "the other origins and the bad room name"
    );
}

async fn http(server: &TestServer, request: &str) -> String {
    common::http_raw(server.addr, request).await
}

#[tokio::test]
async fn pages_are_served_by_axum_on_the_same_port() {
    let server = chat_server().await;
    let page = http(
        &server,
        "GET /chat/lobby/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("new WebSocket("));
    let page = http(
        &server,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.contains("<form id=\"pick\""));
}

#[tokio::test]
async fn joiners_get_the_last_fifty_messages_of_their_room() {
    let server = chat_server().await;
    let (mut talker, ..) = join(&server, "busy", "talker").await;
    for i in 0..55 {
        send_json(&mut talker, &json!({ "message": format!("m{i}") })).await;
        assert_eq!(next_message(&mut talker).await["message"], format!("m{i}"));
    }
    let (_, other_room, _) = join(&server, "quiet", "q").await;
    assert!(other_room.is_empty());
    let (_, history, online) = join(&server, "busy", "late").await;
    assert_eq!(history.len(), chat::HISTORY_ON_JOIN);
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (5..55).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "oldest first, the newest 50");
    assert!(history
        .iter()
        .all(|m| m["history"] == true && m["user"] == "talker"));
    assert_eq!(online, ["late", "talker"]);
}

#[tokio::test]
async fn history_is_kept_in_the_database_file_across_restarts() {
    let path = std::env::temp_dir().join(format!(
        "switchboard-chat-test-{}.sqlite3",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    {
        let history = chat::History::open(&path).unwrap();
        let server = chat_server_with(history.clone()).await;
        let (mut ada, ..) = join(&server, "lobby", "ada").await;
        send_json(&mut ada, &json!({ "message": "remember me" })).await;
        next_message(&mut ada).await;
        drop(ada);
        server.shutdown().await;
        history.close().await; // writes what is still queued
    }
    let server = chat_server_with(chat::History::open(&path).unwrap()).await;
    let (_, history, _) = join(&server, "lobby", "bob").await;
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0]["message"].as_str(), history[0]["user"].as_str()),
        (Some("remember me"), Some("ada"))
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Another page (another key) asking for `name` on `server` is told it is taken and closed with
/// 4009, before joining anything.
async fn assert_name_taken(server: &TestServer, name: &str) {
    let mut impostor = server
        .connect_from(
            &format!("/ws/chat/lobby/?name={name}&key=an-impostor-s-own-key"),
            ORIGIN,
        )
        .await;
    let told = recv_json(&mut impostor).await;
    assert_eq!(
        told["error"],
        format!("the name {name} is someone else's: pick another"),
        "{told}"
    );
    let closed = common::recv_close(&mut impostor)
        .await
        .expect("a close frame");
    assert_eq!(u16::from(closed.code), chat::NAME_TAKEN);
}

#[tokio::test]
async fn a_name_is_held_by_the_page_that_used_it_first_even_across_restarts() {
    let path = std::env::temp_dir().join(format!(
        "switchboard-chat-names-{}.sqlite3",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    {
        let history = chat::History::open(&path).unwrap();
        let server = chat_server_with(history.clone()).await;
        let (mut bob, ..) = join(&server, "lobby", "bob").await;
        let (mut ada, ..) = join(&server, "lobby", "ada").await;
        assert_name_taken(&server, "bob").await;
        // Names that look like bob's are other names, free to take; bob's messages stay his.
        let (mut lookalike, ..) = join(&server, "lobby", "Bob").await;
        send_json(&mut ada, &json!({ "message": "for bob", "to": "bob" })).await;
        assert_private(&next_message(&mut bob).await, "ada", "bob", "for bob");
        send_json(&mut ada, &json!({ "message": "for Bob", "to": "Bob" })).await;
        assert_private(&next_message(&mut lookalike).await, "ada", "Bob", "for Bob");
        // A page without a key is anonymous, whatever name it asks for.
        let mut keyless = server
            .connect_from("/ws/chat/lobby/?name=bob", ORIGIN)
            .await;
        send_json(&mut keyless, &json!({ "message": "who am I" })).await;
        assert_eq!(next_message(&mut keyless).await["user"], "anonymous");
        // bob comes back with his key, from another tab: still bob.
        let (_bob_again, ..) = join(&server, "kitchen", "bob").await;
        drop((bob, ada, lookalike, keyless));
        server.shutdown().await;
        history.close().await;
    }
    // After a restart on the same file, bob's name is still his page's.
    let server = chat_server_with(chat::History::open(&path).unwrap()).await;
    assert_name_taken(&server, "bob").await;
    let (_bob, ..) = join(&server, "lobby", "bob").await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test]
async fn presence_lists_who_is_online_and_survives_dropped_connections() {
    let server = chat_server().await;
    let (mut ada, _, online) = join(&server, "lobby", "ada").await;
    assert_eq!(online, ["ada"]);
    let (bob, _, online) = join(&server, "lobby", "bob").await;
    assert_eq!(online, ["ada", "bob"]);
    // ada hears bob join in a presence diff (her own join, already on her list, may be in it).
    let joined = next_join(&mut ada, "bob").await;
    drop(bob); // TCP goes, no close frame
    let left = next_leave(&mut ada).await;
    assert_eq!(
        (left["meta"]["name"].as_str(), &left["channel"]),
        (Some("bob"), &joined["channel"])
    );
    let (_, _, online) = join(&server, "lobby", "cat").await;
    assert_eq!(online, ["ada", "cat"]);
}

/// `POST /rooms/{room}/announce` with `{"message": message}`; the raw response.
async fn announce(server: &TestServer, room: &str, message: &str) -> String {
    let body = json!({ "message": message }).to_string();
    http(
        server,
        &format!(
            "POST /rooms/{room}/announce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

#[tokio::test]
async fn announcements_over_http_reach_everyone_in_the_room() {
    let server = chat_server().await;
    let (mut a, ..) = join(&server, "lobby", "a").await;
    let (mut b, ..) = join(&server, "lobby", "b").await;
    let (mut elsewhere, ..) = join(&server, "other", "c").await;
    let response = announce(&server, "lobby", "maintenance at noon").await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    for client in [&mut a, &mut b] {
        let got = next_message(client).await;
        assert_eq!(
            (got["message"].as_str(), got["user"].as_str()),
            (Some("maintenance at noon"), Some("announcement"))
        );
    }
    send_json(&mut elsewhere, &json!({ "message": "mine" })).await;
    assert_eq!(
        next_message(&mut elsewhere).await["message"],
        "mine",
        "the announcement did not leak"
    );
    let bad = http(
        &server,
        "POST /rooms/bad%20room/announce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"message\":\"x\"}",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
}

/// The chat consumer, observed: the same consumer the example routes, plus lifecycle notes.
fn observed_chat() -> (ProtocolTypeRouter, tokio::sync::mpsc::Receiver<Note>) {
    let (tx, rx) = notes();
    let history = chat::History::open(std::path::Path::new(":memory:")).unwrap();
    let app = ProtocolTypeRouter::new().websocket(
        UrlRouter::new().route("/ws/chat/{room}/", move || {
            Observed::new(chat::ChatConsumer::new(history.clone()), tx.clone())
        }),
    );
    (app, rx)
}

#[tokio::test]
async fn memberships_are_gone_after_clean_close_and_after_dropped_tcp() {
    let layer = InMemoryChannelLayer::new();
    let (app, mut notes) = observed_chat();
    let server = TestServer::start_with(app, layer.clone(), ServerConfig::default()).await;
    let mut clean = server.connect("/ws/chat/lobby/").await;
    let dropped = server.connect("/ws/chat/lobby/").await;
    let _stays = server.connect("/ws/chat/other/").await;
    // The chat lists a member before it accepts: every membership exists once the 101 came back.
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.groups, stats.memberships), (3, 2, 3));

    clean
        .close(Some(tungstenite::protocol::CloseFrame {
            code: 1000u16.into(),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert_eq!(disconnected(&mut notes).await, close_code::NORMAL);
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.groups, stats.memberships), (2, 2, 2));

    drop(dropped); // TCP goes away with no close frame
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.groups, stats.memberships), (1, 1, 1));
}

/// A chat server that shares its rooms through the Redis at `url`, as `--redis` makes it.
async fn chat_server_on_redis(url: &str) -> TestServer {
    chat_server_sharing(RedisConfig::new(url), &[url.to_owned()]).await
}

/// A chat server that shares its rooms through the Redis Cluster of seed nodes `urls`, as
/// `--redis-cluster` makes it.
async fn chat_server_on_cluster(urls: &[String]) -> TestServer {
    chat_server_sharing(RedisConfig::cluster(urls.to_vec()), urls).await
}

async fn chat_server_sharing(base: RedisConfig, urls: &[String]) -> TestServer {
    let store = chat::SharedStore::connect(urls, base.is_cluster())
        .await
        .unwrap();
    let history = chat::History::open(std::path::Path::new(":memory:"))
        .unwrap()
        .share_in(store)
        .await
        .unwrap();
    let layer = RedisChannelLayer::connect(chat::redis_layer_config(base, 1000))
        .await
        .unwrap();
    chat_server_on(layer, history).await
}

#[tokio::test]
async fn two_servers_share_rooms_presence_history_and_announcements_through_redis() {
    let redis = RedisServer::start().await;
    let one = chat_server_on_redis(&redis.url()).await;
    let two = chat_server_on_redis(&redis.url()).await;
    let (mut ada, _, online) = join(&one, "lobby", "ada").await;
    assert_eq!(online, ["ada"]);
    let (mut bob, _, online) = join(&two, "lobby", "bob").await;
    assert_eq!(online, ["ada", "bob"], "presence spans both servers");
    let joined = next_join(&mut ada, "bob").await;
    // Each sees every message, whichever server it was sent to, with ids from one counter.
    send_json(&mut ada, &json!({ "message": "from one" })).await;
    send_json(&mut bob, &json!({ "message": "from two" })).await;
    let mut ids = Vec::new();
    for client in [&mut ada, &mut bob] {
        let mut got: Vec<String> = Vec::new();
        for _ in 0..2 {
            let message = next_message(client).await;
            ids.push(message["id"].as_i64().unwrap());
            got.push(message["message"].as_str().unwrap().to_owned());
        }
        got.sort();
        assert_eq!(got, ["from one", "from two"]);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "two messages, two distinct ids");
    // An announcement posted to server two reaches ada on server one.
    let response = announce(&two, "lobby", "maintenance at noon").await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    assert_eq!(next_message(&mut ada).await["user"], "announcement");
    assert_eq!(next_message(&mut bob).await["user"], "announcement");
    // A late joiner on server one gets the history written through both.
    let (_cat, history, _) = join(&one, "lobby", "cat").await;
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts.contains(&"from two") && texts.contains(&"maintenance at noon"));
    // bob's connection drops: ada, on the other server, hears that he left.
    drop(bob);
    let left = next_leave(&mut ada).await;
    assert_eq!(left["channel"], joined["channel"]);
}

/// The value of the sample `name` (with its labels, e.g. `x_total{cause="forbidden"}`) in a
/// Prometheus text body.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_show_live_counts_during_a_chat() {
    let server = chat_server().await;
    let (mut ada, ..) = join(&server, "lobby", "ada").await;
    let (_bob, ..) = join(&server, "lobby", "bob").await;
    send_json(&mut ada, &json!({ "message": "counted" })).await;
    next_message(&mut ada).await;
    assert_eq!(
        status_from(&server, "/ws/chat/lobby/", Some("http://evil.test")).await,
        403
    );

    let response = http(
        &server,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("content-type: application/openmetrics-text"));
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(sample(body, "switchboard_connections"), 2.0);
    assert_eq!(sample(body, "switchboard_handshakes_accepted_total"), 2.0);
    assert_eq!(
        sample(
            body,
            r#"switchboard_handshakes_refused_total{cause="forbidden"}"#
        ),
        1.0
    );
    assert_eq!(sample(body, "switchboard_messages_received_total"), 1.0);
    // Joins' history and presence, and the message to both: at least 2 + 2 sent.
    assert!(sample(body, "switchboard_messages_sent_total") >= 4.0);
    // The room, and each user's own group (private messages).
    assert_eq!(sample(body, "switchboard_layer_groups"), 3.0);
    assert_eq!(sample(body, "switchboard_layer_memberships"), 4.0);
    assert_eq!(
        sample(
            body,
            r#"switchboard_layer_dropped_total{reason="channel_full"}"#
        ),
        0.0
    );
}

/// Checks that a private message from `from` to `to` arrived as one, with the right fields.
fn assert_private(got: &Value, from: &str, to: &str, text: &str) {
    assert_eq!(got["message"], text, "{got}");
    assert_eq!(got["user"], from, "{got}");
    assert_eq!(got["private"], true, "{got}");
    assert_eq!(got["to"], to, "{got}");
    assert!(
        got.get("id").is_none(),
        "private messages are not in the history: {got}"
    );
}

#[tokio::test]
async fn a_private_message_reaches_every_tab_of_its_recipient_and_the_sender_only() {
    let server = chat_server().await;
    let (mut ada, ..) = join(&server, "lobby", "ada").await;
    let (mut ada_elsewhere, ..) = join(&server, "kitchen", "ada").await;
    let (mut bob, ..) = join(&server, "lobby", "bob").await;
    let (mut bob_elsewhere, ..) = join(&server, "kitchen", "bob").await;
    let (mut eve, ..) = join(&server, "lobby", "eve").await;

    send_json(&mut ada, &json!({ "message": "psst", "to": "bob" })).await;
    for client in [&mut bob, &mut bob_elsewhere, &mut ada, &mut ada_elsewhere] {
        assert_private(&next_message(client).await, "ada", "bob", "psst");
    }
    // eve, in the same room, sees the next public message and never the private one.
    send_json(&mut bob, &json!({ "message": "public" })).await;
    let got = next_message(&mut eve).await;
    assert_eq!(got["message"], "public", "eve got {got}");
    assert!(got.get("private").is_none());

    // To nobody online: an error to the sender alone, nothing sent.
    send_json(&mut ada, &json!({ "message": "hello?", "to": "nobody" })).await;
    let error = loop {
        let got = next_message(&mut ada).await;
        if got.get("error").is_some() {
            break got;
        }
    };
    assert_eq!(error["error"], "nobody is not online");
    // A late joiner's history holds the public message, not the private one.
    let (_late, history, _) = join(&server, "lobby", "late").await;
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["public"]);
}

#[tokio::test]
async fn a_private_message_crosses_processes_through_redis() {
    let redis = RedisServer::start().await;
    let one = chat_server_on_redis(&redis.url()).await;
    let two = chat_server_on_redis(&redis.url()).await;
    let (mut ada, ..) = join(&one, "lobby", "ada").await;
    let (mut ada_on_two, ..) = join(&two, "kitchen", "ada").await;
    let (mut bob, ..) = join(&two, "lobby", "bob").await;
    let (mut bob_on_one, ..) = join(&one, "attic", "bob").await;

    // bob's name is held by his page's key on every process.
    for server in [&one, &two] {
        assert_name_taken(server, "bob").await;
    }
    send_json(&mut ada, &json!({ "message": "across", "to": "bob" })).await;
    for client in [&mut bob, &mut bob_on_one, &mut ada, &mut ada_on_two] {
        assert_private(&next_message(client).await, "ada", "bob", "across");
    }
    // Redis' PUBLISH count tells a user with no connection on any process.
    send_json(&mut bob, &json!({ "message": "hi?", "to": "carol" })).await;
    let got = next_message(&mut bob).await;
    assert_eq!(got["error"], "carol is not online", "{got}");
    // Once bob's tabs are gone, he is offline for everyone.
    for client in [&mut bob, &mut bob_on_one] {
        client.close(None).await.unwrap();
    }
    drop((bob, bob_on_one));
    let error = within(async {
        loop {
            send_json(&mut ada, &json!({ "message": "still there?", "to": "bob" })).await;
            let got = next_message(&mut ada).await;
            if got.get("error").is_some() {
                return got;
            }
        }
    })
    .await;
    assert_eq!(error["error"], "bob is not online");
}

/// `ada` joins the lobby on `server`, sees two of `bob`'s messages and goes; `bob` says ten more.
/// Returns where she was (`<epoch>:<offset>` of the last message she saw).
async fn ada_misses_ten(server: &TestServer, bob: &mut Client) -> String {
    let (mut ada, ..) = join(server, "lobby", "ada").await;
    let mut since = String::new();
    for n in 1..=2 {
        send_json(bob, &json!({ "message": format!("seen {n}") })).await;
        assert_eq!(next_message(bob).await["message"], format!("seen {n}"));
        let got = next_message(&mut ada).await;
        assert_eq!(got["message"], format!("seen {n}"));
        let position = &got["position"];
        since = format!(
            "{}:{}",
            position["epoch"].as_str().unwrap(),
            position["offset"]
        );
    }
    drop(ada);
    for n in 1..=10 {
        send_json(bob, &json!({ "message": format!("missed {n}") })).await;
        assert_eq!(next_message(bob).await["message"], format!("missed {n}"));
    }
    since
}

/// `ada` comes back on `server` from `since`: exactly the ten she missed, in order, no history,
/// then live messages.
async fn ada_comes_back(server: &TestServer, since: &str, bob: &mut Client) {
    let (mut ada, missed, _, recovery) = rejoin(server, "lobby", "ada", Some(since)).await;
    let texts: Vec<&str> = missed
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (1..=10).map(|n| format!("missed {n}")).collect();
    assert_eq!(texts, want, "exactly what was missed, in order");
    assert!(missed.iter().all(|m| m.get("history").is_none()));
    assert_eq!(
        (
            &recovery["asked"],
            &recovery["recovered"],
            &recovery["missed"]
        ),
        (&json!(true), &json!(true), &json!(10))
    );
    send_json(bob, &json!({ "message": "live again" })).await;
    let live = next_message(&mut ada).await;
    assert_eq!(live["message"], "live again", "nothing twice before it");
}

#[tokio::test]
async fn a_page_that_comes_back_gets_exactly_what_it_missed() {
    let server = chat_server().await;
    let (mut bob, ..) = join(&server, "lobby", "bob").await;
    let since = ada_misses_ten(&server, &mut bob).await;
    ada_comes_back(&server, &since, &mut bob).await;
    // A position the room's stream cannot serve (another epoch): the history instead.
    let (_, history, _, recovery) = rejoin(&server, "lobby", "ada", Some("gone:3")).await;
    assert_eq!(recovery["recovered"], false);
    assert_eq!(history.len(), 13);
    assert!(history.iter().all(|m| m["history"] == true));
}

#[tokio::test]
async fn a_page_whose_process_restarted_recovers_from_redis() {
    let redis = RedisServer::start().await;
    let one = chat_server_on_redis(&redis.url()).await;
    let (mut bob, ..) = join(&one, "lobby", "bob").await;
    let two = chat_server_on_redis(&redis.url()).await;
    let since = ada_misses_ten(&two, &mut bob).await;
    two.shutdown().await;
    let two_again = chat_server_on_redis(&redis.url()).await;
    ada_comes_back(&two_again, &since, &mut bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_servers_share_rooms_through_a_redis_cluster() {
    let cluster = common::redis_cluster::RedisCluster::start(3, 0).await;
    let one = chat_server_on_cluster(&cluster.urls()).await;
    let two = chat_server_on_cluster(&cluster.urls()[1..2]).await; // one seed is enough
    let (mut bob, ..) = join(&one, "lobby", "bob").await;
    let (mut cat, _, online) = join(&two, "lobby", "cat").await;
    assert_eq!(online, ["bob", "cat"], "presence spans both servers");
    send_json(&mut cat, &json!({ "message": "from two" })).await;
    assert_eq!(next_message(&mut bob).await["message"], "from two");
    assert_eq!(next_message(&mut cat).await["message"], "from two");
    // Rooms on every shard: each reaches its members on the other server.
    for n in 0..6 {
        let room = format!("room{n}");
        let (mut here, ..) = join(&one, &room, "here").await;
        let (mut there, ..) = join(&two, &room, "there").await;
        send_json(&mut here, &json!({ "message": room })).await;
        assert_eq!(next_message(&mut there).await["message"], room);
    }
    // A page whose process restarted recovers from the room's stream on the cluster.
    let since = ada_misses_ten(&two, &mut bob).await;
    two.shutdown().await;
    let two_again = chat_server_on_cluster(&cluster.urls()).await;
    ada_comes_back(&two_again, &since, &mut bob).await;
    // The history, written through both, is shared.
    let (_, history, _) = join(&one, "lobby", "dan").await;
    assert_eq!(history.len(), 14, "from two, 2 seen, 10 missed, live again");
}
