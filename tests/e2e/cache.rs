//! The results cache against the real test bed: for the whole equivalence query set, a
//! cold run, a warm run and a run with `end` moved forward all equal Prometheus' own
//! answers, and the warm run sends nothing to Prometheus for cached pieces. Identical
//! concurrent requests share their querier requests.

use http::Method;

use crate::split_equivalence::{compare, expressions};
use crate::support::{
    CountingProxy, Reply, TestBed, bed, blocking, counting_proxy, form, redis_config, secs, send,
    start_frontend, start_redis, test_config,
};

const H: i64 = 3_600_000;

pub async fn range(base: &str, expr: &str, start: i64, end: i64, step: &str) -> Reply {
    let qs = form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", step),
    ]);
    send(
        Method::GET,
        &format!("{base}/api/v1/query_range?{qs}"),
        &[],
        None,
    )
    .await
}

/// Compares, asking Prometheus again when they differ (see split_equivalence).
pub async fn differs(
    prom: &str,
    expr: &str,
    window: (i64, i64, &str),
    direct: &Reply,
    via: &Reply,
) -> Option<String> {
    compare(expr, direct, via, false)?;
    let mut nondeterministic = false;
    for _ in 0..3 {
        let again = range(prom, expr, window.0, window.1, window.2).await;
        nondeterministic |= again.body != direct.body;
    }
    compare(expr, direct, via, nondeterministic)
}

#[tokio::test]
async fn cold_warm_and_moved_end_equal_direct_memory() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    cold_warm_and_moved_end(tb, &proxy, &fe.url, "memory").await;
}

#[tokio::test]
async fn cold_warm_and_moved_end_equal_direct_redis() {
    let tb = bed().await;
    let (_redis, port) = blocking(|| start_redis(None)).await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(redis_config(&proxy.url, port)).await;
    cold_warm_and_moved_end(tb, &proxy, &fe.url, "redis").await;
}

