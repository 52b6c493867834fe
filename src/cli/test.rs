use std::io::Write;

use super::output::{DENY, DIM, OK, paint};
use super::{CliError, EXIT_OK, EXIT_VIOLATIONS, TestArgs};
use crate::testcase::{judge, load_cases, run_engine};

pub fn run(args: &TestArgs) -> Result<u8, CliError> {
    let cases = load_cases(&args.paths)?;
    let mut out = anstream::stdout();
    let (mut passed, mut failed) = (0, 0);
    for c in &cases {
        let result = judge(c, &run_engine(c));
        let file = paint(DIM, format!("({})", c.file.display()));
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
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATIONS
    })
}
