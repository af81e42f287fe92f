//! The monitoring files (`monitoring/`): the rules pass `promtool check rules` and their
//! unit tests, the dashboard is a Grafana dashboard whose every query parses, every
//! metric the dashboard and the rules name is one a running frontend exports (so a
//! renamed metric cannot leave them silently empty), and the Kubernetes forms in the
//! servicemonitor component are the same rules and dashboard.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Command;

use http::Method;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use crate::deploy::{self, DASHBOARD_CONFIGMAP};
use crate::support::{
    Scratch, bed, form, free_port, get, require_binary, secs, send, start_frontend, test_config,
};
use promql_frontend::config::{CacheBackendKind, Threshold};

const RULES: &str = "promql-frontend.rules.yaml";
const RULE_TESTS: &str = "promql-frontend.rules.test.yaml";
const DASHBOARD: &str = "promql-frontend.dashboard.json";

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("monitoring")
}

fn read(name: &str) -> String {
    let path = monitoring().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn promtool(args: &[&str]) -> String {
    require_binary("promtool", "prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The rules file as JSON.
fn rules() -> Value {
    serde_norway::from_str(&read(RULES)).unwrap_or_else(|e| panic!("{RULES}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every rule of the rules file.
fn all_rules(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A dashboard query as PromQL: Grafana's range variables given a value.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// Every PromQL expression of the dashboard (panel targets; the metric of each
/// `label_values(metric, label)` variable as a selector) and of the rules.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let d = dashboard();
    for p in panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            out.push((format!("panel {:?}", p["title"]), as_promql(expr)));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _)| selector.to_owned())
                .unwrap_or_else(|| panic!("variable {}: not label_values(...): {q}", v["name"]));
            out.push((format!("variable {}", v["name"]), inner));
        }
    }
    let r = rules();
    for rule in all_rules(&r) {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or("?");
        let expr = rule["expr"].as_str().unwrap_or_default();
        out.push((format!("rule {name}"), expr.to_owned()));
    }
    out
}

/// The metric names an expression selects.
fn metric_names(expr: &Expr) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
            let selector = match expr {
                Expr::VectorSelector(v) => Some(v),
                Expr::MatrixSelector(m) => Some(&m.vs),
                _ => None,
            };
            if let Some(name) = selector.and_then(|v| v.name.clone()) {
                self.0.insert(name);
            }
            Ok(true)
        }
    }
    let mut names = Names(BTreeSet::new());
    let _ = walk_expr(&mut names, expr);
    names.0
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", RULES]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", RULE_TESTS]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a test that expects it to fire and one that expects it not to.
    let tests: Value =
        serde_norway::from_str(&read(RULE_TESTS)).unwrap_or_else(|e| panic!("{RULE_TESTS}: {e}"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let r = rules();
    let alerts: Vec<&str> = all_rules(&r)
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(alerts.len() >= 6, "alerts: {alerts:?}");
    for alert in alerts {
        let of_alert = || cases.iter().filter(|c| c["alertname"] == alert);
        let fires = of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(
            fires && quiet,
            "{alert}: tested firing {fires}, not firing {quiet}"
        );
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_whose_queries_parse() {
    let d = dashboard();
    assert_eq!(d["uid"], "promql-frontend");
    assert!(d["title"].is_string() && d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let all = panels(&d);
    let mut ids = HashSet::new();
    let mut with_queries = 0;
    for p in &all {
        let title = &p["title"];
        assert!(
            ids.insert(p["id"].as_u64()),
            "panel ids are unique: {title}"
        );
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64(), pos["w"].as_u64());
        assert!(
            x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24) && pos["h"].as_u64().is_some(),
            "{title}: gridPos within the 24 columns: {pos}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = HashSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str()),
                "{title}: refIds are unique"
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.is_empty(), "{title}: empty query");
        }
        with_queries += 1;
    }
    assert!(with_queries >= 12, "{with_queries} panels with queries");
    for (what, expr) in expressions() {
        if let Err(e) = parser::parse(&expr) {
            panic!("{what}: {expr}: {e}");
        }
    }
}

/// Metric names of an exposition: every sample's name, and every declared family with
/// the sample names its type implies (counters `_total`, histograms `_bucket`, `_sum`,
/// `_count`), so a family with no sample yet still counts.
fn exported_names(exposition: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{}{s}", name.trim_end_matches("_total")));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Sends range queries (twice each: a miss, then a hit; once with `Cache-Control:
/// no-store`), an instant query and a bad one to the frontend at `fe`, and returns its
/// `/metrics` page.
async fn traffic_then_metrics(fe: &str, tb: &crate::support::TestBed) -> String {
    let qs = form(&[
        ("query", "sum(up)"),
        ("start", &secs(tb.end_ms - 6 * 3_600_000)),
        ("end", &secs(tb.end_ms - 3_600_000)),
        ("step", "60"),
    ]);
    let url = format!("{fe}/api/v1/query_range?{qs}");
    for headers in [&[][..], &[], &[("cache-control", "no-store")]] {
        let r = send(Method::GET, &url, headers, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = get(&format!("{fe}/api/v1/query?query=up")).await;
    assert_eq!(r.status, 200);
    let r = get(&format!("{fe}/api/v1/query?query=sum(")).await;
    assert_eq!(r.status, 400);
    get(&format!("{fe}/metrics")).await.text()
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_rules_is_exported() {
    let tb = bed().await;
    let mut config = test_config(&tb.prom_url);
    config.slow_query_log.threshold = Threshold::All;
    let healthy = start_frontend(config).await;
    // A frontend in trouble, for the metrics of failures: its first querier endpoint
    // refuses connections (attempts there are retried at the second), and its Redis is
    // not there (every cache call fails).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut config = test_config(&tb.prom_url);
    config.downstream.urls = vec![dead.clone(), tb.prom_url.clone()];
    config.cache.backend = CacheBackendKind::Redis;
    config.cache.redis.url = format!("redis://127.0.0.1:{}/0", free_port());
    config.validate().expect("valid config");
    let troubled = start_frontend(config).await;
    let mut exported = exported_names(&traffic_then_metrics(&healthy.url, tb).await);
    exported.extend(exported_names(
        &traffic_then_metrics(&troubled.url, tb).await,
    ));
    let r = rules();
    let recorded: HashSet<&str> = all_rules(&r)
        .iter()
        .filter_map(|r| r["record"].as_str())
        .collect();
    let mut missing = Vec::new();
    let mut named = 0;
    for (what, expr) in expressions() {
        let parsed = parser::parse(&expr).unwrap_or_else(|e| panic!("{what}: {expr}: {e}"));
        for name in metric_names(&parsed) {
            named += 1;
            if !exported.contains(&name) && !recorded.contains(name.as_str()) {
                missing.push(format!("{what}: {name}"));
            }
        }
    }
    assert!(named > 30, "only {named} metric names found");
    assert!(
        missing.is_empty(),
        "metrics named but not exported:\n{}\n\nexported: {exported:?}",
        missing.join("\n")
    );
}

#[test]
fn kubernetes_forms_are_the_monitoring_files() {
    deploy::require_tools();
    let scratch = Scratch::new("monitoring-k8s");
    let docs = deploy::yaml_documents(&deploy::render("k8s/overlays/servicemonitor", &scratch));
    let rule = deploy::find(&docs, "PrometheusRule", "promql-frontend");
    let file = deploy::yaml_documents(&monitoring().join(RULES));
    assert!(
        rule["spec"] == file[0],
        "the PrometheusRule differs from monitoring/{RULES}: run scripts/sync-monitoring.sh"
    );
    let configmap = deploy::find(&docs, "ConfigMap", DASHBOARD_CONFIGMAP);
    assert_eq!(configmap["metadata"]["labels"]["grafana_dashboard"], "1");
    let keys: Vec<&String> = configmap["data"]
        .as_object()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["promql-frontend.json"],
        "one dashboard in the ConfigMap"
    );
    assert!(
        configmap["data"]["promql-frontend.json"].as_str() == Some(read(DASHBOARD).as_str()),
        "the dashboard ConfigMap differs from monitoring/{DASHBOARD}: run scripts/sync-monitoring.sh"
    );
}
