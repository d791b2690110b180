//! The exact response cache kept in Redis, so that every replica answers a deterministic request
//! another one already answered (the `redis` feature: `server.redis_url` with
//! `server.cache_entries > 0`).
//!
//! Entries are JSON under `<redis_prefix>:cache:<sha256 of the request>` with the configured TTL;
//! how many stay is Redis' to bound (`maxmemory` with `allkeys-lru`), not `cache_entries`. Each
//! replica also keeps its in-memory cache in front. A Redis that cannot be reached is a miss
//! (the cache fails open: requests are answered by the model, and the failure is logged).

use std::time::Duration;

use kiln_core::GenerationOutput;

use crate::cache::CacheKey;
use crate::error::Result;
use crate::limits_redis::RedisConn;

/// The shared response cache.
pub struct RedisCache {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn hex(key: &CacheKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisCache {
    /// A cache on the Redis at `url` (connected on first use).
    ///
    /// # Errors
    /// [`crate::ServeError::Config`] for a URL Redis' client cannot parse.
    pub fn new(url: &str, prefix: &str, ttl: Duration) -> Result<Self> {
        Ok(Self {
            conn: RedisConn::new(url, "server.redis_url")?,
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    fn key(&self, key: &CacheKey) -> String {
        format!("{}:cache:{}", self.prefix, hex(key))
    }

    /// The outputs stored under `key`; `None` for a miss, an unreadable entry or an unreachable
    /// Redis.
    #[must_use]
    pub fn get(&self, key: &CacheKey) -> Option<Vec<GenerationOutput>> {
        let k = self.key(key);
        match self
            .conn
            .with(|c| redis::cmd("GET").arg(&k).query::<Option<Vec<u8>>>(c))
        {
            Ok(bytes) => bytes.and_then(|b| serde_json::from_slice(&b).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "the shared response cache (Redis) failed: a miss");
                None
            }
        }
    }

    /// Stores `outputs` under `key` for the TTL (failures are logged and otherwise ignored).
    pub fn put(&self, key: &CacheKey, outputs: &[GenerationOutput]) {
        let Ok(bytes) = serde_json::to_vec(outputs) else {
            return;
        };
        let k = self.key(key);
        let ttl_ms = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Err(e) = self.conn.with(|c| {
            redis::cmd("SET")
                .arg(&k)
                .arg(bytes)
                .arg("PX")
                .arg(ttl_ms)
                .query::<()>(c)
        }) {
            tracing::warn!(error = %e, "the shared response cache (Redis) failed to store");
        }
    }
}
