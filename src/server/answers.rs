//! Label names, label values, series and instant queries: answered from the answer cache
//! ([`crate::layers::cache::answer`]) when an exact, old enough request was answered
//! before, and otherwise sent to the querier once for all identical requests in flight.
//!
//! Outcomes (`X-Cache`, `/metrics`, the slow-query log): `hit` (a stored answer), `miss`
//! (a storable request that went to the querier), `coalesced` (the answer of an
//! identical request in flight), `skip` (a request that is never stored: too recent, an
//! unknown parameter, `Cache-Control: no-store`, ...; it still leads or follows
//! identical requests in flight).
//!
//! A request that is neither stored nor shared (a label or series request for a recent
//! window, one with an unknown parameter, a `no-store` one) streams through as any
//! forwarded request does, only marked `X-Cache: skip`.
//!
//! Coalescing reads the leader's answer whole, up to `cache.max_item_bytes`, to hand it
//! to its followers; the querier's errors (4xx and 5xx after retries) are shared like
//! answers. Instant queries coalesce whatever their time; label and series requests
//! only when their window is storable (an old `end`): a recent window's ends move with
//! now, so identical ones are rare, and each keeps its own querier request. When the leader ends without an answer to share (its client went away, the
//! querier could not be reached, the answer was larger than that), each follower asks
//! the querier itself. `Cache-Control: no-store` and `no-cache` requests neither read
//! the cache nor join others in flight (they ask for a fresh answer); `no-cache` ones
//! still store it. Requests the frontend does not cache at all (a multipart or other
//! non-form POST, label values by POST, `cache.answers = false`) go through
//! [`Frontend::passthrough`] unchanged.

use std::sync::Arc;

use super::ReqBody;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::observe::Pending;
use super::respond::full;
use super::{Body, Frontend, form_body, read_body};
use crate::error::{BoxError, Error};
use crate::layers::cache::answer::AnswerKey;
use crate::layers::cache::inflight::Role;
use crate::layers::cache::key::directives;
use crate::metrics::Endpoint;
use crate::model::query::{check_instant_query, first_value, query_pairs};
use crate::model::timeout::ClientTimeout;

/// The request as sent to the querier when the frontend reads the answer whole: without
/// the client's `Accept-Encoding`, so that the answer comes (and is stored and shared)
/// uncompressed and each client gets it in its own encoding. Also gives back the
/// client's headers.
fn uncompressed(mut parts: http::request::Parts) -> (HeaderMap, http::request::Parts) {
    let client = parts.headers.clone();
    parts.headers.remove(header::ACCEPT_ENCODING);
    (client, parts)
}

/// A querier answer read whole, shared by identical in-flight requests.
pub(super) struct Buffered {
    status: StatusCode,
    /// The querier's headers, hop-by-hop ones removed.
    headers: HeaderMap,
    body: Bytes,
}

/// What a leader hands its followers: its answer, or nothing to share.
pub(super) type Shared = Option<Buffered>;

