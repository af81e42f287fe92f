//! The status page in a real browser: Debian's headless Chromium loads `/`, the page's
//! script renders the querier endpoint, a slow query the test caused before the page
//! loaded (from `/api/v1/slow_queries`) and one it caused after (from the live follow
//! stream), and the Grafana dashboard they came from.
//!
//! Headless Chromium dumps the page once its virtual time budget is spent; virtual time
//! stands still while a request waits for its answer. The browsers reach the frontend
//! through a proxy that holds the page's first `/-/status` request until the test lets
//! it go: the test waits until both pages follow the slow-query stream (the page opens
//! it first), causes the second slow query, lets the status requests go, and shuts the
//! frontend down once both pages asked for the recent lines (which ends the follow
//! streams too). One browser dumps the DOM, the other takes a screenshot
//! (`UPDATE_SCREENSHOT=1` copies it to `docs/status-page.png`).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{oneshot, watch};

use crate::support::{FakeReply, Scratch, fake_querier, send, start_frontend, test_config};
use crate::web_clients::{basic, tenants_config};
use promql_frontend::config::Threshold;

/// Where Debian's package installs the browser.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Queries slower than this are logged; the fake querier answers after `SLOW`.
const THRESHOLD: Duration = Duration::from_millis(100);
const SLOW: Duration = Duration::from_millis(300);
const DASHBOARD_UID: &str = "ops-overview";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "`{CHROMIUM}` is not installed; the status page test runs it headless: \
         apt-get install -y chromium (scripts/install-deps.sh installs it)"
    );
}

/// Starts headless Chromium on `url`; `what` is `--dump-dom` or `--screenshot=FILE`.
fn chromium(url: &str, profile: &Path, what: &str) -> tokio::process::Child {
    tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            // Spent only after the follow stream ends: the page's last reconnect and
            // refresh stay in the future.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"))
}

