//! Two real Prometheus replicas on copies of the test bed behind one frontend: one dies
//! (SIGKILL) in the middle of a stream of queries, then the other, then one comes back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;

use crate::split_equivalence::compare;
use crate::support::{
    Reply, Scratch, bed, blocking, copy_tsdb, form, secs, send, start_frontend, start_prometheus,
    start_prometheus_on, test_config,
};

const EXPRS: &[&str] = &[
    "up",
    "rate(http_requests_total[5m])",
    "sum by (code) (rate(http_requests_total[5m]))",
    "max by (sensor) (temperature_celsius)",
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "increase(batch_jobs_processed_total[1h])",
    "count by (code) (http_requests_total)",
    "avg_over_time(temperature_celsius[30m])",
    "node_memory_free_bytes",
    "changes(up[1h])",
];

/// `(start, end, step)` windows over the test bed, Unix ms and seconds.
fn windows(end_ms: i64) -> [(i64, i64, &'static str); 3] {
    const H: i64 = 3_600_000;
    let midnight = end_ms - end_ms % (24 * H);
    [
        (end_ms - 6 * H, end_ms, "60"),
        (end_ms - 48 * H, end_ms, "300"),
        (midnight - 13 * H, midnight + 5 * H, "120"),
    ]
}

fn query_string(expr: &str, (start, end, step): (i64, i64, &str)) -> String {
    form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", step),
    ])
}

async fn ask(base: &str, qs: &str) -> Reply {
    send(
        Method::GET,
        &format!("{base}/api/v1/query_range?{qs}"),
        &[],
        None,
    )
    .await
}

#[tokio::test]
async fn replicas_fail_over_and_recover() {
    let tb = bed().await;
    let scratch = Scratch::new("ha");
    let (dir_a, dir_b) = (scratch.0.join("a"), scratch.0.join("b"));
    let source = tb.data_dir.clone();
    let (mut prom_a, port_a, mut prom_b, port_b) = blocking(move || {
        copy_tsdb(&source, &dir_a);
        copy_tsdb(&source, &dir_b);
        let (a, port_a) = start_prometheus(&dir_a, None);
        let (b, port_b) = start_prometheus(&dir_b, None);
        (a, port_a, b, port_b)
    })
    .await;
    let url_a = format!("http://127.0.0.1:{port_a}");
    let url_b = format!("http://127.0.0.1:{port_b}");

    let ejection = Duration::from_secs(3);
    let deadline = Duration::from_secs(20);
    let mut config = test_config(&url_a);
    config.downstream.urls = vec![url_a.clone(), url_b.clone()];
    config.downstream.connect_timeout = Duration::from_secs(1);
    config.downstream.ejection_period = ejection;
    config.downstream.deadline = deadline;
    // Every query reaches the replicas.
    config.cache.enabled = false;
    config.retry.backoff_base = Duration::from_millis(20);
    config.retry.backoff_cap = Duration::from_millis(100);
    config.validate().expect("valid config");
    let fe = start_frontend(config).await;

    // The answers to compare with, straight from the test bed's Prometheus.
    let mut direct: HashMap<String, Reply> = HashMap::new();
    let mut stream = Vec::new();
    for expr in EXPRS {
        for window in windows(tb.end_ms) {
            let qs = query_string(expr, window);
            let reply = ask(&tb.prom_url, &qs).await;
            assert_eq!(reply.status, 200, "direct {expr}: {}", reply.text());
            direct.insert(qs.clone(), reply);
            stream.push((expr.to_string(), qs));
        }
    }
    let stream: Vec<(String, String)> = stream.iter().cycle().take(200).cloned().collect();

    // 200 queries, 4 at a time; replica A is killed after the 60th answer.
    let done = Arc::new(AtomicUsize::new(0));
    let direct = Arc::new(direct);
    let runner = {
        let (done, direct, base) = (done.clone(), direct.clone(), fe.url.clone());
        tokio::spawn(async move {
            let gate = Arc::new(tokio::sync::Semaphore::new(4));
            let mut tasks = tokio::task::JoinSet::new();
            for (expr, qs) in stream {
                let permit = gate.clone().acquire_owned().await.expect("semaphore");
                let (done, direct, base) = (done.clone(), direct.clone(), base.clone());
                tasks.spawn(async move {
                    let via = ask(&base, &qs).await;
                    drop(permit);
                    done.fetch_add(1, Ordering::SeqCst);
                    compare(&expr, &direct[&qs], &via, true).map(|why| format!("{expr}: {why}"))
                });
            }
            let mut problems = Vec::new();
            while let Some(result) = tasks.join_next().await {
                if let Some(problem) = result.expect("query task") {
                    problems.push(problem);
                }
            }
            problems
        })
    };
    while done.load(Ordering::SeqCst) < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    blocking(move || prom_a.kill_hard()).await;
    let problems = runner.await.expect("runner");
    assert!(
        problems.is_empty(),
        "{} of 200 answers differed or failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let healthy_a =
        format!("promql_frontend_downstream_endpoint_healthy{{downstream=\"{url_a}\"}}");
    let successes_a = format!(
        "promql_frontend_downstream_attempts_total{{downstream=\"{url_a}\",kind=\"query_range\",outcome=\"success\"}}"
    );
    let metrics = metrics_text(&fe.url).await;
    assert_eq!(
        metric(&metrics, &healthy_a),
        Some(0.0),
        "A ejected:\n{metrics}"
    );

    // A comes back while B serves: it gets traffic again once its ejection ends.
    let dir_a = scratch.0.join("a");
    let mut prom_a = blocking(move || start_prometheus_on(&dir_a, port_a)).await;
    let before = metric(&metrics, &successes_a).unwrap_or(0.0);
    let back = Instant::now();
    let qs = query_string(EXPRS[1], windows(tb.end_ms)[0]);
    loop {
        let reply = ask(&fe.url, &qs).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let metrics = metrics_text(&fe.url).await;
        if metric(&metrics, &successes_a).unwrap_or(0.0) > before {
            assert_eq!(metric(&metrics, &healthy_a), Some(1.0), "{metrics}");
            break;
        }
        assert!(
            back.elapsed() < ejection + Duration::from_secs(5),
            "A got no traffic within {ejection:?} of coming back:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Both dead: a clean 503 within the deadline, and not ready.
    blocking(move || {
        prom_a.kill_hard();
        prom_b.kill_hard();
    })
    .await;
    let started = Instant::now();
    let down = ask(&fe.url, &qs).await;
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.json()["status"], "error");
    assert_eq!(down.json()["errorType"], "unavailable");
    assert!(started.elapsed() < deadline, "took {:?}", started.elapsed());
    let ready = send(Method::GET, &format!("{}/-/ready", fe.url), &[], None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());

    // B comes back on its port. Every endpoint is ejected; the frontend still tries the
    // one ejected first rather than refusing, so it answers as soon as B is up.
    let dir_b = scratch.0.join("b");
    let _prom_b = blocking(move || start_prometheus_on(&dir_b, port_b)).await;
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < ejection {
        let reply = ask(&fe.url, &qs).await;
        if reply.status == 200 {
            recovered = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = recovered.unwrap_or_else(|| panic!("no answer within {ejection:?} of the restart"));
    assert_eq!(compare(EXPRS[1], &direct[&qs], &reply, true), None);
    let ready = send(Method::GET, &format!("{}/-/ready", fe.url), &[], None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
}

async fn metrics_text(base: &str) -> String {
    send(Method::GET, &format!("{base}/metrics"), &[], None)
        .await
        .text()
}

/// The value of the sample whose name and labels are exactly `series`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
