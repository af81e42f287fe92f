//! `/api/v1/query_range`: decodes the request into a [`RangeQuery`], sends it through
//! the range-query stack (`crate::stack`) and answers with the encoded result, gzipped
//! when the client accepts it, with `X-Cache` telling how the caches served it.

use super::ReqBody;
use http::header::HeaderValue;
use http::{Request, Response};
use tower::ServiceExt;

use super::observe::Pending;
use super::{Body, Frontend, form_body, read_body};
use crate::error::Error;
use crate::headers::strip_hop_by_hop;
use crate::model::RangeQuery;
use crate::model::query::query_pairs;
use crate::model::timeout::ClientTimeout;

impl Frontend {
    /// Answers a range query (GET or form POST).
    pub(super) async fn query_range(
        &self,
        req: Request<ReqBody>,
        arrived: tokio::time::Instant,
        pending: Option<&mut Pending>,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let body = read_body(&parts.headers, body, self.max_body_bytes).await?;
        let form = form_body(&parts, &body);
        let pairs = query_pairs(parts.uri.query(), &form);
        let mut pending = pending;
        if let Some(p) = pending.as_deref_mut() {
            // What the client asked, even when it is rejected below.
            p.read_params(form.clone());
        }
        let mut query = RangeQuery::from_form(pairs, self.forward.select(&parts.headers))?;
        let mut request_headers = parts.headers.clone();
        strip_hop_by_hop(&mut request_headers);
        query.request_headers = request_headers;
        query.client_timeout = query
            .param("timeout")
            .and_then(|t| ClientTimeout::new(t.as_bytes(), arrived));
        query.deadline = Some(self.deadline_for(arrived, query.client_timeout.as_ref()));
        let stats = query.stats.clone();
        if let Some(p) = pending.as_deref_mut() {
            p.range_query(
                &query.query,
                query.start_ms,
                query.end_ms,
                query.step_ns,
                stats.clone(),
            );
        }
        let answer = self.stack.clone().oneshot(query).await;
        // 0 when the query was answered before the split (rejected, or a response-cache
        // hit).
        let pieces = stats.pieces.load(std::sync::atomic::Ordering::Relaxed);
        if pieces > 0 {
            self.metrics.query_pieces(pieces);
        }
        let answer = answer?;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.metrics.query_querier_cost(
            stats.downstream_requests.load(relaxed),
            stats.downstream_nanos.load(relaxed) as f64 / 1e9,
        );
        let outcome = stats.cache_outcome();
        if let Some(p) = pending {
            p.answer(answer.clone());
            if let Some(outcome) = outcome {
                p.cache_outcome(outcome);
            }
        }
        let mut resp = self.answer_response(&parts.headers, &answer);
        if let Some(outcome) = outcome {
            self.metrics
                .endpoint_cache(crate::metrics::Endpoint::query_range, outcome);
            resp.headers_mut()
                .insert("x-cache", HeaderValue::from_static(outcome));
        }
        Ok(resp)
    }
}
