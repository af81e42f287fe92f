//! Fidelity: for the same request, the frontend answers what the real Prometheus the
//! tests start answers: status, `errorType` and message, GET and POST alike. Parameters
//! are read with Go's syntax (times, durations), checked in Prometheus' order, quoted
//! in messages as Go quotes them; `timeout` is checked, passed on and enforced by the
//! querier.

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::support::{
    FakeReply, Reply, TestBed, bed, fake_querier, secs, send, start_frontend, test_config,
};

/// Sends `query` (already URL-encoded) to `base` + `path` as a GET, or as a form POST.
async fn ask(base: &str, path: &str, method: &Method, query: &str) -> Reply {
    match *method {
        Method::GET => send(Method::GET, &format!("{base}{path}?{query}"), &[], None).await,
        _ => {
            send(
                Method::POST,
                &format!("{base}{path}"),
                &[],
                Some((
                    "application/x-www-form-urlencoded",
                    query.as_bytes().to_vec(),
                )),
            )
            .await
        }
    }
}

/// Asks Prometheus and the frontend the same, GET and POST, and lists the differences:
/// status always; for an error the whole body (`errorType` only, with `type_only`);
/// for a success the answer's JSON.
async fn compare(
    tb: &TestBed,
    fe: &str,
    path: &str,
    cases: &[(&str, String)],
    type_only: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, query) in cases {
        for method in [Method::GET, Method::POST] {
            let direct = ask(&tb.prom_url, path, &method, query).await;
            let via = ask(fe, path, &method, query).await;
            let what = format!("{name} ({method} {path}?{query})");
            if via.status != direct.status {
                problems.push(format!(
                    "{what}: frontend {} vs Prometheus {}: {} / {}",
                    via.status,
                    direct.status,
                    via.text(),
                    direct.text()
                ));
            } else if direct.status.is_success() {
                if via.json()["data"] != direct.json()["data"] {
                    problems.push(format!("{what}: answers differ"));
                }
            } else if type_only {
                if via.json()["errorType"] != direct.json()["errorType"] {
                    problems.push(format!("{what}: {} / {}", via.text(), direct.text()));
                }
            } else if via.text() != direct.text() {
                problems.push(format!("{what}: {} / {}", via.text(), direct.text()));
            }
        }
    }
    problems
}

/// A time as RFC 3339 in a `+24:00` zone (the same instant), URL-encoded.
fn plus_24h(ms: i64) -> String {
    let local = chrono::DateTime::from_timestamp_millis(ms + 86_400_000).expect("time");
    local.format("%Y-%m-%dT%H:%M:%S%%2B24:00").to_string()
}

