//! Decisions beside whole-state work (the audit, once the violations
//! gauge), in process: what an admission waits for while the whole state is
//! evaluated.
//!
//! ```text
//! cargo run --release --example contention -- [--mode snapshot|locked|none]
//!     [--live] [--state DIR] [--seconds 75] [--rate 2000] [--interval-ms 1000]
//! cargo run --release --example contention -- --heavy [--state DIR]
//! ```
//!
//! Loads the state as `sodguard serve --state DIR` does (default
//! `/tmp/synth-full`, written by `cargo run --release --example synth -- --out
//! /tmp/synth-full`) into one `AppState`. One thread evaluates every
//! violation every `--interval-ms` as the server's audit does: `locked` holds
//! the decision lock for the whole evaluation (the server before issue 9),
//! `snapshot` is how the server's audit evaluates (`engine::evaluate` of
//! `AppState::snapshot`, without the lock), `none` runs no gauge
//! (what the machine itself adds to the tail). Another thread decides
//! RoleBinding creates (the requests of `benches/webhook_load.sh`) at a steady
//! `--rate` per second through `AppState::decide`, lock wait included, and
//! prints the latency distribution: from the call (`call`) and from the
//! moment the decision was due (`due`, which also counts the decisions that
//! started late because an earlier one waited).
//!
//! `--live` runs the state in live mode, as `sodguard serve` against a
//! cluster does: admitted changes are assumed (an overlay with a 30 s TTL,
//! expired every second), and a third thread plays the watch, confirming 100
//! of the admitted RoleBindings a second into the state the gauge snapshots.
//!
//! `--heavy` instead times single heavy decisions (ClusterRoleBindings for
//! the group `system:serviceaccounts`) on the same state.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sodguard::engine::{self, Operation, Request, UserInfo};
use sodguard::model::Identity;
use sodguard::runtime::metrics::Metrics;
use sodguard::runtime::state::{AppState, Mode};

struct Args {
    state: PathBuf,
    /// None: no gauge at all (the floor the machine gives).
    snapshot: Option<bool>,
    live: bool,
    seconds: u64,
    rate: u64,
    interval: Duration,
    heavy: bool,
}

fn args() -> Args {
    let mut a = Args {
        state: PathBuf::from("/tmp/synth-full"),
        snapshot: Some(true),
        live: false,
        seconds: 75,
        rate: 2000,
        interval: Duration::from_secs(1),
        heavy: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        let number = |v: String| v.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--state" => a.state = PathBuf::from(value()),
            "--mode" => {
                a.snapshot = match value().as_str() {
                    "snapshot" => Some(true),
                    "locked" => Some(false),
                    "none" => None,
                    _ => usage(),
                }
            }
            "--seconds" => a.seconds = number(value()),
            "--rate" => a.rate = number(value()).max(1),
            "--interval-ms" => a.interval = Duration::from_millis(number(value())),
            "--heavy" => a.heavy = true,
            "--live" => a.live = true,
            _ => usage(),
        }
    }
    a
}

fn usage() -> ! {
    eprintln!(
        "usage: contention [--mode snapshot|locked|none] [--live] [--state DIR] [--seconds N] [--rate N] [--interval-ms N] | --heavy [--state DIR]"
    );
    std::process::exit(2)
}

