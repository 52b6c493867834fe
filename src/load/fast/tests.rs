//! The fast path must read every document it accepts exactly as serde-saphyr
//! does; these tests compare the two on tricky, generated and real documents.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::parse;

/// serde-saphyr as `load` calls it.
fn saphyr(doc: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options(doc, super::super::yaml_options(64 << 20))
        .map_err(|e| e.to_string())
}

/// Whatever the fast path accepts, serde-saphyr accepts with the same value.
fn agrees(doc: &str) -> bool {
    let Some(fast) = parse(doc) else {
        return false;
    };
    match saphyr(doc) {
        Ok(v) => assert_eq!(fast, v, "the fast path read differently:\n{doc}"),
        Err(e) => panic!("the fast path accepted what serde-saphyr refuses ({e}):\n{doc}"),
    }
    true
}

#[test]
fn reads_generated_manifests() {
    let doc = "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: ci-secrets-read\n  namespace: tracking-2382\n  resourceVersion: \"32561837\"\n  labels:\n    kubernetes.io/bootstrapping: rbac-defaults\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: secret-reader\nsubjects:\n- kind: ServiceAccount\n  name: ci\n  namespace: tracking-2382\n- kind: User\n  name: system:serviceaccount:a:b\nrules:\n  - apiGroups: [\"*\"]\n    resources: ['pods', secrets]\n    verbs: []\n    x: {}\n  -   a: 1\n      b: null\n      c: true\n      d:\n";
    assert!(agrees(doc));
    assert_eq!(
        parse(doc).unwrap()["rules"][1],
        json!({"a": 1, "b": null, "c": true, "d": null})
    );
}

#[test]
fn leaves_what_could_read_otherwise_to_serde_saphyr() {
    // Each of these is either invalid, or reads as something other than a
    // plain string under some YAML schema: the full parser decides.
    for value in [
        "yes",
        "No",
        "ON",
        "off",
        "y",
        "N",
        "True",
        "FALSE",
        "Null",
        "NULL",
        "~",
        "00",
        "0777",
        "0o17",
        "0x1F",
        "1e3",
        "1.5",
        ".inf",
        "-.inf",
        ".nan",
        "+1",
        "-1",
        "inf",
        "NaN",
        "Infinity",
        "1_000",
        "12345678901234567890",
        "a: b",
        "a:",
        "a # c",
        "\"a\\nb\"",
        "'it''s'",
        "\"a\" x",
        "[a,]",
        "{a: 1}",
        "[a b]",
        "&x y",
        "*x",
        "!!str 1",
        "|",
        ">-",
        "- x",
        "@x",
        "`x`",
        "%x",
        "é",
        "a\tb",
        "[[a]]",
        "\"unclosed",
    ] {
        let doc = format!("k: {value}\n");
        assert!(parse(&doc).is_none(), "{doc}");
    }
    for doc in [
        "a: 1\na: 2\n",
        "a: 1\n  b: 2\n",
        "a: x\n  y\n",
        "- x\n  y\n",
        "a:\n  - x\n  b: 1\n",
        "a: 1\n- x\n",
        "<<: {}\n",
        "? a\n: b\n",
        "--- !tag\na: 1\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\n...\n",
        "a: 1 # c\n",
        "a: 1\r\n",
        "\ta: 1\n",
        "",
        "# only a comment\n",
        "just a string\n",
        "yes: 1\n",
        "1: a\n",
        "a :b\n",
        "a : b\n",
    ] {
        assert!(parse(doc).is_none(), "{doc}");
    }
    let deep: String = (0..40).map(|d| format!("{}a:\n", " ".repeat(d))).collect();
    assert!(parse(&deep).is_none());
    let long_key = format!("{}: 1\n", "k".repeat(2000));
    assert!(parse(&long_key).is_none());
}

const KEYS: &[&str] = &[
    "a",
    "b",
    "kind",
    "name",
    "yes",
    "on",
    "y",
    "true",
    "null",
    "1",
    "0x1",
    "\"q\"",
    "'s'",
    "a b",
    "a:b",
    "<<",
    "? a",
    "&x a",
    "!t a",
    "-a",
    ".a",
    "~",
    "a#b",
    "a #b",
    "\"a\\\"b\"",
    "a'",
    "'a''b'",
    "\"\"",
    "a ",
    "\"a\" ",
    "x.io/y-z",
];

