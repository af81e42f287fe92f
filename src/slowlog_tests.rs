use std::path::Path;
use std::time::Instant;

use super::*;

fn options(path: &Path, threshold: Threshold) -> SlowLogOptions {
    SlowLogOptions {
        threshold,
        path: Some(path.to_owned()),
        queue_size: 100_000,
        ring_size: 3,
    }
}

fn entry(n: usize) -> Entry {
    Entry {
        time: "2026-11-25T14:00:00.000Z".into(),
        request_id: format!("req-{n}"),
        params: Params {
            query: Some(format!("sum(rate(x{{n=\"{n}\", s=\"a\\nb\"}}[5m]))")),
            ..Params::default()
        },
        status: 200,
        ..Entry::default()
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slowlog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Waits (bounded) until `path` holds `lines` lines, and returns them.
fn wait_for_lines(path: &Path, lines: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_owned).collect();
        if got.len() >= lines || Instant::now() > until {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "a half line: {text:?}"
            );
            return got;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn thresholds() {
    let dir = scratch("thresholds");
    let m = Arc::new(Metrics::new());
    let off = SlowLog::new(options(&dir.join("off"), Threshold::Off), m.clone()).expect("log");
    assert!(!off.enabled() && !off.is_slow(Duration::from_secs(1000)));
    assert!(!dir.join("off").exists(), "no file when off");
    let all = SlowLog::new(options(&dir.join("all"), Threshold::All), m.clone()).expect("log");
    assert!(all.is_slow(Duration::ZERO));
    let above = SlowLog::new(
        options(&dir.join("above"), Threshold::Above(Duration::from_secs(5))),
        m,
    )
    .expect("log");
    assert!(!above.is_slow(Duration::from_secs(5)));
    assert!(above.is_slow(Duration::from_millis(5001)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Many request threads logging at once: each line arrives whole and exactly once.
#[test]
fn concurrent_requests_produce_whole_lines() {
    let dir = scratch("concurrent");
    let path = dir.join("slow.log");
    let metrics = Arc::new(Metrics::new());
    let log = Arc::new(SlowLog::new(options(&path, Threshold::All), metrics.clone()).expect("log"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    log.record(&entry(t * 1000 + i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let lines = wait_for_lines(&path, 4000);
    assert_eq!(lines.len(), 4000);
    let mut ids = std::collections::HashSet::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        ids.insert(v["request_id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 4000, "every entry exactly once");
    assert!(
        metrics
            .encode()
            .contains("promql_frontend_slow_queries_total{result=\"logged\"} 4000")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reopen_after_rename_writes_to_a_new_file() {
    let dir = scratch("reopen");
    let path = dir.join("slow.log");
    let rotated = dir.join("slow.log.1");
    let log = SlowLog::new(options(&path, Threshold::All), Arc::new(Metrics::new())).expect("log");
    log.record(&entry(1));
    assert_eq!(wait_for_lines(&path, 1).len(), 1);
    std::fs::rename(&path, &rotated).expect("rotate");
    log.reopen();
    log.record(&entry(2));
    let new = wait_for_lines(&path, 1);
    assert_eq!(new.len(), 1);
    assert!(new[0].contains("req-2"));
    let old = wait_for_lines(&rotated, 1);
    assert_eq!(old.len(), 1);
    assert!(old[0].contains("req-1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let metrics = Arc::new(Metrics::new());
    let opts = SlowLogOptions {
        threshold: Threshold::All,
        path: None,
        queue_size: 1,
        ring_size: 0,
    };
    let log = SlowLog::new(opts, metrics.clone()).expect("log");
    let count = |result: &str| -> u64 {
        let text = metrics.encode();
        let prefix = format!("promql_frontend_slow_queries_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.parse().expect("number"))
    };
    {
        // Holding stderr stalls the writer (it writes there): one line is taken by the
        // writer, one waits in the queue, every later one is dropped, and no call waits.
        let _stalled = std::io::stderr().lock();
        let until = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while count("logged") < 2 {
            log.record(&entry(n));
            n += 1;
            // Give the writer a moment to take the first line off the queue.
            std::thread::sleep(Duration::from_millis(5));
            assert!(Instant::now() < until, "the writer never took a line");
        }
        let started = Instant::now();
        for i in 0..1000 {
            log.record(&entry(n + i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "record never blocks"
        );
        assert_eq!(count("logged"), 2, "{}", metrics.encode());
    }
    assert!(count("dropped") >= 1000, "{}", metrics.encode());
}

#[tokio::test]
async fn ring_is_newest_first_and_followers_see_new_lines() {
    let dir = scratch("ring");
    let log = SlowLog::new(
        options(&dir.join("slow.log"), Threshold::All),
        Arc::new(Metrics::new()),
    )
    .expect("log");
    let mut follower = log.follow();
    for i in 0..5 {
        log.record(&entry(i));
    }
    let recent = log.recent(10, &Visibility::All);
    assert_eq!(recent.len(), 3, "ring_size");
    assert!(String::from_utf8_lossy(&recent[0]).contains("req-4"));
    assert!(String::from_utf8_lossy(&recent[2]).contains("req-2"));
    assert_eq!(log.recent(1, &Visibility::All).len(), 1);
    let first = follower.recv().await.expect("a line");
    assert!(String::from_utf8_lossy(&first.text).contains("req-0"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn readers_see_only_the_lines_their_visibility_allows() {
    let dir = scratch("visibility");
    let mut opts = options(&dir.join("slow.log"), Threshold::All);
    opts.ring_size = 10;
    let log = SlowLog::new(opts, Arc::new(Metrics::new())).expect("log");
    let mut follower = log.follow();
    for (n, tenant) in [
        (0, Some("team-a")),
        (1, Some("team-b")),
        (2, None),
        (3, Some("team-a")),
    ] {
        log.record(&Entry {
            tenant: tenant.map(str::to_owned),
            ..entry(n)
        });
    }
    let ids = |who: Visibility, limit| -> Vec<String> {
        log.recent(limit, &who)
            .iter()
            .map(|line| {
                let json: serde_json::Value = serde_json::from_slice(line).expect("JSON line");
                json["request_id"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    };
    assert_eq!(
        ids(Visibility::All, 10),
        ["req-3", "req-2", "req-1", "req-0"]
    );
    assert_eq!(
        ids(Visibility::Tenant("team-a".into()), 10),
        ["req-3", "req-0"]
    );
    // The limit counts visible lines, not lines skipped.
    assert_eq!(ids(Visibility::Tenant("team-a".into()), 1), ["req-3"]);
    assert_eq!(ids(Visibility::Tenant("team-b".into()), 10), ["req-1"]);
    assert_eq!(ids(Visibility::Untenanted, 10), ["req-2"]);
    assert!(ids(Visibility::Tenant("team-c".into()), 10).is_empty());
    // Followers get each line's tenant to filter with.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let line = follower.recv().await.expect("a line");
        if Visibility::Tenant("team-b".into()).shows(line.tenant.as_deref()) {
            seen.push(String::from_utf8_lossy(&line.text).into_owned());
        }
    }
    assert_eq!(seen.len(), 1);
    assert!(seen[0].contains("req-1"), "{seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_path_fails_at_start() {
    let err = SlowLog::new(
        options(Path::new("/nonexistent-dir/x/slow.log"), Threshold::All),
        Arc::new(Metrics::new()),
    )
    .err()
    .expect("unwritable path");
    assert!(
        err.to_string().contains("/nonexistent-dir/x/slow.log"),
        "{err}"
    );
}
