//! [`RateLimit`]: a route's own inbound rate limit.

use crate::application::{BoxFuture, Handshake, WebSocketApplication};
use crate::InboundRateLimit;

/// Gives the WebSockets of the application it wraps their own [`InboundRateLimit`], in place of
/// the server's [`ServerConfig::inbound_rate_limit`](crate::ServerConfig::inbound_rate_limit)
/// (which may be none): a chat room gets 5 messages a second, a telemetry feed 500.
///
/// ```
/// use switchboard::middleware::RateLimit;
/// use switchboard::routing::UrlRouter;
/// use switchboard::{InboundRateLimit, Rate};
/// # use switchboard::consumer::{Context, WebSocketConsumer};
/// # use switchboard::websocket::Message;
/// # #[derive(Default)] struct Chat;
/// # #[switchboard::async_trait]
/// # impl WebSocketConsumer for Chat {
/// #     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> { Ok(()) }
/// # }
///
/// let app = UrlRouter::new().route(
///     "/ws/chat/{room}/",
///     RateLimit::new(Chat::default, InboundRateLimit::messages(Rate::new(5.0, 10.0))),
/// );
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct RateLimit<A> {
    inner: A,
    limit: InboundRateLimit,
}

impl<A> RateLimit<A> {
    /// Wraps `inner`, whose connections get `limit`.
    pub fn new(inner: A, limit: InboundRateLimit) -> Self {
        Self { inner, limit }
    }
}

impl<A: WebSocketApplication> WebSocketApplication for RateLimit<A> {
    fn call(&self, mut handshake: Handshake) -> BoxFuture<()> {
        handshake.scope_mut().extensions.insert(self.limit);
        self.inner.call(handshake)
    }
}
