use std::io::Write;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::hygiene::{self, NotApplying};
use super::output::{BOLD, DENY, DIM, OK, WARN, paint, print_duty_paths};
use super::{CheckArgs, CliError, EXIT_OK, EXIT_VIOLATIONS, LoadReport, OutputFormat, load_source};
use crate::engine::{self, Evaluation, Excused, Violation};

pub fn run(args: &CheckArgs) -> Result<u8, CliError> {
    let (mut index, report) = load_source(&args.source)?;
    index.set_unwatched_namespaces(&args.excluded_namespaces);
    let now = args.now.unwrap_or_else(Timestamp::now);
    let mut ev = engine::evaluate(&index, now);
    if let Some(ns) = &args.namespace {
        ev.violations.retain(|v| *v.namespace == **ns);
        ev.excused.retain(|e| *e.violation.namespace == **ns);
    }
    let warnings = hygiene::warnings(&index, &report);
    hygiene::print_warnings(&warnings);
    let unexcused: Vec<Vec<NotApplying>> = ev
        .violations
        .iter()
        .map(|v| hygiene::not_applying(&index, v, now))
        .collect();
    let mut out = anstream::stdout();
    match args.output {
        OutputFormat::Json => {
            // The violations are written one at a time, never all held as
            // JSON values: at 100k bindings with derived holdings they are
            // ~190 MB of JSON, several times that as a value tree.
            let mut report_json = to_json(&Evaluation::default(), &report, &[]);
            report_json["excused"] = json!(ev.excused.iter().map(excused_json).collect::<Vec<_>>());
            report_json["warnings"] = json!(warnings);
            let streamed = Streamed {
                top: &report_json,
                violations: &ev.violations,
                unexcused: &unexcused,
            };
            serde_json::to_writer_pretty(&mut out, &streamed).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => {
            let mut report_json = to_json(&ev, &report, &unexcused);
            report_json["warnings"] = json!(warnings);
            super::output::write_data(&mut out, args.output, &report_json)?;
        }
        OutputFormat::Text => print_text(&mut out, &ev, &report, &unexcused)?,
    }
    Ok(if ev.violations.iter().any(|v| v.actions.deny) {
        EXIT_VIOLATIONS
    } else {
        EXIT_OK
    })
}

/// The report with its `violations` serialized as they are written.
struct Streamed<'x> {
    top: &'x Value,
    violations: &'x [Violation],
    unexcused: &'x [Vec<NotApplying>],
}

impl serde::Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let obj = self.top.as_object();
        let mut m = s.serialize_map(obj.map(serde_json::Map::len))?;
        // In the order the report's map keeps its keys, as before.
        for (k, v) in obj.into_iter().flatten() {
            if k == "violations" {
                m.serialize_entry(k, &StreamedViolations(self.violations, self.unexcused))?;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

struct StreamedViolations<'x>(&'x [Violation], &'x [Vec<NotApplying>]);

impl serde::Serialize for StreamedViolations<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (v, n) in self.0.iter().zip(self.1) {
            seq.serialize_element(&violation_entry(v, n))?;
        }
        seq.end()
    }
}

fn violation_entry(v: &Violation, n: &[NotApplying]) -> Value {
    let mut j = violation_json(v);
    if !n.is_empty() {
        j["exceptionsNotApplying"] = hygiene::not_applying_json(n);
    }
    j
}

/// A path as data (R9.3): its steps in order, each a `rule` (binding → role
/// → rule) or a `derived` step, so a tool can tell them apart.
pub(super) fn steps_json(p: &engine::Path) -> Value {
    p.steps
        .iter()
        .map(|s| match s {
            engine::Step::Rule {
                via,
                binding,
                role,
                source,
                rule_index,
                rule,
            } => {
                let mut o = json!({
                    "kind": "rule",
                    "role": role.to_string(),
                    "ruleIndex": rule_index,
                    "rule": rule,
                });
                if let Some(b) = binding {
                    o["binding"] = json!(b.to_string());
                }
                if let Some(src) = source {
                    o["aggregatedFrom"] = json!(format!("ClusterRole {src}"));
                }
                if let engine::Via::Group(g) = via {
                    o["viaGroup"] = json!(&**g);
                }
                o
            }
            engine::Step::Derived { kind, text } => json!({
                "kind": "derived",
                "path": kind.as_str(),
                "text": text,
            }),
        })
        .collect()
}

