use super::*;

#[test]
fn endpoints_are_classified() {
    let cases = [
        ("/api/v1/query_range", Endpoint::query_range),
        ("/api/v1/label/job/values", Endpoint::label_values),
        ("/api/v1/status/buildinfo", Endpoint::status),
        ("/api/v1/alerts", Endpoint::other_api),
        ("/api/v1/slow_queries", Endpoint::slow_queries),
        ("/", Endpoint::status_page),
        ("/-/status", Endpoint::status_page),
        ("/graph", Endpoint::other),
    ];
    for (path, want) in cases {
        assert_eq!(Endpoint::of(path), want, "{path}");
    }
}

#[test]
fn exposition_has_counters_and_build_info() {
    let m = Metrics::new();
    {
        let _guard = m.start_request();
        m.observe_request(
            Endpoint::query,
            http::StatusCode::OK,
            Duration::from_millis(3),
        );
    }
    let text = m.encode();
    assert!(
        text.contains("promql_frontend_requests_total{endpoint=\"query\",code=\"2xx\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("promql_frontend_in_flight_requests 0"),
        "{text}"
    );
    assert!(
        text.contains("promql_frontend_build_info{version="),
        "{text}"
    );
    assert!(
        text.contains("promql_frontend_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[test]
fn prometheus_text_names_counters_with_total() {
    let m = Metrics::new();
    m.observe_request(Endpoint::query, http::StatusCode::OK, Duration::ZERO);
    let text = to_prometheus_text(&m.encode());
    assert!(
        text.contains("# TYPE promql_frontend_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP promql_frontend_requests_total HTTP"),
        "{text}"
    );
    assert!(
        text.contains("promql_frontend_requests_total{endpoint=\"query\",code=\"2xx\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE promql_frontend_in_flight_requests gauge\n"));
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    // Every family of the registry has a type the classic format knows.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let kind = line.rsplit(' ').next().unwrap_or("");
        assert!(
            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
            "{line}"
        );
    }
    assert_eq!(
        to_prometheus_text("# TYPE x unknown\nx 1\n# EOF\n"),
        "# TYPE x untyped\nx 1\n"
    );
}
