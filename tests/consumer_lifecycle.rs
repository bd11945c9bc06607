//! Consumer lifecycle over real sockets: accept, subprotocols, refusal, close codes and reasons,
//! errors and panics isolated to their connection, `disconnect` exactly once on every way out,
//! point-to-point sends, and graceful shutdown.

mod common;

use common::{
    disconnected, next_note, notes, recv_close, recv_text, text, until_closed, within, Note,
    Observed, TestServer,
};
use switchboard::consumer::{AcceptOptions, Context, WebSocketConsumer, WebSocketError};
use switchboard::layer::{ChannelLayer, Event};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::{close_code, Message};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, protocol::CloseFrame};

/// Does what the client asks: `?connect=` picks the handshake's fate; text commands pick the
/// rest (`echo …`, `close CODE REASON`, `error`, `panic`, `tell CHANNEL`).
#[derive(Default)]
struct Scripted;

#[switchboard::async_trait]
impl WebSocketConsumer for Scripted {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        match ctx.scope().query_param("connect").as_deref() {
            None | Some("accept") => ctx.accept().await?,
            Some("close") => ctx.close(4003, "go away").await?,
            Some("nothing") => {}
            Some("error") => return Err(switchboard::Error::msg("connect failed")),
            Some("panic") => panic!("connect panicked"),
            Some("subprotocol") => {
                // Not requested by the client: refused without answering the handshake.
                let wrong = ctx.accept_subprotocol("nobody-asked").await;
                assert!(matches!(
                    wrong,
                    Err(WebSocketError::UnrequestedSubprotocol(_))
                ));
                let choice = ctx.scope().subprotocols.last().cloned().unwrap();
                ctx.accept_with(AcceptOptions::new().subprotocol(choice).header(
                    http::HeaderName::from_static("x-switchboard-test"),
                    http::HeaderValue::from_static("yes"),
                ))
                .await?;
                let again = ctx.accept().await;
                assert!(matches!(again, Err(WebSocketError::AlreadyAnswered)));
            }
            Some(other) => panic!("unknown connect mode {other}"),
        }
        Ok(())
    }

    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        let Message::Text(text) = message else {
            ctx.send_binary(vec![0xff]).await?;
            return Ok(());
        };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("echo"), rest, more) => {
                let reply = [rest, more]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                ctx.send_text(reply).await?;
            }
            (Some("close"), Some(code), reason) => {
                ctx.close(code.parse()?, reason.unwrap_or("")).await?;
                // Closed: further sends fail, and no message or event reaches us any more.
                assert!(matches!(
                    ctx.send_text("late").await,
                    Err(WebSocketError::Closed)
                ));
            }
            (Some("error"), ..) => return Err(switchboard::Error::msg("receive failed")),
            (Some("panic"), ..) => panic!("receive panicked"),
            (Some("tell"), Some(channel), _) => {
                ctx.send_to_channel(
                    channel,
                    &serde_json::json!({ "type": "poke", "from": ctx.channel_name() }),
                )
                .await?;
            }
            _ => ctx.send_text("unknown command").await?,
        }
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: Event) -> switchboard::Result<()> {
        match event.event_type() {
            "fail" => Err(switchboard::Error::msg("event failed")),
            "gated" => {
                GATE.acquire().await?.forget();
                ctx.send_text(event.to_text()).await?;
                Ok(())
            }
            _ => {
                ctx.send_text(event.to_text()).await?;
                Ok(())
            }
        }
    }
}

fn app() -> (ProtocolTypeRouter, mpsc::Receiver<Note>) {
    let (tx, rx) = notes();
    let app = ProtocolTypeRouter::new()
        .websocket(UrlRouter::new().route("/ws/", move || Observed::new(Scripted, tx.clone())));
    (app, rx)
}

/// Shuts the server down and checks that exactly `pending` more `disconnect`s ran: those of the
/// connections whose disconnect the test did not wait for. Any other would be a second one.
async fn finish(server: TestServer, mut notes: mpsc::Receiver<Note>, pending: usize) {
    server.shutdown().await;
    let mut disconnects = 0;
    // Once the server is down, every consumer and the factory are dropped: the channel closes.
    while let Some(note) = within(notes.recv()).await {
        if let Note::Disconnected(_) = note {
            disconnects += 1;
        }
    }
    assert_eq!(
        disconnects, pending,
        "disconnect must run exactly once per connection"
    );
}

/// Holds back the handler of `gated` events until the test adds a permit.
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

