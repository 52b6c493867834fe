//! `sodguard serve` as a process, over real TLS: certificates made here, a real
//! HTTPS client, a certificate rotation while requests keep succeeding, and
//! every shared scenario sent as an AdmissionReview to `serve --state`.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::objects::{config_map, examples_dir};
use common::scenarios::pending;
use common::webhook::{
    Ca, admission_request, admission_review, client, client_builder, closed_within, create_review,
    identity, metric, metrics_text, open_sockets, send, serve_examples, spawn, spawn_after,
    tls_connect, tls_connector, write_atomically as write,
};
use serde_json::{Value, json};

/// The request every TLS test sends: alice creates a ConfigMap, allowed.
fn configmap_review(uid: &str) -> Value {
    create_review(uid, config_map("shop", "c"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_while_requests_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let ca = Ca::new();
    let (c1, k1, der1) = ca.leaf();
    write(&cert, &c1);
    write(&key, &k1);
    let server = serve_examples(&cert, &key, &["--cert-reload-interval", "100ms"]);
    let https = client(&ca.pem());
    let body = configmap_review("r1");

    let (resp, der) = send(&https, server.port, &body).await;
    assert_eq!(resp["response"]["allowed"], true);
    assert_eq!(der, der1);

    // A broken pair is refused and the old one kept.
    write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, der) = send(&https, server.port, &body).await;
    assert_eq!(
        der, der1,
        "a pair that fails to load must not replace the old one"
    );

    // Rotate while a stream of requests goes on: none may fail.
    let (c2, k2, der2) = ca.leaf();
    let stream = {
        let client = https.clone();
        let body = body.clone();
        let port = server.port;
        let der2 = der2.clone();
        tokio::spawn(async move {
            let mut seen_new = false;
            for _ in 0..200 {
                let (resp, der) = send(&client, port, &body).await;
                assert_eq!(resp["response"]["uid"], "r1");
                seen_new |= der == der2;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen_new
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(&cert, &c2);
    write(&key, &k2);
    let seen_new = stream.await.unwrap();
    // New connections get the new certificate.
    let fresh = client(&ca.pem());
    let (_, der) = send(&fresh, server.port, &body).await;
    assert_eq!(der, der2);
    assert!(seen_new || der == der2);
    // Probes and metrics answer on the plain-HTTP port.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.probe))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"sodguard_admission_requests_total{kind="ConfigMap""#)
            || metrics.contains(r#"sodguard_admission_requests_total{kind="other",operation="CREATE",decision="allowed"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("sodguard_index_objects{kind=\"RoleBinding\"}"),
        "{metrics}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let client_ca = dir.path().join("ca.pem");
    write(&client_ca, &ca.pem());
    let server = serve_examples(&cert, &key, &["--client-ca", client_ca.to_str().unwrap()]);
    let body = configmap_review("r2");
    // Without a client certificate the handshake fails.
    let anonymous = client(&ca.pem());
    assert!(
        anonymous
            .post(format!("https://localhost:{}/validate", server.port))
            .json(&body)
            .send()
            .await
            .is_err()
    );
    // With one signed by the client CA it succeeds.
    let (cc, ck, _) = ca.leaf();
    let authed = client_builder(&ca.pem())
        .identity(identity(&cc, &ck))
        .build()
        .unwrap();
    let (resp, _) = send(&authed, server.port, &body).await;
    assert_eq!(resp["response"]["allowed"], true);
    // TLS 1.2 is accepted too.
    let tls12 = client_builder(&ca.pem())
        .identity(identity(&cc, &ck))
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let (resp, _) = send(&tls12, server.port, &body).await;
    assert_eq!(resp["response"]["allowed"], true);
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let examples = examples_dir();
    let mut server = spawn(&[
        "--self-signed",
        "--state",
        examples.to_str().unwrap(),
        "--shutdown-grace",
        "3s",
    ]);
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sodguard serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn contradictory_settings_are_refused_at_start() {
    for (args, says) in [
        (vec!["--tls-cert", "x.pem"], "without --tls-key"),
        (
            vec!["--self-signed", "--tls-cert", "c", "--tls-key", "k"],
            "contradicts",
        ),
        (vec![], "needs TLS"),
        (
            vec!["--self-signed", "--now", "2026-01-01T00:00:00Z"],
            "--now only applies",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sodguard"))
            .arg("serve")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// How a violation appears in a denial message or a warning.
fn summary(v: &sodguard::testcase::ExpectedViolation) -> String {
    let place = if v.namespace == "*" {
        "cluster-wide".to_string()
    } else {
        format!("in namespace {}", v.namespace)
    };
    let mut duties = v.duties.clone();
    duties.sort();
    format!(
        "SoDPolicy {}: {} would hold {} {place}",
        v.policy,
        v.subject,
        duties.join(" + ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_scenarios_over_https() {
    let Some(dir) = common::scenarios::shared_scenarios() else {
        return;
    };
    let cases = sodguard::testcase::load_cases(&[dir]).unwrap();
    assert!(!cases.is_empty());
    // The engine tier (tests/scenarios.rs) makes sure these still fail.
    let pending = pending();
    for c in cases {
        if pending.reason(&c.file).is_some() {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state.json");
        let mut f = std::fs::File::create(&state).unwrap();
        for o in &c.case.objects {
            writeln!(f, "{o}").unwrap();
        }
        drop(f);
        let ca = tmp.path().join("ca.pem");
        let mut args = vec![
            "--self-signed",
            "--ca-bundle-out",
            ca.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ];
        let now;
        if let Some(n) = c.case.now {
            now = n.to_string();
            args.extend(["--now", now.as_str()]);
        }
        let server = spawn(&args);
        let client = client(&std::fs::read_to_string(&ca).unwrap());
        let name = &c.case.name;
        match &c.case.request {
            Some(req) => {
                // Every field the case sets, kind/resource/subResource/name/namespace included.
                let mut request = serde_json::to_value(req).unwrap();
                request["uid"] = json!(name);
                let body = admission_review(request);
                let (resp, _) = send(&client, server.port, &body).await;
                let r = &resp["response"];
                assert_eq!(r["uid"], json!(name));
                assert_eq!(
                    r["allowed"],
                    json!(c.case.expect.allowed.unwrap()),
                    "{name}: {r}"
                );
                let mut text = r["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                for w in r["warnings"].as_array().into_iter().flatten() {
                    text.push('\n');
                    text.push_str(w.as_str().unwrap_or_default());
                }
                for v in &c.case.expect.violations {
                    let s = summary(v);
                    let in_audit = r["auditAnnotations"]["violations"]
                        .as_str()
                        .is_some_and(|a| a.contains(&v.subject));
                    assert!(text.contains(&s) || in_audit, "{name}: {s:?} not in {r}");
                }
            }
            None => {
                // A state case: re-submitting each policy reports how many
                // subjects already violate it.
                for o in c.case.objects.iter().filter(|o| o["kind"] == "SoDPolicy") {
                    let policy = o["metadata"]["name"].as_str().unwrap();
                    let body = admission_review(admission_request(
                        name,
                        "UPDATE",
                        "alice",
                        o.clone(),
                        o.clone(),
                    ));
                    let (resp, _) = send(&client, server.port, &body).await;
                    let want = c
                        .case
                        .expect
                        .violations
                        .iter()
                        .filter(|v| v.policy == policy)
                        .count();
                    let warnings = resp["response"]["warnings"].to_string();
                    if want == 0 {
                        assert!(!warnings.contains("already violate"), "{name}: {warnings}");
                    } else {
                        assert!(
                            warnings.contains(&format!("({want} violation(s))")),
                            "{name}: want {want}: {warnings}"
                        );
                    }
                }
            }
        }
        drop(server);
    }
}

/// A body over `--max-body-bytes` gets 413 over HTTP/1.1 and over HTTP/2 (the
/// API server speaks HTTP/2), whether its length is declared or streamed —
/// not a reset stream or connection (issue 8, finding 8).
#[tokio::test]
async fn an_oversized_body_gets_413_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let server = serve_examples(&cert, &key, &["--max-body-bytes", "524288"]);
    let builder = || client_builder(&ca.pem());
    let h1 = builder().http1_only().build().unwrap();
    let h2 = builder().http2_prior_knowledge().build().unwrap();
    let url = format!("https://localhost:{}/validate", server.port);
    // Over the limit, and over the server's HTTP/2 stream window (1 MiB):
    // the client has to wait for the server to read before it can finish.
    let big = vec![b' '; 3 * 512 * 1024];
    let mut wrong = Vec::new();
    for (proto, client, version) in [
        ("HTTP/1.1", &h1, reqwest::Version::HTTP_11),
        ("HTTP/2", &h2, reqwest::Version::HTTP_2),
    ] {
        for streamed in [false, true] {
            let body = if streamed {
                // No length: chunked over HTTP/1.1, DATA frames without
                // content-length over HTTP/2.
                let frames: Vec<Result<_, std::convert::Infallible>> = big
                    .chunks(16 * 1024)
                    .map(|c| {
                        Ok(http_body::Frame::data(axum::body::Bytes::copy_from_slice(
                            c,
                        )))
                    })
                    .collect();
                reqwest::Body::wrap(http_body_util::StreamBody::new(futures::stream::iter(
                    frames,
                )))
            } else {
                reqwest::Body::from(big.clone())
            };
            let what = format!(
                "{proto}, {} body",
                if streamed { "streamed" } else { "declared" }
            );
            let got = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| (r.version(), r.status()));
            match got {
                Ok((v, status))
                    if v == version && status == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {}
                Ok(other) => wrong.push(format!("{what}: {other:?}")),
                Err(e) => wrong.push(format!("{what}: no response: {e:?}")),
            }
        }
        // The client still gets an ordinary request through.
        let ok = client
            .post(&url)
            .json(&configmap_review("small"))
            .send()
            .await
            .unwrap();
        assert!(ok.status().is_success(), "{proto}: {}", ok.status());
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The same at the HTTP/2 frame level, as the API server's client sees it: a
/// body over `--max-body-bytes` (and over the stream window) is read to its
/// end and answered 413, and the stream is never reset (issue 8, finding 8:
/// the server used to answer early and reset the stream with RST_STREAM,
/// which nghttp2/curl report as a stream error instead of the 413).
#[tokio::test]
async fn an_oversized_body_over_http2_is_answered_413_without_a_stream_reset() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let server = serve_examples(&cert, &key, &["--max-body-bytes", "524288"]);
    let connector = tls_connector(&ca.pem(), b"h2");

    const LEN: usize = 3 * 512 * 1024;
    for declared in [true, false] {
        let what = if declared {
            "declared length"
        } else {
            "streamed"
        };
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let mut req =
            axum::http::Request::post(format!("https://localhost:{}/validate", server.port))
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
                    let eos = sent + cap == LEN;
                    if let Err(e) = send.send_data(axum::body::Bytes::from(vec![b' '; cap]), eos) {
                        reset = Some(format!("{e}"));
                        break;
                    }
                    sent += cap;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    reset = Some(format!("{e}"));
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
            "{what}: the whole body is sent, the stream is not reset, the answer is 413"
        );
    }
}

/// A client with `identity` (cert + key PEM) or none, trusting `server_ca`,
/// never reusing a connection, so each call is a new handshake.
fn mtls_client(server_ca: &str, pair: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = client_builder(server_ca).pool_max_idle_per_host(0);
    if let Some((c, k)) = pair {
        b = b.identity(identity(c, k));
    }
    b.build().unwrap()
}

async fn handshake_ok(client: &reqwest::Client, port: u16, body: &Value) -> bool {
    match client
        .post(format!("https://localhost:{port}/validate"))
        .json(body)
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// `--client-ca`: only certificates of that CA get through — not none, not
/// one from another CA (the serving CA included) — and a rotated client CA
/// file is picked up with the serving certificate's reload, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_admits_only_its_own_certificates_and_follows_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let serving_ca = Ca::new();
    let (client_ca_1, client_ca_2) = (Ca::new(), Ca::new());
    let (cert, key) = serving_ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let client_ca = dir.path().join("client-ca.pem");
    write(&client_ca, &client_ca_1.pem());
    let server = serve_examples(
        &cert,
        &key,
        &[
            "--client-ca",
            client_ca.to_str().unwrap(),
            "--cert-reload-interval",
            "100ms",
        ],
    );
    let body = configmap_review("r3");
    let trust = serving_ca.pem();
    let (c1, k1, _) = client_ca_1.leaf();
    let (c2, k2, _) = client_ca_2.leaf();
    let (cs, ks, _) = serving_ca.leaf();
    let none = mtls_client(&trust, None);
    let of_ca1 = mtls_client(&trust, Some((&c1, &k1)));
    let of_ca2 = mtls_client(&trust, Some((&c2, &k2)));
    let of_serving_ca = mtls_client(&trust, Some((&cs, &ks)));

    assert!(
        !handshake_ok(&none, server.port, &body).await,
        "no certificate"
    );
    assert!(
        !handshake_ok(&of_ca2, server.port, &body).await,
        "a certificate of another CA"
    );
    assert!(
        !handshake_ok(&of_serving_ca, server.port, &body).await,
        "a certificate of the serving CA, which is not the client CA"
    );
    assert!(handshake_ok(&of_ca1, server.port, &body).await);

    // Rotate the client CA file only: the serving pair stays the same.
    write(&client_ca, &client_ca_2.pem());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handshake_ok(&of_ca2, server.port, &body).await {
        assert!(
            Instant::now() < deadline,
            "the rotated client CA was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !handshake_ok(&of_ca1, server.port, &body).await,
        "the old client CA must no longer be trusted"
    );
    assert!(!handshake_ok(&none, server.port, &body).await);
}

/// Issue 11: the violations gauge is the audit's. `serve --state` has no
/// cluster to write to, but its audit still gives the metrics: the examples'
/// one violation under `Deny`, with the audit's age, and no other gauge.
#[test]
fn a_static_state_exports_the_audits_violations_gauge() {
    let examples = examples_dir();
    let server = spawn(&["--self-signed", "--state", examples.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The gauge and the audit's age are two metrics: a scrape may fall
    // between their updates.
    let metrics = loop {
        let m = scrape(server.probe);
        let aged = !m.contains("sodguard_audit_last_success_age_seconds -1");
        if (m.contains("sodguard_audit_violations{") && aged) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metrics.contains(
            r#"sodguard_audit_violations{policy="secret-admin-vs-secret-use",action="Deny"} 1"#
        ),
        "{metrics}"
    );
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sodguard_audit_last_success_age_seconds "))
        .expect("the audit's age")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{metrics}");
    assert!(!metrics.contains("sodguard_violations"), "{metrics}");
    drop(server);
}

/// An audit past `--audit-budget` writes nothing and exports no counts: it
/// is counted as stopped short, and the audit's age says none succeeded.
#[test]
fn an_audit_past_its_budget_exports_no_counts_and_says_why() {
    let examples = examples_dir();
    let server = spawn(&[
        "--self-signed",
        "--state",
        examples.to_str().unwrap(),
        "--audit-budget",
        "1ns",
    ]);
    let want = r#"sodguard_budget_exhausted_total{work="audit",why="time"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let m = scrape(server.probe);
        if m.contains(want) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains(want), "{metrics}");
    assert!(!metrics.contains("sodguard_audit_violations{"), "{metrics}");
    assert!(
        metrics.contains("sodguard_audit_last_success_age_seconds -1"),
        "{metrics}"
    );
}

fn scrape(probe: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", probe)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut m = String::new();
    std::io::Read::read_to_string(&mut s, &mut m).unwrap();
    m
}

// ---- what one client can make the server hold (--max-connections,
// --tls-handshake-timeout, --idle-timeout) -------------------------------------

const OPEN: &str = r#"sodguard_connections_open{listener="webhook"}"#;

/// A client opening many connections (a load generator with no bound on
/// requests in flight, or an attacker) makes the server hold at most
/// `--max-connections` of them; the rest wait in the kernel's backlog, not
/// in the server's memory or file descriptors.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_make_the_server_hold_more_connections_than_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let server = serve_examples(&cert, &key, &["--max-connections", "4"]);
    let before = open_sockets(&server);
    let mut held = Vec::new();
    for _ in 0..64 {
        // The kernel completes the TCP handshake whether or not the server
        // accepts: every connect succeeds.
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap(),
        );
    }
    // Until the server has taken what it may (it stops at the cap), then a
    // little longer for anything it should not take.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics_text(server.probe), OPEN) < 4.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = open_sockets(&server);
    assert!(
        during <= before + 4,
        "64 connections made the server hold {} sockets (cap 4)",
        during - before
    );
    let m = metrics_text(server.probe);
    assert_eq!(metric(&m, OPEN), 4.0, "{m}");
    assert!(
        metric(
            &m,
            r#"sodguard_connections_at_cap_total{listener="webhook"}"#
        ) >= 1.0,
        "{m}"
    );
    drop(held);
}

/// A connection that never finishes its TLS handshake is dropped after
/// `--tls-handshake-timeout`; one that finishes it and then sends nothing,
/// or dribbles a request head, after `--idle-timeout`. Each is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_dropped_after_their_timeouts() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let server = serve_examples(
        &cert,
        &key,
        &["--tls-handshake-timeout", "1s", "--idle-timeout", "2s"],
    );
    let port = server.port;
    let connector = tls_connector(&ca.pem(), b"http/1.1");
    let limit = Duration::from_secs(6);

    let no_handshake = async {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        closed_within(&mut tcp, limit).await
    };
    let no_request = async {
        let mut tls = tls_connect(&connector, port).await;
        closed_within(&mut tls, limit).await
    };
    let dribbled_head = async {
        let mut tls = tls_connect(&connector, port).await;
        let start = Instant::now();
        let head = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
        tls.write_all(head).await.unwrap();
        // One byte every 300 ms: never silent for the idle timeout.
        while start.elapsed() < limit {
            if tls.write_all(b"a").await.is_err() || tls.flush().await.is_err() {
                return Some(start.elapsed());
            }
            if closed_within(&mut tls, Duration::from_millis(300))
                .await
                .is_some()
            {
                return Some(start.elapsed());
            }
        }
        None
    };
    let (no_handshake, no_request, dribbled_head) =
        tokio::join!(no_handshake, no_request, dribbled_head);
    let within = |got: Option<Duration>, lo: u64, hi: u64| {
        got.is_some_and(|d| d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi))
    };
    // The handshake timeout, not the later idle timeout, closed it: the
    // counter below tells them apart even on a slow machine.
    assert!(
        within(no_handshake, 800, 4000),
        "no handshake: closed after {no_handshake:?}, expected ~1s"
    );
    assert!(
        within(no_request, 1800, 4000),
        "no request: closed after {no_request:?}, expected ~2s"
    );
    assert!(
        within(dribbled_head, 1800, 4000),
        "dribbled head: closed after {dribbled_head:?}, expected ~2s"
    );
    let m = metrics_text(server.probe);
    assert_eq!(
        metric(
            &m,
            r#"sodguard_connections_dropped_total{listener="webhook",reason="handshake-timeout"}"#
        ),
        1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            r#"sodguard_connections_dropped_total{listener="webhook",reason="idle-timeout"}"#
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, OPEN), 0.0, "{m}");
}

/// Over the cap a legitimate client waits (its connection in the backlog)
/// rather than being refused, and is served as soon as another connection
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legitimate_client_is_served_once_others_close() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let server = serve_examples(&cert, &key, &["--max-connections", "2"]);
    let connector = tls_connector(&ca.pem(), b"http/1.1");
    let mut first = Some(tls_connect(&connector, server.port).await);
    let _second = tls_connect(&connector, server.port).await;
    let https = client(&ca.pem());
    let port = server.port;
    let mut request = tokio::spawn(async move {
        let (resp, _) = send(&https, port, &configmap_review("late")).await;
        resp
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut request)
            .await
            .is_err(),
        "a third connection was served while two were held (cap 2)"
    );
    drop(first.take());
    let resp = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("served within 5s once a connection closed")
        .unwrap();
    assert_eq!(resp["response"]["uid"], "late");
    assert_eq!(resp["response"]["allowed"], true);
}

/// A low soft limit of open files (container runtimes often start processes
/// at 1024) would cut `--max-connections` short and starve the server's own
/// files: the server raises it to the hard limit at start.
#[cfg(target_os = "linux")]
#[test]
fn the_server_raises_its_limit_of_open_files() {
    let limits = |pid: u32| -> (String, String) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let mut v = line.split_whitespace().skip(3);
        (v.next().unwrap().into(), v.next().unwrap().into())
    };
    let (_, hard) = limits(std::process::id());
    if hard == "256" {
        return;
    }
    let examples = examples_dir();
    let server = spawn_after(
        "ulimit -Sn 256",
        &["--self-signed", "--state", examples.to_str().unwrap()],
    );
    assert_eq!(limits(server.child.id()), (hard.clone(), hard));
}

/// A client that keeps sending requests but reads no answer leaves the
/// server's writes blocked, with no read pending to time out: it is dropped
/// once a write has been blocked for `--idle-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_answer_is_dropped_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.serving_pair(dir.path(), "c.pem", "k.pem");
    let server = serve_examples(&cert, &key, &["--idle-timeout", "2s"]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window: the answers pile up in the server's buffers.
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket
        .connect(([127, 0, 0, 1], server.port).into())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls_connector(&ca.pem(), b"http/1.1")
        .connect(name, tcp)
        .await
        .unwrap();
    let (_unread, mut w) = tokio::io::split(tls);
    let request: &[u8] = b"POST /validate HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nContent-Length: 1\r\n\r\nx";
    let writer = tokio::spawn(async move {
        // Pipelined requests (400 each) until the server stops reading.
        while w.write_all(request).await.is_ok() {}
    });
    let start = Instant::now();
    let mut seen_open = false;
    let closed = loop {
        let open = metric(&metrics_text(server.probe), OPEN);
        seen_open |= open == 1.0;
        if seen_open && open == 0.0 {
            break Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    writer.abort();
    let m = metrics_text(server.probe);
    assert!(
        seen_open && closed.is_some(),
        "a client that reads nothing still held its connection after {closed:?}: {m}"
    );
    assert!(
        metric(
            &m,
            r#"sodguard_connections_dropped_total{listener="webhook",reason="idle-timeout"}"#
        ) >= 1.0,
        "{m}"
    );
}
