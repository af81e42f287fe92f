//! The embedded backend: moka, bounded by bytes (a weigher counts each value's size)
//! with a time-to-live per entry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;

use super::backend::{Backend, BackendFuture};

/// A value with its own time-to-live.
#[derive(Clone)]
struct Stored {
    value: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<u64, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _key: &u64, v: &Stored, _now: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _key: &u64,
        v: &Stored,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// An in-process cache of at most `capacity_bytes` of values.
pub struct MemoryBackend {
    cache: Cache<u64, Stored>,
    uncompressed: bool,
}

impl MemoryBackend {
    /// Creates the cache. Values larger than the whole capacity are never kept.
    pub fn new(capacity_bytes: u64) -> MemoryBackend {
        let cache = Cache::builder()
            // Weights are in KiB so that a u32 weight covers values up to 4 TiB.
            .max_capacity((capacity_bytes / 1024).max(1))
            .weigher(|_k: &u64, v: &Stored| {
                (v.value.len() as u64 + 8)
                    .div_ceil(1024)
                    .min(u32::MAX as u64) as u32
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryBackend {
            cache,
            uncompressed: false,
        }
    }

    /// Asks for entries written uncompressed ([`Backend::keeps_uncompressed`]).
    pub fn uncompressed(mut self, yes: bool) -> MemoryBackend {
        self.uncompressed = yes;
        self
    }

    /// Entries and bytes currently held (approximate: KiB-rounded weights), after
    /// pending evictions.
    pub async fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size() * 1024)
    }

    /// Bytes currently held (approximate: KiB-rounded weights), after pending evictions.
    pub async fn weighted_bytes(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size() * 1024
    }

    /// Entries currently held, after pending evictions.
    pub async fn entries(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn keeps_uncompressed(&self) -> bool {
        self.uncompressed
    }

    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.cache.get(k).await.map(|s| s.value));
            }
            Ok(out)
        })
    }

    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            self.cache.insert(key, Stored { value, ttl }).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_and_reads_back() {
        let m = MemoryBackend::new(1 << 20);
        m.set(1, Bytes::from_static(b"one"), Duration::from_secs(60))
            .await
            .expect("set");
        let got = m.get_many(&[1, 2]).await.expect("get");
        assert_eq!(got, vec![Some(Bytes::from_static(b"one")), None]);
    }

    #[tokio::test]
    async fn respects_its_byte_capacity() {
        let capacity = 1 << 20;
        let m = MemoryBackend::new(capacity);
        // Write 8 MiB of 16 KiB values into a 1 MiB cache.
        for k in 0..512u64 {
            m.set(
                k,
                Bytes::from(vec![b'x'; 16 * 1024]),
                Duration::from_secs(60),
            )
            .await
            .expect("set");
        }
        let held = m.weighted_bytes().await;
        assert!(held <= capacity, "holds {held} bytes > capacity {capacity}");
        assert!(held > capacity / 4, "still holds a useful amount: {held}");
        assert!(m.entries().await < 512);
    }

    #[tokio::test]
    async fn entries_expire() {
        let m = MemoryBackend::new(1 << 20);
        m.set(7, Bytes::from_static(b"v"), Duration::from_millis(50))
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(m.get_many(&[7]).await.expect("get"), vec![None]);
    }
}