fn main() {
    let a = args();
    let start = Instant::now();
    let (index, report) = sodguard::load::load_state(std::slice::from_ref(&a.state))
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", a.state.display()));
    eprintln!(
        "loaded {} documents in {:.1?}",
        report.documents,
        start.elapsed()
    );
    let namespaces: Vec<String> = index
        .service_accounts()
        .filter_map(|s| match s {
            Identity::ServiceAccount { namespace, name } if &*name == "api" => {
                Some(namespace.to_string())
            }
            _ => None,
        })
        .take(400)
        .collect();
    if std::env::var_os("CONTENTION_SUBJECTS").is_some() {
        // The costliest single subjects: a slice cannot be shorter.
        let now = jiff::Timestamp::now();
        let mut costs: Vec<(Duration, String)> = engine::subjects(&index)
            .iter()
            .map(|s| {
                let t = Instant::now();
                let _ = engine::evaluate_subjects(&index, [s], now);
                (t.elapsed(), s.to_string())
            })
            .collect();
        costs.sort_by(|a, b| b.cmp(a));
        for (d, s) in costs.iter().take(8) {
            println!("{} {s}", ms(*d));
        }
        return;
    }
    let mode = if a.live { Mode::Live } else { Mode::Static };
    let state = AppState::new(mode, index, Duration::from_secs(30), Metrics::new());
    if a.heavy {
        heavy(&state);
        return;
    }
    assert!(
        !namespaces.is_empty(),
        "no ServiceAccount `api` in the state"
    );
    let requests: Vec<Request> = (0..namespaces.len() * 2)
        .map(|n| rolebinding_create(n, &namespaces[n % namespaces.len()]))
        .collect();
    let t = Instant::now();
    let n_subjects = state.with_index(|i| engine::subjects(i).len());
    eprintln!("listing the {n_subjects} subjects: {}", ms(t.elapsed()));
    let mut clones = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        drop(state.snapshot());
        clones.push(t.elapsed());
    }
    eprintln!(
        "AppState::snapshot (what the gauge holds the lock for), 20 times: {}",
        dist(&mut clones)
    );
    eprintln!("load average at the start: {}", loadavg());

    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let gauge = {
        let state = state.clone();
        let stop = stop.clone();
        let (snapshot, interval) = (a.snapshot, a.interval);
        std::thread::spawn(move || {
            let mut took = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let violations: usize = match snapshot {
                    Some(true) => engine::evaluate(&state.snapshot(), jiff::Timestamp::now())
                        .violations
                        .len(),
                    Some(false) => state.with_index(|i| {
                        engine::evaluate(i, jiff::Timestamp::now()).violations.len()
                    }),
                    None => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                took.push((t.elapsed(), violations, t - origin));
                next += interval;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            took
        })
    };

    let watch = a.live.then(|| {
        let state = state.clone();
        let stop = stop.clone();
        let objects: Vec<_> = requests
            .iter()
            .filter_map(|r| sodguard::decode::convert(r.object.as_ref()?).ok().flatten())
            .collect();
        std::thread::spawn(move || {
            let mut n = 0;
            let mut expired = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // Denied requests are confirmed too: the watch shows what
                // others created, and the gauge's state changes either way.
                state.watch_apply(objects[n % objects.len()].clone());
                n += 1;
                if expired.elapsed() >= Duration::from_secs(1) {
                    state.expire_overlay();
                    expired = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    });

    let period = Duration::from_secs_f64(1.0 / a.rate as f64);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut call = Vec::new();
    let mut due = Vec::new();
    let (mut allowed, mut denied) = (0u64, 0u64);
    let mut when = Instant::now();
    let mut worst: Vec<(Duration, Duration)> = Vec::new();
    let mut n = 0usize;
    while when < end {
        if let Some(d) = when.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        let review = state.decide(&requests[n % requests.len()], jiff::Timestamp::now());
        let done = Instant::now();
        call.push(done - t);
        due.push(done - when);
        worst.push((done - when, when - origin));
        if worst.len() > 64 {
            worst.sort_by(|a, b| b.cmp(a));
            worst.truncate(5);
        }
        if review.allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
        n += 1;
        when += period;
    }
    stop.store(true, Ordering::Relaxed);
    let took = gauge.join().expect("the gauge thread");
    let confirmed = watch.map(|w| w.join().expect("the watch thread"));
    eprintln!("load average at the end: {}", loadavg());

    let mode = match a.snapshot {
        Some(true) => "snapshot",
        Some(false) => "locked",
        None => "none",
    };
    let state_mode = match confirmed {
        Some(c) => format!("live, {c} watch events"),
        None => "static".to_string(),
    };
    println!(
        "mode {mode} ({state_mode}): {n} decisions ({allowed} allowed, {denied} denied) at {}/s for {} s, gauge every {:?}",
        a.rate, a.seconds, a.interval
    );
    println!("decision, from the call: {}", dist(&mut call));
    println!("decision, from when due: {}", dist(&mut due));
    worst.sort_by(|a, b| b.cmp(a));
    let worst: Vec<String> = worst
        .iter()
        .take(5)
        .map(|(d, at)| format!("{} at {:.3} s", ms(*d), at.as_secs_f64()))
        .collect();
    println!("slowest from when due: {}", worst.join(", "));
    let runs: Vec<String> = took
        .iter()
        .map(|(d, _, at)| format!("{:.3} s +{}", at.as_secs_f64(), ms(*d)))
        .collect();
    println!("gauge runs (start +wall): {}", runs.join(", "));
    let mut evals: Vec<Duration> = took.iter().map(|(d, _, _)| *d).collect();
    println!(
        "gauge: {} evaluations ({} violations each), wall time {}",
        evals.len(),
        took.last().map_or(0, |t| t.1),
        dist(&mut evals)
    );
}

fn dist(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort();
    let q = |p: f64| {
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        ms(v[i])
    };
    format!(
        "p50 {} p99 {} p99.9 {} p99.99 {} max {}",
        q(0.5),
        q(0.99),
        q(0.999),
        q(0.9999),
        ms(v[v.len() - 1])
    )
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn alice() -> UserInfo {
    UserInfo {
        username: "alice".into(),
        groups: vec!["system:authenticated".into()],
    }
}

/// The requests of `benches/webhook_load.sh`: ServiceAccount `api` bound in
/// its namespace, half of them to a ClusterRole that completes a conflict.
fn rolebinding_create(n: usize, ns: &str) -> Request {
    let role = if n.is_multiple_of(2) {
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"})
    } else {
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-manager"})
    };
    Request {
        object: Some(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("bench-{n}"), "namespace": ns},
            "roleRef": role,
            "subjects": [{"kind": "ServiceAccount", "name": "api", "namespace": ns}],
        })),
        ..Request::new(Operation::Create, alice())
    }
}

/// ClusterRoleBindings that reach every ServiceAccount: to `view` (grants no
/// duty of the synthetic policies) and to `secret-reader` (grants one).
fn heavy(state: &AppState) {
    for role in ["view", "secret-reader", "edit"] {
        let req = Request {
            object: Some(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("bench-all-serviceaccounts-{role}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"}],
            })),
            ..Request::new(Operation::Create, alice())
        };
        let mut took = Vec::new();
        let mut verdict = String::new();
        for _ in 0..10 {
            let t = Instant::now();
            let r = state.decide(&req, jiff::Timestamp::now());
            took.push(t.elapsed());
            verdict = format!(
                "{} with {} new violation(s)",
                if r.allowed { "allowed" } else { "denied" },
                r.violations.len()
            );
        }
        println!(
            "ClusterRoleBinding system:serviceaccounts → ClusterRole {role}: {verdict}; 10 decisions: {}",
            dist(&mut took)
        );
    }
}
