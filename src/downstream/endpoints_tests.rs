use super::*;

const OPTS: HealthOptions = HealthOptions {
    eject_after: 3,
    ejection_period: Duration::from_secs(10),
};

fn picks(e: &Endpoints, n: usize) -> Vec<usize> {
    (0..n).map(|_| e.pick(0)).collect()
}

#[tokio::test(start_paused = true)]
async fn round_robin_rotates_and_primary_backup_sticks() {
    let rr = Endpoints::new(3, BalancePolicy::RoundRobin, OPTS);
    assert_eq!(picks(&rr, 6), [0, 1, 2, 0, 1, 2]);
    let pb = Endpoints::new(3, BalancePolicy::PrimaryBackup, OPTS);
    assert_eq!(picks(&pb, 3), [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn retries_go_to_endpoints_not_tried_yet() {
    for policy in [BalancePolicy::RoundRobin, BalancePolicy::PrimaryBackup] {
        let e = Endpoints::new(3, policy, OPTS);
        let first = e.pick(0);
        let second = e.pick(1 << first);
        let third = e.pick((1 << first) | (1 << second));
        let mut all = vec![first, second, third];
        all.sort();
        assert_eq!(all, [0, 1, 2], "{policy:?}");
        // Everything tried: still an endpoint.
        assert!(e.pick(0b111) < 3);
    }
    let pb = Endpoints::new(2, BalancePolicy::PrimaryBackup, OPTS);
    assert_eq!(pb.pick(0b01), 1, "the backup after the primary failed");
}

#[tokio::test(start_paused = true)]
async fn a_retry_prefers_a_tried_healthy_endpoint_to_an_ejected_one() {
    let e = Endpoints::new(2, BalancePolicy::RoundRobin, OPTS);
    for _ in 0..3 {
        e.record_failure(1, |_| {});
    }
    assert!(!e.is_healthy(1));
    assert_eq!(e.pick(0b01), 0, "endpoint 0 answered 5xx but is alive");
    assert_eq!(e.pick(0b11), 0);
}

#[tokio::test(start_paused = true)]
async fn transitions_are_published_under_the_lock() {
    let e = Endpoints::new(1, BalancePolicy::RoundRobin, OPTS);
    let mut seen = Vec::new();
    for _ in 0..4 {
        e.record_failure(0, |t| seen.push(t));
    }
    e.record_answer(0, |t| seen.push(t));
    e.record_answer(0, |t| seen.push(t));
    assert_eq!(seen, [Transition::Ejected, Transition::Restored]);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_until_the_period_ends() {
    let e = Endpoints::new(2, BalancePolicy::PrimaryBackup, OPTS);
    assert_eq!(e.record_failure(0, |_| {}), Transition::Unchanged);
    assert_eq!(e.record_failure(0, |_| {}), Transition::Unchanged);
    assert!(e.is_healthy(0));
    assert_eq!(e.record_failure(0, |_| {}), Transition::Ejected);
    assert!(!e.is_healthy(0));
    assert_eq!(picks(&e, 3), [1, 1, 1], "the ejected primary gets nothing");

    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(e.pick(0), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(e.is_healthy(0), "period over: tried again");
    assert_eq!(e.pick(0), 0);

    // The trial request fails: ejected again at once, for a whole period.
    assert_eq!(e.record_failure(0, |_| {}), Transition::Unchanged);
    assert!(!e.is_healthy(0));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(e.pick(0), 0);
    assert_eq!(e.record_answer(0, |_| {}), Transition::Restored);
    assert!(e.is_healthy(0));
    // One failure after recovery does not eject.
    assert_eq!(e.record_failure(0, |_| {}), Transition::Unchanged);
    assert!(e.is_healthy(0));
}

#[tokio::test(start_paused = true)]
async fn an_answer_resets_the_failure_count() {
    let e = Endpoints::new(1, BalancePolicy::RoundRobin, OPTS);
    e.record_failure(0, |_| {});
    e.record_failure(0, |_| {});
    e.record_answer(0, |_| {});
    e.record_failure(0, |_| {});
    e.record_failure(0, |_| {});
    assert!(e.is_healthy(0));
    assert_eq!(e.record_failure(0, |_| {}), Transition::Ejected);
}

#[tokio::test(start_paused = true)]
async fn with_everything_ejected_the_soonest_back_is_tried() {
    let e = Endpoints::new(3, BalancePolicy::RoundRobin, OPTS);
    for i in [1, 2, 0] {
        for _ in 0..3 {
            e.record_failure(i, |_| {});
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert!((0..3).all(|i| !e.is_healthy(i)));
    assert_eq!(e.pick(0), 1, "ejected first, back first");
    assert_eq!(e.pick(1 << 1), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_never_ejects_and_answers_are_remembered() {
    let e = Endpoints::new(
        2,
        BalancePolicy::RoundRobin,
        HealthOptions {
            eject_after: 0,
            ..OPTS
        },
    );
    for _ in 0..100 {
        assert_eq!(e.record_failure(0, |_| {}), Transition::Unchanged);
    }
    assert!(e.is_healthy(0));
    assert!(!e.answered_within(1, Duration::from_secs(30)));
    e.record_answer(1, |_| {});
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(e.answered_within(1, Duration::from_secs(30)));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!e.answered_within(1, Duration::from_secs(30)));
    e.record_answer(1, |_| {});
    e.record_failure(1, |_| {});
    assert!(
        !e.answered_within(1, Duration::from_secs(30)),
        "a failure after the answer"
    );
}
