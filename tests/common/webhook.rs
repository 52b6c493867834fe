//! The webhook's two test beds: its router in process (an [`AppState`] over
//! `tests/fixtures/state.yaml`), and `sodguard serve` as a process over real
//! TLS (certificates made here, an HTTPS client) — and the AdmissionReviews
//! both are sent.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use sodguard::admission::http::{DEFAULT_MAX_BODY, webhook_router};
use sodguard::engine::index::Index;
use sodguard::runtime::metrics::Metrics;
use sodguard::runtime::state::{AppState, Mode};
use tower::ServiceExt;

use super::manifest_dir;
use super::objects::examples_dir;

// ---- AdmissionReviews --------------------------------------------------------

pub fn admission_review(request: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// A request as the API server, or anyone who reaches `/validate`, may send
/// it: its kind is the one of `object` (or of `old` for a DELETE), and
/// `user` is an authenticated user.
pub fn admission_request(
    uid: &str,
    operation: &str,
    user: &str,
    object: Value,
    old: Value,
) -> Value {
    let of = if object.is_null() { &old } else { &object };
    let kind = of["kind"].clone();
    let api_version = of["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    json!({
        "uid": uid, "kind": {"group": group, "version": version, "kind": kind},
        "operation": operation, "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": object, "oldObject": old,
    })
}

/// alice CREATEs `object`.
pub fn create_review(uid: &str, object: Value) -> Value {
    admission_review(admission_request(
        uid,
        "CREATE",
        "alice",
        object,
        Value::Null,
    ))
}

// ---- the router in process ---------------------------------------------------

/// `tests/fixtures`: `state.yaml` and the AdmissionReviews in `reviews/`.
pub fn fixtures() -> PathBuf {
    manifest_dir().join("tests/fixtures")
}

/// The bytes of `tests/fixtures/reviews/NAME.json`.
pub fn fixture_review(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(format!("reviews/{name}.json"))).unwrap()
}

/// The index of `tests/fixtures/state.yaml`.
pub fn fixture_index() -> Index {
    sodguard::load::load_state(&[fixtures().join("state.yaml")])
        .unwrap()
        .0
}

/// The fixture state, not ready yet in `Mode::Live`.
pub fn state(mode: Mode) -> Arc<AppState> {
    AppState::new(
        mode,
        fixture_index(),
        Duration::from_secs(30),
        Metrics::new(),
    )
}

/// The fixture state, live and ready; admitted changes are held for `ttl`.
pub fn live(ttl: Duration) -> Arc<AppState> {
    let s = AppState::new(Mode::Live, fixture_index(), ttl, Metrics::new());
    s.set_ready();
    s
}

