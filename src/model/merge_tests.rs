use proptest::prelude::*;

use super::*;
use crate::model::ranges::split_range;

fn resp(json: &str) -> QueryResponse {
    QueryResponse::from_slice(json.as_bytes()).expect("valid response")
}

fn encoded(r: &QueryResponse) -> String {
    String::from_utf8(r.encode()).expect("utf-8")
}

#[test]
fn merges_series_by_labels_in_prometheus_order() {
    let a = resp(
        r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"up","job":"b"},"values":[[1,"1"],[2,"1"]]},
        {"metric":{"__name__":"up","job":"c"},"values":[[2,"0"]]}]},"warnings":["w1"]}"#,
    );
    let b = resp(
        r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"up","job":"a"},"values":[[3,"5"]]},
        {"metric":{"job":"b","__name__":"up"},"values":[[3,"1"],[4,"1"]]}]},"warnings":["w1","w2"],"infos":["i1"]}"#,
    );
    let merged = merge(vec![a, b]).expect("merges");
    assert_eq!(
        encoded(&merged),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[3,"5"]]},{"metric":{"__name__":"up","job":"b"},"values":[[1,"1"],[2,"1"],[3,"1"],[4,"1"]]},{"metric":{"__name__":"up","job":"c"},"values":[[2,"0"]]}]},"warnings":["w1","w2"],"infos":["i1"]}"#
    );
}

#[test]
fn label_order_matches_prometheus_compare() {
    // Prometheus compares pair by pair: name first, then value; a prefix sorts first.
    let a = resp(
        r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"a":"2"},"values":[[1,"1"]]},
        {"metric":{"a":"1","b":"1"},"values":[[1,"1"]]},
        {"metric":{"a":"1"},"values":[[1,"1"]]},
        {"metric":{},"values":[[1,"1"]]},
        {"metric":{"B":"1"},"values":[[1,"1"]]}]}}"#,
    );
    let merged = merge(vec![a]).expect("merges");
    let order: Vec<&str> = merged
        .data
        .as_ref()
        .expect("data")
        .result
        .iter()
        .map(|s| s.metric.as_str())
        .collect();
    assert_eq!(
        order,
        vec![
            r#"{}"#,
            r#"{"B":"1"}"#,
            r#"{"a":"1"}"#,
            r#"{"a":"1","b":"1"}"#,
            r#"{"a":"2"}"#
        ]
    );
}

#[test]
fn histograms_and_floats_are_concatenated_separately() {
    let a = resp(
        r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"x":"1"},"values":[[1,"1"]],"histograms":[[1,{"count":"1","sum":"1"}]]}]}}"#,
    );
    let b = resp(
        r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"x":"1"},"histograms":[[2,{"count":"2","sum":"3"}]]}]},"isPartial":true}"#,
    );
    let merged = merge(vec![a, b]).expect("merges");
    assert_eq!(
        encoded(&merged),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"x":"1"},"values":[[1,"1"]],"histograms":[[1,{"count":"1","sum":"1"}],[2,{"count":"2","sum":"3"}]]}]},"isPartial":true}"#
    );
}

#[test]
fn bad_labels_are_a_bad_response() {
    let a = resp(
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
    );
    assert!(matches!(merge(vec![a]), Err(Error::BadResponse(_))));
}

/// A test series: sorted labels and (timestamp, value) samples.
type TestSeries = (Vec<(String, String)>, Vec<(i64, String)>);

/// Renders a matrix like Prometheus: series sorted by labels, series without samples in
/// the window omitted.
fn render(series: &[TestSeries], from: i64, to: i64) -> String {
    let mut sorted: Vec<_> = series.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut parts = Vec::new();
    for (labels, samples) in sorted {
        let samples: Vec<String> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(t, v)| format!("[{},\"{v}\"]", crate::model::time::format_seconds_ms(*t)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let metric: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{v}\""))
            .collect();
        parts.push(format!(
            "{{\"metric\":{{{}}},\"values\":[{}]}}",
            metric.join(","),
            samples.join(",")
        ));
    }
    format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{}]}}}}",
        parts.join(",")
    )
}

proptest! {
    /// Splitting any matrix by the split boundaries and merging the pieces gives the
    /// matrix back, byte for byte.
    #[test]
    fn merge_of_pieces_reproduces_the_matrix(
        start in 1_600_000_000_000i64..1_700_000_000_000,
        points in 1i64..200,
        step in prop::sample::select(vec![15_000i64, 60_000, 7 * 60_000, 3_600_000 + 7 * 60_000]),
        series in prop::collection::btree_map(
            prop::collection::vec(("[a-c]", "[x-z]{0,2}"), 0..3),
            prop::collection::vec(any::<bool>(), 200),
            1..8,
        ),
    ) {
        let end = start + (points - 1) * step;
        let series: Vec<TestSeries> = series
            .into_iter()
            .map(|(labels, present)| {
                let labels: std::collections::BTreeMap<String, String> = labels.into_iter().collect();
                let samples = (0..points)
                    .filter(|k| present[*k as usize])
                    .map(|k| (start + k * step, format!("{}", k as f64 * 0.5)))
                    .collect();
                (labels.into_iter().collect(), samples)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let whole = render(&series, start, end);
        let pieces = match split_range(start, end, step, 86_400_000) {
            Ok(p) => p,
            Err(_) => vec![crate::model::ranges::Piece { start_ms: start, end_ms: end }],
        };
        let answers: Vec<QueryResponse> = pieces
            .iter()
            .map(|p| resp(&render(&series, p.start_ms, p.end_ms)))
            .collect();
        let merged = merge(answers).expect("merges");
        prop_assert_eq!(encoded(&merged), whole);
    }
}

#[test]
fn array_texts_are_joined_with_or_without_space_around_them() {
    for (text, inner) in [
        ("[[1,\"1\"],[2,\"2\"]]", "[1,\"1\"],[2,\"2\"]"),
        (" [ [1,\"1\"] ] ", "[1,\"1\"]"),
        ("[\n[1,\"1\"]\n]", "[1,\"1\"]"),
        ("[]", ""),
        ("[ ]", ""),
        ("{}", ""),
        ("", ""),
        ("[", ""),
    ] {
        assert_eq!(super::array_inner(text), inner, "{text:?}");
    }
}
