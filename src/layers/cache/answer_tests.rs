use super::*;
use http::{HeaderName, HeaderValue};

fn opts() -> KeyOptions {
    KeyOptions {
        namespace: "http://q:9090".into(),
        tenant_header: HeaderName::from_static("x-scope-orgid"),
        key_headers: vec![HeaderName::from_static("authorization")],
        interval_ms: 86_400_000,
    }
}

fn key(path: &str, pairs: &[(&str, &str)]) -> AnswerKey {
    key_with(path, pairs, &[])
}

fn key_with(path: &str, pairs: &[(&str, &str)], headers: &[(&'static str, &str)]) -> AnswerKey {
    let pairs: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect();
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_str(v).expect("header value"));
    }
    answer_key(path, &pairs, &h, &opts())
}

#[test]
fn parameter_order_and_match_order_do_not_change_the_key() {
    let a = key(
        "/api/v1/series",
        &[
            ("match[]", "up"),
            ("match[]", "{job=~\"a.*\"}"),
            ("start", "1700000000"),
            ("end", "1700003600"),
            ("limit", "5"),
        ],
    );
    let b = key(
        "/api/v1/series",
        &[
            ("limit", "5"),
            ("end", "1700003600.000"),
            ("match[]", "{job=~\"a.*\"}"),
            ("start", "2023-11-14T22:13:20Z"),
            ("match[]", "up"),
            ("match[]", "up"),
            ("timeout", "10s"),
        ],
    );
    assert_eq!(a.full, b.full);
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.storable, Ok(1_700_003_600_000));
}

#[test]
fn everything_that_changes_an_answer_changes_the_key() {
    let base = key(
        "/api/v1/label/job/values",
        &[("match[]", "up"), ("start", "100"), ("end", "200")],
    );
    let others = [
        key(
            "/api/v1/label/instance/values",
            &[("match[]", "up"), ("start", "100"), ("end", "200")],
        ),
        key(
            "/api/v1/labels",
            &[("match[]", "up"), ("start", "100"), ("end", "200")],
        ),
        key(
            "/api/v1/label/job/values",
            &[("match[]", "up"), ("start", "100"), ("end", "200.001")],
        ),
        key(
            "/api/v1/label/job/values",
            &[("match[]", "up"), ("start", "99"), ("end", "200")],
        ),
        key(
            "/api/v1/label/job/values",
            &[("match[]", "down"), ("start", "100"), ("end", "200")],
        ),
        key(
            "/api/v1/label/job/values",
            &[
                ("match[]", "up"),
                ("match[]", "x"),
                ("start", "100"),
                ("end", "200"),
            ],
        ),
        key(
            "/api/v1/label/job/values",
            &[
                ("match[]", "up"),
                ("start", "100"),
                ("end", "200"),
                ("limit", "1"),
            ],
        ),
        key_with(
            "/api/v1/label/job/values",
            &[("match[]", "up"), ("start", "100"), ("end", "200")],
            &[("x-scope-orgid", "b")],
        ),
        key_with(
            "/api/v1/label/job/values",
            &[("match[]", "up"), ("start", "100"), ("end", "200")],
            &[("authorization", "Bearer b")],
        ),
    ];
    for other in &others {
        assert_ne!(base.full, other.full);
        assert_ne!(base.hash, other.hash);
    }
}

#[test]
fn unknown_or_unreadable_parameters_are_keyed_but_never_stored() {
    let unknown = key(
        "/api/v1/labels",
        &[("start", "100"), ("end", "200"), ("frobnicate", "1")],
    );
    assert_eq!(unknown.storable, Err(Skip::Param));
    assert!(unknown.full.contains("frobnicate"), "{}", unknown.full);
    let stats = key(
        "/api/v1/query",
        &[("query", "up"), ("time", "100"), ("stats", "all")],
    );
    assert_eq!(stats.storable, Err(Skip::Param));
    let bad_time = key("/api/v1/labels", &[("start", "yesterday"), ("end", "200")]);
    assert_eq!(bad_time.storable, Err(Skip::OddRange));
    let no_end = key("/api/v1/labels", &[("start", "100")]);
    assert_eq!(
        no_end.storable,
        Err(Skip::OddRange),
        "the window reaches now"
    );
    let no_start = key("/api/v1/labels", &[("end", "200")]);
    assert_eq!(no_start.storable, Ok(200_000));
}

