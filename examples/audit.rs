//! The cost of one review-time audit on a state read from files, and the API
//! writes a second audit of the same state would make.
//!
//! ```text
//! cargo run --release --example audit -- [--runs N] PATH...
//! ```
//!
//! Prints the time of the evaluation, of the audit (status, results, events)
//! and of the reports, each on one thread (the controller's audit runs on
//! one), with the thread's CPU time. Then audits the same state again, five
//! minutes later each time (`--runs`, 2 by default; with more it prints the
//! least, median and most CPU time), and counts what the controller would
//! write after the last: statuses that differ from the first audit's (as
//! stored) and reports that differ. Nothing changed, so the target is 0.
//! The evaluation has the controller's default budget (`--audit-budget 2m`,
//! `--audit-max-violations 250000`): past it, the example says where it
//! stopped, as the controller would, and ends.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use sodguard::audit::{self, ReportFormat};
use sodguard::engine;

// The allocator of the `sodguard` binary, whose audit controller this measures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // More audits than two: this machine's speed varies from one second
    // to the next, and the least CPU time of several is the steadiest.
    let mut runs = 2;
    if args.first().is_some_and(|a| a == "--runs") {
        runs = args
            .get(1)
            .and_then(|n| n.to_str()?.parse::<usize>().ok())
            .filter(|n| *n >= 2)
            .unwrap_or_else(|| usage());
        args.drain(..2);
    }
    let paths: Vec<std::path::PathBuf> = args.into_iter().map(Into::into).collect();
    if paths.is_empty() {
        usage();
    }
    let t = Instant::now();
    let (index, _) = sodguard::load::load_state(&paths).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    println!("load: {:.2} s", t.elapsed().as_secs_f64());
    let now = Timestamp::now();
    // `sodguard serve`'s default --audit-budget and --audit-max-violations:
    // an audit that stops short writes nothing.
    let budget = engine::Budget {
        violations: 250_000,
        time: Some(std::time::Duration::from_secs(120)),
    };
    let run = |at: Timestamp| {
        let (t, cpu0) = (Instant::now(), thread_cpu());
        let (ev, stopped) = engine::evaluate_within(&index, at, budget);
        let evaluate = t.elapsed();
        if let Some(e) = stopped {
            let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b - a);
            println!(
                "audit stopped short (writes nothing): {e}, after {:.0} ms wall, {} CPU",
                evaluate.as_secs_f64() * 1e3,
                cpu.map_or("?".to_string(), |c| format!("{:.0} ms", c * 1e3)),
            );
            std::process::exit(0);
        }
        let mut found = audit::audit(&index, &ev, at);
        let audited = t.elapsed() - evaluate;
        let reports = audit::reports(
            std::mem::take(&mut found.results),
            ReportFormat::Openreports,
        );
        let reported = t.elapsed() - evaluate - audited;
        let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b - a);
        drop(ev);
        (found, reports, [evaluate, audited, reported], cpu)
    };
    let print = |what: &str,
                 found: &audit::Audit,
                 reports: &[audit::Report],
                 t: [std::time::Duration; 3],
                 cpu: Option<f64>| {
        let results: usize = reports.iter().map(|r| r.results.len()).sum();
        let fails: i64 = reports.iter().map(|r| r.summary.fail).sum();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "{what}: evaluate {:.0} ms, audit {:.0} ms, reports {:.0} ms, total {:.0} ms wall, {} CPU; {} violations, {} reports, {results} results ({fails} fail), {} events",
            ms(t[0]),
            ms(t[1]),
            ms(t[2]),
            ms(t[0] + t[1] + t[2]),
            cpu.map_or("?".to_string(), |c| format!("{:.0} ms", c * 1e3)),
            found.policies.values().map(|p| p.violations).sum::<i64>(),
            reports.len(),
            found.events.len()
        );
    };
    let (a, ra, t, cpu) = run(now);
    print("audit", &a, &ra, t, cpu);
    let mut cpus: Vec<f64> = cpu.into_iter().collect();
    // The controller audits again and again in one process: the second
    // audit finds its memory allocated already, as every later one does.
    let mut later = now;
    let mut last = None;
    for i in 1..runs {
        later += SignedDuration::from_mins(5);
        let (b, rb, t, cpu) = run(later);
        let what = if i == 1 {
            "second audit".to_string()
        } else {
            format!("audit {}", i + 1)
        };
        print(&what, &b, &rb, t, cpu);
        cpus.extend(cpu);
        last = Some((b, rb));
    }
    if runs > 2 && !cpus.is_empty() {
        cpus.sort_by(f64::total_cmp);
        println!(
            "CPU per audit over {} audits: least {:.0} ms, median {:.0} ms, most {:.0} ms",
            cpus.len(),
            cpus[0] * 1e3,
            cpus[cpus.len() / 2] * 1e3,
            cpus[cpus.len() - 1] * 1e3
        );
    }
    let Some((b, rb)) = last else { return };
    let mut writes = 0;
    for (name, p) in &a.policies {
        let stored = audit::policy_status(None, Some(1), p, now);
        if let Some(q) = b.policies.get(name)
            && audit::policy_status(Some(&stored), Some(1), q, later) != stored
        {
            writes += 1;
        }
    }
    for (name, x) in &a.exceptions {
        let stored = audit::exception_status(None, x, now);
        if let Some(y) = b.exceptions.get(name)
            && audit::exception_status(Some(&stored), y, later) != stored
        {
            writes += 1;
        }
    }
    writes += rb.iter().filter(|r| !ra.contains(r)).count();
    writes += ra.iter().filter(|r| !rb.contains(r)).count();
    println!(
        "last audit {} min later, nothing changed: {writes} writes",
        5 * (runs - 1)
    );
}

/// CPU time of this thread in seconds (user and system: the kernel zeroing
/// fresh pages counts), where Linux says it.
fn thread_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn usage() -> ! {
    eprintln!("usage: audit [--runs N (at least 2)] PATH...");
    std::process::exit(2);
}
