//! Routers: [`ProtocolTypeRouter`] dispatches a connection by protocol, [`UrlRouter`] by path
//! (with `matchit`), as Channels' `routing.py`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::application::{BoxFuture, Handshake, WebSocketApplication};
use crate::body::{Body, BoxError};
use crate::scope::UrlRoute;

type HttpHandler =
    dyn Fn(Request<Body>) -> BoxFuture<Result<Response<Body>, BoxError>> + Send + Sync;

/// The top-level application: HTTP requests go to an HTTP service, WebSocket handshakes to a
/// [`WebSocketApplication`] (Channels' `ProtocolTypeRouter`).
///
/// A protocol with no application is answered with 404.
///
/// ```
/// use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
/// # use switchboard::consumer::{Context, WebSocketConsumer};
/// # use switchboard::websocket::Message;
/// # #[derive(Default)] struct Echo;
/// # #[async_trait::async_trait]
/// # impl WebSocketConsumer for Echo {
/// #     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> { Ok(()) }
/// # }
///
/// let http = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
/// let app = ProtocolTypeRouter::new()
///     .http(http)
///     .websocket(UrlRouter::new().route("/ws/echo/", Echo::default));
/// # drop(app);
/// ```
#[derive(Default, Clone)]
pub struct ProtocolTypeRouter {
    http: Option<Arc<HttpHandler>>,
    websocket: Option<Arc<dyn WebSocketApplication>>,
}

impl std::fmt::Debug for ProtocolTypeRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtocolTypeRouter")
            .field("http", &self.http.is_some())
            .field("websocket", &self.websocket.is_some())
            .finish()
    }
}

