//! The deployment of docs/deployment.md, run for real: nginx (Debian package; `.ci/run` installs
//! it) started on a free port with `deploy/nginx.conf` — its ports and proxy timeout replaced, and
//! nothing else — in front of two chat processes that share rooms through a real redis-server.
//! Clients from two source addresses land on different processes, chat across them, see their own
//! address in the scope through `X-Forwarded-For`, and outlive nginx's `proxy_read_timeout`
//! thanks to the server's pings.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat/main.rs"]
mod chat;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{recv_json, send_json, within, Client, TestServer};
use serde_json::json;
use switchboard::application::{BoxFuture, Handshake, WebSocketApplication};
use switchboard::layer::{RedisChannelLayer, RedisConfig};
use switchboard::routing::ProtocolTypeRouter;
use switchboard::ServerConfig;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Notes the client address of every handshake, then hands it on.
struct SeenClients<A> {
    inner: A,
    seen: Arc<Mutex<Vec<SocketAddr>>>,
}

impl<A: WebSocketApplication> WebSocketApplication for SeenClients<A> {
    fn call(&self, handshake: Handshake) -> BoxFuture<()> {
        if let Some(client) = handshake.scope().client {
            self.seen.lock().unwrap().push(client);
        }
        self.inner.call(handshake)
    }
}

