//! The chat example, over real sockets: rooms, echo to the sender, fan-out order, bad input, and
//! leaving groups when clients go.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat/main.rs"]
mod chat;

use std::collections::HashMap;

use common::{disconnected, notes, recv_json, send_json, within, Note, Observed, TestServer};
use futures_util::SinkExt;
use serde_json::json;
use switchboard::layer::{ChannelLayer, InMemoryChannelLayer};
use switchboard::routing::{ProtocolTypeRouter, URLRouter};
use switchboard::websocket::close_code;
use switchboard::ServerConfig;
use tokio_tungstenite::tungstenite;

async fn chat_server() -> TestServer {
    TestServer::start(chat::application()).await
}

#[tokio::test]
async fn the_sender_gets_its_own_message_with_user_and_time() {
    let server = chat_server().await;
    let mut alice = server.connect("/ws/chat/lobby/").await;
    send_json(&mut alice, &json!({ "message": "hello", "user": "alice" })).await;
    let got = recv_json(&mut alice).await;
    assert_eq!(got["message"], "hello");
    assert_eq!(got["user"], "alice");
    assert!(got["time"].as_u64().unwrap() > 0);
    // The Channels tutorial's client sends only "message".
    send_json(&mut alice, &json!({ "message": "again" })).await;
    let got = recv_json(&mut alice).await;
    assert_eq!(got["message"], "again");
    assert_eq!(got["user"], "anonymous");
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = chat_server().await;
    let mut red1 = server.connect("/ws/chat/red/").await;
    let mut red2 = server.connect("/ws/chat/red/").await;
    let mut blue = server.connect("/ws/chat/blue/").await;
    send_json(&mut red1, &json!({ "message": "for red" })).await;
    send_json(&mut blue, &json!({ "message": "for blue" })).await;
    assert_eq!(recv_json(&mut red1).await["message"], "for red");
    assert_eq!(recv_json(&mut red2).await["message"], "for red");
    assert_eq!(recv_json(&mut blue).await["message"], "for blue");
    // Had "for red" leaked to blue, or "for blue" to red, it would be the next message.
    send_json(&mut red2, &json!({ "message": "red again" })).await;
    send_json(&mut blue, &json!({ "message": "blue again" })).await;
    assert_eq!(recv_json(&mut red1).await["message"], "red again");
    assert_eq!(recv_json(&mut red2).await["message"], "red again");
    assert_eq!(recv_json(&mut blue).await["message"], "blue again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_receive_every_message_in_per_sender_order() {
    const CLIENTS: usize = 50;
    const SENDERS: usize = 5;
    const PER_SENDER: usize = 20;
    let server = chat_server().await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(server.connect("/ws/chat/crowd/").await);
    }
    let (senders, listeners) = clients.split_at_mut(SENDERS);
    let mut tasks = Vec::new();
    // Each sender sends its next message once its previous one came back (closed loop), so the
    // room is never more than SENDERS messages behind and no channel fills up.
    for (s, client) in senders.iter_mut().enumerate() {
        let mut client = std::mem::replace(client, server.connect("/ws/chat/unused/").await);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut sent = 0;
            send_json(&mut client, &json!({ "message": format!("{s}:{sent}") })).await;
            while seen.len() < SENDERS * PER_SENDER {
                let got = recv_json(&mut client).await;
                let text = got["message"].as_str().unwrap().to_owned();
                if text == format!("{s}:{sent}") && sent + 1 < PER_SENDER {
                    sent += 1;
                    send_json(&mut client, &json!({ "message": format!("{s}:{sent}") })).await;
                }
                seen.push(text);
            }
            seen
        }));
    }
    for client in listeners.iter_mut() {
        let mut client = std::mem::replace(client, server.connect("/ws/chat/unused/").await);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < SENDERS * PER_SENDER {
                seen.push(
                    recv_json(&mut client).await["message"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
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
    let stats = server.layer.stats();
    assert_eq!(stats.dropped_full, 0);
    assert_eq!(stats.queued, (CLIENTS * SENDERS * PER_SENDER) as u64);
}

#[tokio::test]
async fn malformed_input_gets_an_error_and_the_connection_carries_on() {
    let server = chat_server().await;
    let mut client = server.connect("/ws/chat/lobby/").await;
    client
        .send(tungstenite::Message::text("{not json"))
        .await
        .unwrap();
    let error = recv_json(&mut client).await;
    assert!(
        error["error"].as_str().unwrap().contains("invalid message"),
        "{error}"
    );
    send_json(&mut client, &json!({ "text": "wrong field" })).await;
    assert!(recv_json(&mut client).await["error"].is_string());
    client
        .send(tungstenite::Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert!(recv_json(&mut client).await["error"]
        .as_str()
        .unwrap()
        .contains("binary"));
    send_json(&mut client, &json!({ "message": "   " })).await;
    assert_eq!(recv_json(&mut client).await["error"], "empty message");
    send_json(&mut client, &json!({ "message": "still here" })).await;
    assert_eq!(recv_json(&mut client).await["message"], "still here");
}

#[tokio::test]
async fn unknown_paths_and_bad_rooms_are_refused() {
    let server = chat_server().await;
    assert_eq!(server.handshake_status("/ws/nowhere/").await, 404);
    assert_eq!(server.handshake_status("/ws/chat/").await, 404);
    assert_eq!(server.handshake_status("/ws/chat/bad%20room/").await, 403);
    assert_eq!(server.handshake_status("/chat/lobby/").await, 404); // pages are not WebSockets
}

#[tokio::test]
async fn pages_are_served_by_axum_on_the_same_port() {
    let server = chat_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let page = http_get(&mut stream, "/chat/lobby/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("new WebSocket("));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let page = http_get(&mut stream, "/").await;
    assert!(page.contains("<form id=\"pick\""));
}

async fn http_get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within(stream.read_to_string(&mut response)).await.unwrap();
    response
}

/// The chat consumer, observed: the same consumer the example routes, plus lifecycle notes.
fn observed_chat() -> (ProtocolTypeRouter, tokio::sync::mpsc::Receiver<Note>) {
    let (tx, rx) = notes();
    let app = ProtocolTypeRouter::new().websocket(
        URLRouter::new().route("/ws/chat/{room}/", move || {
            Observed::new(chat::ChatConsumer::default(), tx.clone())
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
    let stays = server.connect("/ws/chat/other/").await;
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
    drop(stays);
}
