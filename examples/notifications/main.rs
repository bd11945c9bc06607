//! Per-user notifications: an HTTP call (a build finished, a payment came in) reaches every open
//! tab of one user, on any process, as a toast; reading it in one tab marks it read in all.
//!
//! ```text
//! cargo run --release --example notifications       # http://127.0.0.1:8000/, sign in as ada
//! curl -X POST -H 'content-type: application/json' -d '{"title": "Build", "body": "passed"}' \
//!      http://127.0.0.1:8000/notify/ada
//! cargo run --release --example notifications -- --redis redis://127.0.0.1:6379 --secret s3cret..
//! ```
//!
//! Signing in (`POST /login {"name": "ada"}`) sets a `session` cookie signed with the process's
//! key (`--secret`, shared by processes that share users; without it a random key, so sessions
//! end with the process). WebSocket `/ws/notifications/` needs that cookie (401 without: the
//! auth middleware); it then receives `{"user": "ada"}`, and each notification as `{"id": "..",
//! "title": "..", "body": ".."}`. A tab sends `{"read": "<id>"}`; every tab of that user then
//! receives `{"read": "<id>"}`. `POST /notify/{user}` with `{"title": .., "body": ..}` answers
//! 202 `{"id": ..}` when some tab of the user got it (with `--redis`, on any process) and 404
//! when the user has none open.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use clap::Parser;
use cookie::{Cookie, CookieJar, Key, SameSite};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::consumer::{Context, InvalidMessagePolicy, JsonWebSocketConsumer};
use switchboard::layer::{user_group, LayerHandle};
use switchboard::middleware::{authenticator_fn, AuthMiddleware, CookieMiddleware, TokenSource};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};

/// Who a connection is: put in the scope by the auth middleware.
#[derive(Clone)]
pub(crate) struct User {
    name: String,
}

/// Signs and checks the `session` cookie, which holds the user's name.
#[derive(Clone)]
pub(crate) struct Sessions(Arc<Key>);

impl Sessions {
    /// Sessions signed with a key made from `secret`, or with a random one.
    pub(crate) fn new(secret: Option<&str>) -> Self {
        use sha2::Digest;
        Self(Arc::new(match secret {
            Some(secret) => Key::from(&sha2::Sha512::digest(secret.as_bytes())),
            None => Key::generate(),
        }))
    }

    /// The `session` cookie's value for `name`.
    pub(crate) fn sign(&self, name: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.0)
            .add(Cookie::new("session", name.to_owned()));
        jar.get("session")
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// The name in a `session` cookie's value, if this process's key signed it.
    pub(crate) fn verify(&self, value: &str) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new("session", value.to_owned()));
        jar.signed(&self.0)
            .get("session")
            .map(|c| c.value().to_owned())
    }

    /// The name of the session in an HTTP request's cookies.
    fn user_of(&self, headers: &HeaderMap) -> Option<String> {
        let cookies = headers.get_all(header::COOKIE);
        cookies
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == "session")
            .and_then(|c| self.verify(c.value()))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.chars().count()) && !name.chars().any(char::is_control)
}

/// What a user's group carries: a notification, or that one was read.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum UserEvent {
    #[serde(rename = "notification")]
    Notification {
        id: String,
        title: String,
        body: String,
    },
    #[serde(rename = "notification.read")]
    Read { id: String },
}

/// What a tab sends: `{"read": "<id>"}`.
#[derive(Deserialize)]
pub(crate) struct MarkRead {
    read: String,
}