/// Per duty, each path as [`steps_json`].
fn duty_steps_json(duties: &[engine::DutyPaths]) -> Value {
    duties
        .iter()
        .map(|d| {
            (
                d.duty.to_string(),
                d.paths.iter().map(steps_json).collect::<Value>(),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

pub(super) fn violation_json(v: &Violation) -> Value {
    let paths: serde_json::Map<String, Value> = v
        .explanation
        .iter()
        .map(|d| {
            (
                d.duty.to_string(),
                d.paths
                    .iter()
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        })
        .collect();
    json!({
        "policy": &*v.policy,
        "subject": v.subject.to_string(),
        "namespace": &*v.namespace,
        "duties": v.duties.iter().map(|d| &**d).collect::<Vec<_>>(),
        "actions": v.actions.names(),
        "paths": paths,
        "steps": duty_steps_json(&v.explanation),
    })
}

pub(super) fn excused_json(e: &Excused) -> Value {
    let mut v = violation_json(&e.violation);
    v["excusedBy"] = json!(&*e.exception);
    v["expiresAt"] = json!(e.expires_at.to_string());
    v
}

fn to_json(ev: &Evaluation, report: &LoadReport, unexcused: &[Vec<NotApplying>]) -> Value {
    json!({
        "violations": ev.violations.iter().zip(unexcused).map(|(v, n)| violation_entry(v, n)).collect::<Vec<_>>(),
        "excused": ev.excused.iter().map(excused_json).collect::<Vec<_>>(),
        "documents": report.documents,
        "skipped": report.skipped,
    })
}

pub(super) fn print_violation(
    out: &mut impl Write,
    v: &Violation,
    marker: &str,
) -> std::io::Result<()> {
    let style = if v.actions.deny { DENY } else { WARN };
    let ns = if &*v.namespace == "*" {
        "cluster-wide".to_string()
    } else {
        format!("in namespace {}", v.namespace)
    };
    writeln!(
        out,
        "{} {}  {}  {}  {}",
        paint(style, marker),
        paint(BOLD, &v.policy),
        v.subject,
        ns,
        paint(DIM, format!("[{}]", v.actions.names().join(", ")))
    )?;
    print_duty_paths(out, "    ", &v.explanation)
}

pub(super) fn print_excused(out: &mut impl Write, e: &Excused) -> std::io::Result<()> {
    print_violation(out, &e.violation, "EXCUSED")?;
    let why = format!(
        "excused by SoDException {} until {}",
        e.exception, e.expires_at
    );
    writeln!(out, "    {}", paint(DIM, why))
}

fn print_text(
    out: &mut impl Write,
    ev: &Evaluation,
    report: &LoadReport,
    unexcused: &[Vec<NotApplying>],
) -> std::io::Result<()> {
    for (v, not_applying) in ev.violations.iter().zip(unexcused) {
        let marker = if v.actions.deny {
            "DENY"
        } else if v.actions.warn {
            "WARN"
        } else {
            "AUDIT"
        };
        print_violation(out, v, marker)?;
        hygiene::print_not_applying(out, not_applying)?;
        writeln!(out)?;
    }
    for e in &ev.excused {
        print_excused(out, e)?;
        writeln!(out)?;
    }
    let deny = ev.violations.iter().filter(|v| v.actions.deny).count();
    let summary = format!(
        "{} violation(s) ({} under Deny), {} excused",
        ev.violations.len(),
        deny,
        ev.excused.len()
    );
    writeln!(
        out,
        "{}",
        if deny > 0 {
            paint(DENY, summary)
        } else {
            paint(OK, summary)
        }
    )?;
    if report.files == 0 {
        return writeln!(
            out,
            "{}",
            paint(
                DIM,
                "read from the cluster of the current kubeconfig context"
            )
        );
    }
    let mut note = format!(
        "read {} document(s) from {} file(s)",
        report.documents, report.files
    );
    if report.skipped_total() > 0 {
        let kinds: Vec<String> = report
            .skipped
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        note.push_str(&format!(
            "; skipped {} of kinds sodguard does not check ({})",
            report.skipped_total(),
            kinds.join(", ")
        ));
    }
    writeln!(out, "{}", paint(DIM, note))
}
