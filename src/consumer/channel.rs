//! `ChannelContext`: a consumer's own channel and the layer, shared by every kind of consumer.

use std::sync::Arc;

use serde::Serialize;

use crate::layer::{ChannelLayer, GroupSent, IntoEvent, LayerError, LayerHandle, Presence};

/// A consumer's side of the channel layer: its channel name and the layer, with the shortcuts
/// consumers use. Workers get one as their context; WebSocket [`Context`](super::Context)s and
/// SSE contexts hold one ([`Context::channel`](super::Context::channel)) and offer the same
/// methods, so `ctx.group_send(..)` reads the same in each.
#[derive(Clone)]
pub struct ChannelContext {
    channel_name: Arc<str>,
    layer: LayerHandle,
}

impl std::fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelContext")
            .field("channel_name", &self.channel_name)
            .finish_non_exhaustive()
    }
}

impl ChannelContext {
    pub(crate) fn new(channel_name: Arc<str>, layer: LayerHandle) -> Self {
        Self {
            channel_name,
            layer,
        }
    }

    /// This consumer's channel name: anyone holding it can send events to this consumer.
    pub fn channel_name(&self) -> &str {
        &self.channel_name
    }

    /// The channel layer, for what the shortcuts here do not cover (clone it for tasks the
    /// consumer spawns).
    pub fn channel_layer(&self) -> &LayerHandle {
        &self.layer
    }

    /// Adds this consumer's channel to `group`. Memberships end by themselves when the consumer
    /// does.
    ///
    /// # Errors
    ///
    /// [`LayerError::InvalidName`] for a bad group name, or the layer's own failure.
    pub async fn group_add(&self, group: &str) -> Result<(), LayerError> {
        self.layer.group_add(group, &self.channel_name).await
    }

    /// Takes this consumer's channel out of `group`.
    ///
    /// # Errors
    ///
    /// As [`group_add`](Self::group_add).
    pub async fn group_discard(&self, group: &str) -> Result<(), LayerError> {
        self.layer.group_discard(group, &self.channel_name).await
    }

    /// Sends `event` (serialized once, shared by every member) to every member of `group`, this
    /// consumer too if it is one: an [`Event`](crate::layer::Event), or `&T` for a `T` that
    /// serializes to a JSON object with a string `"type"`. Says whether anybody received it
    /// ([`GroupSent`]). As [`LayerHandle::group_send`].
    ///
    /// # Errors
    ///
    /// [`LayerError::Event`] if it does not serialize so; [`LayerError::InvalidName`] for a bad
    /// group name; a networked layer's own failure.
    pub async fn group_send(
        &self,
        group: &str,
        event: impl IntoEvent,
    ) -> Result<GroupSent, LayerError> {
        self.layer.group_send(group, event).await
    }

    /// Sends `event` to one channel by name (point to point): another consumer's channel name,
    /// a worker's channel, or this consumer's own (its `event` handler gets it). As
    /// [`LayerHandle::send`].
    ///
    /// A full recipient fails the call with [`LayerError::ChannelFull`], as in Channels; returned
    /// from a WebSocket handler with `?`, that error is logged at `WARN` and the *sender* stays
    /// connected (the recipient is the slow one).
    ///
    /// # Errors
    ///
    /// [`LayerError::ChannelFull`] if that channel is full; otherwise as
    /// [`group_send`](Self::group_send).
    pub async fn send_to_channel(
        &self,
        channel: &str,
        event: impl IntoEvent,
    ) -> Result<(), LayerError> {
        self.layer.send(channel, event).await
    }

    /// Lists this consumer in `group`'s presence with `meta` (joining the group); the group gets a
    /// `presence.join` event, and a `presence.leave` when this consumer goes, however it goes.
    ///
    /// # Errors
    ///
    /// [`LayerError::Event`] if `meta` does not serialize; [`LayerError::InvalidName`] for a bad
    /// group name.
    pub async fn presence_add<T: Serialize + ?Sized>(
        &self,
        group: &str,
        meta: &T,
    ) -> Result<(), LayerError> {
        let meta = serde_json::to_value(meta).map_err(|e| LayerError::Event(e.into()))?;
        self.layer
            .presence_add(group, &self.channel_name, meta)
            .await
    }

    /// Takes this consumer off `group`'s presence list (it stays in the group).
    ///
    /// # Errors
    ///
    /// As [`group_add`](Self::group_add).
    pub async fn presence_remove(&self, group: &str) -> Result<(), LayerError> {
        self.layer.presence_remove(group, &self.channel_name).await
    }

    /// Who is listed in `group` right now.
    ///
    /// # Errors
    ///
    /// As [`group_add`](Self::group_add).
    pub async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        self.layer.presence_list(group).await
    }
}

