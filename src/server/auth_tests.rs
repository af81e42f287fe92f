use super::*;

fn users(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(u, pw)| ((*u).to_owned(), bcrypt::hash(pw, 4).expect("hash")))
        .collect()
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("header value")
}

#[tokio::test]
async fn right_credentials_pass_and_are_verified_once() {
    let auth = Authenticator::new();
    let users = users(&[("alice", "wonderland"), ("bob", "builder")]);
    for _ in 0..5 {
        let user = auth
            .check(&users, Some(&basic("alice", "wonderland")))
            .await;
        assert_eq!(user, Ok("alice".to_owned()));
    }
    assert_eq!(
        auth.bcrypt_runs(),
        1,
        "later requests are answered from memory"
    );
    assert_eq!(
        auth.check(&users, Some(&basic("bob", "builder"))).await,
        Ok("bob".to_owned())
    );
    assert_eq!(auth.bcrypt_runs(), 2);
}

#[tokio::test]
async fn wrong_and_missing_credentials_are_refused() {
    let auth = Authenticator::new();
    let users = users(&[("alice", "wonderland")]);
    assert_eq!(auth.check(&users, None).await, Err(AuthFailure::Missing));
    let bearer = HeaderValue::from_static("Bearer abc");
    assert_eq!(
        auth.check(&users, Some(&bearer)).await,
        Err(AuthFailure::Missing)
    );
    let garbage = HeaderValue::from_static("Basic !!!");
    assert_eq!(
        auth.check(&users, Some(&garbage)).await,
        Err(AuthFailure::Malformed)
    );
    let no_colon = HeaderValue::from_static("Basic YWxpY2U="); // "alice"
    assert_eq!(
        auth.check(&users, Some(&no_colon)).await,
        Err(AuthFailure::Malformed)
    );
    assert_eq!(
        auth.check(&users, Some(&basic("alice", "wrong"))).await,
        Err(AuthFailure::WrongCredentials)
    );
    assert_eq!(
        auth.check(&users, Some(&basic("mallory", "wonderland")))
            .await,
        Err(AuthFailure::WrongCredentials)
    );
    // A verified password does not let a different one through.
    assert!(
        auth.check(&users, Some(&basic("alice", "wonderland")))
            .await
            .is_ok()
    );
    assert_eq!(
        auth.check(&users, Some(&basic("alice", "wonderlan"))).await,
        Err(AuthFailure::WrongCredentials)
    );
}

#[tokio::test]
async fn refused_attempts_are_remembered_and_a_new_hash_starts_afresh() {
    let auth = Authenticator::new();
    let old = users(&[("alice", "wonderland")]);
    for _ in 0..3 {
        assert!(
            auth.check(&old, Some(&basic("alice", "nope")))
                .await
                .is_err()
        );
    }
    assert_eq!(
        auth.bcrypt_runs(),
        1,
        "a repeated wrong password costs one run"
    );
    assert!(
        auth.check(&old, Some(&basic("alice", "wonderland")))
            .await
            .is_ok()
    );
    // The file now has a new password for alice: the old one no longer passes, even
    // though it was verified before, and the new one does.
    let new = users(&[("alice", "looking-glass")]);
    assert_eq!(
        auth.check(&new, Some(&basic("alice", "wonderland"))).await,
        Err(AuthFailure::WrongCredentials)
    );
    assert!(
        auth.check(&new, Some(&basic("alice", "looking-glass")))
            .await
            .is_ok()
    );
    // A removed user is refused although it was verified before.
    let none = users(&[("bob", "builder")]);
    assert_eq!(
        auth.check(&none, Some(&basic("alice", "looking-glass")))
            .await,
        Err(AuthFailure::WrongCredentials)
    );
}

#[test]
fn credentials_decode_like_go() {
    let lower = HeaderValue::from_static("basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=");
    assert_eq!(
        basic_credentials(&lower),
        Ok(("alice".to_owned(), b"pw:with:colons".to_vec())),
        "scheme in any case; the password keeps later colons"
    );
    let empty = HeaderValue::from_static("Basic Og=="); // ":"
    assert_eq!(basic_credentials(&empty), Ok((String::new(), Vec::new())));
}

#[test]
fn unauthorized_answer_challenges_for_basic_auth() {
    let resp = unauthorized();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(challenge.starts_with("Basic realm=\""), "{challenge}");
}

#[test]
fn tenant_mapping_pins_mapped_users_only() {
    let map: HashMap<String, HeaderValue> = [("alice", "team-a"), ("bob", "team-b")]
        .into_iter()
        .map(|(u, t)| (u.to_owned(), HeaderValue::from_static(t)))
        .collect();
    assert_eq!(
        tenant_of(&map, Some("alice")),
        Some(&HeaderValue::from_static("team-a"))
    );
    assert_eq!(
        tenant_of(&map, Some("bob")),
        Some(&HeaderValue::from_static("team-b"))
    );
    assert_eq!(tenant_of(&map, Some("ops")), None);
    assert_eq!(tenant_of(&map, None), None);
}

#[test]
fn slow_query_visibility_table() {
    let none = HashSet::new();
    let admins: HashSet<String> = ["ops".to_owned()].into();
    let cases = [
        // (user, tenant, admins, expected)
        (None, None, &none, Visibility::All),
        (
            None,
            Some("team-a"),
            &none,
            Visibility::Tenant("team-a".into()),
        ),
        (
            Some("alice"),
            Some("team-a"),
            &admins,
            Visibility::Tenant("team-a".into()),
        ),
        (Some("ops"), None, &admins, Visibility::All),
        (Some("ops"), Some("team-a"), &admins, Visibility::All),
        (Some("carol"), None, &admins, Visibility::Untenanted),
        (None, None, &admins, Visibility::Untenanted),
    ];
    for (user, tenant, admins, expected) in cases {
        assert_eq!(
            slow_query_visibility(user, tenant, admins),
            expected,
            "{user:?} {tenant:?}"
        );
    }
}
