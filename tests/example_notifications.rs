//! The notifications example (`examples/notifications/`), over real sockets: signing in with a
//! signed cookie, the auth middleware refusing the rest, and `POST /notify/{user}` reaching every
//! tab of one user across two processes on a real Redis, reads marked in every tab.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/notifications/main.rs"]
mod notifications;

use common::redis_server::RedisServer;
use common::{
    handshake_status, http_raw, post_json, recv_json, send_json, within, Client, TestServer,
};
use serde_json::{json, Value};
use switchboard::layer::{RedisChannelLayer, RedisConfig};
use switchboard::ServerConfig;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "a secret both processes share, long enough";

async fn process(redis: &RedisServer) -> TestServer {
    let layer = RedisChannelLayer::connect(RedisConfig::new(redis.url()))
        .await
        .unwrap();
    let app = notifications::application(notifications::Sessions::new(Some(SECRET)));
    TestServer::start_with(app, layer, ServerConfig::default()).await
}

/// Signs in as `name` and returns the `session` cookie's value.
async fn sign_in(server: &TestServer, name: &str) -> String {
    let response = post_json(server.addr, "/login", &json!({ "name": name })).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let line = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: session="))
        .expect("a session cookie");
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    line["set-cookie: session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn request(server: &TestServer, cookie: Option<&str>) -> http::Request<()> {
    let mut request = server
        .url("/ws/notifications/")
        .into_client_request()
        .unwrap();
    if let Some(cookie) = cookie {
        let value = format!("session={cookie}").parse().unwrap();
        request.headers_mut().insert("cookie", value);
    }
    request
}

/// A tab of the user whose session is `cookie`; returns it once it said who it is.
async fn tab(server: &TestServer, cookie: &str, name: &str) -> Client {
    let (mut client, _) = within(tokio_tungstenite::connect_async(request(
        server,
        Some(cookie),
    )))
    .await
    .unwrap();
    assert_eq!(recv_json(&mut client).await, json!({ "user": name }));
    client
}

async fn me(server: &TestServer, cookie: &str) -> String {
    let request = format!(
        "GET /me HTTP/1.1\r\nHost: x\r\nCookie: session={cookie}\r\nConnection: close\r\n\r\n"
    );
    http_raw(server.addr, &request).await
}

#[tokio::test]
async fn only_signed_in_users_get_a_socket_and_the_signature_is_checked() {
    let redis = RedisServer::start().await;
    let server = process(&redis).await;
    let ada = sign_in(&server, "ada").await;
    assert!(me(&server, &ada).await.ends_with(r#"{"name":"ada"}"#));
    // The cookie's value is the name and its signature: a name alone, or another's, is nobody.
    for forged in ["ada", "bob", &ada.replacen("ada", "bob", 1), ""] {
        assert!(
            me(&server, forged).await.starts_with("HTTP/1.1 401"),
            "{forged}"
        );
        assert_eq!(
            handshake_status(request(&server, Some(forged))).await,
            401,
            "{forged}"
        );
    }
    assert_eq!(handshake_status(request(&server, None)).await, 401);
    for bad in ["", " ", &"x".repeat(33)] {
        let response = post_json(server.addr, "/login", &json!({ "name": bad })).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    }
    drop(tab(&server, &ada, "ada").await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_notification_reaches_every_tab_of_its_user_on_any_process_and_reads_follow() {
    let redis = RedisServer::start().await;
    let one = process(&redis).await;
    let two = process(&redis).await;
    let ada = sign_in(&one, "ada").await;
    let bob = sign_in(&two, "bob").await;
    let mut ada_one = tab(&one, &ada, "ada").await;
    let mut ada_two = tab(&two, &ada, "ada").await; // signed by one, known by two
    let mut bob_one = tab(&one, &bob, "bob").await;

    let note = json!({ "title": "Build <b>42</b>", "body": "passed" });
    let response = post_json(two.addr, "/notify/ada", &note).await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    let id: Value = serde_json::from_str(response.rsplit("\r\n").next().unwrap()).unwrap();
    let id = id["id"].as_str().unwrap().to_owned();
    for tab in [&mut ada_one, &mut ada_two] {
        assert_eq!(
            recv_json(tab).await,
            json!({ "id": id, "title": "Build <b>42</b>", "body": "passed" })
        );
    }
    // Read in one tab: every tab of ada hears it.
    send_json(&mut ada_two, &json!({ "read": id })).await;
    for tab in [&mut ada_one, &mut ada_two] {
        assert_eq!(recv_json(tab).await, json!({ "read": id }));
    }
    // bob got none of ada's: his next frame is his own notification.
    let response = post_json(one.addr, "/notify/bob", &json!({ "title": "Hi bob" })).await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    assert_eq!(recv_json(&mut bob_one).await["title"], "Hi bob");

    // Nobody by that name has a tab open, on any process: 404. Bad input: 400.
    let response = post_json(one.addr, "/notify/carol", &note).await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = post_json(one.addr, "/notify/ada", &json!({ "title": "" })).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    drop((ada_one, ada_two, bob_one));
    one.shutdown().await;
    two.shutdown().await;
}
