//! Test support: the real Prometheus test bed, in-process frontends, a scriptable fake
//! querier, and a small HTTP client.
//!
//! The test bed (generated data, promtool backfill, one `prometheus` process) is built
//! once per test binary run and shared by every test. Each process the harness starts
//! runs under a tiny `sh` supervisor that reads its stdin: when the test binary exits,
//! however it exits, the pipe closes and the supervisor kills the process and removes
//! its temporary directory.
//!
//! `live` builds a second kind of bed: history plus live samples scraped up to now;
//! `certs` makes a private CA and certificates with openssl.

#![allow(dead_code)]

#[path = "support/certs.rs"]
pub mod certs;
#[path = "support/live.rs"]
pub mod live;

use std::convert::Infallible;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use promql_frontend::testdata::{Spec, backfill, write_openmetrics};
use promql_frontend::{Config, Frontend};
use tokio::sync::oneshot;

/// Days of data in the shared test bed.
pub const TESTBED_DAYS: f64 = 3.0;
/// Scrape interval of the test bed, seconds.
pub const TESTBED_INTERVAL_S: i64 = 60;

/// The shared Prometheus with multi-day data.
pub struct TestBed {
    /// `http://127.0.0.1:PORT` of the real Prometheus.
    pub prom_url: String,
    /// First sample, Unix ms.
    pub start_ms: i64,
    /// Last sample, Unix ms.
    pub end_ms: i64,
    /// Where the TSDB lives (a second Prometheus can be started on a copy).
    pub data_dir: PathBuf,
    _prometheus: Supervised,
}

/// A process started under the stdin supervisor; dropping it stops the process.
pub struct Supervised {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Supervised {
    /// Starts `program args...`, logging to `log`; `cleanup` is removed after it stops.
    pub fn start(program: &str, args: &[String], log: &Path, cleanup: Option<&Path>) -> Supervised {
        let script = r#"log="$1"; cleanup="$2"; shift 2
"$@" >"$log" 2>&1 &
pid=$!
echo "$pid" >"$log.pid"
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -f "$log.pid"
if [ -n "$cleanup" ]; then rm -rf "$cleanup"; fi"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(log)
            .arg(
                cleanup
                    .map(|p| p.as_os_str().to_owned())
                    .unwrap_or_default(),
            )
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sh to supervise {program}: {e}"));
        let mut child = child;
        let stdin = child.stdin.take();
        Supervised {
            child,
            stdin,
            log: log.to_owned(),
        }
    }

    /// The process's combined output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (not the supervisor's), once the supervisor has written it.
    pub fn pid(&self) -> Option<u32> {
        let pid_file = PathBuf::from(format!("{}.pid", self.log.display()));
        std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
    }

