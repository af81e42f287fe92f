//! `promql-frontend-testdata`: writes the test-bed data set as OpenMetrics text and,
//! with `--tsdb DIR`, backfills it into a Prometheus TSDB directory with promtool; with
//! `--serve ADDR`, serves the same series continued to the wall clock as a scrape target
//! (`GET /metrics`), so a Prometheus scraping it extends the backfilled history to now.
//! Used by the demo, the benchmarks and the live-edge tests.

use std::convert::Infallible;
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use promql_frontend::testdata::{Live, Spec, backfill, write_openmetrics};

/// Generate multi-day Prometheus test data.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Days of data, ending at `--end-ms`.
    #[arg(long, default_value_t = 3.0)]
    days: f64,
    /// Scrape interval in seconds.
    #[arg(long, default_value_t = 60)]
    interval: i64,
    /// Number of scraped instances (about 55 series each).
    #[arg(long, default_value_t = 8)]
    instances: usize,
    /// Time of the last sample, Unix milliseconds (aligned down to the interval);
    /// default: now. A server continuing data written earlier needs that data's end.
    #[arg(long)]
    end_ms: Option<i64>,
    /// Where to write the OpenMetrics text.
    #[arg(long, required_unless_present = "serve")]
    out: Option<PathBuf>,
    /// Backfill into this TSDB directory with promtool after writing.
    #[arg(long, requires = "out")]
    tsdb: Option<PathBuf>,
    /// After writing, serve the same series continued to the wall clock at
    /// `http://ADDR/metrics` (Prometheus text format; scrape with `honor_labels: true`
    /// so they keep their own `job` and `instance`). Runs until killed.
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let end_ms = args
        .end_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let mut spec = Spec::days_ending_at(args.days, end_ms, args.interval);
    spec.instances = args.instances;
    if let Some(out) = &args.out {
        if let Err(e) = write(&spec, out) {
            eprintln!("writing {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        if let Some(dir) = &args.tsdb {
            let hours = (args.days * 24.0).ceil() as i64 + 2;
            if let Err(e) = backfill(out, dir, hours) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            eprintln!("backfilled into {}", dir.display());
        }
    }
    if let Some(addr) = args.serve
        && let Err(e) = serve(&spec, addr)
    {
        eprintln!("serving on {addr}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Writes the OpenMetrics text of `spec` to `out`.
fn write(spec: &Spec, out: &Path) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(out)?);
    let written = write_openmetrics(spec, &mut w)?;
    std::io::Write::flush(&mut w)?;
    eprintln!(
        "wrote {} series, {} samples to {}",
        written.series,
        written.samples,
        out.display()
    );
    Ok(())
}

/// Serves `GET /metrics`: the series of `spec` at the wall clock, until killed.
fn serve(spec: &Spec, addr: SocketAddr) -> std::io::Result<()> {
    let mut live = Live::new(spec);
    // Stepping from the first sample to now takes a moment; do it before listening, so
    // a target that accepts connections answers scrapes at once.
    live.advance_to(chrono::Utc::now().timestamp_millis());
    let live = Arc::new(Mutex::new(live));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "serving the series continued to now at http://{}/metrics",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let live = live.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = answer(&live, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    eprintln!("connection: {e}");
                }
            });
        }
    })
}

/// The answer to one request: the exposition at `GET /metrics`, 405 for other methods
/// there, 404 elsewhere.
fn answer<B>(live: &Mutex<Live>, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let now = chrono::Utc::now().timestamp_millis();
            let text = live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .exposition(now);
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; the series are at /metrics\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