/// Gives a context that holds a [`ChannelContext`] in field `$field` the same layer methods, each
/// forwarding to it (one set of methods shared without `Deref`). The returned futures borrow
/// only the `ChannelContext`, so they are `Send` though the context (which owns a socket) is not
/// `Sync`.
macro_rules! channel_methods {
    ($context:ty, $field:ident) => {
        impl $context {
            /// The consumer's side of the channel layer, to hand to code that takes a
            /// [`ChannelContext`](crate::consumer::ChannelContext).
            pub fn channel(&self) -> &crate::consumer::ChannelContext {
                &self.$field
            }

            /// This consumer's channel name: anyone holding it can send events to this consumer.
            pub fn channel_name(&self) -> &str {
                self.$field.channel_name()
            }

            /// The channel layer, for what the shortcuts here do not cover (clone it for tasks
            /// the consumer spawns).
            pub fn channel_layer(&self) -> &crate::layer::LayerHandle {
                self.$field.channel_layer()
            }

            /// As [`ChannelContext::group_add`](crate::consumer::ChannelContext::group_add):
            /// adds this consumer to `group` (left by itself when the consumer ends).
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::group_add`](crate::consumer::ChannelContext::group_add).
            pub fn group_add<'a>(
                &'a self,
                group: &'a str,
            ) -> impl std::future::Future<Output = Result<(), crate::layer::LayerError>> + Send + 'a
            {
                self.$field.group_add(group)
            }

            /// As [`ChannelContext::group_discard`](crate::consumer::ChannelContext::group_discard).
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::group_discard`](crate::consumer::ChannelContext::group_discard).
            pub fn group_discard<'a>(
                &'a self,
                group: &'a str,
            ) -> impl std::future::Future<Output = Result<(), crate::layer::LayerError>> + Send + 'a
            {
                self.$field.group_discard(group)
            }

            /// As [`ChannelContext::group_send`](crate::consumer::ChannelContext::group_send):
            /// `event` (an [`Event`](crate::layer::Event), or `&T` for a `T` that serializes to a
            /// JSON object with a string `"type"`) to every member of `group`.
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::group_send`](crate::consumer::ChannelContext::group_send).
            pub fn group_send<'a>(
                &'a self,
                group: &'a str,
                event: impl crate::layer::IntoEvent,
            ) -> impl std::future::Future<
                Output = Result<crate::layer::GroupSent, crate::layer::LayerError>,
            > + Send
                   + 'a {
                let event = crate::layer::IntoEvent::into_event(event);
                let channel = &self.$field;
                async move { channel.group_send(group, event?).await }
            }

            /// As [`ChannelContext::send_to_channel`](crate::consumer::ChannelContext::send_to_channel).
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::send_to_channel`](crate::consumer::ChannelContext::send_to_channel).
            pub fn send_to_channel<'a>(
                &'a self,
                channel: &'a str,
                event: impl crate::layer::IntoEvent,
            ) -> impl std::future::Future<Output = Result<(), crate::layer::LayerError>> + Send + 'a
            {
                let event = crate::layer::IntoEvent::into_event(event);
                let context = &self.$field;
                async move { context.send_to_channel(channel, event?).await }
            }

            /// As [`ChannelContext::presence_add`](crate::consumer::ChannelContext::presence_add).
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::presence_add`](crate::consumer::ChannelContext::presence_add).
            pub fn presence_add<'a, T: serde::Serialize + ?Sized>(
                &'a self,
                group: &'a str,
                meta: &T,
            ) -> impl std::future::Future<Output = Result<(), crate::layer::LayerError>> + Send + 'a
            {
                let meta = serde_json::to_value(meta);
                let channel = &self.$field;
                async move {
                    let meta = meta.map_err(|e| crate::layer::LayerError::Event(e.into()))?;
                    channel.presence_add(group, &meta).await
                }
            }

            /// As [`ChannelContext::presence_remove`](crate::consumer::ChannelContext::presence_remove).
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::presence_remove`](crate::consumer::ChannelContext::presence_remove).
            pub fn presence_remove<'a>(
                &'a self,
                group: &'a str,
            ) -> impl std::future::Future<Output = Result<(), crate::layer::LayerError>> + Send + 'a
            {
                self.$field.presence_remove(group)
            }

            /// As [`ChannelContext::presence_list`](crate::consumer::ChannelContext::presence_list).
            ///
            /// # Errors
            ///
            /// As [`ChannelContext::presence_list`](crate::consumer::ChannelContext::presence_list).
            pub fn presence_list<'a>(
                &'a self,
                group: &'a str,
            ) -> impl std::future::Future<
                Output = Result<Vec<crate::layer::Presence>, crate::layer::LayerError>,
            > + Send
                   + 'a {
                self.$field.presence_list(group)
            }
        }
    };
}
pub(crate) use channel_methods;
