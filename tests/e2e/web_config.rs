//! The listening side secured by a web config file (Prometheus' `--web.config.file`
//! format), with certificates made by openssl: basic auth over TLS answering like the
//! querier, mutual TLS, a certificate rotated without a restart, a broken change that
//! leaves the last good file in force, a broken file that stops the start, and a plain
//! HTTP request to the TLS port.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use promql_frontend::Frontend;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::compare::compare;
use crate::support::certs::{CLIENT_EXT, SERVER_EXT, issue, make_ca, make_certs};
use crate::support::{
    FrontendHandle, Reply, Scratch, bed, blocking, send, start_frontend, test_config,
};

/// `Authorization` of user `alice` with password `wonderland`.
pub const ALICE: &str = "Basic YWxpY2U6d29uZGVybGFuZA==";
/// `Authorization` of `alice` with a wrong password.
const ALICE_WRONG: &str = "Basic YWxpY2U6d3Jvbmc=";

/// A `basic_auth_users` entry: `user: bcrypt(password)` (cost 4, to keep tests quick).
pub fn user_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
    format!("  {user}: '{hash}'\n")
}

/// A client's TLS settings: trust `ca`, and present `identity` (cert, key) when given.
pub fn client_tls(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .expect("read cert")
                .map(|c| c.expect("cert PEM"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    }
}

/// Sends one request over HTTPS (HTTP/1.1, or h2 when `h2`); `Err` with the client's
/// error when no answer comes (a refused handshake, for instance).
pub async fn send_tls(
    tls: rustls::ClientConfig,
    h2: bool,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Reply, Version), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if h2 {
        connector.enable_http2().build()
    } else {
        connector.enable_http1().build()
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        version,
    ))
}

/// `GET url` over HTTPS/1.1 trusting `ca`, with `auth` as `Authorization`; fails the test
/// when no answer comes.
pub async fn get_tls(ca: &Path, url: &str, auth: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    send_tls(client_tls(ca, None), false, Method::GET, url, &headers)
        .await
        .unwrap_or_else(|e| panic!("no answer from {url}: {e}"))
        .0
}

/// The certificate the server at `addr` presents (DER).
async fn served_certificate(addr: &str, ca: &Path) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca, None)));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .expect("a server certificate")
}

/// The DER of the first certificate in a PEM file.
fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem)
        .expect("certificate PEM")
        .as_ref()
        .to_vec()
}

/// Writes `web.yml` in `dir`: TLS with `srv.pem`, `extra_tls` lines, and `users`.
fn write_web_config(dir: &Path, extra_tls: &str, users: &str) -> PathBuf {
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: srv.pem\n  key_file: srv.key\n{extra_tls}\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n{users}"
        ),
    )
    .expect("write web config");
    path
}

/// Starts a frontend on the test bed's Prometheus with `web` as its web config file.
async fn secured_frontend(web: &Path) -> (FrontendHandle, String) {
    let tb = bed().await;
    let mut config = test_config(&tb.prom_url);
    config.server.web_config_file = Some(web.to_owned());
    let fe = start_frontend(config).await;
    let https = fe.url.replace("http://", "https://");
    (fe, https)
}

