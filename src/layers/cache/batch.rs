//! Batching: concurrent `get_many` calls (the pieces of one split query look up their
//! entries at the same moment) are combined into one backend call — one Redis `MGET`
//! for all pieces instead of one round trip each — and concurrent writes into one
//! `set_many` (a pipelined `SET ... EX`).
//!
//! A background task takes the first waiting request, yields once so that requests
//! issued in the same instant can queue up, drains them (up to [`MAX_BATCH`] keys), makes
//! one call, and hands each caller its values. No timer is involved, so a lone request
//! is never delayed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::backend::{Backend, BackendError, BackendFuture};

/// Most keys in one combined call.
pub const MAX_BATCH: usize = 256;
/// Most requests waiting for a batch; beyond it a call fails at once (a miss or a
/// skipped write) instead of queueing without bound while the backend is slow.
const QUEUE: usize = 1024;
/// Bound on one combined backend call (callers give up earlier on their own timeout;
/// this keeps abandoned batches from piling up).
const BATCH_TIMEOUT: Duration = Duration::from_secs(2);

type Reply = oneshot::Sender<Result<Vec<Option<Bytes>>, String>>;
type Write = (u64, Bytes, Duration, oneshot::Sender<Result<(), String>>);

/// Wraps a backend, batching its reads and its writes.
pub struct Batching {
    inner: Arc<dyn Backend>,
    queue: OnceLock<mpsc::Sender<(Vec<u64>, Reply)>>,
    writes: OnceLock<mpsc::Sender<Write>>,
}

impl Batching {
    /// Wraps `inner`. The batching task starts on first use (inside the runtime).
    pub fn new(inner: Arc<dyn Backend>) -> Batching {
        Batching {
            inner,
            queue: OnceLock::new(),
            writes: OnceLock::new(),
        }
    }

    fn write_sender(&self) -> &mpsc::Sender<Write> {
        self.writes.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run_writes(self.inner.clone(), rx));
            tx
        })
    }

    fn sender(&self) -> &mpsc::Sender<(Vec<u64>, Reply)> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.inner.clone(), rx));
            tx
        })
    }
}

