//! Reading manifests: files and folders of YAML or JSON documents,
//! multi-document streams and `kind: List`. The only filesystem IO of the
//! library; everything after it works on values.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod fast;
mod hygiene;
mod state;
pub use state::{LoadReport, Readers, load_state, load_state_with};

/// Where a document came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based index of the document in its file.
    pub document: usize,
    /// 1-based index in a `kind: List`'s items.
    pub item: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.file.display(), self.document)?;
        if let Some(i) = self.item {
            write!(f, ", item {i}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub value: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    #[error("{}, document {document}, line {line}, column {column}: invalid YAML: {message}", path.display())]
    Yaml {
        path: PathBuf,
        document: usize,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{}, line {line}: invalid JSON: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}, line {line}: not UTF-8 text{hint}", path.display())]
    Encoding {
        path: PathBuf,
        line: usize,
        hint: &'static str,
    },
    #[error("{at}: `items` of a {kind} must be a list, found {found}")]
    BadList {
        at: Source,
        kind: String,
        found: &'static str,
    },
    #[error("{at}: expected an object with apiVersion and kind, found {found}")]
    NotAnObject { at: Source, found: &'static str },
    #[error("{}: no YAML or JSON manifests: nothing to check", paths_list(.0))]
    Empty(Vec<PathBuf>),
    #[error(
        "{second}: {object} is also defined at {first}: which one counts would depend on the order of the files"
    )]
    Duplicate {
        object: String,
        first: Box<Source>,
        second: Box<Source>,
    },
    #[error(
        "{at}: {object}: unknown field(s) {fields} (refused as `kubectl apply --validate=strict` would)"
    )]
    UnknownFields {
        at: Box<Source>,
        object: String,
        fields: String,
    },
    #[error("{at}: {error}")]
    Object {
        at: Box<Source>,
        error: Box<crate::decode::ConvertError>,
    },
}

fn paths_list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if names.is_empty() {
        "(no path)".into()
    } else {
        names.join(", ")
    }
}

/// The path that stands for standard input (`-f -`, as kubectl).
pub const STDIN: &str = "-";

/// The files under `paths`: files as given, folders walked for `.yaml`,
/// `.yml` and `.json` files (hidden entries skipped), in a stable order.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            out.push(p.clone());
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound(p.clone()),
            _ => LoadError::Io {
                path: p.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    // The same file named twice (`-f a.yaml -f .`) is read once: it does
    // not define its objects twice.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |e| LoadError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // Symlinked folders are not followed: a link to an ancestor would loop.
        let linked_dir = p
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
            && p.is_dir();
        if linked_dir {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads one file into its documents; `kind: List` items are flattened.
pub fn read_file(path: &Path) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    read_file_each(path, |d| docs.push(d))?;
    Ok(docs)
}

/// [`read_file`], handing each document to `each` as soon as it is parsed,
/// so that a large file need not be held as values all at once. An error
/// is still the one [`read_file`] reports: `each` may have seen documents
/// before it.
pub fn read_file_each(path: &Path, each: impl FnMut(Document)) -> Result<(), LoadError> {
    let io = |e| LoadError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let bytes = if path.as_os_str() == STDIN {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b).map_err(io)?;
        b
    } else {
        std::fs::read(path).map_err(io)?
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]);
        LoadError::Encoding {
            path: path.to_path_buf(),
            line,
            hint: if utf16 {
                " (the file is UTF-16: convert it to UTF-8)"
            } else {
                ""
            },
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    parse_str_each(path, text, each)
}

/// Parses a YAML (or JSON) stream. `path` is only used in messages.
pub fn parse_str(path: &Path, text: &str) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    parse_str_each(path, text, |d| docs.push(d))?;
    Ok(docs)
}

/// [`parse_str`], one document at a time. A syntax error anywhere in the
/// stream is reported before a misshapen document (not an object, a bad
/// `List`) earlier in it, as when the whole stream is parsed first: after a
/// misshapen document, parsing goes on only to look for one.
pub fn parse_str_each(
    path: &Path,
    text: &str,
    mut each: impl FnMut(Document),
) -> Result<(), LoadError> {
    let mut misshapen = None;
    let mut take = |document: usize, v: Value| {
        if misshapen.is_some() {
            return;
        }
        let source = Source {
            file: path.to_path_buf(),
            document,
            item: None,
        };
        if let Err(e) = push_document(source, v, &mut each) {
            misshapen = Some(e);
        }
    };
    let is_json = path.extension().is_some_and(|e| e == "json");
    if is_json {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (i, v) in stream.enumerate() {
            let v = v.map_err(|e| LoadError::Json {
                path: path.to_path_buf(),
                line: e.line(),
                message: e.to_string(),
            })?;
            take(i + 1, v);
        }
    } else {
        // Aliases can make a small file expand into a huge one: what the
        // documents of one file may expand to is bounded as a whole.
        let mut remaining = expansion_budget(text.len());
        for (i, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
            // The fast path reads no alias, so a document within what is
            // left of the budget is within serde-saphyr's scalar budget too.
            let fast = if doc.len() <= remaining {
                fast::parse(doc)
            } else {
                None
            };
            let v = match fast {
                Some(v) => v,
                None => parse_yaml(path, i + 1, first_line, doc, remaining)?,
            };
            remaining = remaining.saturating_sub(text_size(&v));
            take(i + 1, v);
        }
    }
    misshapen.map_or(Ok(()), Err)
}

/// One document through serde-saphyr, its error placed in the file.
fn parse_yaml(
    path: &Path,
    document: usize,
    first_line: usize,
    doc: &str,
    remaining: usize,
) -> Result<Value, LoadError> {
    serde_saphyr::from_str_with_options(doc, yaml_options(remaining)).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        LoadError::Yaml {
            path: path.to_path_buf(),
            document,
            line: line + first_line as u64 - 1,
            column,
            message: yaml_message(&e.to_string()),
        }
    })
}

