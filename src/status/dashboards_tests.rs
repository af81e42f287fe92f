use super::*;

fn facts(hits: u64, partial: u64, misses: u64) -> CacheFacts {
    CacheFacts {
        outcome: None,
        hits,
        partial,
        misses,
        skipped: 0,
    }
}

fn visit<'a>(
    tenant: Option<&'a str>,
    uid: &'a str,
    panel: Option<&'a str>,
    seconds: f64,
    cache: &'a CacheFacts,
) -> Visit<'a> {
    Visit {
        tenant,
        dashboard_uid: uid,
        panel_id: panel,
        query: Some("sum(rate(x[5m]))"),
        seconds,
        cache,
    }
}

#[test]
fn hit_ratio_and_slowest_panels_per_dashboard() {
    let d = Dashboards::new(10, 10);
    let (warm, cold) = (facts(3, 0, 1), facts(0, 1, 3));
    d.record(visit(None, "abc", Some("1"), 0.5, &warm));
    d.record(Visit {
        query: Some("slow one"),
        ..visit(None, "abc", Some("2"), 4.0, &cold)
    });
    d.record(visit(None, "abc", Some("2"), 1.0, &warm));
    d.record(visit(None, "other", None, 0.1, &warm));
    let snap = d.snapshot(&Visibility::All);
    assert_eq!(snap.len(), 2);
    let abc = &snap[0];
    assert_eq!((abc.uid.as_str(), abc.requests), ("abc", 3));
    assert_eq!(
        (abc.cache_hits, abc.cache_partial, abc.cache_misses),
        (6, 1, 5)
    );
    assert_eq!(abc.hit_ratio, Some(0.5));
    let panels: Vec<(&str, f64)> = abc
        .slowest_panels
        .iter()
        .map(|p| (p.panel_id.as_str(), p.max_seconds))
        .collect();
    assert_eq!(panels, [("2", 4.0), ("1", 0.5)]);
    assert_eq!(
        abc.slowest_panels[0].slowest_query.as_deref(),
        Some("slow one")
    );
    assert_eq!(abc.slowest_panels[0].mean_seconds, 2.5);
    assert_eq!(snap[1].uid, "other");
    assert!(snap[1].slowest_panels.is_empty());
}

#[test]
fn dashboards_and_panels_are_bounded_least_recently_seen_first() {
    let d = Dashboards::new(3, 2);
    let none = facts(0, 0, 0);
    for uid in ["a", "b", "c"] {
        d.record(visit(None, uid, None, 1.0, &none));
    }
    // "a" seen again, so "b" is the least recently seen when "d" arrives.
    d.record(visit(None, "a", None, 1.0, &none));
    d.record(visit(None, "d", None, 1.0, &none));
    let mut uids: Vec<String> = d
        .snapshot(&Visibility::All)
        .into_iter()
        .map(|s| s.uid)
        .collect();
    uids.sort();
    assert_eq!(uids, ["a", "c", "d"]);
    assert_eq!(d.snapshot(&Visibility::All)[0].hit_ratio, None);

    for panel in ["1", "2", "1", "3"] {
        d.record(visit(None, "a", Some(panel), 1.0, &none));
    }
    let a = d
        .snapshot(&Visibility::All)
        .into_iter()
        .find(|s| s.uid == "a")
        .expect("a kept");
    let mut panels: Vec<&str> = a
        .slowest_panels
        .iter()
        .map(|p| p.panel_id.as_str())
        .collect();
    panels.sort();
    assert_eq!(panels, ["1", "3"]);

    // Thousands of distinct dashboards from a hostile client: still three kept.
    for n in 0..5000 {
        d.record(visit(
            None,
            &format!("x{n}"),
            Some(&n.to_string()),
            1.0,
            &none,
        ));
    }
    assert_eq!(d.snapshot(&Visibility::All).len(), 3);
}

#[test]
fn long_values_are_cut_and_panels_listed_are_few() {
    let d = Dashboards::new(2, 100);
    let none = facts(0, 0, 0);
    let long_uid = "é".repeat(100);
    let long_query = "x".repeat(10_000);
    for n in 0..20 {
        d.record(Visit {
            query: Some(&long_query),
            ..visit(None, &long_uid, Some(&n.to_string()), f64::from(n), &none)
        });
    }
    let snap = d.snapshot(&Visibility::All);
    assert!(snap[0].uid.len() <= MAX_ID_BYTES && snap[0].uid.starts_with('é'));
    assert_eq!(snap[0].slowest_panels.len(), SLOWEST_PANELS);
    assert_eq!(snap[0].slowest_panels[0].panel_id, "19");
    let query = snap[0].slowest_panels[0]
        .slowest_query
        .as_deref()
        .unwrap_or("");
    assert_eq!(query.len(), MAX_QUERY_BYTES);
}

#[test]
fn readers_see_only_their_tenants_dashboards() {
    let d = Dashboards::new(10, 10);
    let none = facts(0, 0, 0);
    d.record(visit(Some("team-a"), "same-uid", None, 1.0, &none));
    d.record(visit(Some("team-b"), "same-uid", None, 1.0, &none));
    d.record(visit(None, "shared", None, 1.0, &none));
    let seen = |who: Visibility| -> Vec<(Option<String>, String)> {
        let mut v: Vec<_> = d
            .snapshot(&who)
            .into_iter()
            .map(|s| (s.tenant, s.uid))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        seen(Visibility::Tenant("team-a".into())),
        [(Some("team-a".into()), "same-uid".into())]
    );
    assert_eq!(seen(Visibility::Untenanted), [(None, "shared".into())]);
    assert_eq!(seen(Visibility::All).len(), 3);
}
