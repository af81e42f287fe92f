//! The answer cache against the real test bed: label names, label values, series and
//! instant queries through the frontend equal Prometheus' own answers, and a counting
//! proxy between the frontend and Prometheus shows which repeats reached the querier:
//! none for old windows and times (`X-Cache: hit`), every one for recent or uncacheable
//! ones. Errors pass unchanged and are never stored; identical in-flight instant
//! queries share one querier request; Redis-sharing frontends share entries; tenants and
//! credentials never do.

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::support::{
    CountingProxy, FakeReply, Gate, Reply, Scratch, bed, blocking, counting_proxy, fake_querier,
    form, redis_config, secs, send, start_frontend, start_redis, test_config,
};

const H: i64 = 3_600_000;
const FORM: &str = "application/x-www-form-urlencoded";

/// One request of a table: method, path, parameters.
struct Case {
    method: Method,
    path: String,
    params: Vec<(String, String)>,
    /// Whether a repeat must be served from the cache.
    cached: bool,
    /// The answer differs from one evaluation to the next (evaluated at now, or with
    /// query timings): compared without evaluation timestamps and `stats`.
    volatile: bool,
}

fn case(method: Method, path: &str, params: &[(&str, String)], cached: bool) -> Case {
    Case {
        method,
        path: path.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        cached,
        volatile: false,
    }
}

/// `c`, compared without evaluation timestamps and `stats`.
fn volatile(c: Case) -> Case {
    Case {
        volatile: true,
        ..c
    }
}

/// The answer as compared: for a volatile case, without `data.stats` and with each
/// sample's evaluation timestamp blanked (the values must still agree).
fn comparable(reply: &Reply, volatile: bool) -> serde_json::Value {
    let mut v = reply.json();
    if volatile {
        if let Some(data) = v["data"].as_object_mut() {
            data.remove("stats");
        }
        if let Some(result) = v["data"]["result"].as_array_mut() {
            for sample in result {
                sample["value"][0] = serde_json::Value::Null;
            }
        }
    }
    v
}

async fn ask(base: &str, c: &Case, headers: &[(&str, &str)]) -> Reply {
    let pairs: Vec<(&str, &str)> = c
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = form(&pairs);
    match c.method {
        Method::POST => {
            send(
                Method::POST,
                &format!("{base}{}", c.path),
                headers,
                Some((FORM, body.into_bytes())),
            )
            .await
        }
        _ => {
            send(
                Method::GET,
                &format!("{base}{}?{body}", c.path),
                headers,
                None,
            )
            .await
        }
    }
}

