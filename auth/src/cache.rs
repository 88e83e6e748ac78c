//! The per-process cache of key lookups, keyed by key hash.
//!
//! Found keys (revoked or not) are kept for the TTL; unknown hashes for
//! the shorter of the TTL and [`MAX_NEGATIVE_TTL`], so a key created after a
//! failed attempt starts working quickly. Times are passed in, which keeps
//! the cache deterministic under test.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use xray_model::ApiKey;

/// Longest time an unknown key is remembered as unknown.
pub(crate) const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; past it expired entries are dropped first, then
/// arbitrary ones (which only costs a store lookup later).
const DEFAULT_CAPACITY: usize = 100_000;

/// What the store said about a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A key with this hash exists (possibly revoked).
    Found(ApiKey),
    /// No key has this hash.
    Unknown,
}

#[derive(Debug)]
struct Entry {
    expires: Instant,
    value: Lookup,
}

/// A TTL cache of hash → [`Lookup`].
#[derive(Debug)]
pub(crate) struct KeyCache {
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl KeyCache {
    /// A cache keeping found keys for `ttl` (zero disables caching).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, DEFAULT_CAPACITY)
    }

    fn with_capacity(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            negative_ttl: ttl.min(MAX_NEGATIVE_TTL),
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poison is ignored.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached lookup of `hash`, if still fresh at `now`.
    pub(crate) fn get(&self, hash: &str, now: Instant) -> Option<Lookup> {
        let mut map = self.lock();
        match map.get(hash) {
            Some(e) if e.expires > now => Some(e.value.clone()),
            Some(_) => {
                map.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers what the store said about `hash` at `now`.
    pub(crate) fn put(&self, hash: &str, value: Lookup, now: Instant) {
        let ttl = match value {
            Lookup::Found(_) => self.ttl,
            Lookup::Unknown => self.negative_ttl,
        };
        if ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(hash) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.capacity {
                let excess = map.len() + 1 - self.capacity;
                let victims: Vec<String> = map.keys().take(excess).cloned().collect();
                for v in victims {
                    map.remove(&v);
                }
            }
        }
        map.insert(
            hash.to_string(),
            Entry {
                expires: now + ttl,
                value,
            },
        );
    }

    /// Drops the entry of the key with this id (after a local revocation),
    /// so this process sees the change at once.
    pub(crate) fn forget_key_id(&self, id: &str) {
        self.lock()
            .retain(|_, e| !matches!(&e.value, Lookup::Found(k) if k.id == id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            app_id: "shop".into(),
            prefix: "xr_abcdef".into(),
            hash: format!("hash-{id}"),
            scopes: vec!["ingest".into(), "read".into()],
            created_at_ns: 1,
            revoked_at_ns: None,
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c = KeyCache::new(Duration::from_millis(2000));
        let t0 = Instant::now();
        c.put("h1", Lookup::Found(key("k1")), t0);
        assert_eq!(
            c.get("h1", t0 + Duration::from_millis(1999)),
            Some(Lookup::Found(key("k1")))
        );
        assert_eq!(c.get("h1", t0 + Duration::from_millis(2000)), None);
        // an expired entry is removed when seen
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn unknown_keys_are_cached_briefly() {
        let c = KeyCache::new(Duration::from_millis(5000));
        let t0 = Instant::now();
        c.put("bad", Lookup::Unknown, t0);
        assert_eq!(
            c.get("bad", t0 + Duration::from_millis(999)),
            Some(Lookup::Unknown)
        );
        assert_eq!(c.get("bad", t0 + MAX_NEGATIVE_TTL), None);
        // with a TTL shorter than the negative cap, the TTL wins
        let c = KeyCache::new(Duration::from_millis(300));
        c.put("bad", Lookup::Unknown, t0);
        assert_eq!(c.get("bad", t0 + Duration::from_millis(300)), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = KeyCache::new(Duration::ZERO);
        let t0 = Instant::now();
        c.put("h1", Lookup::Found(key("k1")), t0);
        c.put("h2", Lookup::Unknown, t0);
        assert_eq!(c.get("h1", t0), None);
        assert_eq!(c.get("h2", t0), None);
    }

    #[test]
    fn forgetting_a_key_id_drops_its_entry_only() {
        let c = KeyCache::new(Duration::from_secs(2));
        let t0 = Instant::now();
        c.put("h1", Lookup::Found(key("k1")), t0);
        c.put("h2", Lookup::Found(key("k2")), t0);
        c.put("h3", Lookup::Unknown, t0);
        c.forget_key_id("k1");
        assert_eq!(c.get("h1", t0), None);
        assert_eq!(c.get("h2", t0), Some(Lookup::Found(key("k2"))));
        assert_eq!(c.get("h3", t0), Some(Lookup::Unknown));
    }

    #[test]
    fn capacity_is_bounded_and_expired_entries_go_first() {
        let c = KeyCache::with_capacity(Duration::from_secs(2), 3);
        let t0 = Instant::now();
        c.put("old", Lookup::Unknown, t0);
        c.put(
            "a",
            Lookup::Found(key("a")),
            t0 + Duration::from_millis(1500),
        );
        c.put(
            "b",
            Lookup::Found(key("b")),
            t0 + Duration::from_millis(1500),
        );
        // "old" (negative, 1 s) has expired by now and is evicted first
        let t1 = t0 + Duration::from_millis(1600);
        c.put("c", Lookup::Found(key("c")), t1);
        assert_eq!(c.len(), 3);
        assert!(c.get("a", t1).is_some() && c.get("b", t1).is_some());
        // full of fresh entries: one makes room, the new one is kept
        c.put("d", Lookup::Found(key("d")), t1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("d", t1), Some(Lookup::Found(key("d"))));
    }
}
