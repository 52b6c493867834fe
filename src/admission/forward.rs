//! With leader election, the webhook port hands each `/validate` to the
//! leader: decided here when this replica leads, otherwise sent as is to the
//! leader's peer port over mutual TLS and its answer relayed. The decision
//! lock is never held while waiting on the network: a follower does not
//! touch its own state at all.
//!
//! The peer port only ever decides locally, and only while leading: a
//! forwarded request is never forwarded again, whatever the Lease says.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceExt;

use super::http;
use super::tls::{self, PemPair, TlsError};
use crate::controllers::lease::Election;
use crate::controllers::lease::{Leadership, Role};
use crate::runtime::metrics::Metrics;
use crate::runtime::state::AppState;

/// Marks a forwarded request (and names the follower that sent it). The
/// webhook port refuses requests that carry it: a peer address that points
/// at a webhook port would otherwise make a loop.
pub const FORWARDED_HEADER: &str = "x-sodguard-forwarded-by";

/// Sends requests to the leader's peer port.
pub struct Forwarder {
    client: RwLock<reqwest::Client>,
    me: HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

/// Where a follower's client certificate and trust come from; re-read when
/// the files change, like the serving certificate.
#[derive(Debug, Clone)]
pub struct PeerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub server_name: String,
}

impl PeerFiles {
    fn read(&self) -> Result<(PemPair, Vec<u8>), TlsError> {
        let pair = PemPair::read(&self.cert, &self.key)?;
        let ca = std::fs::read(&self.ca).map_err(|source| TlsError::Read {
            path: self.ca.clone(),
            source,
        })?;
        Ok((pair, ca))
    }

    fn client(&self, pair: &PemPair, timeout: Duration) -> Result<reqwest::Client, TlsError> {
        let config =
            tls::peer_client_config(pair, &self.ca, &self.server_name, (&self.cert, &self.key))?;
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // Proxies from the environment have no business between replicas.
            .no_proxy()
            .build()
            .map_err(|e| TlsError::PeerCa {
                path: self.ca.clone(),
                message: format!("cannot build the peer client: {e}"),
            })
    }
}

impl Forwarder {
    pub fn new(settings: &Election, files: &PeerFiles) -> Result<Self, TlsError> {
        let (pair, _) = files.read()?;
        let client = files.client(&pair, settings.forward_timeout)?;
        Ok(Forwarder {
            client: RwLock::new(client),
            // The identity was checked at start: no '@', and a header value
            // it must be; a name that is not falls back to a fixed marker.
            me: HeaderValue::from_str(&settings.identity)
                .unwrap_or(HeaderValue::from_static("follower")),
            timeout: settings.forward_timeout,
        })
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The leader's answer, relayed; `Err` when there is none to relay.
    async fn forward(&self, address: &str, body: Bytes) -> Result<Response, reqwest::Error> {
        let resp = self
            .client()
            .post(format!("https://{address}/validate"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_HEADER, self.me.clone())
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = resp.bytes().await?;
        let mut out = Response::new(Body::from(bytes));
        *out.status_mut() = status;
        if let Some(ct) = content_type {
            out.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        Ok(out)
    }
}

/// Re-reads the follower's client certificate and the peer CA every `every`
/// and rebuilds the client when they changed and load.
pub async fn reload_loop(forwarder: Arc<Forwarder>, files: PeerFiles, every: Duration) {
    let mut current = files.read().ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let read = match files.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the peer certificate; keeping the current one");
                continue;
            }
        };
        if current.as_ref() == Some(&read) {
            continue;
        }
        match files.client(&read.0, forwarder.timeout) {
            Ok(c) => {
                *forwarder.client.write().unwrap_or_else(|p| p.into_inner()) = c;
                current = Some(read);
                tracing::info!("peer client certificate or CA reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "new peer certificate does not load; keeping the current one")
            }
        }
    }
}

/// What the routers of a replica under leader election share.
pub struct Replicas {
    pub leadership: Arc<Leadership>,
    pub forwarder: Arc<Forwarder>,
    pub state: Arc<AppState>,
    /// The single-replica webhook (body limit, panic guard, decision): the
    /// leader's requests go through it unchanged.
    pub local: Router,
    pub max_body: usize,
}

impl Replicas {
    fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}

fn unavailable(message: impl Into<String>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": message.into() })),
    )
        .into_response()
}

/// The webhook port: decide when leading, forward when following.
pub fn webhook_router(replicas: Arc<Replicas>) -> Router {
    http::guard(
        Router::new()
            .route("/validate", post(validate))
            .with_state(replicas.clone())
            .merge(http::authorize_router(
                replicas.state.clone(),
                replicas.max_body,
            )),
    )
}

/// The peer port: forwarded requests, decided only by the leader.
pub fn peer_router(replicas: Arc<Replicas>) -> Router {
    http::guard(
        Router::new()
            .route("/validate", post(validate_forwarded))
            .with_state(replicas),
    )
}

/// The probes: ready only with a complete index and a leader known (this
/// replica or another); /healthz and /metrics as without election.
pub fn probe_router(replicas: Arc<Replicas>) -> Router {
    let rest = http::probe_router(replicas.state.clone());
    Router::new()
        .route("/readyz", get(readyz))
        .with_state(replicas)
        .fallback_service(rest)
}

