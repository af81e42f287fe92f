//! Micro benchmarks of pure parts: cutting a 30-day query into day pieces, the cache key
//! of a typical Grafana query, extent partition and trimming, decoding + merging +
//! encoding 30 day-pieces of a 500-series matrix (throughput over the pieces' JSON
//! bytes), and encoding/decoding a cache value with compression.
//!
//! Run: `cargo bench --bench split_merge`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promql_frontend::model::QueryResponse;
use promql_frontend::model::merge::merge;
use promql_frontend::model::ranges::split_range;
use promql_frontend::model::time::format_seconds_ms;

const DAY: i64 = 86_400_000;
const START: i64 = 1_699_920_000_000 + 5 * 3_600_000 + 500;

/// One day-piece answer: 500 series, one sample every `step_ms` within the day.
fn piece_json(day: i64, step_ms: i64) -> String {
    let from = START + day * DAY;
    let mut out =
        String::from("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
    for s in 0..500 {
        if s > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"metric\":{{\"__name__\":\"http_requests_total\",\"code\":\"{}\",\"handler\":\"/api/h{}\",\"instance\":\"host-{}:8080\",\"job\":\"api\"}},\"values\":[",
            200 + s % 5,
            s % 7,
            s / 35
        ));
        let mut t = from;
        let mut first = true;
        while t < from + DAY {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                "[{},\"{}.{}\"]",
                format_seconds_ms(t),
                t % 9973,
                s
            ));
            t += step_ms;
        }
        out.push_str("]}");
    }
    out.push_str("]}}");
    out
}

fn bench_split(c: &mut Criterion) {
    c.bench_function("split 30-day query at 15s step into day pieces", |b| {
        b.iter(|| split_range(black_box(START), black_box(START + 30 * DAY), 15_000, DAY))
    });
}

fn bench_merge(c: &mut Criterion) {
    let step = 15 * 60_000;
    let pieces: Vec<String> = (0..30).map(|d| piece_json(d, step)).collect();
    let bytes: usize = pieces.iter().map(String::len).sum();
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    group.bench_function(
        "decode+merge+encode 30 day-pieces x 500 series (96 points/day)",
        |b| {
            b.iter(|| {
                let answers: Vec<QueryResponse> = pieces
                    .iter()
                    .map(|p| QueryResponse::from_slice(p.as_bytes()).expect("valid piece"))
                    .collect();
                let merged = merge(answers).expect("merges");
                black_box(merged.encode())
            })
        },
    );
    // The parts of it, to see where the time goes.
    group.bench_function("decode only (full parser)", |b| {
        b.iter(|| {
            for p in &pieces {
                black_box(QueryResponse::from_slice(p.as_bytes()).expect("valid piece"));
            }
        })
    });
    let decoded: Vec<QueryResponse> = pieces
        .iter()
        .map(|p| QueryResponse::from_slice(p.as_bytes()).expect("valid piece"))
        .collect();
    group.bench_function("merge+encode only", |b| {
        b.iter(|| black_box(merge(decoded.clone()).expect("merges").encode()))
    });
    group.finish();
    println!(
        "merge input: {:.1} MB of JSON over 30 pieces",
        bytes as f64 / 1e6
    );
}