/// A JSON POST of `body` to `/validate`.
pub fn validate_request(body: impl Into<Body>) -> Request<Body> {
    Request::post("/validate")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

/// POSTs `body` to `/validate`; the answer's status and JSON (`Null` if none).
pub async fn post(state: Arc<AppState>, body: impl Into<Body>) -> (StatusCode, Value) {
    let app = webhook_router(state, DEFAULT_MAX_BODY);
    let resp = app.oneshot(validate_request(body)).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

// ---- `sodguard serve` over TLS -------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sodguard serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    /// The webhook's HTTPS port.
    pub port: u16,
    /// The plain-HTTP port of probes and metrics.
    pub probe: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sodguard serve ARGS` on free local ports, once `/readyz` answers 200.
pub fn spawn(args: &[&str]) -> Server {
    spawn_with(|| Command::new(env!("CARGO_BIN_EXE_sodguard")), args)
}

/// [`spawn`], started by a shell that runs `prelude` first (e.g. `ulimit`)
/// and then becomes the server (same process).
pub fn spawn_after(prelude: &str, args: &[&str]) -> Server {
    let sh = || {
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("{prelude} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_sodguard"),
        ]);
        sh
    };
    spawn_with(sh, args)
}

/// Starts the server on two free ports and waits for it to be ready. Ports
/// are found free, then bound by the server: another test may take one in
/// between, and the server then exits at once saying so; it is started
/// again on other ports. A server that exits for any other reason, or is
/// not ready within a minute (a slow CI machine), fails the test with what
/// it wrote to stderr.
fn spawn_with(command: impl Fn() -> Command, args: &[&str]) -> Server {
    for _ in 0..5 {
        let (port, probe) = (free_port(), free_port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command()
            .arg("serve")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--probe-listen",
                &format!("127.0.0.1:{probe}"),
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child, port, probe };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", probe)) {
                let _ =
                    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return server;
                }
            }
            let stderr = || std::fs::read_to_string(log.path()).unwrap_or_default();
            if let Ok(Some(status)) = server.child.try_wait() {
                let stderr = stderr();
                if stderr.contains("in use") {
                    break;
                }
                panic!("sodguard serve exited ({status}) before it was ready:\n{stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "sodguard serve did not become ready within 60 s:\n{}",
                stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("sodguard serve found its ports taken five times");
}

/// `sodguard serve` on the examples with the serving pair `cert`/`key`, and
/// `extra` flags.
pub fn serve_examples(cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let examples = examples_dir();
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--state",
        examples.to_str().unwrap(),
    ];
    args.extend(extra);
    spawn(&args)
}

/// A certificate authority made for one test.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for localhost; returns (cert PEM, key PEM, DER).
    pub fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A serving pair of this CA written to `dir` as `cert`/`key`.
    pub fn serving_pair(&self, dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (c, k, _) = self.leaf();
        let (cert, key) = (dir.join(cert), dir.join(key));
        write_atomically(&cert, &c);
        write_atomically(&key, &k);
        (cert, key)
    }
}

/// Replaces `path` atomically, as a Secret volume update does.
pub fn write_atomically(path: &Path, s: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, s).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An HTTPS client (rustls) that trusts `ca_pem` only.
pub fn client_builder(ca_pem: &str) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
}

/// A client identity from a certificate and key PEM.
pub fn identity(cert: &str, key: &str) -> reqwest::Identity {
    reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()
}

/// A client that trusts `ca_pem` and reports the server's certificate.
pub fn client(ca_pem: &str) -> reqwest::Client {
    client_builder(ca_pem).tls_info(true).build().unwrap()
}

/// POSTs `body` to `/validate` on `port`, asserting success; the answer and
/// the DER of the certificate the server presented.
pub async fn send(client: &reqwest::Client, port: u16, body: &Value) -> (Value, Vec<u8>) {
    let resp = client
        .post(format!("https://localhost:{port}/validate"))
        .json(body)
        .send()
        .await
        .unwrap();
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    assert!(resp.status().is_success(), "{}", resp.status());
    (resp.json().await.unwrap(), der)
}

// ---- SubjectAccessReviews (`/authorize`, R13) ----------------------------------

/// The clock of `tests/fixtures/authorize/state.yaml`.
pub const AUTHORIZE_NOW: &str = "2026-11-28T12:00:00Z";

/// The bytes of `tests/fixtures/authorize/NAME.json`.
pub fn fixture_access_review(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(format!("authorize/{name}.json"))).unwrap()
}

/// `tests/fixtures/authorize/state.yaml` at [`AUTHORIZE_NOW`], ready unless
/// `mode` is Live.
pub fn authorize_state(mode: Mode) -> Arc<AppState> {
    let index = sodguard::load::load_state(&[fixtures().join("authorize/state.yaml")])
        .unwrap()
        .0;
    AppState::new(mode, index, Duration::from_secs(30), Metrics::new())
        .with_clock(Some(AUTHORIZE_NOW.parse().unwrap()))
}

/// POSTs `body` to `/authorize`; the answer's status and JSON (`Null` if none).
pub async fn post_authorize(state: Arc<AppState>, body: impl Into<Body>) -> (StatusCode, Value) {
    let app = webhook_router(state, DEFAULT_MAX_BODY);
    let req = Request::post("/authorize")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

// ---- what a server holds ---------------------------------------------------------

/// The text of `/metrics` on the probe port.
pub fn metrics_text(probe: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", probe)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut m = String::new();
    std::io::Read::read_to_string(&mut s, &mut m).unwrap();
    m
}

/// The value of the sample `name{labels}` (exactly as exported), 0 if absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// How many sockets the server process has open (listeners included), as
/// the kernel sees it: what a client made it hold, whatever it reports.
pub fn open_sockets(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// A TLS client offering `alpn` (`b"http/1.1"`, `b"h2"`) and trusting
/// `ca_pem` only.
pub fn tls_connector(ca_pem: &str, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A connection to `port` with its TLS handshake done, on which nothing is
/// sent.
pub async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    port: u16,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// How long until the server closes `conn` (a read gets end of file or an
/// error), waiting at most `limit`; None if it is still open then.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
    limit: Duration,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut buf = [0u8; 256];
    tokio::time::timeout(limit, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}
