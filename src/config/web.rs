//! The web configuration file (`--web.config.file`, `server.web_config_file`): the YAML
//! format Prometheus, Alertmanager and the exporters read, so an existing file works
//! here unchanged.
//!
//! ```yaml
//! tls_server_config:          # absent: plain HTTP
//!   cert_file: server.pem     # or `cert:` with the PEM inline
//!   key_file: server.key      # or `key:`
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.pem    # or `client_ca:`
//!   min_version: TLS12        # TLS12 (default) or TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:           # absent or empty: no basic auth
//!   alice: $2y$10$...         # bcrypt hash
//! ```
//!
//! Parsing is strict: an unknown field, a value of the wrong type or a value this
//! server cannot honour is a [`WebConfigError`] naming the field (`serde_path_to_error`
//! gives the path of a type error). Relative file names are relative to the file's
//! directory, as in Prometheus. Fields that the format has but this server does not
//! implement (`client_allowed_sans`, `rate_limit`) are refused rather than ignored, so
//! a file never seems to protect more than it does.
//!
//! The YAML parser is `serde_norway`, a maintained continuation of `serde_yaml` (whose
//! author archived it) with the same API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// Response headers the file may set, and the values allowed where the header has a
/// fixed set (the same list Prometheus accepts; an empty value leaves the header unset).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

/// Why a web configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or a file it names) could not be read.
    #[error("web config file {path}: reading {what}: {source}")]
    Read {
        /// The web config file.
        path: PathBuf,
        /// What was being read (the file itself, or the field naming another file).
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A field is malformed, unknown, or holds a value that cannot work.
    #[error("web config file {path}: field {field}: {msg}")]
    Field {
        /// The web config file.
        path: PathBuf,
        /// Dotted path of the field, e.g. `tls_server_config.client_auth_type`.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
}

/// A parsed and checked web configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebConfig {
    /// TLS for the listening port; `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Whether HTTP/2 is offered in the TLS handshake (ALPN).
    pub http2: bool,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name to bcrypt hash; empty: no basic auth.
    pub users: BTreeMap<String, String>,
    /// Paths answered without basic auth (exact match), in addition to
    /// `server.auth_exempt_paths`.
    pub auth_excluded_paths: Vec<String>,
}

/// `tls_server_config`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM).
    pub cert: PemSource,
    /// The server's private key (PEM).
    pub key: PemSource,
    /// Whether and how clients present certificates.
    pub client_auth: ClientAuth,
    /// CA certificates client certificates are verified with.
    pub client_ca: Option<PemSource>,
    /// Lowest protocol version offered.
    pub min_version: TlsVersion,
    /// Highest protocol version offered.
    pub max_version: TlsVersion,
    /// TLS 1.2 cipher suites by their IANA names; empty: the library's defaults.
    pub cipher_suites: Vec<String>,
    /// Choose the cipher suite by the server's order rather than the client's.
    pub prefer_server_cipher_suites: bool,
    /// Key exchange groups by Go's names (`X25519`, `CurveP256`, ...), in preference
    /// order; empty: the library's defaults.
    pub curve_preferences: Vec<String>,
}

/// PEM text given in a file or inline.
#[derive(Debug, Clone, PartialEq)]
pub enum PemSource {
    /// A file, read at every (re)load.
    File(PathBuf),
    /// The PEM text itself.
    Inline(String),
}

