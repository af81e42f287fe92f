//! Two tiers: a small in-process memory cache in front of a shared backend (Redis).
//! Reads try memory first and ask the shared backend only for what memory lacks,
//! copying what it finds into memory; writes go to both. A replica thus serves its own
//! hot entries without a network round trip and still sees what other replicas wrote.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::backend::{Backend, BackendFuture};

/// Memory in front of a shared backend.
pub struct Tiered {
    near: Arc<dyn Backend>,
    far: Arc<dyn Backend>,
    /// Time-to-live of entries copied from the far tier into the near one.
    near_ttl: Duration,
}

impl Tiered {
    /// Puts `near` in front of `far`.
    pub fn new(near: Arc<dyn Backend>, far: Arc<dyn Backend>, near_ttl: Duration) -> Tiered {
        Tiered {
            near,
            far,
            near_ttl,
        }
    }
}

impl Backend for Tiered {
    fn name(&self) -> &'static str {
        "tiered"
    }

    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let mut values = self.near.get_many(keys).await?;
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
            if missing.is_empty() {
                return Ok(values);
            }
            let far_keys: Vec<u64> = missing.iter().map(|&i| keys[i]).collect();
            let found = self.far.get_many(&far_keys).await?;
            for (&i, value) in missing.iter().zip(found) {
                if let Some(v) = &value {
                    // Best effort: a failed copy only costs a later round trip.
                    let _ = self.near.set(keys[i], v.clone(), self.near_ttl).await;
                }
                values[i] = value;
            }
            Ok(values)
        })
    }

    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let _ = self
                .near
                .set(key, value.clone(), ttl.min(self.near_ttl))
                .await;
            self.far.set(key, value, ttl).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::cache::memory::MemoryBackend;

    #[tokio::test]
    async fn reads_near_first_and_fills_it_from_far() {
        let near = Arc::new(MemoryBackend::new(1 << 20));
        let far = Arc::new(MemoryBackend::new(1 << 20));
        let tiered = Tiered::new(near.clone(), far.clone(), Duration::from_secs(60));
        let ttl = Duration::from_secs(60);
        far.set(1, Bytes::from_static(b"from far"), ttl)
            .await
            .expect("set");
        near.set(2, Bytes::from_static(b"from near"), ttl)
            .await
            .expect("set");
        let got = tiered.get_many(&[1, 2, 3]).await.expect("get");
        assert_eq!(
            got,
            vec![
                Some(Bytes::from_static(b"from far")),
                Some(Bytes::from_static(b"from near")),
                None
            ]
        );
        assert_eq!(
            near.get_many(&[1]).await.expect("get"),
            vec![Some(Bytes::from_static(b"from far"))]
        );
        tiered
            .set(4, Bytes::from_static(b"both"), ttl)
            .await
            .expect("set");
        assert!(near.get_many(&[4]).await.expect("get")[0].is_some());
        assert!(far.get_many(&[4]).await.expect("get")[0].is_some());
    }
}
