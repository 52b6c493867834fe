//! The HTTP edges: the webhook (`POST /validate`, over TLS) and the probes
//! and metrics (plain HTTP, on another port).

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use super::review::{self, Incoming};
use crate::runtime::state::{AppState, Attempt};

pub const DEFAULT_MAX_BODY: usize = 7 * 1024 * 1024;

/// After a body went over the limit, how much more of it is read (and
/// dropped) so that the client can finish sending and then read the 413, and
/// for how long at most.
const DRAIN_FACTOR: usize = 4;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// How long a decision may run on an async worker before it starts again
/// on the blocking pool: far above what a binding or role change takes at
/// 100k bindings (under a millisecond), far below what a probe waits.
pub const ON_WORKER: Duration = Duration::from_millis(5);

/// Asked under the decision lock, right before deciding: may this replica
/// still decide?
pub type DecideGate = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct Webhook {
    state: Arc<AppState>,
    max_body: usize,
    gate: Option<DecideGate>,
}

pub fn webhook_router(state: Arc<AppState>, max_body: usize) -> Router {
    router(Webhook {
        state,
        max_body,
        gate: None,
    })
}

/// The webhook of a replica that decides only while `gate` says so (the
/// leader): a request it accepted while leading and that has not been
/// decided when the lead is lost answers 503.
pub fn gated_webhook_router(state: Arc<AppState>, max_body: usize, gate: DecideGate) -> Router {
    router(Webhook {
        state,
        max_body,
        gate: Some(gate),
    })
}

fn router(webhook: Webhook) -> Router {
    let authorize = authorize_router(webhook.state.clone(), webhook.max_body);
    guard(
        Router::new()
            .route("/validate", post(validate))
            .with_state(webhook)
            .merge(authorize),
    )
}

/// SubjectAccessReviews are a few hundred bytes; a larger body is refused
/// before it is parsed.
pub const AUTHORIZE_MAX_BODY: usize = 64 * 1024;

/// `POST /authorize`: the use-time authorization webhook (R13). Every
/// replica answers from its own confirmed state: nothing is assumed or
/// written, so there is nothing for a leader to order.
pub fn authorize_router(state: Arc<AppState>, max_body: usize) -> Router {
    guard(
        Router::new()
            .route("/authorize", post(authorize))
            .with_state(Authorizer {
                state,
                max_body: max_body.min(AUTHORIZE_MAX_BODY),
            }),
    )
}

#[derive(Clone)]
struct Authorizer {
    state: Arc<AppState>,
    max_body: usize,
}

impl IntoResponse for super::authorize::BadAccessReview {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.to_string())
    }
}

async fn authorize(State(a): State<Authorizer>, headers: HeaderMap, body: Body) -> Response {
    use super::authorize as sar;
    use crate::engine::usetime::UseTimeVerdict;
    let start = Instant::now();
    let metrics = a.state.metrics.clone();
    let response = async {
        let body = read_body(&headers, body, a.max_body).await?;
        let review = sar::parse(&body).map_err(IntoResponse::into_response)?;
        // Not ready: no opinion, explicitly. An error would make the API
        // server retry with backoff before applying the failurePolicy; no
        // opinion lets RBAC decide at once whatever the policy says.
        if !a.state.is_ready() {
            metrics.observe_authorize("no-opinion", "not-ready", start.elapsed().as_secs_f64());
            return Ok::<_, Response>(axum::Json(sar::not_ready(&review)).into_response());
        }
        let verdict = a
            .state
            .authorize(&review.requester, &review.access, a.state.now());
        let (decision, why) = match &verdict {
            UseTimeVerdict::Deny(_) => ("deny", "violation"),
            UseTimeVerdict::GrantEnded(_) => ("deny", "grant-ended"),
            UseTimeVerdict::NoOpinion(n) => ("no-opinion", n.as_str()),
        };
        log_authorization(&review, &verdict);
        metrics.observe_authorize(decision, why, start.elapsed().as_secs_f64());
        Ok(axum::Json(sar::respond(&review, &verdict)).into_response())
    }
    .await
    .unwrap_or_else(|r| r);
    if response.status() != StatusCode::OK {
        metrics.count_refused(response.status().as_u16());
    }
    response
}

