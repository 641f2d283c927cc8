//! Table-driven cases with expectations worked out by hand from the algorithm in the
//! module comment (reference `proxmox.md` §4.3), then properties over random inputs.
//!
//! Every case runs in UTC (`Zone::Fixed(0)`) unless it says otherwise, so the
//! expectations do not depend on the machine's time zone. Weekdays are noted for the
//! week cases; ISO weeks were checked against a printed calendar.

use proptest::prelude::*;

use super::*;
use crate::calendar::utc_timestamp;

fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    utc_timestamp(y, mo, d, h, mi, s)
}

fn noon(y: i64, mo: u32, d: u32) -> i64 {
    at(y, mo, d, 12, 0, 0)
}

struct Case {
    name: &'static str,
    files: Vec<(&'static str, i64)>,
    policy: Policy,
    zone: Zone,
    keep: &'static [&'static str],
}

fn pol() -> Policy {
    Policy::default()
}

fn run(case: &Case) -> (Vec<&'static str>, Plan) {
    let items: Vec<Item> = case
        .files
        .iter()
        .map(|&(_, time)| Item { time, size: 1 })
        .collect();
    let plan = plan(&items, &case.policy, case.zone);
    let mut kept: Vec<&str> = plan.kept().map(|i| case.files[i].0).collect();
    kept.sort_unstable();
    (kept, plan)
}

fn check(case: &Case) -> Plan {
    let (kept, plan) = run(case);
    let mut want = case.keep.to_vec();
    want.sort_unstable();
    assert_eq!(kept, want, "case '{}'", case.name);
    plan
}