async fn run(inner: Arc<dyn Backend>, mut rx: mpsc::Receiver<(Vec<u64>, Reply)>) {
    while let Some(first) = rx.recv().await {
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        let mut total = batch[0].0.len();
        while total < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => {
                    total += req.0.len();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        // Callers that already gave up need no answer.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        // Each batch runs on its own task: a slow one does not hold up the next.
        tokio::spawn(read_batch(inner.clone(), batch));
    }
}

async fn read_batch(inner: Arc<dyn Backend>, batch: Vec<(Vec<u64>, Reply)>) {
    let keys: Vec<u64> = batch.iter().flat_map(|(k, _)| k.iter().copied()).collect();
    let result = match tokio::time::timeout(BATCH_TIMEOUT, inner.get_many(&keys)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Timeout(BATCH_TIMEOUT)),
    };
    let mut offset = 0;
    for (k, reply) in batch {
        let part = match &result {
            Ok(values) => values
                .get(offset..offset + k.len())
                .map(<[Option<Bytes>]>::to_vec)
                .ok_or_else(|| "backend answered too few values".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        offset += k.len();
        // The caller may have given up (timeout); nothing to do then.
        let _ = reply.send(part);
    }
}

/// Most bytes in one batch of writes.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

async fn run_writes(inner: Arc<dyn Backend>, mut rx: mpsc::Receiver<Write>) {
    while let Some(first) = rx.recv().await {
        tokio::task::yield_now().await;
        let mut bytes = first.1.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(w) => {
                    bytes += w.1.len();
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        tokio::spawn(write_batch(inner.clone(), batch));
    }
}

async fn write_batch(inner: Arc<dyn Backend>, mut batch: Vec<Write>) {
    // One call per distinct TTL (in practice there is one).
    while let Some(ttl) = batch.first().map(|w| w.2) {
        let (same, rest): (Vec<Write>, Vec<Write>) = batch.into_iter().partition(|w| w.2 == ttl);
        batch = rest;
        let (items, replies): (Vec<(u64, Bytes)>, Vec<_>) =
            same.into_iter().map(|(k, v, _, r)| ((k, v), r)).unzip();
        let result = match tokio::time::timeout(BATCH_TIMEOUT, inner.set_many(items, ttl)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("timed out after {BATCH_TIMEOUT:?}")),
        };
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

impl Backend for Batching {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn keeps_uncompressed(&self) -> bool {
        self.inner.keeps_uncompressed()
    }

    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.sender()
                .try_send((keys.to_vec(), tx))
                .map_err(|e| BackendError::Failed(format!("read queue: {e}")))?;
            rx.await
                .map_err(|_| BackendError::Failed("batching task stopped".into()))?
                .map_err(BackendError::Failed)
        })
    }

    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.write_sender()
                .try_send((key, value, ttl, tx))
                .map_err(|e| BackendError::Failed(format!("write queue: {e}")))?;
            rx.await
                .map_err(|_| BackendError::Failed("batching task stopped".into()))?
                .map_err(BackendError::Failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the key lists it is asked for (reads) and the batches it writes; key k
    /// holds the value k (as text).
    #[derive(Default)]
    struct Recording(Mutex<Vec<Vec<u64>>>, Mutex<Vec<Vec<u64>>>);

    impl Backend for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
            self.0.lock().expect("lock").push(keys.to_vec());
            Box::pin(async move {
                Ok(keys
                    .iter()
                    .map(|k| (k % 2 == 0).then(|| Bytes::from(k.to_string())))
                    .collect())
            })
        }
        fn set<'a>(&'a self, key: u64, _: Bytes, _: Duration) -> BackendFuture<'a, ()> {
            self.1.lock().expect("lock").push(vec![key]);
            Box::pin(async { Ok(()) })
        }
        fn set_many<'a>(&'a self, items: Vec<(u64, Bytes)>, _: Duration) -> BackendFuture<'a, ()> {
            self.1
                .lock()
                .expect("lock")
                .push(items.iter().map(|(k, _)| *k).collect());
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn concurrent_writes_become_one_batch() {
        let rec = Arc::new(Recording::default());
        let batching = Arc::new(Batching::new(rec.clone()));
        let mut tasks = Vec::new();
        for k in 0..6u64 {
            let b = batching.clone();
            tasks.push(tokio::spawn(async move {
                b.set(k, Bytes::from_static(b"v"), Duration::from_secs(60))
                    .await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("written");
        }
        let writes = rec.1.lock().expect("lock");
        assert_eq!(writes.len(), 1, "one pipelined batch: {writes:?}");
        assert_eq!(writes[0].len(), 6);
    }

    #[tokio::test]
    async fn concurrent_reads_become_one_call_with_each_callers_values() {
        let rec = Arc::new(Recording::default());
        let batching = Arc::new(Batching::new(rec.clone()));
        let mut tasks = Vec::new();
        for k in 0..8u64 {
            let b = batching.clone();
            tasks.push(tokio::spawn(
                async move { (k, b.get_many(&[k, k + 100]).await) },
            ));
        }
        for t in tasks {
            let (k, got) = t.await.expect("task");
            let want: Vec<Option<Bytes>> = [k, k + 100]
                .iter()
                .map(|k| (k % 2 == 0).then(|| Bytes::from(k.to_string())))
                .collect();
            assert_eq!(got.expect("values"), want, "caller {k} gets its own values");
        }
        let calls = rec.0.lock().expect("lock");
        assert_eq!(calls.len(), 1, "one combined call: {calls:?}");
        assert_eq!(calls[0].len(), 16);
    }

    #[tokio::test]
    async fn a_lone_read_is_answered() {
        let rec = Arc::new(Recording::default());
        let batching = Batching::new(rec.clone());
        assert_eq!(
            batching.get_many(&[2]).await.expect("values"),
            vec![Some(Bytes::from("2"))]
        );
        assert_eq!(batching.get_many(&[3]).await.expect("values"), vec![None]);
        assert_eq!(rec.0.lock().expect("lock").len(), 2);
    }
}