/// Denials at info, with the policy and subject they stand on; no opinions
/// (the bulk of the traffic) at debug. Names only, never request bodies.
fn log_authorization(
    review: &super::authorize::AccessReview,
    verdict: &crate::engine::usetime::UseTimeVerdict,
) {
    use crate::engine::usetime::{Access, UseTimeVerdict};
    let (verb, namespace, target) = match &review.access {
        Access::Resource {
            verb,
            namespace,
            group,
            resource,
            subresource,
            name,
        } => {
            let mut t = crate::engine::usetime::resource_path(resource, subresource);
            if !group.is_empty() {
                t = format!("{t}.{group}");
            }
            if !name.is_empty() {
                t = format!("{t} {name}");
            }
            (verb.as_str(), namespace.as_str(), t)
        }
        Access::NonResource { verb, path } => (verb.as_str(), "", path.clone()),
    };
    let user = review.requester.user.as_str();
    match verdict {
        UseTimeVerdict::Deny(d) => tracing::info!(
            user,
            verb,
            namespace,
            target = %target,
            policy = %d.violation.policy,
            subject = %d.violation.subject,
            violation_namespace = %d.violation.namespace,
            duty = %d.duty,
            "authorization denied"
        ),
        UseTimeVerdict::GrantEnded(g) => tracing::info!(
            user,
            verb,
            namespace,
            target = %target,
            grant = %g.grant.name,
            subject = %g.subject,
            binding = %g.binding,
            "authorization denied: grant ended"
        ),
        UseTimeVerdict::NoOpinion(why) => tracing::debug!(
            user,
            verb,
            namespace,
            target = %target,
            why = why.as_str(),
            "authorization: no opinion"
        ),
    }
}

/// Turns a panic in a handler into a 500 answer for that request alone.
pub fn guard(router: Router) -> Router {
    router.layer(CatchPanicLayer::custom(panic_response))
}

pub fn probe_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// A panic in one request answers 500 (the failurePolicy decides) and the
/// server goes on.
fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "request handler panicked");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error while deciding; see the server log",
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the index is still loading",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Reads a body of at most `max` bytes. A larger one answers 413, but only
/// once the client has sent the rest of it (up to `DRAIN_FACTOR` times the
/// limit, within `DRAIN_TIME`): a server that stops reading and answers early
/// makes HTTP/2 end the stream with RST_STREAM, and clients such as
/// nghttp2/curl then report a stream error instead of the 413 (HTTP/1.1 ones
/// a broken pipe); anything larger or slower still gets it at once.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than --max-body-bytes ({max} bytes)"),
        )
    };
    let budget = max.saturating_mul(DRAIN_FACTOR);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > max as u64) {
        if declared.is_some_and(|n| n <= budget as u64) {
            drain(stream, budget).await;
        }
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > max {
            drain(stream, budget).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// Reads and drops what is left of a body, up to `budget` bytes and
/// `DRAIN_TIME`.
async fn drain(mut stream: axum::body::BodyDataStream, budget: usize) {
    let mut left = budget;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            match left.checked_sub(chunk.len()) {
                Some(l) => left = l,
                None => break,
            }
        }
    })
    .await;
}

async fn validate(State(webhook): State<Webhook>, headers: HeaderMap, body: Body) -> Response {
    let metrics = webhook.state.metrics.clone();
    let response = answer(webhook, headers, body).await;
    // Refused requests (a bad body, too large, not ready, not the leader)
    // are counted too: otherwise a misconfigured API server looks idle.
    if response.status() != StatusCode::OK {
        metrics.count_refused(response.status().as_u16());
    }
    response
}

