//! [`TestServer`]: the application served for real on 127.0.0.1 and a free port.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::layer::{ChannelLayer, LayerHandle};
use crate::routing::ProtocolTypeRouter;
use crate::{ServerConfig, StatsHandle};

/// An application served by [`serve`](crate::serve) on 127.0.0.1 and a port the system picked,
/// for tests that speak real HTTP and WebSocket to it. Made by [`TestServer::start`] or
/// [`TestServerBuilder::start`]; dropping it starts a graceful shutdown (WebSockets close with
/// 1001), and [`shutdown`](Self::shutdown) waits for it.
///
/// ```
/// use switchboard::routing::ProtocolTypeRouter;
/// use switchboard::testing::TestServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let http = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let server = TestServer::start(ProtocolTypeRouter::new().http(http)).await?;
/// assert!(server.url("/").starts_with("http://127.0.0.1:"));
/// assert!(server.ws_url("/ws/").starts_with("ws://127.0.0.1:"));
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    layer: LayerHandle,
    stats: StatsHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings for a [`TestServer`]: made by [`TestServer::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start`ed"]
pub struct TestServerBuilder {
    app: ProtocolTypeRouter,
    layer: LayerHandle,
    config: ServerConfig,
}

impl TestServerBuilder {
    /// Serves with `layer` (share it with the test to send to consumers).
    pub fn channel_layer(mut self, layer: impl ChannelLayer) -> Self {
        self.layer = layer.into_handle();
        self
    }

    /// Serves with `config`.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds 127.0.0.1:0 and starts serving on a task of the current runtime.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn start(self) -> std::io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = crate::serve(listener, self.app)
            .channel_layer(self.layer.clone())
            .config(self.config);
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = server.with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        Ok(TestServer {
            addr,
            layer: self.layer,
            stats,
            stop: Some(stop),
            task: Some(tokio::spawn(server)),
        })
    }
}

impl TestServer {
    /// Serves `app` with an in-memory layer and the default [`ServerConfig`].
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn start(app: impl Into<ProtocolTypeRouter>) -> std::io::Result<Self> {
        Self::builder(app).start().await
    }

    /// A server for `app` to configure before it starts.
    pub fn builder(app: impl Into<ProtocolTypeRouter>) -> TestServerBuilder {
        TestServerBuilder {
            app: app.into(),
            layer: LayerHandle::in_memory(),
            config: ServerConfig::default(),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` followed by `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The channel layer its consumers and handlers use.
    pub fn layer(&self) -> &LayerHandle {
        &self.layer
    }

    /// Its counts.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Shuts down gracefully (WebSockets close with 1001, `disconnect`s run) and waits until
    /// `serve` has returned.
    ///
    /// # Errors
    ///
    /// What `serve` returned.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
