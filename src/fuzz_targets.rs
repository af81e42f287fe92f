//! Fuzz targets: the frontend's parsers of external input, each with the properties it
//! must keep whatever the bytes are.
//!
//! The `fuzz/` crate (cargo-fuzz, libFuzzer) calls these functions; the unit tests at the
//! bottom run every input saved under `fuzz/regressions/<target>/` through them, so a
//! crash the fuzzer once found stays fixed in a plain `cargo test`. A target panics only
//! when a property is broken; any error the code under test returns is a valid outcome.
//! See RELIABILITY.md for how to run them and what they found.

use http::HeaderMap;

use crate::layers::cache::answer::StoredAnswer;
use crate::layers::cache::extents::{Segment, Span, partition, trim, well_formed};
use crate::layers::cache::value::{Entry, StoredExtent};
use crate::model::RangeQuery;
use crate::model::merge::merge;
use crate::model::query::{MAX_POINTS_PER_SERIES, form_pairs};
use crate::model::ranges::split_range;
use crate::model::response::{QueryResponse, Status};
use crate::promql::Analysis;

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/regressions/<name>/`.
pub const TARGETS: [&str; 5] = ["request", "promql", "response", "cache_value", "cache_read"];

/// Runs the target called `name` on `data`; `false` when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "request" => request(data),
        "promql" => promql(data),
        "response" => response(data),
        "cache_value" => cache_value(data),
        "cache_read" => cache_read(data),
        _ => return false,
    }
    true
}

/// Splits `data` at the first `sep` byte (the rest is empty when there is none).
fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Request decoding: `data` is `<content-type selector><uri query>\n<body>`.
///
/// Properties: a query that decodes is valid (`start <= end`, positive step, at most
/// 11,000 points); its form encoding decodes to the same query; its split pieces cover
/// every grid point exactly once, each inside one interval.
pub fn request(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 4 {
        0 => None,
        1 => Some("application/x-www-form-urlencoded"),
        2 => Some("application/x-www-form-urlencoded; charset=utf-8"),
        _ => Some("application/json"),
    };
    let (uri, body) = split_at_byte(rest, b'\n');
    let uri = String::from_utf8_lossy(uri);
    let pairs = form_pairs(Some(&uri), content_type, body);
    let Ok(q) = RangeQuery::from_form(pairs, HeaderMap::new()) else {
        return;
    };
    assert!(q.start_ms <= q.end_ms, "decoded end before start: {q:?}");
    assert!(q.step_ns > 0, "decoded a non-positive step: {q:?}");
    // Nanoseconds saturate at the largest duration, as Go's `time.Sub` does.
    let range_ns =
        ((i128::from(q.end_ms) - i128::from(q.start_ms)) * 1_000_000).min(i128::from(i64::MAX));
    let points = range_ns / i128::from(q.step_ns);
    // Prometheus checks the points of RFC 3339 times to the nanosecond, before it cuts
    // them to the millisecond; the cut can add up to 1 ms to the range.
    let slack = 1_000_000 / i128::from(q.step_ns) + 1;
    assert!(
        points <= i128::from(MAX_POINTS_PER_SERIES) + slack,
        "decoded {points} points: {q:?}"
    );

    let again = RangeQuery::from_form(
        form_pairs(
            None,
            Some("application/x-www-form-urlencoded"),
            q.to_form().as_bytes(),
        ),
        HeaderMap::new(),
    )
    .unwrap_or_else(|e| panic!("the form encoding of {q:?} does not decode: {e}"));
    assert_eq!(
        (
            &again.query,
            again.start_ms,
            again.end_ms,
            again.step_ns,
            &again.params
        ),
        (&q.query, q.start_ms, q.end_ms, q.step_ns, &q.params),
        "form round trip changed the query"
    );

    // Split by a day, an hour, or an interval taken from the input (1 ms .. ~4 days).
    let interval_ms = match selector >> 6 {
        0 => 86_400_000,
        1 => 3_600_000,
        _ => 1 + i64::from(selector & 0x3f) * 5_432_123,
    };
    let step_ms = q.step_ms();
    if let Ok(pieces) = split_range(q.start_ms, q.end_ms, step_ms, interval_ms) {
        let mut expected = q.start_ms;
        let last = q.start_ms + (q.end_ms - q.start_ms) / step_ms * step_ms;
        for p in &pieces {
            assert_eq!(
                p.start_ms, expected,
                "gap or overlap before {p:?} in {pieces:?}"
            );
            assert!(p.start_ms <= p.end_ms, "empty piece {p:?}");
            assert_eq!(
                (p.end_ms - q.start_ms) % step_ms,
                0,
                "{p:?} ends off the grid"
            );
            assert_eq!(
                p.start_ms.div_euclid(interval_ms),
                p.end_ms.div_euclid(interval_ms),
                "{p:?} crosses an interval boundary"
            );
            expected = p.end_ms + step_ms;
        }
        assert_eq!(
            expected - step_ms,
            last,
            "pieces do not end at the last grid point"
        );
    }
}

/// PromQL handling: `data` is `<8 bytes start><8 bytes end><query text>`.
///
/// Properties: an expression that parses has a normal form (the cache key's text) unless
/// it holds something the printer cannot write (an `@` before 1970, a time or duration
/// finer than a millisecond, a zero duration, an empty `by ()`), and that text parses back to the same expression; a query
/// with a normal form that uses `@ start()` / `@ end()` is rewritten to absolute times,
/// and the rewritten text parses to a query that no longer refers to its range, with
/// the same normal form whatever spelling the original used.
pub fn promql(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let time = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        // Any time from 1970 to ~year 2500.
        (u64::from_le_bytes(a) % 16_725_225_600_000) as i64
    };
    let (start, end) = (time(&data[..8]), time(&data[8..16]));
    let (start, end) = (start.min(end), start.max(end));
    let Ok(text) = std::str::from_utf8(&data[16..]) else {
        return;
    };
    let analysis = Analysis::of(text);
    let Ok(expr) = &analysis.parsed else {
        return;
    };
    assert!(
        !analysis.beyond_parser,
        "{text:?} parsed but is marked beyond the parser"
    );
    // The cheap bound that keeps deep trees away from the parser really bounds them.
    let bound = crate::promql::nesting_bound(text);
    assert!(
        depth(expr) <= 2 * bound + 2,
        "{text:?} parses {} deep, beyond its nesting bound {bound}",
        depth(expr)
    );
    match &analysis.normalised {
        Some(normalised) => {
            let reparsed = promql_parser::parser::parse(normalised).unwrap_or_else(|e| {
                panic!("{text:?} normalises to {normalised:?}, which does not parse: {e}")
            });
            assert!(
                reparsed == *expr,
                "{text:?} normalises to {normalised:?}, a different expression"
            );
            // The normal form is a fixed point: the cache key does not depend on spelling.
            // (Unless the printer's extra brackets take it past the nesting limit.)
            assert!(
                crate::promql::nesting_bound(normalised) > crate::promql::MAX_NESTING
                    || Analysis::of(normalised).normalised.as_deref() == Some(normalised.as_str()),
                "{text:?}: normalising {normalised:?} again changes it"
            );
        }
        None => assert!(
            analysis.has_pre_epoch_at || unprintable_duration(expr) || empty_grouping(expr),
            "{text:?} parses but has no normal form: {:?} prints as {:?}",
            expr,
            expr.to_string()
        ),
    }
    let rewritten = analysis.rewrite_at_start_end(start, end);
    if analysis.uses_start_end && analysis.normalised.is_some() {
        assert!(
            rewritten.is_some(),
            "{text:?}: @ start()/end() not rewritten"
        );
    }
    if let Some(rewritten) = rewritten {
        let again = Analysis::of(&rewritten);
        assert!(
            again.parse_error().is_none(),
            "{text:?} rewrites to {rewritten:?}, which does not parse"
        );
        assert!(
            !again.uses_start_end,
            "{text:?} rewrites to {rewritten:?}, which still uses start()/end()"
        );
        // Every `@` is now absolute: the latest is start or end or one written out.
        let latest = again.latest_at_ms.unwrap_or(i64::MIN);
        assert!(
            latest >= start && latest <= end.max(analysis.latest_at_ms.unwrap_or(end)),
            "{text:?} rewrites to {rewritten:?}: latest @ {latest} outside [{start}, {end}]"
        );
    }
}

/// The depth of the tree: a leaf is 1.
fn depth(expr: &promql_parser::parser::Expr) -> usize {
    use promql_parser::parser::Expr;
    1 + match expr {
        Expr::Aggregate(a) => depth(&a.expr).max(a.param.as_deref().map_or(0, depth)),
        Expr::Unary(u) => depth(&u.expr),
        Expr::Binary(b) => depth(&b.lhs).max(depth(&b.rhs)),
        Expr::Paren(p) => depth(&p.expr),
        Expr::Subquery(q) => depth(&q.expr),
        Expr::Call(c) => c.args.args.iter().map(|a| depth(a)).max().unwrap_or(0),
        Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => 0,
    }
}

/// Whether `expr` holds an aggregation with an empty `by ()`, which the printer drops
/// (`sum by () (x)` prints as `sum(x)`: the same result, another tree).
fn empty_grouping(expr: &promql_parser::parser::Expr) -> bool {
    use promql_parser::parser::{Expr, LabelModifier};
    match expr {
        Expr::Aggregate(a) => {
            matches!(&a.modifier, Some(LabelModifier::Include(l)) if l.labels.is_empty())
                || empty_grouping(&a.expr)
                || a.param.as_deref().is_some_and(empty_grouping)
        }
        Expr::Unary(u) => empty_grouping(&u.expr),
        Expr::Binary(b) => empty_grouping(&b.lhs) || empty_grouping(&b.rhs),
        Expr::Paren(p) => empty_grouping(&p.expr),
        Expr::Subquery(q) => empty_grouping(&q.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| empty_grouping(a)),
        _ => false,
    }
}

/// Whether `expr` holds an `@` time, offset, range or step the printer cannot write back:
/// finer than a millisecond (it writes whole milliseconds), zero (`x[000]` prints as
/// `x[0s]`, which does not parse; `offset -0` as `offset -0s`), or longer than ~292
/// years.
fn unprintable_duration(expr: &promql_parser::parser::Expr) -> bool {
    use promql_parser::parser::{AtModifier, Expr, Offset};
    use std::time::{Duration, UNIX_EPOCH};
    let fine = |d: &Duration| !d.subsec_nanos().is_multiple_of(1_000_000);
    // Beyond Go's largest duration (~292 years) the printed form does not parse.
    let unwritable = |d: &Duration| fine(d) || d.is_zero() || d.as_nanos() > i64::MAX as u128;
    let fine_offset = |o: &Option<Offset>| match o {
        Some(Offset::Pos(d) | Offset::Neg(d)) => unwritable(d),
        None => false,
    };
    let fine_at = |a: &Option<AtModifier>| match a {
        Some(AtModifier::At(t)) => t.duration_since(UNIX_EPOCH).map_or(true, |d| fine(&d)),
        _ => false,
    };
    match expr {
        Expr::Aggregate(a) => {
            unprintable_duration(&a.expr) || a.param.as_deref().is_some_and(unprintable_duration)
        }
        Expr::Unary(u) => unprintable_duration(&u.expr),
        Expr::Binary(b) => unprintable_duration(&b.lhs) || unprintable_duration(&b.rhs),
        Expr::Paren(p) => unprintable_duration(&p.expr),
        Expr::Subquery(q) => {
            unwritable(&q.range)
                || q.step.as_ref().is_some_and(unwritable)
                || fine_offset(&q.offset)
                || fine_at(&q.at)
                || unprintable_duration(&q.expr)
        }
        Expr::VectorSelector(v) => fine_offset(&v.offset) || fine_at(&v.at),
        Expr::MatrixSelector(m) => {
            unwritable(&m.range) || fine_offset(&m.vs.offset) || fine_at(&m.vs.at)
        }
        Expr::Call(c) => c.args.args.iter().any(|a| unprintable_duration(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// Downstream response decoding and merging: `data` is `<8 bytes cut time><body>`.
///
/// Properties: whatever decodes encodes to valid JSON that decodes again; trimming and
/// merging never produce invalid JSON; for a well-formed matrix (distinct label sets,
/// samples in time order), the answer cut at any time and merged back equals the whole.
pub fn response(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let mut cut = [0u8; 8];
    cut.copy_from_slice(&data[..8]);
    let cut = i64::from_le_bytes(cut);
    let Ok(resp) = QueryResponse::from_slice(&data[8..]) else {
        return;
    };
    let encoded = resp.encode();
    let value = json_of(&encoded, "encode");
    let again = QueryResponse::from_slice(&encoded)
        .unwrap_or_else(|e| panic!("encoded answer does not decode: {e}"));
    assert_eq!(
        json_of(&again.encode(), "re-encode"),
        value,
        "decode∘encode is not stable"
    );
    assert_eq!(
        again.encode(),
        encoded,
        "encode∘decode∘encode changed the bytes"
    );
    if resp.status != Status::Success {
        return;
    }
    let Some(after_cut) = cut.checked_add(1) else {
        return;
    };
    let (Ok(low), Ok(high), Ok(whole)) = (
        trim(&resp, i64::MIN, cut),
        trim(&resp, after_cut, i64::MAX),
        trim(&resp, i64::MIN, i64::MAX),
    ) else {
        return;
    };
    for part in [&low, &high, &whole] {
        json_of(&part.encode(), "trim");
    }
    let split = merge(vec![low, high]);
    let joined = merge(vec![whole]);
    let (Ok(split), Ok(joined)) = (split, joined) else {
        return;
    };
    let split_json = json_of(&split.encode(), "merge");
    let joined_json = json_of(&joined.encode(), "merge");
    if distinct_label_sets(&resp) && joined_json.is_some() {
        assert_eq!(
            split_json, joined_json,
            "cut at {cut} and merged differs from the whole"
        );
    }
}

/// Checks that `bytes` are JSON, panicking with `what` produced invalid JSON. Returns
/// the parsed value, or `None` when it holds numbers valid in JSON but beyond `f64`
/// (such as `1E999`, which a querier may send and the frontend passes on unchanged).
fn json_of(bytes: &[u8], what: &str) -> Option<serde_json::Value> {
    if let Err(e) = serde_json::from_slice::<Box<serde_json::value::RawValue>>(bytes) {
        panic!(
            "{what} produced invalid JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
    serde_json::from_slice(bytes).ok()
}

/// Whether every series of a success answer has its own label set.
fn distinct_label_sets(resp: &QueryResponse) -> bool {
    let Some(data) = &resp.data else {
        return true;
    };
    let mut seen = std::collections::BTreeSet::new();
    data.result.iter().all(|s| {
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(s.metric.as_str())
            .is_ok_and(|labels| seen.insert(labels))
    })
}

/// Cache value decoding: bytes read from Redis can be anything.
///
/// Properties: decoding never panics or allocates what the bytes merely claim; whatever
/// decodes encodes back to bytes that decode to the same entry; an entry built from the
/// input survives encode → decode unchanged.
pub fn cache_value(data: &[u8]) {
    if let Ok(entry) = Entry::decode(data) {
        let again = Entry::decode(&entry.encode())
            .unwrap_or_else(|e| panic!("re-encoded entry does not decode: {e}"));
        assert_eq!(again, entry, "decode∘encode changed the entry");
    }
    // An entry made of the input: key, then extents of up to 255 bytes each.
    let (key, mut rest) = split_at_byte(data, 0);
    let mut extents = Vec::new();
    let mut t = 0i64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        extents.push(StoredExtent {
            span: Span {
                start_ms: t,
                end_ms: t + i64::from(len),
            },
            json: bytes::Bytes::copy_from_slice(&tail[..n]),
            chunks: Vec::new(),
            layout: None,
        });
        t += i64::from(len) + 1;
        rest = &tail[n..];
    }
    let entry = Entry {
        key: String::from_utf8_lossy(key).into_owned(),
        extents,
    };
    let decoded = Entry::decode(&entry.encode())
        .unwrap_or_else(|e| panic!("an encoded entry does not decode: {e}"));
    assert_eq!(decoded, entry, "encode → decode changed the entry");
    answer_value(data);
}

/// The same properties for a stored whole answer (label, series and instant answers,
/// [`StoredAnswer`]), which lives in the same backend: run by [`cache_value`].
fn answer_value(data: &[u8]) {
    if let Ok(answer) = StoredAnswer::decode(data) {
        let again = StoredAnswer::decode(&answer.encode())
            .unwrap_or_else(|e| panic!("re-encoded answer does not decode: {e}"));
        assert_eq!(again, answer, "decode∘encode changed the answer");
    }
    // An answer made of the input: key, content type, body.
    let (key, rest) = split_at_byte(data, 0);
    let (content_type, body) = split_at_byte(rest, 0);
    let answer = StoredAnswer {
        key: String::from_utf8_lossy(key).into_owned(),
        content_type: String::from_utf8_lossy(content_type).into_owned(),
        body: bytes::Bytes::copy_from_slice(body),
    };
    let decoded = StoredAnswer::decode(&answer.encode())
        .unwrap_or_else(|e| panic!("an encoded answer does not decode: {e}"));
    assert_eq!(decoded, answer, "encode → decode changed the answer");
}

/// The cache's read path after decoding: `data` is `<8 bytes step><8 bytes start>
/// <2 bytes points><stored entry>`, the query's grid and range in the first 18 bytes.
///
/// Properties (for a query that passed validation: times within ±9e18 ms, a positive
/// step, at most 11,000 points): checking the stored extents and partitioning the range
/// never overflow; when the extents are well formed, the segments cover every grid point
/// of the range once, in order, each hit inside its extent; cutting each hit's stored
/// answer to its span and merging the cuts gives valid JSON.
pub fn cache_read(data: &[u8]) {
    if data.len() < 18 {
        return;
    }
    let word = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        i64::from_le_bytes(a)
    };
    const LIMIT: i64 = 9_000_000_000_000_000_000;
    let step = word(&data[..8]).rem_euclid(LIMIT / 11_000).max(1);
    let start = word(&data[8..16]).clamp(-LIMIT, LIMIT);
    let points = i64::from(u16::from_le_bytes([data[16], data[17]]) % 11_001);
    let Some(end) = points.checked_mul(step).and_then(|d| start.checked_add(d)) else {
        return;
    };
    if !(-LIMIT..=LIMIT).contains(&end) {
        return;
    }
    let Ok(entry) = Entry::decode(&data[18..]) else {
        return;
    };
    let spans: Vec<Span> = entry.extents.iter().map(|e| e.span).collect();
    let phase = start.rem_euclid(step);
    if !well_formed(&spans, phase, step) {
        return;
    }
    let segments = partition(&spans, start, end, step);
    let mut next = start;
    let mut hits = Vec::new();
    for seg in &segments {
        let span = match *seg {
            Segment::Gap(span) => span,
            Segment::Hit { extent, span } => {
                let e = spans[extent];
                assert!(
                    e.start_ms <= span.start_ms && span.end_ms <= e.end_ms,
                    "hit {span:?} outside its extent {e:?}"
                );
                hits.push((extent, span));
                span
            }
        };
        assert_eq!(
            span.start_ms, next,
            "segments {segments:?} skip or repeat a point"
        );
        assert!(
            span.start_ms <= span.end_ms,
            "empty segment in {segments:?}"
        );
        next = span.end_ms.saturating_add(step);
    }
    assert!(
        next > end && next - step <= end,
        "segments {segments:?} do not end at {end}"
    );
    let mut cuts = Vec::new();
    for (extent, span) in hits {
        let Ok(resp) = QueryResponse::from_slice(&entry.extents[extent].json) else {
            return;
        };
        if resp.status != Status::Success {
            return;
        }
        match trim(&resp, span.start_ms, span.end_ms) {
            Ok(cut) => cuts.push(cut),
            Err(_) => return,
        }
    }
    if !cuts.is_empty()
        && let Ok(merged) = merge(cuts)
    {
        json_of(&merged.encode(), "merging cached cuts");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every saved input of every target: fuzzer finds (crashes fixed since) and seeds.
    #[test]
    fn saved_fuzz_inputs_keep_every_property() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        for target in TARGETS {
            let mut ran = 0;
            let dir = root.join(target);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("directory entry").path();
                let data = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let outcome = std::panic::catch_unwind(|| run(target, &data));
                assert!(
                    matches!(outcome, Ok(true)),
                    "{target} fails on {}",
                    path.display()
                );
                ran += 1;
            }
            assert!(ran > 0, "no saved inputs for {target} in {}", dir.display());
        }
    }

    #[test]
    fn unknown_target_is_refused() {
        assert!(!run("nope", b""));
    }
}
