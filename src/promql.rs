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

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{self, AtModifier, Expr, Offset};

use crate::model::RangeQuery;

/// The analysis the validate layer attached to `query`, if that layer ran. It travels in
/// the query's extensions, so the model needs no knowledge of PromQL.
pub fn analysis_of(query: &RangeQuery) -> Option<&Arc<Analysis>> {
    query.extensions.get::<Arc<Analysis>>()
}

/// Attaches `analysis` to `query` for the layers below (replacing an earlier one).
pub fn attach(query: &mut RangeQuery, analysis: Arc<Analysis>) {
    query.extensions.insert(analysis);
}

/// Replaces `@ start()` / `@ end()` in `query` with its absolute start and end (and
/// attaches the new text's analysis), so that a sub-range of it (a piece, a run, a part)
/// still names the times the client meant. A no-op when there are none, or when the
/// expression cannot be printed back exactly (layers then leave such a query whole).
pub fn pin_start_end(query: &mut RangeQuery) {
    if let Some(text) =
        analysis_of(query).and_then(|a| a.rewrite_at_start_end(query.start_ms, query.end_ms))
    {
        attach(query, Arc::new(Analysis::of(&text)));
        query.query = text;
    }
}

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
    /// The text was not analysed because of a limit of the parser, not a syntax error:
    /// too deeply nested, or the parser failed internally. The querier may well accept
    /// it, so a failure to ask the querier must not be reported as a bad query.
    pub beyond_parser: bool,
    /// How far before an evaluation time the expression reads samples, ms: the longest
    /// chain of subquery ranges plus a range selector's range (or the 5m lookback of an
    /// instant selector). `None` when it reads no series (`time()`, `vector(1)`). Each
    /// separately fetched sub-range of a query reads this much again.
    pub lookback_ms: Option<i64>,
}

/// The lookback of an instant selector when the query sets none (Prometheus'
/// `--query.lookback-delta` default).
pub const DEFAULT_LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most nesting the frontend parses (brackets plus operators; see [`nesting_bound`]).
/// `promql-parser` and everything that walks its trees (printing, comparing, dropping)
/// recurse once per level, a few KiB of stack each in a debug build: nested calls of
/// subqueries overflowed a 2 MiB stack at about 550 levels, which aborts the process.
/// 256 fits every shape tried in 1 MiB (a unit test checks), and the binary's workers
/// have 8 MiB. Deeper expressions (rare outside attacks) are forwarded whole to the
/// querier: unsplit and uncached, the querier's answer stands.
pub const MAX_NESTING: usize = 256;

