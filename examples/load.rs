//! Where loading a large input spends its CPU (issue 9, BENCHMARKS.md
//! "`check` on large inputs"): each phase on its own, one after the other,
//! in one process so that they share the machine's load.
//!
//! ```sh
//! cargo run --release --example load -- /tmp/synth-full [rounds]
//! ```
//!
//! - `serde-saphyr`: every document through serde-saphyr into a
//!   `serde_json::Value`, one thread, as `load` read every document before
//!   the fast path (same options).
//! - `load::parse_str`: the same documents as `load` reads them now (the
//!   fast path, serde-saphyr for the rest), one thread.
//! - `load_state`: files → documents → objects → index, on every core, as
//!   `sodguard check` does before evaluating (CPU of the whole process).

use std::path::{Path, PathBuf};
use std::time::Instant;

// The allocator of the `sodguard` binary: allocation is a good part of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds of this thread (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// CPU seconds of the process, threads that ended included (utime + stime
/// of `/proc/self/stat`, in clock ticks of 10 ms).
fn process_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/synth-full".into()));
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let files = sodguard::load::files(std::slice::from_ref(&dir)).expect("input");
    let texts: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| (f.clone(), std::fs::read_to_string(f).expect("UTF-8 file")))
        .collect();
    let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();
    println!(
        "{} files, {:.1} MiB",
        texts.len(),
        bytes as f64 / (1 << 20) as f64
    );
    for round in 1..=rounds {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let mut docs = 0;
        for (_, text) in &texts {
            for (_, doc) in sodguard::load::split_documents(text) {
                let v: serde_json::Value = serde_saphyr::from_str_with_options(
                    doc,
                    sodguard::load::yaml_options(64 << 20),
                )
                .expect("valid YAML");
                docs += usize::from(!v.is_null());
            }
        }
        println!(
            "round {round}: serde-saphyr      {docs} documents: {:.2} s CPU ({:.2} s wall), one thread",
            thread_cpu() - cpu,
            wall.elapsed().as_secs_f64()
        );
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let mut docs = 0;
        for (path, text) in &texts {
            docs += sodguard::load::parse_str(Path::new(path), text)
                .expect("valid YAML")
                .len();
        }
        println!(
            "round {round}: load::parse_str   {docs} documents: {:.2} s CPU ({:.2} s wall), one thread",
            thread_cpu() - cpu,
            wall.elapsed().as_secs_f64()
        );
        let (cpu, wall) = (process_cpu(), Instant::now());
        let (_, report) = sodguard::load::load_state(std::slice::from_ref(&dir)).expect("loads");
        println!(
            "round {round}: load_state        {} documents: {:.2} s CPU ({:.2} s wall), every core",
            report.documents,
            process_cpu() - cpu,
            wall.elapsed().as_secs_f64()
        );
    }
}