const VALUES: &[&str] = &[
    "",
    "x",
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "n",
    "true",
    "True",
    "FALSE",
    "false",
    "null",
    "Null",
    "~",
    "0",
    "00",
    "0777",
    "0o17",
    "0x1F",
    "1e3",
    "1.5",
    ".inf",
    "-.inf",
    ".nan",
    "+1",
    "-1",
    "12345678901234567890",
    "123456789012345678",
    "123",
    "inf",
    "nan",
    "Infinity",
    "a: b",
    "a:b",
    "a:",
    "http://x/y",
    "a # c",
    "a#c",
    "\"q\"",
    "\"a\\nb\"",
    "'s'",
    "'it''s'",
    "\"a\" x",
    "[a, b]",
    "[]",
    "[a,]",
    "[\"a\", 'b', 1, true, null]",
    "{}",
    "{a: 1}",
    "[a b]",
    "&x y",
    "*x",
    "!!str 1",
    "|",
    ">-",
    "- x",
    "2025-10-10T15:23:37Z",
    "a b  c",
    "/path",
    "@x",
    "`x`",
    "%x",
    "a,b",
    "[a,b]",
    "[ a , b ]",
    "\"\"",
    "''",
    "\"a: b # c\"",
    "'a: [b]'",
    "a=b+c@d",
    "[a:b]",
    "[,]",
    "[a, [b]]",
    "[a, {}]",
    // Led by a digit: a UID, versions, durations, near-numbers.
    "0cb26680-ea34-33d2",
    "050896ce-d54e-b46e",
    "1e-5",
    "1E-5-3",
    "1.2.3",
    "1.0.0-rc1",
    "1.2",
    "0.5e-3",
    "0e0",
    "0x",
    "0x1f-",
    "0b101",
    "0b2",
    "0o7_7",
    "12ab",
    "1a-",
    "1-2",
    "1-e",
    "1_0-",
    "1_2",
    "9_9",
    "2e",
    "4h",
    "1+2",
    "10:30",
    "1:2:3",
    "3.14.15",
    "[1a, 2b-c, 1.2.3, 0x1F, 4h]",
    "] a",
    "a]",
    "a [b]",
    "{ }",
    "[ ]",
    "a\"b",
];

fn line(rng: &mut SmallRng) -> String {
    let pick = |rng: &mut SmallRng, pool: &[&'static str]| pool[rng.random_range(0..pool.len())];
    match rng.random_range(0..40) {
        0 => return "---".into(),
        1 => return "# a comment".into(),
        2 => return String::new(),
        _ => {}
    }
    let indent = [0, 0, 0, 1, 2, 2, 2, 3, 4, 4, 6][rng.random_range(0..11)];
    let prefix = ["", "", "", "- ", "- ", "-  ", "- - "][rng.random_range(0..7)];
    let body = if rng.random_range(0..3) == 0 {
        pick(rng, VALUES).to_string()
    } else {
        let v = pick(rng, VALUES);
        let sep = if v.is_empty() { "" } else { " " };
        format!("{}:{sep}{v}", pick(rng, KEYS))
    };
    format!("{}{prefix}{body}", " ".repeat(indent))
}

/// Documents made of lines that are each close to valid, so that many are
/// valid YAML and many more are near misses.
#[test]
fn agrees_with_serde_saphyr_on_generated_documents() {
    let mut rng = SmallRng::seed_from_u64(9);
    let (mut total, mut accepted) = (0, 0);
    for _ in 0..30_000 {
        let n = rng.random_range(1..8);
        let doc: String = (0..n).map(|_| line(&mut rng) + "\n").collect();
        total += 1;
        accepted += usize::from(agrees(&doc));
    }
    // Most of these are near misses; the comparison means something only if
    // some are accepted.
    assert!(accepted * 100 > total, "{accepted} of {total} accepted");
}

/// Block YAML written out with random layout choices (indentation steps,
/// sequences at their key's indentation or deeper, spaces after `- `), its
/// scalars taken raw from the tricky ones, and now and then one line's
/// indentation off by one.
#[test]
fn agrees_on_generated_block_documents() {
    const GOOD_KEYS: &[&str] = &["a", "kind", "name", "x.io/y-z", "\"q r\"", "'s'"];
    const GOOD_VALUES: &[&str] = &[
        "x", "0", "42", "true", "null", "\"1\"", "'a b'", "[a]", "{}", "a:b",
    ];
    // Mostly tame scalars, so that most documents are in the subset and a
    // tricky one decides.
    fn pick(rng: &mut SmallRng, tricky: &[&'static str], tame: &[&'static str]) -> &'static str {
        let pool = if rng.random_range(0..8) == 0 {
            tricky
        } else {
            tame
        };
        pool[rng.random_range(0..pool.len())]
    }
    fn emit(rng: &mut SmallRng, out: &mut Vec<String>, indent: usize, depth: usize, seq: bool) {
        let n = rng.random_range(1..4);
        for _ in 0..n {
            let pad = " ".repeat(indent);
            let (head, child) = if seq {
                let dash = format!("-{}", " ".repeat(rng.random_range(1..3)));
                let child = indent + dash.len();
                (format!("{pad}{dash}"), child)
            } else {
                let k = pick(rng, KEYS, GOOD_KEYS);
                (format!("{pad}{k}:"), indent)
            };
            let nested = depth < 4 && rng.random_range(0..3) == 0;
            if !nested {
                let v = pick(rng, VALUES, GOOD_VALUES);
                let sep = if v.is_empty() || seq { "" } else { " " };
                out.push(format!("{head}{sep}{v}"));
                continue;
            }
            let inner_seq = rng.random_bool(0.4);
            if seq && rng.random_bool(0.7) {
                // `- a: 1` / `- - x`: the first entry on the dash's line.
                let mut inner = Vec::new();
                emit(rng, &mut inner, child, depth + 1, inner_seq);
                let first = inner[0].split_off(child);
                inner[0] = format!("{head}{first}");
                out.extend(inner);
            } else {
                out.push(head.trim_end().to_string());
                let step = if !seq && inner_seq && rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(1..4)
                };
                emit(rng, out, child + step, depth + 1, inner_seq);
            }
        }
    }
    let mut rng = SmallRng::seed_from_u64(13);
    let (mut total, mut accepted) = (0, 0);
    for _ in 0..20_000 {
        let mut lines = Vec::new();
        let top_seq = rng.random_bool(0.2);
        emit(&mut rng, &mut lines, 0, 0, top_seq);
        if rng.random_range(0..4) == 0 {
            let i = rng.random_range(0..lines.len());
            if rng.random_bool(0.5) {
                lines[i].insert(0, ' ');
            } else if lines[i].starts_with(' ') {
                lines[i].remove(0);
            }
        }
        let doc = lines.join("\n") + "\n";
        total += 1;
        accepted += usize::from(agrees(&doc));
    }
    assert!(accepted * 10 > total, "{accepted} of {total} accepted");
}