async fn readyz(State(r): State<Arc<Replicas>>) -> Response {
    if !r.state.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the index is still loading",
        )
            .into_response();
    }
    match r.leadership.role() {
        Role::Leader => "ready (leader)".into_response(),
        Role::Follower { leader, .. } => format!("ready (following {leader})").into_response(),
        Role::Unknown => (StatusCode::SERVICE_UNAVAILABLE, "no leader known").into_response(),
    }
}

async fn local(r: &Replicas, req: Request) -> Response {
    match r.local.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

async fn validate(State(r): State<Arc<Replicas>>, req: Request) -> Response {
    if req.headers().contains_key(FORWARDED_HEADER) {
        return (
            StatusCode::LOOP_DETECTED,
            axum::Json(json!({ "error": "a forwarded request reached a webhook port: check --peer-address" })),
        )
            .into_response();
    }
    match r.leadership.role() {
        Role::Leader => local(&r, req).await,
        Role::Unknown => {
            r.metrics().forward_failure("no_leader");
            unavailable("no sodguard leader is known yet; the failurePolicy applies")
        }
        Role::Follower { leader, address } => {
            // The same bounded read as a leader's: an oversized body is
            // drained before the 413, so HTTP/2 sees no stream reset.
            let (parts, body) = req.into_parts();
            let body = match http::read_body(&parts.headers, body, r.max_body).await {
                Ok(b) => b,
                Err(too_large_or_unreadable) => return too_large_or_unreadable,
            };
            let start = Instant::now();
            match r.forwarder.forward(&address, body).await {
                Ok(resp) => {
                    r.metrics().forwarded.inc();
                    r.metrics()
                        .forward_latency
                        .observe(start.elapsed().as_secs_f64());
                    resp
                }
                Err(e) => {
                    let reason = if e.is_timeout() {
                        "timeout"
                    } else {
                        "unreachable"
                    };
                    r.metrics().forward_failure(reason);
                    tracing::warn!(%leader, %address, error = %e, "cannot reach the leader");
                    unavailable(format!(
                        "the sodguard leader {leader} cannot be reached ({reason}); the failurePolicy applies"
                    ))
                }
            }
        }
    }
}

async fn validate_forwarded(State(r): State<Arc<Replicas>>, req: Request) -> Response {
    match r.leadership.role() {
        Role::Leader => local(&r, req).await,
        _ => unavailable("this replica is not the leader"),
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::controllers::lease::{LeaseView, holder_identity};
    use crate::engine::index::Index;
    use crate::runtime::state::Mode;

    /// A follower answers a body over --max-body-bytes with 413 over HTTP/2
    /// too, after reading it to its end: the stream is never reset (it used
    /// to stop reading and answer early, which HTTP/2 ends with RST_STREAM).
    #[tokio::test]
    async fn a_follower_answers_an_oversized_http2_body_413_without_a_reset() {
        const MAX: usize = 512 * 1024;
        // Over the limit and over the server's HTTP/2 stream window, within
        // the drain budget.
        const LEN: usize = 3 * MAX;
        let leader = holder_identity("a", "127.0.0.1:9");
        let lease = LeaseView {
            holder: Some(leader),
            renew_time: Some(Timestamp::now()),
            duration: Some(SignedDuration::from_secs(600)),
        };
        let me = holder_identity("b", "127.0.0.1:10");
        let leadership = Arc::new(Leadership::fixed(
            &me,
            None,
            lease,
            SignedDuration::from_secs(6),
        ));
        assert!(matches!(leadership.role(), Role::Follower { .. }));
        let state = AppState::new(
            Mode::Live,
            Index::new(),
            Duration::from_secs(30),
            Metrics::new(),
        );
        state.set_ready();
        let replicas = Arc::new(Replicas {
            leadership,
            forwarder: Arc::new(Forwarder {
                // Never used: the body is refused before any forwarding.
                client: RwLock::new({
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    reqwest::Client::new()
                }),
                me: HeaderValue::from_static("b"),
                timeout: Duration::from_secs(1),
            }),
            state: state.clone(),
            local: http::webhook_router(state, MAX),
            max_body: MAX,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, webhook_router(replicas)).await;
        });

        for declared in [true, false] {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let mut client = client.ready().await.unwrap();
            let mut req = axum::http::Request::post(format!("http://{addr}/validate"))
                .header("content-type", "application/json");
            if declared {
                req = req.header("content-length", LEN);
            }
            let (response, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
            let mut sent = 0;
            let mut reset = None;
            while sent < LEN {
                let n = (LEN - sent).min(16 * 1024);
                send.reserve_capacity(n);
                match futures::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(cap)) if cap > 0 => {
                        let cap = cap.min(n);
                        if let Err(e) =
                            send.send_data(Bytes::from(vec![b' '; cap]), sent + cap == LEN)
                        {
                            reset = Some(e.to_string());
                            break;
                        }
                        sent += cap;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        reset = Some(e.to_string());
                        break;
                    }
                    None => {
                        reset = Some("stream closed".into());
                        break;
                    }
                }
            }
            let status = tokio::time::timeout(Duration::from_secs(20), response)
                .await
                .expect("a response within 20s")
                .map(|r| r.status().as_u16());
            assert_eq!(
                (sent, reset, status.map_err(|e| e.to_string())),
                (LEN, None, Ok(413)),
                "declared length {declared}: the whole body is sent, no reset, 413"
            );
        }
    }
}