    /// Kills the process with SIGKILL (a crash: no graceful shutdown, connections
    /// reset), then waits for the supervisor to finish.
    pub fn kill_hard(&mut self) {
        let pid_file = PathBuf::from(format!("{}.pid", self.log.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(pid) = std::fs::read_to_string(&pid_file)
                && !pid.trim().is_empty()
            {
                break pid.trim().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no pid file {}",
                pid_file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {pid} failed");
        self.stop();
    }

    /// Stops the process and waits for the supervisor to finish.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fails the test with an install hint when a required binary is missing.
pub fn require_binary(name: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed; the end-to-end tests need it: apt-get install -y {package}"
    );
}

/// A free loopback port (bound then released; the caller binds it right away).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Blocking `GET path` on 127.0.0.1:port; returns the status code, or `None` when nothing
/// answers. Used only to wait for processes to become ready.
pub fn probe_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a real Prometheus on `data_dir` and waits until `/-/ready` answers 200.
pub fn start_prometheus(data_dir: &Path, cleanup: Option<&Path>) -> (Supervised, u16) {
    start_prometheus_with(data_dir, cleanup, &[], |port| {
        probe_status(port, "/-/ready") == Some(200)
    })
}

/// Starts a real Prometheus on `port` (e.g. again where a killed one listened).
pub fn start_prometheus_on(data_dir: &Path, port: u16) -> Supervised {
    require_binary("prometheus", "prometheus");
    let config = data_dir.with_extension("yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("write prometheus.yml");
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", data_dir.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--storage.tsdb.retention.time=3650d".to_owned(),
        "--log.level=warn".to_owned(),
    ];
    let log = data_dir.with_extension(format!("{port}.restart.log"));
    let proc = Supervised::start("prometheus", &args, &log, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if probe_status(port, "/-/ready") == Some(200) {
            return proc;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "prometheus on port {port} did not become ready:\n{}",
        proc.log()
    );
}

/// Copies the test bed's TSDB to `dir` (a second Prometheus cannot share the first's).
pub fn copy_tsdb(from: &Path, dir: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(dir)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -r {} {} failed",
        from.display(),
        dir.display()
    );
    let _ = std::fs::remove_file(dir.join("lock"));
}

/// Starts a real Prometheus with extra flags; `ready(port)` says when it is up.
pub fn start_prometheus_with(
    data_dir: &Path,
    cleanup: Option<&Path>,
    extra_args: &[String],
    ready: impl Fn(u16) -> bool,
) -> (Supervised, u16) {
    let config = "global:\n  scrape_interval: 1m\n";
    start_prometheus_config(data_dir, cleanup, config, extra_args, ready)
}

/// Starts a real Prometheus with `config` as its `prometheus.yml` and extra flags;
/// `ready(port)` says when it is up.
pub fn start_prometheus_config(
    data_dir: &Path,
    cleanup: Option<&Path>,
    config: &str,
    extra_args: &[String],
    ready: impl Fn(u16) -> bool,
) -> (Supervised, u16) {
    require_binary("prometheus", "prometheus");
    let config_path = data_dir.with_extension("yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    for _attempt in 0..3 {
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", data_dir.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.retention.time=3650d".to_owned(),
            "--log.level=warn".to_owned(),
        ];
        args.extend_from_slice(extra_args);
        let log = data_dir.with_extension(format!("{port}.log"));
        let proc = Supervised::start("prometheus", &args, &log, cleanup);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if ready(port) {
                return (proc, port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "prometheus on port {port} did not become ready:\n{}",
            proc.log()
        );
    }
    panic!("prometheus did not start; see the log lines above");
}

/// A scratch directory under the target dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates `target/tmp/<name>-<pid>`.
    pub fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shared test bed, built on first use.
pub fn testbed() -> &'static TestBed {
    static BED: OnceLock<TestBed> = OnceLock::new();
    BED.get_or_init(|| build_testbed(TESTBED_DAYS))
}

/// Generates `days` of data ending now, backfills it and starts Prometheus on it.
pub fn build_testbed(days: f64) -> TestBed {
    require_binary("promtool", "prometheus");
    require_binary("prometheus", "prometheus");
    let root =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("testbed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create test bed dir");
    let now_ms = chrono::Utc::now().timestamp_millis();
    let spec = Spec::days_ending_at(days, now_ms, TESTBED_INTERVAL_S);
    let om = root.join("data.om");
    {
        let file = std::fs::File::create(&om).expect("create OpenMetrics file");
        let mut w = BufWriter::new(file);
        write_openmetrics(&spec, &mut w).expect("write OpenMetrics");
        w.flush().expect("flush OpenMetrics");
    }
    let tsdb = root.join("tsdb");
    let hours = (days * 24.0).ceil() as i64 + 2;
    backfill(&om, &tsdb, hours).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&om).ok();
    let (proc, port) = start_prometheus(&tsdb, Some(&root));
    TestBed {
        prom_url: format!("http://127.0.0.1:{port}"),
        start_ms: spec.start_ms(),
        end_ms: spec.end_ms,
        data_dir: tsdb,
        _prometheus: proc,
    }
}

/// A frontend running in this process on a free port; stops when dropped.
pub struct FrontendHandle {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl FrontendHandle {
    /// Triggers graceful shutdown and waits for the server to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for FrontendHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A config pointing at `downstream_url` with short timeouts suited to tests.
pub fn test_config(downstream_url: &str) -> Config {
    let mut c = Config::default();
    c.downstream.url = downstream_url.to_owned();
    c.downstream.connect_timeout = Duration::from_secs(2);
    c.downstream.request_timeout = Duration::from_secs(30);
    c.server.grace_period = Duration::from_secs(5);
    c.validate().expect("test config is valid");
    c
}

/// Starts a frontend with `config` on a free loopback port.
pub async fn start_frontend(config: Config) -> FrontendHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind frontend");
    let addr = listener.local_addr().expect("frontend address");
    let frontend = Frontend::new(&config).expect("frontend builds");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(frontend.serve(listener, async {
        let _ = rx.await;
    }));
    FrontendHandle {
        url: format!("http://{addr}"),
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A fake querier: answers every request with `respond` and records what it received.
pub struct FakeQuerier {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request seen: method, path and query, headers, body.
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    _stop: oneshot::Sender<()>,
}

/// A request a [`FakeQuerier`] received: method, path and query, headers, body.
pub type SeenRequest = (Method, String, HeaderMap, Bytes);

/// What a [`FakeQuerier`] answers.
pub type Responder = Arc<dyn Fn(&Method, &str, &HeaderMap, &Bytes) -> FakeReply + Send + Sync>;

/// A scripted reply; `delay` postpones the headers.
pub struct FakeReply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Close the connection instead of answering (after `delay`).
    pub reset: bool,
    /// Answer only once this holds `true` (after `delay`): the test decides when.
    pub hold: Option<tokio::sync::watch::Receiver<bool>>,
}

impl FakeReply {
    /// A 200 with a JSON body.
    pub fn json(status: u16, body: &str) -> FakeReply {
        FakeReply {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay: Duration::ZERO,
            reset: false,
            hold: None,
        }
    }

