//! The only importer of `promql-parser`: parsing and what the frontend learns from it.
//!
//! A query that `promql-parser` cannot parse is not rejected here: the parser lags
//! behind Prometheus (experimental syntax such as duration arithmetic), so such queries
//! are forwarded whole and the querier, which is the authority on its own language,
//! answers them. Only when the querier cannot be asked does the frontend answer 400
//! itself with the parser's message (see `layers::validate`).
//!
//! `@ start()` and `@ end()` refer to the range query's own start and end, so a piece of
//! a split query must not see them: [`Analysis::rewrite_at_start_end`] replaces them with
//! the original absolute times and prints the expression back.

use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{self, AtModifier, Expr, Offset};

/// What the frontend knows about one PromQL expression.
#[derive(Debug)]
pub struct Analysis {
    /// The parsed expression, or the parser's message when it failed.
    pub parsed: Result<Expr, String>,
    /// The expression uses `@ start()` or `@ end()` somewhere.
    pub uses_start_end: bool,
    /// The expression has an `@` before 1970 (the printer cannot write those back).
    pub has_pre_epoch_at: bool,
    /// The expression has a negative `offset` somewhere (it reads data after the
    /// evaluation time, which may still change).
    pub has_negative_offset: bool,
    /// The latest absolute `@` time in the expression, Unix ms.
    pub latest_at_ms: Option<i64>,
    /// The expression printed back in canonical form (same AST, normalised spelling):
    /// the cache key uses it, so `rate(x[300s])` and `rate(x[5m])` share entries. `None`
    /// when the printed text would not parse back to the same expression.
    pub normalised: Option<String>,
}

impl Analysis {
    /// Parses `query`.
    pub fn of(query: &str) -> Analysis {
        let parsed = parse(query);
        let mut uses_start_end = false;
        let mut has_pre_epoch_at = false;
        let mut has_negative_offset = false;
        let mut latest_at_ms: Option<i64> = None;
        if let Ok(expr) = &parsed {
            visit_modifiers(expr, &mut |at, offset| {
                match at {
                    Some(AtModifier::Start | AtModifier::End) => uses_start_end = true,
                    Some(AtModifier::At(t)) => {
                        has_pre_epoch_at |= *t < UNIX_EPOCH;
                        let ms = t
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
                            .unwrap_or(0);
                        latest_at_ms = Some(latest_at_ms.map_or(ms, |l| l.max(ms)));
                    }
                    None => {}
                }
                if let Some(Offset::Neg(d)) = offset {
                    has_negative_offset |= !d.is_zero();
                }
            });
        }
        let normalised = parsed.as_ref().ok().and_then(print_exactly);
        Analysis {
            parsed,
            uses_start_end,
            has_pre_epoch_at,
            has_negative_offset,
            latest_at_ms,
            normalised,
        }
    }

    /// The parser's message if the query did not parse.
    pub fn parse_error(&self) -> Option<&str> {
        self.parsed.as_ref().err().map(String::as_str)
    }

    /// The expression with `@ start()` / `@ end()` replaced by `@ <start>` / `@ <end>`,
    /// printed as PromQL. `None` when there is nothing to rewrite or it cannot be written
    /// exactly (unparsed query, times before 1970, text that would not parse back to the
    /// rewritten expression).
    pub fn rewrite_at_start_end(&self, start_ms: i64, end_ms: i64) -> Option<String> {
        let expr = self.parsed.as_ref().ok()?;
        if !self.uses_start_end || self.has_pre_epoch_at || start_ms < 0 || end_ms < 0 {
            return None;
        }
        let at = |ms: i64| AtModifier::At(UNIX_EPOCH + Duration::from_millis(ms as u64));
        let (start, end) = (at(start_ms), at(end_ms));
        let mut expr = expr.clone();
        visit_at_mut(&mut expr, &mut |m| match m {
            AtModifier::Start => *m = start.clone(),
            AtModifier::End => *m = end.clone(),
            AtModifier::At(_) => {}
        });
        print_exactly(&expr)
    }
}

