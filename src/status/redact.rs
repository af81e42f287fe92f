//! The effective configuration as the status page shows it: every secret replaced by
//! `<secret>`, so the page can be shown to anyone who may read the slow-query log.
//!
//! What counts as a secret: the password (or a lone token) in the user-info part of any
//! URL (`redis://:pw@host`, `https://user:pw@querier`), the value of a URL query
//! parameter whose name speaks of credentials (`password`, `token`, `secret`, `key`,
//! `auth`), and the value of any config field named that way. For readers who see only
//! one tenant, the user-to-tenant map and the admin list are hidden as well: they name
//! other tenants and users.

use serde_json::Value;

use crate::config::Config;

/// What replaces a secret.
pub const SECRET: &str = "<secret>";
/// What replaces a field hidden from a one-tenant reader.
pub const HIDDEN: &str = "<hidden>";

/// Words that make a field or query parameter name a credential's.
const SECRET_WORDS: &[&str] = &["pass", "secret", "token", "key", "auth", "credential"];

/// Fields naming other tenants and users: shown only to readers who see every tenant.
const TENANT_FIELDS: &[(&str, &str)] = &[
    ("server", "user_tenants"),
    ("slow_query_log", "admin_users"),
];

/// `config` as JSON with its secrets redacted; `every_tenant`: the reader sees every
/// tenant (else the fields naming tenants and users are hidden too).
pub fn redacted_config(config: &Config, every_tenant: bool) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    redact_value(&mut value);
    if !every_tenant {
        for (section, field) in TENANT_FIELDS {
            if let Some(v) = value.get_mut(section).and_then(|s| s.get_mut(field)) {
                *v = Value::String(HIDDEN.to_owned());
            }
        }
    }
    value
}

/// Redacts secrets anywhere in `value`.
pub fn redact_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(redacted) = redact_url(s) {
                *s = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(fields) => {
            for (name, v) in fields.iter_mut() {
                // A list of header names (`key_headers`) is not a secret; a string is.
                if is_secret_name(name) && v.is_string() {
                    *v = Value::String(SECRET.to_owned());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Whether a field or parameter name speaks of a credential.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// `text` with its URL secrets replaced, or `None` when it is not a URL or has none.
pub fn redact_url(text: &str) -> Option<String> {
    let scheme_end = text.find("://")?;
    let scheme = &text[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let rest_start = scheme_end + 3;
    let rest = &text[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..rest_start]);
    let mut changed = false;
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            // `user:password` keeps the user; a lone token goes whole.
            if let Some((user, _)) = userinfo.split_once(':') {
                out.push_str(user);
                out.push(':');
            }
            out.push_str(SECRET);
            out.push_str(&authority[at..]);
            changed = true;
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    let (before_fragment, fragment) = tail.split_at(tail.find('#').unwrap_or(tail.len()));
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_name(name) => {
                        changed = true;
                        format!("{name}={SECRET}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    out.push_str(fragment);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_tokens_and_credential_parameters_are_redacted() {
        let cases = [
            (
                "redis://:hunter2@redis:6379/0",
                Some("redis://:<secret>@redis:6379/0"),
            ),
            (
                "redis://app:hunter2@redis:6379",
                Some("redis://app:<secret>@redis:6379"),
            ),
            (
                "https://tok3n@querier/prefix",
                Some("https://<secret>@querier/prefix"),
            ),
            (
                "rediss://r:6380/0?password=hunter2&protocol=resp3",
                Some("rediss://r:6380/0?password=<secret>&protocol=resp3"),
            ),
            (
                "http://q:9090/?api_key=abc#frag",
                Some("http://q:9090/?api_key=<secret>#frag"),
            ),
            // A password holding '@': the last '@' ends the user info.
            ("redis://:p@ss@r:6379", Some("redis://:<secret>@r:6379")),
            ("http://127.0.0.1:9090", None),
            ("http://q:9090/path@not-userinfo", None),
            ("http://q:9090/?step=30s", None),
            ("X-Scope-OrgID", None),
            ("not a url :// at all", None),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn config_secrets_are_redacted_and_tenants_hidden_from_one_tenant_readers() {
        let mut config = Config::default();
        config.cache.redis.url = "redis://:hunter2@redis:6379/0".into();
        config.cache.redis.nodes = vec!["redis://u:pw2@node-1:6379".into()];
        config.downstream.urls = vec!["https://user:pw3@thanos:10902".into()];
        config
            .server
            .user_tenants
            .insert("alice".into(), "team-a".into());
        config.slow_query_log.admin_users = vec!["root".into()];
        let full = redacted_config(&config, true);
        let text = full.to_string();
        for secret in ["hunter2", "pw2", "pw3"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        assert_eq!(
            full["cache"]["redis"]["url"],
            "redis://:<secret>@redis:6379/0"
        );
        assert_eq!(
            full["downstream"]["urls"][0],
            "https://user:<secret>@thanos:10902"
        );
        assert_eq!(full["server"]["user_tenants"]["alice"], "team-a");
        // Header names are not secrets, though the field's name says "key".
        assert_eq!(full["cache"]["key_headers"][0], "Authorization");
        let scoped = redacted_config(&config, false);
        assert_eq!(scoped["server"]["user_tenants"], HIDDEN);
        assert_eq!(scoped["slow_query_log"]["admin_users"], HIDDEN);
        assert!(!scoped.to_string().contains("team-a"));
    }

    #[test]
    fn fields_named_like_credentials_are_redacted() {
        let mut v = serde_json::json!({
            "section": {"password": "hunter2", "bearer_token": "t", "name": "x", "n": 3}
        });
        redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "section": {"password": SECRET, "bearer_token": SECRET, "name": "x", "n": 3}
            })
        );
    }
}