impl Frontend {
    /// Answers a label, series or instant request (see the module docs).
    pub(super) async fn cached_answer(
        &self,
        req: Request<ReqBody>,
        endpoint: Endpoint,
        arrived: tokio::time::Instant,
        pending: Option<&mut Pending>,
    ) -> Result<Response<Body>, Error> {
        let Some(cache) = self.answers.clone() else {
            return self.passthrough(req, arrived, pending).await;
        };
        let (parts, body) = req.into_parts();
        let body = read_body(&parts.headers, body, self.max_body_bytes).await?;
        let form = form_body(&parts, &body);
        let pairs = query_pairs(parts.uri.query(), &form);
        let mut pending = pending;
        if endpoint == Endpoint::query {
            // As the passthrough checks them: the querier must get a valid timeout.
            if let Err(e) = check_instant_query(&pairs) {
                if let Some(p) = pending.as_deref_mut() {
                    p.read_params(form.clone());
                }
                return Err(e);
            }
        }
        let key = cache.key(parts.uri.path(), &pairs, &parts.headers);
        let dirs = directives(&parts.headers);
        let storable = match cache.storable(&key) {
            Ok(()) if dirs.no_store => Err(crate::layers::cache::key::Skip::NoStore),
            other => other,
        };
        if let Err(why) = storable {
            self.metrics.cache_skip(why.as_str());
        }
        let fresh_only = dirs.no_store || dirs.no_cache;
        if storable.is_ok()
            && !fresh_only
            && let Some(hit) = cache.get(&key).await
        {
            if let Some(p) = pending.as_deref_mut() {
                p.read_params(form.clone());
            }
            let mut headers = HeaderMap::new();
            if let Ok(ct) = HeaderValue::from_str(&hit.content_type) {
                headers.insert(header::CONTENT_TYPE, ct);
            }
            let answer = Buffered {
                status: StatusCode::OK,
                headers,
                body: hit.body,
            };
            return Ok(self.answered(&parts.headers, &answer, endpoint, "hit", pending));
        }
        let outcome = if storable.is_ok() { "miss" } else { "skip" };
        // Instant queries coalesce at any time; label and series requests only for a
        // storable window (repeats of a recent window are rare: its ends move with now).
        let coalesce = !fresh_only && (endpoint == Endpoint::query || storable.is_ok());
        let role = match coalesce {
            false => Role::Alone,
            true => self.inflight.join(&key.full, key.hash),
        };
        match role {
            Role::Follower(follower) => {
                let client_timeout = first_value(&pairs, "timeout")
                    .filter(|_| endpoint == Endpoint::query)
                    .and_then(|v| ClientTimeout::new(v, arrived));
                let deadline = self.deadline_for(arrived, client_timeout.as_ref());
                let shared = tokio::time::timeout_at(deadline, follower.wait())
                    .await
                    .map_err(|_| Error::Timeout {
                        endpoint: "querier".to_owned(),
                        after: deadline.duration_since(arrived),
                        limit: "the request's deadline",
                    })?;
                if let Some(answer) = shared.as_deref().and_then(Option::as_ref) {
                    if let Some(p) = pending.as_deref_mut() {
                        p.read_params(form.clone());
                    }
                    return Ok(self.answered(
                        &parts.headers,
                        answer,
                        endpoint,
                        "coalesced",
                        pending,
                    ));
                }
                // Nothing to share: ask the querier alone.
                let resp = self.forward_whole(arrived, parts, body, pending.as_deref_mut());
                let resp = resp.await?;
                Ok(self.outcome(resp, endpoint, outcome, pending))
            }
            // Never stored and not shared: streamed as the querier sends it, in the
            // encoding the client asked it for, like any forwarded request.
            Role::Alone if storable.is_err() => {
                let resp = self.forward_whole(arrived, parts, body, pending.as_deref_mut());
                let resp = resp.await?;
                Ok(self.outcome(resp, endpoint, outcome, pending))
            }
            // Read whole: to store it, and (as the leader) to hand it to the followers.
            role => {
                let leader = match role {
                    Role::Leader(leader) => Some(leader),
                    _ => None,
                };
                let (parts_headers, parts) = uncompressed(parts);
                let resp = self
                    .forward_whole(arrived, parts, body, pending.as_deref_mut())
                    .await?;
                let answer = match self.read_whole(resp, cache.max_item_bytes()).await? {
                    Ok(answer) => answer,
                    Err(resp) => {
                        if let Some(leader) = leader {
                            leader.publish(Arc::new(None));
                        }
                        return Ok(self.outcome(resp, endpoint, outcome, pending));
                    }
                };
                // Followers first: they need not wait for the cache write.
                let shared = Arc::new(Some(answer));
                if let Some(leader) = leader {
                    leader.publish(shared.clone());
                }
                let answer = shared
                    .as_ref()
                    .as_ref()
                    .ok_or_else(|| Error::Internal("the published answer is missing".to_owned()))?;
                if storable.is_ok() {
                    self.store(&cache, &key, answer).await;
                }
                Ok(self.answered(&parts_headers, answer, endpoint, outcome, pending))
            }
        }
    }

