//! A fast path for the plain block YAML that generators and `kubectl get -o
//! yaml` write: block mappings and sequences of one-line scalars. It reads
//! them six or seven times faster than serde-saphyr because it does nothing
//! else: at the first thing outside that subset (anchors, aliases, tags,
//! block or multi-line scalars, escapes, comments after content, tabs,
//! non-ASCII content, flow mappings, plain scalars that could resolve to
//! anything but a string, `true`, `false`, `null` or a small decimal,
//! duplicate keys, deep nesting…) it gives up and the document goes to
//! serde-saphyr, which then decides — and reports errors — exactly as
//! before. So the fast path never produces an error, and whatever it accepts
//! must read exactly as serde-saphyr reads it: the tests compare the two on
//! generated and on real documents.

use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Nesting the fast path reads; deeper documents go to serde-saphyr, which
/// enforces its own limit (64) and its message.
const MAX_DEPTH: usize = 32;
/// serde-saphyr refuses a simple key longer than 1,024 characters; keys long
/// enough to come near are left to it.
const MAX_KEY: usize = 256;
/// serde-saphyr (with the `comments` feature that `kube` turns on) buffers
/// consecutive comments while resolving some entries and refuses more than
/// 32; long runs of comments are left to it.
const MAX_COMMENT_RUN: usize = 16;
/// Documents past this size go to serde-saphyr, whose node and event budgets
/// (`load::yaml_options`) they could come near.
const MAX_LEN: usize = 16 << 20;

/// The document's value, or `None` when it is not in the subset (which says
/// nothing about whether it is valid YAML).
pub(super) fn parse(doc: &str) -> Option<Value> {
    if doc.len() > MAX_LEN {
        return None;
    }
    let lines = lines(doc)?;
    if lines.is_empty() {
        return None;
    }
    let mut p = Parser {
        lines,
        pos: 0,
        depth: 0,
    };
    let first = p.lines[0].indent;
    let v = p.node(first)?;
    // Anything left over is less indented than the first line: an error or
    // something this subset does not read.
    (p.pos == p.lines.len()).then_some(v)
}

#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    /// Without its indentation and trailing spaces; never empty.
    text: &'a str,
}

/// The lines that hold content. Blank lines and whole-line comments carry
/// nothing as long as no scalar spans lines, which the parser refuses.
fn lines(doc: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::new();
    let mut comments = 0;
    let mut marker = false;
    for raw in doc.split('\n') {
        let t = raw.trim_end_matches(' ');
        let text = t.trim_start_matches(' ');
        if text.is_empty() {
            continue;
        }
        if text.starts_with('#') {
            comments += 1;
            if comments > MAX_COMMENT_RUN || !text.chars().all(in_comment) {
                return None;
            }
            continue;
        }
        comments = 0;
        // Printable ASCII only: no tabs, carriage returns, control
        // characters, BOMs or Unicode line breaks to get right.
        if !text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return None;
        }
        let indent = t.len() - text.len();
        if indent == 0 && (text.starts_with("---") || text.starts_with("...")) {
            // The document's own start marker, bare; anything else (a
            // second marker, content or a tag after it) is left to the parser.
            if text == "---" && out.is_empty() && !marker {
                marker = true;
                continue;
            }
            return None;
        }
        if text.starts_with('%') {
            return None;
        }
        out.push(Line { indent, text });
    }
    Some(out)
}

/// What YAML allows in a comment, less tabs and whatever some YAML version
/// reads as a line break or a byte order mark.
fn in_comment(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
    depth: usize,
}

fn is_item(t: &str) -> bool {
    t.starts_with("- ")
}

