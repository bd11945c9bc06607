//! [`LayerHandle`]: the one cheap, cloneable way to hold a channel layer, whatever its backend.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{ChannelLayer, ChannelReceiver, Event, IntoEvent, LayerError, LayerStats, Presence};

/// A shared channel layer of any backend: what consumers, HTTP handlers, workers and SSE streams
/// hold (Channels' `get_channel_layer()`). Cloning it is one atomic increment.
///
/// Every layer converts into one with [`LayerHandle::new`] (or [`ChannelLayer::into_handle`]),
/// and a handle converts into itself without being wrapped again. The server and
/// [`AppService`](crate::AppService) put the handle their consumers use into every HTTP
/// request's extensions, so an axum handler takes `Extension<LayerHandle>`:
///
/// ```
/// use axum::{extract::Path, Extension};
/// use serde::Serialize;
/// use switchboard::layer::LayerHandle;
///
/// #[derive(Serialize)]
/// #[serde(tag = "type", rename = "chat.message")]
/// struct ChatMessage { message: String }
///
/// async fn announce(Path(room): Path<String>, Extension(layer): Extension<LayerHandle>) -> &'static str {
///     match layer.group_send(&format!("chat_{room}"), &ChatMessage { message: "hi".into() }).await {
///         Ok(_) => "sent",
///         Err(_) => "failed",
///     }
/// }
/// let app: axum::Router = axum::Router::new().route("/rooms/{room}/announce", axum::routing::post(announce));
/// # drop(app);
/// ```
///
/// Its `send` and `group_send` take any [`IntoEvent`] (an [`Event`], or `&T` for a serializable
/// `T` whose JSON has a string `"type"`), as [`ChannelContext`](crate::consumer::ChannelContext)'s
/// do; the trait's own methods, which take an [`Event`], stay reachable through
/// [`ChannelLayer`].
#[doc(alias = "get_channel_layer")]
#[derive(Clone)]
pub struct LayerHandle(Arc<dyn ChannelLayer>);

impl LayerHandle {
    /// Shares `layer`. A `LayerHandle` given here is returned as it is, not wrapped again.
    pub fn new(layer: impl ChannelLayer) -> Self {
        layer.into_handle()
    }

    /// A handle on a new [`InMemoryChannelLayer`](super::InMemoryChannelLayer) with the default
    /// configuration: what [`serve`](crate::serve) and [`AppService`](crate::AppService) use when
    /// given no layer.
    pub fn in_memory() -> Self {
        Self(Arc::new(super::InMemoryChannelLayer::new()))
    }

    pub(crate) fn from_arc(layer: Arc<dyn ChannelLayer>) -> Self {
        Self(layer)
    }

    /// The layer behind the handle, shared.
    pub fn as_arc(&self) -> &Arc<dyn ChannelLayer> {
        &self.0
    }

    /// Sends `event` to the channel named `channel` (point to point), as
    /// [`ChannelLayer::send`].
    ///
    /// # Errors
    ///
    /// [`LayerError::Event`] if `event` is not a JSON object with a string `"type"`; otherwise as
    /// [`ChannelLayer::send`] ([`LayerError::ChannelFull`] when the recipient's channel is full).
    pub async fn send(&self, channel: &str, event: impl IntoEvent) -> Result<(), LayerError> {
        self.0.send(channel, event.into_event()?).await
    }

    /// Sends `event`, encoded once, to every member of `group`, as [`ChannelLayer::group_send`].
    ///
    /// # Errors
    ///
    /// [`LayerError::Event`] if `event` is not a JSON object with a string `"type"`; otherwise as
    /// [`ChannelLayer::group_send`].
    pub async fn group_send(
        &self,
        group: &str,
        event: impl IntoEvent,
    ) -> Result<super::GroupSent, LayerError> {
        self.0.group_send(group, event.into_event()?).await
    }
}

/// A layer already shared as an `Arc<dyn ChannelLayer>` becomes a handle without being wrapped
/// again.
impl From<Arc<dyn ChannelLayer>> for LayerHandle {
    fn from(layer: Arc<dyn ChannelLayer>) -> Self {
        Self(layer)
    }
}

impl Default for LayerHandle {
    /// As [`LayerHandle::in_memory`].
    fn default() -> Self {
        Self::in_memory()
    }
}

impl fmt::Debug for LayerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LayerHandle").field(&self.0).finish()
    }
}

#[async_trait]
impl ChannelLayer for LayerHandle {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        self.0.new_channel().await
    }
    async fn send(&self, channel: &str, event: Event) -> Result<(), LayerError> {
        self.0.send(channel, event).await
    }
    async fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        self.0.receive(channel).await
    }
    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.0.group_add(group, channel).await
    }
    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.0.group_discard(group, channel).await
    }
    async fn group_send(&self, group: &str, event: Event) -> Result<super::GroupSent, LayerError> {
        self.0.group_send(group, event).await
    }
    async fn presence_add(
        &self,
        group: &str,
        channel: &str,
        meta: serde_json::Value,
    ) -> Result<(), LayerError> {
        self.0.presence_add(group, channel, meta).await
    }
    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.0.presence_remove(group, channel).await
    }
    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        self.0.presence_list(group).await
    }
    async fn flush(&self) -> Result<(), LayerError> {
        self.0.flush().await
    }
    fn stats(&self) -> LayerStats {
        self.0.stats()
    }
    async fn recover(
        &self,
        group: &str,
        since: &super::StreamPosition,
    ) -> Result<super::Recovery, LayerError> {
        self.0.recover(group, since).await
    }
    fn into_handle(self) -> LayerHandle {
        self
    }
}
