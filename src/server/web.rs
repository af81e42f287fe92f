//! The web config file in force, and its reloading.
//!
//! The file is loaded at start; a file that does not load stops the start with the
//! field named. Then, once a second, a background task reads the file and the
//! certificate files it names and compares a hash of their bytes with the last one
//! seen; on a change the whole set is loaded again and, when it is good, put in force
//! for the next connections and requests. A change that does not load is logged once
//! (and counted), and the last good configuration stays in force. Reading a few small
//! files a second costs nothing next to serving requests, and comparing contents rather
//! than modification times also catches a file replaced within the same second.
//!
//! Whether the port speaks TLS is fixed at start, as in Prometheus: a change that turns
//! TLS on or off is refused (and logged) until a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ServerConfig;

use super::tls::{TlsSetupError, server_config};
use crate::config::web::{PemSource, WebConfig, WebConfigError};
use crate::metrics::Metrics;

/// How often the files are compared with the configuration in force.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a web config could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum WebLoadError {
    /// The file itself is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] WebConfigError),
    /// A TLS setting cannot work (an unreadable certificate, a key that does not fit).
    #[error("web config file {path}: {source}")]
    Tls {
        /// The web config file.
        path: PathBuf,
        /// The field and what is wrong.
        #[source]
        source: TlsSetupError,
    },
    /// The file turns TLS on or off, which needs a restart.
    #[error(
        "web config file {path}: field tls_server_config: turning TLS on or off needs a restart"
    )]
    TlsToggled {
        /// The web config file.
        path: PathBuf,
    },
}

/// One loaded web configuration.
#[derive(Debug)]
pub struct Loaded {
    /// The settings.
    pub config: WebConfig,
    /// The TLS configuration, when the port speaks TLS.
    pub tls: Option<Arc<ServerConfig>>,
}

impl Loaded {
    /// Loads `path` and the files it names.
    pub fn load(path: &Path) -> Result<Loaded, WebLoadError> {
        let config = WebConfig::load(path)?;
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(server_config(t, config.http2).map_err(
                |source| WebLoadError::Tls {
                    path: path.to_owned(),
                    source,
                },
            )?)),
            None => None,
        };
        Ok(Loaded { config, tls })
    }
}

/// The web configuration in force, reloaded on change.
pub struct WebState {
    path: PathBuf,
    current: RwLock<Arc<Loaded>>,
    /// Hash of the files the last load attempt (good or not) saw.
    seen: Mutex<u64>,
    metrics: Arc<Metrics>,
}

impl WebState {
    /// Loads the file at start.
    pub fn start(path: &Path, metrics: Arc<Metrics>) -> Result<WebState, WebLoadError> {
        let seen = fingerprint(path);
        let loaded = Loaded::load(path)?;
        metrics.security().web_config_loaded(true, false);
        Ok(WebState {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            seen: Mutex::new(seen),
            metrics,
        })
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the port speaks TLS (fixed at start).
    pub fn tls(&self) -> bool {
        self.current().tls.is_some()
    }

    /// Reloads when the files changed since the last attempt (blocking file I/O).
    pub fn check(&self) {
        let now = fingerprint(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return;
            }
            *seen = now;
        }
        let result = Loaded::load(&self.path).and_then(|loaded| {
            if loaded.tls.is_some() != self.tls() {
                return Err(WebLoadError::TlsToggled {
                    path: self.path.clone(),
                });
            }
            Ok(loaded)
        });
        match result {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                self.metrics.security().web_config_loaded(true, true);
                tracing::info!(path = %self.path.display(), "web config reloaded");
            }
            Err(e) => {
                self.metrics.security().web_config_loaded(false, true);
                tracing::warn!(error = %e, "web config change not applied; the last good one stays in force");
            }
        }
    }

    /// Checks for changes every [`RELOAD_CHECK_INTERVAL`] until the task is aborted.
    pub fn spawn_reloader(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let this = self.clone();
                if tokio::task::spawn_blocking(move || this.check())
                    .await
                    .is_err()
                {
                    tracing::warn!("web config check failed");
                }
            }
        })
    }
}

/// A hash of the file's bytes and of the bytes of every file it names (an unreadable
/// file contributes its error, so its return is a change too).
fn fingerprint(path: &Path) -> u64 {
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let mut add = |file: &Path| match std::fs::read(file) {
        Ok(bytes) => {
            hash.update(file.as_os_str().as_encoded_bytes());
            hash.update(&(bytes.len() as u64).to_le_bytes());
            hash.update(&bytes);
        }
        Err(e) => hash.update(format!("{}: {e}", file.display()).as_bytes()),
    };
    add(path);
    if let Ok(config) = WebConfig::load(path)
        && let Some(t) = &config.tls
    {
        for source in [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            if let PemSource::File(file) = source {
                add(file);
            }
        }
    }
    hash.digest()
}