impl<'a> Parser<'a> {
    fn at(&self) -> Option<Line<'a>> {
        self.lines.get(self.pos).copied()
    }

    /// Whether the next line is more indented than `indent`: after a scalar
    /// that is a continuation (or an error), never something this subset reads.
    fn deeper(&self, indent: usize) -> bool {
        self.at().is_some_and(|l| l.indent > indent)
    }

    /// The block node starting at the current line, indented by `indent`.
    fn node(&mut self, indent: usize) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let l = self.at()?;
        let v = if is_item(l.text) {
            self.seq(indent)?
        } else {
            self.map(indent)?
        };
        self.depth -= 1;
        Some(v)
    }

    fn seq(&mut self, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(l) = self.at()
            && l.indent == indent
            && is_item(l.text)
        {
            let after = &l.text[1..];
            let rest = after.trim_start_matches(' ');
            // The item's content is read as if the `- ` were indentation, which
            // is what YAML's compact notation means: `- a: 1` followed by
            // `  b: 2` is one mapping.
            let inner = Line {
                indent: indent + 1 + (after.len() - rest.len()),
                text: rest,
            };
            self.lines[self.pos] = inner;
            if is_item(rest) || split_key(rest)?.is_some() {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                items.push(if is_item(rest) {
                    self.seq(inner.indent)?
                } else {
                    self.map(inner.indent)?
                });
                self.depth -= 1;
            } else {
                items.push(inline(rest)?);
                self.pos += 1;
                if self.deeper(indent) {
                    return None;
                }
            }
        }
        if self.deeper(indent) {
            return None;
        }
        Some(Value::Array(items))
    }

    fn map(&mut self, indent: usize) -> Option<Value> {
        let mut m = Map::new();
        while let Some(l) = self.at()
            && l.indent == indent
        {
            let (key, rest) = split_key(l.text)??;
            self.pos += 1;
            let v = if rest.is_empty() {
                match self.at() {
                    Some(n) if n.indent > indent => self.node(n.indent)?,
                    // A sequence may sit at its key's own indentation.
                    Some(n) if n.indent == indent && is_item(n.text) => {
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return None;
                        }
                        let v = self.seq(indent)?;
                        self.depth -= 1;
                        v
                    }
                    _ => Value::Null,
                }
            } else {
                let v = inline(rest)?;
                if self.deeper(indent) {
                    return None;
                }
                v
            };
            // serde-saphyr refuses duplicate keys (its default, kept by
            // `load`): its error is the one to report.
            match m.entry(key) {
                Entry::Vacant(e) => e.insert(v),
                Entry::Occupied(_) => return None,
            };
        }
        if self.deeper(indent) {
            return None;
        }
        Some(Value::Object(m))
    }
}

/// A mapping entry's key and the rest of its line: `Some(None)` when the
/// line is not an entry (a scalar), `None` when it cannot tell.
fn split_key(t: &str) -> Option<Option<(String, &str)>> {
    let (key, after) = match *t.as_bytes().first()? {
        q @ (b'"' | b'\'') => {
            let end = t[1..].find(q as char)? + 1;
            let key = &t[1..end];
            if q == b'"' && key.contains('\\') {
                return None;
            }
            let after = &t[end + 1..];
            if !after.starts_with(':') {
                return Some(None);
            }
            (key, &after[1..])
        }
        b'[' | b'{' => return Some(None),
        _ => {
            let colon = match colon_space(t) {
                Some(i) => i,
                None if t.ends_with(':') => t.len() - 1,
                None => return Some(None),
            };
            let key = &t[..colon];
            if !plain_string(key, false) {
                return None;
            }
            (key, &t[colon + 1..])
        }
    };
    if key.len() > MAX_KEY || !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some(Some((key.to_string(), after.trim_start_matches(' '))))
}

/// A scalar or flow collection that ends its line.
fn inline(t: &str) -> Option<Value> {
    match *t.as_bytes().first()? {
        b'"' | b'\'' => {
            let (s, rest) = quoted(t)?;
            rest.is_empty().then(|| Value::String(s.to_string()))
        }
        b'[' => flow_seq(t),
        b'{' => (t == "{}").then(|| Value::Object(Map::new())),
        _ => plain(t, false),
    }
}

/// A one-line quoted scalar without escapes, and what follows it.
fn quoted(t: &str) -> Option<(&str, &str)> {
    let q = *t.as_bytes().first()? as char;
    let end = t[1..].find(q)? + 1;
    let s = &t[1..end];
    if q == '"' && s.contains('\\') {
        return None;
    }
    let rest = &t[end + 1..];
    // `'it''s'`: a quote doubled inside a single-quoted scalar.
    if q == '\'' && rest.starts_with('\'') {
        return None;
    }
    Some((s, rest))
}

