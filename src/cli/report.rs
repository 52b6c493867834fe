//! `sodguard report`: the reports the review-time audit would write for a
//! set of manifests (R11.2), so that a CI job or a platform team can read
//! them before installing anything.

use std::io::Write;

use jiff::Timestamp;

use super::{CliError, EXIT_OK, EXIT_VIOLATIONS, ReportArgs, ReportOutput, load_source};
use crate::audit;
use crate::engine;

pub fn run(args: &ReportArgs) -> Result<u8, CliError> {
    let (mut index, _) = load_source(&args.source)?;
    index.set_unwatched_namespaces(&args.excluded_namespaces);
    let now = args.now.unwrap_or_else(Timestamp::now);
    // One thread, like the controller's audit: wall time is its CPU time.
    let start = std::time::Instant::now();
    let ev = engine::evaluate(&index, now);
    let evaluated = start.elapsed();
    let found = audit::audit(&index, &ev, now);
    let reports = audit::reports(found.results, args.format);
    tracing::info!(
        evaluate_ms = evaluated.as_secs_f64() * 1e3,
        audit_ms = (start.elapsed() - evaluated).as_secs_f64() * 1e3,
        reports = reports.len(),
        "audit"
    );
    let mut out = std::io::stdout().lock();
    match args.output {
        ReportOutput::Yaml => {
            for r in &reports {
                out.write_all(b"---\n")?;
                // Plain data of our own types: serialising cannot fail.
                out.write_all(serde_saphyr::to_string(r).unwrap_or_default().as_bytes())?;
            }
        }
        ReportOutput::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": reports});
            serde_json::to_writer_pretty(&mut out, &list).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(if reports.iter().any(|r| r.summary.fail > 0) {
        EXIT_VIOLATIONS
    } else {
        EXIT_OK
    })
}
