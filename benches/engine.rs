//! Engine benchmarks on the synthetic cluster of `examples/synth/`.
//!
//! ```text
//! cargo bench --bench engine                       # full size (scale 1)
//! SODGUARD_BENCH_SCALE=0.1 cargo bench --bench engine
//! SODGUARD_BENCH_LATENCY=0 cargo bench --bench engine -- evaluate
//! ```
//!
//! The cluster is generated into a temporary folder with the generator of
//! `examples/synth/` (seed 42) and parsed once with `sodguard::load` and
//! `sodguard::decode::convert`. Before criterion runs, 100,000 individual
//! admission reviews are timed with `Instant` and their p50/p99/p99.9 printed
//! to stderr (criterion reports means, not tails).
//!
//! Under `cargo test --benches` (criterion's test mode) the cluster is
//! generated at scale 0.01 and every benchmark runs once.

/// The generator's modules of `examples/synth/` (not its `main`, nor the
/// counting allocator of its `heap`: the benchmarks time the system one).
#[path = "../examples/synth"]
#[allow(dead_code)]
mod synth {
    pub mod generate;
    pub mod latency;
    pub mod load;
    pub mod requests;
    pub mod shapes;
    pub mod write;

    pub use generate::{Config, generate};
    pub use latency::{measure_latency, measure_latency_live, pend_one};
    pub use load::load_objects;
    pub use requests::{bench_now, heavy_requests, prepare_requests};
}

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode};
use sodguard::engine;
use sodguard::engine::index::Index;
use sodguard::model::{Identity, Object};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let benchmarking = has("--bench") && !has("--test") && !has("--list");
    let scale: f64 = std::env::var("SODGUARD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benchmarking { 1.0 } else { 0.01 });

    let dir = tempfile::tempdir().expect("a temporary folder");
    let cfg = synth::Config { seed: 42, scale };
    let summary = synth::generate(dir.path(), &cfg).expect("the synthetic cluster is written");
    eprintln!("synthetic cluster: {summary}");
    let (objects, docs) = synth::load_objects(dir.path()).expect("the synthetic cluster loads");
    drop(dir);
    eprintln!("parsed {docs} documents into {} objects", objects.len());

    let reqs = synth::prepare_requests(&objects, 300, 7);
    let now = synth::bench_now();
    let mut index = Index::from_objects(objects.clone());

    let latency = std::env::var("SODGUARD_BENCH_LATENCY").map_or(true, |v| v != "0");
    if benchmarking && latency {
        let lat = synth::measure_latency(&mut index, &reqs, 100_000);
        eprintln!("review latency (Instant per call): {lat}");
        let mut assumed = index.clone();
        synth::pend_one(&mut assumed);
        let lat = synth::measure_latency_live(&index, &mut assumed, &reqs, 100_000);
        eprintln!("review latency, live mode (confirmed + assumed): {lat}");
    }

    let mut c = Criterion::default().configure_from_args();
    bench_index_build(&mut c, &objects);
    bench_review(&mut c, &mut index, &reqs, now);
    bench_review_heavy(&mut c, &mut index, &synth::heavy_requests(&objects), now);
    bench_evaluate(&mut c, &index, now);
    bench_watch_updates(&mut c, &mut index, &objects);
    c.final_summary();
}

/// (a) Building the index from parsed objects.
fn bench_index_build(c: &mut Criterion, objects: &[Object]) {
    let mut g = c.benchmark_group("index");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("from_objects", |b| {
        b.iter_batched(
            || objects.to_vec(),
            Index::from_objects,
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// (b) One admission decision: a RoleBinding CREATE, round-robin over the
/// prepared requests (about a third of them denied).
fn bench_review(
    c: &mut Criterion,
    index: &mut Index,
    reqs: &[engine::Request],
    now: jiff::Timestamp,
) {
    let mut g = c.benchmark_group("review");
    let mut i = 0usize;
    g.bench_function("rolebinding_create", |b| {
        b.iter(|| {
            let r = &reqs[i % reqs.len()];
            i += 1;
            engine::review(index, r, now)
        })
    });
    g.finish();
}

/// Rarer admission requests whose cost grows with the cluster: a
/// ClusterRoleBinding naming `system:serviceaccounts`, ClusterRole UPDATEs
/// that aggregation spreads.
fn bench_review_heavy(
    c: &mut Criterion,
    index: &mut Index,
    reqs: &[(&'static str, engine::Request)],
    now: jiff::Timestamp,
) {
    let mut g = c.benchmark_group("review_heavy");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, req) in reqs {
        g.bench_function(*name, |b| b.iter(|| engine::review(index, req, now)));
    }
    g.finish();
}

/// (c) All violations of the state.
fn bench_evaluate(c: &mut Criterion, index: &Index, now: jiff::Timestamp) {
    let mut g = c.benchmark_group("evaluate");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("all_violations", |b| {
        b.iter(|| engine::evaluate(index, now))
    });
    g.finish();
}

/// (d) One watch event: an object updated in the index, then undone.
fn bench_watch_updates(c: &mut Criterion, index: &mut Index, objects: &[Object]) {
    let binding = |pred: &dyn Fn(&sodguard::model::Binding) -> bool| {
        objects.iter().find_map(|o| match o {
            Object::Binding(b) if pred(b) => {
                let mut b = b.clone();
                let ns = b.key.namespace.as_deref().unwrap_or("default").to_string();
                b.subjects.push(Identity::service_account(&ns, "extra"));
                Some(Object::Binding(b))
            }
            _ => None,
        })
    };
    let role = |pred: &dyn Fn(&sodguard::model::Role) -> bool| {
        objects.iter().find_map(|o| match o {
            Object::Role(r) if pred(r) && !r.rules.is_empty() => {
                let mut r = r.clone();
                r.rules.remove(0);
                Some(Object::Role(r))
            }
            _ => None,
        })
    };
    let cases = [
        (
            "rolebinding_to_role",
            binding(&|b| b.key.namespace.is_some() && b.role.namespace.is_some()),
        ),
        (
            "rolebinding_to_clusterrole_view",
            binding(&|b| b.key.namespace.is_some() && &*b.role.name == "view"),
        ),
        (
            "role_secret_reader",
            role(&|r| r.key.namespace.is_some() && &*r.key.name == "secret-reader"),
        ),
        (
            "clusterrole_aggregated_member",
            role(&|r| {
                r.key.namespace.is_none()
                    && r.labels
                        .keys()
                        .any(|k| k.starts_with("platform.example.com/aggregate-to-team"))
            }),
        ),
    ];
    for (name, object) in cases {
        let Some(object) = object else {
            eprintln!("watch_update/{name}: no such object in this cluster, skipped");
            continue;
        };
        let mut g = c.benchmark_group("watch_update");
        if name.starts_with("clusterrole") {
            // Milliseconds, not microseconds: fewer, flat samples.
            g.sampling_mode(SamplingMode::Flat)
                .sample_size(20)
                .measurement_time(Duration::from_secs(5));
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || object.clone(),
                |o| {
                    let undo = index.apply(o);
                    index.undo(undo);
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}