impl ProtocolTypeRouter {
    /// A router with no applications: every request gets 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends plain HTTP requests to `service`: any tower service over requests with a [`Body`],
    /// such as an axum `Router` or `tower::service_fn`. A service error is answered with 500 and
    /// logged.
    ///
    /// Requests carry extensions from the server: the [`LayerHandle`](crate::layer::LayerHandle)
    /// its consumers use, a [`StatsHandle`](crate::StatsHandle) and a
    /// [`ClientInfo`](crate::scope::ClientInfo) (axum: `Extension<LayerHandle>`).
    pub fn http<S, B>(mut self, service: S) -> Self
    where
        S: tower_service::Service<Request<Body>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let handler = move |request: Request<Body>| -> BoxFuture<_> {
            let mut service = service.clone();
            Box::pin(async move {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                let response = service.call(request).await.map_err(Into::into)?;
                Ok(response.map(Body::new))
            })
        };
        self.http = Some(Arc::new(handler));
        self
    }

    /// Sends WebSocket handshakes to `app`: a [`UrlRouter`], middleware, or a consumer factory.
    pub fn websocket(mut self, app: impl WebSocketApplication) -> Self {
        self.websocket = Some(Arc::new(app));
        self
    }

    pub(crate) async fn call_http(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Body>, Infallible> {
        let Some(http) = &self.http else {
            return Ok(status_response(StatusCode::NOT_FOUND));
        };
        match http(request).await {
            Ok(response) => Ok(response),
            Err(error) => {
                tracing::error!(target: "switchboard::server", %error, "HTTP application failed");
                Ok(status_response(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }

    pub(crate) fn websocket_app(&self) -> Option<&Arc<dyn WebSocketApplication>> {
        self.websocket.as_ref()
    }
}

/// A WebSocket application alone (a [`UrlRouter`], middleware, a consumer factory) is a
/// `ProtocolTypeRouter` that answers plain HTTP requests with 404.
impl<A: WebSocketApplication> From<A> for ProtocolTypeRouter {
    fn from(app: A) -> Self {
        Self::new().websocket(app)
    }
}

/// A response with `status` and its reason phrase as a plain-text body.
pub(crate) fn status_response(status: StatusCode) -> Response<Body> {
    let text = status.canonical_reason().unwrap_or("");
    let mut response = Response::new(Body::from(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The parameter name nested routes capture their rest of the path in.
const NEST_REST: &str = "__switchboard_nested_rest";

struct Route {
    app: Arc<dyn WebSocketApplication>,
    /// The router this route hands the rest of the path to, for a `nest`.
    nested: Option<Arc<UrlRouter>>,
}

/// Routes WebSocket connections by path (Channels' `URLRouter`), on `matchit`.
///
/// Routes use matchit's syntax: `{name}` captures one segment, `{*name}` the rest of the path;
/// captures land in [`Scope::url_route`](crate::scope::Scope::url_route). A path with no route is
/// answered with HTTP 404 and never upgraded.
///
/// ```
/// use switchboard::routing::UrlRouter;
/// # use switchboard::consumer::{Context, WebSocketConsumer};
/// # use switchboard::websocket::Message;
/// # #[derive(Default)] struct Chat;
/// # #[async_trait::async_trait]
/// # impl WebSocketConsumer for Chat {
/// #     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> { Ok(()) }
/// # }
/// # #[derive(Default)] struct Files;
/// # #[async_trait::async_trait]
/// # impl WebSocketConsumer for Files {
/// #     async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> { Ok(()) }
/// # }
///
/// let api = UrlRouter::new()
///     .route("/chat/{room}/", Chat::default)        // /ws/chat/lobby/ → room = "lobby"
///     .route("/files/{*path}", Files::default);      // /ws/files/a/b.txt → path = "a/b.txt"
/// let router = UrlRouter::new().nest("/ws", api);
/// # drop(router);
/// ```
#[doc(alias = "URLRouter")]
#[derive(Default)]
pub struct UrlRouter {
    routes: matchit::Router<Route>,
}

impl std::fmt::Debug for UrlRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlRouter").finish_non_exhaustive()
    }
}

impl UrlRouter {
    /// A router with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves paths matching `path` with `app`.
    ///
    /// # Panics
    ///
    /// If `path` is not a valid matchit route or conflicts with one already added (a programmer
    /// error, caught at startup).
    #[track_caller]
    pub fn route(mut self, path: &str, app: impl WebSocketApplication) -> Self {
        self.insert(path, Arc::new(app), None);
        self
    }

    /// The route `path` (percent-decoded, as [`Scope::path`](crate::scope::Scope::path)) would
    /// take, through nested routers: the parameters it would capture, or `None` for no route
    /// (404). For tests of your routing, and for debugging.
    pub fn resolve(&self, path: &str) -> Option<UrlRoute> {
        let mut params = UrlRoute::default();
        let mut router = self;
        let mut offset = 0;
        loop {
            let (route, next) = router.step(path, offset, &mut params)?;
            match &route.nested {
                Some(inner) => {
                    router = inner;
                    offset = next;
                }
                None => return Some(params),
            }
        }
    }

    /// Matches what is left of `path` after `offset`, adding the captures to `params`; returns
    /// the route and where a nested router would go on.
    fn step<'a>(
        &'a self,
        path: &str,
        offset: usize,
        params: &mut UrlRoute,
    ) -> Option<(&'a Route, usize)> {
        let remaining = match path.get(offset..).unwrap_or("") {
            "" => "/",
            rest => rest,
        };
        let matched = self.routes.at(remaining).ok()?;
        let mut next = path.len();
        for (name, value) in matched.params.iter() {
            if name == NEST_REST {
                // `value` ends the path; the nested router sees it with its leading '/'.
                next = path.len() - value.len() - 1;
            } else {
                params.push(name, value);
            }
        }
        Some((matched.value, next))
    }

    /// Serves every path under `prefix` with `router`, which sees the rest of the path (`/` for
    /// `prefix` itself). `prefix` starts with `/`; a trailing `/` is ignored.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route), and if `prefix` does not start with `/`.
    #[track_caller]
    pub fn nest(mut self, prefix: &str, router: UrlRouter) -> Self {
        assert!(prefix.starts_with('/'), "nest prefix must start with '/'");
        let prefix = prefix.trim_end_matches('/');
        let router = Arc::new(router);
        let app: Arc<dyn WebSocketApplication> = router.clone();
        if !prefix.is_empty() {
            self.insert(prefix, app.clone(), Some(router.clone()));
        }
        self.insert(&format!("{prefix}/"), app.clone(), Some(router.clone()));
        self.insert(&format!("{prefix}/{{*{NEST_REST}}}"), app, Some(router));
        self
    }

    #[track_caller]
    fn insert(
        &mut self,
        path: &str,
        app: Arc<dyn WebSocketApplication>,
        nested: Option<Arc<UrlRouter>>,
    ) {
        if let Err(error) = self.routes.insert(path, Route { app, nested }) {
            panic!("invalid route {path:?}: {error}");
        }
    }
}

impl WebSocketApplication for UrlRouter {
    fn call(&self, mut handshake: Handshake) -> BoxFuture<()> {
        let scope = handshake.scope_mut();
        let (path, offset) = (std::mem::take(&mut scope.path), scope.route_offset);
        let step = self.step(&path, offset, &mut scope.url_route);
        scope.path = path;
        let Some((route, next)) = step else {
            tracing::debug!(target: "switchboard::routing", path = %scope.path, "no WebSocket route: 404");
            handshake.reject(StatusCode::NOT_FOUND);
            return Box::pin(std::future::ready(()));
        };
        if route.nested.is_some() {
            scope.route_offset = next;
        }
        route.app.call(handshake)
    }
}
