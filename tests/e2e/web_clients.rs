//! Clients of a secured frontend: a real Prometheus scraping `/metrics` over https with
//! basic auth, and two tenants' users who each see only their own slow queries while
//! an admin sees both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use promql_frontend::Config;
use promql_frontend::config::Threshold;

use crate::support::certs::make_certs;
use crate::support::{
    FakeReply, Scratch, blocking, fake_querier, send, start_frontend, start_prometheus_config,
    test_config,
};
use crate::web_config::{ALICE, get_tls, user_line};

#[tokio::test]
async fn prometheus_scrapes_metrics_over_https_with_basic_auth() {
    let scratch = Scratch::new("web-scrape");
    let dir = scratch.0.clone();
    blocking(move || make_certs(&dir)).await;
    let web = scratch.0.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: srv.pem\n  key_file: srv.key\nbasic_auth_users:\n{}",
            user_line("alice", "wonderland")
        ),
    )
    .expect("write web config");
    let mut config = test_config("http://127.0.0.1:1");
    config.server.web_config_file = Some(web);
    let fe = start_frontend(config).await;
    let target = fe.url.trim_start_matches("http://").to_owned();
    let ca = scratch.0.join("ca.pem");
    // Two jobs on the same target: the right password and a wrong one.
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    scheme: https\n    \
             basic_auth:\n      username: alice\n      password: {password}\n    \
             tls_config:\n      ca_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            ca.display()
        )
    };
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}",
        job("frontend", "wonderland"),
        job("intruder", "guess")
    );
    let tsdb = scratch.0.join("tsdb");
    let (prom, port) = blocking(move || {
        start_prometheus_config(&tsdb, None, &prom_config, &[], |port| {
            crate::support::probe_status(port, "/-/ready") == Some(200)
        })
    })
    .await;
    let prom_url = format!("http://127.0.0.1:{port}");
    // Waits (generously) until Prometheus reports `up` for both jobs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    let up = loop {
        let reply = send(
            Method::GET,
            &format!("{prom_url}/api/v1/query?query=up"),
            &[],
            None,
        )
        .await;
        last = reply.json();
        let by_job: Vec<(String, String)> = last["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["metric"]["job"].as_str().unwrap_or_default().to_owned(),
                    s["value"][1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let of = |job: &str| {
            by_job
                .iter()
                .find(|(j, _)| j == job)
                .map(|(_, v)| v.clone())
        };
        if let (Some(ok), Some(bad)) = (of("frontend"), of("intruder"))
            && ok == "1"
        {
            break (ok, bad);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the frontend successfully within 60 s; last answer: {last}\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(up, ("1".to_owned(), "0".to_owned()), "{last}");
    // The scrapes were real: the frontend counted the intruder's refusals.
    let metrics = get_tls(&ca, &format!("https://{target}/metrics"), Some(ALICE)).await;
    let refused = metrics
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"promql_frontend_auth_failures_total{reason="wrong_credentials"} "#)
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(refused.is_some_and(|n| n >= 1.0), "{}", metrics.text());
}

/// A config for a frontend in front of `querier` whose web config file (written in
/// `dir`) lists `users`, each with the password `<user>-password`: alice's tenant is
/// team-a, bob's team-b, ops is the slow-query admin, and every request is logged.
pub fn tenants_config(querier: &str, dir: &std::path::Path, users: &[&str]) -> Config {
    let web = dir.join("web.yml");
    let lines: String = users
        .iter()
        .map(|u| user_line(u, &format!("{u}-password")))
        .collect();
    std::fs::write(&web, format!("basic_auth_users:\n{lines}")).expect("write web config");
    let mut config = test_config(querier);
    config.server.web_config_file = Some(web);
    config.server.user_tenants = [("alice", "team-a"), ("bob", "team-b")]
        .into_iter()
        .map(|(u, t)| (u.to_owned(), t.to_owned()))
        .collect();
    config.slow_query_log.admin_users = vec!["ops".to_owned()];
    config.slow_query_log.threshold = Threshold::All;
    config
}

/// `Authorization: Basic` of `user:<user>-password`.
pub fn basic(user: &str) -> String {
    use base64::Engine as _;
    let pw = format!("{user}-password");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_slow_queries_and_the_admin_sees_all() {
    let scratch = Scratch::new("web-tenants");
    let querier = fake_querier(Arc::new(|_, _, _, _| {
        FakeReply::json(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
    }))
    .await;
    let mut config = tenants_config(&querier.url, &scratch.0, &["alice", "bob", "ops", "carol"]);
    config.slow_query_log.path = Some(scratch.0.join("slow.log"));
    config.validate().expect("valid config");
    let fe = start_frontend(config).await;

    // alice follows the slow-query stream before anything is logged.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let follow = Request::get(format!("{}/api/v1/slow_queries?follow=true", fe.url))
        .header("authorization", basic("alice"))
        .body(Empty::new())
        .expect("request");
    let resp = client.request(follow).await.expect("follow");
    assert_eq!(resp.status(), 200);
    let mut alice_stream = resp.into_body();

    // Each user queries once; alice claims team-b's tenant, which is overridden.
    let query = |user: &'static str, tenant: Option<&'static str>| {
        let url = format!("{}/api/v1/query?query=marker_{user}", fe.url);
        async move {
            let auth = basic(user);
            let mut headers = vec![("authorization", auth.as_str()), ("x-request-id", user)];
            headers.extend(tenant.map(|t| ("x-scope-orgid", t)));
            let reply = send(Method::GET, &url, &headers, None).await;
            assert_eq!(reply.status, 200, "{user}: {}", reply.text());
        }
    };
    query("bob", None).await;
    query("alice", Some("team-b")).await;
    query("carol", Some("team-c")).await;
    query("ops", None).await;

    // The querier saw the mapped tenants, whatever the client sent.
    let tenants: Vec<(String, Option<String>)> = querier
        .seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, pq, headers, _): &(Method, String, HeaderMap, Bytes)| {
            let after = pq.rsplit("marker_").next().unwrap_or_default();
            let who = after.split('&').next().unwrap_or_default().to_owned();
            let tenant = headers
                .get("x-scope-orgid")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (who, tenant)
        })
        .collect();
    assert_eq!(
        tenants,
        [
            ("bob".to_owned(), Some("team-b".to_owned())),
            ("alice".to_owned(), Some("team-a".to_owned())),
            ("carol".to_owned(), Some("team-c".to_owned())),
            ("ops".to_owned(), None),
        ]
    );

    // Lines are recorded once each answer is sent; wait until the admin sees all four.
    let listed = |user: &'static str| {
        let url = format!("{}/api/v1/slow_queries", fe.url);
        async move {
            let auth = basic(user);
            let reply = send(Method::GET, &url, &[("authorization", auth.as_str())], None).await;
            assert_eq!(reply.status, 200, "{user}: {}", reply.text());
            let mut ids: Vec<String> = reply.json()["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    format!(
                        "{}@{}",
                        l["request_id"].as_str().unwrap_or(""),
                        l["tenant"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            ids.sort();
            ids
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed("ops").await.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the four lines were never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        listed("ops").await,
        ["alice@team-a", "bob@team-b", "carol@team-c", "ops@-"],
        "the admin sees every tenant"
    );
    assert_eq!(listed("alice").await, ["alice@team-a"]);
    assert_eq!(listed("bob").await, ["bob@team-b"]);
    // An unmapped user without a tenant sees only lines without one.
    let unmapped = {
        let reply = send(
            Method::GET,
            &format!("{}/api/v1/slow_queries", fe.url),
            &[("authorization", basic("carol").as_str())],
            None,
        )
        .await;
        reply.json()["data"].as_array().map(Vec::len)
    };
    assert_eq!(
        unmapped,
        Some(1),
        "carol without a tenant sees only the untenanted line"
    );
    let no_auth = send(
        Method::GET,
        &format!("{}/api/v1/slow_queries", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(no_auth.status, 401);

    // alice's stream carried only her own line, though bob's came first.
    let frame = tokio::time::timeout(Duration::from_secs(10), alice_stream.frame())
        .await
        .expect("a line within 10 s")
        .expect("stream open")
        .expect("frame");
    let line: serde_json::Value =
        serde_json::from_slice(&frame.into_data().expect("data")).expect("one JSON line");
    assert_eq!(
        (line["request_id"].as_str(), line["tenant"].as_str()),
        (Some("alice"), Some("team-a"))
    );
}
