//! Rate limits and quotas kept in Redis, so that every replica of a deployment enforces one limit
//! per key together (the `redis` feature, `server.redis_url`).
//!
//! Each check is one Lua script, atomic on the Redis server, timed by the server's own clock
//! (`TIME`), so replicas need no clock agreement: requests and tokens of the last minute are
//! sorted sets scored by milliseconds, the day's tokens a counter that expires after two days. A
//! Redis that cannot be reached refuses the request with 503 (limits fail closed). The response
//! cache on the same Redis is [`crate::cache_redis`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::KeyConfig;
use crate::error::{Result, ServeError};

const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, tpd, est = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local day = math.floor(now / 86400000)
local day_key = KEYS[3] .. ':' .. day
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, now - 60000)
local day_used = tonumber(redis.call('GET', day_key) or '0')
if tpd > 0 and day_used + est > tpd then
  return {2, 86400 - math.floor((now % 86400000) / 1000), day_used}
end
if rpm > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, math.floor((tonumber(oldest[2]) + 60000 - now) / 1000) + 1, n}
  end
end
if tpm > 0 then
  local used = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    used = used + tonumber(string.match(m, '^(%d+):'))
  end
  if used > 0 and used + est > tpm then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {3, math.floor((tonumber(oldest[2]) + 60000 - now) / 1000) + 1, used}
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], 61000)
return {0, 0, 0}
";

const RECORD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day_key = KEYS[2] .. ':' .. math.floor(now / 86400000)
redis.call('ZADD', KEYS[1], now, ARGV[1] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], 61000)
redis.call('INCRBY', day_key, tonumber(ARGV[1]))
redis.call('EXPIRE', day_key, 172800)
return 0
";

/// One Redis connection, opened lazily and again after a failure, with 2 s timeouts (shared by
/// the limiter and the response cache).
pub(crate) struct RedisConn {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
}

impl RedisConn {
    /// A connection to `url`, opened on first use; `field` names the setting in errors.
    pub(crate) fn new(url: &str, field: &str) -> Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| ServeError::config(field, e.to_string()))?;
        Ok(Self {
            client,
            conn: Mutex::new(None),
        })
    }

    /// Runs `f` on the connection, connecting first when needed; a failed call drops the
    /// connection so that the next one reconnects.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))?;
            c.set_read_timeout(Some(Duration::from_secs(2)))?;
            c.set_write_timeout(Some(Duration::from_secs(2)))?;
            *guard = Some(c);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::ClientError,
                "no Redis connection",
            )));
        };
        f(conn).inspect_err(|_| *guard = None)
    }
}

/// The limit state of every key, in Redis.
pub struct RedisLimiter {
    conn: RedisConn,
    prefix: String,
    admit: redis::Script,
    record: redis::Script,
    next: AtomicU64,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: &redis::RedisError) -> ServeError {
    tracing::error!(error = %e, "the rate-limit store (Redis) failed");
    ServeError::Unavailable("the rate-limit store is unavailable".into())
}

impl RedisLimiter {
    /// A limiter on the Redis at `url` (connected lazily, and again after a failure).
    ///
    /// # Errors
    /// [`ServeError::Config`] for a URL Redis' client cannot parse.
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        Ok(Self {
            conn: RedisConn::new(url, "server.redis_url")?,
            prefix: prefix.to_owned(),
            admit: redis::Script::new(ADMIT),
            record: redis::Script::new(RECORD),
            next: AtomicU64::new(0),
        })
    }

    fn keys(&self, key: &KeyConfig) -> [String; 3] {
        let p = &self.prefix;
        let n = &key.name;
        [
            format!("{p}:rpm:{n}"),
            format!("{p}:tpm:{n}"),
            format!("{p}:tpd:{n}"),
        ]
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.conn.with(f).map_err(|e| unavailable(&e))
    }

    /// As [`crate::limits::Limiter::admit`], shared by every process on this Redis.
    ///
    /// # Errors
    /// Rate limited, quota exceeded, or the store unavailable (503).
    pub fn admit(&self, key: &KeyConfig, estimated_tokens: u64) -> Result<()> {
        let member = format!(
            "{}-{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let keys = self.keys(key);
        let (code, retry_after, used): (i64, i64, i64) = self.with_conn(|c| {
            self.admit
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(key.requests_per_minute)
                .arg(key.tokens_per_minute)
                .arg(key.tokens_per_day)
                .arg(estimated_tokens)
                .arg(&member)
                .invoke(c)
        })?;
        let retry_after = u64::try_from(retry_after.max(1)).unwrap_or(60);
        match code {
            0 => Ok(()),
            1 => Err(ServeError::RateLimited {
                message: format!(
                    "key `{}` is limited to {} requests per minute",
                    key.name, key.requests_per_minute
                ),
                retry_after,
            }),
            2 => Err(ServeError::QuotaExceeded {
                message: format!(
                    "key `{}` used {used} of its {} tokens per day",
                    key.name, key.tokens_per_day
                ),
                retry_after,
            }),
            _ => Err(ServeError::RateLimited {
                message: format!(
                    "key `{}` is limited to {} tokens per minute ({used} used)",
                    key.name, key.tokens_per_minute
                ),
                retry_after,
            }),
        }
    }

    /// As [`crate::limits::Limiter::record`].
    pub fn record(&self, key: &KeyConfig, tokens: u64) {
        let member = format!(
            "{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let keys = self.keys(key);
        let _ = self.with_conn(|c| {
            self.record
                .key(&keys[1])
                .key(&keys[2])
                .arg(tokens)
                .arg(&member)
                .invoke::<i64>(c)
        });
    }
}