    /// Stores a querier answer when it may be: a `200` success envelope without
    /// warnings or infos, not compressed, not marked `no-store` by the querier.
    async fn store(
        &self,
        cache: &crate::layers::cache::answer::AnswerCache,
        key: &AnswerKey,
        answer: &Buffered,
    ) {
        if answer.status != StatusCode::OK || answer.headers.contains_key(header::CONTENT_ENCODING)
        {
            return;
        }
        if let Some(why) =
            crate::layers::cache::answer::unstorable_answer(&answer.headers, &answer.body)
        {
            self.metrics.cache_skip(why.as_str());
            return;
        }
        let content_type = answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        cache.put(key, content_type, answer.body.clone()).await;
    }

    /// Reads a response whole when its body is at most `limit` bytes and it is not
    /// compressed (a `200` the frontend asked uncompressed, or an error answer as the
    /// querier sent it); otherwise gives back a response that sends the same bytes.
    async fn read_whole(
        &self,
        resp: Response<Body>,
        limit: usize,
    ) -> Result<Result<Buffered, Response<Body>>, Error> {
        let (parts, mut body) = resp.into_parts();
        let compressed_ok =
            parts.headers.contains_key(header::CONTENT_ENCODING) && parts.status == StatusCode::OK;
        let mut buf = BytesMut::new();
        let mut rest: Option<Frame<Bytes>> = None;
        if !compressed_ok {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    Error::BadResponse(format!("the querier's answer broke off: {e}"))
                })?;
                match frame.into_data() {
                    Ok(data) if buf.len() + data.len() <= limit => buf.extend_from_slice(&data),
                    Ok(data) => {
                        rest = Some(Frame::data(data));
                        break;
                    }
                    Err(frame) => {
                        rest = Some(frame);
                        break;
                    }
                }
            }
            if rest.is_none() {
                return Ok(Ok(Buffered {
                    status: parts.status,
                    headers: parts.headers,
                    body: buf.freeze(),
                }));
            }
        }
        // Too large (or compressed): what was read, then the rest as it comes.
        let head = [Ok::<_, BoxError>(Frame::data(buf.freeze()))]
            .into_iter()
            .chain(rest.map(Ok));
        let stream = futures_util::stream::iter(head).chain(http_body_util::BodyStream::new(body));
        let body: Body = BodyExt::boxed(StreamBody::new(stream));
        Ok(Err(Response::from_parts(parts, body)))
    }

    /// The response to a client for a buffered answer: the querier's status, headers
    /// and body, the body compressed as the client negotiates (as Prometheus compresses
    /// its answers, errors included).
    fn answered(
        &self,
        req_headers: &HeaderMap,
        answer: &Buffered,
        endpoint: Endpoint,
        outcome: &'static str,
        pending: Option<&mut Pending>,
    ) -> Response<Body> {
        let mut headers = answer.headers.clone();
        headers.remove(header::CONTENT_LENGTH);
        let mut body = answer.body.clone();
        if !headers.contains_key(header::CONTENT_ENCODING) {
            if let Some(coding) = self.coding_for(req_headers)
                && let Ok(z) = coding.compress(&body)
            {
                body = Bytes::from(z);
                headers.insert(header::CONTENT_ENCODING, coding.header_value());
            }
            let varies = headers
                .get_all(header::VARY)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"accept-encoding"));
            if self.gzip_responses && !varies {
                headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            }
        }
        let mut resp = Response::new(full(body));
        *resp.status_mut() = answer.status;
        *resp.headers_mut() = headers;
        self.outcome(resp, endpoint, outcome, pending)
    }

    /// Marks a response with its cache outcome (`X-Cache`, `/metrics`, slow-query log).
    fn outcome(
        &self,
        mut resp: Response<Body>,
        endpoint: Endpoint,
        outcome: &'static str,
        pending: Option<&mut Pending>,
    ) -> Response<Body> {
        self.metrics.endpoint_cache(endpoint, outcome);
        if let Some(p) = pending {
            p.cache_outcome(outcome);
        }
        resp.headers_mut()
            .insert("x-cache", HeaderValue::from_static(outcome));
        resp
    }
}
