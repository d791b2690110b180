//! Per-key rate limits (requests and tokens in a sliding minute) and quotas (tokens per UTC day).
//!
//! [`Limiter::admit`] runs before a request with its estimated token count (prompt plus
//! `max_tokens`) and refuses it with a `Retry-After` when a limit would be passed;
//! [`Limiter::record`] adds the tokens actually used once the answer is known.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::KeyConfig;
use crate::error::{Result, ServeError};

const MINUTE: Duration = Duration::from_secs(60);
const DAY_SECS: u64 = 86_400;

#[derive(Debug, Default)]
struct Window {
    /// Requests admitted in the last minute.
    requests: VecDeque<Instant>,
    /// Tokens used in the last minute, with when.
    tokens: VecDeque<(Instant, u64)>,
    /// The UTC day `day_tokens` counts.
    day: u64,
    day_tokens: u64,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            self.requests.pop_front();
        }
        while self
            .tokens
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= MINUTE)
        {
            self.tokens.pop_front();
        }
    }

    fn minute_tokens(&self) -> u64 {
        self.tokens.iter().map(|(_, n)| n).sum()
    }
}

/// The per-key limit state: in this process, or in Redis for every replica together.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Mutex<HashMap<String, Window>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::limits_redis::RedisLimiter>,
}

fn seconds_until(oldest: Instant, now: Instant) -> u64 {
    MINUTE.saturating_sub(now.duration_since(oldest)).as_secs() + 1
}

fn today() -> (u64, u64) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / DAY_SECS, DAY_SECS - secs % DAY_SECS)
}

impl Limiter {
    /// An empty limiter.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The limiter `server` configures: shared through Redis when `redis_url` is set.
    ///
    /// # Errors
    /// A Redis URL this build cannot use.
    pub fn from_config(server: &crate::config::ServerConfig) -> Result<Self> {
        match &server.redis_url {
            None => Ok(Self::new()),
            #[cfg(feature = "redis")]
            Some(url) => Ok(Self {
                redis: Some(crate::limits_redis::RedisLimiter::new(
                    url,
                    &server.redis_prefix,
                )?),
                ..Self::default()
            }),
            #[cfg(not(feature = "redis"))]
            Some(_) => Err(ServeError::config(
                "server.redis_url",
                "this build has no Redis support (kiln-serve's `redis` feature)",
            )),
        }
    }

    /// Admits one request of about `estimated_tokens` tokens for `key`, counting it against the
    /// requests-per-minute limit.
    ///
    /// # Errors
    /// [`ServeError::RateLimited`] or [`ServeError::QuotaExceeded`] with the seconds to wait.
    pub fn admit(&self, key: &KeyConfig, estimated_tokens: u64) -> Result<()> {
        let unlimited =
            key.requests_per_minute == 0 && key.tokens_per_minute == 0 && key.tokens_per_day == 0;
        if unlimited {
            return Ok(());
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return r.admit(key, estimated_tokens);
        }
        let now = Instant::now();
        let (day, to_midnight) = today();
        let mut windows = self
            .windows
            .lock()
            .map_err(|_| ServeError::Internal("limiter lock poisoned".into()))?;
        let w = windows.entry(key.name.clone()).or_default();
        w.expire(now);
        if w.day != day {
            w.day = day;
            w.day_tokens = 0;
        }
        if key.tokens_per_day > 0
            && w.day_tokens.saturating_add(estimated_tokens) > key.tokens_per_day
        {
            return Err(ServeError::QuotaExceeded {
                message: format!(
                    "key `{}` used {} of its {} tokens per day",
                    key.name, w.day_tokens, key.tokens_per_day
                ),
                retry_after: to_midnight,
            });
        }
        if key.requests_per_minute > 0 && w.requests.len() >= key.requests_per_minute as usize {
            let retry_after = w.requests.front().map_or(60, |t| seconds_until(*t, now));
            return Err(ServeError::RateLimited {
                message: format!(
                    "key `{}` is limited to {} requests per minute",
                    key.name, key.requests_per_minute
                ),
                retry_after,
            });
        }
        if key.tokens_per_minute > 0 {
            let used = w.minute_tokens();
            if used > 0 && used.saturating_add(estimated_tokens) > key.tokens_per_minute {
                let retry_after = w.tokens.front().map_or(60, |(t, _)| seconds_until(*t, now));
                return Err(ServeError::RateLimited {
                    message: format!(
                        "key `{}` is limited to {} tokens per minute ({used} used)",
                        key.name, key.tokens_per_minute
                    ),
                    retry_after,
                });
            }
        }
        w.requests.push_back(now);
        Ok(())
    }

    /// Adds the tokens a request of `key` actually used.
    pub fn record(&self, key: &KeyConfig, tokens: u64) {
        if key.tokens_per_minute == 0 && key.tokens_per_day == 0 {
            return;
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            r.record(key, tokens);
            return;
        }
        let now = Instant::now();
        let (day, _) = today();
        if let Ok(mut windows) = self.windows.lock() {
            let w = windows.entry(key.name.clone()).or_default();
            if w.day != day {
                w.day = day;
                w.day_tokens = 0;
            }
            w.day_tokens = w.day_tokens.saturating_add(tokens);
            w.tokens.push_back((now, tokens));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute() {
        let l = Limiter::new();
        let k = KeyConfig {
            name: "a".into(),
            requests_per_minute: 2,
            ..KeyConfig::default()
        };
        l.admit(&k, 1).unwrap();
        l.admit(&k, 1).unwrap();
        let e = l.admit(&k, 1).unwrap_err();
        assert!(
            matches!(e, ServeError::RateLimited { retry_after, .. } if (1..=61).contains(&retry_after))
        );
    }

    #[test]
    fn tokens_per_minute_and_day() {
        let l = Limiter::new();
        let k = KeyConfig {
            name: "a".into(),
            tokens_per_minute: 100,
            ..KeyConfig::default()
        };
        // The first request is always admitted, whatever its size.
        l.admit(&k, 500).unwrap();
        l.record(&k, 90);
        assert!(l.admit(&k, 20).is_err());
        assert!(l.admit(&k, 5).is_ok());
        let d = KeyConfig {
            name: "d".into(),
            tokens_per_day: 50,
            ..KeyConfig::default()
        };
        l.admit(&d, 10).unwrap();
        l.record(&d, 45);
        assert!(matches!(
            l.admit(&d, 10).unwrap_err(),
            ServeError::QuotaExceeded { .. }
        ));
    }
}