fn push_document(
    source: Source,
    v: Value,
    each: &mut impl FnMut(Document),
) -> Result<(), LoadError> {
    match v {
        // Empty documents (a trailing `---`, comments only) carry nothing.
        Value::Null => Ok(()),
        Value::Object(mut m) => {
            let list_kind = m
                .get("kind")
                .and_then(Value::as_str)
                .filter(|k| *k == "List" || k.ends_with("List"))
                .map(str::to_string);
            if let Some(kind) = list_kind
                && let Some(items) = m.get("items")
                && !items.is_array()
            {
                return Err(LoadError::BadList {
                    at: source,
                    kind,
                    found: type_name(items),
                });
            }
            if list_kind_has_items(&m) {
                let Some(Value::Array(items)) = m.remove("items") else {
                    return Ok(());
                };
                for (j, item) in items.into_iter().enumerate() {
                    let s = Source {
                        item: Some(j + 1),
                        ..source.clone()
                    };
                    match item {
                        Value::Object(_) => each(Document {
                            source: s,
                            value: item,
                        }),
                        other => {
                            return Err(LoadError::NotAnObject {
                                at: s,
                                found: type_name(&other),
                            });
                        }
                    }
                }
            } else {
                each(Document {
                    source,
                    value: Value::Object(m),
                });
            }
            Ok(())
        }
        other => Err(LoadError::NotAnObject {
            at: source,
            found: type_name(&other),
        }),
    }
}

fn list_kind_has_items(m: &serde_json::Map<String, Value>) -> bool {
    m.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && m.get("items").is_some_and(Value::is_array)
}

/// The bytes of text a parsed document holds, to charge its expansion.
fn text_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_size).sum::<usize>() + a.len(),
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + text_size(v)).sum(),
        _ => 8,
    }
}

/// What all documents of a file may expand to: generous for real manifests
/// (a 50 MB file stays a 50 MB file), small for alias bombs.
fn expansion_budget(file_len: usize) -> usize {
    (64 << 20).max(file_len.saturating_mul(2))
}

/// The library's message without its own position, which counts from the
/// start of the document rather than the file.
fn yaml_message(s: &str) -> String {
    let first = first_line_of(s);
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains("column") => rest.to_string(),
        _ => first.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One document can be large (a big ConfigMap, a generated ClusterRole): lift
/// the size limits, keep those that stop alias and nesting bombs. Public for
/// `examples/load.rs`, which times serde-saphyr alone with these options.
pub fn yaml_options(max_text: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 50_000_000;
    budget.max_events = 100_000_000;
    budget.max_total_scalar_bytes = max_text;
    budget.max_reader_input_bytes = None;
    budget.max_aliases = 10_000;
    budget.max_recorded_anchor_events = 200_000;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o
}

/// Splits a YAML stream into its documents, each with its first line number
/// (1-based). A document runs from its `---` marker (kept, with any
/// `%YAML`/`%TAG` directives and comments before it) to the next marker or
/// `...`. Markers at the start of a line are never content in YAML, even in
/// block scalars, so this is exact; parsing one document at a time keeps
/// document numbers true to the file, empty documents included. Public for
/// `examples/load.rs`.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let is_marker = |l: &str, m: &str| {
        l.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0, 1);
    // Whether the current piece holds anything but directives and comments.
    let mut content = false;
    let mut has_marker = false;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let l = line.trim_end_matches(['\n', '\r']);
        if is_marker(l, "---") {
            if content || has_marker {
                docs.push((start_line, &text[start..offset]));
                start = offset;
                start_line = i + 1;
            }
            has_marker = true;
            content = !l[3..].trim().is_empty() && !l[3..].trim_start().starts_with('#');
        } else if is_marker(l, "...") {
            let end = offset + line.len();
            if content || has_marker {
                docs.push((start_line, &text[start..end]));
            }
            start = end;
            start_line = i + 2;
            content = false;
            has_marker = false;
        } else {
            let t = l.trim();
            // A directive before a document's marker belongs to that document.
            let directive = l.starts_with('%') && !content;
            if !t.is_empty() && !t.starts_with('#') && !directive {
                content = true;
            }
        }
        offset += line.len();
    }
    if content || has_marker {
        docs.push((start_line, &text[start..]));
    }
    docs
}

fn first_line_of(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_lists() {
        let text =
            "a: 1\nkind: X\n---\n---\nkind: List\napiVersion: v1\nitems:\n- kind: A\n- kind: B\n";
        let docs = parse_str(Path::new("f.yaml"), text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2].source.to_string(), "f.yaml, document 3, item 2");
    }

    #[test]
    fn yaml_errors_name_document_and_line() {
        let text = "kind: A\n---\nkind: B\n---\nkind: C\nx: [unclosed\ny: 2\n";
        let err = parse_str(Path::new("bad.yaml"), text).unwrap_err();
        match &err {
            LoadError::Yaml { document, line, .. } => {
                assert_eq!(*document, 3, "{err}");
                assert!(*line >= 6, "{err}");
            }
            e => panic!("{e}"),
        }
        assert!(
            err.to_string().starts_with("bad.yaml, document 3, line"),
            "{err}"
        );
    }

    #[test]
    fn scalars_are_not_objects() {
        let err = parse_str(Path::new("s.yaml"), "just a string\n").unwrap_err();
        assert!(err.to_string().contains("found a string"), "{err}");
    }

    #[test]
    fn json_streams() {
        let docs = parse_str(Path::new("x.json"), r#"{"kind":"A"} {"kind":"B"}"#).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse_str(Path::new("x.json"), "{").is_err());
    }
}
