use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::layers::plan::cost::{Cost, judge};

/// A querier whose answers take `base` up to `knee` requests at once and grow by half
/// of `base` for every request beyond it (a saturated machine).
struct FakeQuerier {
    at_once: AtomicUsize,
    knee: AtomicUsize,
}

impl FakeQuerier {
    async fn answer(&self) -> Duration {
        let base = Duration::from_millis(200);
        let c = self.at_once.fetch_add(1, Ordering::SeqCst) + 1;
        let knee = self.knee.load(Ordering::SeqCst);
        let took = base + base.mul_f64(0.5 * c.saturating_sub(knee) as f64);
        tokio::time::sleep(took).await;
        self.at_once.fetch_sub(1, Ordering::SeqCst);
        took
    }
}

/// Runs `clients` that keep asking through the limiter for `rounds` rounds each, judging
/// every answer against the best one seen, and returns the limits seen after each answer.
async fn drive(
    limiter: &Arc<Limiter>,
    querier: &Arc<FakeQuerier>,
    clients: usize,
    rounds: usize,
) -> Vec<usize> {
    let best = Arc::new(Mutex::new(None::<Cost>));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (limiter, querier, best, seen) =
            (limiter.clone(), querier.clone(), best.clone(), seen.clone());
        tasks.spawn(async move {
            for _ in 0..rounds {
                let permit = limiter.acquire().await;
                let took = querier.answer().await;
                let before = *best.lock().expect("lock");
                permit.done(judge(took, 100, before));
                let mut b = best.lock().expect("lock");
                *b = Some(b.map_or_else(
                    || Cost::first(took, 100, Duration::ZERO),
                    |c| c.with(took, 100, Duration::ZERO),
                ));
                seen.lock().expect("lock").push(limiter.limit());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    seen.lock().expect("lock").clone()
}

#[tokio::test(start_paused = true)]
async fn settles_below_the_knee_and_recovers_when_latency_falls() {
    let limiter = Limiter::new(4, 64, true);
    let querier = Arc::new(FakeQuerier {
        at_once: AtomicUsize::new(0),
        knee: AtomicUsize::new(8),
    });
    // 32 clients always waiting: the limit alone decides how many run at once.
    let seen = drive(&limiter, &querier, 32, 60).await;
    let settled = &seen[seen.len() / 2..];
    let mean = settled.iter().sum::<usize>() as f64 / settled.len() as f64;
    let max = settled.iter().copied().max().unwrap_or(0);
    assert!(mean < 8.0, "settles below the knee on average: {mean}");
    assert!(max <= 9, "never far past the knee: {max}");
    assert!(
        settled.iter().all(|&l| l >= 4),
        "does not collapse: {settled:?}"
    );

    // The querier gets faster (more cores): the limit grows again.
    querier.knee.store(40, Ordering::SeqCst);
    let seen = drive(&limiter, &querier, 48, 60).await;
    let late = seen[seen.len() * 3 / 4..]
        .iter()
        .copied()
        .min()
        .unwrap_or(0);
    assert!(late >= 20, "recovers when latency falls: {late}");
}

#[tokio::test(start_paused = true)]
async fn waits_for_a_place_and_frees_it_when_dropped() {
    let limiter = Limiter::new(2, 8, true);
    let a = limiter.acquire().await;
    let b = limiter.acquire().await;
    assert_eq!(limiter.headroom(), 0);
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiting.is_finished(), "a third request waits");
    drop(a);
    let c = waiting.await.expect("task");
    assert_eq!(limiter.limit(), 2, "a dropped permit teaches nothing");
    b.done(Signal::Failed);
    assert_eq!(limiter.limit(), 1, "a failure decreases");
    drop(c);
    assert_eq!(limiter.headroom(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_limit_is_the_ceiling() {
    let limiter = Limiter::new(2, 5, false);
    assert_eq!(limiter.limit(), 5);
    limiter.acquire().await.done(Signal::Failed);
    assert_eq!(limiter.limit(), 5);
}
