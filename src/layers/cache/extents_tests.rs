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

mod cutting {
    use proptest::prelude::*;

    use super::*;
    use crate::model::merge::merge;
    use crate::model::ranges::split_range;
    use crate::model::time::format_seconds_ms;

    const DAY: i64 = 86_400_000;

    /// A matrix answer on the grid `start + k·step` (k < n), its point k being point
    /// `first + k` of the whole query: series `i` has a float sample there when bit
    /// `(first + k) % 61` of `masks[i].0` is set, a histogram sample when that bit of
    /// `masks[i].1` is (values depend on the point, not on the range asked); with a
    /// warning when `warn`.
    fn answer(
        start: i64,
        step: i64,
        n: i64,
        first: i64,
        masks: &[(u64, u64)],
        warn: bool,
    ) -> QueryResponse {
        let mut series = Vec::new();
        for (i, (floats, hists)) in masks.iter().enumerate() {
            let pick = |mask: u64, hist: bool| -> Vec<String> {
                (0..n)
                    .filter(|k| mask >> ((first + k) % 61) & 1 == 1)
                    .map(|k| {
                        let ts = format_seconds_ms(start + k * step);
                        let k = first + k;
                        if hist {
                            format!("[{ts},{{\"count\":\"{k}\",\"sum\":\"1\",\"buckets\":[[0,\"0\",\"1\",\"{k}\"]]}}]")
                        } else {
                            format!("[{ts},\"{k}.{i}\"]")
                        }
                    })
                    .collect()
            };
            let (f, h) = (pick(*floats, false), pick(*hists, true));
            let mut s = format!("{{\"metric\":{{\"__name__\":\"m\",\"i\":\"{i}\"}}");
            if !f.is_empty() {
                s.push_str(&format!(",\"values\":[{}]", f.join(",")));
            }
            if !h.is_empty() {
                s.push_str(&format!(",\"histograms\":[{}]", h.join(",")));
            }
            s.push('}');
            if !f.is_empty() || !h.is_empty() {
                series.push(s);
            }
        }
        let warnings = if warn { ",\"warnings\":[\"w\"]" } else { "" };
        let body = format!(
            "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{}]}}{warnings}}}",
            series.join(",")
        );
        QueryResponse::from_slice(body.as_bytes()).expect("valid answer")
    }

    proptest! {
        /// Cutting a many-day answer at the day windows gives, for each window, what the
        /// querier answers for that window alone (its samples there, only the series that
        /// have some), in one pass; and the parts merge back to the whole.
        #[test]
        fn cut_equals_per_window_answers(
            days in 1i64..6,
            phase in 0i64..DAY,
            step in prop_oneof![Just(60_000i64), Just(7_000), Just(3_600_000), Just(86_399_999), 1_000i64..5_000_000],
            masks in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..5),
            warn in any::<bool>(),
        ) {
            let start = 1_700_000_000_000 - 1_700_000_000_000 % DAY + phase;
            let n = (days * DAY / step).clamp(1, 3000);
            let end = start + (n - 1) * step;
            let whole = answer(start, step, n, 0, &masks, warn);
            let spans: Vec<Span> = match split_range(start, end, step, DAY) {
                Ok(pieces) => pieces.iter().map(|p| Span { start_ms: p.start_ms, end_ms: p.end_ms }).collect(),
                Err(_) => vec![Span { start_ms: start, end_ms: end }],
            };
            let parts = cut(&whole, &spans).expect("cut");
            prop_assert_eq!(parts.len(), spans.len());
            for (span, part) in spans.iter().zip(&parts) {
                let first = (span.start_ms - start) / step;
                let len = (span.end_ms - span.start_ms) / step + 1;
                let alone = answer(span.start_ms, step, len, first, &masks, warn);
                prop_assert_eq!(part.encode(), alone.encode(), "window {:?}", span);
                prop_assert_eq!(&part.warnings, &whole.warnings, "warnings kept");
            }
            prop_assert_eq!(merge(parts).expect("merge").encode(), whole.encode());
        }
    }

    #[test]
    fn cut_refuses_spans_out_of_order() {
        let whole = answer(0, 1000, 10, 0, &[(u64::MAX, 0)], false);
        let spans = [
            Span {
                start_ms: 5000,
                end_ms: 9000,
            },
            Span {
                start_ms: 0,
                end_ms: 4000,
            },
        ];
        assert!(cut(&whole, &spans).is_err());
    }
}

