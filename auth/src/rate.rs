//! Per-key token buckets (`[auth.rate_limit]`).
//!
//! Each key id gets a bucket of `burst` tokens refilled at
//! `requests_per_sec`; a request takes one token or is refused with the time
//! until one is available. Buckets live in this process only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use xray_config::RateLimitConfig;

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by key id.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter for `config`; `None` when the limit is off.
    pub(crate) fn new(config: &RateLimitConfig) -> Option<Self> {
        (config.requests_per_sec > 0.0 && config.requests_per_sec.is_finite()).then(|| Self {
            rate: config.requests_per_sec,
            burst: f64::from(config.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token from `key`'s bucket at `now`, or says how long until
    /// one is available.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= PRUNE_AT && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| refilled(b, now, rate, burst) < burst);
        }
        let bucket = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, now, self.rate, self.burst);
        // Instants may be passed out of order by concurrent callers; never
        // move `last` backwards.
        bucket.last = bucket.last.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

fn refilled(b: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_sec: rps,
            burst,
        })
        .unwrap()
    }

    #[test]
    fn off_when_rate_is_zero() {
        assert!(
            RateLimiter::new(&RateLimitConfig {
                requests_per_sec: 0.0,
                burst: 10
            })
            .is_none()
        );
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check("k", t0).unwrap();
        }
        let wait = l.check("k", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // 250 ms later half a token is back: still refused, 250 ms to go
        let wait = l.check("k", t0 + Duration::from_millis(250)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        l.check("k", t0 + Duration::from_millis(500)).unwrap();
        l.check("k", t0 + Duration::from_millis(500)).unwrap_err();
        // a long pause refills up to the burst, not beyond
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            l.check("k", t1).unwrap();
        }
        l.check("k", t1).unwrap_err();
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        l.check("a", t0).unwrap();
        l.check("a", t0).unwrap_err();
        l.check("b", t0).unwrap();
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            l.check(&format!("k{i}"), t0).unwrap();
        }
        // every bucket is full again a second later: all are dropped
        l.check("new", t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
    }
}
