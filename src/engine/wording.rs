//! How a verdict reads for people: the denial message and the warnings
//! kubectl shows. One wording for the webhook and for `sodguard test`
//! (`expect.message`, `expect.warnings`).

use std::fmt::Write as _;

use super::verdict::Review;
use super::violations::Violation;

/// One line per violation, for warnings.
pub fn summary(v: &Violation) -> String {
    let place = if &*v.namespace == "*" {
        "cluster-wide".to_string()
    } else {
        format!("in namespace {}", v.namespace)
    };
    let duties: Vec<&str> = v.duties.iter().map(|d| &**d).collect();
    format!(
        "SoDPolicy {}: {} would hold {} {place}",
        v.policy,
        v.subject,
        duties.join(" + ")
    )
}

/// For a person reading kubectl's output: each denying violation with the
/// shortest path of each duty.
pub fn denial_message(review: &Review) -> String {
    if let Some(r) = &review.refusal {
        return format!("sodguard: {r}");
    }
    let mut m = String::from("sodguard: segregation of duties");
    for v in review.denying() {
        let _ = write!(m, "\n{}", summary(v));
        for d in &v.explanation {
            if let Some(p) = d.paths.first() {
                let _ = write!(m, "\n  {}: {p}", d.duty);
            }
        }
    }
    m.push_str(
        "\nremove one of the duties, or request an SoDException (kubectl explain sodexception)",
    );
    m
}

/// Every warning of a verdict: its own, the violations under Warn and the
/// excused ones.
pub fn warnings(review: &Review) -> Vec<String> {
    let mut out = review.warnings.clone();
    out.extend(review.warning().map(|v| format!("{} (Warn)", summary(v))));
    out.extend(review.excused.iter().map(|e| {
        format!(
            "{} — excused by SoDException {} until {}",
            summary(&e.violation),
            e.exception,
            e.expires_at
        )
    }));
    out
}
