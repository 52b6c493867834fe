//! The crate's layers (ARCHITECTURE.md): each top-level module imports only
//! from the modules below it, and the files inside a module form no cycle.
//! Test code (`tests.rs` files and `#[cfg(test)] mod tests` blocks) may reach
//! up, to build fixtures; shipped code may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module and what it may import, bottom first.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("rbac", &["model"]),
    ("crd", &["model", "rbac"]),
    ("decode", &["model", "rbac", "crd"]),
    ("engine", &["model", "rbac", "decode"]),
    ("audit", &["model", "rbac", "crd", "decode", "engine"]),
    ("load", &["model", "decode", "engine"]),
    ("testcase", &["model", "decode", "engine", "load"]),
    ("runtime", &["model", "engine"]),
    ("cluster", &["model", "crd", "decode", "engine", "runtime"]),
    (
        "controllers",
        &[
            "model", "crd", "decode", "engine", "audit", "runtime", "cluster",
        ],
    ),
    (
        "admission",
        &["model", "decode", "engine", "runtime", "controllers"],
    ),
    (
        "serve",
        &[
            "model",
            "decode",
            "engine",
            "audit",
            "load",
            "runtime",
            "cluster",
            "controllers",
            "admission",
        ],
    ),
    (
        "cli",
        &[
            "model", "rbac", "crd", "decode", "engine", "audit", "load", "testcase", "runtime",
            "cluster", "serve",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/engine/index/mod.rs` → `[engine, index]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The shipped part of a file: without its unit-test module.
fn shipped(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths a file refers to: `crate::a::b…` and `super::…`, made
/// absolute. Only the first two segments matter here.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let lines = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = lines.as_str();
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(is_ident) {
                continue;
            }
            // `super::{a, b::c}` names several.
            let heads: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or("").to_string())
                    .filter(|s| !s.is_empty() && s != "self")
                    .collect()
            } else {
                vec![rest.chars().take_while(|c| is_ident(*c)).collect()]
            };
            for head in heads {
                let mut path = base.clone();
                path.push(head);
                // And the next segment, for references within one module.
                if prefix == "crate::" {
                    let after: String = rest
                        .chars()
                        .skip_while(|c| is_ident(*c))
                        .collect::<String>()
                        .chars()
                        .take(64)
                        .collect();
                    if let Some(next) = after.strip_prefix("::") {
                        let seg: String = next.chars().take_while(|c| is_ident(*c)).collect();
                        if !seg.is_empty() {
                            path.push(seg);
                        }
                    }
                }
                out.insert(path);
            }
        }
    }
    out
}

struct Graph {
    /// file module → referenced module paths.
    refs: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut refs = BTreeMap::new();
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let module = module_of(&f);
        if module.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        refs.insert(module.clone(), references(&module, shipped(&text)));
    }
    Graph { refs }
}

#[test]
fn every_module_has_a_layer() {
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        assert!(
            known.contains(name.as_str()),
            "src/{name} has no layer in tests/layers.rs (and ARCHITECTURE.md)"
        );
    }
}

#[test]
fn imports_point_down() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, refs) in &graph().refs {
        let from = module[0].as_str();
        for r in refs {
            let to = r[0].as_str();
            if to == from || !allowed.contains_key(to) {
                continue;
            }
            if !allowed[from].contains(&to) {
                wrong.push(format!("{} → {}", module.join("::"), r.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}

/// Within one top-level module, the submodules (`engine::admission`,
/// `engine::request`, …) form no cycle.
#[test]
fn no_cycles_inside_a_module() {
    let g = graph();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, refs) in &g.refs {
        if module.len() < 2 {
            continue;
        }
        let from = format!("{}::{}", module[0], module[1]);
        for r in refs {
            if r.len() >= 2 && r[0] == module[0] && r[1] != module[1] {
                let to = format!("{}::{}", r[0], r[1]);
                if g.refs
                    .keys()
                    .any(|k| k.len() >= 2 && format!("{}::{}", k[0], k[1]) == to)
                {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", c.join(" → "));
        }
    }
}
