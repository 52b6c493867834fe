//! Every SoDTestCase — the shared ones in `../shared/scenarios` and the
//! project's own in `tests/cases` — through the same code as `sodguard test`.

use std::path::{Path, PathBuf};

use sodguard::testcase::{judge, load_cases, run_engine};

fn run_dir(dir: &Path) -> usize {
    let cases = load_cases(&[dir.to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    let failures: Vec<String> = cases
        .iter()
        .map(|c| judge(c, &run_engine(c)))
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "{} ({}):\n  {}",
                r.name,
                r.file.display(),
                r.failures.join("\n  ")
            )
        })
        .collect();
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
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/scenarios");
    if !dir.is_dir() {
        let msg = format!(
            "{} is missing: the shared scenarios were not run",
            dir.display()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let n = run_dir(&dir);
    eprintln!("{n} shared scenarios passed");
}

#[test]
fn project_cases() {
    let n = run_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases"));
    eprintln!("{n} project cases passed");
}
