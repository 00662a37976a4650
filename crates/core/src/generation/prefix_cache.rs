//! Prompt-prefix KV reuse: the KV state of finished streams, keyed by the token sequence it
//! encodes, so a new request that starts with a cached prefix (a multi-turn chat, a shared
//! system prompt) only prefills the rest. Bounded by entries and bytes (LRU eviction).

use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use super::kv_cache::KvCache;

/// Spec §11 `prompt_cache` defaults.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
pub const DEFAULT_MAX_BYTES: usize = 100 * 1024 * 1024;
/// Shorter shared prefixes are not worth a lookup hit (they cost less than the copy).
pub const MIN_REUSE_TOKENS: usize = 4;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PromptCacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub type SharedPromptCacheStats = Arc<Mutex<PromptCacheStats>>;

struct Entry {
    model_id: String,
    tokens: Vec<u32>,
    layers: Vec<KvCache>,
    bytes: usize,
    last_used: u64,
}

pub struct PrefixCache {
    entries: Vec<Entry>,
    max_entries: usize,
    max_bytes: usize,
    clock: u64,
    stats: SharedPromptCacheStats,
}

impl PrefixCache {
    pub fn new(max_entries: usize, max_bytes: usize, stats: SharedPromptCacheStats) -> Self {
        PrefixCache { entries: Vec::new(), max_entries, max_bytes, clock: 0, stats }
    }

    /// The longest cached prefix of `prompt` for this model, leaving at least one prompt token
    /// to feed: (reused length, a fresh cache holding those positions).
    pub fn lookup(&mut self, model_id: &str, prompt: &[u32]) -> Option<(usize, Vec<KvCache>)> {
        self.clock += 1;
        let limit = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
            .filter(|e| e.model_id == model_id)
            .map(|e| {
                let n = e.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(limit);
                (n, e)
            })
            .filter(|(n, _)| *n >= MIN_REUSE_TOKENS)
            .max_by_key(|(n, e)| (*n, e.last_used));
        let found = match best {
            Some((n, e)) => {
                e.last_used = self.clock;
                let layers: Option<Result<Vec<KvCache>, _>> = e.layers.iter().map(|c| KvCache::prefix_of(c, n as i32)).collect();
                match layers {
                    Some(Ok(l)) => Some((n, l)),
                    _ => None,
                }
            }
            None => None,
        };
        let mut s = self.stats.lock();
        if found.is_some() {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        found
    }

    /// Keeps the KV state of `tokens` (the positions actually written to `layers`).
    pub fn insert(&mut self, model_id: &str, tokens: Vec<u32>, layers: Vec<KvCache>) {
        if tokens.len() < MIN_REUSE_TOKENS || self.max_entries == 0 {
            return;
        }
        let bytes: usize = layers.iter().map(KvCache::nbytes).sum();
        if bytes > self.max_bytes {
            return;
        }
        // A new entry supersedes cached entries that are prefixes of it.
        self.entries.retain(|e| !(e.model_id == model_id && tokens.starts_with(&e.tokens)));
        self.clock += 1;
        self.entries.push(Entry { model_id: model_id.to_owned(), tokens, layers, bytes, last_used: self.clock });
        while self.entries.len() > self.max_entries || self.total_bytes() > self.max_bytes {
            let lru = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_used).unwrap();
            self.entries.remove(lru);
            self.stats.lock().evictions += 1;
        }
        self.publish();
    }

    /// Drops every entry of a model (unload) or all entries (`None`, shutdown).
    pub fn clear(&mut self, model_id: Option<&str>) {
        self.entries.retain(|e| model_id.is_some_and(|m| e.model_id != m));
        self.publish();
    }

    fn total_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    fn publish(&self) {
        let mut s = self.stats.lock();
        s.entries = self.entries.len();
        s.bytes = self.total_bytes();
    }
}