async fn cold_warm_and_moved_end(tb: &TestBed, proxy: &CountingProxy, fe_url: &str, backend: &str) {
    // Two days ending two hours before the data ends: all of it older than the
    // freshness cut-off, crossing two midnights.
    let (start, end) = (tb.end_ms - 50 * H, tb.end_ms - 2 * H);
    let step = "60";
    let mut problems = Vec::new();
    let mut directs = Vec::new();

    // Cold.
    for expr in expressions() {
        let direct = range(&tb.prom_url, &expr, start, end, step).await;
        let via = range(fe_url, &expr, start, end, step).await;
        if let Some(p) = differs(&tb.prom_url, &expr, (start, end, step), &direct, &via).await {
            problems.push(format!("cold {expr}: {p}"));
        }
        directs.push((expr, direct));
    }

    // Warm: cached pieces send nothing downstream.
    let mut hits = 0;
    let mut cached_exprs = std::collections::HashSet::new();
    for (expr, direct) in &directs {
        let before = proxy.requests();
        let via = range(fe_url, expr, start, end, step).await;
        let sent = proxy.requests() - before;
        if let Some(p) = differs(&tb.prom_url, expr, (start, end, step), direct, &via).await {
            problems.push(format!("warm {expr}: {p}"));
        }
        match via.x_cache() {
            "hit" => {
                hits += 1;
                cached_exprs.insert(expr.clone());
                if sent != 0 {
                    problems.push(format!(
                        "warm {expr}: X-Cache hit but {sent} querier requests"
                    ));
                }
            }
            // Uncacheable (negative offset) or failing queries go to the querier again.
            "skip" | "none" => {}
            other => problems.push(format!("warm {expr}: X-Cache {other}, expected hit")),
        }
    }
    let total = directs.len();
    assert!(
        hits * 100 >= total * 90,
        "only {hits} of {total} warm queries were cache hits"
    );

    // The dashboard refreshes with `end` moved forward: only the new tail is fetched.
    let moved = end + 30_000;
    for (expr, _) in &directs {
        // Same step as the cached runs: the first request ends 30 s later (no new grid
        // point), the refresh another 30 s later (one new point: the only fetch).
        let direct = range(&tb.prom_url, expr, start, moved, step).await;
        let first = range(fe_url, expr, start, moved, step).await;
        let before = proxy.requests();
        let refreshed = range(fe_url, expr, start, moved + 30_000, step).await;
        let sent = proxy.requests() - before;
        let direct_refreshed = range(&tb.prom_url, expr, start, moved + 30_000, step).await;
        for (name, via, d) in [
            ("moved", &first, &direct),
            ("refreshed", &refreshed, &direct_refreshed),
        ] {
            if let Some(p) = differs(
                &tb.prom_url,
                expr,
                (
                    start,
                    if name == "moved" {
                        moved
                    } else {
                        moved + 30_000
                    },
                    step,
                ),
                d,
                via,
            )
            .await
            {
                problems.push(format!("{name} {expr}: {p}"));
            }
        }
        if direct_refreshed.status == 200 && refreshed.status != 200 {
            problems.push(format!("refreshed {expr}: status {}", refreshed.status));
        }
        let outcome = refreshed.x_cache();
        // `@ end()` names the end itself: a moved end is another query, rightly a miss.
        let reusable = cached_exprs.contains(expr) && !expr.contains("end()");
        if reusable && outcome != "hit" && outcome != "partial" {
            problems.push(format!(
                "refreshed {expr}: X-Cache {outcome}, expected hit or partial"
            ));
        }
        if outcome == "partial" && sent > 1 {
            problems.push(format!(
                "refreshed {expr}: {sent} querier requests for a 30s tail"
            ));
        }
    }
    // Every lookup and skip is counted by backend, result and reason.
    let metrics = send(Method::GET, &format!("{fe_url}/metrics"), &[], None)
        .await
        .text();
    for needle in [
        format!("promql_frontend_cache_lookups_total{{backend=\"{backend}\",result=\"hit\"}}"),
        format!("promql_frontend_cache_lookups_total{{backend=\"{backend}\",result=\"miss\"}}"),
        "promql_frontend_cache_skips_total{reason=\"negative_offset\"}".to_owned(),
        format!("promql_frontend_cache_bytes_total{{backend=\"{backend}\",op=\"write\"}}"),
    ] {
        if !metrics.contains(&needle) {
            problems.push(format!("/metrics lacks {needle}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn identical_concurrent_requests_share_querier_requests() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    let (start, end) = (tb.end_ms - 30 * H, tb.end_ms - 3 * H);
    let expr = "histogram_quantile(0.9, sum by (le, instance) (rate(request_duration_seconds_bucket[10m])))";
    let direct = range(&tb.prom_url, expr, start, end, "60").await;
    let before = proxy.requests();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = fe.url.clone();
        tasks.push(tokio::spawn(async move {
            range(&url, expr, start, end, "60").await
        }));
    }
    for t in tasks {
        let via = t.await.expect("request task");
        assert_eq!(via.status, 200);
        assert!(
            compare(expr, &direct, &via, true).is_none(),
            "coalesced answers equal direct"
        );
    }
    let pieces = ((end / (24 * H)) - (start / (24 * H)) + 1) as usize;
    let sent = proxy.requests() - before;
    assert!(
        sent <= pieces,
        "8 identical requests over {pieces} pieces sent {sent} querier requests (want at most one per piece)"
    );
}

/// Exact repeats of an old window are answered whole from the response cache: the same
/// bytes (plain and gzip) as the first answer, equal to Prometheus', nothing sent to
/// Prometheus, never shared across tenants; a window reaching into the last
/// `max_freshness` is never answered whole.
#[tokio::test]
async fn exact_repeats_are_answered_whole_and_only_for_old_windows() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    let expr = "sum by (code) (rate(http_requests_total[5m]))";
    let (start, end) = (tb.end_ms - 30 * H, tb.end_ms - 2 * H);
    let qs = form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", "60"),
    ]);
    let ask = |tenant: &'static str, gzip: bool| {
        let url = format!("{}/api/v1/query_range?{qs}", fe.url);
        async move {
            let mut headers = vec![("x-scope-orgid", tenant)];
            if gzip {
                headers.push(("accept-encoding", "gzip"));
            }
            send(Method::GET, &url, &headers, None).await
        }
    };
    let direct = range(&tb.prom_url, expr, start, end, "60").await;
    let first = ask("team-a", false).await;
    assert_eq!(first.x_cache(), "miss");
    assert_eq!(
        differs(&tb.prom_url, expr, (start, end, "60"), &direct, &first).await,
        None
    );
    let asked = proxy.requests();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for gzip in [true, false, true] {
        let again = ask("team-a", gzip).await;
        assert_eq!(again.x_cache(), "hit");
        assert_eq!(again.headers.contains_key("content-encoding"), gzip);
        assert_eq!(again.decoded(), first.body, "the same bytes");
    }
    assert_eq!(proxy.requests(), asked, "nothing sent to Prometheus");
    // Another tenant starts cold.
    let other = ask("team-b", false).await;
    assert_eq!(other.x_cache(), "miss");
    assert!(proxy.requests() > asked);

    // A window ending now: repeats still fetch the fresh tail.
    let fresh = form(&[
        ("query", expr),
        ("start", &secs(tb.end_ms - 6 * H)),
        ("end", &secs(chrono::Utc::now().timestamp_millis())),
        ("step", "60"),
    ]);
    let url = format!("{}/api/v1/query_range?{fresh}", fe.url);
    send(Method::GET, &url, &[], None).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = proxy.requests();
    let repeat = send(Method::GET, &url, &[], None).await;
    assert_eq!(repeat.status, 200);
    assert_eq!(repeat.x_cache(), "partial", "the tail is fetched again");
    assert!(proxy.requests() > before);
}
