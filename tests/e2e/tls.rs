//! An `https://` querier: a real Prometheus serving TLS with a certificate from a private
//! CA. With the CA configured the frontend works through it; without, verification fails
//! and the client gets a clean 503.

use std::time::Duration;

use http::Method;

use crate::support::certs::make_certs;
use crate::support::{Scratch, blocking, send, start_frontend, start_prometheus_with, test_config};

#[tokio::test]
async fn https_querier_with_private_ca() {
    let scratch = Scratch::new("tls");
    let dir = scratch.0.clone();
    let (prom, port) = blocking(move || {
        make_certs(&dir);
        std::fs::write(
            dir.join("web.yml"),
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                dir.join("srv.pem").display(),
                dir.join("srv.key").display()
            ),
        )
        .expect("write web config");
        let web = format!("--web.config.file={}", dir.join("web.yml").display());
        // A plain-HTTP probe of a TLS port gets a 400 answer: that is enough to know it
        // listens; readiness is then checked through the frontend.
        start_prometheus_with(&dir.join("tsdb"), None, &[web], |port| {
            crate::support::probe_status(port, "/-/ready").is_some()
        })
    })
    .await;
    let url = format!("https://127.0.0.1:{port}");

    let mut config = test_config(&url);
    config.downstream.tls_ca_file = Some(scratch.0.join("ca.pem"));
    let fe = start_frontend(config).await;
    let mut ready = false;
    for _ in 0..100 {
        if send(Method::GET, &format!("{}/-/ready", fe.url), &[], None)
            .await
            .status
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "frontend never reached the TLS querier:\n{}",
        prom.log()
    );
    let info = send(
        Method::GET,
        &format!("{}/api/v1/status/buildinfo", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["status"], "success");
    let range = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=vector(1)&start=1700000000&end=1700000060&step=30",
            fe.url
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(range.status, 200, "{}", range.text());
    assert_eq!(
        range.text(),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"],[1700000030,"1"],[1700000060,"1"]]}]}}"#
    );

    // Without the private CA the certificate is not trusted: 503, never a silent downgrade.
    let untrusting = start_frontend(test_config(&url)).await;
    let resp = send(
        Method::GET,
        &format!("{}/api/v1/status/buildinfo", untrusting.url),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    let json = resp.json();
    assert_eq!(json["errorType"], "unavailable");
    let msg = json["error"].as_str().unwrap_or_default();
    assert!(msg.contains("certificate"), "the message says why: {msg}");
    drop(prom);
}