/// Waits (bounded) for a browser to exit and returns its standard output.
async fn finished(child: tokio::process::Child, what: &str) -> String {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium {what} did not finish"))
        .unwrap_or_else(|e| panic!("chromium {what}: {e}"));
    assert!(
        out.status.success(),
        "chromium {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A proxy in front of the frontend that streams answers through and holds requests
/// for one path until [`HoldingProxy::release`].
struct HoldingProxy {
    url: String,
    /// Paths (with query strings) of the requests received.
    received: Arc<Mutex<Vec<String>>>,
    /// Paths of the requests whose answer headers were passed back.
    answered: Arc<Mutex<Vec<String>>>,
    gate: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

impl HoldingProxy {
    /// Lets held requests (and later ones) through.
    fn release(&self) {
        self.gate.send_replace(true);
    }

    /// How many requests for `path` (with query string) were received / answered.
    fn count(list: &Mutex<Vec<String>>, path: &str) -> usize {
        list.lock()
            .expect("lock")
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

async fn holding_proxy(target: &str, hold: &'static str) -> HoldingProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (received, answered) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let gate = watch::channel(false).0;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let client = Client::builder(TokioExecutor::new()).build_http::<Incoming>();
    let (target, rec, ans, open) = (
        target.to_owned(),
        received.clone(),
        answered.clone(),
        gate.clone(),
    );
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut stopped => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (client, target) = (client.clone(), target.clone());
            let (rec, ans, open) = (rec.clone(), ans.clone(), open.clone());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (client, target) = (client.clone(), target.clone());
                let (rec, ans, mut gate) = (rec.clone(), ans.clone(), open.subscribe());
                async move {
                    let (mut parts, body) = req.into_parts();
                    let pq = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    rec.lock().expect("lock").push(pq.clone());
                    if parts.uri.path() == hold {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    parts.uri = format!("{target}{pq}").parse().expect("proxied uri");
                    parts.headers.remove("host");
                    let resp = client
                        .request(Request::from_parts(parts, body))
                        .await
                        .expect("the frontend answers the proxy");
                    ans.lock().expect("lock").push(pq);
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    HoldingProxy {
        url: format!("http://{addr}"),
        received,
        answered,
        gate,
        _stop: stop,
    }
}

/// Waits (bounded) until `ready` holds.
async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(90);
    while !ready() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends an instant query for `expr` as panel `panel` of the test's dashboard.
async fn dashboard_query(fe: &str, expr: &str, panel: &str) {
    let url = format!(
        "{fe}/api/v1/query?{}",
        crate::support::form(&[("query", expr)])
    );
    let headers = [
        ("x-dashboard-uid", DASHBOARD_UID),
        ("x-panel-id", panel),
        ("traceparent", TRACEPARENT),
    ];
    let r = send(Method::GET, &url, &headers, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The row of table body `tbody` (its id) that shows `text`, from its `<tr` on.
fn row_with<'a>(dom: &'a str, tbody: &str, text: &str) -> Option<&'a str> {
    let start = dom.find(&format!("<tbody id=\"{tbody}\">"))?;
    let body = &dom[start..];
    let body = &body[..body.find("</tbody>")?];
    body.split("<tr").find(|row| row.contains(text))
}

#[tokio::test]
async fn the_status_page_shows_the_querier_and_live_slow_queries_in_a_browser() {
    require_chromium();
    let querier = fake_querier(Arc::new(
        |_: &Method, path: &str, _: &http::HeaderMap, _: &bytes::Bytes| {
            let reply = FakeReply::json(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            );
            if path.starts_with("/api/v1/query") {
                reply.after(SLOW)
            } else {
                reply
            }
        },
    ))
    .await;
    let mut config = test_config(&querier.url);
    config.slow_query_log.threshold = Threshold::Above(THRESHOLD);
    let fe = start_frontend(config).await;
    let scratch = Scratch::new("status-page");

    let before = "sum by (job) (rate(loaded_before_the_page_total[5m]))";
    dashboard_query(&fe.url, before, "3").await;
    let proxy = holding_proxy(&fe.url, "/-/status").await;
    let page = format!("{}/", proxy.url);
    let dom_browser = chromium(&page, &scratch.0.join("profile-dom"), "--dump-dom");
    let shot = scratch.0.join("status-page.png");
    let shot_browser = chromium(
        &page,
        &scratch.0.join("profile-shot"),
        &format!("--screenshot={}", shot.display()),
    );
    // Both pages follow the stream and wait for their status (held).
    let (received, answered) = (&proxy.received, &proxy.answered);
    let follow = "/api/v1/slow_queries?follow=true";
    wait_until("both pages follow the slow-query stream", || {
        HoldingProxy::count(answered, follow) == 2
            && HoldingProxy::count(received, "/-/status") == 2
    })
    .await;
    let live = "max(arrived_while_the_page_was_open)";
    dashboard_query(&fe.url, live, "7").await;
    proxy.release();
    let recent = "/api/v1/slow_queries?limit=50";
    wait_until("both pages read the recent slow queries", || {
        HoldingProxy::count(answered, recent) == 2
    })
    .await;
    fe.shutdown().await.expect("frontend shuts down");

    let dom = finished(dom_browser, "--dump-dom").await;
    finished(shot_browser, "--screenshot").await;
    let querier_row = row_with(&dom, "queriers", &querier.url)
        .unwrap_or_else(|| panic!("the querier {} is not shown:\n{dom}", querier.url));
    assert!(querier_row.contains("in rotation"), "{querier_row}");
    let earlier = row_with(&dom, "slow", "loaded_before_the_page_total")
        .unwrap_or_else(|| panic!("the earlier slow query is not shown:\n{dom}"));
    assert!(earlier.contains("data-source=\"recent\""), "{earlier}");
    let streamed = row_with(&dom, "slow", live)
        .unwrap_or_else(|| panic!("the slow query caused after loading is not shown:\n{dom}"));
    assert!(streamed.contains("data-source=\"live\""), "{streamed}");
    assert!(
        streamed.contains("0af7651916cd43dd8448eb211c80319c"),
        "trace id: {streamed}"
    );
    let dashboard = row_with(&dom, "dashboards", DASHBOARD_UID)
        .unwrap_or_else(|| panic!("the dashboard is not shown:\n{dom}"));
    assert!(
        dashboard.contains("panel 3"),
        "its slowest panel: {dashboard}"
    );

    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs dir");
        std::fs::write(docs.join("status-page.png"), png).expect("write docs/status-page.png");
    }
}

#[tokio::test]
async fn the_status_page_obeys_the_slow_query_access_rules() {
    let scratch = Scratch::new("status-access");
    let querier = fake_querier(Arc::new(
        |_: &Method, _: &str, _: &http::HeaderMap, _: &bytes::Bytes| {
            FakeReply::json(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            )
        },
    ))
    .await;
    let config = tenants_config(&querier.url, &scratch.0, &["alice", "bob", "ops"]);
    config.validate().expect("valid config");
    let fe = start_frontend(config).await;

    // Each tenant's user queries from its own dashboard.
    for user in ["alice", "bob"] {
        let auth = basic(user);
        let uid = format!("{user}-dashboard");
        let headers = [
            ("authorization", auth.as_str()),
            ("x-dashboard-uid", uid.as_str()),
            ("x-panel-id", "1"),
        ];
        let r = send(
            Method::GET,
            &format!("{}/api/v1/query?query=up", fe.url),
            &headers,
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{user}: {}", r.text());
    }
    let status = |user: Option<&'static str>| {
        let url = format!("{}/-/status", fe.url);
        async move {
            let auth = user.map(basic);
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            send(Method::GET, &url, &headers, None).await
        }
    };
    let dashboards = |reply: &crate::support::Reply| -> Vec<String> {
        let mut uids: Vec<String> = reply.json()["dashboards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["uid"].as_str().map(str::to_owned))
            .collect();
        uids.sort();
        uids
    };
    // Answers are counted once sent: wait until the admin sees both dashboards.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while dashboards(&status(Some("ops")).await).len() < 2 {
        assert!(
            tokio::time::Instant::now() < until,
            "both dashboards counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = status(Some("ops")).await;
    assert_eq!(dashboards(&admin), ["alice-dashboard", "bob-dashboard"]);
    assert_eq!(
        admin.json()["config"]["server"]["user_tenants"]["alice"],
        "team-a"
    );
    let alice = status(Some("alice")).await;
    assert_eq!(alice.status, 200);
    assert_eq!(dashboards(&alice), ["alice-dashboard"]);
    assert_eq!(alice.json()["config"]["server"]["user_tenants"], "<hidden>");
    assert!(!alice.text().contains("team-b"), "{}", alice.text());
    // Without credentials: neither the page nor its data.
    assert_eq!(status(None).await.status, 401);
    let page = send(Method::GET, &format!("{}/", fe.url), &[], None).await;
    assert_eq!(page.status, 401);
    let auth = basic("alice");
    let page = send(
        Method::GET,
        &format!("{}/", fe.url),
        &[("authorization", auth.as_str())],
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains("<title>promql-frontend status</title>")
    );
    let csp = page
        .headers
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap_or(""));
    assert!(
        csp.is_some_and(|c| c.starts_with("default-src 'none'")),
        "{csp:?}"
    );
}
