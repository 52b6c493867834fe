//! Every SoDTestCase — the shared ones in `../shared/scenarios` and the
//! project's own in `tests/cases` — through the same code as `sodguard test`.
//! Shared cases listed in `tests/pending-scenarios.txt` are skipped: each
//! waits for an open issue, and some pass here only because the feature they
//! exercise is absent (they fail at the API server).

use std::path::Path;

mod common;

use common::manifest_dir;
use common::scenarios::pending;
use sodguard::testcase::{Pending, judge, load_cases, run_engine};

fn run_dir(dir: &Path, pending: &Pending) -> usize {
    let cases = load_cases(&[dir.to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    let mut failures: Vec<String> = Vec::new();
    for c in &cases {
        let r = judge(c, &run_engine(c));
        if pending.reason(&c.file).is_none() && !r.passed() {
            failures.push(format!(
                "{} ({}):\n  {}",
                r.name,
                r.file.display(),
                r.failures.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

#[test]
fn shared_scenarios() {
    let Some(dir) = common::scenarios::shared_scenarios() else {
        return;
    };
    let pending = pending();
    for name in pending.names() {
        assert!(
            dir.join(name).is_file(),
            "tests/pending-scenarios.txt names {name}, which is not in {}",
            dir.display()
        );
    }
    let n = run_dir(&dir, &pending);
    eprintln!("{n} shared scenarios run");
}

#[test]
fn project_cases() {
    let n = run_dir(&manifest_dir().join("tests/cases"), &Pending::default());
    eprintln!("{n} project cases passed");
}
