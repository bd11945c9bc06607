//! The connection runner: one task per WebSocket that owns the consumer and the socket.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, SinkExt, StreamExt};
use http::StatusCode;
use tokio::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{
    self,
    error::{CapacityError, ProtocolError},
};
use tracing::Instrument;

use super::context::{Context, Outbound, Phase};
use super::{WebSocketConsumer, WebSocketError};
use crate::application::Handshake;
use crate::layer::ChannelLayer;
use crate::websocket::{close_code, Message, Utf8Bytes};

/// Events handled in one go before the socket and the shutdown signal are looked at again.
const MAX_BURST: usize = 64;

/// How a handler failed.
pub(crate) enum Failure {
    Error(crate::Error),
    Panic(String),
}

impl Failure {
    /// Logs the failure of `handler` of a consumer of `kind` (`"websocket"`, `"sse"`,
    /// `"worker"`) at `ERROR`, saying what follows (`then`).
    pub(crate) fn log(&self, kind: &'static str, handler: &'static str, then: &'static str) {
        match self {
            Failure::Error(error) => tracing::error!(
                target: "switchboard::consumer",
                kind,
                handler,
                %error,
                "consumer handler failed; {then}"
            ),
            Failure::Panic(panic) => tracing::error!(
                target: "switchboard::consumer",
                kind,
                handler,
                %panic,
                "consumer handler panicked; {then}"
            ),
        }
    }
}

/// Parses an event into a consumer's `Event` type, or logs at `WARN` that it does not fit and
/// gives `None` (the event is dropped; the consumer goes on).
pub(crate) fn decode_event<T: serde::de::DeserializeOwned>(
    event: &crate::layer::Event,
    kind: &'static str,
    channel: &str,
) -> Option<T> {
    match event.decode::<T>() {
        Ok(typed) => Some(typed),
        Err(error) => {
            tracing::warn!(
                target: "switchboard::consumer",
                kind,
                channel,
                event_type = event.event_type(),
                %error,
                "event does not fit the consumer's Event type: dropped"
            );
            None
        }
    }
}

/// Runs a handler, turning a panic into a [`Failure`] so that it ends only this connection.
pub(crate) async fn guarded<F>(handler: F) -> Result<(), Failure>
where
    F: Future<Output = crate::Result<()>>,
{
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure::Error(error)),
        Err(panic) => Err(Failure::Panic(panic_message(&*panic))),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// Logs a handler's failure and ends the connection for it: HTTP 500 if the handshake is still
/// pending, close 1011 if open.
async fn fail(ctx: &mut Context, handler: &'static str, failure: Failure) {
    if let Failure::Error(error) = &failure {
        if let Some(
            WebSocketError::Closed | WebSocketError::Transport(_) | WebSocketError::SlowClient,
        ) = error.inner().downcast_ref::<WebSocketError>()
        {
            // The client went away while the handler was writing to it: a disconnect (1006),
            // not a fault of the handler.
            tracing::debug!(target: "switchboard::consumer", handler, %error, "client gone during a send");
            ctx.phase = Phase::Closed;
            return;
        }
        let open = !matches!(ctx.phase, Phase::Pending(_));
        match error.inner().downcast_ref::<crate::layer::LayerError>() {
            Some(crate::layer::LayerError::ChannelFull { channel, capacity }) if open => {
                // Another consumer's channel is full: the recipient's problem, not this
                // connection's (the layer counted it in `rejected_full`). The handler stopped at
                // its `?`; the connection goes on.
                tracing::warn!(target: "switchboard::consumer", handler, channel, capacity, "a send to a full channel failed; the sender stays connected");
                return;
            }
            Some(crate::layer::LayerError::Event(event_error)) if open => {
                // An event that is not a JSON object with a string "type": a bug in the sending
                // code, said loudly, but not the client's doing: its connection goes on.
                tracing::error!(target: "switchboard::consumer", handler, error = %event_error, "an event to send has no string \"type\" (build it with Event::typed or a #[serde(tag = \"type\")] type); nothing sent, the sender stays connected");
                return;
            }
            _ => {}
        }
    }
    failure.log("websocket", handler, "closing its connection");
    if !ctx.refuse(StatusCode::INTERNAL_SERVER_ERROR) {
        // Closing twice does nothing; if the frame cannot be written the phase says `Closed`.
        let _ = ctx
            .close(close_code::INTERNAL_ERROR, "internal server error")
            .await;
    }
}