/// Parses `text`; a panic inside the parser is a parse failure. `promql-parser` panics
/// on some inputs (a duration of `1e30` or `Inf` seconds goes to
/// `Duration::from_secs_f64`; found by the promql fuzz target); such a query is then
/// treated like any other the parser cannot read: forwarded whole to the querier.
fn parse(text: &str) -> Result<Expr, String> {
    std::panic::catch_unwind(|| parser::parse(text)).unwrap_or_else(|_| {
        Err("the PromQL parser failed on this expression (a duration out of range?)".into())
    })
}

/// `expr` printed as PromQL, if the text parses back to the same expression. The printer
/// cannot write everything it parses (an `@` before 1970 comes out as `@ 0.000`); such
/// an expression has no normal form, so it never shares a cache key with another.
fn print_exactly(expr: &Expr) -> Option<String> {
    // Printing only reads `expr`: nothing is left half-changed if it panics.
    let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expr.to_string())).ok()?;
    let again = parse(&text).ok()?;
    // Debug text as the fallback: NaN literals are unequal to themselves.
    (again == *expr || format!("{again:?}") == format!("{expr:?}")).then_some(text)
}

/// Calls `f` with the `@` and `offset` modifiers of every selector and subquery in
/// `expr`, including inside aggregation parameters.
fn visit_modifiers(expr: &Expr, f: &mut impl FnMut(Option<&AtModifier>, Option<&Offset>)) {
    match expr {
        Expr::Aggregate(a) => {
            visit_modifiers(&a.expr, f);
            if let Some(p) = &a.param {
                visit_modifiers(p, f);
            }
        }
        Expr::Unary(u) => visit_modifiers(&u.expr, f),
        Expr::Binary(b) => {
            visit_modifiers(&b.lhs, f);
            visit_modifiers(&b.rhs, f);
        }
        Expr::Paren(p) => visit_modifiers(&p.expr, f),
        Expr::Subquery(s) => {
            f(s.at.as_ref(), s.offset.as_ref());
            visit_modifiers(&s.expr, f);
        }
        Expr::VectorSelector(v) => f(v.at.as_ref(), v.offset.as_ref()),
        Expr::MatrixSelector(m) => f(m.vs.at.as_ref(), m.vs.offset.as_ref()),
        Expr::Call(c) => c.args.args.iter().for_each(|a| visit_modifiers(a, f)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Calls `f` on every `@` modifier in `expr`, with mutable access.
fn visit_at_mut(expr: &mut Expr, f: &mut impl FnMut(&mut AtModifier)) {
    match expr {
        Expr::Aggregate(a) => {
            visit_at_mut(&mut a.expr, f);
            if let Some(p) = &mut a.param {
                visit_at_mut(p, f);
            }
        }
        Expr::Unary(u) => visit_at_mut(&mut u.expr, f),
        Expr::Binary(b) => {
            visit_at_mut(&mut b.lhs, f);
            visit_at_mut(&mut b.rhs, f);
        }
        Expr::Paren(p) => visit_at_mut(&mut p.expr, f),
        Expr::Subquery(s) => {
            if let Some(at) = &mut s.at {
                f(at);
            }
            visit_at_mut(&mut s.expr, f);
        }
        Expr::VectorSelector(v) => {
            if let Some(at) = &mut v.at {
                f(at);
            }
        }
        Expr::MatrixSelector(m) => {
            if let Some(at) = &mut m.vs.at {
                f(at);
            }
        }
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| visit_at_mut(a, f)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
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
        for bad in ["", "sum(", "rate(x[5m]", "foo{", "1 +"] {
            assert!(
                Analysis::of(bad).parse_error().is_some(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn finds_start_end_everywhere() {
        for q in [
            "up @ start()",
            "rate(x[5m] @ end())",
            "max_over_time(rate(x[1m])[10m:1m] @ start())",
            "topk(scalar(count(up @ end())), up)",
            "sum(up) / on() group_left count(up @ start())",
            "-(up @ end())",
            "label_replace(up @ start(), \"a\", \"$1\", \"job\", \"(.*)\")",
        ] {
            assert!(Analysis::of(q).uses_start_end, "{q}");
        }
        for q in [
            "up",
            "up @ 1700000000",
            "rate(x[5m] offset 1h)",
            "x[10m:1m]",
        ] {
            assert!(!Analysis::of(q).uses_start_end, "{q}");
        }
        assert!(Analysis::of("up @ -10").has_pre_epoch_at);
    }

    #[test]
    fn finds_offsets_and_latest_at() {
        for (q, negative) in [
            ("up offset -5m", true),
            ("rate(x[5m] offset -1h)", true),
            ("max_over_time(x[10m:1m] offset -1m)", true),
            ("topk(scalar(count(up offset -1m)), up)", true),
            ("up offset 5m", false),
            ("up", false),
        ] {
            assert_eq!(Analysis::of(q).has_negative_offset, negative, "{q}");
        }
        let a = Analysis::of("up @ 1700000000 + rate(x[5m] @ 1700000100.5)");
        assert_eq!(a.latest_at_ms, Some(1_700_000_100_500));
        assert_eq!(Analysis::of("up").latest_at_ms, None);
        assert_eq!(
            Analysis::of("rate(x[300s])").normalised.as_deref(),
            Analysis::of("rate( x [5m] )").normalised.as_deref()
        );
    }

    #[test]
    fn parser_panics_are_parse_errors() {
        // Each of these makes promql-parser 0.11 panic (a float duration beyond
        // `Duration`); found by the promql fuzz target.
        for q in [
            "up offset 1e30",
            "rate(x[1e300])",
            "up offset Inf",
            "max_over_time(x[5m:1e30])",
        ] {
            let a = Analysis::of(q);
            assert!(a.parse_error().is_some(), "{q} is reported unparsed");
            assert_eq!(a.normalised, None, "{q}");
            assert_eq!(a.rewrite_at_start_end(0, 1000), None, "{q}");
        }
    }

    #[test]
    fn only_expressions_printed_exactly_have_a_normal_form() {
        // The printer writes an `@` before 1970 as `@ 0.000`: a normal form would make
        // `x @ -300` share cache entries with `x @ 0` (found by the promql fuzz target).
        assert_eq!(Analysis::of("x @ -5m").normalised, None);
        assert_eq!(Analysis::of("x @ -300").normalised, None);
        assert_eq!(
            Analysis::of("x @ 0").normalised.as_deref(),
            Some("x @ 0.000")
        );
        assert_eq!(Analysis::of("NaN").normalised.as_deref(), Some("NaN"));
    }

    #[test]
    fn rewrite_replaces_start_end_and_reparses_to_the_same_ast() {
        let (start, end) = (1_700_000_000_300, 1_700_086_400_000);
        let cases = [
            ("up @ start()", "up @ 1700000000.300"),
            ("rate(x[5m] @ end())", "rate(x[5m] @ 1700086400.000)"),
            (
                "topk(scalar(count(up @ end())), up @ start())",
                "topk(scalar(count(up @ 1700086400.000)), up @ 1700000000.300)",
            ),
            (
                "max_over_time(rate(x[1m])[10m:1m] @ start() offset -5m)",
                "max_over_time(rate(x[1m])[10m:1m] @ 1700000000.300 offset -5m)",
            ),
        ];
        for (q, want_with) in cases {
            let rewritten = Analysis::of(q)
                .rewrite_at_start_end(start, end)
                .unwrap_or_else(|| panic!("{q} rewrites"));
            // The rewritten text parses to the same AST as the hand-written absolute form.
            let got = parser::parse(&rewritten).expect("rewritten query parses");
            let want = parser::parse(want_with).expect("expected form parses");
            assert_eq!(got, want, "{q} -> {rewritten}");
            // And printing is stable: print -> parse -> print gives the same text.
            assert_eq!(got.to_string(), rewritten);
        }
        assert!(
            Analysis::of("up")
                .rewrite_at_start_end(start, end)
                .is_none()
        );
        assert!(
            Analysis::of("up @ start()")
                .rewrite_at_start_end(-1, end)
                .is_none()
        );
        assert!(
            Analysis::of("sum(")
                .rewrite_at_start_end(start, end)
                .is_none()
        );
    }
}
