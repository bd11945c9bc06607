//! Authentication: a token from the handshake → a typed user in the scope (Channels'
//! `AuthMiddleware`, over your own authenticator instead of Django's sessions).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, StatusCode};

use super::Cookies;
use crate::application::{BoxFuture, Handshake, WebSocketApplication};
use crate::scope::Scope;

/// Turns a token into a user. Return `Ok(None)` for a token that names nobody: the connection is
/// then anonymous.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The user type put in [`Scope::extensions`](crate::scope::Scope::extensions).
    type User: Clone + Send + Sync + 'static;

    /// Looks `token` up. `scope` is there for checks that need more (client address, headers).
    ///
    /// # Errors
    ///
    /// A failure to look up (a database down) refuses the handshake with HTTP 500 and is logged
    /// at `ERROR`.
    async fn authenticate(&self, token: &str, scope: &Scope) -> crate::Result<Option<Self::User>>;
}

/// An [`Authenticator`] made of an async closure; see [`authenticator_fn`]. Cloneable when the
/// closure is, to share one among several middleware stacks.
#[derive(Clone)]
pub struct AuthenticatorFn<F>(F);

impl<F> std::fmt::Debug for AuthenticatorFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthenticatorFn")
    }
}

/// An [`Authenticator`] from an async closure `token → Result<Option<User>>`.
pub fn authenticator_fn<F, Fut, U>(f: F) -> AuthenticatorFn<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = crate::Result<Option<U>>> + Send,
    U: Clone + Send + Sync + 'static,
{
    AuthenticatorFn(f)
}

#[async_trait]
impl<F, Fut, U> Authenticator for AuthenticatorFn<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = crate::Result<Option<U>>> + Send,
    U: Clone + Send + Sync + 'static,
{
    type User = U;

    async fn authenticate(&self, token: &str, _: &Scope) -> crate::Result<Option<U>> {
        (self.0)(token.to_owned()).await
    }
}

/// Where a token is looked for in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// A header; a `Bearer ` prefix is removed (`Authorization: Bearer <token>`).
    Header(HeaderName),
    /// A query-string parameter (browsers cannot set headers on a WebSocket).
    Query(String),
    /// A cookie (parsed by [`CookieMiddleware`](super::CookieMiddleware) if it ran, else here).
    Cookie(String),
}

impl TokenSource {
    /// A query-string parameter.
    pub fn query(name: impl Into<String>) -> Self {
        Self::Query(name.into())
    }

    /// A cookie.
    pub fn cookie(name: impl Into<String>) -> Self {
        Self::Cookie(name.into())
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer() -> Self {
        Self::Header(http::header::AUTHORIZATION)
    }

    fn find(&self, scope: &Scope) -> Option<String> {
        let token = match self {
            Self::Header(name) => {
                let value = scope.header(name)?;
                value.strip_prefix("Bearer ").unwrap_or(value).to_owned()
            }
            Self::Query(name) => scope.query_param(name)?,
            Self::Cookie(name) => match scope.extensions.get::<Cookies>() {
                Some(cookies) => cookies.get(name)?.to_owned(),
                None => Cookies::from_headers(&scope.headers).get(name)?.to_owned(),
            },
        };
        (!token.is_empty()).then_some(token)
    }
}

/// Finds a token (the first [`TokenSource`] that has one), asks the [`Authenticator`], and puts
/// the user in the scope's extensions. Anonymous connections (no token, or a token that names
/// nobody) go on without a user, or are refused with HTTP 401 after
/// [`allow_anonymous(false)`](Self::allow_anonymous).
///
/// The default sources are `Authorization: Bearer`, the `token` query parameter, and the `token`
/// cookie, in that order.
pub struct AuthMiddleware<A, Au> {
    inner: Arc<A>,
    authenticator: Arc<Au>,
    sources: Vec<TokenSource>,
    allow_anonymous: bool,
}

impl<A, Au> std::fmt::Debug for AuthMiddleware<A, Au> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthMiddleware")
            .field("sources", &self.sources)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish_non_exhaustive()
    }
}

impl<A, Au: Authenticator> AuthMiddleware<A, Au> {
    /// Wraps `inner`, authenticating with `authenticator`.
    pub fn new(inner: A, authenticator: Au) -> Self {
        Self {
            inner: Arc::new(inner),
            authenticator: Arc::new(authenticator),
            sources: vec![
                TokenSource::bearer(),
                TokenSource::query("token"),
                TokenSource::cookie("token"),
            ],
            allow_anonymous: true,
        }
    }

    /// Looks for the token in `sources`, in order, instead of the defaults.
    pub fn token_sources(mut self, sources: impl IntoIterator<Item = TokenSource>) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// Whether anonymous connections go on (default) or are refused with 401.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.allow_anonymous = allow;
        self
    }
}

impl<A: WebSocketApplication, Au: Authenticator> WebSocketApplication for AuthMiddleware<A, Au> {
    fn call(&self, mut handshake: Handshake) -> BoxFuture<()> {
        let authenticator = self.authenticator.clone();
        let token = self.sources.iter().find_map(|s| s.find(handshake.scope()));
        let allow_anonymous = self.allow_anonymous;
        let check = Box::pin(async move {
            let user = match token {
                None => None,
                Some(token) => match authenticator.authenticate(&token, handshake.scope()).await {
                    Ok(user) => user,
                    Err(error) => {
                        tracing::error!(target: "switchboard::middleware", %error, "authenticator failed: refused with 500");
                        handshake.reject(StatusCode::INTERNAL_SERVER_ERROR);
                        return None;
                    }
                },
            };
            match user {
                Some(user) => {
                    handshake.scope_mut().extensions.insert(user);
                }
                None if !allow_anonymous => {
                    tracing::info!(target: "switchboard::middleware", path = %handshake.scope().path, "anonymous WebSocket refused with 401");
                    handshake.reject(StatusCode::UNAUTHORIZED);
                    return None;
                }
                None => {}
            }
            Some(handshake)
        });
        Box::pin(Call::Authenticating {
            check,
            inner: self.inner.clone(),
        })
    }
}

/// What [`AuthMiddleware::call`] returns: the authentication (a future of its own, freed when it
/// is done), then the wrapped application's future. One `async` block around both would keep
/// the handshake's room (about 500 bytes) for as long as the connection lives.
enum Call<A> {
    Authenticating {
        check: BoxFuture<Option<Handshake>>,
        inner: Arc<A>,
    },
    Inner(BoxFuture<()>),
    Done,
}

impl<A: WebSocketApplication> Future for Call<A> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Call::Authenticating { check, inner } => {
                    let handshake = std::task::ready!(check.as_mut().poll(cx));
                    *this = match handshake {
                        Some(handshake) => Call::Inner(inner.call(handshake)),
                        None => Call::Done,
                    };
                }
                Call::Inner(connection) => {
                    std::task::ready!(connection.as_mut().poll(cx));
                    *this = Call::Done;
                }
                Call::Done => return std::task::Poll::Ready(()),
            }
        }
    }
}
