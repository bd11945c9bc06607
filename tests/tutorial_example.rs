//! `examples/tutorial.rs` (the Channels tutorial's consumer), over real sockets: the room page,
//! a message to everyone in the room and the sender, rooms kept apart, and the group left when a
//! client goes.

mod common;

#[allow(dead_code)]
#[path = "../examples/tutorial.rs"]
mod tutorial;

use common::{get, recv_json, send_json, TestServer};
use serde_json::json;
use switchboard::layer::ChannelLayer;

#[tokio::test]
async fn the_tutorial_chat_works_as_the_tutorial_says() {
    let server = TestServer::start(tutorial::application()).await;
    let page = get(server.addr, "/chat/lobby/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("chat-message-input"));

    let mut ada = server.connect("/ws/chat/lobby/").await;
    let mut bob = server.connect("/ws/chat/lobby/").await;
    let mut eve = server.connect("/ws/chat/elsewhere/").await;
    send_json(&mut ada, &json!({ "message": "hello" })).await;
    assert_eq!(recv_json(&mut ada).await, json!({ "message": "hello" }));
    assert_eq!(recv_json(&mut bob).await, json!({ "message": "hello" }));
    send_json(&mut eve, &json!({ "message": "only here" })).await;
    assert_eq!(recv_json(&mut eve).await, json!({ "message": "only here" }));
    send_json(&mut bob, &json!({ "message": "back" })).await;
    assert_eq!(
        recv_json(&mut ada).await,
        json!({ "message": "back" }),
        "nothing from elsewhere"
    );

    // Leaving: the group keeps only who is connected.
    drop(bob);
    drop(eve);
    common::within(async {
        while server.layer.stats().memberships != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(ada);
    server.shutdown().await;
}
