//! The cost of one review-time audit on a state read from files, and the API
//! writes a second audit of the same state would make.
//!
//! ```text
//! cargo run --release --example audit -- PATH...
//! ```
//!
//! Prints the time of the evaluation, of the audit (status, results, events)
//! and of the reports, each on one thread (the controller's audit runs on
//! one), then audits the same state five minutes later and counts what the
//! controller would write: statuses that differ from the first audit's (as
//! stored) and reports that differ. Nothing changed, so the target is 0.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use sodguard::audit::{self, ReportFormat};
use sodguard::engine;

fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        eprintln!("usage: audit PATH...");
        std::process::exit(2);
    }
    let t = Instant::now();
    let (index, _) = sodguard::load::load_state(&paths).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    println!("load: {:.2} s", t.elapsed().as_secs_f64());
    let now = Timestamp::now();
    let run = |at: Timestamp| {
        let t = Instant::now();
        let ev = engine::evaluate(&index, at);
        let evaluate = t.elapsed();
        let found = audit::audit(&index, &ev, at);
        let audited = t.elapsed() - evaluate;
        let reports = audit::reports(&found, ReportFormat::Openreports);
        let reported = t.elapsed() - evaluate - audited;
        (found, reports, evaluate, audited, reported)
    };
    let (a, ra, ev, au, rep) = run(now);
    let results: usize = ra.iter().map(|r| r.results.len()).sum();
    let fails: i64 = ra.iter().map(|r| r.summary.fail).sum();
    println!(
        "audit: evaluate {:.0} ms, audit {:.0} ms, reports {:.0} ms, total {:.0} ms; {} violations, {} reports, {results} results ({fails} fail), {} events",
        ev.as_secs_f64() * 1e3,
        au.as_secs_f64() * 1e3,
        rep.as_secs_f64() * 1e3,
        (ev + au + rep).as_secs_f64() * 1e3,
        a.policies.values().map(|p| p.violations).sum::<i64>(),
        ra.len(),
        a.events.len()
    );
    let later = now + SignedDuration::from_mins(5);
    let (b, rb, ..) = run(later);
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
    println!("second audit 5 min later, nothing changed: {writes} writes");
}
