//! What the commands say besides their answer so that a green run means
//! something (R12): the warnings of the input, and why an exception next
//! to a violation excuses nothing.

use std::io::Write;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::LoadReport;
use super::output::{DIM, WARN, paint};
use crate::engine::index::Index;
use crate::engine::{self, Violation};

/// The warnings of an input: the loader's, and no policy at all (R12.3).
pub fn warnings(index: &Index, report: &LoadReport) -> Vec<String> {
    let mut out = report.warnings.clone();
    if index.policies().next().is_none() {
        out.push(
            "no SoDPolicy in the input: nothing was checked against a policy (R12.3)".to_string(),
        );
    }
    out
}

/// `warning: ...` lines on stderr, yellow on a terminal.
pub fn print_warnings(warnings: &[String]) {
    let mut err = anstream::stderr();
    for w in warnings {
        let _ = writeln!(err, "{} {w}", paint(WARN, "warning:"));
    }
}

/// An exception naming the violation's subject that does not excuse it,
/// and why.
pub struct NotApplying {
    pub name: String,
    pub reasons: Vec<String>,
}

/// Every exception for `v`'s subject that does not excuse `v`, with why:
/// it names another policy, it is not active (R6.4, R6.5), or it does not
/// cover the namespace or duties (R6.1).
pub fn not_applying(index: &Index, v: &Violation, now: Timestamp) -> Vec<NotApplying> {
    let mut out = Vec::new();
    for e in index.exceptions_for(&v.subject) {
        let mut reasons = Vec::new();
        if e.policy != v.policy {
            reasons.push(format!(
                "spec.policy names {:?}, not {:?}",
                e.policy, v.policy
            ));
        } else {
            let s = engine::standing(index, e, now);
            if !s.active() {
                reasons.push(format!("it is {}", s.phase));
                reasons.extend(s.reasons);
            } else if !e.covers(&v.namespace, &v.duties) {
                reasons.push(format!(
                    "it does not cover namespace {} and duties [{}] (spec.namespaces, spec.duties)",
                    v.namespace,
                    v.duties
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if !reasons.is_empty() {
            out.push(NotApplying {
                name: e.name.to_string(),
                reasons,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn print_not_applying(out: &mut impl Write, list: &[NotApplying]) -> std::io::Result<()> {
    for n in list {
        writeln!(
            out,
            "    {}",
            paint(
                DIM,
                format!(
                    "SoDException {} does not apply: {}",
                    n.name,
                    n.reasons.join("; ")
                )
            )
        )?;
    }
    Ok(())
}

pub fn not_applying_json(list: &[NotApplying]) -> Value {
    list.iter()
        .map(|n| json!({"name": n.name, "reasons": n.reasons}))
        .collect()
}
