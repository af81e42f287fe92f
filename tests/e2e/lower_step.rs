//! Lower-step reuse against the real test bed: a query at a coarser step answered from
//! the entries of the same query at a finer step equals Prometheus' own answer, and a
//! counting proxy shows the querier was not asked; grids whose points are not all on
//! the stored grid (another phase, a step that is no multiple) are asked.

use std::time::Duration;

use http::Method;

use crate::cache::{differs, range};
use crate::split_equivalence::expressions;
use crate::support::{FrontendHandle, bed, counting_proxy, send, start_frontend, test_config};

const H: i64 = 3_600_000;

/// The value of the `/metrics` sample named exactly `series`.
async fn metric(fe: &str, series: &str) -> f64 {
    let text = send(Method::GET, &format!("{fe}/metrics"), &[], None)
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap_or(f64::NAN))
}

/// A frontend in front of `querier` without the response cache, so a repeat's
/// `X-Cache: hit` says the piece entries are stored.
async fn frontend(querier: &str) -> FrontendHandle {
    let mut config = test_config(querier);
    config.cache.response_capacity_bytes = 0;
    start_frontend(config).await
}

/// Whether the entries of this query are stored: repeats it until it is a hit (entries
/// are written in the background, after the answer). Not for a query that is never
/// stored (uncacheable, or answered with warnings): those stay `skip` or `miss`.
async fn stored(fe: &str, expr: &str, start: i64, end: i64, step: &str) -> bool {
    for _ in 0..50 {
        match range(fe, expr, start, end, step).await.x_cache() {
            "hit" => return true,
            "skip" => return false,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    false
}

#[tokio::test]
async fn coarser_steps_from_finer_entries_equal_direct() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = frontend(&proxy.url).await;
    // Six hours ending two hours before the data ends (older than the freshness
    // cut-off), on a 5-minute boundary so 15 s, 1 m and 5 m grids share their points.
    let start = (tb.end_ms - 8 * H) / 300_000 * 300_000;
    let end = start + 6 * H;
    let mut problems = Vec::new();
    let (mut reused, mut stored_fine) = (0, 0);
    for expr in expressions() {
        let direct = range(&tb.prom_url, &expr, start, end, "15").await;
        let via = range(&fe.url, &expr, start, end, "15").await;
        if let Some(p) = differs(&tb.prom_url, &expr, (start, end, "15"), &direct, &via).await {
            problems.push(format!("15s {expr}: {p}"));
        }
        // Answers with warnings and uncacheable queries are not stored: nothing can be
        // reused for them.
        let stored = stored(&fe.url, &expr, start, end, "15").await;
        stored_fine += usize::from(stored);
        for step in ["60", "300"] {
            let before = proxy.requests();
            let via = range(&fe.url, &expr, start, end, step).await;
            let asked = proxy.requests() - before;
            let direct = range(&tb.prom_url, &expr, start, end, step).await;
            if let Some(p) = differs(&tb.prom_url, &expr, (start, end, step), &direct, &via).await {
                problems.push(format!("{step}s from 15s {expr}: {p}"));
            }
            if stored {
                reused += 1;
                if asked != 0 || via.x_cache() != "hit" {
                    problems.push(format!(
                        "{step}s {expr}: asked the querier {asked} times, X-Cache {}",
                        via.x_cache()
                    ));
                }
            }
        }
        // 5 s later: none of these points is on the stored 15 s grid.
        let (s2, e2) = (start + 5_000, end + 5_000);
        let before = proxy.requests();
        let via = range(&fe.url, &expr, s2, e2, "60").await;
        let asked = proxy.requests() - before;
        let direct = range(&tb.prom_url, &expr, s2, e2, "60").await;
        if let Some(p) = differs(&tb.prom_url, &expr, (s2, e2, "60"), &direct, &via).await {
            problems.push(format!("60s other phase {expr}: {p}"));
        }
        if stored && asked == 0 {
            problems.push(format!(
                "60s other phase {expr}: served without the querier"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The set is mostly cacheable: the reuse above was exercised, not vacuous.
    assert!(stored_fine > 100, "only {stored_fine} stored at 15 s");
    let counted = metric(&fe.url, "promql_frontend_cache_lower_step_reuses_total").await;
    assert!(
        counted >= reused as f64,
        "{counted} reuses counted, {reused} expected"
    );
}

#[tokio::test]
async fn zooming_out_reuses_what_the_shorter_ranges_stored() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = frontend(&proxy.url).await;
    let expr = "sum by (code) (rate(http_requests_total[5m]))";
    // As Grafana steps them: 6 h at 20 s, 24 h at 1 m, 2 d at 5 m, all ending at the
    // same (old) time.
    let end = (tb.end_ms - 2 * H) / 300_000 * 300_000;
    let mut asked = Vec::new();
    let mut problems = Vec::new();
    for (hours, step) in [(6, "20"), (24, "60"), (48, "300")] {
        let start = end - hours * H;
        let before = proxy.requests();
        let reuses_before = metric(&fe.url, "promql_frontend_cache_lower_step_reuses_total").await;
        let via = range(&fe.url, expr, start, end, step).await;
        let reuses =
            metric(&fe.url, "promql_frontend_cache_lower_step_reuses_total").await - reuses_before;
        asked.push((
            hours,
            proxy.requests() - before,
            via.x_cache().to_owned(),
            reuses,
        ));
        let direct = range(&tb.prom_url, expr, start, end, step).await;
        if let Some(p) = differs(&tb.prom_url, expr, (start, end, step), &direct, &via).await {
            problems.push(format!("{hours}h at {step}s: {p}"));
        }
        assert!(
            stored(&fe.url, expr, start, end, step).await,
            "{hours}h not stored"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The 6 h range is new; the 24 h one reuses the last 6 h (20 s divides 1 m) and
    // asks only for the 18 h before it; the 2 d one reuses the 24 h at 1 m.
    assert_eq!(asked[0].2, "miss", "{asked:?}");
    for (hours, _, outcome, reuses) in &asked[1..] {
        assert_eq!(outcome, "partial", "{hours}h: {asked:?}");
        assert!(*reuses >= 1.0, "{hours}h: {asked:?}");
    }
}
