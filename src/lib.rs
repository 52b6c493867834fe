//! sodguard: segregation of duties for Kubernetes RBAC.
//!
//! Layers, from the bottom; a module imports only from those below it
//! (`tests/layers.rs` checks it, ARCHITECTURE.md explains it):
//!
//! * [`model`]   — domain types: interned names, identities, rules, roles,
//!   bindings, policies. No Kubernetes types.
//! * [`rbac`]    — rule matching, exactly as the Kubernetes RBAC authorizer.
//! * [`crd`]     — the custom resources, defined once in Rust, and their
//!   validation into domain policies.
//! * [`decode`]  — Kubernetes objects (JSON) into domain types.
//! * [`engine`]  — the incremental index and every decision on it; pure.
//! * [`audit`]   — the review-time audit (R11) and its reports; pure.
//! * [`load`]    — reading manifests from files into objects and a state.
//! * [`testcase`] — the `SoDTestCase` format and its runner.
//! * [`runtime`] — the state a server decides on, behind its lock, and metrics.
//! * [`cluster`] — the Kubernetes API: client, snapshot, watchers.
//! * [`controllers`] — leader election and the audit (and, later, grants).
//! * [`admission`] — the HTTP edge: AdmissionReview, TLS, forwarding.
//! * [`serve`]   — `sodguard serve`: configuration and start-up.
//! * [`cli`]     — the command line.
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod controllers;
pub mod crd;
pub mod decode;
pub mod engine;
pub mod load;
pub mod model;
pub mod rbac;
pub mod runtime;
pub mod serve;
pub mod testcase;
