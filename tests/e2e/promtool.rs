//! A real client: `promtool query ...` pointed at the frontend prints exactly what it
//! prints pointed at Prometheus.

use std::process::Command;

use crate::support::{bed, blocking, require_binary, secs, start_frontend, test_config};

fn promtool(args: Vec<String>) -> (bool, String, String) {
    let out = Command::new("promtool")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn promtool_prints_the_same_through_the_frontend() {
    require_binary("promtool", "prometheus");
    let tb = bed().await;
    let fe = start_frontend(test_config(&tb.prom_url)).await;
    let (s, e) = (
        secs(tb.end_ms - 6 * 3_600_000 + 500),
        secs(tb.end_ms - 600_000),
    );
    let commands: Vec<Vec<String>> = vec![
        vec![
            "query".into(),
            "instant".into(),
            "--time".into(),
            e.clone(),
            "SERVER".into(),
            "sum by (code) (rate(http_requests_total[5m]))".into(),
        ],
        vec![
            "query".into(),
            "instant".into(),
            "-o".into(),
            "json".into(),
            "--time".into(),
            e.clone(),
            "SERVER".into(),
            "up".into(),
        ],
        vec![
            "query".into(),
            "range".into(),
            "--start".into(),
            s.clone(),
            "--end".into(),
            e.clone(),
            "--step".into(),
            "5m".into(),
            "SERVER".into(),
            "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))"
                .into(),
        ],
        vec![
            "query".into(),
            "range".into(),
            "-o".into(),
            "json".into(),
            "--start".into(),
            s.clone(),
            "--end".into(),
            e.clone(),
            "--step".into(),
            "1h".into(),
            "SERVER".into(),
            "temperature_celsius".into(),
        ],
        vec![
            "query".into(),
            "labels".into(),
            "SERVER".into(),
            "instance".into(),
        ],
        vec![
            "query".into(),
            "series".into(),
            "--match".into(),
            "up".into(),
            "--start".into(),
            s.clone(),
            "--end".into(),
            e.clone(),
            "SERVER".into(),
        ],
    ];
    for cmd in commands {
        let with = |server: &str| -> Vec<String> {
            cmd.iter()
                .map(|a| {
                    if a == "SERVER" {
                        server.to_owned()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        };
        let (direct_args, via_args) = (with(&tb.prom_url), with(&fe.url));
        let (direct, via) = blocking(move || (promtool(direct_args), promtool(via_args))).await;
        assert!(direct.0, "promtool direct {cmd:?} failed: {}", direct.2);
        assert!(via.0, "promtool via frontend {cmd:?} failed: {}", via.2);
        assert!(!via.1.trim().is_empty(), "{cmd:?} printed nothing");
        assert_eq!(via.1, direct.1, "{cmd:?}");
    }
}