/// `client_auth_type`: Go's client authentication policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// A certificate is asked for, not required, and not verified.
    RequestClientCert,
    /// A certificate is required but not verified.
    RequireAnyClientCert,
    /// A certificate is not required; one that is sent must verify against the CA.
    VerifyClientCertIfGiven,
    /// A certificate that verifies against the CA is required.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version (`min_version`, `max_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl ClientAuth {
    fn parse(name: &str) -> Option<ClientAuth> {
        Some(match name {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // `RequireClientCert` is the older spelling Prometheus still accepts.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether client certificates are checked against `client_ca`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Option<String>>>,
    auth_excluded_paths: Option<Vec<String>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, Option<String>>>,
}

impl WebConfig {
    /// Reads and checks the file at `path`. Only the file itself is read here; the
    /// certificate files it names are read when TLS is set up (`server::tls`).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            what: "the file".to_owned(),
            source,
        })?;
        WebConfig::parse(&text, path)
    }

    /// Parses and checks `text`, the content of the file at `path` (relative file names
    /// in it are taken from that file's directory).
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let field = |field: &str, msg: String| WebConfigError::Field {
            path: path.to_owned(),
            field: field.to_owned(),
            msg,
        };
        let de = serde_norway::Deserializer::from_str(text);
        let raw: Option<RawWebConfig> = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            // A syntax error inside a value has an unknown last segment (`?`); the
            // message gives its line and column.
            let at = at.strip_suffix(".?").unwrap_or(&at);
            let name = if at == "." || at == "?" {
                "(top level)"
            } else {
                at
            };
            field(name, e.into_inner().to_string())
        })?;
        let raw = raw.unwrap_or_default();
        if raw.rate_limit.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(field(
                "rate_limit",
                "not supported; limit load with server.max_concurrent_requests".into(),
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match raw.tls_server_config {
            Some(t) => tls_settings(t, dir).map_err(|(f, msg)| field(&f, msg))?,
            None => None,
        };
        let http = raw.http_server_config.unwrap_or_default();
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let at = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
                let names: Vec<_> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                return Err(field(
                    &at,
                    format!("this header cannot be set (allowed: {})", names.join(", ")),
                ));
            };
            let value = value.unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(field(
                    &at,
                    format!("{value:?} is not one of {}", allowed.join(", ")),
                ));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| field(&at, format!("{value:?} is not a valid header value")))?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| field(&at, "not a valid header name".into()))?;
            headers.push((name, value));
        }
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            let at = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(field(&at, "a user name cannot contain ':'".into()));
            }
            let hash = hash.unwrap_or_default();
            if let Err(e) = hash.parse::<bcrypt::HashParts>() {
                return Err(field(&at, format!("not a bcrypt hash: {e}")));
            }
            users.insert(user, hash);
        }
        let auth_excluded_paths = raw.auth_excluded_paths.unwrap_or_default();
        if let Some(p) = auth_excluded_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(field(
                "auth_excluded_paths",
                format!("{p:?} does not start with '/'"),
            ));
        }
        Ok(WebConfig {
            tls,
            http2: http.http2.unwrap_or(true),
            headers,
            users,
            auth_excluded_paths,
        })
    }
}

/// Checks `tls_server_config`; `Ok(None)` when it sets nothing that enables TLS (an
/// empty section means plain HTTP, as in Prometheus). Errors are (field, message).
fn tls_settings(t: RawTls, dir: &Path) -> Result<Option<TlsSettings>, (String, String)> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let enabled = [
        &t.cert,
        &t.key,
        &t.client_ca,
        &t.cert_file,
        &t.key_file,
        &t.client_ca_file,
        &t.client_auth_type,
    ]
    .into_iter()
    .any(set);
    if !enabled {
        return Ok(None);
    }
    let err = |f: &str, msg: &str| (format!("tls_server_config.{f}"), msg.to_owned());
    let source = |inline: &Option<String>, file: &Option<String>, names: (&str, &str)| match (
        set(inline),
        set(file),
    ) {
        (true, true) => Err(err(
            names.1,
            &format!("set {} or {}, not both", names.0, names.1),
        )),
        (true, false) => Ok(Some(PemSource::Inline(inline.clone().unwrap_or_default()))),
        (false, true) => Ok(Some(PemSource::File(
            dir.join(file.as_deref().unwrap_or_default()),
        ))),
        (false, false) => Ok(None),
    };
    let cert = source(&t.cert, &t.cert_file, ("cert", "cert_file"))?
        .ok_or_else(|| err("cert_file", "missing one of cert or cert_file"))?;
    let key = source(&t.key, &t.key_file, ("key", "key_file"))?
        .ok_or_else(|| err("key_file", "missing one of key or key_file"))?;
    let client_ca = source(
        &t.client_ca,
        &t.client_ca_file,
        ("client_ca", "client_ca_file"),
    )?;
    let auth_name = t.client_auth_type.unwrap_or_default();
    let client_auth = ClientAuth::parse(&auth_name).ok_or_else(|| {
        err(
            "client_auth_type",
            &format!(
                "{auth_name:?} is not one of NoClientCert, RequestClientCert, \
                 RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ),
        )
    })?;
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(err(
            "client_ca_file",
            "a client CA is set but client_auth_type is NoClientCert (set \
             RequireAndVerifyClientCert to verify client certificates)",
        ));
    }
    if client_ca.is_none() && client_auth.verifies() {
        return Err(err(
            "client_ca_file",
            &format!("client_auth_type {auth_name} needs client_ca_file or client_ca"),
        ));
    }
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(err(
            "client_allowed_sans",
            "not supported; give the allowed clients certificates from their own CA",
        ));
    }
    let version = |f: &str, v: Option<String>, default| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => {
            Err(err(f, &format!("{old} is not supported (TLS12 or TLS13)")))
        }
        Some(other) => Err(err(f, &format!("{other:?} is not one of TLS12, TLS13"))),
    };
    let min_version = version("min_version", t.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", t.max_version, TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err(err("min_version", "is above max_version"));
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca,
        min_version,
        max_version,
        cipher_suites: t.cipher_suites.unwrap_or_default(),
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences: t.curve_preferences.unwrap_or_default(),
    }))
}

#[cfg(test)]
#[path = "web_tests.rs"]
mod tests;
