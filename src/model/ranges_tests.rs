use proptest::prelude::*;

use super::*;

const S: i64 = 1_000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;
const D: i64 = 24 * H;
/// 2023-11-14T00:00:00Z, a UTC midnight.
const MIDNIGHT: i64 = 1_699_920_000_000;

/// name, start, end, step, expected pieces.
type Case = (&'static str, i64, i64, i64, Result<Vec<Piece>, NoSplit>);

fn p(start_ms: i64, end_ms: i64) -> Piece {
    Piece { start_ms, end_ms }
}

#[test]
fn boundary_table() {
    let cases: Vec<Case> = vec![
        (
            "aligned start, one midnight",
            MIDNIGHT - H,
            MIDNIGHT + H,
            15 * S,
            Ok(vec![
                p(MIDNIGHT - H, MIDNIGHT - 15 * S),
                p(MIDNIGHT, MIDNIGHT + H),
            ]),
        ),
        (
            "unaligned start: grid points keep their phase",
            MIDNIGHT - H + 7 * S,
            MIDNIGHT + H,
            60 * S,
            Ok(vec![
                p(MIDNIGHT - H + 7 * S, MIDNIGHT - 53 * S),
                p(MIDNIGHT + 7 * S, MIDNIGHT + H - 53 * S),
            ]),
        ),
        (
            "7s step does not divide a day",
            MIDNIGHT - 20 * S,
            MIDNIGHT + 20 * S,
            7 * S,
            Ok(vec![
                p(MIDNIGHT - 20 * S, MIDNIGHT - 6 * S),
                p(MIDNIGHT + S, MIDNIGHT + 15 * S),
            ]),
        ),
        (
            "13m step",
            MIDNIGHT - 30 * M,
            MIDNIGHT + 30 * M,
            13 * M,
            Ok(vec![
                p(MIDNIGHT - 30 * M, MIDNIGHT - 4 * M),
                p(MIDNIGHT + 9 * M, MIDNIGHT + 22 * M),
            ]),
        ),
        (
            "17m step across two midnights",
            MIDNIGHT - 20 * M,
            MIDNIGHT + D + 20 * M,
            17 * M,
            Ok(vec![
                p(MIDNIGHT - 20 * M, MIDNIGHT - 3 * M),
                p(MIDNIGHT + 14 * M, MIDNIGHT + D - 15 * M),
                p(MIDNIGHT + D + 2 * M, MIDNIGHT + D + 19 * M),
            ]),
        ),
        (
            "1h7m step",
            MIDNIGHT - 2 * H,
            MIDNIGHT + 2 * H,
            H + 7 * M,
            Ok(vec![
                p(MIDNIGHT - 2 * H, MIDNIGHT - 53 * M),
                p(MIDNIGHT + 14 * M, MIDNIGHT + 81 * M),
            ]),
        ),
        (
            "end between grid points: last piece ends at the last grid point",
            MIDNIGHT - 10 * S,
            MIDNIGHT + 29 * S,
            10 * S,
            Ok(vec![
                p(MIDNIGHT - 10 * S, MIDNIGHT - 10 * S),
                p(MIDNIGHT, MIDNIGHT + 20 * S),
            ]),
        ),
        (
            "a grid point exactly at midnight starts the next piece",
            MIDNIGHT - 30 * S,
            MIDNIGHT,
            30 * S,
            Ok(vec![
                p(MIDNIGHT - 30 * S, MIDNIGHT - 30 * S),
                p(MIDNIGHT, MIDNIGHT),
            ]),
        ),
        (
            "within one day",
            MIDNIGHT + H,
            MIDNIGHT + 5 * H,
            15 * S,
            Err(NoSplit::SingleInterval),
        ),
        (
            "start == end",
            MIDNIGHT + H,
            MIDNIGHT + H,
            15 * S,
            Err(NoSplit::SingleInterval),
        ),
        (
            "start == end at midnight",
            MIDNIGHT,
            MIDNIGHT,
            15 * S,
            Err(NoSplit::SingleInterval),
        ),
        (
            "step equal to the interval",
            MIDNIGHT,
            MIDNIGHT + 5 * D,
            D,
            Err(NoSplit::StepNotBelowInterval),
        ),
        (
            "step larger than the interval",
            MIDNIGHT,
            MIDNIGHT + 5 * D,
            2 * D,
            Err(NoSplit::StepNotBelowInterval),
        ),
        (
            "sub-millisecond step",
            MIDNIGHT,
            MIDNIGHT + 5 * D,
            0,
            Err(NoSplit::SubMillisecondStep),
        ),
        ("pre-1970 start", -D, D, H, Err(NoSplit::BeforeEpoch)),
        (
            "negative start and end",
            -3 * D,
            -D,
            H,
            Err(NoSplit::BeforeEpoch),
        ),
        (
            "end before start",
            MIDNIGHT,
            MIDNIGHT - D,
            H,
            Err(NoSplit::EmptyRange),
        ),
        (
            "starting at the epoch",
            0,
            D + H,
            H,
            Ok(vec![p(0, D - H), p(D, D + H)]),
        ),
    ];
    for (name, start, end, step, want) in cases {
        assert_eq!(split_range(start, end, step, D), want, "{name}");
    }
    assert_eq!(
        split_range(MIDNIGHT, MIDNIGHT + 3 * D, H, 0),
        Err(NoSplit::Disabled)
    );
}

#[test]
fn thirty_days_gives_thirty_one_pieces() {
    let pieces =
        split_range(MIDNIGHT + 5 * H, MIDNIGHT + 30 * D + 5 * H, 60 * S, D).expect("splits");
    assert_eq!(pieces.len(), 31);
    assert_eq!(pieces[1].start_ms, MIDNIGHT + D);
    assert_eq!(pieces[30].end_ms, MIDNIGHT + 30 * D + 5 * H);
}

#[test]
fn extreme_times_do_not_overflow() {
    let pieces = split_range(i64::MAX - 3 * D, i64::MAX, H, D).expect("splits");
    assert!(pieces.len() >= 3);
    assert!(pieces.iter().all(|p| p.start_ms <= p.end_ms));
}

proptest! {
    /// Pieces are disjoint, in order, cover exactly the original grid, and each lies
    /// inside one interval.
    #[test]
    fn pieces_cover_the_grid_exactly(
        start in 0i64..4_000_000_000_000,
        len in 0i64..(10 * D),
        step in 1i64..(3 * H),
        interval in prop::sample::select(vec![H, 6 * H, D, 7 * D, 13 * M + 7]),
    ) {
        let end = start + len;
        match split_range(start, end, step, interval) {
            Ok(pieces) => {
                let mut expected = start;
                for piece in &pieces {
                    prop_assert_eq!(piece.start_ms, expected, "no gap, no overlap");
                    prop_assert!(piece.start_ms <= piece.end_ms);
                    prop_assert_eq!((piece.end_ms - piece.start_ms) % step, 0, "ends on the grid");
                    prop_assert_eq!(
                        piece.start_ms.div_euclid(interval),
                        piece.end_ms.div_euclid(interval),
                        "inside one interval"
                    );
                    expected = piece.end_ms + step;
                }
                let last = start + (end - start) / step * step;
                prop_assert_eq!(pieces.last().map(|p| p.end_ms), Some(last), "covers the grid");
                prop_assert!(pieces.len() >= 2);
            }
            Err(NoSplit::SingleInterval) => {
                let last = start + (end - start) / step * step;
                prop_assert_eq!(start.div_euclid(interval), last.div_euclid(interval));
            }
            Err(NoSplit::StepNotBelowInterval) => prop_assert!(step >= interval),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