#[test]
fn instant_keys_use_canonical_promql_and_millisecond_times() {
    let a = key(
        "/api/v1/query",
        &[("query", "rate(x[300s])"), ("time", "1700000000.1234")],
    );
    let b = key(
        "/api/v1/query",
        &[("time", "1700000000.123"), ("query", "rate(x[5m])")],
    );
    assert_eq!(a.full, b.full, "same AST, same ms");
    assert_eq!(a.storable, Ok(1_700_000_000_123));
    let c = key(
        "/api/v1/query",
        &[("query", "rate(x[5m])"), ("time", "1700000000.124")],
    );
    assert_ne!(a.full, c.full, "one ms apart");
    // `timeout` is not part of the key; `lookback_delta` is.
    let t = key(
        "/api/v1/query",
        &[
            ("query", "rate(x[5m])"),
            ("time", "1700000000.123"),
            ("timeout", "3s"),
        ],
    );
    assert_eq!(a.full, t.full);
    let l = key(
        "/api/v1/query",
        &[
            ("query", "rate(x[5m])"),
            ("time", "1700000000.123"),
            ("lookback_delta", "1m"),
        ],
    );
    assert_ne!(a.full, l.full);
    assert!(l.storable.is_ok());
}

#[test]
fn instant_never_cache_rules() {
    let at = |q: &str| key("/api/v1/query", &[("query", q), ("time", "1700000000")]).storable;
    assert_eq!(at("x offset -5m"), Err(Skip::NegativeOffset));
    assert_eq!(at("x @ 1700000100"), Err(Skip::AtInFuture));
    assert_eq!(at("x @ 1699999000"), Ok(1_700_000_000_000));
    assert_eq!(at("x @ end()"), Ok(1_700_000_000_000));
    assert_eq!(at("sum(("), Err(Skip::Unparsed));
    let now = key("/api/v1/query", &[("query", "up")]);
    assert!(now.storable.is_err(), "no time: evaluated at now");
}

#[test]
fn stored_answers_round_trip_and_corrupt_bytes_are_typed_errors() {
    for body in [
        Bytes::from_static(b"{\"status\":\"success\",\"data\":[\"a\"]}"),
        Bytes::from(format!(
            "{{\"status\":\"success\",\"data\":[{}\"x\"]}}",
            "\"abcdefgh\",".repeat(2000)
        )),
    ] {
        let stored = StoredAnswer {
            key: "k\u{1f}x".into(),
            content_type: "application/json".into(),
            body,
        };
        let bytes = stored.encode();
        assert_eq!(StoredAnswer::decode(&bytes), Ok(stored.clone()));
        for cut in [0, 3, 4, 5, 12, 13, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                StoredAnswer::decode(&bytes[..cut]).is_err(),
                "cut at {cut} decodes"
            );
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(StoredAnswer::decode(&flipped).is_err());
    }
    assert_eq!(StoredAnswer::decode(b"PFC3junk"), Err(ValueError::Format));
    assert_eq!(
        StoredAnswer::decode(b"not a value"),
        Err(ValueError::Format)
    );
    let mut lie = b"PFA1\x01".to_vec();
    lie.extend_from_slice(&[0; 8]);
    lie.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(StoredAnswer::decode(&lie), Err(ValueError::TooLarge));
    let mut trailing = StoredAnswer {
        key: "k".into(),
        content_type: String::new(),
        body: Bytes::new(),
    }
    .encode();
    trailing.push(0);
    assert_eq!(StoredAnswer::decode(&trailing), Err(ValueError::Corrupt));
}

