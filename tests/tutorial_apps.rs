//! The four apps of the Channels tutorials the embedding trial wrote, written again against the
//! public docs alone and run over real sockets: location sharing; a sensor dashboard fed by
//! sensors and by `POST /sensors/{id}`, also served as server-sent events; broadcast and private
//! messages between token-authenticated users; per-user notifications from `POST /notify/{user}`
//! across two processes on Redis.

mod common;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::{Extension, Json};
use common::redis_server::RedisServer;
use common::{get, handshake_status, post_json, recv_json, send_json, within, Client, EventReader};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::consumer::{Context, InvalidMessage, JsonWebSocketConsumer};
use switchboard::layer::{user_group, LayerHandle, RedisChannelLayer, RedisConfig};
use switchboard::middleware::{authenticator_fn, AuthMiddleware, TokenSource};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::sse::{self, SseConsumer, SseContext, SseEvent};
use switchboard::testing::TestServer;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn connect(server: &TestServer, path: &str) -> Client {
    common::connect_to(server.addr(), path).await
}

// ---- 1. Location sharing -------------------------------------------------------------------

#[derive(Default)]
struct LocationConsumer;

#[derive(Deserialize)]
struct Position {
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "location.update")]
struct LocationUpdate {
    latitude: f64,
    longitude: f64,
    channel: String,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for LocationConsumer {
    type Incoming = Position;
    type Event = LocationUpdate;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("locations").await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, at: Position) -> switchboard::Result<()> {
        if !(-90.0..=90.0).contains(&at.latitude) || !(-180.0..=180.0).contains(&at.longitude) {
            ctx.send_json(&json!({ "error": "latitude or longitude out of range" }))
                .await?;
            return Ok(());
        }
        let update = LocationUpdate {
            latitude: at.latitude,
            longitude: at.longitude,
            channel: ctx.channel_name().to_owned(),
        };
        ctx.group_send("locations", &update).await?;
        Ok(())
    }

    /// Input that is not a position: an error frame, and the connection carries on (the default
    /// closes with 1007).
    async fn invalid_message(
        &mut self,
        ctx: &mut Context,
        error: InvalidMessage,
    ) -> switchboard::Result<()> {
        ctx.send_json(&json!({ "error": error.to_string() }))
            .await?;
        Ok(())
    }

    async fn event(
        &mut self,
        ctx: &mut Context,
        update: LocationUpdate,
    ) -> switchboard::Result<()> {
        ctx.send_json(&json!({
            "latitude": update.latitude,
            "longitude": update.longitude,
            "from": update.channel,
        }))
        .await?;
        Ok(())
    }
}

#[tokio::test]
async fn location_sharing() {
    let app = UrlRouter::new().route("/ws/location/", LocationConsumer::default);
    let server = TestServer::start(app).await.unwrap();
    let mut alice = connect(&server, "/ws/location/").await;
    let mut bob = connect(&server, "/ws/location/").await;

    send_json(&mut alice, &json!({ "latitude": 48.85, "longitude": 2.35 })).await;
    for client in [&mut alice, &mut bob] {
        let got = recv_json(client).await;
        assert_eq!(
            (got["latitude"].as_f64(), got["longitude"].as_f64()),
            (Some(48.85), Some(2.35))
        );
    }
    // Bad input gets an error frame and the connection carries on.
    send_json(&mut bob, &json!({ "latitude": 123.0, "longitude": 0.0 })).await;
    assert!(recv_json(&mut bob).await["error"].is_string());
    send_json(&mut bob, &json!({ "latitude": "north" })).await;
    assert!(recv_json(&mut bob).await["error"].is_string());
    send_json(&mut bob, &json!({ "latitude": -33.9, "longitude": 18.4 })).await;
    assert_eq!(recv_json(&mut alice).await["latitude"], -33.9);
}

// ---- 2. Sensor dashboard: sensors, POST /sensors/{id}, GET /events -------------------------

#[derive(Default)]
struct SensorDataConsumer;

#[derive(Deserialize)]
struct Reading {
    sensor_id: String,
    sensor_value: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "sensor.reading")]
struct SensorReading {
    sensor_id: String,
    sensor_value: f64,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for SensorDataConsumer {
    type Incoming = Reading;
    type Event = SensorReading;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        ctx.group_add("sensors").await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, r: Reading) -> switchboard::Result<()> {
        let reading = SensorReading {
            sensor_id: r.sensor_id,
            sensor_value: r.sensor_value,
        };
        ctx.group_send("sensors", &reading).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, r: SensorReading) -> switchboard::Result<()> {
        ctx.send_json(&json!({ "sensor_id": r.sensor_id, "sensor_value": r.sensor_value }))
            .await?;
        Ok(())
    }
}