#[tokio::test]
async fn basic_auth_over_tls_answers_like_the_querier() {
    let scratch = Scratch::new("web-basic-auth");
    let dir = scratch.0.clone();
    blocking(move || make_certs(&dir)).await;
    let web = write_web_config(&scratch.0, "", &user_line("alice", "wonderland"));
    let (_fe, url) = secured_frontend(&web).await;
    let ca = scratch.0.join("ca.pem");
    let tb = bed().await;
    let range = format!(
        "/api/v1/query_range?query=sum(rate(http_requests_total[5m]))&start={}&end={}&step=300",
        (tb.start_ms + 3_600_000) / 1000,
        (tb.end_ms - 600_000) / 1000
    );
    let get = |path: &str, auth: Option<&'static str>| {
        let (url, ca) = (format!("{url}{path}"), ca.clone());
        async move { get_tls(&ca, &url, auth).await }
    };

    for (auth, what) in [
        (None, "no credentials"),
        (Some(ALICE_WRONG), "a wrong password"),
    ] {
        let refused = get(&range, auth).await;
        assert_eq!(refused.status, 401, "{what}: {}", refused.text());
        let challenge = refused.headers["www-authenticate"].to_str().unwrap_or("");
        assert!(
            challenge.starts_with("Basic realm=\""),
            "{what}: {challenge}"
        );
        assert_eq!(refused.text(), "Unauthorized\n");
        assert_eq!(
            refused.headers["x-frame-options"], "deny",
            "headers on a 401 too"
        );
    }

    let via = get(&range, Some(ALICE)).await;
    let direct = send(Method::GET, &format!("{}{range}", tb.prom_url), &[], None).await;
    assert_eq!(via.status, 200, "{}", via.text());
    assert!(
        via.json()["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "a non-empty answer to compare: {}",
        via.text()
    );
    if let Some(diff) = compare(&range, &direct, &via, false) {
        panic!("query_range through TLS and basic auth differs from direct: {diff}");
    }
    assert_eq!(via.headers["x-frame-options"], "deny");

    let series = format!(
        "/api/v1/series?match[]=up&start={}&end={}",
        tb.start_ms / 1000,
        tb.end_ms / 1000
    );
    let via = get(&series, Some(ALICE)).await;
    let direct = send(Method::GET, &format!("{}{series}", tb.prom_url), &[], None).await;
    assert_eq!(via.status, 200, "{}", via.text());
    assert_eq!(
        via.decoded(),
        direct.decoded(),
        "passthrough body equals direct"
    );

    // Probes need no password (server.auth_exempt_paths); /metrics does.
    assert_eq!(get("/-/healthy", None).await.status, 200);
    assert_eq!(get("/metrics", None).await.status, 401);
    let metrics = get("/metrics", Some(ALICE)).await.text();
    // Every reason is exported from the start (at 0); these two were counted.
    let counted = |reason: &str| {
        let series = format!("promql_frontend_auth_failures_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)
    };
    assert!(
        counted("missing") && counted("wrong_credentials") && !counted("malformed"),
        "auth failures counted by reason:\n{metrics}"
    );

    // HTTP/2 is offered in the handshake (ALPN) and works.
    let (reply, version) = send_tls(
        client_tls(&ca, None),
        true,
        Method::GET,
        &format!("{url}/api/v1/status/buildinfo"),
        &[("authorization", ALICE)],
    )
    .await
    .expect("h2 answer");
    assert_eq!((reply.status.as_u16(), version), (200, Version::HTTP_2));
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_api_answer() {
    let scratch = Scratch::new("web-plain-http");
    let dir = scratch.0.clone();
    blocking(move || make_certs(&dir)).await;
    let web = write_web_config(&scratch.0, "", "");
    let (fe, _) = secured_frontend(&web).await;
    let addr = fe.url.trim_start_matches("http://").to_owned();
    let answer = blocking(move || {
        let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        tcp.write_all(b"GET /api/v1/status/buildinfo HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut got = Vec::new();
        // The server closes the connection after its alert; a read error counts too.
        let _ = tcp.read_to_end(&mut got);
        got
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.starts_with("HTTP/") && !text.contains("success"),
        "plain HTTP got an HTTP answer: {text:?}"
    );
    // A plain client gets nothing either (its request fails).
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>()
            .get(
                format!("{}/api/v1/status/buildinfo", fe.url)
                    .parse()
                    .expect("uri"),
            ),
    )
    .await
    .expect("the server closes the connection");
    assert!(
        reply.is_err(),
        "a plain-HTTP client got an answer: {reply:?}"
    );
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() {
    let scratch = Scratch::new("web-mtls");
    let dir = scratch.0.clone();
    blocking(move || {
        make_certs(&dir);
        issue(&dir, "ca", "client", "grafana", CLIENT_EXT);
        make_ca(&dir, "other");
        issue(&dir, "other", "stranger", "stranger", CLIENT_EXT);
    })
    .await;
    let web = write_web_config(
        &scratch.0,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        "",
    );
    let (_fe, url) = secured_frontend(&web).await;
    let (ca, dir) = (scratch.0.join("ca.pem"), &scratch.0);
    let buildinfo = format!("{url}/api/v1/status/buildinfo");
    let attempt = |identity: Option<(PathBuf, PathBuf)>| {
        let tls = client_tls(
            &ca,
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        );
        send_tls(tls, false, Method::GET, &buildinfo, &[])
    };

    // Refused in the handshake: the client reads the server's alert.
    match attempt(None).await {
        Ok(reply) => panic!("a client without a certificate got {reply:?}"),
        Err(e) => assert!(e.contains("CertificateRequired"), "{e}"),
    }
    let stranger = attempt(Some((dir.join("stranger.pem"), dir.join("stranger.key")))).await;
    match stranger {
        Ok(reply) => panic!("a certificate from another CA got {reply:?}"),
        Err(e) => assert!(
            e.contains("UnknownCA") || e.contains("BadCertificate"),
            "{e}"
        ),
    }
    let (reply, _) = attempt(Some((dir.join("client.pem"), dir.join("client.key"))))
        .await
        .unwrap_or_else(|e| panic!("a client with a certificate from the CA was refused: {e}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "success");
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
async fn wait_until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn rotated_certificate_is_served_and_a_broken_change_keeps_the_last_good_file() {
    let scratch = Scratch::new("web-rotation");
    let dir = scratch.0.clone();
    blocking(move || {
        make_certs(&dir);
        issue(&dir, "ca", "next", "127.0.0.1 rotated", SERVER_EXT);
    })
    .await;
    let users = user_line("alice", "wonderland");
    let web = write_web_config(&scratch.0, "", &users);
    let (fe, url) = secured_frontend(&web).await;
    let addr = fe.url.trim_start_matches("http://").to_owned();
    let ca = scratch.0.join("ca.pem");
    let (first, next) = (
        der_of(&scratch.0.join("srv.pem")),
        der_of(&scratch.0.join("next.pem")),
    );
    assert_ne!(first, next);
    assert_eq!(served_certificate(&addr, &ca).await, first);

    // Rotate: the files named by the config get the new certificate and key.
    for ext in ["key", "pem"] {
        std::fs::copy(
            scratch.0.join(format!("next.{ext}")),
            scratch.0.join(format!("srv.{ext}")),
        )
        .expect("replace certificate file");
    }
    let rotated = wait_until(Duration::from_secs(30), || {
        let (addr, ca, next) = (addr.clone(), ca.clone(), next.clone());
        async move { served_certificate(&addr, &ca).await == next }
    })
    .await;
    assert!(
        rotated,
        "the rotated certificate was not served within 30 s"
    );

    let metrics_url = format!("{url}/metrics");
    let metrics = || {
        let (ca, url) = (ca.clone(), metrics_url.clone());
        async move { get_tls(&ca, &url, Some(ALICE)).await.text() }
    };
    assert!(
        metrics()
            .await
            .contains(r#"promql_frontend_web_config_reloads_total{result="success"}"#),
        "the rotation counts as a reload"
    );

    // A broken change (a password that is not a bcrypt hash) is not applied.
    std::fs::write(
        &web,
        std::fs::read_to_string(&web)
            .expect("read web config")
            .replace("alice: '", "alice: 'not-bcrypt"),
    )
    .expect("break web config");
    let noticed = wait_until(Duration::from_secs(30), || {
        let m = metrics();
        async move {
            m.await
                .contains("promql_frontend_web_config_last_reload_successful 0")
        }
    })
    .await;
    assert!(
        noticed,
        "the broken change was not noticed within 30 s:\n{}",
        metrics().await
    );
    let reply = get_tls(&ca, &format!("{url}/api/v1/status/buildinfo"), Some(ALICE)).await;
    assert_eq!(
        reply.status,
        200,
        "old credentials still work: {}",
        reply.text()
    );
    assert_eq!(
        served_certificate(&addr, &ca).await,
        next,
        "and the same certificate"
    );
}

#[tokio::test]
async fn broken_web_config_refuses_start_naming_the_field() {
    let scratch = Scratch::new("web-broken");
    let dir = scratch.0.clone();
    blocking(move || make_certs(&dir)).await;
    let web = write_web_config(
        &scratch.0,
        "  client_auth_type: RequireAndVerifyClientCrt\n",
        "",
    );
    let mut config = test_config("http://127.0.0.1:1");
    config.server.web_config_file = Some(web.clone());
    let err = Frontend::new(&config)
        .err()
        .expect("a broken file is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("tls_server_config.client_auth_type")
            && msg.contains("RequireAndVerifyClientCrt"),
        "{msg}"
    );

    // The binary stops before listening, naming the field.
    let web_arg = web.clone();
    let out = blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_promql-frontend"))
            .arg("--web.config.file")
            .arg(&web_arg)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--downstream-url",
                "http://127.0.0.1:1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start binary");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return Some((status, stderr));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await;
    let (status, stderr) = out.expect("the binary started despite a broken web config file");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tls_server_config.client_auth_type"),
        "{stderr}"
    );

    // A certificate file that is missing is named too.
    std::fs::remove_file(scratch.0.join("srv.pem")).expect("remove cert");
    write_web_config(&scratch.0, "", "");
    let err = Frontend::new(&config)
        .err()
        .expect("missing certificate refused");
    assert!(
        err.to_string().contains("tls_server_config.cert_file"),
        "{err}"
    );
}
