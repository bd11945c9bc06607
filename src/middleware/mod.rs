//! Middleware: applications that wrap an application, read or change the scope before it, and may
//! refuse the handshake with an HTTP status (Channels' `middleware.py`, `auth.py`,
//! `security/websocket.py`).
//!
//! The server checks every handshake's `Origin` before any middleware
//! ([`ServerConfig::origin_check`](crate::ServerConfig::origin_check), on by default); the
//! validators here narrow that per application (e.g. one route only for one site).
//!
//! # Order
//!
//! Middleware nests, and the one written first (outermost) sees the handshake first, as in
//! Channels (`AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))`) and as the layers
//! of a tower `ServiceBuilder` read top to bottom:
//!
//! ```
//! use switchboard::middleware::{AllowedHostsOriginValidator, AuthMiddleware, CookieMiddleware, TokenSource};
//! use switchboard::routing::UrlRouter;
//! use switchboard::consumer::{Context, WebSocketConsumer};
//! use switchboard::websocket::Message;
//!
//! #[derive(Clone)]
//! struct User { name: String }
//!
//! #[derive(Default)]
//! struct Chat;
//!
//! #[switchboard::async_trait]
//! impl WebSocketConsumer for Chat {
//!     async fn receive(&mut self, ctx: &mut Context, _: Message) -> switchboard::Result<()> {
//!         let name = ctx.scope().extensions.get::<User>().map_or("anonymous", |u| &u.name);
//!         let greeting = format!("hello, {name}");
//!         ctx.send_text(greeting).await?;
//!         Ok(())
//!     }
//! }
//!
//! // 1. refuse other origins (403) → 2. parse cookies → 3. find the user → 4. route.
//! let app = AllowedHostsOriginValidator::new(
//!     CookieMiddleware::new(
//!         AuthMiddleware::new(
//!             UrlRouter::new().route("/ws/chat/{room}/", Chat::default),
//!             switchboard::middleware::authenticator_fn(|token: String| async move {
//!                 Ok(Some(User { name: token }))
//!             }),
//!         )
//!         .token_sources([TokenSource::cookie("session"), TokenSource::query("token")]),
//!     ),
//!     ["example.com", ".example.org", "localhost"],
//! );
//! # drop(app);
//! ```
//!
//! A consumer then finds the user with `ctx.scope().extensions.get::<User>()`.
//!
//! To write one, implement [`WebSocketApplication`](crate::application::WebSocketApplication)
//! for a type that holds the inner application: change
//! [`Handshake::scope_mut`](crate::application::Handshake::scope_mut) and call the inner
//! application, or [`reject`](crate::application::Handshake::reject) the handshake.

mod auth;
mod cookies;
mod origin;
mod rate_limit;

pub use auth::{authenticator_fn, AuthMiddleware, Authenticator, AuthenticatorFn, TokenSource};
pub use cookies::{CookieMiddleware, Cookies};
pub(crate) use origin::OriginVerdict;
pub use origin::{AllowedHostsOriginValidator, OriginCheck, OriginValidator};
pub use rate_limit::RateLimit;