async fn answer(
    Webhook {
        state,
        max_body,
        gate,
    }: Webhook,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(&headers, body, max_body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    // Nothing is admitted on a half-loaded index: 503 makes the API server
    // apply the webhook's failurePolicy.
    if !state.is_ready() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "sodguard is not ready: its index is still loading",
        );
    }
    let start = Instant::now();
    // Taken before parsing: requests waiting for their turn hold their raw
    // bodies (bounded by --max-body-bytes), not the parsed objects, which
    // take several times as much.
    let turn = state.decision_turn().await;
    let incoming = match review::parse(&body) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    drop(body);
    // A new or changed policy is evaluated against the whole state, and
    // goes straight to the blocking pool. Any other change is tried here
    // first: a decision that is not done within ON_WORKER starts again
    // there, so that no long one holds the async worker (and with it the
    // probes, the watches and the other connections).
    let mut attempt = if incoming.kind.kind == "SoDPolicy" {
        Attempt::Longer
    } else {
        decide(&state, &incoming, gate.as_deref(), Some(ON_WORKER))
    };
    if matches!(attempt, Attempt::Longer) {
        let state = state.clone();
        let incoming = incoming.clone();
        // The turn goes with the work: a request dropped while it runs must
        // not let the next decision block a worker on the lock it holds.
        attempt = match tokio::task::spawn_blocking(move || {
            let decided = decide(&state, &incoming, gate.as_deref(), None);
            drop(turn);
            decided
        })
        .await
        {
            Ok(a) => a,
            Err(_) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error while deciding; see the server log",
                );
            }
        }
    } else {
        drop(turn);
    }
    let mut decided = match attempt {
        Attempt::Decided(review) => review,
        Attempt::NotLeading => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this sodguard replica is no longer the leader; the failurePolicy applies",
            );
        }
        // With the whole budget a decision is never given up: this would be
        // a bug, answered as one.
        Attempt::Longer => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while deciding; see the server log",
            );
        }
    };
    decided.warnings.extend(hygiene_warnings(&incoming));
    let decision = if decided.allowed { "allowed" } else { "denied" };
    if let Some(e) = &decided.stopped {
        state.metrics.count_exhausted("decision", e);
    }
    let kind = crate::decode::kinds::metric_kind(&incoming.kind.kind);
    state.metrics.observe_request(
        kind,
        incoming.operation(),
        decision,
        start.elapsed().as_secs_f64(),
    );
    axum::Json(review::respond(&incoming.uid, &decided)).into_response()
}

/// R12.1/R12.2 at admission: the API server has already pruned or refused
/// what the schema does not know when it validates, but a warning tells the
/// author why their field has no effect (`kubectl apply` shows it).
fn hygiene_warnings(incoming: &Incoming) -> Vec<String> {
    use crate::decode::strict;
    let Some(object) = &incoming.request.object else {
        return Vec::new();
    };
    let mut out: Vec<String> = strict::unknown_fields(object)
        .into_iter()
        .map(|f| format!("unknown field {f:?}: it has no effect"))
        .collect();
    out.extend(strict::impossible_permissions(
        object,
        &strict::Served::without_crds(),
    ));
    out
}

#[tracing::instrument(skip_all, fields(uid = %incoming.uid, kind = %incoming.kind.kind, operation = incoming.operation(), dry_run = incoming.request.dry_run, decision))]
fn decide(
    state: &AppState,
    incoming: &Incoming,
    gate: Option<&(dyn Fn() -> bool + Send + Sync)>,
    within: Option<Duration>,
) -> Attempt {
    let may = || gate.is_none_or(|may| may());
    let review = match state.attempt(&incoming.request, state.now(), may, within) {
        Attempt::Decided(review) => review,
        Attempt::NotLeading => {
            tracing::warn!("not decided: no longer the leader");
            return Attempt::NotLeading;
        }
        Attempt::Longer => {
            tracing::debug!(within = ?within, "not decided in time on the async worker: again on the blocking pool");
            return Attempt::Longer;
        }
    };
    let decision = if review.allowed { "allowed" } else { "denied" };
    tracing::Span::current().record("decision", decision);
    // Who asked for what, and which policy it touched: names only, never
    // an object's content (a Secret's data never reaches a log).
    let req = &incoming.request;
    let object = req.object.as_ref().or(req.old_object.as_ref());
    let meta = |k: &str| {
        object
            .and_then(|o| o.get("metadata"))
            .and_then(|m| m.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .or_else(|| match k {
                "name" => req.name.clone(),
                _ => req.namespace.clone(),
            })
            .unwrap_or_default()
    };
    let list = |f: &dyn Fn(&crate::engine::Violation) -> String| {
        let mut xs: Vec<String> = review.violations.iter().map(f).collect();
        xs.extend(review.excused.iter().map(|e| f(&e.violation)));
        xs.sort();
        xs.dedup();
        xs.join(",")
    };
    tracing::info!(
        user = %req.user_info.username,
        name = %meta("name"),
        namespace = %meta("namespace"),
        violations = review.violations.len(),
        excused = review.excused.len(),
        policies = %list(&|v| v.policy.to_string()),
        subjects = %list(&|v| v.subject.to_string()),
        violation_namespaces = %list(&|v| v.namespace.to_string()),
        refusal = review.refusal.as_deref().unwrap_or_default(),
        "admission decided"
    );
    Attempt::Decided(review)
}
