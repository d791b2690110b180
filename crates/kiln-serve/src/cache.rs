//! The exact response cache: deterministic requests (greedy, or with a fixed seed) with the same
//! model, adapters, masked prompt and parameters get the stored outputs back. Least recently used
//! entries are evicted past the capacity; entries expire after a time to live.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A cache key: the sha256 of everything that determines the answer.
pub type CacheKey = [u8; 32];

/// Makes a key from the parts that determine an answer (serialized by the caller).
#[must_use]
pub fn key_of(parts: &[&[u8]]) -> CacheKey {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    stored: Instant,
    tick: u64,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<CacheKey, Entry<V>>,
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
}

/// An LRU cache with a time to live.
#[derive(Debug)]
pub struct ResponseCache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
    ttl: Duration,
}

impl<V: Clone> ResponseCache<V> {
    /// A cache of at most `capacity` entries (0 disables it) that live `ttl`.
    #[must_use]
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
            capacity,
            ttl,
        }
    }

    /// Whether the cache stores anything at all.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The live entry for `key`, marked as recently used.
    pub fn get(&self, key: &CacheKey) -> Option<V> {
        let mut inner = self.inner.lock().ok()?;
        let Inner { map, order, tick } = &mut *inner;
        let entry = map.get_mut(key)?;
        if entry.stored.elapsed() > self.ttl {
            order.remove(&entry.tick);
            map.remove(key);
            return None;
        }
        order.remove(&entry.tick);
        *tick += 1;
        entry.tick = *tick;
        order.insert(*tick, *key);
        Some(entry.value.clone())
    }

    /// Stores `value`, evicting the least recently used entry when full.
    pub fn put(&self, key: CacheKey, value: V) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner { map, order, tick } = &mut *inner;
        *tick += 1;
        if let Some(old) = map.insert(
            key,
            Entry {
                value,
                stored: Instant::now(),
                tick: *tick,
            },
        ) {
            order.remove(&old.tick);
        }
        order.insert(*tick, key);
        while map.len() > self.capacity {
            let Some((_, oldest)) = order.pop_first() else {
                break;
            };
            map.remove(&oldest);
        }
    }

    /// The number of entries (expired ones included until they are looked up).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction_and_ttl() {
        let c = ResponseCache::new(2, Duration::from_secs(60));
        let (a, b, d) = (key_of(&[b"a"]), key_of(&[b"b"]), key_of(&[b"d"]));
        c.put(a, 1);
        c.put(b, 2);
        assert_eq!(c.get(&a), Some(1)); // a is now the most recent
        c.put(d, 3); // evicts b
        assert_eq!(c.get(&b), None);
        assert_eq!(c.get(&a), Some(1));
        assert_eq!(c.get(&d), Some(3));
        let t = ResponseCache::new(2, Duration::ZERO);
        t.put(a, 1);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(t.get(&a), None);
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
    }
}