#[test]
fn table() {
    let utc = Zone::Fixed(0);
    // The reference's verified dry run (§4.6): "today" is Saturday 2026-03-21, files 0, 1,
    // 2, 10, 11, 12, 13, 20, 40, 70 and 100 days old, -l 3 -d 5 -w 3 -m 1.
    //   days:   03-21, 03-20, 03-19, 03-11 (Wed, W11), 03-10 (Tue, W11)  -> 5 kept
    //   weeks:  only weeks before W11: 03-09 (-12, Mon) is in W11 -> skipped;
    //           W10 03-08 (-13), W09 03-01 (-20), W07 02-09 (-40)        -> 3 kept
    //   months: only months before 2026-02: 2026-01 01-10 (-70)          -> 1 kept
    //   -100 (2025-12-11) and -12 are pruned; -l 3 adds nothing new.
    let sat = noon(2026, 3, 21);
    let ago = |d: i64| sat - d * 86_400;
    let reference = vec![
        ("d0", ago(0)),
        ("d1", ago(1)),
        ("d2", ago(2)),
        ("d10", ago(10)),
        ("d11", ago(11)),
        ("d12", ago(12)),
        ("d13", ago(13)),
        ("d20", ago(20)),
        ("d40", ago(40)),
        ("d70", ago(70)),
        ("d100", ago(100)),
    ];
    let seed_policy = Policy {
        last: Some(3),
        days: Some(5),
        weeks: Some(3),
        months: Some(1),
        ..pol()
    };
    // The same ages from Friday 2026-03-20: -11 is Monday 03-09 (W11) and -12 Sunday
    // 03-08 (W10), so now -12 is the weekly keep of W10 and -13 (same week) is pruned;
    // W09 02-28 (-20), W06 02-08 (-40); month 2026-01 (-70); -100 pruned.
    let fri = noon(2026, 3, 20);
    let ago_fri = |d: i64| fri - d * 86_400;
    let friday: Vec<(&str, i64)> = reference
        .iter()
        .map(|&(n, _)| (n, ago_fri(n[1..].parse().unwrap())))
        .collect();

    let cases = vec![
        Case {
            name: "reference example, Saturday",
            files: reference.clone(),
            policy: seed_policy.clone(),
            zone: utc,
            keep: &["d0", "d1", "d2", "d10", "d11", "d13", "d20", "d40", "d70"],
        },
        Case {
            name: "reference example, Friday",
            files: friday,
            policy: seed_policy.clone(),
            zone: utc,
            keep: &["d0", "d1", "d2", "d10", "d11", "d12", "d20", "d40", "d70"],
        },
        Case {
            name: "days count buckets with files, however old (gaps)",
            files: vec![
                ("20", noon(2026, 3, 20)),
                ("19", noon(2026, 3, 19)),
                ("18", noon(2026, 3, 18)),
                ("10", noon(2026, 3, 10)),
                ("09", noon(2026, 3, 9)),
            ],
            policy: Policy {
                days: Some(5),
                ..pol()
            },
            zone: utc,
            keep: &["20", "19", "18", "10", "09"],
        },
        Case {
            name: "days: fewer buckets than files",
            files: vec![
                ("20", noon(2026, 3, 20)),
                ("19", noon(2026, 3, 19)),
                ("18", noon(2026, 3, 18)),
                ("10", noon(2026, 3, 10)),
                ("09", noon(2026, 3, 9)),
            ],
            policy: Policy {
                days: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &["20", "19", "18"],
        },
        Case {
            name: "days: the newest file of each day, midnight edges",
            files: vec![
                ("20-08", at(2026, 3, 20, 8, 0, 0)),
                ("20-18", at(2026, 3, 20, 18, 0, 0)),
                ("19-2359", at(2026, 3, 19, 23, 59, 59)),
                ("19-0000", at(2026, 3, 19, 0, 0, 0)),
                ("18", noon(2026, 3, 18)),
            ],
            policy: Policy {
                days: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["20-18", "19-2359"],
        },
        Case {
            name: "hours",
            files: vec![
                ("10:05", at(2026, 3, 20, 10, 5, 0)),
                ("10:40", at(2026, 3, 20, 10, 40, 0)),
                ("11:10", at(2026, 3, 20, 11, 10, 0)),
                ("13:00", at(2026, 3, 20, 13, 0, 0)),
                ("09:59", at(2026, 3, 20, 9, 59, 0)),
            ],
            policy: Policy {
                hours: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &["13:00", "11:10", "10:40"],
        },
        Case {
            name: "minutes (hidden option)",
            files: vec![
                ("00:10", at(2026, 3, 20, 10, 0, 10)),
                ("00:50", at(2026, 3, 20, 10, 0, 50)),
                ("01:00", at(2026, 3, 20, 10, 1, 0)),
                ("03:59", at(2026, 3, 20, 10, 3, 59)),
            ],
            policy: Policy {
                minutes: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["03:59", "01:00"],
        },
        Case {
            // 2020 has 53 ISO weeks: 2020-12-28 (Mon) .. 2021-01-03 (Sun) is 2020-W53.
            name: "weeks: 2020-W53 / 2021-W01",
            files: vec![
                ("2021-01-04 Mon W01", noon(2021, 1, 4)),
                ("2021-01-03 Sun W53", noon(2021, 1, 3)),
                ("2021-01-01 Fri W53", noon(2021, 1, 1)),
                ("2020-12-28 Mon W53", noon(2020, 12, 28)),
                ("2020-12-27 Sun W52", noon(2020, 12, 27)),
            ],
            policy: Policy {
                weeks: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["2021-01-04 Mon W01", "2021-01-03 Sun W53"],
        },
        Case {
            name: "weeks: 2020-W53 / 2021-W01, one more week",
            files: vec![
                ("2021-01-04 Mon W01", noon(2021, 1, 4)),
                ("2021-01-03 Sun W53", noon(2021, 1, 3)),
                ("2021-01-01 Fri W53", noon(2021, 1, 1)),
                ("2020-12-28 Mon W53", noon(2020, 12, 28)),
                ("2020-12-27 Sun W52", noon(2020, 12, 27)),
            ],
            policy: Policy {
                weeks: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &[
                "2021-01-04 Mon W01",
                "2021-01-03 Sun W53",
                "2020-12-27 Sun W52",
            ],
        },
        Case {
            // 2020-W01 starts on Monday 2019-12-30: ISO year and calendar year differ.
            name: "weeks: ISO year 2020 starts in 2019",
            files: vec![
                ("2020-01-05 Sun 2020-W01", noon(2020, 1, 5)),
                ("2019-12-30 Mon 2020-W01", noon(2019, 12, 30)),
                ("2019-12-29 Sun 2019-W52", noon(2019, 12, 29)),
                ("2019-12-23 Mon 2019-W52", noon(2019, 12, 23)),
            ],
            policy: Policy {
                weeks: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["2020-01-05 Sun 2020-W01", "2019-12-29 Sun 2019-W52"],
        },
        Case {
            name: "months with a gap (no April)",
            files: vec![
                ("05-01", noon(2026, 5, 1)),
                ("03-31", noon(2026, 3, 31)),
                ("02-01", noon(2026, 2, 1)),
                ("01-31", noon(2026, 1, 31)),
                ("01-15", noon(2026, 1, 15)),
            ],
            policy: Policy {
                months: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &["05-01", "03-31", "02-01"],
        },
        Case {
            name: "quarters across a year",
            files: vec![
                ("2026-04-01 Q2", noon(2026, 4, 1)),
                ("2026-03-31 Q1", noon(2026, 3, 31)),
                ("2026-01-01 Q1", noon(2026, 1, 1)),
                ("2025-12-31 Q4", noon(2025, 12, 31)),
                ("2025-10-01 Q4", noon(2025, 10, 1)),
                ("2025-09-30 Q3", noon(2025, 9, 30)),
            ],
            policy: Policy {
                quarters: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &["2026-04-01 Q2", "2026-03-31 Q1", "2025-12-31 Q4"],
        },
        Case {
            name: "years, one second apart at the edge",
            files: vec![
                ("2025-01-01 00:00:00", at(2025, 1, 1, 0, 0, 0)),
                ("2024-12-31 23:59:59", at(2024, 12, 31, 23, 59, 59)),
                ("2024-01-01", at(2024, 1, 1, 0, 0, 0)),
                ("2023-06-01", noon(2023, 6, 1)),
            ],
            policy: Policy {
                years: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["2025-01-01 00:00:00", "2024-12-31 23:59:59"],
        },
        Case {
            name: "years with a gap year",
            files: vec![
                ("2025-01-01 00:00:00", at(2025, 1, 1, 0, 0, 0)),
                ("2024-12-31 23:59:59", at(2024, 12, 31, 23, 59, 59)),
                ("2024-01-01", at(2024, 1, 1, 0, 0, 0)),
                ("2021-06-01", noon(2021, 6, 1)),
            ],
            policy: Policy {
                years: Some(5),
                ..pol()
            },
            zone: utc,
            keep: &["2025-01-01 00:00:00", "2024-12-31 23:59:59", "2021-06-01"],
        },
        Case {
            // Blocks of 13 ISO weeks: W01-W13 is block 1, W14-W26 block 2.
            name: "week13 blocks",
            files: vec![
                ("2026-03-30 Mon W14 b2", noon(2026, 3, 30)),
                ("2026-03-29 Sun W13 b1", noon(2026, 3, 29)),
                ("2026-01-01 Thu W01 b1", noon(2026, 1, 1)),
                ("2025-12-29 Mon 2026-W01 b1", noon(2025, 12, 29)),
                ("2025-12-28 Sun 2025-W52 b4", noon(2025, 12, 28)),
            ],
            policy: Policy {
                week13: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &[
                "2026-03-30 Mon W14 b2",
                "2026-03-29 Sun W13 b1",
                "2025-12-28 Sun 2025-W52 b4",
            ],
        },
        Case {
            // days keeps Wed 03-18 (W12); weeks then skips all of W12, so Mon 03-16 is
            // pruned although weeks has room; W11 keeps its newest, Thu 03-12.
            name: "hierarchical cut-off skips the finer mode's bucket",
            files: vec![
                ("03-18 Wed W12", noon(2026, 3, 18)),
                ("03-16 Mon W12", noon(2026, 3, 16)),
                ("03-12 Thu W11", noon(2026, 3, 12)),
                ("03-10 Tue W11", noon(2026, 3, 10)),
            ],
            policy: Policy {
                days: Some(1),
                weeks: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["03-18 Wed W12", "03-12 Thu W11"],
        },
        Case {
            // hours keeps 13:00 and 12:00 on 03-20; days skips 03-20 entirely and keeps
            // the newest of 03-19; months skips March; years skips 2026 and keeps 2025.
            name: "hours, days, months, years in a chain",
            files: vec![
                ("03-20 13:00", at(2026, 3, 20, 13, 0, 0)),
                ("03-20 12:00", at(2026, 3, 20, 12, 0, 0)),
                ("03-20 08:00", at(2026, 3, 20, 8, 0, 0)),
                ("03-19 22:00", at(2026, 3, 19, 22, 0, 0)),
                ("03-19 09:00", at(2026, 3, 19, 9, 0, 0)),
                ("02-10", noon(2026, 2, 10)),
                ("2025-11-01", noon(2025, 11, 1)),
                ("2025-02-01", noon(2025, 2, 1)),
            ],
            policy: Policy {
                hours: Some(2),
                days: Some(1),
                months: Some(1),
                years: Some(1),
                ..pol()
            },
            zone: utc,
            keep: &[
                "03-20 13:00",
                "03-20 12:00",
                "03-19 22:00",
                "02-10",
                "2025-11-01",
            ],
        },
        Case {
            name: "--last on top of a mode",
            files: vec![
                ("20 10:00", at(2026, 3, 20, 10, 0, 0)),
                ("20 09:00", at(2026, 3, 20, 9, 0, 0)),
                ("19", noon(2026, 3, 19)),
                ("18", noon(2026, 3, 18)),
            ],
            policy: Policy {
                days: Some(1),
                last: Some(3),
                ..pol()
            },
            zone: utc,
            keep: &["20 10:00", "20 09:00", "19"],
        },
        Case {
            name: "--last alone",
            files: vec![
                ("a", noon(2026, 3, 20)),
                ("b", noon(2026, 3, 19)),
                ("c", noon(2026, 3, 18)),
            ],
            policy: Policy {
                last: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["a", "b"],
        },
        Case {
            name: "no rules keeps everything",
            files: vec![("a", noon(2026, 3, 20)), ("b", noon(2020, 3, 19))],
            policy: pol(),
            zone: utc,
            keep: &["a", "b"],
        },
        Case {
            name: "no files",
            files: vec![],
            policy: seed_policy.clone(),
            zone: utc,
            keep: &[],
        },
        Case {
            // Equal times keep the input order: the first is the newest.
            name: "ties keep the caller's order",
            files: vec![("first", noon(2026, 3, 20)), ("second", noon(2026, 3, 20))],
            policy: Policy {
                days: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["first"],
        },
        // Local time decides the buckets: 23:30 and 00:10 UTC are two days in UTC, the
        // same day at UTC+1, and at UTC-5 all three files fall on 03-19.
        Case {
            name: "zone UTC",
            files: vec![
                ("19 23:30Z", at(2026, 3, 19, 23, 30, 0)),
                ("20 00:10Z", at(2026, 3, 20, 0, 10, 0)),
                ("19 12:00Z", at(2026, 3, 19, 12, 0, 0)),
            ],
            policy: Policy {
                days: Some(2),
                ..pol()
            },
            zone: utc,
            keep: &["20 00:10Z", "19 23:30Z"],
        },
        Case {
            name: "zone UTC+1",
            files: vec![
                ("19 23:30Z", at(2026, 3, 19, 23, 30, 0)),
                ("20 00:10Z", at(2026, 3, 20, 0, 10, 0)),
                ("19 12:00Z", at(2026, 3, 19, 12, 0, 0)),
            ],
            policy: Policy {
                days: Some(2),
                ..pol()
            },
            zone: Zone::Fixed(3600),
            keep: &["20 00:10Z", "19 12:00Z"],
        },
        Case {
            name: "zone UTC-5",
            files: vec![
                ("19 23:30Z", at(2026, 3, 19, 23, 30, 0)),
                ("20 00:10Z", at(2026, 3, 20, 0, 10, 0)),
                ("19 12:00Z", at(2026, 3, 19, 12, 0, 0)),
            ],
            policy: Policy {
                days: Some(2),
                ..pol()
            },
            zone: Zone::Fixed(-5 * 3600),
            keep: &["20 00:10Z"],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn reasons_and_messages() {
    let files = vec![
        ("20 10:00", at(2026, 3, 20, 10, 0, 0)),
        ("20 09:00", at(2026, 3, 20, 9, 0, 0)),
        ("19", noon(2026, 3, 19)),
        ("18", noon(2026, 3, 18)),
    ];
    let case = Case {
        name: "reasons",
        files,
        policy: Policy {
            days: Some(1),
            last: Some(3),
            ..pol()
        },
        zone: Zone::Fixed(0),
        keep: &["20 10:00", "20 09:00", "19"],
    };
    let plan = check(&case);
    let msgs: Vec<String> = plan.reasons.iter().map(Reason::message).collect();
    assert_eq!(
        msgs,
        [
            "Keeping for mode 'days' 01 / 01",
            "Keeping last 02/03",
            "Keeping last 03/03",
            "Pruning: not matched by any retention rule",
        ]
    );
    assert_eq!(
        plan.reasons[0],
        Reason::Mode {
            mode: Mode::Days,
            n: 1,
            of: 1,
            bucket: "2026-03-20".into()
        }
    );
}

#[test]
fn bucket_keys_print_like_retentions() {
    let c = Zone::Fixed(0).civil(at(2021, 1, 3, 7, 8, 9));
    let keys: Vec<String> = MODES.iter().map(|m| m.key(c).to_string()).collect();
    assert_eq!(
        keys,
        [
            "2021-01-03-07-08",
            "2021-01-03-07",
            "2021-01-03",
            "2020-W53",
            "2021-01",
            "2021-Q1",
            "2020-week13-5",
            "2021",
        ]
    );
}

#[test]
fn filters() {
    let now = noon(2026, 3, 20);
    let items = [
        Item {
            time: now,
            size: 100,
        },
        Item {
            time: now - 86_400,
            size: 200,
        },
        Item {
            time: now - 2 * 86_400,
            size: 300,
        },
        Item {
            time: now - 3 * 86_400,
            size: 400,
        },
    ];
    let base = Policy {
        days: Some(5),
        now,
        ..pol()
    };
    let p = plan(
        &items,
        &Policy {
            max_files: Some(2),
            ..base.clone()
        },
        Zone::Fixed(0),
    );
    assert_eq!(p.kept().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(p.reasons[2], Reason::MaxFiles { index: 3, max: 2 });
    assert_eq!(
        p.reasons[3].message(),
        "Filtering: max total count of files exceeded: 04 > 02"
    );

    // Running total 100, 300 (> 250: filtered), 600, 1000.
    let p = plan(
        &items,
        &Policy {
            max_size: Some((250, "250".into())),
            ..base.clone()
        },
        Zone::Fixed(0),
    );
    assert_eq!(p.kept().collect::<Vec<_>>(), [0]);
    assert_eq!(
        p.reasons[1].message(),
        "Filtering: max total size exceeded: 300 > 250"
    );

    // Two days: a file exactly two days old is filtered (<=), one day old is not.
    let p = plan(
        &items,
        &Policy {
            max_age: Some((2 * 86_400, "2d".into())),
            ..base
        },
        Zone::Fixed(0),
    );
    assert_eq!(p.kept().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        p.reasons[2].message(),
        "Filtering: max total age exceeded: 2d > 2d"
    );
}

#[test]
fn sizes_and_ages() {
    assert_eq!(parse_size("12").unwrap(), 12);
    assert_eq!(parse_size("10.5M").unwrap(), 11_010_048);
    assert_eq!(parse_size("500 g").unwrap(), 500 << 30);
    assert!(parse_size("5X").is_err());
    assert!(parse_size("M").is_err());
    assert_eq!(parse_age("3600").unwrap(), 3600);
    assert_eq!(parse_age("1 d").unwrap(), 86_400);
    assert_eq!(parse_age("1m").unwrap(), 30 * 86_400);
    assert_eq!(parse_age("1.5h").unwrap(), 5400);
    assert!(parse_age("0.1").is_err());
    assert!(parse_age("1x").is_err());
    assert_eq!(format_size(1536), "1.5K");
    assert_eq!(format_size(1024), "1K");
    assert_eq!(format_time(90 * 86_400), "1q");
    assert_eq!(format_time(59), "59");
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn arb_policy() -> impl Strategy<Value = Policy> {
    let n = || proptest::option::weighted(0.4, 1u32..6);
    ((n(), n(), n(), n()), (n(), n(), n(), n()), n()).prop_map(
        |((minutes, hours, days, weeks), (months, quarters, week13, years), last)| Policy {
            minutes,
            hours,
            days,
            weeks,
            months,
            quarters,
            week13,
            years,
            last,
            ..Policy::default()
        },
    )
}

/// Times over up to ~6 years, rounded now and then so that ties occur.
fn arb_items() -> impl Strategy<Value = Vec<Item>> {
    let base = noon(2026, 3, 20);
    proptest::collection::vec((0i64..6 * 365 * 86_400, any::<bool>()), 0..40).prop_map(move |v| {
        v.into_iter()
            .map(|(back, round)| Item {
                time: if round {
                    base - back / 3600 * 3600
                } else {
                    base - back
                },
                size: 1,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// kept ∪ pruned = all, disjoint; `order` is a permutation, newest first.
    #[test]
    fn kept_and_pruned_partition_the_files(items in arb_items(), policy in arb_policy(), offset in -14i64..15) {
        let p = plan(&items, &policy, Zone::Fixed(offset * 3600));
        let kept: std::collections::BTreeSet<usize> = p.kept().collect();
        let pruned: std::collections::BTreeSet<usize> = p.pruned().collect();
        prop_assert!(kept.is_disjoint(&pruned));
        prop_assert_eq!(kept.len() + pruned.len(), items.len());
        let mut order = p.order.clone();
        order.sort_unstable();
        prop_assert_eq!(order, (0..items.len()).collect::<Vec<_>>());
        prop_assert!(p.order.windows(2).all(|w| items[w[0]].time >= items[w[1]].time));
        if !policy.has_rules() {
            prop_assert_eq!(kept.len(), items.len());
        }
    }

    /// `--last N` keeps the N newest, whatever else is asked.
    #[test]
    fn the_n_newest_are_kept_with_last(items in arb_items(), policy in arb_policy(), n in 1u32..10) {
        let policy = Policy { last: Some(n), ..policy };
        let p = plan(&items, &policy, Zone::Fixed(0));
        for &i in p.order.iter().take(n as usize) {
            prop_assert!(p.reasons[i].keeps(), "item {} (one of the {} newest) was pruned", i, n);
        }
    }

    /// A mode never keeps more than its count, and never two files of one bucket.
    #[test]
    fn a_mode_keeps_at_most_n_distinct_buckets(items in arb_items(), policy in arb_policy()) {
        let p = plan(&items, &policy, Zone::Fixed(0));
        for mode in MODES {
            let buckets: Vec<&String> = p.reasons.iter().filter_map(|r| match r {
                Reason::Mode { mode: m, bucket, .. } if *m == mode => Some(bucket),
                _ => None,
            }).collect();
            let distinct: std::collections::BTreeSet<&String> = buckets.iter().copied().collect();
            prop_assert_eq!(distinct.len(), buckets.len());
            prop_assert!(buckets.len() as u32 <= policy.count(mode).unwrap_or(0));
        }
    }
}
