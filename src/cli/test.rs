use std::io::Write;

use super::output::{DENY, DIM, OK, paint};
use super::{CliError, EXIT_OK, EXIT_VIOLATIONS, TestArgs};
use crate::testcase::{Pending, judge, load_cases, run_engine};

pub fn run(args: &TestArgs) -> Result<u8, CliError> {
    let pending = match &args.pending {
        Some(p) => Pending::load(p)?,
        None => Pending::default(),
    };
    let cases = load_cases(&args.paths)?;
    if cases.is_empty() {
        return Err(CliError::NoCases(args.paths.clone()));
    }
    let mut out = anstream::stdout();
    let (mut passed, mut failed, mut still_pending) = (0, 0, 0);
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
                paint(DIM, note)
            )?;
            continue;
        }
        if result.passed() {
            passed += 1;
            writeln!(out, "{}  {}  {file}", paint(OK, "PASS"), result.name)?;
        } else {
            failed += 1;
            writeln!(out, "{}  {}  {file}", paint(DENY, "FAIL"), result.name)?;
            for f in &result.failures {
                writeln!(out, "      {f}")?;
            }
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
    Ok(if failed == 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATIONS
    })
}
