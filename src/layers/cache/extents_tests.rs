use super::*;

fn sp(start_ms: i64, end_ms: i64) -> Span {
    Span { start_ms, end_ms }
}

#[test]
fn partition_table() {
    let ext = [sp(100, 200), sp(300, 400)];
    let cases: Vec<(i64, i64, Vec<Segment>)> = vec![
        (0, 50, vec![Segment::Gap(sp(0, 50))]),
        (
            100,
            200,
            vec![Segment::Hit {
                extent: 0,
                span: sp(100, 200),
            }],
        ),
        (
            120,
            180,
            vec![Segment::Hit {
                extent: 0,
                span: sp(120, 180),
            }],
        ),
        (
            50,
            450,
            vec![
                Segment::Gap(sp(50, 90)),
                Segment::Hit {
                    extent: 0,
                    span: sp(100, 200),
                },
                Segment::Gap(sp(210, 290)),
                Segment::Hit {
                    extent: 1,
                    span: sp(300, 400),
                },
                Segment::Gap(sp(410, 450)),
            ],
        ),
        (
            200,
            300,
            vec![
                Segment::Hit {
                    extent: 0,
                    span: sp(200, 200),
                },
                Segment::Gap(sp(210, 290)),
                Segment::Hit {
                    extent: 1,
                    span: sp(300, 300),
                },
            ],
        ),
        (410, 500, vec![Segment::Gap(sp(410, 500))]),
    ];
    for (start, end, want) in cases {
        assert_eq!(partition(&ext, start, end, 10), want, "{start}..{end}");
    }
    assert_eq!(partition(&[], 0, 30, 10), vec![Segment::Gap(sp(0, 30))]);
}

#[test]
fn cutoff_split_table() {
    assert_eq!(
        split_at_cutoff(sp(0, 100), 200, 10),
        (Some(sp(0, 100)), None)
    );
    assert_eq!(
        split_at_cutoff(sp(300, 400), 200, 10),
        (None, Some(sp(300, 400)))
    );
    assert_eq!(
        split_at_cutoff(sp(0, 100), 55, 10),
        (Some(sp(0, 50)), Some(sp(60, 100)))
    );
    assert_eq!(
        split_at_cutoff(sp(0, 100), 0, 10),
        (Some(sp(0, 0)), Some(sp(10, 100)))
    );
    assert_eq!(grid_floor(1_055, 5, 10), 1_055);
    assert_eq!(grid_floor(1_054, 5, 10), 1_045);
}

#[test]
fn well_formedness() {
    assert!(well_formed(&[sp(5, 15), sp(35, 35)], 5, 10));
    assert!(!well_formed(&[sp(5, 15), sp(15, 35)], 5, 10), "overlap");
    assert!(!well_formed(&[sp(35, 45), sp(5, 15)], 5, 10), "unsorted");
    assert!(!well_formed(&[sp(6, 16)], 5, 10), "off grid");
    assert!(!well_formed(&[sp(25, 15)], 5, 10), "empty");
}

#[test]
fn trims_samples_and_drops_empty_series() {
    let resp = QueryResponse::from_slice(
        br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"],[1.5,"2"],[2,"3"]]},{"metric":{"a":"2"},"values":[[1,"9"]]},{"metric":{"a":"3"},"histograms":[[2,{"count":"1"}]]}]}}"#,
    )
    .expect("valid");
    let t = trim(&resp, 1_500, 2_000).expect("trims");
    assert_eq!(
        String::from_utf8(t.encode()).expect("utf-8"),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1.5,"2"],[2,"3"]]},{"metric":{"a":"3"},"histograms":[[2,{"count":"1"}]]}]}}"#
    );
}

#[test]
fn trimming_keeps_the_order_and_rejects_unordered_samples() {
    let resp = QueryResponse::from_slice(
        br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[ [1,"a"] , [2,"b"],[3,"c"] ]}],"x":1},"warnings":["w"]}"#,
    )
    .expect("valid");
    let t = trim(&resp, 2_000, 2_000).expect("trims");
    assert_eq!(
        String::from_utf8(t.encode()).expect("utf-8"),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[2,"b"]]}],"x":1},"warnings":["w"]}"#
    );
    let unordered = QueryResponse::from_slice(
        br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[2,"b"],[1,"a"]]}]}}"#,
    )
    .expect("valid");
    assert!(matches!(
        trim(&unordered, 0, 5_000),
        Err(Error::BadResponse(_))
    ));
}

#[test]
fn sample_timestamps_parse_exactly() {
    assert_eq!(
        sample_timestamp_ms(r#"[1792921995.3,"1"]"#),
        Some(1_792_921_995_300)
    );
    assert_eq!(
        sample_timestamp_ms(r#"[1700000000,"1"]"#),
        Some(1_700_000_000_000)
    );
    assert_eq!(
        sample_timestamp_ms(r#"[1700000000.001,{"count":"1"}]"#),
        Some(1_700_000_000_001)
    );
    assert_eq!(sample_timestamp_ms(r#"[-1.5,"1"]"#), Some(-1_500));
    assert_eq!(sample_timestamp_ms(r#"[7.05,"1"]"#), Some(7_050));
    assert_eq!(sample_timestamp_ms(r#"[7.005,"1"]"#), Some(7_005));
    assert_eq!(sample_timestamp_ms(r#"["x","1"]"#), None);
    assert_eq!(sample_timestamp_ms(r#"[1.2345,"1"]"#), None);
}
