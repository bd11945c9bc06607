//! Middleware over real sockets: origin checks, cookies, authentication, and their order.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{handshake_status, recv, within, TestServer};
use futures_util::SinkExt;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::InMemoryChannelLayer;
use switchboard::middleware::{
    authenticator_fn, AllowedHostsOriginValidator, AuthMiddleware, CookieMiddleware, Cookies,
    OriginValidator, TokenSource,
};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use switchboard::{OriginCheck, ServerConfig};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

#[derive(Clone, Debug)]
struct User {
    name: String,
}

/// Says who it thinks the client is.
struct WhoAmI;

#[switchboard::async_trait]
impl WebSocketConsumer for WhoAmI {
    async fn receive(&mut self, ctx: &mut Context, _: Message) -> switchboard::Result<()> {
        let scope = ctx.scope();
        let user = scope
            .extensions
            .get::<User>()
            .map_or("anonymous", |u| u.name.as_str());
        let theme = scope
            .extensions
            .get::<Cookies>()
            .and_then(|c| c.get("theme"))
            .unwrap_or("-");
        let reply = format!("{user} {theme}");
        ctx.send_text(reply).await?;
        Ok(())
    }
}

struct Counters {
    consumers: AtomicUsize,
    lookups: AtomicUsize,
}

fn stack(allow_anonymous: bool) -> (ProtocolTypeRouter, Arc<Counters>) {
    let counters = Arc::new(Counters {
        consumers: AtomicUsize::new(0),
        lookups: AtomicUsize::new(0),
    });
    let (c1, c2) = (counters.clone(), counters.clone());
    let router = UrlRouter::new().route("/ws/", move || {
        c1.consumers.fetch_add(1, Ordering::SeqCst);
        WhoAmI
    });
    let auth = authenticator_fn(move |token: String| {
        let counters = c2.clone();
        async move {
            counters.lookups.fetch_add(1, Ordering::SeqCst);
            match token.as_str() {
                "boom" => Err(switchboard::Error::msg("user database unreachable")),
                "nobody" => Ok(None),
                name => Ok(Some(User {
                    name: name.to_owned(),
                })),
            }
        }
    });
    let app = OriginValidator::new(
        CookieMiddleware::new(
            AuthMiddleware::new(router, auth)
                .token_sources([
                    TokenSource::bearer(),
                    TokenSource::query("token"),
                    TokenSource::cookie("session"),
                ])
                .allow_anonymous(allow_anonymous),
        ),
        ["http://localhost:8000", "*.example.com"],
    );
    (ProtocolTypeRouter::new().websocket(app), counters)
}

/// A server whose own origin check lets every origin through, so that the validators under test
/// judge them (the way to give one route its own rules).
async fn validated_server(app: ProtocolTypeRouter) -> TestServer {
    let mut config = ServerConfig::default();
    config.origin_check = OriginCheck::dangerously_allow_any_origin();
    TestServer::start_with(app, InMemoryChannelLayer::new(), config).await
}

fn request(
    server: &TestServer,
    path: &str,
    headers: &[(&'static str, &'static str)],
) -> http::Request<()> {
    let mut request = server.url(path).into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, http::HeaderValue::from_static(value));
    }
    request
}

async fn who(server: &TestServer, path: &str, headers: &[(&'static str, &'static str)]) -> String {
    let (mut client, _) = within(tokio_tungstenite::connect_async(request(
        server, path, headers,
    )))
    .await
    .unwrap();
    within(client.send(tungstenite::Message::text("?")))
        .await
        .unwrap();
    match recv(&mut client).await {
        tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("{other:?}"),
    }
}

const LOCAL: (&str, &str) = ("origin", "http://localhost:8000");

#[tokio::test]
async fn other_origins_get_403_and_never_reach_the_consumer() {
    let (app, counters) = stack(true);
    let server = validated_server(app).await;
    for origin in [
        "http://evil.test",
        "http://localhost:8001",
        "https://example.com",
        "null",
    ] {
        let mut req = request(&server, "/ws/?token=ada", &[]);
        req.headers_mut()
            .insert("origin", http::HeaderValue::from_str(origin).unwrap());
        assert_eq!(handshake_status(req).await, 403, "{origin}");
    }
    assert_eq!(
        handshake_status(request(&server, "/ws/", &[])).await,
        403,
        "no Origin at all"
    );
    // Outer middleware runs first: refused handshakes never reached the authenticator either.
    assert_eq!(counters.consumers.load(Ordering::SeqCst), 0);
    assert_eq!(counters.lookups.load(Ordering::SeqCst), 0);
    assert_eq!(
        who(&server, "/ws/", &[("origin", "https://app.example.com")]).await,
        "anonymous -"
    );
    assert_eq!(counters.consumers.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tokens_from_query_header_or_cookie_become_a_typed_user() {
    let (app, counters) = stack(true);
    let server = validated_server(app).await;
    assert_eq!(who(&server, "/ws/?token=ada", &[LOCAL]).await, "ada -");
    assert_eq!(
        who(&server, "/ws/", &[LOCAL, ("authorization", "Bearer grace")]).await,
        "grace -"
    );
    assert_eq!(
        who(
            &server,
            "/ws/",
            &[LOCAL, ("cookie", "theme=dark; session=linus")]
        )
        .await,
        "linus dark"
    );
    // The first source with a token wins: the header comes before the query.
    assert_eq!(
        who(
            &server,
            "/ws/?token=ada",
            &[LOCAL, ("authorization", "Bearer grace")]
        )
        .await,
        "grace -"
    );
    assert_eq!(
        who(&server, "/ws/?token=nobody", &[LOCAL]).await,
        "anonymous -"
    );
    assert_eq!(who(&server, "/ws/", &[LOCAL]).await, "anonymous -");
    assert_eq!(counters.lookups.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn anonymous_refused_with_401_when_configured_and_lookup_failures_with_500() {
    let (app, counters) = stack(false);
    let server = validated_server(app).await;
    assert_eq!(
        handshake_status(request(&server, "/ws/", &[LOCAL])).await,
        401
    );
    assert_eq!(
        handshake_status(request(&server, "/ws/?token=nobody", &[LOCAL])).await,
        401
    );
    assert_eq!(
        handshake_status(request(&server, "/ws/?token=boom", &[LOCAL])).await,
        500
    );
    assert_eq!(counters.consumers.load(Ordering::SeqCst), 0);
    assert_eq!(who(&server, "/ws/?token=ada", &[LOCAL]).await, "ada -");
}

#[tokio::test]
async fn allowed_hosts_validator_takes_hosts() {
    let app = AllowedHostsOriginValidator::new(
        UrlRouter::new().route("/ws/", || WhoAmI),
        ["localhost", ".example.org"],
    );
    let server = validated_server(ProtocolTypeRouter::new().websocket(app)).await;
    for (origin, status) in [
        ("http://localhost:8000", 101),
        ("https://localhost", 101),
        ("https://example.org", 101),
        ("https://www.example.org", 101),
        ("https://example.org.evil.test", 403),
        ("http://127.0.0.1:8000", 403),
    ] {
        let mut req = request(&server, "/ws/", &[]);
        req.headers_mut()
            .insert("origin", http::HeaderValue::from_str(origin).unwrap());
        assert_eq!(handshake_status(req).await, status, "{origin}");
    }
}
