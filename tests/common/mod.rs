//! The harness every integration test shares: `run` (the `sodguard` binary
//! and its [`run::Run`]), `objects` (manifests as JSON, written to files),
//! `scenarios` (the shared scenarios and the pending list), `webhook` (the
//! router in process, `serve` over TLS, AdmissionReviews).
#![allow(dead_code)] // each test crate uses a different part

pub mod objects;
pub mod run;
pub mod scenarios;
pub mod webhook;

/// The repository root.
pub fn manifest_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
