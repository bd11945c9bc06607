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
}

impl ChannelQueue {
    pub(crate) fn new(capacity: usize, expiry: Duration, expired: Arc<AtomicU64>) -> Self {
        Self {
            messages: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            capacity,
            expiry,
            expired,
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

    /// Queues `event`, or hands it back if the queue holds `capacity` unexpired messages.
    pub(crate) fn push(&self, event: Event) -> Result<(), Event> {
        let now = Instant::now();
        {
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
        }
        self.notify.notify_one();
        Ok(())
    }

    pub(crate) fn try_pop(&self) -> Option<Event> {
        let mut messages = self.lock();
        self.drop_expired(&mut messages, Instant::now());
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

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
