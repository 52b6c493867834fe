//! sodguard: segregation of duties for Kubernetes RBAC.
//!
//! The crate is layered so that the decision logic never touches IO:
//!
//! * [`model`]   — small domain types the engine works on (interned names,
//!   identities, roles, bindings) and their conversion from Kubernetes objects;
//! * [`crd`]     — the `SoDPolicy` and `SoDException` custom resources and their
//!   validation into engine policies;
//! * [`rbac`]    — rule matching, exactly as the Kubernetes RBAC authorizer;
//! * [`index`]   — the incremental in-memory state, updated one object at a time;
//! * [`engine`]  — holdings, violations, exceptions and admission verdicts;
//! * [`load`]    — reading manifests from files (the only IO below the CLI);
//! * [`testcase`] — the `SoDTestCase` format and its runner;
//! * [`cli`]     — the command line.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod crd;
pub mod engine;
pub mod index;
pub mod load;
pub mod model;
pub mod rbac;
pub mod server;
pub mod testcase;