/// One tab of one user.
#[derive(Default)]
pub(crate) struct NotificationsConsumer {
    group: String,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for NotificationsConsumer {
    type Incoming = MarkRead;
    type Event = UserEvent;
    // A bad message gets `{"error": ..}` and the connection carries on.
    const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Reply;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        // The auth middleware let only signed-in users this far.
        let Some(user) = ctx.scope().extensions.get::<User>().cloned() else {
            ctx.close(4401, "sign in").await?;
            return Ok(());
        };
        self.group = user_group(&user.name);
        ctx.group_add(&self.group).await?;
        ctx.accept().await?;
        ctx.send_json(&json!({ "user": user.name })).await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, m: MarkRead) -> switchboard::Result<()> {
        ctx.group_send(&self.group, &UserEvent::Read { id: m.read })
            .await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: UserEvent) -> switchboard::Result<()> {
        match event {
            UserEvent::Notification { id, title, body } => {
                ctx.send_json(&json!({ "id": id, "title": title, "body": body }))
                    .await?;
            }
            UserEvent::Read { id } => ctx.send_json(&json!({ "read": id })).await?,
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Posted {
    title: String,
    #[serde(default)]
    body: String,
}

/// `POST /notify/{user}`: 202 and the notification's id when some tab of the user got it,
/// 404 when none is open.
async fn notify(
    Path(user): Path<String>,
    Extension(layer): Extension<LayerHandle>,
    Json(posted): Json<Posted>,
) -> Response {
    if !valid_name(&user)
        || !(1..=100).contains(&posted.title.chars().count())
        || posted.body.chars().count() > 1000
    {
        let error = "a user name, a title of 1 to 100 characters, a body of at most 1000";
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let event = UserEvent::Notification {
        id: id.clone(),
        title: posted.title,
        body: posted.body,
    };
    match layer.group_send(&user_group(&user), &event).await {
        Ok(sent) if sent.reached_anyone() => {
            (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response()
        }
        Ok(_) => {
            let error = format!("{user} has no open tab");
            (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

/// The `session` cookie for `value` (empty and expired: signed out).
fn session_cookie(value: String, max_age: cookie::time::Duration) -> String {
    Cookie::build(("session", value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(max_age)
        .build()
        .to_string()
}

/// The page, sign-in and out, who am I, `POST /notify/{user}`, and the WebSocket behind the
/// auth middleware.
pub(crate) fn application(sessions: Sessions) -> ProtocolTypeRouter {
    let login = {
        let sessions = sessions.clone();
        move |Json(login): Json<Login>| async move {
            let name = login.name.trim().to_owned();
            if !valid_name(&name) {
                return (StatusCode::BAD_REQUEST, "a name of 1 to 32 characters\n").into_response();
            }
            let cookie = session_cookie(sessions.sign(&name), cookie::time::Duration::days(30));
            (
                [(header::SET_COOKIE, cookie)],
                Json(json!({ "name": name })),
            )
                .into_response()
        }
    };
    let me = {
        let sessions = sessions.clone();
        move |headers: HeaderMap| async move {
            match sessions.user_of(&headers) {
                Some(name) => Json(json!({ "name": name })).into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            }
        }
    };
    let logout = || async {
        let cookie = session_cookie(String::new(), cookie::time::Duration::ZERO);
        ([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT)
    };
    let http = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(include_str!("index.html")) }),
        )
        .route("/login", axum::routing::post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/me", axum::routing::get(me))
        .route("/notify/{user}", axum::routing::post(notify));
    let authenticate = authenticator_fn(move |token: String| {
        let name = sessions.verify(&token);
        async move { Ok(name.map(|name| User { name })) }
    });
    let websocket = CookieMiddleware::new(
        AuthMiddleware::new(
            UrlRouter::new().route("/ws/notifications/", NotificationsConsumer::default),
            authenticate,
        )
        .token_sources([TokenSource::cookie("session")])
        .allow_anonymous(false),
    );
    ProtocolTypeRouter::new().http(http).websocket(websocket)
}

#[derive(Parser)]
#[command(about = "switchboard's notifications example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
    /// Share users with other processes through this Redis server (`redis://127.0.0.1:6379`).
    #[arg(long, env = "SWITCHBOARD_REDIS")]
    redis: Option<String>,
    /// The secret session cookies are signed with; processes that share users share it.
    /// Default: a random one (sessions end with the process).
    #[arg(long, env = "NOTIFICATIONS_SECRET")]
    secret: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let layer = match &args.redis {
        Some(url) => LayerHandle::new(
            switchboard::layer::RedisChannelLayer::connect(switchboard::layer::RedisConfig::new(
                url.as_str(),
            ))
            .await?,
        ),
        None => LayerHandle::in_memory(),
    };
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "notifications: open http://{}/ in a browser",
        listener.local_addr()?
    );
    switchboard::serve(listener, application(Sessions::new(args.secret.as_deref())))
        .channel_layer(layer)
        .config(switchboard::ServerConfig::from_env()?)
        .with_graceful_shutdown(switchboard::shutdown_signal())
        .await?;
    Ok(())
}
