//! Styles for people. `anstream` drops them when the output is not a terminal.

use anstyle::{AnsiColor, Style};

pub const ERROR: Style = AnsiColor::Red.on_default().bold();
pub const DENY: Style = AnsiColor::Red.on_default().bold();
pub const WARN: Style = AnsiColor::Yellow.on_default().bold();
pub const OK: Style = AnsiColor::Green.on_default().bold();
pub const DIM: Style = Style::new().dimmed();
pub const BOLD: Style = Style::new().bold();

/// `text` in `style`.
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// Pads `s` to `width` columns (names are ASCII in practice; count chars).
pub fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// `error: ...` on stderr, red on a terminal.
pub fn print_error(e: impl std::fmt::Display) {
    use std::io::Write;
    let mut err = anstream::stderr();
    let _ = writeln!(err, "{}error:{} {e}", ERROR.render(), ERROR.render_reset());
}

/// Each duty with its paths, the duty names aligned in one column.
pub fn print_duty_paths(
    out: &mut impl std::io::Write,
    indent: &str,
    duties: &[crate::engine::DutyPaths],
) -> std::io::Result<()> {
    let width = duties
        .iter()
        .map(|d| d.duty.chars().count())
        .max()
        .unwrap_or(0);
    for d in duties {
        for (i, p) in d.paths.iter().enumerate() {
            let label = if i == 0 {
                pad(&d.duty, width)
            } else {
                " ".repeat(width)
            };
            writeln!(out, "{indent}{label}  {p}")?;
        }
    }
    Ok(())
}

/// `value` in the machine format asked for (`-o json`, `-o yaml`).
pub fn write_data(
    out: &mut impl std::io::Write,
    format: super::OutputFormat,
    value: &serde_json::Value,
) -> std::io::Result<()> {
    match format {
        super::OutputFormat::Yaml => {
            let text = serde_saphyr::to_string(value).map_err(std::io::Error::other)?;
            out.write_all(text.as_bytes())
        }
        _ => {
            serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
            writeln!(out)
        }
    }
}
