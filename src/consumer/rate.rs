//! Token buckets for [`InboundRateLimit`]: one connection's allowance of messages and bytes.

use tokio::time::Instant;

use crate::{InboundRateLimit, Rate, RateLimitPolicy};

/// One bucket: `tokens` left at `last`, refilled at `rate.per_second` up to `rate.burst`.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.last = now;
    }

    /// Whether `cost` may pass: the bucket holds it, or (for a cost above the burst) is full.
    fn has(&self, cost: f64) -> bool {
        self.tokens >= cost.min(self.rate.burst)
    }
}

/// What the limiter made of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Dropped; `tell` with this many dropped since the client was last told.
    Drop {
        tell: Option<u64>,
    },
    /// Dropped, and the policy closes the connection.
    Close,
}

/// One connection's limiter.
#[derive(Debug)]
pub(crate) struct Limiter {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    policy: RateLimitPolicy,
    dropped_in_row: u32,
    untold: u64,
    told: Option<Instant>,
}

impl Limiter {
    pub(crate) fn new(limit: InboundRateLimit, now: Instant) -> Self {
        Self {
            messages: limit.messages.map(|rate| Bucket::new(rate, now)),
            bytes: limit.bytes.map(|rate| Bucket::new(rate, now)),
            policy: limit.policy,
            dropped_in_row: 0,
            untold: 0,
            told: None,
        }
    }

    /// Judges a message of `len` payload bytes arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant, len: usize) -> Verdict {
        let len = len as f64;
        for bucket in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
            bucket.refill(now);
        }
        let passes = self.messages.as_ref().is_none_or(|b| b.has(1.0))
            && self.bytes.as_ref().is_none_or(|b| b.has(len));
        if passes {
            if let Some(bucket) = &mut self.messages {
                bucket.tokens -= 1.0;
            }
            if let Some(bucket) = &mut self.bytes {
                bucket.tokens -= len;
            }
            self.dropped_in_row = 0;
            return Verdict::Pass;
        }
        self.dropped_in_row = self.dropped_in_row.saturating_add(1);
        self.untold += 1;
        if let RateLimitPolicy::Close { after } = self.policy {
            if self.dropped_in_row >= after {
                return Verdict::Close;
            }
        }
        let due = self
            .told
            .is_none_or(|told| now.saturating_duration_since(told).as_secs() >= 1);
        if due {
            self.told = Some(now);
            let dropped = std::mem::take(&mut self.untold);
            Verdict::Drop {
                tell: Some(dropped),
            }
        } else {
            Verdict::Drop { tell: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn messages_pass_up_to_the_burst_then_at_the_rate() {
        let start = Instant::now();
        let mut limiter = Limiter::new(InboundRateLimit::messages(Rate::new(10.0, 5.0)), start);
        let verdicts: Vec<Verdict> = (0..8).map(|_| limiter.check(start, 10)).collect();
        assert_eq!(verdicts[..5], [Verdict::Pass; 5]);
        assert_eq!(verdicts[5], Verdict::Drop { tell: Some(1) });
        assert_eq!(verdicts[6..], [Verdict::Drop { tell: None }; 2]);
        // 100 ms later one more token is back.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check(later, 10), Verdict::Pass);
        assert_eq!(limiter.check(later, 10), Verdict::Drop { tell: None });
        // A second after the last notice the client is told again, with the count since.
        let second = start + Duration::from_millis(1000);
        let mut told = None;
        for _ in 0..20 {
            if let Verdict::Drop { tell: Some(n) } = limiter.check(second, 10) {
                told = Some(n);
            }
        }
        assert!(told.is_some_and(|n| n >= 3), "{told:?}");
    }

    #[test]
    fn bytes_allow_one_large_message_from_a_full_bucket() {
        let start = Instant::now();
        let mut limiter = Limiter::new(
            InboundRateLimit::bytes_only(Rate::new(1000.0, 1000.0)),
            start,
        );
        assert_eq!(limiter.check(start, 600), Verdict::Pass);
        assert!(matches!(limiter.check(start, 600), Verdict::Drop { .. }));
        let full = start + Duration::from_secs(5);
        assert_eq!(
            limiter.check(full, 5000),
            Verdict::Pass,
            "larger than the burst"
        );
        // ... which leaves the bucket in debt for 4 s.
        assert!(matches!(
            limiter.check(full + Duration::from_secs(3), 1),
            Verdict::Drop { .. }
        ));
        assert_eq!(
            limiter.check(full + Duration::from_secs(5), 1),
            Verdict::Pass
        );
    }

    #[test]
    fn the_close_policy_closes_after_drops_in_a_row() {
        let start = Instant::now();
        let limit = InboundRateLimit::messages(Rate::new(1.0, 1.0))
            .policy(RateLimitPolicy::Close { after: 3 });
        let mut limiter = Limiter::new(limit, start);
        assert_eq!(limiter.check(start, 1), Verdict::Pass);
        assert!(matches!(limiter.check(start, 1), Verdict::Drop { .. }));
        assert!(matches!(limiter.check(start, 1), Verdict::Drop { .. }));
        assert_eq!(limiter.check(start, 1), Verdict::Close);
        // An accepted message starts the count again.
        let mut limiter = Limiter::new(limit, start);
        assert_eq!(limiter.check(start, 1), Verdict::Pass);
        assert!(matches!(limiter.check(start, 1), Verdict::Drop { .. }));
        assert!(matches!(limiter.check(start, 1), Verdict::Drop { .. }));
        assert_eq!(
            limiter.check(start + Duration::from_secs(1), 1),
            Verdict::Pass
        );
        assert!(matches!(
            limiter.check(start + Duration::from_secs(1), 1),
            Verdict::Drop { .. }
        ));
    }
}
