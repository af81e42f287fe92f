//! Retries against a fault-injecting querier: each fault gives its documented outcome
//! and nothing from a failed attempt is ever cached.
//!
//! | fault                              | outcome                                        |
//! |------------------------------------|------------------------------------------------|
//! | 5xx for the first N ≤ max_retries  | 200 with the good answer, which is cached       |
//! | 5xx on every attempt               | the querier's status and body; nothing cached   |
//! | connection reset                   | retried; always: 503 `unavailable`              |
//! | hang past request_timeout          | retried; always: 503 `timeout` within deadline  |
//! | 200 with a body that is not JSON   | retried; always: 502 `bad_response`, not cached |
//! | 400 / 422                          | passed through after one attempt                |

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::support::{FakeQuerier, FakeReply, fake_querier, send, start_frontend, test_config};

/// One hour on 2023-11-14, inside one UTC day: one piece, old enough to be cached.
const START: i64 = 1_700_000_000;
const END: i64 = START + 3600;

fn path() -> String {
    format!("/api/v1/query_range?query=up&start={START}&end={END}&step=60")
}

/// A matrix answer with one series holding the evaluation time as its value at each
/// grid point of the range query in `form`.
fn matrix_for(form: &Bytes) -> String {
    let get = |name: &str| {
        form_urlencoded::parse(form)
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {form:?}"))
    };
    let (start, end, step) = (get("start"), get("end"), get("step"));
    let mut points = Vec::new();
    let mut t = start;
    while t <= end {
        points.push(format!("[{t},\"{t}\"]"));
        t += step;
    }
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"up"}},"values":[{}]}}]}}}}"#,
        points.join(",")
    )
}

/// A querier whose query_range attempts number `n` (from 0) answer `fault(n)`, or a
/// good matrix when it returns `None`. Other paths answer a label list.
async fn faulty(fault: impl Fn(usize) -> Option<FakeReply> + Send + Sync + 'static) -> FakeQuerier {
    let attempts = AtomicUsize::new(0);
    fake_querier(Arc::new(move |_, pq, _, body| {
        if !pq.starts_with("/api/v1/query_range") {
            return FakeReply::json(200, r#"{"status":"success","data":["job"]}"#);
        }
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        fault(n).unwrap_or_else(|| FakeReply::json(200, &matrix_for(body)))
    }))
    .await
}

fn query_range_attempts(fake: &FakeQuerier) -> usize {
    fake.seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, pq, _, _)| pq.starts_with("/api/v1/query_range"))
        .count()
}

fn config(url: &str) -> promql_frontend::config::Config {
    let mut c = test_config(url);
    c.retry.max_retries = 2;
    c.retry.backoff_base = Duration::from_millis(20);
    c.retry.backoff_cap = Duration::from_millis(50);
    c
}

fn unavailable_503() -> FakeReply {
    FakeReply::json(
        503,
        r#"{"status":"error","errorType":"unavailable","error":"overloaded"}"#,
    )
}

/// Asks twice; returns both replies.
async fn twice(url: &str) -> (crate::support::Reply, crate::support::Reply) {
    let first = send(Method::GET, &format!("{url}{}", path()), &[], None).await;
    let second = send(Method::GET, &format!("{url}{}", path()), &[], None).await;
    (first, second)
}

#[tokio::test]
async fn transient_5xx_is_retried_and_only_the_good_answer_cached() {
    let fake = faulty(|n| (n < 2).then(unavailable_503)).await;
    let fe = start_frontend(config(&fake.url)).await;
    let (first, second) = twice(&fe.url).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let points = first.json()["data"]["result"][0]["values"]
        .as_array()
        .map(Vec::len);
    assert_eq!(points, Some(61), "{}", first.text());
    assert_eq!(query_range_attempts(&fake), 3, "two failures, one success");
    assert_eq!(second.status, 200);
    assert_eq!(second.headers["x-cache"], "hit");
    assert_eq!(second.decoded(), first.decoded());
    assert_eq!(query_range_attempts(&fake), 3, "served from the cache");

    let metrics = send(Method::GET, &format!("{}/metrics", fe.url), &[], None).await;
    let want = format!(
        "promql_frontend_downstream_retries_total{{downstream=\"{}\",reason=\"status_5xx\"}} 2",
        fake.url
    );
    assert!(
        metrics.text().contains(&want),
        "{want} in\n{}",
        metrics.text()
    );
}

