//! End-to-end tests against a real Prometheus loaded with generated multi-day data.
//! One binary, so the test bed is built once per run (see `support`).

mod cache;
mod compare;
mod compat;
mod compat_http;
mod deploy;
mod errors;
mod ha;
mod hostile;
mod live_edge;
mod lower_step;
mod metadata_cache;
mod monitoring;
mod passthrough;
mod planning;
mod promtool;
mod query_range;
mod redis_cache;
mod resilience;
mod retries;
mod server;
mod split_equivalence;
mod status_page;
mod support;
mod telemetry;
mod tls;
mod trace_context;
mod web_clients;
mod web_config;