/// Unix seconds with `_` between groups of three digits (`1_796_000_000`).
fn underscored(ms: i64) -> String {
    let digits = (ms / 1000).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

#[tokio::test]
async fn range_query_parameters_are_read_and_checked_like_prometheus() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let (start, end) = (tb.end_ms - 3_600_000, tb.end_ms);
    let (s, e) = (secs(start), secs(end));
    let q = |start: &str, end: &str, step: &str| {
        format!("query=node_memory_free_bytes&start={start}&end={end}&step={step}")
    };
    let day = chrono::DateTime::from_timestamp_millis(start)
        .expect("time")
        .format("%Y-%m-%d")
        .to_string();
    let cases: Vec<(&str, String)> = vec![
        // Accepted by Go's parsers.
        ("+24:00 zone", q(&plus_24h(start), &e, "60")),
        ("_ in a float", q(&underscored(start), &e, "60")),
        ("_ in a step", q(&s, &e, "1_0")),
        ("hexadecimal step", q(&s, &e, "0x1p6")),
        ("one-digit hour", q(&format!("{day}T1:00:00Z"), &e, "60")),
        (
            "comma before the fraction",
            q(&format!("{day}T01:00:00,5Z"), &e, "60"),
        ),
        ("Prometheus duration with zero parts", q(&s, &e, "1h0m")),
        // Refused by them.
        (
            "lower-case t and z",
            q(&format!("{day}t00:00:00z"), &e, "60"),
        ),
        ("space for T", q(&format!("{day}%2000:00:00Z"), &e, "60")),
        ("second 60", q(&format!("{day}T23:59:60Z"), &e, "60")),
        (
            "ten fraction digits",
            q(&format!("{day}T00:00:00.1234567890Z"), &e, "60"),
        ),
        ("hex without exponent", q(&s, &e, "0x1")),
        ("trailing _", q(&s, &e, "10_")),
        ("+nan", q("%2Bnan", &e, "60")),
        ("negative duration string", q(&s, &e, "-1s")),
        ("overflowing float step", q(&s, &e, "1e400")),
        // Prometheus' check order for nonsense values.
        ("NaN start", q("NaN", &e, "60")),
        ("Inf start", q("Inf", &e, "60")),
        ("NaN end", q(&s, "NaN", "60")),
        ("1e300 end", q(&s, "1e300", "60")),
        ("NaN step", q(&s, &e, "NaN")),
        (
            "step rounding to 2^63 ns",
            q(&s, &e, "9223372036.854775807"),
        ),
        ("infinite step", q(&s, &e, "Inf")),
        (
            "bad step and bad timeout",
            format!("{}&timeout=xx", q(&s, &e, "x")),
        ),
        (
            "bad timeout and bad query",
            format!("query=sum(&start={s}&end={e}&step=60&timeout=xx"),
        ),
        // Values quoted as Go quotes them.
        ("control byte", q("x%01", &e, "60")),
        ("escapes", q("%07%08%0C%0A%0D%09%0B", &e, "60")),
        ("C1 control", q("%C2%80", &e, "60")),
        ("zero-width space", q("%E2%80%8B", &e, "60")),
        ("invalid UTF-8", q("%FF", &e, "60")),
        ("combining mark", q("e%CC%81", &e, "60")),
        ("no-break space", q("%C2%A0", &e, "60")),
        ("tag character", q("%F3%A0%80%81", &e, "60")),
        ("quote and backslash", q("%22%5C", &e, "60")),
        ("DEL", q(&s, &e, "%7F")),
        ("surrogate bytes", q(&s, &e, "%ED%A0%80")),
        ("cut UTF-8 sequence", q(&s, &e, "%E2%80")),
        ("private use", q(&s, &e, "%EE%80%80")),
        ("emoji", q(&s, &e, "%F0%9F%98%80")),
        ("line separator", q(&s, &e, "%E2%80%A8")),
        ("HTML characters", q("%3C%26%3E", &e, "60")),
        (
            "soft hyphen in timeout",
            format!("{}&timeout=%C2%AD", q(&s, &e, "60")),
        ),
    ];
    let problems = compare(tb, &fe.url, "/api/v1/query_range", &cases, false).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn instant_query_time_and_timeout_are_checked_like_prometheus() {
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let t = secs(tb.end_ms);
    let q = |extra: &str| format!("query=node_memory_free_bytes&time={t}{extra}");
    let cases: Vec<(&str, String)> = vec![
        ("no timeout", q("")),
        ("timeout 10s", q("&timeout=10s")),
        ("timeout with _", q("&timeout=1_0")),
        ("hexadecimal timeout", q("&timeout=0x1p4")),
        ("unparsable timeout", q("&timeout=xx")),
        ("negative duration string", q("&timeout=-1s")),
        ("infinite timeout", q("&timeout=Inf")),
        ("overflowing timeout", q("&timeout=1e400")),
        ("invalid UTF-8 timeout", q("&timeout=%FF")),
        (
            "bad time before bad timeout",
            "query=1&time=x&timeout=xx".to_owned(),
        ),
        (
            "bad timeout before bad query",
            "query=sum(&timeout=xx".to_owned(),
        ),
    ];
    let problems = compare(tb, &fe.url, "/api/v1/query", &cases, false).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Timeouts that have run out before the query starts: the querier answers with its
    // own timeout error (whose wording depends on where Prometheus noticed).
    let expired: Vec<(&str, String)> = ["-1", "0", "NaN"]
        .iter()
        .map(|to| ("expired timeout", q(&format!("&timeout={to}"))))
        .collect();
    let problems = compare(tb, &fe.url, "/api/v1/query", &expired, true).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let range = format!(
        "query=node_memory_free_bytes&start={}&end={t}&step=60&timeout=-1",
        secs(tb.end_ms - 3_600_000)
    );
    let problems = compare(
        tb,
        &fe.url,
        "/api/v1/query_range",
        &[("expired timeout", range)],
        true,
    )
    .await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The frontend waits past the client's timeout (by the backstop margin) for the
/// querier's own answer: a querier that finishes a little late still answers, as
/// Prometheus may.
#[tokio::test]
async fn an_answer_a_little_after_the_timeout_is_not_cut_off() {
    let fake = fake_querier(Arc::new(|_, pq, _, _| {
        let body = if pq.starts_with("/api/v1/query_range") {
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
        } else {
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        };
        FakeReply {
            delay: Duration::from_millis(1500),
            ..FakeReply::json(200, body)
        }
    }))
    .await;
    let fe = start_frontend(test_config(&fake.url)).await;
    for path in [
        "/api/v1/query?query=up&time=1700000000&timeout=1s",
        "/api/v1/query_range?query=up&start=1700000000&end=1700000600&step=60&timeout=1s",
    ] {
        let reply = send(Method::GET, &format!("{}{path}", fe.url), &[], None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let seen = fake.seen.lock().expect("lock");
    assert_eq!(seen.len(), 2, "one attempt each");
}

/// A documented difference (README, "How much one query may make the querier hold"):
/// `--query.max-samples` bounds each request, so a query Prometheus refuses whole for
/// its samples is answered through the frontend from pieces that each fit. (A
/// Prometheus with a small limit, so that the query is cheap.)
#[tokio::test]
async fn a_query_too_large_for_one_request_is_answered_from_pieces() {
    let scratch = crate::support::Scratch::new("max-samples-prometheus");
    let data = scratch.0.join("tsdb");
    let (_prometheus, port) = crate::support::blocking(move || {
        crate::support::start_prometheus_with(
            &data,
            None,
            &["--query.max-samples=100000".to_owned()],
            |port| crate::support::probe_status(port, "/-/ready") == Some(200),
        )
    })
    .await;
    let prom = format!("http://127.0.0.1:{port}");
    let fe = start_frontend(test_config(&prom)).await;
    // 28 hours across a UTC midnight: about 101,000 one-second samples whole, at most
    // about 58,000 in a day's piece.
    let midnight = (chrono::Utc::now().timestamp() / 86_400 - 1) * 86_400;
    let (start, end) = (midnight - 12 * 3600, midnight + 16 * 3600);
    let q =
        format!("query=count_over_time(vector(1)%5B10m:1s%5D)&start={start}&end={end}&step=3600");
    for method in [Method::GET, Method::POST] {
        let direct = ask(&prom, "/api/v1/query_range", &method, &q).await;
        assert_eq!(direct.status, 422, "{}", direct.text());
        assert_eq!(direct.json()["errorType"], "execution");
        let via = ask(&fe.url, "/api/v1/query_range", &method, &q).await;
        assert_eq!(via.status, 200, "{}", via.text());
        let values = via.json()["data"]["result"][0]["values"].clone();
        let values = values.as_array().expect("one series");
        assert_eq!(values.len(), 29, "every hour of the 28");
        assert!(
            values.iter().all(|v| v[1] == "601"),
            "each point counts its 10 minutes at 1 s: {values:?}"
        );
    }
}
