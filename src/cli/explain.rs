use std::io::Write;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::check::{excused_json, print_excused, print_violation, violation_json};
use super::output::{BOLD, DIM, paint, print_duty_paths};
use super::{CliError, EXIT_OK, ExplainArgs, OutputFormat, load_source};
use crate::engine::{self, Explanation};
use crate::model::Identity;

pub fn run(args: &ExplainArgs) -> Result<u8, CliError> {
    let mut source = args.source.clone();
    let files = &mut source.files;
    // `-f` takes several paths, so a subject written after them arrives as one.
    let subject = match &args.subject {
        Some(s) => s.clone(),
        None => match files.pop() {
            Some(last) if files.is_empty() => {
                return Err(crate::model::IdentityParseError(format!(
                    "{} (no subject given after the paths)",
                    last.display()
                ))
                .into());
            }
            Some(last) => last.to_string_lossy().into_owned(),
            None => String::new(),
        },
    };
    // The authorizer's user name of a ServiceAccount, as audit logs and
    // `kubectl auth can-i --as` write it.
    let subject = match subject.strip_prefix("system:serviceaccount:") {
        Some(rest) => format!("ServiceAccount:{rest}"),
        None => subject,
    };
    let subject: Identity = subject.parse()?;
    let (index, report) = load_source(&source)?;
    let now = args.now.unwrap_or_else(Timestamp::now);
    super::hygiene::print_warnings(&super::hygiene::warnings(&index, &report));
    let e = engine::explain(&index, &subject, now);
    let unexcused: Vec<_> = e
        .evaluation
        .violations
        .iter()
        .map(|v| super::hygiene::not_applying(&index, v, now))
        .collect();
    let mut out = anstream::stdout();
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut j = to_json(&e);
            for (v, n) in j["violations"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .zip(&unexcused)
            {
                if !n.is_empty() {
                    v["exceptionsNotApplying"] = super::hygiene::not_applying_json(n);
                }
            }
            super::output::write_data(&mut out, args.output, &j)?;
        }
        OutputFormat::Text => print_text(&mut out, &e, &unexcused)?,
    }
    Ok(EXIT_OK)
}

fn to_json(e: &Explanation) -> Value {
    json!({
        "subject": e.subject.to_string(),
        "exists": e.exists,
        "policies": e.policies.iter().map(|p| json!({
            "policy": &*p.policy,
            "governed": p.governed,
            "holdings": p.scopes.iter().map(|s| json!({
                "namespace": &*s.namespace,
                "duties": s.duties.iter().map(|d| json!({
                    "duty": &*d.duty,
                    "paths": d.paths.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "violations": e.evaluation.violations.iter().map(violation_json).collect::<Vec<_>>(),
        "excused": e.evaluation.excused.iter().map(excused_json).collect::<Vec<_>>(),
        "exceptions": e.exceptions.iter().map(|x| json!({
            "name": &*x.name,
            "policy": &*x.policy,
            "phase": x.standing.phase.as_str(),
            "until": x.standing.until.to_string(),
            "reasons": &x.standing.reasons,
        })).collect::<Vec<_>>(),
    })
}

fn print_text(
    out: &mut impl Write,
    e: &Explanation,
    unexcused: &[Vec<super::hygiene::NotApplying>],
) -> std::io::Result<()> {
    let state = match (&e.subject, e.exists) {
        (Identity::ServiceAccount { .. }, false) => {
            " (no such ServiceAccount: its bindings are latent)"
        }
        (_, false) => " (named by no binding)",
        _ => "",
    };
    writeln!(out, "{}{}", paint(BOLD, &e.subject), paint(DIM, state))?;
    for p in &e.policies {
        let gov = if p.governed {
            ""
        } else {
            " (not governed: excluded, not selected or not existing)"
        };
        writeln!(
            out,
            "\n  policy {}{}",
            paint(BOLD, &p.policy),
            paint(DIM, gov)
        )?;
        if p.scopes.is_empty() {
            writeln!(out, "    holds none of its duties")?;
        }
        for s in &p.scopes {
            let where_ = if &*s.namespace == "*" {
                "cluster-wide".to_string()
            } else {
                format!("in namespace {}", s.namespace)
            };
            let names: Vec<&str> = s.duties.iter().map(|d| &*d.duty).collect();
            writeln!(out, "    {where_}: {}", names.join(", "))?;
            print_duty_paths(out, "      ", &s.duties)?;
        }
    }
    writeln!(out)?;
    if e.evaluation.violations.is_empty() && e.evaluation.excused.is_empty() {
        writeln!(out, "violates no policy")?;
    }
    for (v, n) in e.evaluation.violations.iter().zip(unexcused) {
        print_violation(out, v, "VIOLATES")?;
        super::hygiene::print_not_applying(out, n)?;
    }
    for x in &e.evaluation.excused {
        print_excused(out, x)?;
    }
    for x in &e.exceptions {
        let s = &x.standing;
        let when = match s.phase {
            engine::Phase::Active => format!(" until {}", s.until),
            _ => String::new(),
        };
        writeln!(
            out,
            "SoDException {} (policy {}): {}{when}",
            paint(BOLD, &x.name),
            x.policy,
            s.phase
        )?;
        for r in &s.reasons {
            writeln!(out, "  {}", paint(DIM, r))?;
        }
    }
    Ok(())
}