impl Analysis {
    /// Parses `query`.
    pub fn of(query: &str) -> Analysis {
        let (parsed, beyond_parser) = if nesting_bound(query) > MAX_NESTING {
            let msg = format!(
                "the expression nests deeper than the frontend analyses ({MAX_NESTING} levels)"
            );
            (Err(msg), true)
        } else {
            match parse(query) {
                Parsed::Expr(e) => (Ok(e), false),
                Parsed::SyntaxError(msg) => (Err(msg), false),
                Parsed::ParserFailed(msg) => (Err(msg), true),
            }
        };
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
        let lookback_ms = parsed.as_ref().ok().and_then(lookback_of);
        Analysis {
            parsed,
            uses_start_end,
            has_pre_epoch_at,
            has_negative_offset,
            latest_at_ms,
            normalised,
            beyond_parser,
            lookback_ms,
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

/// A bound of the depth of the tree `text` parses to: the deepest bracket nesting plus
/// the number of operator characters and operator keywords, outside string literals
/// (the tree is at most about twice as deep: `(x)[1m:]` is a subquery of a paren).
/// Cheap and conservative: `a-b` counts one level, so does `-`.
///
/// It must never undercount what the parser will nest, or a crafted query reaches the
/// parser's recursion and overflows the stack. So it skips string literals exactly as
/// the lexer reads them, and when it is unsure it counts: in a `#` comment (to the end
/// of the line, as the lexer reads it) a quote starts no string but brackets and
/// operators still count; a backtick string ends at the first backtick even where the
/// lexer would take `\`` as an escape.
pub fn nesting_bound(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
    let mut in_comment = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => in_comment = true,
            b'\r' | b'\n' => in_comment = false,
            q @ (b'"' | b'\'' | b'`') if !in_comment => {
                // Skip the string literal (backslash escapes in the quoted forms).
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' && q != b'`' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'=' | b'!' | b'<' | b'>' => operators += 1,
            b if b.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    max_depth + operators
}

/// What [`parse`] made of a text.
enum Parsed {
    Expr(Expr),
    SyntaxError(String),
    /// The parser panicked.
    ParserFailed(String),
}

thread_local! {
    /// Set while this thread runs the parser or its printer, whose panics are caught.
    static IN_PARSER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (parser or printer code) and turns a panic into `None`. `promql-parser`
/// panics on some inputs (a duration of `1e30` or `Inf` seconds goes to
/// `Duration::from_secs_f64`; found by the promql fuzz target).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    IN_PARSER.with(|flag| flag.set(true));
    // The closures only read their input: nothing is left half-changed by a panic.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_PARSER.with(|flag| flag.set(false));
    result.ok()
}

/// Whether the current thread is inside `guarded` parser code: a panic hook uses it to
/// log such a (caught) panic as one line instead of a crash report.
pub fn panicking_in_parser() -> bool {
    IN_PARSER.with(|flag| flag.get())
}

/// Parses `text`; a panic inside the parser is reported as such, not as bad syntax.
fn parse(text: &str) -> Parsed {
    match guarded(|| parser::parse(text)) {
        Some(Ok(e)) => Parsed::Expr(e),
        Some(Err(msg)) => Parsed::SyntaxError(msg),
        None => Parsed::ParserFailed(
            "the PromQL parser failed on this expression (a duration out of range?)".into(),
        ),
    }
}

/// `expr` printed as PromQL, if the text parses back to the same expression. The printer
/// cannot write everything it parses (an `@` before 1970 comes out as `@ 0.000`, a
/// 1.5 ms range as `1ms`); such an expression has no normal form, so it never shares a
/// cache key with another.
fn print_exactly(expr: &Expr) -> Option<String> {
    let text = guarded(|| expr.to_string())?;
    match parse(&text) {
        Parsed::Expr(again) if again == *expr => Some(text),
        _ => None,
    }
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

/// See [`Analysis::lookback_ms`].
fn lookback_of(expr: &Expr) -> Option<i64> {
    let ms = |d: &Duration| d.as_millis().min(i64::MAX as u128) as i64;
    match expr {
        Expr::Aggregate(a) => {
            let param = a.param.as_deref().and_then(lookback_of);
            lookback_of(&a.expr).max(param)
        }
        Expr::Unary(u) => lookback_of(&u.expr),
        Expr::Binary(b) => lookback_of(&b.lhs).max(lookback_of(&b.rhs)),
        Expr::Paren(p) => lookback_of(&p.expr),
        Expr::Subquery(s) => lookback_of(&s.expr).map(|l| l.saturating_add(ms(&s.range))),
        Expr::VectorSelector(_) => Some(DEFAULT_LOOKBACK_MS),
        Expr::MatrixSelector(m) => Some(ms(&m.range)),
        Expr::Call(c) => c.args.args.iter().filter_map(|a| lookback_of(a)).max(),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => None,
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
    fn lookback_is_the_longest_read_before_an_evaluation_time() {
        let cases = [
            ("time()", None),
            ("vector(1) + 2", None),
            ("up", Some(DEFAULT_LOOKBACK_MS)),
            ("rate(x[1d])", Some(86_400_000)),
            ("rate(x[5m]) / on() group_left rate(y[1h])", Some(3_600_000)),
            ("max_over_time(rate(x[5m])[1h:1m])", Some(3_900_000)),
            ("topk(scalar(z), rate(x[2m]))", Some(DEFAULT_LOOKBACK_MS)),
            ("sum_over_time(up[10m:] offset 1d)", Some(900_000)),
        ];
        for (text, want) in cases {
            assert_eq!(Analysis::of(text).lookback_ms, want, "{text}");
        }
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
            assert!(a.beyond_parser, "{q}: a parser failure, not bad syntax");
            assert_eq!(a.normalised, None, "{q}");
            assert_eq!(a.rewrite_at_start_end(0, 1000), None, "{q}");
        }
    }

    /// Half of a tokio worker's default stack (2 MiB; the binary gives its workers
    /// more, see `main.rs`): the deep-expression test passes with room to spare.
    const STACK: usize = 1 << 20;

    /// Runs `f` on a thread with [`STACK`] bytes of stack.
    fn on_worker_sized_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow or panic");
    }

    #[test]
    fn deep_expressions_are_analysed_up_to_the_limit_on_a_worker_stack() {
        on_worker_sized_stack(|| {
            // Just under the limit: parsed, printed, compared, rewritten and dropped
            // without exhausting the stack (a debug build has the largest frames).
            let n = MAX_NESTING - 1;
            let wrap = |open: &str, inner: &str, close: &str, times: usize| {
                format!("{}{inner}{}", open.repeat(times), close.repeat(times))
            };
            // Deep trees per bracket: each level a call of a subquery of a paren.
            let mut subqueries = "up @ start()".to_owned();
            for _ in 0..n / 2 {
                subqueries = format!("max_over_time(({subqueries})[1m:])");
            }
            let shapes = [
                wrap("(", "up @ start()", ")", n),
                wrap("topk(1, ", "up", ")", n),
                wrap("label_replace(", "up", r#", "a", "$1", "b", "(.*)")"#, n),
                wrap("(up + on(job) group_left() ", "up", ")", n / 2),
                format!("up{}", " + up".repeat(n)),
                // `-` before a number folds into the literal; before a selector it nests.
                format!("{}up", "-".repeat(n)),
                wrap("abs(", "up", ")", n),
                wrap("sum by (job) (", "up", ")", n - 1),
                wrap("max_over_time(", "rate(up[5m])", "[10m:1m])", n - 2),
                subqueries,
            ];
            for q in &shapes {
                assert!(nesting_bound(q) <= MAX_NESTING, "{q:.40}");
                let a = Analysis::of(q);
                assert!(a.parse_error().is_none(), "{q:.40}: {:?}", a.parse_error());
                assert!(a.normalised.is_some(), "{q:.40}");
                let _ = a.rewrite_at_start_end(0, 1000);
            }
            // Beyond it: not parsed at all, marked as a parser limit.
            for q in [
                format!("{}up{}", "(".repeat(100_000), ")".repeat(100_000)),
                format!("up{}", " + up".repeat(100_000)),
                format!("{}1", "-".repeat(100_000)),
            ] {
                let a = Analysis::of(&q);
                assert!(a.beyond_parser, "{q:.40}");
                assert!(a.parse_error().is_some_and(|m| m.contains("nests deeper")));
            }
        });
    }

    #[test]
    fn nesting_bound_is_not_fooled_by_a_quote_in_a_comment() {
        // The lexer ignores `# "` to the end of the line: the brackets after it are
        // real, and must count (found by review: a 10 MiB body nested 5 million deep
        // would otherwise reach the parser and overflow the stack).
        let deep = format!("# \"\n{}up{}", "(".repeat(5000), ")".repeat(5000));
        assert!(nesting_bound(&deep) >= 5000);
        let a = Analysis::of(&deep);
        assert!(a.beyond_parser, "not parsed");
        assert!(a.parse_error().is_some_and(|m| m.contains("nests deeper")));
        // In a comment brackets still count (an over-count is safe); a new line ends it.
        assert_eq!(nesting_bound("up # ((\n"), 2);
        // (`{` and `=` count one each; the string's brackets none.)
        assert_eq!(nesting_bound("up # '\n{a=\"((\"}"), 2);
        // A `#` inside a string starts no comment.
        assert_eq!(nesting_bound(r##"up{a="#"} + (x)"##), 3);
    }

    #[test]
    fn nesting_bound_skips_string_literals() {
        assert_eq!(nesting_bound(r#"up{job="((((+-*/"}"#), 2);
        assert_eq!(nesting_bound(r#"up{job='it\'s ((('}"#), 2);
        assert_eq!(nesting_bound("sum(rate(x[5m])) and on() vector(1)"), 3 + 1);
        assert_eq!(nesting_bound("`(((`"), 0);
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
        // A 1.5 ms range prints as `1ms`: without this rule it shared `rate(x[1ms])`'s key.
        assert_eq!(Analysis::of("rate(x[0.0015])").normalised, None);
        assert!(Analysis::of("rate(x[0.001])").normalised.is_some());
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