mod thinning {
    use proptest::prelude::*;

    use super::*;
    use crate::model::time::format_seconds_ms;

    /// What a querier answers on the grid `start + k·step` up to `end`: series `i` has
    /// a float sample at `t` when bit `(t / 1000 + i) % 61` of `masks[i].0` is set, a
    /// histogram when that bit of `masks[i].1` is; values depend on `t` alone, as a
    /// range query's points do.
    fn at_grid(start: i64, end: i64, step: i64, masks: &[(u64, u64)]) -> QueryResponse {
        let mut series = Vec::new();
        for (i, (floats, hists)) in masks.iter().enumerate() {
            let on = |mask: u64, t: i64| mask >> ((t / 1000 + i as i64) % 61) & 1 == 1;
            let mut f = Vec::new();
            let mut h = Vec::new();
            let mut t = start;
            while t <= end {
                let ts = format_seconds_ms(t);
                if on(*floats, t) {
                    f.push(format!("[{ts},\"{}.{i}\"]", t % 9973));
                }
                if on(*hists, t) {
                    h.push(format!("[{ts},{{\"count\":\"{}\",\"sum\":\"1\"}}]", t % 31));
                }
                t += step;
            }
            let mut s = format!("{{\"metric\":{{\"i\":\"{i}\"}}");
            if !f.is_empty() {
                s.push_str(&format!(",\"values\":[{}]", f.join(",")));
            }
            if !h.is_empty() {
                s.push_str(&format!(",\"histograms\":[{}]", h.join(",")));
            }
            s.push('}');
            if !f.is_empty() || !h.is_empty() {
                series.push(s);
            }
        }
        let body = format!(
            "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{}]}}}}",
            series.join(",")
        );
        QueryResponse::from_slice(body.as_bytes()).expect("valid answer")
    }

    proptest! {
        /// An answer at a step that divides the asked one, thinned to the asked grid,
        /// is the answer at the asked step: same samples, same series, series without a
        /// point on the coarser grid dropped.
        #[test]
        fn thinned_equals_the_coarser_answer(
            fine in prop_oneof![Just(1_000i64), Just(15_000), Just(20_000), 1_000i64..120_000],
            ratio in 2i64..12,
            phase_points in 0i64..12,
            from_points in 0i64..40,
            points in 1i64..60,
            masks in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..6),
        ) {
            let coarse = fine * ratio;
            let base = 1_700_000_000_000 - 1_700_000_000_000 % coarse;
            // The fine entry starts before the asked range; the asked grid is on it.
            let fine_start = base;
            let fine_end = base + (from_points + points + 3) * coarse;
            let start = base + (phase_points % ratio) * fine + from_points * coarse;
            let end = start + (points - 1) * coarse;
            let stored = at_grid(fine_start, fine_end, fine, &masks);
            let phase = start.rem_euclid(coarse);
            let thinned = thin(&stored, Span { start_ms: start, end_ms: end }, phase, coarse)
                .expect("thins");
            let direct = at_grid(start, end, coarse, &masks);
            prop_assert_eq!(thinned.encode(), direct.encode());
        }
    }

    #[test]
    fn thinning_rejects_unordered_samples() {
        let unordered = QueryResponse::from_slice(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[2,"b"],[1,"a"]]}]}}"#,
        )
        .expect("valid");
        let span = Span {
            start_ms: 0,
            end_ms: 5_000,
        };
        assert!(matches!(
            thin(&unordered, span, 0, 1_000),
            Err(Error::BadResponse(_))
        ));
        assert!(thin(&unordered, span, 0, 0).is_err());
    }
}
