//! The querier going away and coming back: clean 503 JSON quickly, then normal answers
//! again without restarting the frontend.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::net::TcpListener;

use crate::support::{
    FakeReply, bed, fake_querier, form, free_port, secs, send, start_frontend, test_config,
};

fn range_qs(end_ms: i64) -> String {
    form(&[
        ("query", "sum(rate(http_requests_total[5m]))"),
        ("start", &secs(end_ms - 3_600_000)),
        ("end", &secs(end_ms)),
        ("step", "60"),
    ])
}

/// Forwards every connection on `listener` to `target` until the task is aborted.
async fn tcp_forward(listener: TcpListener, target: std::net::SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn querier_down_is_503_unavailable_then_recovers() {
    let tb = bed().await;
    // The frontend points at a port where nothing listens yet.
    let port = free_port();
    let mut config = test_config(&format!("http://127.0.0.1:{port}"));
    config.downstream.connect_timeout = Duration::from_secs(1);
    let fe = start_frontend(config).await;
    let qs = range_qs(tb.end_ms);

    // Bounded wait: a hang here fails the test instead of blocking it forever.
    let bound = Duration::from_secs(10);
    for url in [
        format!("{}/api/v1/query_range?{qs}", fe.url),
        format!("{}/api/v1/labels", fe.url),
        format!("{}/api/v1/query?query=up", fe.url),
    ] {
        let down = tokio::time::timeout(bound, send(Method::GET, &url, &[], None))
            .await
            .expect("the frontend answers while the querier is down");
        assert_eq!(down.status, 503, "{url}: {}", down.text());
        let json = down.json();
        assert_eq!(json["status"], "error");
        assert_eq!(json["errorType"], "unavailable");
        assert!(
            json["error"]
                .as_str()
                .unwrap_or_default()
                .contains(&port.to_string()),
            "{json}"
        );
    }
    let ready = send(Method::GET, &format!("{}/-/ready", fe.url), &[], None).await;
    assert_eq!(ready.status, 503, "not ready while the querier is down");

    // The querier comes back on the same address.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind querier port");
    let prom: std::net::SocketAddr = tb
        .prom_url
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let forwarder = tokio::spawn(tcp_forward(listener, prom));
    let back = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", fe.url),
        &[],
        None,
    )
    .await;
    assert_eq!(back.status, 200, "{}", back.text());
    let direct = send(
        Method::GET,
        &format!("{}/api/v1/query_range?{qs}", tb.prom_url),
        &[],
        None,
    )
    .await;
    assert_eq!(back.body, direct.body);
    let ready = send(Method::GET, &format!("{}/-/ready", fe.url), &[], None).await;
    assert_eq!(ready.status, 200, "ready once the querier answers");
    forwarder.abort();
}

#[tokio::test]
async fn slow_querier_is_503_timeout() {
    let fake = fake_querier(Arc::new(|_, _, _, _| FakeReply {
        delay: Duration::from_secs(30),
        ..FakeReply::json(200, "{}")
    }))
    .await;
    let mut config = test_config(&fake.url);
    config.downstream.request_timeout = Duration::from_millis(300);
    let fe = start_frontend(config).await;
    for path in [
        "/api/v1/query_range?query=up&start=0&end=60&step=15",
        "/api/v1/labels",
    ] {
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            send(Method::GET, &format!("{}{path}", fe.url), &[], None),
        )
        .await
        .expect("the frontend gives up at its request timeout");
        assert_eq!(resp.status, 503, "{path}");
        let json = resp.json();
        assert_eq!(json["errorType"], "timeout", "{json}");
    }
}

#[tokio::test]
async fn unparseable_query_with_querier_down_is_still_400() {
    let port = free_port();
    let fe = start_frontend(test_config(&format!("http://127.0.0.1:{port}"))).await;
    let resp = send(
        Method::GET,
        &format!(
            "{}/api/v1/query_range?query=sum(&start=0&end=60&step=15",
            fe.url
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    let json = resp.json();
    assert_eq!(json["errorType"], "bad_data");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid parameter \"query\"")
    );
}

#[tokio::test]
async fn unresponsive_connect_is_503_after_the_connect_timeout() {
    // A listener whose accept queue is full and never drained: the kernel drops further
    // SYNs, so a new connection hangs in connect() like a black-holed querier.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("local addr");
    let _listener = socket.listen(1).expect("listen");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(300), connect).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let mut config = test_config(&format!("http://{addr}"));
    config.downstream.connect_timeout = Duration::from_millis(500);
    let fe = start_frontend(config).await;
    for path in [
        "/api/v1/query_range?query=up&start=0&end=60&step=15",
        "/api/v1/labels",
    ] {
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            send(Method::GET, &format!("{}{path}", fe.url), &[], None),
        )
        .await
        .expect("the frontend gives up at its connect timeout, not the request timeout");
        assert_eq!(resp.status, 503, "{path}: {}", resp.text());
        let json = resp.json();
        assert_eq!(json["errorType"], "unavailable", "{json}");
        assert!(
            json["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no connection within 500ms"),
            "the message names the connect timeout: {json}"
        );
    }
}