/// Random values written as YAML by serde-saphyr (as `sodguard` writes its
/// own YAML), read back both ways.
#[test]
fn agrees_on_values_serde_saphyr_writes() {
    fn value(rng: &mut SmallRng, depth: usize) -> Value {
        let leaf = |rng: &mut SmallRng| {
            let v = VALUES[rng.random_range(0..VALUES.len())];
            match rng.random_range(0..6) {
                0 => json!(rng.random_range(0..1_000_000u64)),
                1 => json!(rng.random_bool(0.5)),
                2 => Value::Null,
                _ => json!(v),
            }
        };
        if depth > 3 {
            return leaf(rng);
        }
        match rng.random_range(0..4) {
            0 => (0..rng.random_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
            1 | 2 => Value::Object(
                (0..rng.random_range(0..5))
                    .map(|_| {
                        let k = KEYS[rng.random_range(0..KEYS.len())];
                        (k.to_string(), value(rng, depth + 1))
                    })
                    .collect(),
            ),
            _ => leaf(rng),
        }
    }
    let mut rng = SmallRng::seed_from_u64(11);
    let (mut total, mut accepted) = (0, 0);
    for _ in 0..5_000 {
        let v = Value::Object(
            (0..rng.random_range(1..6))
                .map(|i| (format!("k{i}"), value(&mut rng, 0)))
                .collect(),
        );
        let doc = serde_saphyr::to_string(&v).expect("YAML");
        total += 1;
        if agrees(&doc) {
            accepted += 1;
            assert_eq!(parse(&doc), Some(v), "{doc}");
        }
    }
    assert!(accepted * 10 > total, "{accepted} of {total} accepted");
}

/// Every YAML document of the repository and of the shared scenarios.
#[test]
fn agrees_on_every_yaml_file_at_hand() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests", "manifests", "examples", "charts", "../shared"] {
        walk(&root.join(dir), &mut files);
    }
    let (mut total, mut accepted) = (0, 0);
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (_, doc) in super::super::split_documents(&text) {
            total += 1;
            accepted += usize::from(agrees(doc));
        }
    }
    assert!(accepted > 100, "{accepted} of {total} documents accepted");
}

/// A scalar led by a digit is a string for the fast path only when no
/// number parser serde-saphyr tries could read it; serde-saphyr agrees.
#[test]
fn digit_led_strings() {
    for s in [
        "0cb26680-ea34-33d2-41a7-f3b6857d4b96",
        "1.2.3",
        "1.0.0-rc1",
        "4h",
        "10:30",
        "1-2",
        "2025-10-10T15:23:37Z",
    ] {
        let doc = format!("k: {s}\n");
        assert!(agrees(&doc), "{doc}");
        assert_eq!(parse(&doc), Some(json!({ "k": s })));
    }
    for s in [
        "1e-5",
        "1E5",
        "0x1F",
        "0b101",
        "0o17",
        "1_000",
        "1.5",
        "0.5e-3",
        "0777",
        "12ab",
        "050896ce-d54e-b46e",
    ] {
        assert!(parse(&format!("k: {s}\n")).is_none(), "{s}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// No input makes the fast path panic, and whatever it accepts reads
    /// the same through serde-saphyr.
    #[test]
    fn never_panics(doc in "([-:#'\"\\[\\]{},&*!|>%@ \\ta-z0-9.é\u{2028}\r]{0,12}\n){0,8}") {
        let _ = agrees(&doc);
    }
}
