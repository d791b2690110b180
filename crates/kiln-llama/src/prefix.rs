//! A prefix cache: the keys and values of recent prompts, reused by later prompts that start with
//! the same tokens (a shared system prompt, few-shot examples, a conversation's earlier turns), so
//! their prefill only computes the new part. Entries are keyed by the adapters in use, since LoRA
//! on the key and value projections changes the cache.

use std::collections::VecDeque;

use crate::engine::EngineCache;

/// Prompts shorter than this are not worth storing or reusing.
const MIN_TOKENS: usize = 16;

/// Counters of the prefix cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Prefills that reused a cached prefix.
    pub hits: u64,
    /// Prefills that found none.
    pub misses: u64,
    /// Prompt tokens whose keys and values were reused instead of computed.
    pub reused_tokens: u64,
}

struct Entry {
    tokens: Vec<u32>,
    adapters: String,
    cache: EngineCache,
}

/// The most recent prompts' caches, at most `capacity` of them.
pub(crate) struct PrefixCache {
    entries: VecDeque<Entry>,
    capacity: usize,
    pub(crate) stats: PrefixCacheStats,
}

impl PrefixCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity,
            stats: PrefixCacheStats::default(),
        }
    }

    /// The cache of the entry sharing the longest prefix with `tokens` (at least [`MIN_TOKENS`]),
    /// truncated to that prefix, never to all of `tokens` (the last position must be computed for
    /// its logits). `None` when nothing useful is cached.
    pub(crate) fn lookup(&mut self, tokens: &[u32], adapters: &str) -> Option<EngineCache> {
        let best = self
            .entries
            .iter()
            .filter(|e| e.adapters == adapters)
            .map(|e| {
                let common = e
                    .tokens
                    .iter()
                    .zip(tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                (common.min(tokens.len().saturating_sub(1)), e)
            })
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, e)) if n >= MIN_TOKENS => {
                let mut cache = e.cache.snapshot();
                cache.truncate(n);
                self.stats.hits += 1;
                self.stats.reused_tokens += n as u64;
                Some(cache)
            }
            _ => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Forgets every entry (the adapters changed).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Remembers the cache of a prefilled prompt (evicting the oldest entry when full).
    pub(crate) fn insert(&mut self, tokens: &[u32], adapters: &str, cache: &EngineCache) {
        if self.capacity == 0 || tokens.len() < MIN_TOKENS || cache.len() != tokens.len() {
            return;
        }
        self.entries
            .retain(|e| !(e.adapters == adapters && tokens.starts_with(&e.tokens)));
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            tokens: tokens.to_vec(),
            adapters: adapters.to_string(),
            cache: cache.snapshot(),
        });
    }
}
