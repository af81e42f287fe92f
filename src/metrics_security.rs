//! Metrics of the listening side's security: refused credentials, failed TLS handshakes
//! and web config file reloads. Registered into the frontend's registry by
//! [`Metrics::new`](super::Metrics::new); labels come from small fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a request was refused with 401 (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, or not a `Basic` one.
    Missing,
    /// A `Basic` header that does not decode to `user:password`.
    Malformed,
    /// An unknown user or a wrong password (not told apart, as the client is not).
    WrongCredentials,
}

impl AuthFailure {
    fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::WrongCredentials => "wrong_credentials",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The security metrics of one frontend.
pub struct SecurityMetrics {
    auth_failures: Family<ReasonLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    last_reload_success: Gauge,
}

impl SecurityMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub(super) fn register(registry: &mut Registry) -> SecurityMetrics {
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused with 401 by basic auth, by reason (missing, malformed, wrong_credentials)",
            auth_failures.clone(),
        );
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS connections closed before a request, by reason (error: a refused or broken handshake, such as a plain-HTTP request or a missing client certificate; timeout)",
            handshake_failures.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "web_config_reloads",
            "Loads of a changed web config file or certificate, by result (success, failure: the last good one stays in force)",
            reloads.clone(),
        );
        let last_reload_ok = Gauge::default();
        registry.register(
            "web_config_last_reload_successful",
            "1 when the last load of the web config file succeeded (and without one), 0 while a broken change is ignored",
            last_reload_ok.clone(),
        );
        last_reload_ok.set(1);
        let last_reload_success = Gauge::default();
        registry.register(
            "web_config_last_reload_success_timestamp_seconds",
            "When the web config in force was loaded, Unix seconds (0 without a web config file)",
            last_reload_success.clone(),
        );
        // Every reason starts at 0, so a rate over it (and an alert) has a series
        // before the first failure.
        for why in [
            AuthFailure::Missing,
            AuthFailure::Malformed,
            AuthFailure::WrongCredentials,
        ] {
            drop(auth_failures.get_or_create(&ReasonLabels {
                reason: why.label(),
            }));
        }
        for reason in ["error", "timeout"] {
            drop(handshake_failures.get_or_create(&ReasonLabels { reason }));
        }
        SecurityMetrics {
            auth_failures,
            handshake_failures,
            reloads,
            last_reload_ok,
            last_reload_success,
        }
    }

    /// Counts a request refused with 401.
    pub fn auth_failure(&self, why: AuthFailure) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: why.label(),
            })
            .inc();
    }

    /// Counts a failed TLS handshake (`timed_out`: the client did not finish in time).
    pub fn handshake_failure(&self, timed_out: bool) {
        let reason = if timed_out { "timeout" } else { "error" };
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records a load of the web config: the first one at start, then every change.
    /// `counted` is false for the load at start, which is not a reload.
    pub fn web_config_loaded(&self, ok: bool, counted: bool) {
        if counted {
            let result = if ok { "success" } else { "failure" };
            self.reloads.get_or_create(&ResultLabels { result }).inc();
        }
        self.last_reload_ok.set(i64::from(ok));
        if ok {
            self.last_reload_success.set(chrono::Utc::now().timestamp());
        }
    }
}
