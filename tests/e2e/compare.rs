//! Comparing an answer through the frontend with the querier's own answer (shared by the
//! end-to-end tests and the soak test).

use std::collections::BTreeMap;

/// Per timestamp, the sorted list of value strings over all series.
fn values_by_timestamp(json: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for series in json["data"]["result"].as_array().into_iter().flatten() {
        for point in series["values"].as_array().into_iter().flatten() {
            out.entry(point[0].to_string())
                .or_default()
                .push(point[1].as_str().unwrap_or_default().to_owned());
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Compares one answer with the direct one; `None` when they agree.
pub fn compare(
    expr: &str,
    direct: &crate::support::Reply,
    via: &crate::support::Reply,
    nondeterministic: bool,
) -> Option<String> {
    if via.status != direct.status {
        return Some(format!(
            "status {} vs direct {}: {}",
            via.status,
            direct.status,
            via.text()
        ));
    }
    if direct.status != 200 {
        let (d, v) = (direct.json(), via.json());
        return (d["errorType"] != v["errorType"])
            .then(|| format!("errorType {} vs direct {}", v["errorType"], d["errorType"]));
    }
    if expr.contains("topk") || expr.contains("bottomk") {
        let (d, v) = (
            values_by_timestamp(&direct.json()),
            values_by_timestamp(&via.json()),
        );
        return (d != v).then(|| "per-timestamp values differ".to_owned());
    }
    // Byte for byte once any content coding is removed (a gzip body decodes to the
    // same answer whichever way it was compressed).
    if via.decoded() == direct.decoded() {
        return None;
    }
    if nondeterministic && same_up_to_float_rounding(&direct.json(), &via.json()) {
        return None;
    }
    Some({
        let (d, v) = (direct.text(), via.text());
        let at = d
            .bytes()
            .zip(v.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(d.len().min(v.len()));
        let from = at.saturating_sub(120);
        format!(
            "bodies differ at byte {at} (len {} vs direct {}):\n  via:    {}\n  direct: {}",
            v.len(),
            d.len(),
            &v[from..(at + 120).min(v.len())],
            &d[from..(at + 120).min(d.len())]
        )
    })
}

/// Same series in the same order with the same timestamps, and values equal within a
/// relative 1e-9 (NaN equals NaN).
fn same_up_to_float_rounding(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let (Some(ra), Some(rb)) = (
        a["data"]["result"].as_array(),
        b["data"]["result"].as_array(),
    ) else {
        return false;
    };
    if ra.len() != rb.len() {
        return false;
    }
    ra.iter().zip(rb).all(|(sa, sb)| {
        let (Some(va), Some(vb)) = (sa["values"].as_array(), sb["values"].as_array()) else {
            return false;
        };
        sa["metric"] == sb["metric"]
            && va.len() == vb.len()
            && va.iter().zip(vb).all(|(pa, pb)| {
                let parse =
                    |p: &serde_json::Value| p[1].as_str().and_then(|s| s.parse::<f64>().ok());
                match (parse(pa), parse(pb)) {
                    (Some(x), Some(y)) => {
                        pa[0] == pb[0]
                            && ((x.is_nan() && y.is_nan())
                                || x == y
                                || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
                    }
                    _ => false,
                }
            })
    })
}
