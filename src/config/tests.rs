use super::*;

#[test]
fn example_file_parses_and_matches_defaults() {
    let text = include_str!("../../config.example.toml");
    let config = Config::from_toml_str(text).expect("config.example.toml is valid");
    let defaults = Config::default();
    // The example documents the defaults; a drift between the two is a doc bug.
    assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
    // And it lists every field (a missing one would silently take its default above).
    let example: toml::Table = text.parse().expect("example is TOML");
    let all = toml::Table::try_from(&defaults).expect("defaults serialize");
    for (section, fields) in &all {
        let fields = fields.as_table().expect("sections are tables");
        let documented = example
            .get(section)
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| panic!("config.example.toml lacks [{section}]"));
        for field in fields.keys() {
            assert!(
                documented.contains_key(field),
                "config.example.toml lacks {section}.{field}"
            );
        }
    }
}

#[test]
fn unknown_fields_are_rejected() {
    let err =
        Config::from_toml_str("[downstream]\nurll = \"http://x\"\n").expect_err("typo must fail");
    assert!(err.to_string().contains("urll"), "{err}");
    assert!(Config::from_toml_str("[nope]\n").is_err());
}

#[test]
fn validate_names_the_field() {
    let cases = [
        (
            "[downstream]\nconnect_timeout = \"0s\"",
            "downstream.connect_timeout",
        ),
        (
            "[downstream]\nrequest_timeout = \"0s\"",
            "downstream.request_timeout",
        ),
        ("[downstream]\nurl = \"ftp://x\"", "downstream.url"),
        (
            "[downstream]\nurls = [\"http://a:9090\", \"b:9090\"]",
            "downstream.urls",
        ),
        ("[downstream]\ndeadline = \"0s\"", "downstream.deadline"),
        (
            "[downstream]\nejection_period = \"0s\"",
            "downstream.ejection_period",
        ),
        ("[retry]\nbudget_window = \"2m\"", "retry.budget_window"),
        ("[retry]\nbudget_percent = -1.0", "retry.budget_percent"),
        ("[retry]\nbudget_percent = nan", "retry.budget_percent"),
        (
            "[retry]\nmax_retries = 0\nbudget_window = \"0s\"",
            "retry.budget_window",
        ),
        (
            "[retry]\nbudget_min_per_second = 4000000000",
            "retry.budget_min_per_second",
        ),
        (
            "[retry]\nbackoff_base = \"5s\"\nbackoff_cap = \"1s\"",
            "retry.backoff_base",
        ),
        ("[downstream]\nurl = \"not a url\"", "downstream.url"),
        (
            "[downstream]\nurl = \"http://q:9090/?a=1\"",
            "downstream.url",
        ),
        (
            "[downstream]\nforward_headers = [\"bad header\"]",
            "downstream.forward_headers",
        ),
        ("[server]\nmax_body_bytes = 0", "server.max_body_bytes"),
        ("[server]\ncors_origin = \"(\"", "server.cors_origin"),
        (
            "[query_range]\nmax_query_parallelism = 0",
            "query_range.max_query_parallelism",
        ),
        (
            "[query_range]\nmax_inflight_pieces = 0",
            "query_range.max_inflight_pieces",
        ),
        (
            "[query_range]\nsplit_interval = \"10s\"",
            "query_range.split_interval",
        ),
        ("[log]\nlevel = \"lots=of=noise\"", "log.level"),
        ("[server]\nweb_config_file = \"\"", "server.web_config_file"),
        (
            "[server]\nauth_exempt_paths = [\"healthz\"]",
            "server.auth_exempt_paths",
        ),
        (
            "[server]\nuser_tenants = { alice = \"\" }",
            "server.user_tenants",
        ),
        (
            "[server]\nuser_tenants = { alice = \"a\\nb\" }",
            "server.user_tenants",
        ),
        ("[cache]\ntenant_header = \"x y\"", "cache.tenant_header"),
    ];
    for (text, field) in cases {
        let err = Config::from_toml_str(text).expect_err(text);
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
    assert!(
        Config::from_toml_str("[downstream]\nconnect_timeout = \"soon\"").is_err(),
        "bad duration"
    );
}

#[test]
fn env_overrides_apply_over_file() {
    let dir = std::env::temp_dir().join(format!("pf-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "[downstream]\nurl = \"http://file:9090\"\nconnect_timeout = \"9s\"\n",
    )
    .expect("write config");
    let env = [
        ("PROMQL_FRONTEND_DOWNSTREAM__CONNECT_TIMEOUT", "2s"),
        ("PROMQL_FRONTEND_SERVER__GZIP_RESPONSES", "false"),
        (
            "PROMQL_FRONTEND_DOWNSTREAM__FORWARD_HEADERS",
            "[\"Authorization\"]",
        ),
        ("PROMQL_FRONTEND_SERVER__WEB_CONFIG_FILE", "/etc/pf/web.yml"),
        (
            "PROMQL_FRONTEND_SERVER__USER_TENANTS",
            "{ alice = \"team-a\" }",
        ),
        ("PROMQL_FRONTEND_SLOW_QUERY_LOG__ADMIN_USERS", "[\"ops\"]"),
        ("PROMQL_FRONTEND_LISTEN", "ignored by the generic path"),
        ("HOME", "/root"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = Config::load(Some(&file), env).expect("loads");
    assert_eq!(config.downstream.url, "http://file:9090");
    assert_eq!(config.downstream.connect_timeout, Duration::from_secs(2));
    assert!(!config.server.gzip_responses);
    assert_eq!(config.downstream.forward_headers, vec!["Authorization"]);
    assert_eq!(
        config.server.web_config_file.as_deref(),
        Some(std::path::Path::new("/etc/pf/web.yml"))
    );
    assert_eq!(
        config.server.user_tenants.get("alice").map(String::as_str),
        Some("team-a")
    );
    assert_eq!(config.slow_query_log.admin_users, ["ops"]);
    let bad = Config::load(
        None,
        [("PROMQL_FRONTEND_DOWNSTREAM__NOPE".into(), "1".into())],
    );
    assert!(bad.expect_err("unknown field").to_string().contains("nope"));
    std::fs::remove_dir_all(&dir).ok();
}
