//! Where the series of an encoded answer lie in its bytes, so that an answer the
//! frontend itself encoded and stored can be read back by slicing instead of parsing.
//!
//! Parsing a stored day of samples (serde_json validates every byte) was the largest
//! cost of a cache hit after compression; with the layout only the envelope (status,
//! extra fields) is parsed, and each series' label set and sample arrays are taken as
//! they lie. The layout is checked against the bytes: ranges in order, inside the
//! result array, each a JSON object or array by its first and last byte, on UTF-8
//! boundaries. It is stored next to the bytes under the cache value's checksum, so what
//! it describes is what the frontend wrote.

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::Error;
use crate::model::{QueryResponse, RawJson, Series};

/// Byte ranges `[start, end)` of an encoded answer's parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Between the result array's brackets.
    pub result: (usize, usize),
    /// Per series, in order.
    pub series: Vec<SeriesLayout>,
}

/// Where one series' parts lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesLayout {
    /// The label set object.
    pub metric: (usize, usize),
    /// The float sample array, if any.
    pub values: Option<(usize, usize)>,
    /// The histogram sample array, if any.
    pub histograms: Option<(usize, usize)>,
}

fn unusable(why: &str) -> Error {
    Error::BadResponse(format!("stored answer layout: {why}"))
}

impl QueryResponse {
    /// Reads an answer the frontend encoded with [`QueryResponse::encode_with_layout`],
    /// using its layout: the envelope is parsed, the series are sliced out.
    pub fn from_layout(json: &Bytes, layout: &Layout) -> Result<QueryResponse, Error> {
        let (start, end) = layout.result;
        if !(start <= end && end < json.len() && start > 0)
            || json[start - 1] != b'['
            || json[end] != b']'
        {
            return Err(unusable("result range"));
        }
        let mut envelope = Vec::with_capacity(json.len() - (end - start));
        envelope.extend_from_slice(&json[..start]);
        envelope.extend_from_slice(&json[end..]);
        let mut resp = QueryResponse::from_slice(&envelope)?;
        let Some(data) = resp.data.as_mut().filter(|d| d.result.is_empty()) else {
            return Err(unusable("envelope without an empty result"));
        };
        let whole = ByteString::try_from(json.clone()).map_err(|_| unusable("not UTF-8"))?;
        let mut pos = start;
        let mut take = |range: (usize, usize), open: u8, close: u8| {
            let (from, to) = range;
            let text = (from >= pos && from < to && to <= end)
                .then(|| json.get(from..to))
                .flatten()
                .filter(|t| t.first() == Some(&open) && t.last() == Some(&close))
                .and_then(|_| RawJson::shared(&whole, from..to))
                .ok_or_else(|| unusable("series range"))?;
            pos = to;
            Ok::<RawJson, Error>(text)
        };
        data.result.reserve_exact(layout.series.len());
        for s in &layout.series {
            let metric = take(s.metric, b'{', b'}')?;
            let values = s.values.map(|r| take(r, b'[', b']')).transpose()?;
            let histograms = s.histograms.map(|r| take(r, b'[', b']')).transpose()?;
            data.result.push(Series {
                metric,
                values,
                histograms,
                chunks: Vec::new(),
            });
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\u003cb"},"values":[[1700000000,"1"],[1700000015.5,"NaN"]]},{"metric":{},"histograms":[[2,{"count":"3","sum":"1.5","buckets":[[0,"-1","1","3"]]}]]},{"metric":{"é":"ü"},"values":[[1,"1e-05"]],"histograms":[[2,{"count":"3"}]]}],"stats":{"x":1}},"infos":["i"],"isPartial":false}"#;

    #[test]
    fn reads_back_what_it_wrote() {
        let resp = QueryResponse::from_slice(BODY.as_bytes()).expect("decodes");
        let (json, layout) = resp.encode_with_layout();
        let json = Bytes::from(json);
        assert_eq!(json, BODY.as_bytes());
        assert_eq!(layout.series.len(), 3);
        let again = QueryResponse::from_layout(&json, &layout).expect("reads");
        assert_eq!(again.encode(), BODY.as_bytes());
        // Its label sets and sample arrays are slices of the stored text, not copies.
        let whole = json.as_ptr() as usize..json.as_ptr() as usize + json.len();
        let data = again.data.as_ref().expect("data");
        for s in &data.result {
            for raw in [Some(&s.metric), s.values.as_ref(), s.histograms.as_ref()]
                .into_iter()
                .flatten()
            {
                assert!(whole.contains(&(raw.as_str().as_ptr() as usize)));
            }
        }
        let empty = QueryResponse::from_slice(
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .expect("decodes");
        let (json, layout) = empty.encode_with_layout();
        let json = Bytes::from(json);
        assert_eq!(
            QueryResponse::from_layout(&json, &layout)
                .expect("reads")
                .encode(),
            json
        );
    }

    #[test]
    fn refuses_layouts_that_do_not_fit() {
        let resp = QueryResponse::from_slice(BODY.as_bytes()).expect("decodes");
        let (json, layout) = resp.encode_with_layout();
        let json = Bytes::from(json);
        let broken: [fn(&mut Layout); 7] = [
            |l| l.result.0 += 1,
            |l| l.result.1 = 10_000,
            |l| l.series[0].metric.0 += 1,
            |l| l.series[1].metric = l.series[0].metric,
            |l| l.series[0].values = Some((0, 5)),
            |l| {
                // "é" split in the middle of its two bytes.
                let m = l.series[2].metric;
                l.series[2].metric = (m.0, m.0 + 4);
            },
            |l| l.series[2].histograms = Some((usize::MAX - 1, usize::MAX)),
        ];
        for (i, breaks) in broken.iter().enumerate() {
            let mut l = layout.clone();
            breaks(&mut l);
            assert!(
                QueryResponse::from_layout(&json, &l).is_err(),
                "case {i} accepted"
            );
        }
        // Another envelope: a result that is not empty once the series are cut out.
        let mut short = layout.clone();
        short.series.pop();
        short.result.1 = layout.series[2].metric.0 - 12;
        assert!(QueryResponse::from_layout(&json, &short).is_err());
    }
}