#[tokio::test]
async fn subprotocol_and_extra_headers_are_negotiated() {
    let (app, notes) = app();
    let server = TestServer::start(app).await;
    let mut request = server
        .url("/ws/?connect=subprotocol")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static("chat.v1, chat.v2"),
    );
    let (mut client, response) = within(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(response.headers()["x-switchboard-test"], "yes");
    text(&mut client, "echo works").await;
    assert_eq!(recv_text(&mut client).await, "works");
    drop(client);
    finish(server, notes, 1).await;
}

#[tokio::test]
async fn refusals_answer_the_handshake_with_http_statuses() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    // close() before accept → 403, and disconnect still runs (1006: no WebSocket ever opened).
    assert_eq!(server.handshake_status("/ws/?connect=close").await, 403);
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    // connect returning without an answer → 403.
    assert_eq!(server.handshake_status("/ws/?connect=nothing").await, 403);
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    // connect failing or panicking → 500; the server carries on.
    assert_eq!(server.handshake_status("/ws/?connect=error").await, 500);
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    assert_eq!(server.handshake_status("/ws/?connect=panic").await, 500);
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    // No route → 404, and no consumer was made.
    assert_eq!(server.handshake_status("/elsewhere/").await, 404);
    let mut client = server.connect("/ws/").await;
    text(&mut client, "echo alive").await;
    assert_eq!(recv_text(&mut client).await, "alive");
    drop(client);
    finish(server, notes, 1).await;
}

#[tokio::test]
async fn a_server_close_sends_its_code_and_reason() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/").await;
    text(&mut client, "close 4321 see you later").await;
    let frame = recv_close(&mut client).await.unwrap();
    assert_eq!(u16::from(frame.code), 4321);
    assert_eq!(frame.reason, "see you later");
    assert_eq!(disconnected(&mut notes).await, 4321);
    finish(server, notes, 0).await;
}

#[tokio::test]
async fn a_close_code_that_may_not_be_sent_is_an_error_that_closes_with_1011() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/").await;
    text(&mut client, "close 1006 reserved").await;
    let frame = recv_close(&mut client).await.unwrap();
    assert_eq!(u16::from(frame.code), close_code::INTERNAL_ERROR);
    assert_eq!(disconnected(&mut notes).await, close_code::INTERNAL_ERROR);
    finish(server, notes, 0).await;
}

