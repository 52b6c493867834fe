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
    let mut out = anstream::stdout();
    let (mut passed, mut failed, mut still_pending) = (0, 0, 0);
    for c in &cases {
        let result = judge(c, &run_engine(c));
        let file = paint(DIM, format!("({})", c.file.display()));
        if let Some(why) = pending.reason(&c.file) {
            if result.passed() {
                failed += 1;
                writeln!(out, "{}  {}  {file}", paint(DENY, "FAIL"), result.name)?;
                writeln!(
                    out,
                    "      passes, but {} lists it as pending ({why}): remove the line",
                    pending.source.display()
                )?;
            } else {
                still_pending += 1;
                writeln!(
                    out,
                    "{}  {}  {file}  {}",
                    paint(DIM, "PEND"),
                    result.name,
                    paint(DIM, why)
                )?;
            }
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