/// A chat process on Redis behind a proxy at 127.0.0.1, pinging every 500 ms.
async fn chat_process(redis: &str, seen: Arc<Mutex<Vec<SocketAddr>>>) -> TestServer {
    let history = chat::History::open(std::path::Path::new(":memory:"))
        .unwrap()
        .share_in(
            chat::SharedStore::connect(&[redis.to_owned()], false)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    let layer = RedisChannelLayer::connect(RedisConfig::new(redis))
        .await
        .unwrap();
    let app = ProtocolTypeRouter::new().websocket(SeenClients {
        inner: chat::websocket_app(history),
        seen,
    });
    let mut config = ServerConfig::from_vars([
        ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1"),
        ("SWITCHBOARD_PING_INTERVAL", "0.5"),
    ])
    .unwrap();
    config.pong_timeout = Duration::from_secs(5);
    TestServer::start_with(app, layer, config).await
}

/// nginx running `deploy/nginx.conf` with `replace`d lines, in a directory of its own.
struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers, which takes milliseconds;
        // waiting for it here leaves no worker behind.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_nginx(port: u16, replace: &[(&str, String)]) -> Nginx {
    let mut conf =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf")).unwrap();
    for (from, to) in replace {
        assert!(
            conf.contains(from),
            "deploy/nginx.conf no longer has {from:?}"
        );
        conf = conf.replace(from, to);
    }
    let dir = std::env::temp_dir().join(format!("switchboard-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = std::process::Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run nginx ({error}): install the Debian package nginx (.ci/run does)")
        });
    // Ready when its port accepts connections.
    within(async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Nginx { child, dir }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A chat client connecting from `source` (another loopback address) through nginx.
/// Joins `lobby` through nginx; returns the client and the history it was sent.
async fn join(proxy: u16, source: &str, name: &str) -> (Client, Vec<String>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{proxy}").parse().unwrap())
        .await
        .unwrap();
    let mut request =
        format!("ws://127.0.0.1:{proxy}/ws/chat/lobby/?name={name}&key=nginx-test-key-of-{name}")
            .into_client_request()
            .unwrap();
    request.headers_mut().insert(
        "origin",
        format!("http://127.0.0.1:{proxy}").parse().unwrap(),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut client, response) = within(tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    // The history, then the online list.
    let mut history = Vec::new();
    loop {
        let got = recv_json(&mut client).await;
        match got["type"].as_str() {
            Some("presence") => return (client, history),
            Some("message") => history.push(got["message"].as_str().unwrap_or("").to_owned()),
            _ => {}
        }
    }
}

async fn next_chat_message(client: &mut Client) -> serde_json::Value {
    loop {
        let got = recv_json(client).await;
        if got["type"] == "message" {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_behind_nginx_chat_see_real_addresses_and_outlive_proxy_timeouts() {
    let redis = RedisServer::start().await;
    let (seen_one, seen_two) = (Arc::default(), Arc::default());
    let one = chat_process(&redis.url(), Arc::clone(&seen_one)).await;
    let two = chat_process(&redis.url(), Arc::clone(&seen_two)).await;
    let proxy = free_port();
    let _nginx = start_nginx(
        proxy,
        &[
            ("listen 8080;", format!("listen 127.0.0.1:{proxy};")),
            ("server 127.0.0.1:8001;", format!("server {};", one.addr)),
            ("server 127.0.0.1:8002;", format!("server {};", two.addr)),
            (
                "proxy_read_timeout 75s;",
                "proxy_read_timeout 2s;".to_owned(),
            ),
        ],
    )
    .await;

    // Clients from 127.0.0.2, .3, ... until one is on each process. Each nginx worker takes
    // turns between the two (round robin), so three clients always cover both.
    let (mut on_one, mut on_two) = (None, None);
    for n in 2..5 {
        let source = format!("127.0.0.{n}");
        let (client, _) = join(proxy, &source, &format!("user{n}")).await;
        let seen_by_one = seen_one.lock().unwrap().last().copied();
        let landed_on_one = seen_by_one == Some(format!("{source}:0").parse().unwrap());
        // Each process saw the client's own address, not nginx's.
        let seen_by_two = seen_two.lock().unwrap().last().copied();
        assert!(
            landed_on_one || seen_by_two == Some(format!("{source}:0").parse().unwrap()),
            "{source} seen as {seen_by_one:?} / {seen_by_two:?}"
        );
        if landed_on_one && on_one.is_none() {
            on_one = Some(client);
        } else if !landed_on_one && on_two.is_none() {
            on_two = Some(client);
        }
        if on_one.is_some() && on_two.is_some() {
            break;
        }
    }
    let (mut ada, mut bob) = (
        on_one.expect("a client on process one"),
        on_two.expect("a client on process two"),
    );

    send_json(&mut ada, &json!({ "message": "through nginx" })).await;
    assert_eq!(
        next_chat_message(&mut bob).await["message"],
        "through nginx"
    );
    assert_eq!(
        next_chat_message(&mut ada).await["message"],
        "through nginx"
    );

    // Silence for longer than nginx's proxy_read_timeout (2 s here), which it applies to both
    // sides of an upgraded connection: the server's pings, and the pongs the clients answer
    // them with (as browsers do; our clients answer while they read), keep both sides open.
    let (ada_idle, bob_idle) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(3), recv_json(&mut ada)),
        tokio::time::timeout(Duration::from_secs(3), recv_json(&mut bob)),
    );
    assert!(
        ada_idle.is_err() && bob_idle.is_err(),
        "nothing arrives while idle"
    );
    send_json(&mut bob, &json!({ "message": "still here" })).await;
    assert_eq!(next_chat_message(&mut ada).await["message"], "still here");
    assert_eq!(next_chat_message(&mut bob).await["message"], "still here");

    // Process one stops (a deploy, SIGTERM): its client is closed with 1001, reconnects through
    // nginx, which passes it to process two, and finds in the history what was said meanwhile.
    // (Quickly: bob reads nothing meanwhile, and nginx's 2 s timeout runs for him too.)
    let (closed, ()) = tokio::join!(common::recv_close(&mut ada), one.shutdown());
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(1001));
    send_json(&mut bob, &json!({ "message": "while you were away" })).await;
    assert_eq!(
        next_chat_message(&mut bob).await["message"],
        "while you were away"
    );
    let (_ada_again, history) = join(proxy, "127.0.0.2", "ada").await;
    assert!(
        history.iter().any(|m| m == "while you were away"),
        "{history:?}"
    );
    assert_eq!(
        seen_two.lock().unwrap().last(),
        Some(&"127.0.0.2:0".parse().unwrap()),
        "the reconnection went to process two"
    );
}
