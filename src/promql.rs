//! The only importer of `promql-parser`: parsing and what the frontend learns from it.
//!
//! A query that `promql-parser` cannot parse is not rejected here: the parser lags
//! behind Prometheus (experimental syntax such as duration arithmetic), so such queries
//! are forwarded whole and the querier, which is the authority on its own language,
//! answers them. Only when the querier cannot be asked does the frontend answer 400
//! itself with the parser's message (see `layers::validate`).

use promql_parser::parser::{self, Expr};

/// What the frontend knows about one PromQL expression.
#[derive(Debug)]
pub struct Analysis {
    /// The parsed expression, or the parser's message when it failed.
    pub parsed: Result<Expr, String>,
}

impl Analysis {
    /// Parses `query`.
    pub fn of(query: &str) -> Analysis {
        Analysis {
            parsed: parser::parse(query),
        }
    }

    /// The parser's message if the query did not parse.
    pub fn parse_error(&self) -> Option<&str> {
        self.parsed.as_ref().err().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_reports_invalid() {
        assert!(
            Analysis::of("sum by (job) (rate(http_requests_total[5m]))")
                .parse_error()
                .is_none()
        );
        assert!(Analysis::of("up @ start()").parse_error().is_none());
        for bad in ["", "sum(", "rate(x[5m]", "foo{", "1 +"] {
            assert!(
                Analysis::of(bad).parse_error().is_some(),
                "{bad:?} should not parse"
            );
        }
    }
}
