//! The storage behind the results cache: one small trait, so the layer does not care
//! whether entries live in this process (moka) or in Redis.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

/// A boxed future of a backend call.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// A backend failure; the layer treats it as a miss (or a skipped write), never as a
/// failed query.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The call did not finish within the backend's operation timeout.
    #[error("cache backend timed out after {0:?}")]
    Timeout(Duration),
    /// The backend reported an error.
    #[error("cache backend error: {0}")]
    Failed(String),
}

/// Key/value storage for cache entries, keyed by the 64-bit key hash.
pub trait Backend: Send + Sync + 'static {
    /// A short name for metrics and logs (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// Whether values are best written uncompressed: true for a backend in this
    /// process, where a hit then costs no decompression and no copy, and memory (not a
    /// network) is what a larger value costs.
    fn keeps_uncompressed(&self) -> bool {
        false
    }

    /// Reads the values of `keys`, in the same order; `None` for a missing key.
    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>>;

    /// Stores `value` under `key` for `ttl`.
    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()>;

    /// Stores several values for `ttl`; backends that can send them in one round trip
    /// (a Redis pipeline) override this.
    fn set_many<'a>(&'a self, items: Vec<(u64, Bytes)>, ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            for (key, value) in items {
                self.set(key, value, ttl).await?;
            }
            Ok(())
        })
    }
}
