//! [`BlockingChannelLayer`]: the layer for threads that are not async.

use std::fmt;

use super::{ChannelLayer, Event, GroupSent, IntoEvent, LayerError, LayerHandle, Presence};

/// The layer for code that is not async: a thread of its own, a callback from a C library. Each
/// call blocks the calling thread until the layer has answered, driving the operation on the
/// given tokio runtime.
///
/// ```
/// use switchboard::layer::{BlockingChannelLayer, ChannelLayer, Event, InMemoryChannelLayer};
///
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// let layer = InMemoryChannelLayer::new();
/// let mut inbox = runtime.block_on(layer.new_channel()).unwrap();
/// let blocking = BlockingChannelLayer::new(layer, runtime.handle().clone());
/// let name = inbox.name().to_owned();
/// std::thread::spawn(move || {
///     blocking.send(&name, Event::from_json(r#"{"type":"tick"}"#).unwrap()).unwrap();
/// })
/// .join()
/// .unwrap();
/// assert_eq!(inbox.try_recv().unwrap().event_type(), "tick");
/// ```
#[derive(Clone)]
pub struct BlockingChannelLayer {
    layer: LayerHandle,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for BlockingChannelLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingChannelLayer")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl BlockingChannelLayer {
    /// Wraps `layer`; operations run on `runtime` (e.g. `Handle::current()` taken in async code
    /// before spawning the thread).
    pub fn new(layer: impl ChannelLayer, runtime: tokio::runtime::Handle) -> Self {
        Self {
            layer: layer.into_handle(),
            runtime,
        }
    }

    /// As [`ChannelLayer::send`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::send`].
    ///
    /// # Panics
    ///
    /// If called from async code (a tokio runtime thread), as `Handle::block_on` does: use the
    /// async layer there.
    pub fn send(&self, channel: &str, event: impl IntoEvent) -> Result<(), LayerError> {
        self.runtime.block_on(self.layer.send(channel, event))
    }

    /// As [`ChannelLayer::group_send`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::group_send`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn group_send(&self, group: &str, event: impl IntoEvent) -> Result<GroupSent, LayerError> {
        self.runtime.block_on(self.layer.group_send(group, event))
    }

    /// As [`ChannelLayer::group_add`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::group_add`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.runtime.block_on(self.layer.group_add(group, channel))
    }

    /// As [`ChannelLayer::group_discard`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::group_discard`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.runtime
            .block_on(self.layer.group_discard(group, channel))
    }

    /// As [`ChannelLayer::receive`]: blocks until a message comes.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::receive`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        self.runtime.block_on(self.layer.receive(channel))
    }

    /// As [`ChannelLayer::presence_list`], blocking.
    ///
    /// # Errors
    ///
    /// As [`ChannelLayer::presence_list`].
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        self.runtime.block_on(self.layer.presence_list(group))
    }
}
