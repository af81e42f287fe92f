//! The `endpoint` label: which API endpoint a request addressed, from a fixed set.

use prometheus_client::encoding::EncodeLabelValue;

/// The API endpoint a request addressed, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Endpoint {
    query_range,
    query,
    series,
    labels,
    label_values,
    metadata,
    query_exemplars,
    status,
    format_query,
    parse_query,
    slow_queries,
    status_page,
    other_api,
    other,
    healthy,
    ready,
    metrics,
}

impl Endpoint {
    /// Classifies a request path.
    pub fn of(path: &str) -> Endpoint {
        match path {
            "/api/v1/query_range" => Endpoint::query_range,
            "/api/v1/query" => Endpoint::query,
            "/api/v1/series" => Endpoint::series,
            "/api/v1/labels" => Endpoint::labels,
            "/api/v1/metadata" => Endpoint::metadata,
            "/api/v1/query_exemplars" => Endpoint::query_exemplars,
            "/api/v1/format_query" => Endpoint::format_query,
            "/api/v1/parse_query" => Endpoint::parse_query,
            "/api/v1/slow_queries" => Endpoint::slow_queries,
            "/-/healthy" => Endpoint::healthy,
            "/-/ready" => Endpoint::ready,
            "/metrics" => Endpoint::metrics,
            "/" | "/-/status" => Endpoint::status_page,
            p if p.starts_with("/api/v1/label/") && p.ends_with("/values") => {
                Endpoint::label_values
            }
            p if p.starts_with("/api/v1/status/") => Endpoint::status,
            p if p.starts_with("/api/") => Endpoint::other_api,
            _ => Endpoint::other,
        }
    }
}

impl Endpoint {
    /// Whether requests to this endpoint read from the querier's API (and so belong in
    /// the slow-query log).
    pub fn is_query_api(self) -> bool {
        !matches!(
            self,
            Endpoint::slow_queries
                | Endpoint::status_page
                | Endpoint::other
                | Endpoint::healthy
                | Endpoint::ready
                | Endpoint::metrics
        )
    }
}
