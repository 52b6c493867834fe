//! The shared scenarios (SoDTestCase files beside the repository, in
//! `../shared/scenarios`) and the list of those still pending.
//!
//! One rule for every tier (the shell tiers use tests/lib/shared-scenarios.sh):
//! in CI — `CI` set to anything but "", "0" or "false" — the folder must be
//! there; elsewhere a test without it is skipped, and says so.

use std::path::PathBuf;

use sodguard::testcase::Pending;

use super::manifest_dir;

/// The shared scenarios folder, or `None` (after saying SKIPPED) when it is
/// missing outside CI. Panics when it is missing in CI.
pub fn shared_scenarios() -> Option<PathBuf> {
    let dir = manifest_dir().join("../shared/scenarios");
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "{} is missing: the shared scenarios were not run",
        dir.display()
    );
    let ci = std::env::var("CI").unwrap_or_default();
    if !matches!(ci.as_str(), "" | "0" | "false") {
        panic!("{msg} (CI={ci})");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// `tests/pending-scenarios.txt`: shared scenarios that wait for an issue.
pub fn pending_file() -> PathBuf {
    manifest_dir().join("tests/pending-scenarios.txt")
}

pub fn pending() -> Pending {
    Pending::load(&pending_file()).unwrap_or_else(|e| panic!("{e}"))
}
