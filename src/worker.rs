//! Workers: consumers bound to fixed channel names, for background jobs (Channels'
//! `ChannelNameRouter` and `runworker`).
//!
//! Anything holding the layer — a WebSocket consumer, an HTTP handler, another worker — sends a
//! job with `send("thumbnails", event)`. The job waits in the named channel's bounded queue until
//! the worker takes it; a full queue makes `send` fail with
//! [`LayerError::ChannelFull`](crate::layer::LayerError::ChannelFull), so no job is lost unseen.
//!
//! ```
//! use serde::Deserialize;
//! use switchboard::consumer::ChannelContext;
//! use switchboard::layer::{ChannelLayer, Event, InMemoryChannelLayer};
//! use switchboard::worker::{ChannelConsumer, ChannelNameRouter};
//!
//! #[derive(Deserialize)]
//! #[serde(tag = "type", rename = "thumbnail.make")]
//! struct MakeThumbnail { image: String, reply_to: String }
//!
//! struct Thumbnailer;
//!
//! #[switchboard::async_trait]
//! impl ChannelConsumer for Thumbnailer {
//!     type Event = MakeThumbnail;
//!
//!     async fn event(&mut self, ctx: &ChannelContext, job: MakeThumbnail) -> switchboard::Result<()> {
//!         let thumbnail = format!("small-{}", job.image); // the slow part
//!         ctx.send_to_channel(&job.reply_to, &serde_json::json!({
//!             "type": "thumbnail.ready", "thumbnail": thumbnail,
//!         })).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = InMemoryChannelLayer::new();
//! let workers = ChannelNameRouter::new().route("thumbnails", Thumbnailer).spawn(layer.clone());
//!
//! let mut inbox = layer.new_channel().await?;
//! let job = serde_json::json!({ "type": "thumbnail.make", "image": "cat.png", "reply_to": inbox.name() });
//! layer.send("thumbnails", Event::new(&job)?).await?;
//! let ready = inbox.recv().await;
//! assert_eq!(ready.decode::<serde_json::Value>()?["thumbnail"], "small-cat.png");
//! workers.shutdown().await;
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::application::BoxFuture;
use crate::consumer::{decode_event, guarded, ChannelContext};
use crate::layer::{validate_channel_name, ChannelLayer, LayerHandle};

/// A consumer of one named channel's events: one instance per channel, one event at a time
/// (Channels' consumers under a `ChannelNameRouter`).
#[async_trait]
pub trait ChannelConsumer: Send + 'static {
    /// The events it takes, usually a `#[serde(tag = "type")]` enum. An event that does not
    /// parse is logged at `WARN` and dropped.
    type Event: DeserializeOwned + Send;

    /// Handles one event. `ctx` is the worker's channel (its name is the routed name) and the
    /// layer, to answer or fan out.
    ///
    /// # Errors
    ///
    /// An error (or panic) is logged at `ERROR` on `switchboard::worker`; the worker goes on
    /// with the next event.
    async fn event(&mut self, ctx: &ChannelContext, event: Self::Event) -> crate::Result<()>;
}

type Start = Box<dyn FnOnce(LayerHandle, CancellationToken) -> BoxFuture<()> + Send>;

/// Binds [`ChannelConsumer`]s to fixed channel names; [`spawn`](Self::spawn) runs them.
#[derive(Default)]
pub struct ChannelNameRouter {
    routes: Vec<(String, Start)>,
}

impl std::fmt::Debug for ChannelNameRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.routes.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ChannelNameRouter")
            .field("channels", &names)
            .finish()
    }
}

impl ChannelNameRouter {
    /// A router with no channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves the channel named `channel` with `consumer`.
    ///
    /// # Panics
    ///
    /// If `channel` is not a valid channel name, is process-specific (has a `!`), or is routed
    /// twice: programmer errors, caught at startup.
    #[track_caller]
    pub fn route<C: ChannelConsumer>(mut self, channel: &str, consumer: C) -> Self {
        if let Err(error) = validate_channel_name(channel) {
            panic!("{error}");
        }
        assert!(
            !crate::layer::is_process_specific(channel),
            "worker channel {channel:?} must be a plain name, not a process-specific one"
        );
        assert!(
            self.routes.iter().all(|(name, _)| name != channel),
            "channel {channel:?} is routed twice"
        );
        let name = channel.to_owned();
        let start: Start =
            Box::new(move |layer, stop| Box::pin(run_worker(consumer, name, layer, stop)));
        self.routes.push((channel.to_owned(), start));
        self
    }

    /// Starts one task per channel, reading from `layer`, and returns their handle.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self, layer: impl ChannelLayer) -> Workers {
        let layer = layer.into_handle();
        let stop = CancellationToken::new();
        let tasks = self
            .routes
            .into_iter()
            .map(|(_, start)| tokio::spawn(start(layer.clone(), stop.clone())))
            .collect();
        Workers { stop, tasks }
    }
}

/// Running workers, made by [`ChannelNameRouter::spawn`]. Dropping it stops them after the event
/// each is handling.
#[derive(Debug)]
pub struct Workers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Stops every worker after the event it is handling and waits for them. Events still queued
    /// stay in their channels (a worker started later takes them).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run_worker<C: ChannelConsumer>(
    mut consumer: C,
    channel: String,
    layer: LayerHandle,
    stop: CancellationToken,
) {
    let ctx = ChannelContext::new(channel.as_str().into(), layer.clone());
    tracing::debug!(target: "switchboard::worker", channel, "worker started");
    loop {
        let received = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            received = layer.receive(&channel) => received,
        };
        let event = match received {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(target: "switchboard::worker", channel, %error, "worker cannot receive; stopping");
                break;
            }
        };
        let Some(typed) = decode_event::<C::Event>(&event, "worker", &channel) else {
            continue;
        };
        if let Err(failure) = guarded(consumer.event(&ctx, typed)).await {
            failure.log("worker", "event", "the worker goes on");
        }
    }
    tracing::debug!(target: "switchboard::worker", channel, "worker stopped");
}
