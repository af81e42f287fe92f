//! The `promql-frontend` binary: flags, logging, signals. Everything else is the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use promql_frontend::Frontend;
use promql_frontend::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Stack of each tokio worker thread (tokio's default is 2 MiB).
const WORKER_STACK_BYTES: usize = 8 << 20;

/// A query frontend for Prometheus-compatible queriers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file (see config.example.toml). Without it, defaults apply.
    #[arg(long, env = "PROMQL_FRONTEND_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding server.listen.
    #[arg(long, env = "PROMQL_FRONTEND_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Querier base URL, overriding downstream.url and downstream.urls; several
    /// replicas as a comma-separated list.
    #[arg(long, env = "PROMQL_FRONTEND_DOWNSTREAM_URL")]
    downstream_url: Option<String>,
    /// Web configuration file (TLS, basic auth, response headers) in Prometheus'
    /// format, overriding server.web_config_file.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Validate the configuration, print it, and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("promql-frontend: {e}");
            return ExitCode::from(2);
        }
    };
    // Checked here too, so that a broken file stops the start (or fails the check)
    // with the field named, before anything else starts.
    if let Some(path) = &config.server.web_config_file
        && let Err(e) = promql_frontend::server::web::Loaded::load(path)
    {
        eprintln!("promql-frontend: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("config is valid: {config:#?}");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Room for the PromQL parser's recursion (see `promql::MAX_NESTING`); untouched
        // stack pages cost no memory.
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("promql-frontend: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("promql-frontend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> Result<Config, promql_frontend::config::ConfigError> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(path) = &args.web_config_file {
        config.server.web_config_file = Some(path.clone());
    }
    if let Some(list) = &args.downstream_url {
        let urls: Vec<String> = list
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if let Some(first) = urls.first() {
            config.downstream.url = first.clone();
        }
        config.downstream.urls = if urls.len() > 1 { urls } else { Vec::new() };
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Panics inside the PromQL parser are caught (the query is forwarded unanalysed); log
/// each as one warning in the configured format instead of a crash report on stderr.
/// Any other panic keeps the standard report.
fn install_panic_hook() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if promql_frontend::promql::panicking_in_parser() {
            tracing::warn!(panic = %info, "the PromQL parser failed on a query; forwarding it unanalysed");
        } else {
            standard(info);
        }
    }));
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let frontend = Frontend::new(&config)?;
    // Before anything slow, so an early logrotate SIGHUP does not end the process.
    reopen_slow_log_on_sighup(frontend.slow_log());
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.server.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        downstream = %config.downstream.endpoint_urls().join(","),
        "promql-frontend started"
    );
    frontend.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Reopens the slow-query log file on every SIGHUP (logrotate's `postrotate`).
fn reopen_slow_log_on_sighup(log: std::sync::Arc<promql_frontend::slowlog::SlowLog>) {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reopening the slow-query log");
                    log.reopen();
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP"),
    }
    #[cfg(not(unix))]
    drop(log);
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
