use super::*;

/// A bcrypt hash (cost 4) of "secret".
fn hash() -> String {
    bcrypt::hash("secret", 4).expect("hash")
}

fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
    WebConfig::parse(text, Path::new("/etc/frontend/web.yml"))
}

/// The field a refused file names.
fn refused_field(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("accepted: {c:?}\n{text}"),
        Err(WebConfigError::Field { field, .. }) => field,
        Err(e) => panic!("not a field error: {e}"),
    }
}

#[test]
fn empty_file_and_empty_sections_mean_plain_http_without_auth() {
    for text in [
        "",
        "# nothing\n",
        "tls_server_config:\n",
        "basic_auth_users: {}\n",
    ] {
        let c = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(c.tls, None, "{text:?}");
        assert!(c.users.is_empty());
        assert!(c.http2);
    }
}

#[test]
fn full_file_parses_with_paths_from_the_files_directory() {
    let h = hash();
    let text = format!(
        "tls_server_config:
  cert_file: certs/srv.pem
  key_file: /abs/srv.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
    X-XSS-Protection: ''
basic_auth_users:
  alice: {h}
  bob: '{h}'
auth_excluded_paths: [/metrics]
"
    );
    let c = parse(&text).expect("valid");
    let tls = c.tls.expect("TLS on");
    assert_eq!(
        tls.cert,
        PemSource::File(PathBuf::from("/etc/frontend/certs/srv.pem"))
    );
    assert_eq!(tls.key, PemSource::File(PathBuf::from("/abs/srv.key")));
    assert_eq!(
        tls.client_ca,
        Some(PemSource::File(PathBuf::from("/etc/frontend/ca.pem")))
    );
    assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls13, TlsVersion::Tls13)
    );
    assert!(!tls.prefer_server_cipher_suites);
    assert_eq!(tls.curve_preferences, ["X25519"]);
    assert!(!c.http2);
    // A blank header value leaves the header unset.
    let names: Vec<_> = c
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("")))
        .collect();
    assert_eq!(
        names,
        [
            ("strict-transport-security", "max-age=31536000"),
            ("x-frame-options", "deny")
        ]
    );
    assert_eq!(c.users.keys().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(c.auth_excluded_paths, ["/metrics"]);
}

#[test]
fn inline_pem_and_client_auth_names() {
    let c = parse(
        "tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n  key: k\n  client_auth_type: RequireClientCert\n",
    )
    .expect("valid");
    let tls = c.tls.expect("TLS on");
    assert!(matches!(tls.cert, PemSource::Inline(ref t) if t.starts_with("-----BEGIN")));
    // Prometheus' older name for RequireAnyClientCert.
    assert_eq!(tls.client_auth, ClientAuth::RequireAnyClientCert);
    for (name, expected) in [
        ("NoClientCert", ClientAuth::NoClientCert),
        ("RequestClientCert", ClientAuth::RequestClientCert),
        ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
    ] {
        let text = format!(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: {name}\n"
        );
        assert_eq!(
            parse(&text).expect(name).tls.expect("on").client_auth,
            expected
        );
    }
}

#[test]
fn every_kind_of_bad_field_is_named() {
    let h = hash();
    let tls = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
    let cases: Vec<(String, &str)> = vec![
        ("nonsense: 1\n".into(), "nonsense"),
        ("tls_server_config: [1]\n".into(), "tls_server_config"),
        (
            "tls_server_config:\n  cert_fle: a\n".into(),
            "tls_server_config.cert_fle",
        ),
        (
            "tls_server_config:\n  key_file: b\n".into(),
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n".into(),
            "tls_server_config.key_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  cert: x\n  key_file: b\n".into(),
            "tls_server_config.cert_file",
        ),
        (
            format!("{tls}  client_auth_type: Sometimes\n"),
            "tls_server_config.client_auth_type",
        ),
        (
            format!("{tls}  client_ca_file: ca.pem\n"),
            "tls_server_config.client_ca_file",
        ),
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
        ),
        (
            format!("{tls}  min_version: TLS11\n"),
            "tls_server_config.min_version",
        ),
        (
            format!("{tls}  max_version: SSL3\n"),
            "tls_server_config.max_version",
        ),
        (
            format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
        ),
        (
            format!("{tls}  prefer_server_cipher_suites: maybe\n"),
            "tls_server_config.prefer_server_cipher_suites",
        ),
        (
            format!("{tls}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [a]\n"),
            "tls_server_config.client_allowed_sans",
        ),
        (
            "http_server_config:\n  headers:\n    Server: me\n".into(),
            "http_server_config.headers.Server",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            "http_server_config.headers.X-Frame-Options",
        ),
        (
            "http_server_config:\n  http2: 3\n".into(),
            "http_server_config.http2",
        ),
        (
            "basic_auth_users:\n  alice: plaintext\n".into(),
            "basic_auth_users.alice",
        ),
        (
            format!("basic_auth_users:\n  'a:b': {h}\n"),
            "basic_auth_users.a:b",
        ),
        ("basic_auth_users: [alice]\n".into(), "basic_auth_users"),
        (
            "auth_excluded_paths: [metrics]\n".into(),
            "auth_excluded_paths",
        ),
        (
            "rate_limit:\n  interval: 1s\n  burst: 2\n".into(),
            "rate_limit",
        ),
        ("tls_server_config: {\n".into(), "tls_server_config"),
    ];
    let wrong: Vec<_> = cases
        .iter()
        .map(|(text, field)| (text, *field, refused_field(text)))
        .filter(|(_, want, got)| want != got)
        .collect();
    assert!(wrong.is_empty(), "(file, expected, named): {wrong:#?}");
}

#[test]
fn messages_name_the_file_field_and_value() {
    let err =
        parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n")
            .expect_err("refused");
    let msg = err.to_string();
    for part in [
        "/etc/frontend/web.yml",
        "tls_server_config.client_auth_type",
        "Sometimes",
    ] {
        assert!(msg.contains(part), "{part} in {msg}");
    }
    let err = WebConfig::load(Path::new("/nonexistent/web.yml")).expect_err("missing file");
    assert!(matches!(err, WebConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/web.yml"), "{err}");
}
