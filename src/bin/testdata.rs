//! `promql-frontend-testdata`: writes the test-bed data set as OpenMetrics text and,
//! with `--tsdb DIR`, backfills it into a Prometheus TSDB directory with promtool.
//! Used by the demo and the benchmark scripts; the tests call the library directly.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use promql_frontend::testdata::{Spec, backfill, write_openmetrics};

/// Generate multi-day Prometheus test data.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Days of data, ending now.
    #[arg(long, default_value_t = 3.0)]
    days: f64,
    /// Scrape interval in seconds.
    #[arg(long, default_value_t = 60)]
    interval: i64,
    /// Number of scraped instances (about 55 series each).
    #[arg(long, default_value_t = 8)]
    instances: usize,
    /// Where to write the OpenMetrics text.
    #[arg(long)]
    out: PathBuf,
    /// Backfill into this TSDB directory with promtool after writing.
    #[arg(long)]
    tsdb: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut spec = Spec::days_ending_at(args.days, now_ms, args.interval);
    spec.instances = args.instances;
    let written = match File::create(&args.out).and_then(|f| {
        let mut w = BufWriter::new(f);
        let n = write_openmetrics(&spec, &mut w)?;
        std::io::Write::flush(&mut w)?;
        Ok(n)
    }) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("writing {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "wrote {} series, {} samples to {}",
        written.series,
        written.samples,
        args.out.display()
    );
    if let Some(dir) = args.tsdb {
        let hours = (args.days * 24.0).ceil() as i64 + 2;
        if let Err(e) = backfill(&args.out, &dir, hours) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        eprintln!("backfilled into {}", dir.display());
    }
    ExitCode::SUCCESS
}
