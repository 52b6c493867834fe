use std::io::Write;

use super::output::{DENY, DIM, OK, paint};
use super::{CliError, EXIT_OK, EXIT_VIOLATIONS, TestArgs};
use crate::testcase::{CaseResult, Pending, judge, load_cases_noting, run_engine};

/// How one case ended, for the summary and the JUnit report.
enum Verdict {
    Passed,
    Failed,
    Pending(String),
}

pub fn run(args: &TestArgs) -> Result<u8, CliError> {
    let pending = match &args.pending {
        Some(p) => Pending::load(p)?,
        None => Pending::default(),
    };
    let (mut cases, notes) = load_cases_noting(&args.paths)?;
    if let Some(pattern) = &args.run {
        cases.retain(|c| c.case.name.contains(pattern.as_str()));
    }
    if cases.is_empty() {
        return Err(CliError::NoCases(args.paths.clone()));
    }
    {
        let mut err = anstream::stderr();
        for n in &notes {
            let _ = writeln!(err, "{} {n}", paint(DIM, "note:"));
        }
    }
    let mut out = anstream::stdout();
    let (mut passed, mut failed, mut still_pending) = (0, 0, 0);
    let mut results = Vec::new();
    for c in &cases {
        let result = judge(c, &run_engine(c));
        let file = paint(DIM, format!("({})", c.file.display()));
        // A pending case is reported, never counted: it may pass here by
        // accident (a feature it needs is simply absent) and still fail where
        // the whole feature is checked (the API server, the webhook).
        if let Some(why) = pending.reason(&c.file) {
            still_pending += 1;
            let note = if result.passed() {
                format!("{why}; passes here")
            } else {
                why.to_string()
            };
            writeln!(
                out,
                "{}  {}  {file}  {}",
                paint(DIM, "PEND"),
                result.name,
                paint(DIM, &note)
            )?;
            results.push((result, Verdict::Pending(note)));
            continue;
        }
        if result.passed() {
            passed += 1;
            writeln!(out, "{}  {}  {file}", paint(OK, "PASS"), result.name)?;
            results.push((result, Verdict::Passed));
        } else {
            failed += 1;
            writeln!(out, "{}  {}  {file}", paint(DENY, "FAIL"), result.name)?;
            for f in &result.failures {
                writeln!(out, "      {f}")?;
            }
            results.push((result, Verdict::Failed));
        }
    }
    if still_pending > 0 {
        writeln!(
            out,
            "{passed} passed, {failed} failed, {still_pending} pending"
        )?;
    } else {
        writeln!(out, "{passed} passed, {failed} failed")?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&results))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(if failed == 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATIONS
    })
}

/// The JUnit XML that CI systems read: one testsuite per case file.
fn junit(results: &[(CaseResult, Verdict)]) -> String {
    let mut by_file: std::collections::BTreeMap<String, Vec<&(CaseResult, Verdict)>> =
        Default::default();
    for r in results {
        by_file
            .entry(r.0.file.display().to_string())
            .or_default()
            .push(r);
    }
    let failures = |rs: &[&(CaseResult, Verdict)]| {
        rs.iter().filter(|r| matches!(r.1, Verdict::Failed)).count()
    };
    let skipped = |rs: &[&(CaseResult, Verdict)]| {
        rs.iter()
            .filter(|r| matches!(r.1, Verdict::Pending(_)))
            .count()
    };
    let all: Vec<&(CaseResult, Verdict)> = results.iter().collect();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"sodguard\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        all.len(),
        failures(&all),
        skipped(&all)
    ));
    for (file, rs) in &by_file {
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
            xml(file),
            rs.len(),
            failures(rs),
            skipped(rs)
        ));
        for (r, v) in rs.iter().map(|r| (&r.0, &r.1)) {
            let open = format!(
                "    <testcase name=\"{}\" classname=\"{}\"",
                xml(&r.name),
                xml(file)
            );
            match v {
                Verdict::Passed => x.push_str(&format!("{open}/>\n")),
                Verdict::Failed => x.push_str(&format!(
                    "{open}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(r.failures.first().map_or("", String::as_str)),
                    xml(&r.failures.join("\n"))
                )),
                Verdict::Pending(why) => x.push_str(&format!(
                    "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml(why)
                )),
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// `s` as XML text or attribute value.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