fn describe(c: &Case) -> String {
    format!("{} {} {:?}", c.method, c.path, c.params)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Asks every case directly, through the frontend, and through the frontend again;
/// returns the problems found.
async fn check_table(prom: &str, fe: &str, proxy: &CountingProxy, cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in cases {
        let what = describe(c);
        let direct = ask(prom, c, &[]).await;
        if direct.status != 200 {
            problems.push(format!("{what}: direct answered {}", direct.status));
            continue;
        }
        let before = proxy.requests();
        let first = ask(fe, c, &[]).await;
        let reached_first = proxy.requests() - before;
        let second = ask(fe, c, &[]).await;
        let reached_second = proxy.requests() - before - reached_first;
        for (n, via) in [(1, &first), (2, &second)] {
            if via.status != 200 || comparable(via, c.volatile) != comparable(&direct, c.volatile) {
                problems.push(format!(
                    "{what}: answer {n} differs: {} {} vs direct {}",
                    via.status,
                    via.text(),
                    direct.text()
                ));
            }
        }
        if reached_first != 1 {
            problems.push(format!(
                "{what}: first reached the querier {reached_first}×"
            ));
        }
        match c.cached {
            true => {
                if reached_second != 0 || second.x_cache() != "hit" || first.x_cache() != "miss" {
                    problems.push(format!(
                        "{what}: old window not served from the cache: X-Cache {} then {}, \
                         repeat reached the querier {reached_second}×",
                        first.x_cache(),
                        second.x_cache()
                    ));
                }
            }
            false => {
                if reached_second != 1 || second.x_cache() != "skip" {
                    problems.push(format!(
                        "{what}: uncacheable repeat: X-Cache {}, reached the querier \
                         {reached_second}×",
                        second.x_cache()
                    ));
                }
            }
        }
    }
    problems
}

#[tokio::test]
async fn label_and_series_answers_equal_direct_and_old_windows_are_served_from_the_cache() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    let now = now_ms();
    // Old windows: hour-aligned (block boundaries of the bed are 2h-aligned) and not,
    // short and over days. Recent ones: ending now, or without `end` (now).
    let hour = |t: i64| t - t.rem_euclid(H);
    let old = [
        (hour(tb.end_ms) - 30 * H, hour(tb.end_ms) - 6 * H),
        (tb.end_ms - 5 * H - 12_345, tb.end_ms - 4 * H + 678),
        (tb.start_ms, tb.end_ms - 2 * H),
    ];
    let recent = (now - 2 * H, now);
    let mut cases = Vec::new();
    for (i, (start, end)) in old.iter().copied().enumerate() {
        let (s, e) = (secs(start), secs(end));
        let method = if i % 2 == 0 {
            Method::GET
        } else {
            Method::POST
        };
        cases.push(case(
            method.clone(),
            "/api/v1/labels",
            &[("start", s.clone()), ("end", e.clone())],
            true,
        ));
        cases.push(case(
            method.clone(),
            "/api/v1/labels",
            &[
                ("match[]", "up".into()),
                ("match[]", "{__name__=~\"node_.*\"}".into()),
                ("start", s.clone()),
                ("end", e.clone()),
            ],
            true,
        ));
        cases.push(case(
            Method::GET,
            "/api/v1/label/instance/values",
            &[
                ("match[]", "http_requests_total{code=\"500\"}".into()),
                ("start", s.clone()),
                ("end", e.clone()),
            ],
            true,
        ));
        cases.push(case(
            Method::GET,
            "/api/v1/label/__name__/values",
            &[
                ("start", s.clone()),
                ("end", e.clone()),
                ("limit", "3".into()),
            ],
            true,
        ));
        cases.push(case(
            method.clone(),
            "/api/v1/series",
            &[
                ("match[]", "{job=\"api\",handler=~\"/api/.*\"}".into()),
                ("match[]", "up".into()),
                ("start", s.clone()),
                ("end", e.clone()),
            ],
            true,
        ));
    }
    let (s, e) = (secs(recent.0), secs(recent.1));
    cases.push(case(
        Method::GET,
        "/api/v1/labels",
        &[("start", s.clone()), ("end", e.clone())],
        false,
    ));
    cases.push(case(
        Method::GET,
        "/api/v1/label/job/values",
        &[("start", s.clone())],
        false,
    ));
    cases.push(case(
        Method::POST,
        "/api/v1/series",
        &[("match[]", "up".into()), ("start", s), ("end", e)],
        false,
    ));
    let problems = check_table(&tb.prom_url, &fe.url, &proxy, &cases).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The `match[]` set is keyed, not its order: the same set in another order (and
    // repeated) is served from the first's entry.
    let (s, e) = (secs(old[1].0), secs(old[1].1));
    let reordered = case(
        Method::GET,
        "/api/v1/series",
        &[
            ("end", e),
            ("match[]", "up".into()),
            ("match[]", "{job=\"api\",handler=~\"/api/.*\"}".into()),
            ("match[]", "up".into()),
            ("start", s),
        ],
        true,
    );
    let before = proxy.requests();
    let reply = ask(&fe.url, &reordered, &[]).await;
    assert_eq!(reply.x_cache(), "hit", "{}", reply.text());
    assert_eq!(proxy.requests(), before);
    assert_eq!(
        reply.json(),
        ask(&tb.prom_url, &reordered, &[]).await.json()
    );
}

#[tokio::test]
async fn instant_queries_equal_direct_and_past_times_are_served_from_the_cache() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    let t1 = tb.end_ms - 3 * H;
    // Sub-second times, one millisecond apart: separate entries, each exact.
    let t2 = tb.end_ms - 20 * H + 123;
    let t3 = t2 + 1;
    let at = secs(tb.end_ms - 30 * H);
    let q = |expr: &str, time: i64, cached: bool| {
        case(
            Method::GET,
            "/api/v1/query",
            &[("query", expr.to_owned()), ("time", secs(time))],
            cached,
        )
    };
    let mut cases = vec![
        q("sum by (code) (rate(http_requests_total[5m]))", t1, true),
        q("up", t2, true),
        q("up", t3, true),
        q("node_memory_free_bytes offset 1h", t1, true),
        q(&format!("sum(up @ {at})"), t1, true),
        q("max_over_time(up[10m] @ end())", t2, true),
        q("topk(3, rate(http_requests_total[5m]))", t3, true),
        // Never stored: a negative offset, an `@` after `time`, no `time`, a time newer
        // than the freshness cut-off, an unknown parameter.
        q("up offset -5m", t1, false),
        q(&format!("up @ {}", secs(t1 + H)), t1, false),
        volatile(case(
            Method::GET,
            "/api/v1/query",
            &[("query", "count(up)".into())],
            false,
        )),
        q("sum(up)", now_ms() - 60_000, false),
        volatile(case(
            Method::GET,
            "/api/v1/query",
            &[
                ("query", "count(up)".into()),
                ("time", secs(t1)),
                ("stats", "all".into()),
            ],
            false,
        )),
    ];
    cases.push(case(
        Method::POST,
        "/api/v1/query",
        &[
            ("query", "sum(node_memory_free_bytes)".into()),
            ("time", secs(t2)),
        ],
        true,
    ));
    let problems = check_table(&tb.prom_url, &fe.url, &proxy, &cases).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The canonical expression is keyed: another spelling of the same one, and a GET
    // of a POSTed query, are served from the first's entry.
    let before = proxy.requests();
    let same = send(
        Method::GET,
        &format!(
            "{}/api/v1/query?{}",
            fe.url,
            form(&[
                ("time", &secs(t1)),
                ("query", "sum by(code)(rate(http_requests_total[300s]))"),
                ("timeout", "20s"),
            ])
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(same.x_cache(), "hit", "{}", same.text());
    let posted = ask(&fe.url, &cases[cases.len() - 1], &[]).await;
    assert_eq!(posted.x_cache(), "hit");
    assert_eq!(proxy.requests(), before, "served without the querier");
}

#[tokio::test]
async fn querier_errors_pass_unchanged_and_are_never_cached() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    let (s, e) = (secs(tb.end_ms - 10 * H), secs(tb.end_ms - 8 * H));
    let cases = [
        case(
            Method::GET,
            "/api/v1/series",
            &[
                ("match[]", "{job=".into()),
                ("start", s.clone()),
                ("end", e.clone()),
            ],
            true,
        ),
        case(
            Method::POST,
            "/api/v1/labels",
            &[
                ("match[]", "up{".into()),
                ("start", s.clone()),
                ("end", e.clone()),
            ],
            true,
        ),
        case(
            Method::GET,
            "/api/v1/label/0-bad/values",
            &[("start", s.clone()), ("end", e.clone())],
            true,
        ),
        case(
            Method::GET,
            "/api/v1/query",
            &[("query", "sum(rate(up[5m])".into()), ("time", e.clone())],
            true,
        ),
        case(
            Method::GET,
            "/api/v1/series",
            &[("start", s), ("end", e)],
            true,
        ),
    ];
    for c in &cases {
        let what = describe(c);
        let direct = ask(&tb.prom_url, c, &[]).await;
        assert_eq!(direct.status, 400, "{what}: {}", direct.text());
        for n in 1..=2 {
            let before = proxy.requests();
            let via = ask(&fe.url, c, &[]).await;
            assert_eq!(via.status, direct.status, "{what} #{n}");
            assert_eq!(
                via.decoded(),
                direct.decoded(),
                "{what} #{n}: the querier's body"
            );
            assert_eq!(
                via.headers.get("content-type"),
                direct.headers.get("content-type"),
                "{what} #{n}"
            );
            assert_eq!(
                proxy.requests(),
                before + 1,
                "{what} #{n} reached the querier"
            );
            assert_ne!(via.x_cache(), "hit", "{what} #{n}");
        }
    }
}

/// Polls `/metrics` until `n` requests are in flight (the scrape itself not counted).
async fn wait_in_flight(fe: &str, n: usize) {
    let want = format!("promql_frontend_in_flight_requests {}", n + 1);
    for _ in 0..1000 {
        let m = send(Method::GET, &format!("{fe}/metrics"), &[], None)
            .await
            .text();
        if m.lines().any(|l| l == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {n} requests in flight");
}

#[tokio::test]
async fn identical_in_flight_instant_queries_reach_the_querier_once() {
    let gate = Arc::new(Gate::new());
    let held = gate.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        FakeReply::json(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"42"]}}"#,
        )
        .held(&held)
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    // No `time`: evaluated at now, never stored, still coalesced.
    let url = format!("{}/api/v1/query?query=scalar(sum(up))", fe.url);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let url = url.clone();
        set.spawn(
            async move { send(Method::GET, &url, &[("accept-encoding", "gzip")], None).await },
        );
    }
    wait_in_flight(&fe.url, 5).await;
    assert_eq!(fake.seen.lock().expect("lock").len(), 1, "one leader asked");
    gate.open();
    let mut outcomes = Vec::new();
    while let Some(reply) = set.join_next().await {
        let reply = reply.expect("task");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["data"]["result"][1], "42");
        outcomes.push(reply.x_cache().to_owned());
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        ["coalesced", "coalesced", "coalesced", "coalesced", "skip"]
    );
    assert_eq!(fake.seen.lock().expect("lock").len(), 1);
    // Nothing was stored: the next one asks again.
    let again = send(Method::GET, &url, &[], None).await;
    assert_eq!(again.x_cache(), "skip");
    assert_eq!(fake.seen.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_leaders_error_is_shared_once_and_never_kept() {
    let gate = Arc::new(Gate::new());
    let held = gate.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        FakeReply::json(
            422,
            r#"{"status":"error","errorType":"execution","error":"too many samples"}"#,
        )
        .held(&held)
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let url = format!("{}/api/v1/query?query=up&time=1700000000", fe.url);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let url = url.clone();
        set.spawn(async move { send(Method::GET, &url, &[], None).await });
    }
    wait_in_flight(&fe.url, 3).await;
    gate.open();
    while let Some(reply) = set.join_next().await {
        let reply = reply.expect("task");
        assert_eq!(reply.status, 422);
        assert_eq!(reply.json()["error"], "too many samples");
    }
    assert_eq!(
        fake.seen.lock().expect("lock").len(),
        1,
        "one querier request"
    );
    let again = send(Method::GET, &url, &[], None).await;
    assert_eq!(again.status, 422);
    assert_eq!(
        fake.seen.lock().expect("lock").len(),
        2,
        "the error was not kept"
    );
}