#[test]
fn only_clean_success_answers_are_storable() {
    let h = HeaderMap::new();
    assert_eq!(
        unstorable_answer(&h, b"{\"status\":\"success\",\"data\":[]}"),
        None
    );
    for body in [
        &b"{\"status\":\"success\",\"data\":[],\"warnings\":[\"w\"]}"[..],
        b"{\"status\":\"success\",\"data\":[],\"infos\":[\"i\"]}",
        b"{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"x\"}",
        b"not json",
    ] {
        assert_eq!(unstorable_answer(&h, body), Some(Skip::Response));
    }
    let mut no_store = HeaderMap::new();
    no_store.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    assert_eq!(
        unstorable_answer(&no_store, b"{\"status\":\"success\",\"data\":[]}"),
        Some(Skip::Response)
    );
}

fn cache_at(now_ms: i64) -> (AnswerCache, Arc<super::super::memory::MemoryBackend>) {
    let backend = Arc::new(super::super::memory::MemoryBackend::new(1 << 20));
    let cache = AnswerCache::new(
        backend.clone(),
        AnswerOptions {
            key: opts(),
            max_freshness: Duration::from_secs(600),
            ttl: Duration::from_secs(60),
            max_item_bytes: 1024,
            op_timeout: Duration::from_secs(1),
            clock: Arc::new(move || now_ms),
        },
        Arc::new(Metrics::new()),
    );
    (cache, backend)
}

#[test]
fn only_windows_older_than_the_cut_off_are_storable() {
    let now = 1_700_000_000_000;
    let (cache, _) = cache_at(now);
    let window = |end_ms: i64| {
        key(
            "/api/v1/labels",
            &[
                ("start", "0"),
                ("end", &format!("{}", end_ms as f64 / 1000.0)),
            ],
        )
    };
    assert_eq!(cache.storable(&window(now - 600_000)), Ok(()));
    assert_eq!(cache.storable(&window(now - 599_999)), Err(Skip::Recent));
    assert_eq!(cache.storable(&window(now + 1)), Err(Skip::Recent));
    let at = |q: &str| key("/api/v1/query", &[("query", q), ("time", "1699990000")]);
    assert_eq!(cache.storable(&at("up")), Ok(()));
    assert_eq!(
        cache.storable(&at("up @ 1699999999")),
        Err(Skip::AtInFuture)
    );
}

#[tokio::test]
async fn foreign_corrupt_and_oversized_values_are_misses() {
    let (cache, backend) = cache_at(1_700_000_000_000);
    let k = key("/api/v1/labels", &[("start", "0"), ("end", "100")]);
    assert!(cache.get(&k).await.is_none());
    let body = Bytes::from_static(b"{\"status\":\"success\",\"data\":[\"job\"]}");
    cache.put(&k, "application/json", body.clone()).await;
    let hit = cache.get(&k).await.expect("stored");
    assert_eq!(
        (hit.content_type.as_str(), &hit.body),
        ("application/json", &body)
    );

    // Another key's value under this key's hash (a collision): a miss.
    let other = key("/api/v1/labels", &[("start", "0"), ("end", "101")]);
    let foreign = StoredAnswer {
        key: other.full.clone(),
        content_type: String::new(),
        body: body.clone(),
    };
    backend
        .set(
            k.hash,
            Bytes::from(foreign.encode()),
            Duration::from_secs(60),
        )
        .await
        .expect("set");
    assert!(cache.get(&k).await.is_none(), "a foreign entry is a miss");

    // Corrupt bytes: a miss, not an error.
    let mut bytes = StoredAnswer {
        key: k.full.clone(),
        content_type: String::new(),
        body,
    }
    .encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    backend
        .set(k.hash, Bytes::from(bytes), Duration::from_secs(60))
        .await
        .expect("set");
    assert!(cache.get(&k).await.is_none(), "a corrupt entry is a miss");

    // Larger than `max_item_bytes`: not stored.
    let big = key("/api/v1/labels", &[("start", "0"), ("end", "102")]);
    cache
        .put(&big, "application/json", Bytes::from(vec![b' '; 2048]))
        .await;
    assert!(cache.get(&big).await.is_none());
}
