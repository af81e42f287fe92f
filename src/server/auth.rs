//! Basic auth against the web config file's `basic_auth_users`, and what an
//! authenticated user may see: the tenant it is pinned to (`server.user_tenants`) and
//! the slow-query lines it may read.
//!
//! Checking a bcrypt hash costs tens of milliseconds of CPU by design, so it never runs
//! on the async runtime: it runs in `spawn_blocking`, at most one per core at a time.
//! A verified password is remembered (the user, the hash it matched and the password's
//! bytes, compared in constant time), so a client pays the cost once, not per request,
//! as in Prometheus. Refused attempts are remembered too, by a salted hash of user,
//! stored hash and password, so a client retrying a wrong password does not cost a
//! bcrypt run each time either; such an entry can only ever refuse. Both are keyed by
//! the stored hash, so a changed password in the file takes effect at once. An unknown
//! user is checked against a hash of a random password, so the answer takes as long as
//! for a known user with a wrong password.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use subtle::ConstantTimeEq;

use super::Body;
use super::respond::text;
use crate::metrics::AuthFailure;
use crate::slowlog::Visibility;

/// The challenge of a 401 answer: basic auth, this realm, passwords in UTF-8.
const CHALLENGE: &str = "Basic realm=\"promql-frontend\", charset=\"UTF-8\"";
/// Refused attempts remembered.
const REJECTED_CAPACITY: u64 = 10_000;
/// How long a refused attempt is remembered.
const REJECTED_TTL: Duration = Duration::from_secs(600);
/// Cost of the stand-in hash for unknown users (Prometheus' documented example cost).
const STANDIN_COST: u32 = 10;

/// Checks basic-auth credentials; shared by every connection and kept across reloads of
/// the web config file.
pub struct Authenticator {
    /// Per user: the stored hash and the password that matched it.
    verified: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Salted hashes of refused (user, stored hash, password) triples.
    rejected: moka::sync::Cache<u128, ()>,
    salt: u64,
    /// Bounds the bcrypt runs at once (one per core).
    permits: tokio::sync::Semaphore,
    bcrypt_runs: AtomicU64,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new()
    }
}

impl Authenticator {
    /// An authenticator with empty caches.
    pub fn new() -> Authenticator {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Authenticator {
            verified: Mutex::new(HashMap::new()),
            rejected: moka::sync::Cache::builder()
                .max_capacity(REJECTED_CAPACITY)
                .time_to_live(REJECTED_TTL)
                .build(),
            salt: crate::random_u64(),
            permits: tokio::sync::Semaphore::new(cores),
            bcrypt_runs: AtomicU64::new(0),
        }
    }

    /// Bcrypt verifications run so far (the rest were answered from memory).
    #[cfg(test)]
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    /// Checks the request's `Authorization` header against `users`; the user's name
    /// when it matches.
    pub async fn check(
        &self,
        users: &BTreeMap<String, String>,
        authorization: Option<&HeaderValue>,
    ) -> Result<String, AuthFailure> {
        let (user, password) = basic_credentials(authorization.ok_or(AuthFailure::Missing)?)?;
        let stored = users.get(&user);
        if let Some(hash) = stored
            && self.remembered(&user, hash, &password)
        {
            return Ok(user);
        }
        let hash = match stored {
            Some(hash) => hash.clone(),
            None => standin_hash().await,
        };
        let key = self.rejected_key(&user, &hash, &password);
        if self.rejected.contains_key(&key) {
            return Err(AuthFailure::WrongCredentials);
        }
        let matches = {
            // The semaphore lives as long as `self`; it is never closed.
            let _permit = self.permits.acquire().await;
            self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
            let (pw, h) = (password.clone(), hash.clone());
            tokio::task::spawn_blocking(move || bcrypt::verify(pw, &h).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if matches && stored.is_some() {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.clone(), (hash, password));
            Ok(user)
        } else {
            self.rejected.insert(key, ());
            Err(AuthFailure::WrongCredentials)
        }
    }

    /// Whether `password` is the one that last matched `hash` for `user`.
    fn remembered(&self, user: &str, hash: &str, password: &[u8]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified
            .get(user)
            .is_some_and(|(h, pw)| h == hash && bool::from(pw.as_slice().ct_eq(password)))
    }

    fn rejected_key(&self, user: &str, hash: &str, password: &[u8]) -> u128 {
        let mut bytes = Vec::with_capacity(user.len() + hash.len() + password.len() + 2);
        bytes.extend_from_slice(user.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(hash.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(password);
        xxhash_rust::xxh3::xxh3_128_with_seed(&bytes, self.salt)
    }
}

/// The hash unknown users are checked against: of a random password nobody knows,
/// made once per process (off the runtime).
async fn standin_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    if let Some(hash) = HASH.get() {
        return hash.clone();
    }
    let made = tokio::task::spawn_blocking(|| {
        let secret = format!("{:x}{:x}", crate::random_u64(), crate::random_u64());
        bcrypt::hash(secret, STANDIN_COST).unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    HASH.get_or_init(|| made).clone()
}

/// Decodes `Basic base64(user:password)`, the scheme name in any case (as Go reads it).
/// A user name that is not UTF-8 cannot be in the file; it is read lossily and so
/// fails like any unknown user.
pub fn basic_credentials(value: &HeaderValue) -> Result<(String, Vec<u8>), AuthFailure> {
    let bytes = value.as_bytes();
    let encoded = match bytes.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"basic ") => &bytes[6..],
        _ => return Err(AuthFailure::Missing),
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| AuthFailure::Malformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthFailure::Malformed)?;
    let user = String::from_utf8_lossy(&decoded[..colon]).into_owned();
    Ok((user, decoded[colon + 1..].to_vec()))
}

/// The 401 answer: `WWW-Authenticate` with the realm and Prometheus' plain-text body.
pub fn unauthorized() -> Response<Body> {
    let mut resp = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    resp
}

/// Which slow-query lines a request may read: an admin sees all; a request with a tenant
/// (sent, or set from its user's entry in `server.user_tenants`) sees that tenant's;
/// one with neither sees all while no admin is configured (no authentication, today's
/// behaviour) and only the lines without a tenant once admins are.
pub fn slow_query_visibility(
    user: Option<&str>,
    tenant: Option<&str>,
    admins: &HashSet<String>,
) -> Visibility {
    match (user, tenant) {
        (Some(user), _) if admins.contains(user) => Visibility::All,
        (_, Some(tenant)) => Visibility::Tenant(tenant.to_owned()),
        _ if admins.is_empty() => Visibility::All,
        _ => Visibility::Untenanted,
    }
}

/// The tenant header value each mapped user's requests carry.
pub fn tenant_of<'a>(
    user_tenants: &'a HashMap<String, HeaderValue>,
    user: Option<&str>,
) -> Option<&'a HeaderValue> {
    user.and_then(|u| user_tenants.get(u))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