/// Serves one connection with `consumer`, from the pending handshake to `disconnect`.
///
/// Two futures chained by `then` rather than one `async fn`: an `async fn` keeps a slot for each
/// argument for its whole life and moves the arguments into locals as well, so every open
/// connection carried its context and consumer twice (about 2 KiB). Here the first stage's
/// state and the second's share their bytes, and the second stage borrows what it owns.
pub(crate) fn run<C: WebSocketConsumer>(
    consumer: C,
    handshake: Handshake,
) -> impl Future<Output = ()> + Send {
    start(consumer, handshake).then(|mut started| async move {
        let Some(Started {
            consumer,
            ctx,
            inbox,
            env,
            span,
        }) = &mut started
        else {
            return;
        };
        let connection = serve(consumer, ctx, inbox, env);
        // Entering a span on every poll costs even when it is disabled: only instrument a live
        // one.
        if span.is_disabled() {
            connection.await;
        } else {
            connection.instrument(span.clone()).await;
        }
    })
}

/// What [`start`] made for [`serve`].
struct Started<C> {
    consumer: C,
    ctx: Context,
    inbox: Option<crate::layer::ChannelReceiver>,
    env: std::sync::Arc<crate::application::ConnectionEnv>,
    span: tracing::Span,
}

/// The connection's channel and context; `None` (and the handshake answered 500) if the layer
/// cannot make a channel.
async fn start<C: WebSocketConsumer>(consumer: C, handshake: Handshake) -> Option<Started<C>> {
    let (scope, pending) = handshake.into_parts();
    let env = pending.env.clone();
    let inbox = match env.layer.new_channel().await {
        Ok(inbox) => inbox,
        Err(error) => {
            tracing::error!(target: "switchboard::consumer", %error, "could not make a channel for a new connection");
            pending.reject(StatusCode::INTERNAL_SERVER_ERROR);
            return None;
        }
    };
    let span = tracing::debug_span!(
        target: "switchboard::consumer",
        "websocket",
        path = %scope.path,
        client = ?scope.client,
        channel = inbox.name(),
    );
    let ctx = Context::new(
        scope,
        inbox.name().into(),
        env.layer.clone(),
        pending,
        env.write_timeout,
        env.traffic.clone(),
    );
    Some(Started {
        consumer,
        ctx,
        inbox: Some(inbox),
        env,
        span,
    })
}