    /// Closes the connection without an answer.
    pub fn reset() -> FakeReply {
        FakeReply {
            reset: true,
            ..FakeReply::json(200, "")
        }
    }

    /// This reply, `delay` later.
    pub fn after(self, delay: Duration) -> FakeReply {
        FakeReply { delay, ..self }
    }

    /// This reply, once `gate` is opened.
    pub fn held(self, gate: &Gate) -> FakeReply {
        FakeReply {
            hold: Some(gate.0.subscribe()),
            ..self
        }
    }
}

/// Holds back the fake querier's [`FakeReply::held`] answers until [`Gate::open`]: a
/// test then knows requests are in flight for as long as it needs, without timing.
pub struct Gate(tokio::sync::watch::Sender<bool>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate(tokio::sync::watch::channel(false).0)
    }

    /// Lets every held answer (and every later one) go.
    pub fn open(&self) {
        self.0.send_replace(true);
    }
}

/// Starts a fake querier on a free loopback port.
pub async fn fake_querier(respond: Responder) -> FakeQuerier {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("fake address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = oneshot::channel::<()>();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        // Dropped when the fake stops: open connections close too, like a dead process's.
        let (_open, closed) = tokio::sync::watch::channel(());
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut rx => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let respond = respond.clone();
            let seen = seen2.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let respond = respond.clone();
                let seen = seen.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let pq = parts
                        .uri
                        .path_and_query()
                        .map_or("/".to_owned(), |p| p.to_string());
                    let reply = respond(&parts.method, &pq, &parts.headers, &body);
                    seen.lock()
                        .expect("lock")
                        .push((parts.method, pq, parts.headers, body));
                    tokio::time::sleep(reply.delay).await;
                    if let Some(mut hold) = reply.hold {
                        let _ = hold.wait_for(|open| *open).await;
                    }
                    if reply.reset {
                        // An error from the service makes hyper drop the connection.
                        return Err(std::io::Error::other("scripted connection reset"));
                    }
                    let mut resp = Response::new(Full::new(reply.body));
                    *resp.status_mut() = StatusCode::from_u16(reply.status).expect("status");
                    for (k, v) in reply.headers {
                        resp.headers_mut()
                            .append(k, v.parse().expect("header value"));
                    }
                    Ok::<_, std::io::Error>(resp)
                }
            });
            let mut closed = closed.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = closed.changed() => {}
                }
            });
        }
    });
    FakeQuerier {
        url: format!("http://{addr}"),
        seen,
        _stop: tx,
    }
}