/// Every key in a Redis, by `KEYS *`, and `SET` each to `value`.
fn overwrite_all(port: u16, value: &str) -> usize {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    w.write_all(b"KEYS *\r\n").expect("write");
    let mut line = String::new();
    r.read_line(&mut line).expect("read");
    let n: usize = line.trim_start_matches('*').trim().parse().expect("array");
    let mut keys = Vec::new();
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).expect("length");
        line.clear();
        r.read_line(&mut line).expect("key");
        keys.push(line.trim_end().to_owned());
    }
    for k in &keys {
        w.write_all(format!("SET {k} {value}\r\n").as_bytes())
            .expect("write");
        line.clear();
        r.read_line(&mut line).expect("ok");
        assert_eq!(line.trim_end(), "+OK");
    }
    keys.len()
}

#[tokio::test]
async fn redis_sharing_frontends_share_answers_and_a_corrupt_value_is_a_miss() {
    let tb = bed().await;
    let (_redis, port) = blocking(|| start_redis(None)).await;
    // Both frontends in front of the same querier (one namespace), through one proxy:
    // the count tells whether the second frontend's request reached the querier.
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe_a = start_frontend(redis_config(&proxy.url, port)).await;
    let fe_b = start_frontend(redis_config(&proxy.url, port)).await;
    let (s, e) = (secs(tb.end_ms - 26 * H), secs(tb.end_ms - 2 * H));
    let c = case(
        Method::GET,
        "/api/v1/label/handler/values",
        &[
            ("match[]", "http_requests_total".into()),
            ("start", s),
            ("end", e),
        ],
        true,
    );
    let direct = ask(&tb.prom_url, &c, &[]).await;
    let a = ask(&fe_a.url, &c, &[]).await;
    assert_eq!(a.x_cache(), "miss");
    assert_eq!(proxy.requests(), 1);
    let b = ask(&fe_b.url, &c, &[]).await;
    assert_eq!(
        b.x_cache(),
        "hit",
        "the second frontend reads the first's entry"
    );
    assert_eq!(proxy.requests(), 1);
    assert_eq!(b.json(), direct.json());

    let overwritten = blocking(move || overwrite_all(port, "garbage")).await;
    assert!(overwritten >= 1);
    let b = ask(&fe_b.url, &c, &[]).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.x_cache(), "miss", "a corrupt value is a miss");
    assert_eq!(proxy.requests(), 2);
    assert_eq!(b.json(), direct.json());
    let b = ask(&fe_b.url, &c, &[]).await;
    assert_eq!(b.x_cache(), "hit", "stored again");
}