#[tokio::test]
async fn persistent_5xx_is_the_queriers_answer_and_is_not_cached() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = fail.clone();
    let fake = faulty(move |_| {
        flag.load(Ordering::SeqCst).then(|| {
            FakeReply::json(
                500,
                r#"{"status":"error","errorType":"internal","error":"boom"}"#,
            )
        })
    })
    .await;
    let fe = start_frontend(config(&fake.url)).await;
    let first = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(first.status, 500);
    assert_eq!(first.json()["error"], "boom");
    assert_eq!(query_range_attempts(&fake), 3, "1 + max_retries attempts");

    fail.store(false, Ordering::SeqCst);
    let second = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.headers["x-cache"], "miss", "no error was cached");
    assert_eq!(query_range_attempts(&fake), 4);
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let fake = faulty(|n| (n == 0).then(FakeReply::reset)).await;
    let fe = start_frontend(config(&fake.url)).await;
    let (first, second) = twice(&fe.url).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(query_range_attempts(&fake), 2);
    assert_eq!(second.headers["x-cache"], "hit");

    let always = faulty(|_| Some(FakeReply::reset())).await;
    let fe = start_frontend(config(&always.url)).await;
    let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["errorType"], "unavailable");
    assert_eq!(query_range_attempts(&always), 3);
}

#[tokio::test]
async fn a_hanging_querier_times_out_per_attempt_within_the_deadline() {
    let fake = faulty(|_| Some(FakeReply::json(200, "{}").after(Duration::from_secs(60)))).await;
    let mut c = config(&fake.url);
    c.downstream.request_timeout = Duration::from_millis(300);
    c.downstream.deadline = Duration::from_secs(5);
    let fe = start_frontend(c).await;
    let started = Instant::now();
    let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["errorType"], "timeout");
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("downstream.request_timeout")),
        "{}",
        reply.text()
    );
    assert_eq!(query_range_attempts(&fake), 3, "each attempt timed out");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered by the deadline"
    );

    // A deadline shorter than one attempt: the deadline is what expires.
    let mut c = config(&fake.url);
    c.downstream.deadline = Duration::from_millis(500);
    let fe = start_frontend(c).await;
    let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("deadline")),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn garbage_answers_are_retried_and_never_cached() {
    let fake = faulty(|n| (n == 0).then(|| FakeReply::json(200, "{\"status\":\"succ"))).await;
    let fe = start_frontend(config(&fake.url)).await;
    let (first, second) = twice(&fe.url).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(query_range_attempts(&fake), 2);
    assert_eq!(second.headers["x-cache"], "hit");
    assert_eq!(second.decoded(), first.decoded());

    let always = faulty(|_| Some(FakeReply::json(200, "<html>not json</html>"))).await;
    let fe = start_frontend(config(&always.url)).await;
    let (first, second) = twice(&fe.url).await;
    for reply in [&first, &second] {
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert_eq!(reply.json()["errorType"], "bad_response");
    }
    assert_eq!(
        query_range_attempts(&always),
        6,
        "the second request asked again"
    );
}

#[tokio::test]
async fn client_errors_get_one_attempt() {
    for (status, body) in [
        (
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error"}"#,
        ),
        (
            422,
            r#"{"status":"error","errorType":"execution","error":"too many samples"}"#,
        ),
        (
            503,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
        ),
    ] {
        let fake = faulty(move |_| Some(FakeReply::json(status, body))).await;
        let fe = start_frontend(config(&fake.url)).await;
        let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
        assert_eq!(reply.status, status);
        assert_eq!(
            reply.json(),
            serde_json::from_str::<serde_json::Value>(body).expect("json")
        );
        assert_eq!(query_range_attempts(&fake), 1, "{status} was retried");
    }
}