/// An HTTP answer, body already read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body (still compressed if the server compressed it).
    pub body: Bytes,
}

impl Reply {
    /// The body with any gzip or deflate `Content-Encoding` removed.
    pub fn decoded(&self) -> Bytes {
        let mut out = Vec::new();
        match self.headers.get("content-encoding") {
            Some(v) if v == "gzip" => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("valid gzip body");
            }
            Some(v) if v == "deflate" => {
                flate2::read::ZlibDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("valid deflate (zlib) body");
            }
            _ => return self.body.clone(),
        }
        Bytes::from(out)
    }

    /// The decoded body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.decoded()).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.decoded())
            )
        })
    }

    /// The frontend's `X-Cache` outcome (`hit`, `partial`, `miss`), `none` without one.
    pub fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
    }

    /// The decoded body as text (for assertion messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.decoded()).into_owned()
    }
}

/// Sends one request over HTTP/1.1.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some((ct, bytes)) => {
            req = req.header("content-type", ct);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body)).expect("valid request");
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("request to {url}: {e:?}"));
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Reply {
    send(Method::GET, url, &[], None).await
}

/// `POST url` with a form body.
pub async fn post_form(url: &str, form: &str) -> Reply {
    send(
        Method::POST,
        url,
        &[],
        Some((
            "application/x-www-form-urlencoded",
            form.as_bytes().to_vec(),
        )),
    )
    .await
}

/// URL-encodes form pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Unix seconds (ms precision) as the API writes them.
pub fn secs(ms: i64) -> String {
    promql_frontend::model::time::format_seconds_ms(ms)
}

/// Runs a blocking closure (process start, std I/O) off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The test bed, built off the async runtime.
pub async fn bed() -> &'static TestBed {
    blocking(testbed).await
}

/// Socket address helper for tests that need the raw address.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("socket address")
}

/// An HTTP proxy in front of a querier that counts the requests it forwards, so tests
/// can assert how many requests reached the querier, and keeps each one's path and
/// headers.
pub struct CountingProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests forwarded so far.
    pub count: Arc<std::sync::atomic::AtomicUsize>,
    /// Path (and query string) and headers of every request forwarded.
    pub seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    _stop: oneshot::Sender<()>,
}

