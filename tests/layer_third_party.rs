//! A channel layer written outside the crate, with the public API only, passes the public
//! conformance suite: here a layer that wraps another and counts the operations it forwards (the
//! shape of a tracing or metrics layer), and a process-specific channel made with
//! `ChannelReceiver::with_queue`, the building block for a layer's own queues.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchboard::async_trait;
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Event, GroupSent, InMemoryChannelLayer, InMemoryConfig,
    LayerError, LayerHandle, LayerStats, Presence, Recovery, StreamPosition,
};
use switchboard::testing::conformance::{self, Case, LayerFactory};

#[derive(Debug)]
struct Counting {
    inner: LayerHandle,
    operations: Arc<AtomicU64>,
}

impl Counting {
    fn count(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl ChannelLayer for Counting {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        self.count();
        self.inner.new_channel().await
    }
    async fn send(&self, channel: &str, event: Event) -> Result<(), LayerError> {
        self.count();
        ChannelLayer::send(&self.inner, channel, event).await
    }
    async fn receive(&self, channel: &str) -> Result<Event, LayerError> {
        self.count();
        self.inner.receive(channel).await
    }
    async fn group_add(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.count();
        self.inner.group_add(group, channel).await
    }
    async fn group_discard(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.count();
        self.inner.group_discard(group, channel).await
    }
    async fn group_send(&self, group: &str, event: Event) -> Result<GroupSent, LayerError> {
        self.count();
        ChannelLayer::group_send(&self.inner, group, event).await
    }
    async fn presence_add(
        &self,
        group: &str,
        channel: &str,
        meta: serde_json::Value,
    ) -> Result<(), LayerError> {
        self.count();
        self.inner.presence_add(group, channel, meta).await
    }
    async fn presence_remove(&self, group: &str, channel: &str) -> Result<(), LayerError> {
        self.count();
        self.inner.presence_remove(group, channel).await
    }
    async fn presence_list(&self, group: &str) -> Result<Vec<Presence>, LayerError> {
        self.count();
        self.inner.presence_list(group).await
    }
    async fn flush(&self) -> Result<(), LayerError> {
        self.count();
        self.inner.flush().await
    }
    fn stats(&self) -> LayerStats {
        self.inner.stats()
    }
    async fn recover(&self, group: &str, since: &StreamPosition) -> Result<Recovery, LayerError> {
        self.count();
        self.inner.recover(group, since).await
    }
}

struct Factory {
    layer: InMemoryChannelLayer,
    operations: Arc<AtomicU64>,
    streams: bool,
}

#[async_trait]
impl LayerFactory for Factory {
    async fn process(&self) -> LayerHandle {
        LayerHandle::new(Counting {
            inner: LayerHandle::new(self.layer.clone()),
            operations: self.operations.clone(),
        })
    }
    fn separate_processes(&self) -> bool {
        false
    }
    fn keeps_streams(&self) -> bool {
        self.streams
    }
}

#[tokio::test]
async fn a_layer_of_another_crate_passes_the_public_suite() {
    for case in Case::ALL {
        let factory = Factory {
            layer: InMemoryChannelLayer::with_config(
                InMemoryConfig::default().capacity(5).group_history(
                    "stream.*",
                    5,
                    Duration::from_secs(300),
                ),
            ),
            operations: Arc::default(),
            streams: true,
        };
        conformance::run(*case, &factory).await;
        assert!(
            factory.operations.load(Ordering::Relaxed) > 0,
            "{}: the calls went through the wrapper",
            case.name()
        );
    }
}

/// A layer that keeps no streams says so, and the suite checks that it never claims a recovery.
#[tokio::test]
async fn a_layer_without_streams_passes_the_stream_case_by_never_recovering() {
    let factory = Factory {
        layer: InMemoryChannelLayer::with_config(InMemoryConfig::default().capacity(5)),
        operations: Arc::default(),
        streams: false,
    };
    conformance::run(Case::AStreamGivesBackWhatWasMissed, &factory).await;
}

#[tokio::test]
async fn with_queue_makes_a_bounded_expiring_channel_and_reports_its_drop() {
    let dropped = Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = dropped.clone();
    let (mut receiver, sender) =
        ChannelReceiver::with_queue("mine.a!1", 2, Duration::from_secs(60), move |name| {
            *seen.lock().unwrap() = Some(name.to_owned());
        });
    let hello = Event::typed("hello", &()).unwrap();
    sender.send(hello.clone()).unwrap();
    sender.send(hello.clone()).unwrap();
    assert!(matches!(
        sender.send(hello),
        Err(LayerError::ChannelFull { capacity: 2, .. })
    ));
    assert_eq!(receiver.recv().await.event_type(), "hello");
    assert_eq!(sender.len(), 1);
    drop(receiver);
    assert_eq!(dropped.lock().unwrap().as_deref(), Some("mine.a!1"));
}