/// What the querier is told as `timeout`: the client's own value, as written, when the
/// frontend waits at least that long; the frontend's limit otherwise.
#[tokio::test]
async fn the_clients_timeout_or_the_frontends_limit_goes_downstream() {
    let fake = faulty(|_| None).await;
    let mut c = config(&fake.url);
    c.downstream.deadline = Duration::from_secs(40);
    c.downstream.request_timeout = Duration::from_secs(300);
    let fe = start_frontend(c).await;
    let timeouts = |fake: &FakeQuerier| -> Vec<String> {
        fake.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, pq, _, body)| {
                let query = pq.split_once('?').map_or("", |(_, q)| q);
                form_urlencoded::parse(body)
                    .chain(form_urlencoded::parse(query.as_bytes()))
                    .filter(|(k, _)| k == "timeout")
                    .map(|(_, v)| v.into_owned())
                    .collect::<Vec<_>>()
            })
            .map(|t| {
                assert_eq!(t.len(), 1, "exactly one timeout parameter");
                t[0].clone()
            })
            .collect()
    };
    let seconds = |t: &str| t.parse::<f64>().expect("seconds");
    let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(reply.status, 200);
    let sent = seconds(&timeouts(&fake)[0]);
    assert!(sent > 30.0 && sent <= 40.0, "without a timeout: {sent}");
    // The client's value goes as written (Go's syntax included); one longer than the
    // frontend waits becomes the frontend's limit.
    for (asked, want) in [("7s", Some("7s")), ("0x1p3", Some("0x1p3")), ("1h", None)] {
        let reply = send(
            Method::GET,
            &format!("{}{}&timeout={asked}&x={asked}", fe.url, path()),
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let last = timeouts(&fake).pop().unwrap_or_default();
        match want {
            Some(want) => assert_eq!(last, want, "timeout={asked}"),
            None => assert!(
                seconds(&last) > 30.0 && seconds(&last) <= 40.0,
                "timeout={asked}: sent {last}"
            ),
        }
    }
    // Instant queries (passthrough) are told the same way.
    for (asked, want) in [("7s", "7s"), ("%2B1", "%2B1")] {
        let reply = send(
            Method::GET,
            &format!("{}/api/v1/query?query=up&timeout={asked}", fe.url),
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let seen = fake.seen.lock().expect("lock");
        let (_, pq, _, _) = seen.last().expect("the instant query");
        assert_eq!(pq, &format!("/api/v1/query?query=up&timeout={want}"));
    }
    // An attempt limit below the client's timeout is what the querier is told.
    let mut c = config(&fake.url);
    c.downstream.request_timeout = Duration::from_secs(3);
    let fe = start_frontend(c).await;
    let reply = send(Method::GET, &format!("{}{}&x=1", fe.url, path()), &[], None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(timeouts(&fake).last().map(String::as_str), Some("3.000"));
    let reply = send(
        Method::GET,
        &format!("{}/api/v1/query?query=up&timeout=1h", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = fake.seen.lock().expect("lock");
    let (_, pq, _, _) = seen.last().expect("the instant query");
    assert_eq!(pq, "/api/v1/query?query=up&timeout=3.000");
}

#[tokio::test]
async fn passthrough_reads_are_retried_and_writes_are_not() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        if counter.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            unavailable_503()
        } else {
            FakeReply::json(200, r#"{"status":"success","data":["job"]}"#)
        }
    }))
    .await;
    let fe = start_frontend(config(&fake.url)).await;
    let labels = send(Method::GET, &format!("{}/api/v1/labels", fe.url), &[], None).await;
    assert_eq!(labels.status, 200, "{}", labels.text());
    assert_eq!(labels.json()["data"][0], "job");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    let form = send(
        Method::POST,
        &format!("{}/api/v1/query", fe.url),
        &[],
        Some(("application/x-www-form-urlencoded", b"query=up".to_vec())),
    )
    .await;
    assert_eq!(form.status, 200, "{}", form.text());
    assert_eq!(attempts.load(Ordering::SeqCst), 4);

    let admin = send(
        Method::POST,
        &format!("{}/api/v1/admin/tsdb/snapshot", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(admin.status, 503, "a write gets exactly one attempt");
    assert_eq!(attempts.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn primary_backup_uses_the_backup_only_while_the_primary_fails() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = down.clone();
    let primary = faulty(move |_| flag.load(Ordering::SeqCst).then(FakeReply::reset)).await;
    let backup = faulty(|_| None).await;
    let mut c = config(&primary.url);
    c.downstream.urls = vec![primary.url.clone(), backup.url.clone()];
    c.downstream.policy = promql_frontend::config::BalancePolicy::PrimaryBackup;
    c.downstream.eject_after_failures = 2;
    c.downstream.ejection_period = Duration::from_millis(500);
    c.cache.enabled = false;
    let fe = start_frontend(c).await;
    let ask = || async {
        let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    for _ in 0..3 {
        ask().await;
    }
    assert_eq!(query_range_attempts(&primary), 3);
    assert_eq!(query_range_attempts(&backup), 0);

    // The primary fails: every request still succeeds, through the backup, and after
    // two failures the primary is not even tried.
    down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        ask().await;
    }
    assert_eq!(query_range_attempts(&backup), 5);
    assert_eq!(
        query_range_attempts(&primary),
        3 + 2,
        "ejected after two failures"
    );

    // The primary recovers: once its ejection ends, traffic goes back to it.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        ask().await;
    }
    assert_eq!(query_range_attempts(&primary), 5 + 3);
    assert_eq!(query_range_attempts(&backup), 5);
}

#[tokio::test]
async fn a_final_passthrough_error_reaches_the_client_as_sent() {
    let fake = fake_querier(Arc::new(|_, _, _, _| FakeReply {
        status: 502,
        headers: vec![
            ("content-type", "text/html".to_owned()),
            ("x-upstream", "lb-7".to_owned()),
        ],
        body: Bytes::from_static(b"<html><h1>502 Bad Gateway</h1></html>"),
        ..FakeReply::json(502, "")
    }))
    .await;
    let fe = start_frontend(config(&fake.url)).await;
    let reply = send(
        Method::GET,
        &format!("{}/federate?match[]=up", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["content-type"], "text/html");
    assert_eq!(reply.headers["x-upstream"], "lb-7");
    assert_eq!(&reply.body[..], b"<html><h1>502 Bad Gateway</h1></html>");
    assert_eq!(fake.seen.lock().expect("lock").len(), 3, "retried first");
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_not_retried() {
    let fake = faulty(|_| None).await;
    let mut c = config(&fake.url);
    c.downstream.max_response_bytes = 100;
    let fe = start_frontend(c).await;
    let reply = send(Method::GET, &format!("{}{}", fe.url, path()), &[], None).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["errorType"], "bad_response");
    assert!(
        reply.text().contains("max_response_bytes"),
        "{}",
        reply.text()
    );
    assert_eq!(query_range_attempts(&fake), 1);
}

#[tokio::test]
async fn active_health_checks_eject_a_dead_endpoint_without_traffic() {
    let alive = faulty(|_| None).await;
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    let mut c = config(&alive.url);
    c.downstream.urls = vec![dead.clone(), alive.url.clone()];
    c.downstream.health_check_interval = Duration::from_millis(100);
    c.downstream.eject_after_failures = 2;
    let fe = start_frontend(c).await;
    let ejected = format!("promql_frontend_downstream_endpoint_healthy{{downstream=\"{dead}\"}} 0");
    let healthy = format!(
        "promql_frontend_downstream_endpoint_healthy{{downstream=\"{}\"}} 1",
        alive.url
    );
    let mut text = String::new();
    for _ in 0..50 {
        text = send(Method::GET, &format!("{}/metrics", fe.url), &[], None)
            .await
            .text();
        if text.contains(&ejected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains(&ejected), "{ejected} in\n{text}");
    assert!(text.contains(&healthy), "{healthy} in\n{text}");
    let probes = alive
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, pq, _, _)| pq == "/api/v1/status/buildinfo")
        .count();
    assert!(probes >= 2, "the live endpoint was probed too ({probes})");
    assert_eq!(query_range_attempts(&alive), 0, "no query was needed");
}