/// The same stream as server-sent events.
struct SensorStream;

#[switchboard::async_trait]
impl SseConsumer for SensorStream {
    type Event = SensorReading;

    async fn connect(&mut self, ctx: &mut SseContext) -> switchboard::Result<()> {
        ctx.group_add("sensors").await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut SseContext, r: SensorReading) -> switchboard::Result<()> {
        let data = json!({ "sensor_id": r.sensor_id, "sensor_value": r.sensor_value });
        ctx.send(SseEvent::json(&data)?.event("reading")).await?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct PostedValue {
    value: f64,
}

/// `POST /sensors/{id}` for devices that cannot hold a socket.
async fn post_reading(
    Path(sensor_id): Path<String>,
    Extension(layer): Extension<LayerHandle>,
    Json(body): Json<PostedValue>,
) -> StatusCode {
    let reading = SensorReading {
        sensor_id,
        sensor_value: body.value,
    };
    match layer.group_send("sensors", &reading).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::test]
async fn sensor_dashboard_fed_by_sensors_and_http_and_served_as_events() {
    let http = axum::Router::new()
        .route("/sensors/{id}", axum::routing::post(post_reading))
        .route(
            "/events",
            axum::routing::get(
                |Extension(layer): Extension<LayerHandle>, parts: http::request::Parts| async move {
                    sse::respond(SensorStream, &parts, layer).await
                },
            ),
        );
    let app = ProtocolTypeRouter::new()
        .http(http)
        .websocket(UrlRouter::new().route("/ws/sensor_data/", SensorDataConsumer::default));
    let server = TestServer::start(app).await.unwrap();
    let mut dashboard = connect(&server, "/ws/sensor_data/").await;
    let mut sensor = connect(&server, "/ws/sensor_data/").await;
    let mut events = EventReader::open(server.addr(), "/events").await;

    send_json(
        &mut sensor,
        &json!({ "sensor_id": "t1", "sensor_value": 21.5 }),
    )
    .await;
    let got = recv_json(&mut dashboard).await;
    assert_eq!(
        (got["sensor_id"].as_str(), got["sensor_value"].as_f64()),
        (Some("t1"), Some(21.5))
    );
    let posted = post_json(server.addr(), "/sensors/h7", &json!({ "value": 0.4 })).await;
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    let got = recv_json(&mut dashboard).await;
    assert_eq!(
        (got["sensor_id"].as_str(), got["sensor_value"].as_f64()),
        (Some("h7"), Some(0.4))
    );
    // The event stream saw both, in order.
    assert!(events.next_data().await.contains(r#""sensor_id":"t1""#));
    assert!(events.next_data().await.contains(r#""sensor_id":"h7""#));
}

// ---- 3. Broadcast and private messages between token-authenticated users --------------------

#[derive(Clone)]
struct User {
    name: String,
}

#[derive(Default)]
struct MessagesConsumer {
    user: String,
}

#[derive(Deserialize)]
struct Say {
    text: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "chat.said")]
struct Said {
    from: String,
    text: String,
    private: bool,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for MessagesConsumer {
    type Incoming = Say;
    type Event = Said;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let Some(user) = ctx.scope().extensions.get::<User>().cloned() else {
            ctx.close(4001, "sign in").await?;
            return Ok(());
        };
        self.user = user.name;
        ctx.group_add("everyone").await?;
        ctx.group_add(&user_group(&self.user)).await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, say: Say) -> switchboard::Result<()> {
        let Some(to) = say.to else {
            let said = Said {
                from: self.user.clone(),
                text: say.text,
                private: false,
            };
            ctx.group_send("everyone", &said).await?;
            return Ok(());
        };
        let said = Said {
            from: self.user.clone(),
            text: say.text,
            private: true,
        };
        if !ctx
            .group_send(&user_group(&to), &said)
            .await?
            .reached_anyone()
        {
            ctx.send_json(&json!({ "error": format!("{to} is not online") }))
                .await?;
        } else if to != self.user {
            ctx.group_send(&user_group(&self.user), &said).await?;
        }
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, said: Said) -> switchboard::Result<()> {
        ctx.send_json(&json!({ "from": said.from, "text": said.text, "private": said.private }))
            .await?;
        Ok(())
    }
}

async fn connect_with_token(server: &TestServer, token: &str) -> Client {
    let mut request = server
        .ws_url("/ws/messages/")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (client, response) = within(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    client
}

#[tokio::test]
async fn broadcast_and_private_messages_between_authenticated_users() {
    let tokens = authenticator_fn(|token: String| async move {
        let name = match token.as_str() {
            "t-ada" => "ada",
            "t-bob" => "bob",
            "t-eve" => "eve",
            _ => return Ok(None),
        };
        Ok(Some(User {
            name: name.to_owned(),
        }))
    });
    let app = AuthMiddleware::new(
        UrlRouter::new().route("/ws/messages/", MessagesConsumer::default),
        tokens,
    )
    .token_sources([TokenSource::bearer()])
    .allow_anonymous(false);
    let server = TestServer::start(app).await.unwrap();
    assert_eq!(handshake_status(server.ws_url("/ws/messages/")).await, 401);

    let mut ada = connect_with_token(&server, "t-ada").await;
    let mut bob = connect_with_token(&server, "t-bob").await;
    let mut bob_again = connect_with_token(&server, "t-bob").await;
    let mut eve = connect_with_token(&server, "t-eve").await;

    send_json(&mut ada, &json!({ "text": "hello all" })).await;
    for client in [&mut ada, &mut bob, &mut bob_again, &mut eve] {
        assert_eq!(
            recv_json(client).await,
            json!({ "from": "ada", "text": "hello all", "private": false })
        );
    }
    send_json(&mut ada, &json!({ "text": "psst", "to": "bob" })).await;
    for client in [&mut bob, &mut bob_again, &mut ada] {
        assert_eq!(
            recv_json(client).await,
            json!({ "from": "ada", "text": "psst", "private": true })
        );
    }
    send_json(&mut eve, &json!({ "text": "still public" })).await;
    let next = recv_json(&mut eve).await;
    assert_eq!(
        next["text"], "still public",
        "eve never saw the private message: {next}"
    );
    send_json(&mut eve, &json!({ "text": "hi", "to": "zed" })).await;
    assert_eq!(recv_json(&mut eve).await["error"], "zed is not online");
}

// ---- 4. Per-user notifications from POST /notify/{user}, across two processes on Redis -------

#[derive(Default)]
struct NotificationsConsumer;

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "notification")]
struct Notification {
    title: String,
    body: String,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for NotificationsConsumer {
    type Incoming = serde::de::IgnoredAny;
    type Event = Notification;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        // A real app takes the user from its auth middleware; here the query names it.
        let Some(user) = ctx.scope().query_param("user") else {
            ctx.close(4001, "who are you?").await?;
            return Ok(());
        };
        ctx.group_add(&user_group(&user)).await?;
        ctx.accept().await?;
        Ok(())
    }

    async fn receive_json(
        &mut self,
        _: &mut Context,
        _: serde::de::IgnoredAny,
    ) -> switchboard::Result<()> {
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, n: Notification) -> switchboard::Result<()> {
        ctx.send_json(&json!({ "title": n.title, "body": n.body }))
            .await?;
        Ok(())
    }
}

/// `POST /notify/{user}`: 202 when some tab of the user got it (on any process), 404 otherwise.
async fn notify(
    Path(user): Path<String>,
    Extension(layer): Extension<LayerHandle>,
    Json(notification): Json<Notification>,
) -> StatusCode {
    match layer.group_send(&user_group(&user), &notification).await {
        Ok(sent) if sent.reached_anyone() => StatusCode::ACCEPTED,
        Ok(_) => StatusCode::NOT_FOUND,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn notifications_process(redis: &RedisServer) -> TestServer {
    let app = ProtocolTypeRouter::new()
        .http(axum::Router::new().route("/notify/{user}", axum::routing::post(notify)))
        .websocket(UrlRouter::new().route("/ws/notifications/", NotificationsConsumer::default));
    let layer = RedisChannelLayer::connect(RedisConfig::new(redis.url()))
        .await
        .unwrap();
    TestServer::builder(app)
        .channel_layer(layer)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn per_user_notifications_across_two_processes_on_redis() {
    let redis = RedisServer::start().await;
    let one = notifications_process(&redis).await;
    let two = notifications_process(&redis).await;
    let mut ada_tab_one = connect(&one, "/ws/notifications/?user=ada").await;
    let mut ada_tab_two = connect(&two, "/ws/notifications/?user=ada").await;
    let mut bob = connect(&one, "/ws/notifications/?user=bob").await;

    let note = json!({ "title": "Build", "body": "passed", "type": "notification" });
    // Posted to process two, it reaches ada's tabs on both processes, and not bob.
    let response = post_json(two.addr(), "/notify/ada", &note).await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    for tab in [&mut ada_tab_one, &mut ada_tab_two] {
        assert_eq!(
            recv_json(tab).await,
            json!({ "title": "Build", "body": "passed" })
        );
    }
    let response = post_json(one.addr(), "/notify/bob", &note).await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    assert_eq!(recv_json(&mut bob).await["title"], "Build");

    // Nobody by that name on any process: 404.
    let response = post_json(one.addr(), "/notify/carol", &note).await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(get(one.addr(), "/nowhere")
        .await
        .starts_with("HTTP/1.1 404"));
}