#[tokio::test]
async fn tenants_and_credentials_never_share_entries() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let fe = start_frontend(test_config(&proxy.url)).await;
    let (s, e) = (secs(tb.end_ms - 9 * H), secs(tb.end_ms - 7 * H));
    let c = case(
        Method::GET,
        "/api/v1/labels",
        &[("match[]", "up".into()), ("start", s), ("end", e)],
        true,
    );
    let askers: [&[(&str, &str)]; 5] = [
        &[("x-scope-orgid", "team-a")],
        &[("x-scope-orgid", "team-b")],
        &[("x-scope-orgid", "team-a"), ("authorization", "Bearer one")],
        &[("x-scope-orgid", "team-a"), ("authorization", "Bearer two")],
        &[],
    ];
    for (i, headers) in askers.iter().enumerate() {
        let before = proxy.requests();
        let first = ask(&fe.url, &c, headers).await;
        assert_eq!(
            first.x_cache(),
            "miss",
            "asker {i} never sees another's entry"
        );
        assert_eq!(proxy.requests(), before + 1);
        let again = ask(&fe.url, &c, headers).await;
        assert_eq!(again.x_cache(), "hit", "asker {i}'s own entry");
    }
}

#[tokio::test]
async fn metrics_and_the_slow_query_log_show_outcomes_per_endpoint() {
    let tb = bed().await;
    let scratch = Scratch::new("answers-slowlog");
    let path = scratch.0.join("slow.log");
    let mut config = test_config(&tb.prom_url);
    config.slow_query_log.threshold =
        promql_frontend::config::Threshold::Above(Duration::from_nanos(1));
    config.slow_query_log.path = Some(path.clone());
    config.cache.answers = true;
    let fe = start_frontend(config).await;
    let (s, e) = (secs(tb.end_ms - 12 * H), secs(tb.end_ms - 11 * H));
    let labels = format!(
        "{}/api/v1/labels?{}",
        fe.url,
        form(&[("start", &s), ("end", &e)])
    );
    let query = format!(
        "{}/api/v1/query?{}",
        fe.url,
        form(&[("query", "count(up)"), ("time", &e)])
    );
    for url in [&labels, &labels, &query, &query] {
        assert_eq!(send(Method::GET, url, &[], None).await.status, 200);
    }
    let m = send(Method::GET, &format!("{}/metrics", fe.url), &[], None)
        .await
        .text();
    for (endpoint, outcome) in [
        ("labels", "miss"),
        ("labels", "hit"),
        ("query", "miss"),
        ("query", "hit"),
    ] {
        let want = format!(
            "promql_frontend_endpoint_cache_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} 1"
        );
        assert!(m.lines().any(|l| l == want), "{want} not in\n{m}");
    }
    let mut lines = Vec::new();
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
            .collect();
        if lines.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["httpRequest"]["path"].as_str().unwrap_or("").to_owned(),
                l["cache"]["outcome"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/api/v1/labels".to_owned(), "miss".to_owned()),
            ("/api/v1/labels".to_owned(), "hit".to_owned()),
            ("/api/v1/query".to_owned(), "miss".to_owned()),
            ("/api/v1/query".to_owned(), "hit".to_owned()),
        ]
    );
}

