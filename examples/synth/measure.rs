//! The `--measure` report: memory and time of loading, indexing, evaluating
//! and reviewing, printed to stdout one labelled line at a time.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sodguard::engine::index::Index;
use sodguard::engine::{self, Request};
use sodguard::model::{Identity, Object};

use super::generate::{Config, Error, generate_into};
use super::heap;
use super::latency::{
    measure_after_escalation, measure_latency, measure_latency_live, pend_one, serve_budget,
};
use super::load::{Parsed, convert_into, load_objects};
use super::requests::{bench_now, heavy_requests, prepare_requests};

/// Where the measured cluster comes from.
pub enum Input {
    /// Files written by `--out`.
    Folder(PathBuf),
    /// Generated and parsed in this process, file by file, never written.
    Generated(Config),
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mib_b(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// (bytes requested, bytes with chunk overhead, allocations) between two
/// readings of [`heap::live`].
fn grown(before: (u64, u64, u64), after: (u64, u64, u64)) -> (u64, u64, u64) {
    (
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
        after.2.saturating_sub(before.2),
    )
}

/// `--measure DIR` or `--measure-generated`.
pub fn measure(input: &Input, calls: usize, n_requests: usize) -> Result<(), Error> {
    let (rss0, _) = rss_kib();
    let heap0 = heap::live();
    let objects = load(input)?;
    let heap1 = heap::live();
    // Requests are prepared before the objects go into the index.
    let mut reqs = match (std::env::var("SYNTH_MIX").as_deref(), input) {
        // The requests of benches/webhook_load.sh, to see in-process what
        // the load's answers cost without the HTTP edge and wrk.
        (Ok("webhook"), Input::Folder(dir)) => webhook_requests(dir)?,
        _ => prepare_requests(&objects, n_requests, 7),
    };
    if let Ok(only) = std::env::var("SYNTH_ONLY") {
        // To profile a few requests of the mix: their names (bench-N).
        let wanted: Vec<&str> = only.split(',').collect();
        reqs.retain(|r| {
            let name = r.object.as_ref().and_then(|o| o.pointer("/metadata/name"));
            name.and_then(|n| n.as_str())
                .is_some_and(|n| wanted.contains(&n))
        });
    }
    let heavy = heavy_requests(&objects);
    let heap_reqs = heap::live();

    let t = Instant::now();
    let mut index = Index::from_objects(objects);
    let t_build = t.elapsed();
    let (rss2, hwm2) = rss_kib();
    let heap2 = heap::live();
    println!(
        "index:    built in {t_build:.2?}; VmRSS {:.1} MiB (VmHWM {:.1} MiB); {:?}",
        mib(rss2),
        mib(hwm2),
        index.counts()
    );
    // The index's share: what grew since the start, less the requests.
    let reqs_heap = grown(heap1, heap_reqs);
    let idx = grown(
        (
            heap0.0 + reqs_heap.0,
            heap0.1 + reqs_heap.1,
            heap0.2 + reqs_heap.2,
        ),
        heap2,
    );
    println!(
        "memory:   index alone: live heap {:.1} MiB ({:.1} MiB with chunk overhead, {} blocks); \
         VmRSS grew {:.1} MiB from the start (parse garbage the allocator keeps included)",
        mib_b(idx.0),
        mib_b(idx.1),
        idx.2,
        mib(rss2.saturating_sub(rss0)),
    );

    // A live server keeps a second copy, the assumed state (R7.8).
    let heap3 = heap::live();
    let mut assumed = index.clone();
    let clone = grown(heap3, heap::live());
    println!(
        "memory:   the live server's assumed state, a clone of the index: live heap {:.1} MiB \
         ({:.1} MiB with chunk overhead); names are shared with the index",
        mib_b(clone.0),
        mib_b(clone.1),
    );

    // `SYNTH_STATIC_ONLY=1`: the static mix alone (no audit copy before
    // it, nothing after it), so that a profiler counting inside
    // `engine::review_within` counts those decisions and no others.
    let static_only = std::env::var_os("SYNTH_STATIC_ONLY").is_some();
    if !static_only {
        audit_memory(&index, &mut assumed, &reqs);
    }

    // Timings below run without the allocation counter.
    heap::pause(true);
    time_evaluate(&index);
    let lat = measure_latency(&mut index, &reqs, calls);
    println!("review:   {lat}");
    if static_only {
        return Ok(());
    }
    if let Some(lat) = measure_after_escalation(&mut index, &reqs, calls) {
        println!(
            "review:   each after an admitted escalating binding (the cluster-wide actors gathered again): {lat}"
        );
    }
    pend_one(&mut assumed);
    let lat = measure_latency_live(&index, &mut assumed, &reqs, calls);
    println!("review:   live (confirmed before, assumed after): {lat}");
    drop(assumed);
    time_heavy(&mut index, &heavy);
    time_watch_events(&mut index);
    drop(index);
    let (rss3, hwm3) = rss_kib();
    println!(
        "dropped:  VmRSS {:.1} MiB after dropping the index (the allocator keeps freed pages); \
         VmHWM {:.1} MiB over the whole run",
        mib(rss3),
        mib(hwm3),
    );
    Ok(())
}

/// Reads or generates the cluster and prints the `load:` line.
fn load(input: &Input) -> Result<Vec<Object>, Error> {
    let heap0 = heap::live();
    let t = Instant::now();
    let (objects, docs, how) = match input {
        Input::Folder(dir) => {
            let (objects, docs) = load_objects(dir)?;
            (objects, docs, "read".to_string())
        }
        Input::Generated(cfg) => {
            let parsed = Parsed::default();
            let summary = generate_into(&parsed, cfg)?;
            let (objects, docs) = parsed.into_objects();
            (
                objects,
                docs,
                format!("generated in memory ({summary}) and parsed"),
            )
        }
    };
    let t_load = t.elapsed();
    let (rss1, hwm1) = rss_kib();
    let heap1 = grown(heap0, heap::live());
    println!(
        "load:     {docs} documents {how} -> {} objects in {t_load:.2?}; VmRSS {:.1} MiB (VmHWM {:.1} MiB); \
         live heap of the parsed objects {:.1} MiB ({:.1} MiB with chunk overhead, {} blocks)",
        objects.len(),
        mib(rss1),
        mib(hwm1),
        mib_b(heap1.0),
        mib_b(heap1.1),
        heap1.2,
    );
    Ok(objects)
}

/// All violations of the state, once.
fn time_evaluate(index: &Index) {
    let t = Instant::now();
    let ev = engine::evaluate(index, bench_now());
    let t_eval = t.elapsed();
    let mut by_policy: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &ev.violations {
        *by_policy.entry(&*v.policy).or_default() += 1;
    }
    let subjects: HashSet<&Identity> = ev.violations.iter().map(|v| &v.subject).collect();
    println!(
        "evaluate: {} violations of {} subjects in {t_eval:.2?}; by policy {by_policy:?}",
        ev.violations.len(),
        subjects.len()
    );
}

/// The rarer, costlier decisions, five times each after one untimed call.
fn time_heavy(index: &mut Index, heavy: &[(&'static str, Request)]) {
    let now = bench_now();
    for (name, req) in heavy {
        let n = 5;
        let budget = serve_budget();
        let first = engine::review_within(index, req, now, budget);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(engine::review_within(index, req, now, budget));
        }
        println!(
            "review:   {name}: {:.2?} each (allowed: {}, {} new violation(s){})",
            t.elapsed() / n,
            first.allowed,
            first.violations.len(),
            first
                .refusal
                .iter()
                .chain(&first.warnings)
                .map(|w| format!("; {w}"))
                .collect::<String>()
        );
        if name.ends_with("_edit") {
            // A budget shorter than the first subject's walk: the walk
            // itself must stop at the deadline.
            let tight = engine::Budget {
                time: Some(std::time::Duration::from_millis(100)),
                ..budget
            };
            let t = Instant::now();
            let r = engine::review_within(index, req, now, tight);
            println!(
                "review:   {name} with a 100 ms budget: {:.2?} (allowed: {}; {})",
                t.elapsed(),
                r.allowed,
                r.refusal.unwrap_or_default()
            );
        }
    }
}

/// Watch events: one RoleBinding and one Role update, applied and undone.
fn time_watch_events(index: &mut Index) {
    let sample = index
        .bindings()
        .find(|b| b.key.namespace.is_some() && b.role.namespace.is_some())
        .cloned();
    if let Some(b) = sample {
        let mut b2 = b.clone();
        b2.subjects.push(Identity::service_account(
            b.key.namespace.as_deref().unwrap_or_default(),
            "extra",
        ));
        let times = time_events(index, || Object::Binding(b2.clone()));
        println!("update:   {} ({}) one watch event: {times}", b.key, b.role);
    }
    let sample = index
        .roles()
        .find(|r| r.role.key.namespace.is_some())
        .map(|r| r.role.clone());
    if let Some(mut r) = sample {
        let key = r.key.clone();
        r.rules.truncate(1);
        let times = time_events(index, || Object::Role(r.clone()));
        println!("update:   {key} one watch event: {times}");
    }
}

/// Times 20,000 watch events, each timed alone: an update (apply) and the
/// update back (undo), as the watch delivers them one at a time.
fn time_events(index: &mut Index, make: impl Fn() -> Object) -> String {
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..10_000 {
        let o = make();
        let t = Instant::now();
        let u = index.apply(o);
        times.push(t.elapsed());
        let t = Instant::now();
        index.undo(u);
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    format!(
        "p50 {:.2?} p99 {:.2?} p99.9 {:.2?} max {:.2?}",
        at(0.5),
        at(0.99),
        at(0.999),
        times[times.len() - 1]
    )
}

/// `--measure DIR --breakdown`: the live heap of an index built from each
/// kind's files alone (names shared between kinds are counted in each).
pub fn memory_breakdown(dir: &Path) -> Result<(), Error> {
    let groups: [(&str, &[&str]); 4] = [
        (
            "Namespaces + ServiceAccounts",
            &["namespaces-", "serviceaccounts-"],
        ),
        (
            "Roles + ClusterRoles (+ SoDPolicies)",
            &["roles-", "clusterroles-", "sodpolicies-"],
        ),
        (
            "RoleBindings + ClusterRoleBindings",
            &["rolebindings-", "clusterrolebindings-"],
        ),
        ("everything", &[""]),
    ];
    let all = sodguard::load::files(&[dir.to_path_buf()])?;
    for (label, prefixes) in groups {
        let before = heap::live();
        let mut objects = Vec::new();
        for f in &all {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            convert_into(sodguard::load::read_file(f)?, &mut objects)?;
        }
        let n = objects.len();
        let parsed = grown(before, heap::live());
        let index = Index::from_objects(objects);
        let after = grown(before, heap::live());
        println!(
            "{label:<38} {n:>7} objects: parsed {:>6.1} MiB, index {:>6.1} MiB live heap \
             ({:>6.1} MiB with chunk overhead, {:>7} blocks)",
            mib_b(parsed.0),
            mib_b(after.0),
            mib_b(after.1),
            after.2,
        );
        drop(index);
    }
    Ok(())
}

/// What the static audit holds beside the index while it counts (the most
/// live at once), and what decisions copy of the index's maps while a
/// snapshot shares them (as one does for the audit's duration): both add to
/// the serving peak while an audit runs under load. `assumed` (a clone of
/// `index`) is judged on, then set back to a clone.
fn audit_memory(index: &Index, assumed: &mut Index, reqs: &[sodguard::engine::Request]) {
    let h0 = heap::live();
    heap::reset_peak();
    let snapshot = index.clone();
    let t = Instant::now();
    let counted =
        sodguard::audit::counts(&snapshot, bench_now(), sodguard::engine::Budget::UNLIMITED);
    println!(
        "audit:    the static audit's counts in {:.2?} ({}); the most it held beside the index: {:.1} MiB",
        t.elapsed(),
        if counted.is_ok() {
            "whole"
        } else {
            "stopped short"
        },
        mib_b(heap::peak().saturating_sub(h0.0)),
    );
    let h1 = heap::live();
    let calls = 3000;
    let _ = measure_latency(assumed, reqs, calls);
    let copied = grown(h1, heap::live());
    println!(
        "audit:    {calls} decisions while a snapshot shares the index copied {:.1} MiB of its maps ({} blocks), \
         given back when the snapshot goes",
        mib_b(copied.0),
        copied.2,
    );
    drop(snapshot);
    *assumed = index.clone();
}

/// What `benches/webhook_load.sh` sends, in its order: RoleBinding creates
/// for ServiceAccount `api` in the first 400 namespaces of the files, to
/// ClusterRole `secret-reader` or Role `pod-manager` in turn.
fn webhook_requests(dir: &Path) -> Result<Vec<Request>, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("namespaces-") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    let mut nss = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f)?.lines() {
            if let Some(n) = line.strip_prefix("  name: ") {
                nss.push(n.trim().to_string());
            }
        }
    }
    nss.truncate(400);
    Ok((1..=nss.len() * 2)
        .map(|n| {
            let ns = &nss[n % nss.len()];
            let (kind, role) = if n % 2 == 0 {
                ("ClusterRole", "secret-reader")
            } else {
                ("Role", "pod-manager")
            };
            super::requests::rolebinding_create(&format!("bench-{n}"), ns, "api", kind, role)
        })
        .collect())
}