#[tokio::test]
async fn client_close_codes_reach_disconnect() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/").await;
    within(client.close(Some(CloseFrame {
        code: 4001u16.into(),
        reason: "done".into(),
    })))
    .await
    .unwrap();
    until_closed(&mut client).await;
    assert_eq!(disconnected(&mut notes).await, 4001);

    let mut client = server.connect("/ws/").await;
    within(client.close(None)).await.unwrap();
    assert_eq!(disconnected(&mut notes).await, close_code::NO_STATUS);

    let client = server.connect("/ws/").await;
    drop(client); // TCP closes, no close frame
    assert_eq!(disconnected(&mut notes).await, close_code::ABNORMAL);
    finish(server, notes, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_close_only_their_own_connection_with_1011() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut bystander = server.connect("/ws/").await;
    for command in ["error", "panic"] {
        let mut client = server.connect("/ws/").await;
        text(&mut client, command).await;
        let frame = recv_close(&mut client).await.unwrap();
        assert_eq!(
            u16::from(frame.code),
            close_code::INTERNAL_ERROR,
            "{command}"
        );
        assert_eq!(disconnected(&mut notes).await, close_code::INTERNAL_ERROR);
        text(&mut bystander, "echo still fine").await;
        assert_eq!(recv_text(&mut bystander).await, "still fine");
    }
    // An event handler's error closes the same way.
    let mut client = server.connect("/ws/").await;
    let channel = loop {
        if let Note::Connected { channel } = next_note(&mut notes).await {
            break channel;
        }
    };
    let channel = {
        // The bystander connected first; the newest connection's channel is the last one noted.
        let mut latest = channel;
        while let Ok(Note::Connected { channel }) = notes.try_recv() {
            latest = channel;
        }
        latest
    };
    server
        .layer
        .send(&channel, Event::from_json(r#"{"type":"fail"}"#).unwrap())
        .await
        .unwrap();
    let frame = recv_close(&mut client).await.unwrap();
    assert_eq!(u16::from(frame.code), close_code::INTERNAL_ERROR);
    assert_eq!(disconnected(&mut notes).await, close_code::INTERNAL_ERROR);
    drop(bystander);
    finish(server, notes, 1).await;
}

#[tokio::test]
async fn point_to_point_send_reaches_the_named_consumer() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut alice = server.connect("/ws/").await;
    let Note::Connected {
        channel: alice_channel,
    } = next_note(&mut notes).await
    else {
        panic!("expected connect")
    };
    let mut bob = server.connect("/ws/").await;
    let Note::Connected {
        channel: bob_channel,
    } = next_note(&mut notes).await
    else {
        panic!("expected connect")
    };
    text(&mut bob, &format!("tell {alice_channel}")).await;
    let poke: serde_json::Value = serde_json::from_str(&recv_text(&mut alice).await).unwrap();
    assert_eq!(poke["type"], "poke");
    assert_eq!(poke["from"], bob_channel.as_str());
    drop((alice, bob));
    finish(server, notes, 2).await;
}

#[tokio::test]
async fn disconnect_is_not_stuck_behind_queued_events() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/").await;
    let Note::Connected { channel } = next_note(&mut notes).await else {
        panic!()
    };
    // 100 events wait in the consumer's channel (its capacity); the test paces their handler.
    for i in 0..100 {
        let event = Event::from_json(format!(r#"{{"type":"gated","n":{i}}}"#)).unwrap();
        server.layer.send(&channel, event).await.unwrap();
    }
    GATE.add_permits(1);
    assert!(recv_text(&mut client).await.contains(r#""n":0"#));
    drop(client); // the client leaves after the first event reached it
    let mut handled = 0;
    let code = loop {
        match next_note(&mut notes).await {
            Note::Event(_) => {
                handled += 1;
                GATE.add_permits(1);
            }
            Note::Disconnected(code) => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, close_code::ABNORMAL);
    // One event was being handled when the client left; the socket is looked at before the next.
    assert!(
        handled <= 3,
        "disconnect waited for {handled} queued events"
    );
    assert_eq!(server.layer.stats().channels, 0);
    finish(server, notes, 0).await;
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001_and_runs_disconnect() {
    let (app, mut notes) = app();
    let server = TestServer::start(app).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.connect("/ws/").await);
    }
    let addr = server.addr;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { recv_close(&mut client).await }))
        .collect();
    server.shutdown().await; // returns once every connection has closed
    for reader in readers {
        let frame = within(reader).await.unwrap().unwrap();
        assert_eq!(u16::from(frame.code), close_code::GOING_AWAY);
        assert_eq!(frame.reason, "server shutting down");
    }
    for _ in 0..3 {
        assert_eq!(disconnected(&mut notes).await, close_code::GOING_AWAY);
    }
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_factory_that_panics_fails_only_its_handshake() {
    let app = ProtocolTypeRouter::new().websocket(
        UrlRouter::new()
            .route("/boom/", || -> Scripted { panic!("factory failed") })
            .route("/ws/", || Scripted),
    );
    let server = TestServer::start(app).await;
    assert_eq!(server.handshake_status("/boom/").await, 500);
    let mut client = server.connect("/ws/").await;
    text(&mut client, "echo alive").await;
    assert_eq!(recv_text(&mut client).await, "alive");
}

/// Rejects with the status its path names (`/ws/reject/404/`), or accepts and then tries to
/// reject (`/ws/reject/late/`), reporting what that returned.
struct Rejecting {
    late: mpsc::Sender<bool>,
}

#[switchboard::async_trait]
impl WebSocketConsumer for Rejecting {
    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let asked = ctx
            .scope()
            .url_route
            .get("status")
            .unwrap_or_default()
            .to_owned();
        if let Ok(code) = asked.parse::<u16>() {
            ctx.reject(http::StatusCode::from_u16(code).unwrap())?;
            return Ok(());
        }
        ctx.accept().await?;
        let late = ctx.reject(http::StatusCode::NOT_FOUND);
        let _ = self
            .late
            .try_send(matches!(late, Err(WebSocketError::AlreadyAnswered)));
        Ok(())
    }

    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_consumer_rejects_a_handshake_with_the_status_it_chooses() {
    let (late_tx, mut late) = mpsc::channel(1);
    let app = ProtocolTypeRouter::new().websocket(UrlRouter::new().route(
        "/ws/reject/{status}/",
        move || Rejecting {
            late: late_tx.clone(),
        },
    ));
    let server = TestServer::start(app).await;
    for (asked, answered) in [
        (404, 404),
        (401, 401),
        (429, 429),
        (503, 503),
        (200, 403),
        (302, 403),
    ] {
        assert_eq!(
            server
                .handshake_status(&format!("/ws/reject/{asked}/"))
                .await,
            answered,
            "{asked}"
        );
    }
    let refused = server.stats.snapshot().refused;
    assert_eq!(
        (
            refused.not_found,
            refused.unauthorized,
            refused.forbidden,
            refused.unavailable
        ),
        (1, 1, 2, 1)
    );
    // After accepting, it is too late.
    let client = server.connect("/ws/reject/late/").await;
    assert!(within(late.recv()).await.unwrap());
    drop(client);
    server.shutdown().await;
}