#[tokio::test]
async fn answers_off_forwards_every_request() {
    let tb = bed().await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let mut config = test_config(&proxy.url);
    config.cache.answers = false;
    let fe = start_frontend(config).await;
    let (s, e) = (secs(tb.end_ms - 12 * H), secs(tb.end_ms - 11 * H));
    let url = format!(
        "{}/api/v1/labels?{}",
        fe.url,
        form(&[("start", &s), ("end", &e)])
    );
    for n in 1..=2 {
        let reply = send(Method::GET, &url, &[], None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.x_cache(), "none");
        assert_eq!(proxy.requests(), n);
    }
}

#[tokio::test]
async fn answers_with_warnings_or_no_store_and_oversized_ones_are_not_stored() {
    let big = format!(
        r#"{{"status":"success","data":[{}"z"]}}"#,
        "\"abcdefghijklmnop\",".repeat(400)
    );
    let big_body = big.clone();
    let fake = fake_querier(Arc::new(move |_, pq, _, _| {
        let ok = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
        if pq.contains("warned") {
            FakeReply::json(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["partial"]}"#,
            )
        } else if pq.contains("informed") {
            FakeReply::json(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]},"infos":["info"]}"#,
            )
        } else if pq.contains("private") {
            let mut reply = FakeReply::json(200, ok);
            reply.headers.push(("cache-control", "no-store".to_owned()));
            reply
        } else if pq.contains("big") {
            FakeReply::json(200, &big_body)
        } else {
            FakeReply::json(200, ok)
        }
    }))
    .await;
    let mut config = test_config(&fake.url);
    config.cache.max_item_bytes = 4096;
    let fe = start_frontend(config).await;
    let seen = || fake.seen.lock().expect("lock").len();
    let old = "1700000000";
    let url = |q: &str| {
        format!(
            "{}/api/v1/query?{}",
            fe.url,
            form(&[("query", q), ("time", old)])
        )
    };
    for q in ["warned", "informed", "private", "big"] {
        for n in 1..=2 {
            let before = seen();
            let reply = send(Method::GET, &url(q), &[], None).await;
            assert_eq!(reply.status, 200, "{q}");
            assert_eq!(
                reply.x_cache(),
                "miss",
                "{q} #{n}: storable request, answer not kept"
            );
            assert_eq!(seen(), before + 1, "{q} #{n} reached the querier");
            if q == "big" {
                assert_eq!(reply.text(), big, "an oversized answer passes whole");
            }
        }
    }

    // The client's Cache-Control: `no-cache` skips the read and stores, `no-store`
    // skips both.
    let plain = url("vector(1)");
    let asked = |headers: &'static [(&'static str, &'static str)]| {
        let plain = plain.clone();
        async move {
            let before = seen();
            let reply = send(Method::GET, &plain, headers, None).await;
            (reply.x_cache().to_owned(), seen() - before)
        }
    };
    assert_eq!(
        asked(&[("cache-control", "no-store")]).await,
        ("skip".into(), 1)
    );
    assert_eq!(
        asked(&[]).await,
        ("miss".into(), 1),
        "no-store kept nothing"
    );
    assert_eq!(asked(&[]).await, ("hit".into(), 0));
    assert_eq!(
        asked(&[("cache-control", "no-cache")]).await,
        ("miss".into(), 1)
    );
    assert_eq!(
        asked(&[("cache-control", "no-store")]).await,
        ("skip".into(), 1)
    );
    assert_eq!(asked(&[]).await, ("hit".into(), 0));
}