/// A warm hit as the cache serves it: 30 stored day entries (lz4, with their layout and
/// compressed runs) read back, merged, encoded and gzipped.
fn bench_hit_path(c: &mut Criterion) {
    use promql_frontend::layers::cache::chunks;
    use promql_frontend::layers::cache::extents::Span;
    use promql_frontend::layers::cache::value::{Entry, StoredExtent};
    use promql_frontend::model::EncodedAnswer;
    let step = 15 * 60_000;
    let entries: Vec<Entry> = (0..30)
        .map(|d| {
            let mut resp =
                QueryResponse::from_slice(piece_json(d, step).as_bytes()).expect("valid piece");
            chunks::fill(&mut resp, 1);
            let (json, layout) = resp.encode_with_layout();
            Entry {
                key: format!("pf1 bench {d}"),
                extents: vec![StoredExtent {
                    span: Span {
                        start_ms: START + d * DAY,
                        end_ms: START + d * DAY + DAY - step,
                    },
                    json: bytes::Bytes::from(json),
                    chunks: chunks::of_answer(&resp),
                    layout: Some(layout),
                }],
            }
        })
        .collect();
    // As Redis holds them (lz4), and as the memory backend does by default.
    let lz4: Vec<bytes::Bytes> = entries.iter().map(|e| e.encode().into()).collect();
    let plain: Vec<bytes::Bytes> = entries
        .iter()
        .map(|e| e.encode_uncompressed().into())
        .collect();
    // Read as the cache layer reads them: memory values unchecked (they never left the
    // process), others checked.
    let read = |stored: &[bytes::Bytes], own: bool| -> Vec<QueryResponse> {
        stored
            .iter()
            .map(|bytes| {
                let mut e = match own {
                    true => Entry::decode_own(bytes),
                    false => Entry::decode_shared(bytes),
                }
                .expect("decodes");
                let x = e.extents.pop().expect("one extent");
                let layout = x.layout.expect("layout");
                let mut resp = QueryResponse::from_layout(&x.json, &layout).expect("reads");
                chunks::attach(&mut resp, x.chunks);
                resp
            })
            .collect()
    };
    let bytes: usize = (0..30).map(|d| piece_json(d, step).len()).sum();
    let mut group = c.benchmark_group("hit path");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    for (name, stored, own) in [
        ("lz4 entries (redis)", &lz4, false),
        ("uncompressed entries (memory)", &plain, true),
    ] {
        group.bench_function(
            format!(
                "30 stored day entries x 500 series (96 points/day), {name}: read+merge+encode"
            ),
            |b| {
                b.iter(|| {
                    black_box(
                        EncodedAnswer::of(&merge(read(stored, own)).expect("merges"))
                            .json
                            .len(),
                    )
                })
            },
        );
        group.bench_function(
            format!("{name}: ... + gzip from the compressed runs"),
            |b| {
                b.iter(|| {
                    let answer = EncodedAnswer::of(&merge(read(stored, own)).expect("merges"));
                    black_box(answer.gzip().map(|z| z.len()))
                })
            },
        );
    }
    group.finish();
    let day = piece_json(0, 60_000);
    let resp = QueryResponse::from_slice(day.as_bytes()).expect("valid piece");
    let mut group = c.benchmark_group("store path (1 day x 500 series x 1440 points)");
    group.throughput(Throughput::Bytes(day.len() as u64));
    group.sample_size(10);
    group.bench_function("compressed runs made (level 1)", |b| {
        b.iter(|| {
            let mut r = resp.clone();
            chunks::fill(&mut r, 1);
            black_box(chunks::of_answer(&r).len())
        })
    });
    group.finish();
}

fn bench_cache_value(c: &mut Criterion) {
    use promql_frontend::layers::cache::extents::Span;
    use promql_frontend::layers::cache::value::{Entry, StoredExtent};
    // One day-piece of 500 series at 60 s: what one cache entry holds.
    let json = piece_json(0, 60_000);
    let entry = Entry {
        key: "pf1 bench key".into(),
        extents: vec![StoredExtent {
            span: Span {
                start_ms: START,
                end_ms: START + DAY - 60_000,
            },
            json: bytes::Bytes::from(json.clone()),
            chunks: Vec::new(),
            layout: None,
        }],
    };
    let encoded = bytes::Bytes::from(entry.encode());
    println!(
        "cache value: {:.1} MB of JSON -> {:.1} MB stored (lz4, {:.2}x)",
        json.len() as f64 / 1e6,
        encoded.len() as f64 / 1e6,
        json.len() as f64 / encoded.len() as f64
    );
    let mut group = c.benchmark_group("cache value (1 day x 500 series x 1440 points)");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.sample_size(20);
    group.bench_function("encode (lz4)", |b| b.iter(|| black_box(entry.encode())));
    group.bench_function("decode (lz4)", |b| {
        b.iter(|| black_box(Entry::decode_shared(&encoded).expect("decodes")))
    });
    group.finish();
}