/// `[a, "b", 'c']` on one line: plain items are single words.
fn flow_seq(t: &str) -> Option<Value> {
    let mut items = Vec::new();
    let mut rest = t[1..].trim_start_matches(' ');
    if let Some(after) = rest.strip_prefix(']') {
        return after.is_empty().then_some(Value::Array(items));
    }
    loop {
        let (item, after) = match rest.as_bytes().first()? {
            b'"' | b'\'' => {
                let (s, after) = quoted(rest)?;
                (Value::String(s.to_string()), after)
            }
            _ => {
                let end = rest.find([',', ']', ' '])?;
                (plain(&rest[..end], true)?, &rest[end..])
            }
        };
        items.push(item);
        let after = after.trim_start_matches(' ');
        if let Some(after) = after.strip_prefix(',') {
            rest = after.trim_start_matches(' ');
            // A trailing comma, or an empty entry: left to the parser.
            if rest.starts_with([',', ']']) {
                return None;
            }
        } else if let Some(after) = after.strip_prefix(']') {
            return after.is_empty().then_some(Value::Array(items));
        } else {
            return None;
        }
    }
}

/// A plain scalar's value, when it is unambiguous: a string that no YAML
/// schema serde-saphyr applies reads as anything else, `true`, `false`,
/// `null`, or a decimal that fits.
fn plain(s: &str, flow: bool) -> Option<Value> {
    let first = *s.as_bytes().first()?;
    if first.is_ascii_digit() {
        // `0`, or no leading zero (YAML 1.1 octal): a `u64` either way.
        let ok =
            s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || first != b'0');
        if ok {
            return s
                .parse::<u64>()
                .ok()
                .map(|n| Value::Number(Number::from(n)));
        }
        return (chars_ok(s, flow) && not_a_number(s)).then(|| Value::String(s.to_string()));
    }
    match s {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        _ => {}
    }
    plain_string(s, flow).then(|| Value::String(s.to_string()))
}

/// Whether `s` is a plain scalar that serde-saphyr reads as this very
/// string: it starts with a letter or `/` (no indicator, sign, digit or
/// dot), holds only characters that mean nothing in YAML where they stand,
/// and is none of the words that resolve to a boolean, null or float in
/// YAML 1.1 or 1.2 (`yes`, `on`, `n`, `Null`, `inf`, `NaN`, …).
fn plain_string(s: &str, flow: bool) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == b'/') || !chars_ok(s, flow) {
        return false;
    }
    const RESOLVED: [&str; 12] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "inf", "infinity", "nan",
    ];
    s.len() > 8 || !RESOLVED.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// Whether `s` holds only characters that mean nothing in a plain scalar
/// where it stands (block or flow), and no `: ` that would make it a key.
fn chars_ok(s: &str, flow: bool) -> bool {
    let all = s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'/' | b'@' | b'+' | b'=' | b'*')
            || (!flow && matches!(c, b':' | b',' | b' '))
    });
    all && !s.ends_with([':', ' ']) && colon_space(s).is_none()
}

/// Where `: ` is in `s`: a byte loop, cheaper on short scalars than a
/// substring search that sets itself up on every call.
fn colon_space(s: &str) -> Option<usize> {
    s.as_bytes().windows(2).position(|w| w == b": ")
}

/// Whether a plain scalar that starts with a digit (a UID, a version) is
/// no number for any parser serde-saphyr tries (decimal, `0x`/`0o`/`0b`,
/// underscores, Rust's floats): it holds a character none of them reads,
/// a `-` that is neither a sign nor an exponent's, or a second `.`.
fn not_a_number(s: &str) -> bool {
    let b = s.as_bytes();
    let foreign = b.iter().any(|&c| {
        !(c.is_ascii_hexdigit()
            || matches!(c, b'.' | b'_' | b'+' | b'-' | b'x' | b'X' | b'o' | b'O'))
    });
    let inner_dash = b
        .windows(2)
        .any(|w| w[1] == b'-' && !matches!(w[0], b'e' | b'E'));
    foreign || inner_dash || b.iter().filter(|&&c| c == b'.').count() > 1
}

#[cfg(test)]
mod tests;