#[tokio::test]
async fn identical_in_flight_label_requests_for_an_old_window_reach_the_querier_once() {
    let gate = Arc::new(Gate::new());
    let held = gate.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        FakeReply::json(200, r#"{"status":"success","data":["api","db"]}"#).held(&held)
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let url = format!(
        "{}/api/v1/label/job/values?{}",
        fe.url,
        form(&[
            ("match[]", "up"),
            ("start", "1699990000"),
            ("end", "1700000000")
        ])
    );
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let url = url.clone();
        set.spawn(async move { send(Method::GET, &url, &[], None).await });
    }
    wait_in_flight(&fe.url, 3).await;
    assert_eq!(fake.seen.lock().expect("lock").len(), 1);
    gate.open();
    let mut outcomes = Vec::new();
    while let Some(reply) = set.join_next().await {
        let reply = reply.expect("task");
        assert_eq!(reply.json()["data"], serde_json::json!(["api", "db"]));
        outcomes.push(reply.x_cache().to_owned());
    }
    outcomes.sort();
    assert_eq!(outcomes, ["coalesced", "coalesced", "miss"]);
    let again = send(Method::GET, &url, &[], None).await;
    assert_eq!(again.x_cache(), "hit");
    assert_eq!(fake.seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn followers_of_a_leader_that_went_away_ask_the_querier_themselves() {
    let gate = Arc::new(Gate::new());
    let held = gate.clone();
    let fake = fake_querier(Arc::new(move |_, _, _, _| {
        FakeReply::json(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#,
        )
        .held(&held)
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    let url = format!("{}/api/v1/query?query=scalar(up)&time=1700000000", fe.url);
    let leader = {
        let url = url.clone();
        tokio::spawn(async move { send(Method::GET, &url, &[], None).await })
    };
    wait_in_flight(&fe.url, 1).await;
    let mut followers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let url = url.clone();
        followers.spawn(async move { send(Method::GET, &url, &[], None).await });
    }
    wait_in_flight(&fe.url, 3).await;
    assert_eq!(fake.seen.lock().expect("lock").len(), 1);
    // The leader's client goes away: its request ends without an answer to share.
    leader.abort();
    let _ = leader.await;
    for _ in 0..1000 {
        if fake.seen.lock().expect("lock").len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.seen.lock().expect("lock").len(),
        3,
        "each released follower asked the querier itself"
    );
    gate.open();
    while let Some(reply) = followers.join_next().await {
        let reply = reply.expect("task");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["data"]["result"][1], "7");
    }
}
