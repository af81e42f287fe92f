//! The compressed runs of cached sample arrays (see [`crate::splice`]): made when an
//! entry is stored, checked and attached when it is read.

use crate::model::QueryResponse;
use crate::model::response::array_elements;
use crate::splice::{Chunk, chunks_of};

/// Gives every series of `resp` compressed runs for the parts of its sample array that
/// have none yet (the samples a merge appended to a stored extent, or a whole fetched
/// answer), compressed at `level`; runs it already has are kept as they are, so storing
/// a refreshed window compresses only its new samples.
pub fn fill(resp: &mut QueryResponse, level: u32) {
    let Some(data) = resp.data.as_mut() else {
        return;
    };
    for s in &mut data.result {
        match &s.values {
            Some(values) => {
                let existing = std::mem::take(&mut s.chunks);
                s.chunks = fill_array(values.as_str(), existing, level);
            }
            None => s.chunks.clear(),
        }
    }
}

fn fill_array(text: &str, existing: Vec<Chunk>, level: u32) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(existing.len() + 1);
    let mut existing = existing.into_iter().peekable();
    // Elements not inside a kept run, since the last kept run.
    let mut pending: Vec<(usize, usize)> = Vec::new();
    for (start, end) in array_elements(text) {
        while let Some(c) = existing.next_if(|c| c.start + c.len <= start) {
            out.extend(chunks_of(text, pending.drain(..), level));
            out.push(c);
        }
        if existing.peek().is_some_and(|c| c.start <= start) {
            continue;
        }
        pending.push((start, end));
    }
    out.extend(chunks_of(text, pending.drain(..), level));
    out.extend(existing);
    out
}

/// The runs stored with an answer, per series in its order (empty when no series has
/// any).
pub fn of_answer(resp: &QueryResponse) -> Vec<Vec<Chunk>> {
    let Some(data) = &resp.data else {
        return Vec::new();
    };
    if data.result.iter().all(|s| s.chunks.is_empty()) {
        return Vec::new();
    }
    data.result.iter().map(|s| s.chunks.clone()).collect()
}

/// Attaches runs read with an answer to its series. Runs that do not fit their series'
/// sample array (out of order, overlapping, past its end, or another number of series)
/// are dropped: the answer is then gzipped whole, never wrongly.
pub fn attach(resp: &mut QueryResponse, runs: Vec<Vec<Chunk>>) {
    let Some(data) = resp.data.as_mut() else {
        return;
    };
    if runs.len() != data.result.len() {
        return;
    }
    for (s, runs) in data.result.iter_mut().zip(runs) {
        let len = s.values.as_ref().map_or(0, |v| v.as_str().len());
        let mut end = 1;
        let fits = runs.iter().all(|c| {
            let ok = c.start >= end && c.start.checked_add(c.len).is_some_and(|e| e < len);
            end = c.start.saturating_add(c.len);
            ok
        });
        if fits {
            s.chunks = runs;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(points: usize) -> QueryResponse {
        let values: Vec<String> = (0..points)
            .map(|i| format!("[{},\"{}\"]", 1_700_000_000 + i * 15, i * 7919 % 10007))
            .collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"b"}},"values":[{}]}},{{"metric":{{}},"values":[[1,"1"]]}}]}}}}"#,
            values.join(",")
        );
        QueryResponse::from_slice(body.as_bytes()).expect("decodes")
    }

    fn runs(resp: &QueryResponse) -> Vec<Chunk> {
        resp.data.as_ref().expect("data").result[0].chunks.clone()
    }

    #[test]
    fn filling_keeps_runs_and_compresses_only_the_rest() {
        let mut a = answer(3000);
        fill(&mut a, 1);
        let first = runs(&a);
        assert!(first.len() > 3);
        assert!(
            a.data.as_ref().expect("data").result[1].chunks.is_empty(),
            "short"
        );
        // Again: nothing new to compress, the same runs.
        fill(&mut a, 1);
        assert_eq!(runs(&a), first);
        // Drop the middle run: only it is made again, the others are kept as they are.
        let mut holed = first.clone();
        let dropped = holed.remove(1);
        a.data.as_mut().expect("data").result[0].chunks = holed;
        fill(&mut a, 1);
        let again = runs(&a);
        assert_eq!(again.len(), first.len());
        assert_eq!(again[1].start, dropped.start);
        assert_eq!(again[0], first[0]);
        assert_eq!(again[2], first[2]);
    }

    #[test]
    fn attaching_refuses_runs_that_do_not_fit() {
        let mut a = answer(3000);
        fill(&mut a, 1);
        let good = of_answer(&a);
        assert_eq!(good.len(), 2);
        let mut b = answer(3000);
        attach(&mut b, good.clone());
        assert_eq!(runs(&b), good[0]);
        let mut past_end = good.clone();
        past_end[0][0].start = 1 << 30;
        let mut c = answer(3000);
        attach(&mut c, past_end);
        assert!(runs(&c).is_empty());
        let mut d = answer(3000);
        attach(&mut d, vec![good[0].clone()]);
        assert!(runs(&d).is_empty(), "another number of series");
        let mut overlapping = good.clone();
        overlapping[0][1].start = overlapping[0][0].start;
        let mut e = answer(3000);
        attach(&mut e, overlapping);
        assert!(runs(&e).is_empty());
    }
}