async fn serve<C: WebSocketConsumer>(
    consumer: &mut C,
    ctx: &mut Context,
    channel: &mut Option<crate::layer::ChannelReceiver>,
    env: &crate::application::ConnectionEnv,
) {
    let Some(inbox) = channel else {
        return;
    };
    match tokio::time::timeout(env.handshake_timeout, guarded(consumer.connect(ctx))).await {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => Box::pin(fail(ctx, "connect", failure)).await,
        Err(_) => {
            tracing::warn!(target: "switchboard::consumer", "connect did not answer the handshake in time: 503");
            ctx.refuse(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    if ctx.refuse(StatusCode::FORBIDDEN) {
        tracing::warn!(target: "switchboard::consumer", "connect returned without accept or close: refused with 403");
    }

    // Keep-alive: `last_seen` is stamped by every frame; the timer looks at it, so busy
    // connections cost no timer work per frame.
    let ping_every = env
        .ping_interval
        .unwrap_or(Duration::from_secs(86_400 * 365));
    let mut last_seen = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut next_ping = last_seen + ping_every;
    let keep_alive = tokio::time::sleep_until(next_ping);
    tokio::pin!(keep_alive);
    let forwards_positions = consumer.forwards_positions();
    // A route's own limit (the `RateLimit` middleware) before the server's.
    let mut limiter = ctx
        .scope()
        .extensions
        .get::<crate::InboundRateLimit>()
        .copied()
        .or(env.inbound_rate_limit)
        .map(|limit| super::rate::Limiter::new(limit, last_seen));
    let code = loop {
        let socket = match &mut ctx.phase {
            Phase::Open(socket) => socket,
            Phase::Closing(_, code) => break *code,
            Phase::Refused | Phase::Closed | Phase::Pending(_) => {
                break ctx.dropped_with.unwrap_or(close_code::ABNORMAL)
            }
        };
        tokio::select! {
            biased;
            () = env.shutdown.cancelled() => {
                // On failure the phase is `Closed` and the loop ends with 1006.
                let _ = Box::pin(ctx.close(close_code::GOING_AWAY, "server shutting down")).await;
            }
            () = &mut keep_alive, if env.ping_interval.is_some() => {
                let now = Instant::now();
                // A ping is unanswered while no frame at all has come since it was sent.
                let unanswered = ping_sent.filter(|sent| last_seen < *sent);
                if unanswered.is_some_and(|sent| now >= sent + env.pong_timeout) {
                    tracing::debug!(target: "switchboard::consumer", "no answer to a ping: dropping a dead peer");
                    ctx.phase = Phase::Closed;
                    continue;
                }
                // No new ping while one is unanswered: its deadline must not move.
                if unanswered.is_none() && now >= next_ping {
                    // A failed send leaves the phase `Closed`: the loop ends.
                    let _ = Box::pin(ctx.send_frame(tungstenite::Message::Ping(bytes::Bytes::new()))).await;
                    ping_sent = Some(now);
                    next_ping = now + ping_every;
                }
                let unanswered = ping_sent.filter(|sent| last_seen < *sent);
                let deadline = unanswered.map_or(next_ping, |sent| next_ping.min(sent + env.pong_timeout));
                keep_alive.as_mut().reset(deadline);
            }
            frame = socket.next() => {
                last_seen = Instant::now();
                let message = match frame {
                    Some(Ok(tungstenite::Message::Text(text))) => {
                        env.traffic.received.fetch_add(1, Ordering::Relaxed);
                        Message::Text(Utf8Bytes::from_tungstenite(text))
                    }
                    Some(Ok(tungstenite::Message::Binary(bytes))) => {
                        env.traffic.received.fetch_add(1, Ordering::Relaxed);
                        Message::Binary(bytes)
                    }
                    Some(Ok(tungstenite::Message::Close(frame))) => {
                        let code = frame.map_or(close_code::NO_STATUS, |f| f.code.into());
                        // tungstenite queued the close reply; write it out, briefly.
                        let _ = Box::pin(tokio::time::timeout(env.close_timeout, socket.flush())).await;
                        break code;
                    }
                    Some(Ok(_)) => continue, // ping, pong: tungstenite answers pings itself
                    Some(Err(error)) => {
                        let code = read_error_code(&error);
                        tracing::debug!(target: "switchboard::consumer", %error, code, "read failed; closing");
                        if code != close_code::ABNORMAL {
                            let frame = tungstenite::protocol::CloseFrame {
                                code: code.into(),
                                reason: crate::websocket::truncate_reason(&error.to_string()).into(),
                            };
                            let _ = Box::pin(tokio::time::timeout(env.close_timeout, socket.close(Some(frame)))).await;
                        }
                        break code;
                    }
                    None => break close_code::ABNORMAL,
                };
                if let Some(limiter) = &mut limiter {
                    let len = match &message {
                        Message::Text(text) => text.len(),
                        Message::Binary(bytes) => bytes.len(),
                    };
                    match limiter.check(last_seen, len) {
                        super::rate::Verdict::Pass => {}
                        super::rate::Verdict::Drop { tell } => {
                            env.traffic.rate_limited.fetch_add(1, Ordering::Relaxed);
                            if let Some(dropped) = tell {
                                if let Err(failure) = guarded(consumer.rate_limited(ctx, dropped)).await {
                                    Box::pin(fail(ctx, "rate_limited", failure)).await;
                                }
                            }
                            continue;
                        }
                        super::rate::Verdict::Close => {
                            env.traffic.rate_limited.fetch_add(1, Ordering::Relaxed);
                            env.traffic.rate_limit_closes.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(target: "switchboard::consumer", "a client went on past its inbound rate limit: closing with 1008");
                            let _ = Box::pin(ctx.close(close_code::POLICY_VIOLATION, "rate limit exceeded")).await;
                            continue;
                        }
                    }
                }
                if let Err(failure) = guarded(consumer.receive(ctx, message)).await {
                    Box::pin(fail(ctx, "receive", failure)).await;
                }
            }
            // Before the inbox: what a task sent through its handle goes out before an event it
            // posted afterwards is handled.
            Some(outbound) = next_outbound(&mut ctx.outbound_receiver) => {
                // A failed send leaves the phase `Closed`; the loop then ends with 1006.
                let _ = match outbound {
                    Outbound::Frame(frame) => Box::pin(ctx.send_frame(frame)).await,
                    Outbound::Close(code, reason) => Box::pin(ctx.close(code, &reason)).await,
                };
            }
            event = inbox.recv() => {
                // The broadcast hot path: events the consumer forwards as they are go into the
                // socket's buffer back to back, with what else is already queued, and are
                // written with one flush instead of one write each. Before a handler of the
                // consumer's runs, what is buffered is written out, so a handler that takes its
                // time never holds back earlier frames.
                let mut next = Some(event);
                let mut handled = 0;
                let mut buffered = false;
                let mut yielded = false;
                // Expiry is judged at one reading of the clock per burst (and after a handler,
                // which may take its time), not one per event. A write that waits for a slow
                // socket can leave it stale by up to the write timeout: an event that expires
                // meanwhile is then delivered late rather than dropped.
                let mut now = Instant::now();
                while let Some(event) = next.take() {
                    if ctx.was_recovered(&event) {
                        // Given back by `Context::recover` already.
                    } else if consumer.forwards_event(event.event_type()) {
                        let text = if forwards_positions {
                            event.to_text_with_position()
                        } else {
                            event.to_text()
                        };
                        // A failure leaves the phase `Closed`: the loop below ends.
                        let _ = ctx.feed_text(text).await;
                        buffered = true;
                    } else {
                        if buffered {
                            let _ = ctx.flush().await;
                            buffered = false;
                        }
                        if let Err(failure) = guarded(consumer.event(ctx, event)).await {
                            Box::pin(fail(ctx, "event", failure)).await;
                            break;
                        }
                        now = Instant::now();
                    }
                    handled += 1;
                    if handled < MAX_BURST && ctx.is_open() {
                        next = inbox.try_recv_at(now);
                        if next.is_none() && buffered && !yielded {
                            // Let the tasks that are ready run once before writing: events
                            // that a broadcast is about to queue go out in the same write.
                            yielded = true;
                            tokio::task::yield_now().await;
                            now = Instant::now();
                            next = inbox.try_recv_at(now);
                        }
                    }
                }
                if buffered {
                    let _ = ctx.flush().await;
                }
            }
        }
    };

    // We sent a close frame: wait (briefly) for the client's, discarding what comes before it.
    if let Phase::Closing(socket, _) = &mut ctx.phase {
        let drain = async { while let Some(Ok(_)) = socket.next().await {} };
        let _ = Box::pin(tokio::time::timeout(env.close_timeout, drain)).await;
    }
    // tungstenite ends a server's side of the close handshake by handing its last frame to the
    // connection's write buffer without flushing it (it expects the byte stream to write at
    // once): write it out.
    if let Phase::Open(socket) | Phase::Closing(socket, _) = &mut ctx.phase {
        if socket.get_ref().has_pending_writes() {
            let written = tokio::io::AsyncWriteExt::flush(socket.get_mut());
            let _ = Box::pin(tokio::time::timeout(env.close_timeout, written)).await;
        }
        // Then end our side of the byte stream before dropping it: over TCP a FIN after the last
        // frame (the server closes first, RFC 6455 §7.1.1); over an HTTP/2 stream, the last
        // frames handed to h2 and END_STREAM sent — dropping it unended would reset the stream,
        // and h2 discards what it has not sent yet of a reset stream.
        let ended = tokio::io::AsyncWriteExt::shutdown(socket.get_mut());
        let _ = Box::pin(tokio::time::timeout(env.close_timeout, ended)).await;
    }
    // As Channels does before `disconnect`: leave every group. Dropping the channel does it, and
    // drops the events still queued. Then the socket: TCP closes before `disconnect` runs.
    *channel = None;
    ctx.phase = Phase::Closed;
    tracing::debug!(target: "switchboard::consumer", code, "disconnected");
    if let Err(failure) = guarded(consumer.disconnect(ctx, code)).await {
        failure.log("websocket", "disconnect", "the connection is over");
    }
}

/// The next frame from a [`ConnectionHandle`](super::ConnectionHandle); pending forever when no
/// handle was ever made.
async fn next_outbound(
    receiver: &mut Option<tokio::sync::mpsc::Receiver<Outbound>>,
) -> Option<Outbound> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// The close code for a failed read: the peer broke the protocol (1002), sent bad UTF-8 (1007),
/// or a message over the size limit (1009); anything else is a dropped connection (1006).
fn read_error_code(error: &tungstenite::Error) -> u16 {
    match error {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { .. }) => {
            close_code::MESSAGE_TOO_BIG
        }
        // The TCP connection ended without a close frame: a drop, not a protocol violation.
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            close_code::ABNORMAL
        }
        tungstenite::Error::Capacity(_) | tungstenite::Error::Protocol(_) => {
            close_code::PROTOCOL_ERROR
        }
        tungstenite::Error::Utf8(_) => close_code::INVALID_PAYLOAD,
        _ => close_code::ABNORMAL,
    }
}
