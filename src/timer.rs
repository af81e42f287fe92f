//! Timers recycled from one request to the next.
//!
//! Every forwarded request arms two timers that almost never fire: hyper's header-read
//! timeout for the client's next request, and the querier attempt's deadline. A fresh
//! tokio sleep is put into the runtime's timer wheel when first polled and taken out
//! again when dropped, each under the time driver's lock: measured, the two cost about
//! as much as parsing the request. A [`SleepPool`] keeps sleeps that were dropped
//! unexpired, still in the wheel: the next request moves one to its later deadline,
//! which only stores the new deadline (tokio re-files the entry when the old one comes
//! due). A sleep goes into the pool holding a waker that does nothing, so no task is kept
//! or woken by it; one whose old deadline passes while it waits there is an ordinary
//! expired sleep, put back into the wheel when reused.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Idle sleeps kept for reuse, at most `capacity` of them. Made inside the runtime
/// whose timer the sleeps use, and used only there.
///
/// Split into shards, each thread using its own (as tokio splits its timer wheel by
/// worker), so that worker threads do not contend for one lock on every request.
pub struct SleepPool {
    shards: Box<[Mutex<Vec<IdleSleep>>]>,
    /// Idle sleeps kept per shard.
    per_shard: usize,
}

/// A sleep kept in a [`SleepPool`], still in the timer wheel.
type IdleSleep = Pin<Box<Sleep>>;

/// Shards of a [`SleepPool`].
const SHARDS: usize = 8;

/// The shard of the calling thread: threads are numbered as they first ask.
fn shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl SleepPool {
    /// A pool keeping up to about `capacity` idle sleeps (a few hundred bytes each).
    pub fn new(capacity: usize) -> Arc<SleepPool> {
        Arc::new(SleepPool {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        })
    }

    /// A sleep that ends at `deadline`: an idle one moved there when the pool has one,
    /// a new one otherwise. Polled from any task; given back to the pool when dropped.
    pub fn sleep_until(self: &Arc<Self>, deadline: Instant) -> PooledSleep {
        let recycled = self.shards[shard()]
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop());
        let sleep = match recycled {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        PooledSleep {
            sleep: Some(sleep),
            pool: Arc::clone(self),
        }
    }

    /// Idle sleeps held now.
    pub fn idle(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |idle| idle.len()))
            .sum()
    }
}

/// A sleep of a [`SleepPool`]; resolves at its deadline like `tokio::time::sleep_until`.
pub struct PooledSleep {
    sleep: Option<Pin<Box<Sleep>>>,
    pool: Arc<SleepPool>,
}

impl Future for PooledSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for PooledSleep {
    fn drop(&mut self) {
        let Some(sleep) = self.sleep.take() else {
            return;
        };
        // Polled once with a waker that does nothing: the task that last polled it
        // (perhaps a connection that has ended) is neither held in memory by the pool
        // nor woken when the old deadline comes. A sleep that ended is out of the wheel:
        // nothing is saved by keeping it.
        let mut sleep = sleep;
        if sleep
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
            .is_ready()
        {
            return;
        }
        if let Ok(mut idle) = self.pool.shards[shard()].lock()
            && idle.len() < self.pool.per_shard
        {
            idle.push(sleep);
        }
    }
}

/// hyper's server timer (the HTTP/1 header-read timeout) over a [`SleepPool`].
#[derive(Clone)]
pub struct PooledTimer(pub Arc<SleepPool>);

impl hyper::rt::Timer for PooledTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.0.sleep_until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.0.sleep_until(Instant::from_std(deadline)))
    }
}

impl hyper::rt::Sleep for PooledSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_its_deadline_new_or_recycled() {
        let pool = SleepPool::new(4);
        let start = Instant::now();
        pool.sleep_until(start + Duration::from_secs(3)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(pool.idle(), 0, "an ended sleep is not kept");

        // Dropped before its deadline: kept, and the next sleep is that one moved.
        drop(pool.sleep_until(Instant::now() + Duration::from_secs(10)));
        assert_eq!(pool.idle(), 1);
        let t = Instant::now();
        pool.sleep_until(t + Duration::from_secs(20)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(20), "moved later");
        assert_eq!(pool.idle(), 0);

        drop(pool.sleep_until(Instant::now() + Duration::from_secs(10)));
        let t = Instant::now();
        pool.sleep_until(t + Duration::from_secs(2)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(2), "moved earlier");
    }

    #[tokio::test(start_paused = true)]
    async fn a_recycled_sleep_whose_old_deadline_passed_idle_still_waits_for_its_new_one() {
        let pool = SleepPool::new(4);
        drop(pool.sleep_until(Instant::now() + Duration::from_secs(1)));
        // The old deadline passes while the sleep is idle in the pool.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t = Instant::now();
        pool.sleep_until(t + Duration::from_secs(7)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_polled_by_one_task_then_recycled_wakes_the_next() {
        let pool = SleepPool::new(4);
        // Polled (its waker registered) by another task, then dropped unexpired.
        let first = pool.sleep_until(Instant::now() + Duration::from_secs(60));
        let polled = tokio::spawn(async move {
            tokio::select! {
                () = first => false,
                () = tokio::time::sleep(Duration::from_secs(1)) => true,
            }
        });
        assert!(
            polled.await.expect("task ran"),
            "the first sleep had not ended"
        );
        assert_eq!(pool.idle(), 1);
        let t = Instant::now();
        let second = tokio::spawn({
            let pool = pool.clone();
            async move { pool.sleep_until(t + Duration::from_secs(90)).await }
        });
        second.await.expect("the second sleep ends");
        assert_eq!(t.elapsed(), Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_in_the_pool_holds_no_waker_of_the_task_that_polled_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        /// A waker that counts its wakes; its strong count tells who holds it.
        struct Counting(AtomicUsize);
        impl Wake for Counting {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let pool = SleepPool::new(4 * SHARDS);
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(counting.clone());
        let mut sleep = pool.sleep_until(Instant::now() + Duration::from_secs(5));
        assert!(
            Pin::new(&mut sleep)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(waker);
        assert_eq!(Arc::strong_count(&counting), 2, "the sleep holds the waker");
        drop(sleep);
        assert_eq!(pool.idle(), 1);
        assert_eq!(Arc::strong_count(&counting), 1, "the pool does not");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 0, "never woken");
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_keeps_at_most_its_capacity() {
        // Dropped on one thread, so into one shard.
        let pool = SleepPool::new(2 * SHARDS);
        let later = Instant::now() + Duration::from_secs(30);
        let sleeps: Vec<_> = (0..5).map(|_| pool.sleep_until(later)).collect();
        drop(sleeps);
        assert_eq!(pool.idle(), 2);
    }

    /// Tasks moving between two worker threads take sleeps on one and give them back
    /// on the other: nothing is lost or blocked, and each thread's shard stays within
    /// its share of the capacity (8 here).
    #[test]
    fn concurrent_use_from_worker_threads_keeps_sleeps_within_the_cap() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a runtime");
        let pool = SleepPool::new(64);
        rt.block_on(async {
            let later = Instant::now() + Duration::from_secs(600);
            let mut handles = Vec::new();
            for _ in 0..8 {
                let pool = pool.clone();
                handles.push(tokio::spawn(async move {
                    for _ in 0..100 {
                        let sleep = pool.sleep_until(later);
                        tokio::task::yield_now().await;
                        drop(sleep);
                    }
                }));
            }
            for h in handles {
                h.await.expect("task ran");
            }
        });
        let idle = pool.idle();
        assert!((1..=2 * 8).contains(&idle), "{idle} idle sleeps kept");
    }
}
