//! One channel's bounded queue with per-message expiry: a short mutex and a `Notify`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Event;

struct Queued {
    event: Event,
    expires_at: Instant,
}

/// A bounded FIFO of events. Every message gets the same expiry, so expired ones are always at the
/// front and are dropped from there, in O(1) each.
pub(crate) struct ChannelQueue {
    messages: Mutex<VecDeque<Queued>>,
    notify: Notify,
    capacity: usize,
    expiry: Duration,
    expired: Arc<AtomicU64>,
    /// One receiver (a consumer's own channel) rather than any number (a named channel).
    single_reader: bool,
}

impl ChannelQueue {
    pub(crate) fn new(
        capacity: usize,
        expiry: Duration,
        expired: Arc<AtomicU64>,
        single_reader: bool,
    ) -> Self {
        Self {
            messages: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            capacity,
            expiry,
            expired,
            single_reader,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Queued>> {
        // A panic while holding this lock cannot leave the deque inconsistent: take it anyway.
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn drop_expired(&self, messages: &mut VecDeque<Queued>, now: Instant) {
        let mut dropped = 0;
        while messages.front().is_some_and(|m| m.expires_at <= now) {
            messages.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            self.expired.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Queues `event`, or hands it back if the queue holds `capacity` unexpired messages. `now`
    /// is read once by the caller for a whole broadcast.
    pub(crate) fn push(&self, event: Event, now: Instant) -> Result<(), Event> {
        let was_empty = {
            let mut messages = self.lock();
            if messages.len() >= self.capacity {
                self.drop_expired(&mut messages, now);
                if messages.len() >= self.capacity {
                    return Err(event);
                }
            }
            messages.push_back(Queued {
                event,
                expires_at: now + self.expiry,
            });
            messages.len() == 1
        };
        // The one receiver of a single-reader queue waits only after it found the queue empty
        // (under the same lock), so only the push that makes it non-empty has anyone to wake.
        // Several receivers (workers on a named channel) are woken one per message.
        if was_empty || !self.single_reader {
            self.notify.notify_one();
        }
        Ok(())
    }

    pub(crate) fn try_pop(&self) -> Option<Event> {
        self.try_pop_at(None)
    }

    /// As [`try_pop`](Self::try_pop), with the time read once by a caller that drains a burst
    /// (`None`: read it here). An empty queue reads no clock at all.
    pub(crate) fn try_pop_at(&self, now: Option<Instant>) -> Option<Event> {
        let mut messages = self.lock();
        if messages.is_empty() {
            return None;
        }
        self.drop_expired(&mut messages, now.unwrap_or_else(Instant::now));
        messages.pop_front().map(|m| m.event)
    }

    pub(crate) async fn pop(&self) -> Event {
        loop {
            if let Some(event) = self.try_pop() {
                return event;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register as a waiter before the second look, so a push in between is not missed.
            notified.as_mut().enable();
            if let Some(event) = self.try_pop() {
                return event;
            }
            notified.await;
        }
    }

    /// Whether the queue holds no unexpired message (dropping, and counting, the expired ones).
    pub(crate) fn is_empty_now(&self) -> bool {
        let mut messages = self.lock();
        self.drop_expired(&mut messages, Instant::now());
        messages.is_empty()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