fn bench_cache_key(c: &mut Criterion) {
    use promql_frontend::layers::cache::key::{KeyOptions, piece_key};
    use promql_frontend::model::RangeQuery;
    use promql_frontend::promql::Analysis;
    let expr = "histogram_quantile(0.95, sum by (le, handler) (rate(request_duration_seconds_bucket{job=\"api\", handler=~\"/api/.*\"}[5m])))";
    let pairs: Vec<(String, String)> = [
        ("query", expr.to_owned()),
        ("start", format_seconds_ms(START)),
        ("end", format_seconds_ms(START + 6 * 3_600_000)),
        ("step", "30".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-scope-orgid", http::HeaderValue::from_static("team-a"));
    headers.insert(
        "authorization",
        http::HeaderValue::from_static("Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"),
    );
    let mut q = RangeQuery::from_form(pairs, http::HeaderMap::new()).expect("valid query");
    q.request_headers = headers;
    promql_frontend::promql::attach(&mut q, std::sync::Arc::new(Analysis::of(expr)));
    let opts = KeyOptions {
        namespace: "http://thanos-query:10902".into(),
        tenant_header: http::HeaderName::from_static("x-scope-orgid"),
        key_headers: vec![http::HeaderName::from_static("authorization")],
        interval_ms: DAY,
    };
    c.bench_function("cache key of a Grafana histogram_quantile panel", |b| {
        b.iter(|| black_box(piece_key(black_box(&q), &opts).expect("cacheable")))
    });
    c.bench_function("parse + analyse that PromQL (validate layer)", |b| {
        b.iter(|| black_box(Analysis::of(black_box(expr))))
    });
}

fn bench_extents(c: &mut Criterion) {
    use promql_frontend::layers::cache::extents::{Span, partition, trim};
    let step = 60_000;
    // An entry holding four extents of one day; the request spans the day.
    let extents: Vec<Span> = (0..4)
        .map(|i| Span {
            start_ms: START + i * 6 * 3_600_000,
            end_ms: START + i * 6 * 3_600_000 + 5 * 3_600_000,
        })
        .collect();
    c.bench_function("partition a day request over 4 extents", |b| {
        b.iter(|| {
            black_box(partition(
                black_box(&extents),
                START,
                START + DAY - step,
                step,
            ))
        })
    });
    let day = QueryResponse::from_slice(piece_json(0, step).as_bytes()).expect("valid piece");
    let mut group = c.benchmark_group("trim");
    group.sample_size(20);
    group.bench_function("trim a 500-series day to its middle 12 h", |b| {
        b.iter(|| {
            black_box(trim(&day, START + 6 * 3_600_000, START + 18 * 3_600_000).expect("trims"))
        })
    });
    group.finish();
}

/// Gzip of a fresh answer (the level answers made for one request get) and of one the
/// response cache keeps, with the sizes they come to.
fn bench_gzip(c: &mut Criterion) {
    use promql_frontend::encoding::{Coding, FRESH_LEVEL, KEPT_LEVEL};
    // 500 series x 96 points: 1.3 MB of JSON.
    let json = piece_json(0, 15 * 60_000);
    let mut group = c.benchmark_group("gzip (1 day x 500 series x 96 points)");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.sample_size(20);
    for level in [FRESH_LEVEL, KEPT_LEVEL] {
        let size = Coding::Gzip
            .compress_at(json.as_bytes(), level)
            .expect("gzips")
            .len();
        println!(
            "gzip level {level}: {:.2} MB -> {:.3} MB ({:.2}x)",
            json.len() as f64 / 1e6,
            size as f64 / 1e6,
            json.len() as f64 / size as f64
        );
        group.bench_function(format!("level {level}"), |b| {
            b.iter(|| black_box(Coding::Gzip.compress_at(json.as_bytes(), level)))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_gzip,
    bench_split,
    bench_cache_key,
    bench_extents,
    bench_merge,
    bench_hit_path,
    bench_cache_value
);
criterion_main!(benches);