impl CountingProxy {
    /// Requests forwarded so far.
    pub fn requests(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Starts a counting proxy to `target` (`http://host:port`).
pub async fn counting_proxy(target: &str) -> CountingProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = oneshot::channel::<()>();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (target, count2, seen2) = (target.to_owned(), count.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut rx => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (client, target, count) = (client.clone(), target.clone(), count2.clone());
            let seen = seen2.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (client, target, count) = (client.clone(), target.clone(), count.clone());
                let seen = seen.clone();
                async move {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (mut parts, body) = req.into_parts();
                    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    seen.lock()
                        .expect("lock")
                        .push((pq.to_owned(), parts.headers.clone()));
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let pq = parts
                        .uri
                        .path_and_query()
                        .map_or("/".to_owned(), |p| p.to_string());
                    parts.uri = format!("{target}{pq}").parse().expect("proxied uri");
                    parts.headers.remove("host");
                    let resp = client
                        .request(Request::from_parts(parts, Full::new(body)))
                        .await
                        .expect("querier answers the proxy");
                    let (parts, body) = resp.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(Response::from_parts(parts, Full::new(body)))
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    CountingProxy {
        url: format!("http://{addr}"),
        count,
        seen,
        _stop: tx,
    }
}

/// Starts a real `redis-server` on `port` (a free one when `None`) and waits until it
/// answers `PING`.
pub fn start_redis(port: Option<u16>) -> (Supervised, u16) {
    require_binary("redis-server", "redis-server");
    let port = port.unwrap_or_else(free_port);
    let proc = spawn_redis("redis", port, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if redis_ping(port) {
            return (proc, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on port {port} did not start:\n{}", proc.log());
}

/// Starts `redis-server` on `port` without persistence, in its own scratch directory
/// (removed when it stops), with `extra` arguments.
fn spawn_redis(name: &str, port: u16, extra: &[&str]) -> Supervised {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("redis dir");
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--dir".to_owned());
    args.push(dir.display().to_string());
    Supervised::start("redis-server", &args, &dir.join("redis.log"), Some(&dir))
}

/// Whether a Redis on 127.0.0.1:port answers PING.
pub fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A frontend config using the Redis on `port` as its cache.
pub fn redis_config(downstream_url: &str, port: u16) -> Config {
    let mut c = test_config(downstream_url);
    c.cache.backend = promql_frontend::config::CacheBackendKind::Redis;
    c.cache.redis.url = format!("redis://127.0.0.1:{port}/0");
    c.cache.redis.reconnect_backoff = Duration::from_millis(200);
    // The tests assert what the cache reuses; on a loaded 2-core CI machine a Redis
    // round trip can exceed the 100 ms default and turn a hit into a (correct) miss.
    c.cache.op_timeout = Duration::from_secs(2);
    c.validate().expect("redis config is valid");
    c
}

/// How many times Redis on `port` ran `command` (from `INFO commandstats`).
pub fn redis_command_calls(port: u16, command: &str) -> u64 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(b"INFO commandstats\r\n");
    // The answer is a bulk string: `$<length>\r\n<text>\r\n`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let header_end = raw.windows(2).position(|w| w == b"\r\n");
        let expected = header_end.and_then(|h| {
            std::str::from_utf8(&raw[1..h])
                .ok()?
                .parse::<usize>()
                .ok()
                .map(|len| h + 2 + len)
        });
        if expected.is_some_and(|len| raw.len() >= len) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A loopback port `p` such that both `p` and `p + 10000` (Redis Cluster's bus port)
/// are free.
fn free_cluster_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base =
        u64::from(std::process::id()) * 7919 + chrono::Utc::now().timestamp_subsec_nanos() as u64;
    for _ in 0..500 {
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = 20_000 + ((base + k * 104_729) % 25_000) as u16;
        if StdListener::bind(("127.0.0.1", p)).is_ok()
            && StdListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair for a redis cluster node");
}

/// Starts a three-node Redis Cluster (no replicas) and waits until it serves.
pub fn start_redis_cluster() -> (Vec<Supervised>, Vec<u16>) {
    require_binary("redis-server", "redis-server");
    require_binary("redis-cli", "redis-tools");
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let port = free_cluster_port();
        let cluster_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ];
        nodes.push(spawn_redis("redis-cluster", port, &cluster_args));
        ports.push(port);
    }
    for &p in &ports {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !redis_ping(p) {
            assert!(Instant::now() < deadline, "cluster node {p} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for p in &ports {
        create.arg(format!("127.0.0.1:{p}"));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = ports.iter().all(|p| {
            Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                .unwrap_or(false)
        });
        if ok {
            return (nodes, ports);
        }
        assert!(
            Instant::now() < deadline,
            "redis cluster never reached cluster_state:ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
