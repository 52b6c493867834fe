//! Bad input: clear messages for what can be named, and no crash for anything.
//!
//! The contract: whatever the input — invalid YAML or JSON, garbage bytes,
//! truncated or empty files, huge files, nesting and alias bombs, objects with
//! wrong types in every field, non-UTF-8 — `sodguard` exits with 0, 1 or 2.
//! It never panics (exit 101) and is never killed by a signal (stack
//! overflow, abort on allocation failure). Errors exit 2 with a message on
//! stderr that starts with `error:` and names the file (and, where there is
//! one, the document, line, object and field).
//!
//! Every run is capped in address space (`ulimit -v`) so that an input that
//! makes sodguard allocate without bound fails the test (abort on allocation
//! failure) instead of the machine.

use std::ffi::OsStr;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::objects::{RBAC, example_files, examples_dir, namespace, service_account, write};
use common::run::{BIN, Job, check, run_all, sodguard, sodguard_capped};
use common::scenarios::shared_scenarios;
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Text from the characters YAML gives meaning to.
    fn yamlish(&mut self, len: usize) -> String {
        const ALPHABET: &[&str] = &[
            "-",
            "--- ",
            "...",
            ":",
            ": ",
            "? ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a ",
            "*a",
            "!",
            "!!str ",
            "|",
            ">",
            "'",
            "\"",
            "#",
            "%YAML 1.2",
            "@",
            "`",
            "\n",
            "\n  ",
            "\t",
            " ",
            "a",
            "kind",
            "RoleBinding",
            "<<: ",
            "\\",
            "\u{feff}",
            "é",
            "→",
            "\r\n",
            "0x1F",
            "~",
            "null",
        ];
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())])
            .collect()
    }
}

fn valid_rolebinding() -> Value {
    json!({
        "apiVersion": RBAC, "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": "shop", "labels": {"a": "b"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"},
            {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}
        ]
    })
}

fn valid_clusterrolebinding() -> Value {
    json!({
        "apiVersion": RBAC, "kind": "ClusterRoleBinding",
        "metadata": {"name": "crb"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}]
    })
}

fn valid_role() -> Value {
    json!({
        "apiVersion": RBAC, "kind": "Role",
        "metadata": {"name": "r", "namespace": "shop"},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"], "resourceNames": ["x"]},
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]}
        ]
    })
}

fn valid_clusterrole() -> Value {
    json!({
        "apiVersion": RBAC, "kind": "ClusterRole",
        "metadata": {"name": "agg", "labels": {"rbac.example.com/aggregate": "true"}},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"rbac.example.com/aggregate-to-agg": "true"}},
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}
        ]},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            {"nonResourceURLs": ["/metrics", "/api/*"], "verbs": ["get"]}
        ]
    })
}

fn valid_policy() -> Value {
    json!({
        "apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "description": "d",
            "duties": [
                {"name": "admin", "description": "a", "match": "Any", "permissions": [
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}]},
                {"name": "use", "match": "All", "permissions": [
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s"]},
                    {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
                {"name": "third", "permissions": [
                    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["update"]}]}
            ],
            "maxDuties": 1,
            "scope": "Namespace",
            "subjects": {
                "kinds": ["ServiceAccount", "User"],
                "namespaces": ["shop", "ci*"],
                "exclude": [{"kind": "ServiceAccount", "namespace": "kube-*", "name": "*"}]
            },
            "validationActions": ["Deny", "Audit"],
            "exceptions": {"approvalsRequired": 1, "maxDuration": "24h",
                           "breakGlass": {"allowed": true, "maxDuration": "4h"}},
            "credentials": {"longLivedTokens": "Warn", "maxAge": "720h"}
        }
    })
}

fn valid_exception() -> Value {
    json!({
        "apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException",
        "metadata": {"name": "x"},
        "spec": {
            "policy": "p",
            "subject": {"kind": "ServiceAccount", "namespace": "ci", "name": "builder"},
            "duties": ["admin", "use"],
            "namespaces": ["shop"],
            "justification": "j",
            "ticket": "T-1",
            "requestedBy": "alice",
            "notBefore": "2026-11-28T00:00:00Z",
            "expiresAt": "2026-11-29T00:00:00Z",
            "breakGlass": false,
            "approvals": [{"user": "bob", "at": "2026-11-28T01:00:00Z"}]
        }
    })
}

fn valid_objects() -> Vec<Value> {
    vec![
        valid_rolebinding(),
        valid_clusterrolebinding(),
        valid_role(),
        valid_clusterrole(),
        service_account("ci", "builder"),
        namespace("shop"),
        valid_policy(),
        valid_exception(),
    ]
}

/// Every path in a JSON value (`spec.duties[0].name`), with the root as "".
fn paths(v: &Value) -> Vec<(String, Vec<PathStep>)> {
    fn walk(v: &Value, text: String, steps: Vec<PathStep>, out: &mut Vec<(String, Vec<PathStep>)>) {
        out.push((text.clone(), steps.clone()));
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let t = if text.is_empty() {
                        k.clone()
                    } else {
                        format!("{text}.{k}")
                    };
                    let mut s = steps.clone();
                    s.push(PathStep::Key(k.clone()));
                    walk(c, t, s, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let mut s = steps.clone();
                    s.push(PathStep::Index(i));
                    walk(c, format!("{text}[{i}]"), s, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), Vec::new(), &mut out);
    out
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// `v` with the value at `steps` replaced (or removed when `with` is None).
fn mutate(v: &Value, steps: &[PathStep], with: Option<&Value>) -> Value {
    let mut out = v.clone();
    if steps.is_empty() {
        return with.cloned().unwrap_or(Value::Null);
    }
    let mut cur = &mut out;
    for s in &steps[..steps.len() - 1] {
        cur = match s {
            PathStep::Key(k) => &mut cur[k.as_str()],
            PathStep::Index(i) => &mut cur[*i],
        };
    }
    match (steps.last().unwrap(), with) {
        (PathStep::Key(k), Some(w)) => cur[k.as_str()] = w.clone(),
        (PathStep::Key(k), None) => {
            cur.as_object_mut().unwrap().remove(k);
        }
        (PathStep::Index(i), Some(w)) => cur[*i] = w.clone(),
        (PathStep::Index(i), None) => {
            cur.as_array_mut().unwrap().remove(*i);
        }
    }
    out
}

/// Values of the wrong type (or of the right type and absurd).
fn wrong_values() -> Vec<Value> {
    vec![
        json!(5),
        json!(-3),
        json!(0),
        json!(1.5),
        json!(1e300),
        json!(i64::MIN),
        json!(u64::MAX),
        json!("x"),
        json!(""),
        json!("*"),
        json!({}),
        json!([]),
        json!(null),
        json!(true),
        json!([5]),
        json!([null]),
        json!([[[{}]]]),
        json!({"a": {"b": [1]}}),
    ]
}

fn now() -> jiff::Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

/// Loads, converts and evaluates in-process, as `check` does. Errors are
/// fine; a panic is not (the caller catches it).
fn evaluate_in_process(path: &Path, text: &str, extra: &[sodguard::model::Object]) {
    let Ok(docs) = sodguard::load::parse_str(path, text) else {
        return;
    };
    let mut objects: Vec<sodguard::model::Object> = extra.to_vec();
    for d in &docs {
        if let Ok(Some(o)) = sodguard::decode::convert(&d.value) {
            objects.push(o);
        }
    }
    let index = sodguard::engine::index::Index::from_objects(objects);
    let _ = sodguard::engine::evaluate(&index, now());
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

// ---------------------------------------------------------------------------
// Messages that name where the problem is
// ---------------------------------------------------------------------------

#[test]
fn invalid_yaml_names_the_file_the_document_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    // (text, document, line of the error)
    let cases: &[(&str, usize, usize)] = &[
        ("foo: bar: baz\n", 1, 1),
        (
            "kind: A\n---\nkind: B\n---\nkind: C\nmetadata: {name: x}\nfoo: bar: baz\n",
            3,
            7,
        ),
        // an empty document between two markers is a document (as everywhere
        // else in messages: `document N` counts it)
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nfoo: bar: baz\n",
            3,
            7,
        ),
        // comments and a leading marker
        (
            "# header\n---\nkind: A\n--- # second\nkind: B\n\n# note\nfoo: bar: baz\n",
            2,
            8,
        ),
        // Windows line ends
        ("kind: A\r\n---\r\nkind: B\r\nfoo: bar: baz\r\n", 2, 4),
        // the error deep inside a larger document
        (
            "kind: A\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  a: 1\n  b: 2\n  c: - x\n",
            2,
            10,
        ),
    ];
    let mut failures = Vec::new();
    for (i, (text, document, line)) in cases.iter().enumerate() {
        let name = format!("bad-{i}.yaml");
        let f = write(dir.path(), &name, text);
        let r = check(&[&f]);
        r.expect(2);
        let want = format!("{name}, document {document}, line {line}");
        if !r.stderr.contains(&want) {
            failures.push(format!("expected {want:?}\n{}", r.context()));
        }
        // The message must not contradict itself with another line number.
        let lines: Vec<&str> = r
            .stderr
            .match_indices("line ")
            .map(|(at, _)| {
                let rest = &r.stderr[at + 5..];
                &rest[..rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len())]
            })
            .filter(|n| !n.is_empty())
            .collect();
        if !lines.iter().all(|n| *n == line.to_string()) {
            failures.push(format!(
                "the message gives different line numbers {lines:?} (the error is on line {line}):\n{}",
                r.context()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_yaml_is_named_by_explain_and_test_too() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.yaml", "kind: A\n---\nfoo: bar: baz\n");
    sodguard([
        OsStr::new("explain"),
        "User:a".as_ref(),
        "-f".as_ref(),
        f.as_os_str(),
    ])
    .expect(2)
    .stderr_has("broken.yaml, document 2, line 3");
    sodguard([OsStr::new("test"), f.as_os_str()])
        .expect(2)
        .stderr_has("broken.yaml, document 2, line 3");
}

#[test]
fn invalid_json_names_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.json",
        "{\"kind\": \"A\"}\n{\"kind\":\n  ,}\n",
    );
    check(&[&f])
        .expect(2)
        .stderr_has("bad.json")
        .stderr_has("line 3");
    let f = write(
        dir.path(),
        "trunc.json",
        "{\"kind\": \"A\",\n\"metadata\": {\n",
    );
    check(&[&f])
        .expect(2)
        .stderr_has("trunc.json")
        .stderr_has("line");
}

#[test]
fn documents_of_unknown_kinds_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "misc.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\n\
         just: an object without kind\n---\n\
         apiVersion: example.com/v1\nkind: RoleBinding\nmetadata: {name: not-rbac}\n",
    );
    let r = check(&[&f]);
    r.expect(0)
        .stdout_has("skipped 5")
        .stdout_has("ConfigMap ×2")
        .stdout_has("Deployment ×1");
    let r = sodguard([
        OsStr::new("check"),
        "-o".as_ref(),
        "json".as_ref(),
        "-f".as_ref(),
        f.as_os_str(),
    ]);
    r.expect(0);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["skipped"]["ConfigMap"], json!(2), "{report:#}");
    assert_eq!(report["documents"], json!(5), "{report:#}");
}

#[test]
fn malformed_rbac_objects_are_errors_naming_the_object() {
    let ok = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    // (second document, what the message must name)
    let cases: &[(&str, &[&str])] = &[
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: shop}\nsubjects: []\n",
            &["RoleBinding shop/b", "roleRef"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\n",
            &["RoleBinding", "metadata.name"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\n",
            &["RoleBinding b", "metadata.namespace"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ''}\n",
            &["RoleBinding shop/b", "roleRef.name"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Secret, name: r}\n",
            &["RoleBinding shop/b", "roleRef.kind"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: 5\n",
            &["RoleBinding shop/b", "subjects"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: c}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\n",
            &["ClusterRoleBinding c", "roleRef.kind"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {labels: {a: b}}\nrules: []\n",
            &["ClusterRole", "metadata.name"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: shop}\nrules: \"x\"\n",
            &["Role shop/r", "rules"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: shop}\nrules: [{apiGroups: [''], resources: [secrets], verbs: get}]\n",
            &["Role shop/r", "rules[0].verbs"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: agg}\naggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: k, operator: Sometimes}]}]}\n",
            &["ClusterRole agg", "aggregationRule"],
        ),
        (
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n",
            &["ServiceAccount sa", "metadata.namespace"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (bad, needles)) in cases.iter().enumerate() {
        let name = format!("rbac-{i}.yaml");
        let f = write(dir.path(), &name, format!("{ok}---\n{bad}"));
        let r = check(&[&f]);
        r.expect(2).stderr_has(&format!("{name}, document 2"));
        for n in *needles {
            r.stderr_has(n);
        }
    }
    // In a List, the item is named.
    let f = write(
        dir.path(),
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n\
         - apiVersion: rbac.authorization.k8s.io/v1\n  kind: RoleBinding\n  metadata: {name: b, namespace: a}\n",
    );
    check(&[&f])
        .expect(2)
        .stderr_has("list.yaml, document 1, item 2")
        .stderr_has("RoleBinding a/b");
}

fn policy_with(spec_patch: Value) -> Value {
    let mut p = json!({
        "apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "duties": [
                {"name": "admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
                {"name": "use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
            ]
        }
    });
    for (k, v) in spec_patch.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    p
}

#[test]
fn invalid_sodpolicy_is_an_error_naming_the_field_path() {
    let duty = |name: &str| json!({"name": name, "permissions": [{"apiGroups": [""], "resources": ["x"], "verbs": ["get"]}]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"duties": [duty("a")]}), "spec.duties"),
        (json!({"duties": []}), "spec.duties"),
        (json!({"duties": {}}), "spec.duties"),
        (json!({"duties": "x"}), "spec.duties"),
        (json!({"maxDuties": 2}), "spec.maxDuties"),
        (json!({"maxDuties": 0}), "spec.maxDuties"),
        (json!({"maxDuties": -3}), "spec.maxDuties"),
        (json!({"maxDuties": "x"}), "spec.maxDuties"),
        (json!({"maxDuties": 1.5}), "spec.maxDuties"),
        (
            json!({"duties": [duty("a"), duty("a")]}),
            "spec.duties[1].name",
        ),
        (
            json!({"duties": [duty("a"), duty(" ")]}),
            "spec.duties[1].name",
        ),
        (
            json!({"duties": [duty("a"), {"name": 5, "permissions": []}]}),
            "spec.duties[1].name",
        ),
        (
            json!({"duties": [duty("a"), {"name": "b", "permissions": []}]}),
            "spec.duties[1].permissions",
        ),
        (
            json!({"duties": [duty("a"), {"name": "b"}]}),
            "spec.duties[1]",
        ),
        (
            json!({"duties": [duty("a"), {"name": "b", "permissions": [{"apiGroups": [""], "resources": ["x"], "verbs": []}]}]}),
            "spec.duties[1].permissions[0].verbs",
        ),
        (
            json!({"validationActions": ["Deny", "Warn"]}),
            "spec.validationActions",
        ),
        (json!({"validationActions": []}), "spec.validationActions"),
        (
            json!({"validationActions": ["Block"]}),
            "spec.validationActions[0]",
        ),
        (json!({"scope": "Galaxy"}), "spec.scope"),
        (json!({"subjects": {"kinds": []}}), "spec.subjects.kinds"),
        (
            json!({"subjects": {"exclude": [{"kind": "Robot", "name": "x"}]}}),
            "spec.subjects.exclude[0].kind",
        ),
        (
            json!({"subjects": {"namespaces": ["[unclosed"]}}),
            "spec.subjects.namespaces[0]",
        ),
        (
            json!({"exceptions": {"maxDuration": "forever"}}),
            "spec.exceptions.maxDuration",
        ),
        (
            json!({"exceptions": {"approvalsRequired": -1}}),
            "spec.exceptions.approvalsRequired",
        ),
        (
            json!({"credentials": {"maxAge": "-5h"}}),
            "spec.credentials.maxAge",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<(PathBuf, &str, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, (patch, path))| {
            let name = format!("policy-{i}.json");
            let f = write(dir.path(), &name, policy_with(patch.clone()).to_string());
            (f, *path, name)
        })
        .collect();
    for (f, path, name) in &jobs {
        let r = check(&[f]);
        r.expect(2)
            .stderr_has(name)
            .stderr_has("SoDPolicy p")
            // the path, as a whole (not a prefix of a longer one)
            .stderr_has(&format!("{path}: "));
    }
}

#[test]
fn sodpolicy_missing_spec_names_spec() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "nospec.yaml",
        "apiVersion: sodguard.io/v1alpha1\nkind: SoDPolicy\nmetadata: {name: p}\n",
    );
    let r = check(&[&f]);
    r.expect(2).stderr_has("SoDPolicy p").stderr_has("spec");
    assert!(
        !r.stderr.contains(": .:"),
        "the field path is printed as `.`, not as a field:\n{}",
        r.context()
    );
}

#[test]
fn invalid_sodexception_is_an_error_naming_the_field_path() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("expiresAt", json!("tomorrow"), "spec.expiresAt"),
        ("notBefore", json!("2026-11-30T00:00:00Z"), "spec.expiresAt"),
        (
            "subject",
            json!({"kind": "ServiceAccount", "name": "builder"}),
            "spec.subject.namespace",
        ),
        (
            "subject",
            json!({"kind": "ServiceAccount", "namespace": "ci", "name": ""}),
            "spec.subject.name",
        ),
        (
            "approvals",
            json!([{"user": "bob", "at": "noon"}]),
            "spec.approvals[0].at",
        ),
        (
            "approvals",
            json!([{"user": "", "at": "2026-11-28T01:00:00Z"}]),
            "spec.approvals[0].user",
        ),
        ("policy", json!(""), "spec.policy"),
        ("requestedBy", json!(5), "spec.requestedBy"),
        ("justification", json!("  "), "spec.justification"),
        ("breakGlass", json!("yes"), "spec.breakGlass"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (field, value, path)) in cases.into_iter().enumerate() {
        let mut e = valid_exception();
        e["spec"][field] = value;
        let name = format!("exception-{i}.json");
        let f = write(dir.path(), &name, e.to_string());
        check(&[&f])
            .expect(2)
            .stderr_has(&name)
            .stderr_has("SoDException x")
            .stderr_has(&format!("{path}: "));
    }
}

// ---------------------------------------------------------------------------
// No crash, whatever the input
// ---------------------------------------------------------------------------

#[test]
fn wrong_types_in_every_field_through_the_binary() {
    // Every field of a RoleBinding and of an SoDPolicy, replaced by values of
    // the wrong type, as JSON files.
    let dir = tempfile::tempdir().unwrap();
    let values = [
        json!(5),
        json!(-3),
        json!("x"),
        json!({}),
        json!([]),
        json!(null),
    ];
    let mut jobs = Vec::new();
    let mut expect_object = Vec::new();
    for (label, base) in [("rb", valid_rolebinding()), ("policy", valid_policy())] {
        for (pi, (path, steps)) in paths(&base).into_iter().enumerate() {
            for (vi, v) in values.iter().enumerate() {
                let name = format!("{label}-{pi}-{vi}.json");
                let f = write(
                    dir.path(),
                    &name,
                    mutate(&base, &steps, Some(v)).to_string(),
                );
                jobs.push(Job::check(&[&f], &f));
                // Outside metadata/kind/apiVersion the object keeps its name.
                let named = !(path.is_empty()
                    || path.starts_with("metadata")
                    || path == "kind"
                    || path == "apiVersion");
                expect_object.push(named.then_some(if label == "rb" {
                    "RoleBinding shop/b"
                } else {
                    "SoDPolicy p"
                }));
            }
        }
    }
    let runs = run_all(jobs);
    for (r, obj) in runs.iter().zip(expect_object) {
        if let (Some(2), Some(obj)) = (r.code, obj) {
            assert!(
                r.stderr.contains(obj),
                "the error does not name {obj}\n{}",
                r.context()
            );
        }
    }
}

#[test]
fn wrong_types_in_every_field_in_process() {
    // All object kinds sodguard reads × every field × every wrong value (and
    // the field removed): `convert` returns an error naming the field, or an
    // object the engine can evaluate, and never panics.
    let base_objects: Vec<sodguard::model::Object> = valid_objects()
        .iter()
        .map(|v| sodguard::decode::convert(v).unwrap().unwrap())
        .collect();
    let mut failures = Vec::new();
    let mut tried = 0;
    for base in valid_objects() {
        let kind = base["kind"].as_str().unwrap().to_string();
        for (path, steps) in paths(&base) {
            let mut replacements: Vec<Option<Value>> =
                wrong_values().into_iter().map(Some).collect();
            if !steps.is_empty() {
                replacements.push(None);
            }
            for with in replacements {
                tried += 1;
                let v = mutate(&base, &steps, with.as_ref());
                let what = format!(
                    "{kind} with {path:?} = {}",
                    with.as_ref().map_or("(removed)".into(), |w| w.to_string())
                );
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let r = sodguard::decode::convert(&v);
                    if let Ok(Some(o)) = &r {
                        let mut objects = base_objects.clone();
                        objects.push(o.clone());
                        let index = sodguard::engine::index::Index::from_objects(objects);
                        let _ = sodguard::engine::evaluate(&index, now());
                    }
                    r
                }));
                match result {
                    Err(p) => failures.push(format!("{what}: PANIC {}", panic_message(&*p))),
                    Ok(Err(sodguard::decode::ConvertError::Invalid { error, .. })) => {
                        // The field path of an invalid SoD object must lead to
                        // (or come from) the changed field.
                        let ep = error.path.trim_start_matches('.');
                        let related = ep.is_empty()
                            || path.starts_with(ep)
                            || ep.starts_with(&path)
                            || !path.starts_with("spec");
                        if !related {
                            failures.push(format!("{what}: error names {:?}: {error}", error.path));
                        }
                    }
                    Ok(Err(e @ sodguard::decode::ConvertError::Malformed { .. })) => {
                        let top = path.split(['.', '[']).next().unwrap_or_default();
                        let msg = e.to_string();
                        if !top.is_empty()
                            && !msg.contains(top)
                            && top != "kind"
                            && top != "apiVersion"
                        {
                            failures.push(format!("{what}: error does not mention {top:?}: {msg}"));
                        }
                    }
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
    assert!(tried > 500, "only {tried} mutations");
    assert!(
        failures.is_empty(),
        "{} of {tried} mutations broke the contract:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn random_bytes_and_yaml_like_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_0001);
    let mut jobs = Vec::new();
    for i in 0..30 {
        let len = [0, 1, 2, 7, 64, 512, 4096][i % 7] + rng.below(64);
        let ext = ["yaml", "json", "yml"][i % 3];
        let f = write(dir.path(), &format!("bytes-{i}.{ext}"), rng.bytes(len));
        jobs.push(Job::check(&[&f], &f));
    }
    for i in 0..40 {
        let len = 1 + rng.below(400);
        let text = rng.yamlish(len);
        let ext = if i % 5 == 0 { "json" } else { "yaml" };
        let f = write(dir.path(), &format!("yamlish-{i}.{ext}"), text);
        jobs.push(Job::check(&[&f], &f));
    }
    // The same garbage through `test` and `explain`.
    for i in 0..6 {
        let f = write(dir.path(), &format!("case-{i}.yaml"), rng.yamlish(300));
        jobs.push(Job {
            args: vec!["test".into(), f.clone().into()],
            file: Some(format!("case-{i}.yaml")),
        });
        jobs.push(Job {
            args: vec![
                "explain".into(),
                "ServiceAccount:a:b".into(),
                "-f".into(),
                f.into(),
            ],
            file: Some(format!("case-{i}.yaml")),
        });
    }
    run_all(jobs);
}

#[test]
fn binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    std::fs::File::open(BIN)
        .unwrap()
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .unwrap();
    let mut jobs = Vec::new();
    for name in ["sodguard.yaml", "sodguard.json"] {
        let f = write(dir.path(), name, &bytes);
        jobs.push(Job::check(&[&f], &f));
    }
    // Valid YAML followed by binary.
    let mut mixed = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n".to_vec();
    mixed.extend_from_slice(&bytes[..4096]);
    let f = write(dir.path(), "mixed.yaml", &mixed);
    jobs.push(Job::check(&[&f], &f));
    // NUL bytes inside an otherwise valid document.
    let f = write(
        dir.path(),
        "nul.yaml",
        b"apiVersion: v1\nkind: Namespace\nmetadata: {name: \"a\0b\"}\n\0\0\0",
    );
    jobs.push(Job::check(&[&f], &f));
    for r in run_all(jobs) {
        // Binary is not a manifest: it is an error, not silently nothing.
        assert_ne!(r.code, Some(1), "{}", r.context());
    }
}

#[test]
fn non_utf8_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    // Latin-1 in a name, in a comment, in a key.
    let latin1: &[(&str, &[u8])] = &[
        ("latin1-name.yaml", b"apiVersion: v1\nkind: Namespace\nmetadata: {name: caf\xe9}\n"),
        ("latin1-comment.yaml", b"# r\xe9sum\xe9\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"),
        ("latin1-key.yaml", b"apiVersion: v1\nkind: Namespace\nmetadata: {\xff\xfe: a}\n"),
        ("latin1.json", b"{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"caf\xe9\"}}"),
        ("lone-continuation.yaml", b"\x80\x80\x80: \xbf\n"),
        ("overlong.yaml", b"kind: \xc0\xaf\n"),
        ("surrogate.yaml", b"kind: \xed\xa0\x80\n"),
        ("truncated-multibyte.yaml", b"kind: \xe2\x86"),
    ];
    for (name, bytes) in latin1 {
        let f = write(dir.path(), name, bytes);
        jobs.push(Job::check(&[&f], &f));
    }
    // UTF-16 (LE and BE, with BOM) and UTF-32 encodings of a valid manifest.
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
    let le: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let be: Vec<u8> = [0xfe, 0xff]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    let u32le: Vec<u8> = text
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    for (name, bytes) in [
        ("utf16le.yaml", le),
        ("utf16be.yaml", be),
        ("utf32le.yaml", u32le),
    ] {
        let f = write(dir.path(), name, &bytes);
        jobs.push(Job::check(&[&f], &f));
    }
    // A UTF-8 BOM is fine.
    let f = write(dir.path(), "bom.yaml", format!("\u{feff}{text}"));
    jobs.push(Job::check(&[&f], &f));
    // The examples with a non-UTF-8 comment in one file still work (or fail
    // with a message); they never crash.
    let copy = tempfile::tempdir().unwrap();
    for src in example_files() {
        let mut bytes = std::fs::read(&src).unwrap();
        if src.ends_with("bindings.yaml") {
            bytes.splice(0..0, b"# \xff\xfe\xfd broken encoding\n".iter().copied());
        }
        write(
            copy.path(),
            src.file_name().unwrap().to_str().unwrap(),
            bytes,
        );
    }
    jobs.push(Job::check(&[copy.path()], Path::new("bindings.yaml")));
    let runs = run_all(jobs);
    assert_eq!(
        runs.last().unwrap().code.map(|c| c != 0),
        Some(true),
        "the violation was lost"
    );
    let bom = &runs[runs.len() - 2];
    assert_eq!(
        bom.code,
        Some(0),
        "a UTF-8 BOM must be accepted\n{}",
        bom.context()
    );
}

#[test]
fn truncated_example_files_through_the_binary() {
    // Each example file cut at evenly spaced points (and just before and
    // after a `---`), loaded with all the other examples.
    let files = example_files();
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for (fi, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let mut cuts: Vec<usize> = (0..12).map(|k| k * bytes.len() / 12).collect();
        if let Some(m) = bytes.windows(4).position(|w| w == b"\n---") {
            cuts.extend([m, m + 2, m + 4]);
        }
        cuts.push(bytes.len() - 1);
        cuts.sort();
        cuts.dedup();
        let others: Vec<&Path> = files
            .iter()
            .filter(|f| *f != file)
            .map(PathBuf::as_path)
            .collect();
        for cut in cuts {
            let name = format!(
                "{fi}-{}-{cut}.yaml",
                file.file_stem().unwrap().to_string_lossy()
            );
            let f = write(dir.path(), &name, &bytes[..cut]);
            let mut all = others.clone();
            all.push(&f);
            jobs.push(Job::check(&all, &f));
        }
    }
    // The examples as one JSON List, truncated.
    let mut items = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for d in sodguard::load::parse_str(file, &text).unwrap() {
            items.push(d.value);
        }
    }
    let json = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    for k in 1..16 {
        let cut = k * json.len() / 16;
        let name = format!("list-{cut}.json");
        let f = write(dir.path(), &name, &json.as_bytes()[..cut]);
        jobs.push(Job::check(&[&f], &f));
    }
    run_all(jobs);
}

#[test]
fn truncated_example_files_in_process() {
    // Denser than through the binary: every line end, and a cut every few
    // bytes; each prefix is loaded with the other examples and evaluated.
    let files = example_files();
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut failures = Vec::new();
    let mut tried = 0;
    for (i, file) in files.iter().enumerate() {
        let mut others = Vec::new();
        for (j, f) in files.iter().enumerate() {
            if i != j {
                for d in sodguard::load::parse_str(f, &texts[j]).unwrap() {
                    if let Ok(Some(o)) = sodguard::decode::convert(&d.value) {
                        others.push(o);
                    }
                }
            }
        }
        let bytes = texts[i].as_bytes();
        let step = (bytes.len() / 120).max(1);
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(step).collect();
        cuts.extend(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(k, _)| k + 1),
        );
        cuts.sort();
        cuts.dedup();
        for cut in cuts {
            tried += 1;
            let text = String::from_utf8_lossy(&bytes[..cut]);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
                evaluate_in_process(file, &text, &others)
            })) {
                failures.push(format!(
                    "{} cut at byte {cut}: {}",
                    file.display(),
                    panic_message(&*p)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} prefixes panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn truncated_scenario_files_through_test() {
    let Some(dir) = shared_scenarios() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut scenario_files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scenario_files.sort();
    let mut jobs = Vec::new();
    for (i, f) in scenario_files.iter().step_by(3).enumerate() {
        let bytes = std::fs::read(f).unwrap();
        for k in 1..6 {
            let cut = k * bytes.len() / 6 + i;
            let name = format!("case-{i}-{cut}.yaml");
            let t = write(tmp.path(), &name, &bytes[..cut.min(bytes.len())]);
            jobs.push(Job {
                args: vec!["test".into(), t.into()],
                file: Some(name),
            });
        }
    }
    run_all(jobs);
}

#[test]
fn empty_and_almost_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty: &[(&str, &str)] = &[
        ("empty.yaml", ""),
        ("empty.yml", ""),
        ("empty.json", ""),
        ("newline.yaml", "\n"),
        ("spaces.yaml", "   \n\t\n  "),
        ("spaces.json", " \n\t "),
        ("markers.yaml", "---\n---\n---\n"),
        ("end-markers.yaml", "...\n---\n...\n"),
        ("comments.yaml", "# nothing here\n---\n# nor here\n"),
        ("null.yaml", "null\n"),
        ("tilde.yaml", "~\n"),
        ("null.json", "null"),
        ("bom.yaml", "\u{feff}"),
        ("empty-list.yaml", "apiVersion: v1\nkind: List\nitems: []\n"),
        ("empty-object.json", "{}"),
        ("empty-object.yaml", "{}\n"),
    ];
    // Nothing to check is an error naming the input (R12: no false
    // greens), not "0 violation(s)"; a document without a kind is still
    // a document (skipped, with the warning that no policy was read).
    for (name, text) in empty {
        let f = write(dir.path(), name, text);
        let r = check(&[&f]);
        if name.starts_with("empty-object") {
            r.expect(0).stdout_has("0 violation(s)");
        } else {
            r.expect(2).stderr_has(name);
        }
    }
    // An empty folder and /dev/null.
    let sub = dir.path().join("nothing");
    std::fs::create_dir(&sub).unwrap();
    check(&[&sub]).expect(2).stderr_has("nothing");
    check(&[Path::new("/dev/null")])
        .expect(2)
        .stderr_has("/dev/null");
    // An empty case file: no cases, so nothing fails.
    let f = write(dir.path(), "cases.yaml", "");
    sodguard([OsStr::new("test"), f.as_os_str()]).survived(Some("cases.yaml"));
}

#[test]
fn documents_that_are_not_objects() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, found) in [
        ("string.yaml", "just a string\n", "a string"),
        ("number.yaml", "5\n", "a number"),
        ("bool.json", "true", "a boolean"),
        ("list.yaml", "- a\n- b\n", "a list"),
        ("list.json", "[1, 2]", "a list"),
        ("second.yaml", "kind: A\n---\n[1]\n", "a list"),
        (
            "list-item.yaml",
            "apiVersion: v1\nkind: List\nitems: [5]\n",
            "a number",
        ),
    ] {
        let f = write(dir.path(), name, text);
        check(&[&f]).expect(2).stderr_has(name).stderr_has(found);
    }
    // `items` of the wrong type: not a list of objects, no crash.
    let f = write(
        dir.path(),
        "items.yaml",
        "apiVersion: v1\nkind: List\nitems: 5\n",
    );
    check(&[&f]).survived(Some("items.yaml"));
}

#[test]
fn huge_files() {
    // Sizes are kept so that the debug build reads each in a few seconds:
    // YAML documents go at about 1 MB/s there, so ~3 MB of many small
    // documents; one 50 MB scalar; ~36 MB of JSON.
    let dir = tempfile::tempdir().unwrap();
    let doc = |i: usize| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i}\n  namespace: shop\ndata:\n  k: {}\n---\n",
            "v".repeat(120)
        )
    };
    let mut many = String::new();
    let mut i = 0;
    while many.len() < 3 << 20 {
        many.push_str(&doc(i));
        i += 1;
    }
    let f1 = write(dir.path(), "many-docs.yaml", &many);
    let scalar = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  k: {}\n",
        "x".repeat(50 << 20)
    );
    let f2 = write(dir.path(), "one-scalar.yaml", &scalar);
    drop(scalar);
    let mut list = String::from(r#"{"apiVersion": "v1", "kind": "List", "items": ["#);
    let value = "v".repeat(200);
    for i in 0..120_000 {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&format!(
            r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "cm{i}", "namespace": "shop"}}, "data": {{"k": "{value}"}}}}"#
        ));
    }
    list.push_str("]}");
    let f3 = write(dir.path(), "list.json", &list);
    drop(list);
    for (f, docs) in [(&f1, i), (&f2, 1), (&f3, 120_000)] {
        let r = check(&[f]);
        r.expect(0).stdout_has(&format!("read {docs} document(s)"));
        eprintln!(
            "{}: {} bytes read in {:?}",
            f.display(),
            std::fs::metadata(f).unwrap().len(),
            r.elapsed
        );
    }
}

#[test]
fn deep_nesting() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let mut cases: Vec<(&str, String)> = vec![
        (
            "flow-seq.yaml",
            format!("{}{}", "[".repeat(n), "]".repeat(n)),
        ),
        (
            "flow-map.yaml",
            format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
        ),
        ("seq.json", format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (
            "map.json",
            format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)),
        ),
        ("unclosed.yaml", "[".repeat(n)),
        ("unclosed.json", "{\"a\":[".repeat(n)),
        // inside the fields sodguard reads
        (
            "subjects.yaml",
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: b, namespace: a}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}}\nsubjects: {}{}\n",
                "[".repeat(n),
                "]".repeat(n)
            ),
        ),
        (
            "list.json",
            format!(
                "{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": {}{}}}",
                "[".repeat(n),
                "]".repeat(n)
            ),
        ),
    ];
    // Block style: 3000 levels of indentation (quadratic in size, so fewer).
    let mut block = String::new();
    for depth in 0..3000 {
        block.push_str(&" ".repeat(depth));
        block.push_str("a:\n");
    }
    cases.push(("block-map.yaml", block));
    let mut block = String::new();
    for depth in 0..3000 {
        block.push_str(&" ".repeat(depth));
        block.push_str("- \n");
    }
    cases.push(("block-seq.yaml", block));
    // Nested just under the depth limits: must still load.
    cases.push((
        "ok-depth.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata: {}{}\n",
            "[".repeat(40),
            "]".repeat(40)
        ),
    ));
    let mut jobs = Vec::new();
    for (name, text) in &cases {
        let f = write(dir.path(), name, text);
        jobs.push(Job::check(&[&f], &f));
    }
    let runs = run_all(jobs);
    assert_eq!(
        runs.last().unwrap().code,
        Some(0),
        "{}",
        runs.last().unwrap().context()
    );
}

#[test]
fn billion_laughs() {
    let dir = tempfile::tempdir().unwrap();
    let mut lol = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 \"lol\"\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        lol.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    let lol_file = write(dir.path(), "lol.yaml", &lol);
    // The same in a RoleBinding's subjects.
    let mut rb = String::from(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: a}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nx:\n  s0: &s0 {kind: User, name: u}\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*s{}", i - 1); 10].join(", ");
        rb.push_str(&format!("  s{i}: &s{i} [{refs}]\n"));
    }
    rb.push_str("subjects: *s9\n");
    let rb_file = write(dir.path(), "rb-lol.yaml", &rb);
    // Refused as a budget breach: exit 2, naming the file.
    for r in run_all(vec![
        Job::check(&[&lol_file], &lol_file),
        Job::check(&[&rb_file], &rb_file),
    ]) {
        assert_eq!(r.code, Some(2), "{}", r.context());
    }
}

#[test]
fn alias_amplification_is_bounded_per_file() {
    // Each document stays under the per-document budget (a 1 MiB scalar
    // repeated 400 times: 400 MiB), but four of them in one 4 MiB file ask
    // for 1.6 GiB (×400). sodguard must refuse this (exit 2) within a 1 GiB
    // address space instead of aborting on allocation failure.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let big = "x".repeat(1 << 20);
    for d in 0..4 {
        text.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bomb{d}}}\ndata:\n  x: &x \"{big}\"\n"));
        for a in 0..100 {
            text.push_str(&format!("  d{a}: &d{a} q\n"));
        }
        text.push_str(&format!("  z: [{}]\n", vec!["*x"; 400].join(", ")));
    }
    let f = write(dir.path(), "bombs.yaml", &text);
    let r = sodguard_capped([OsStr::new("check"), "-f".as_ref(), f.as_os_str()], 1 << 20);
    r.survived(Some("bombs.yaml"));
    assert_eq!(r.code, Some(2), "{}", r.context());
}

#[test]
fn yaml_directives_and_tags_are_valid_yaml() {
    // `%YAML`/`%TAG` directives belong to the document after them.
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "directive.yaml",
            "%YAML 1.2\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        ),
        (
            "directive-second.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n...\n%YAML 1.2\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
        ),
        (
            "tag-directive.yaml",
            "%TAG !k! tag:k8s.io,2026:\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        ),
        (
            "tagged.yaml",
            "--- !!map\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text) in cases {
        // The YAML library itself reads the stream.
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML for serde-saphyr: {e}"));
        let n = docs.iter().filter(|d| !d.is_null()).count();
        let f = write(dir.path(), name, text);
        let r = check(&[&f]);
        r.survived(Some(name));
        if r.code != Some(0) || !r.stdout.contains(&format!("read {n} document(s)")) {
            failures.push(format!(
                "{name}: expected exit 0 and {n} document(s)\n{}",
                r.context()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn approvals_required_below_the_crd_minimum_is_invalid() {
    // The CRD says `approvalsRequired` ≥ 1 (schema minimum); a policy read
    // from a file with 0 would make every exception active without approval.
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "zero-approvals.json",
        policy_with(json!({"exceptions": {"approvalsRequired": 0}})).to_string(),
    );
    check(&[&f])
        .expect(2)
        .stderr_has("SoDPolicy p")
        .stderr_has("spec.exceptions.approvalsRequired: ");
}

#[test]
fn aliases_and_merge_keys_used_legitimately() {
    // Anchors shared between the items of a List are ordinary YAML.
    let dir = tempfile::tempdir().unwrap();
    let text = "apiVersion: v1\nkind: List\nitems:\n\
- apiVersion: v1\n  kind: ServiceAccount\n  metadata: &meta {name: api, namespace: payments}\n\
- apiVersion: rbac.authorization.k8s.io/v1\n  kind: Role\n  metadata: {name: both, namespace: payments}\n  rules: [{apiGroups: [''], resources: [secrets], verbs: &verbs [get, create]}]\n\
- apiVersion: rbac.authorization.k8s.io/v1\n  kind: RoleBinding\n  metadata: &bm\n    name: api-both\n    namespace: payments\n  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: both}\n  subjects: [{kind: ServiceAccount, <<: *meta}]\n\
- apiVersion: sodguard.io/v1alpha1\n  kind: SoDPolicy\n  metadata: {name: p}\n  spec:\n    duties:\n    - {name: admin, permissions: [{apiGroups: [''], resources: [secrets], verbs: [create]}]}\n    - {name: use, permissions: [{apiGroups: [''], resources: [secrets], verbs: [get]}]}\n";
    let f = write(dir.path(), "anchors.yaml", text);
    check(&[&f])
        .expect(1)
        .stdout_has("ServiceAccount:payments:api");
}

#[test]
fn closed_stdout_is_not_a_crash() {
    let examples = examples_dir();
    let mut child = Command::new(BIN)
        .args([OsStr::new("check"), "-f".as_ref(), examples.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        matches!(status.code(), Some(0..=2)) && !err.contains("panicked"),
        "{status:?}\n{err}"
    );
}

#[test]
fn symlink_loops_in_folders() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    );
    #[cfg(unix)]
    std::os::unix::fs::symlink(".", dir.path().join("self")).unwrap();
    check(&[dir.path()]).survived(None);
}

// ---------------------------------------------------------------------------
// Property tests: the library entry points on arbitrary input
// ---------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "roleRef",
    "apiGroup",
    "subjects",
    "rules",
    "apiGroups",
    "resources",
    "verbs",
    "resourceNames",
    "nonResourceURLs",
    "aggregationRule",
    "clusterRoleSelectors",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "spec",
    "duties",
    "permissions",
    "match",
    "maxDuties",
    "scope",
    "validationActions",
    "exceptions",
    "approvalsRequired",
    "maxDuration",
    "breakGlass",
    "allowed",
    "credentials",
    "longLivedTokens",
    "maxAge",
    "kinds",
    "namespaces",
    "exclude",
    "policy",
    "subject",
    "justification",
    "requestedBy",
    "expiresAt",
    "notBefore",
    "approvals",
    "user",
    "at",
    "items",
    "description",
    "ticket",
];

const WORDS: &[&str] = &[
    "RoleBinding",
    "ClusterRoleBinding",
    "Role",
    "ClusterRole",
    "ServiceAccount",
    "User",
    "Group",
    "Namespace",
    "SoDPolicy",
    "SoDException",
    "List",
    "rbac.authorization.k8s.io",
    "rbac.authorization.k8s.io/v1",
    "v1",
    "sodguard.io/v1alpha1",
    "*",
    "",
    "Deny",
    "Warn",
    "Audit",
    "All",
    "Any",
    "Namespace",
    "Cluster",
    "24h",
    "0s",
    "-1h",
    "2026-11-28T12:00:00Z",
    "secrets",
    "get",
    "create",
    "*/status",
    "secrets/*",
    "/metrics",
    "/api/*",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "system:serviceaccount:a:b",
    "system:serviceaccount:",
    "a",
    "b",
    "[",
    "{a,b}",
    "**",
    "kube-*",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9:*/._\\[\\]{}-]{0,12}".prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        let key = prop_oneof![
            prop::sample::select(KEYS).prop_map(str::to_string),
            "[a-z]{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object of a kind sodguard reads, with arbitrary fields.
fn arb_typed_object() -> impl Strategy<Value = Value> {
    let kinds = prop::sample::select(vec![
        (RBAC, "RoleBinding"),
        (RBAC, "ClusterRoleBinding"),
        (RBAC, "Role"),
        (RBAC, "ClusterRole"),
        ("v1", "ServiceAccount"),
        ("v1", "Namespace"),
        ("sodguard.io/v1alpha1", "SoDPolicy"),
        ("sodguard.io/v1alpha1", "SoDException"),
        ("v1", "List"),
    ]);
    let field = (prop::sample::select(KEYS), arb_json());
    (kinds, prop::collection::vec(field, 0..8)).prop_map(|((api, kind), fields)| {
        let mut m = serde_json::Map::new();
        m.insert("apiVersion".into(), api.into());
        m.insert("kind".into(), kind.into());
        m.insert("metadata".into(), json!({"name": "n", "namespace": "ns"}));
        for (k, v) in fields {
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    })
}

/// A valid object with one to three of its fields replaced.
fn arb_mutated_object() -> impl Strategy<Value = Value> {
    let edits = prop::collection::vec(
        (any::<prop::sample::Index>(), prop::option::of(arb_json())),
        1..4,
    );
    (prop::sample::select(valid_objects()), edits).prop_map(|(base, edits)| {
        let mut v = base;
        for (at, with) in edits {
            let ps = paths(&v);
            let (_, steps) = &ps[at.index(ps.len())];
            if steps.is_empty() && with.is_none() {
                continue;
            }
            v = mutate(&v, steps, with.as_ref());
        }
        v
    })
}

fn convert_and_evaluate(v: &Value) {
    if let Ok(Some(o)) = sodguard::decode::convert(v) {
        let mut objects: Vec<sodguard::model::Object> = valid_objects()
            .iter()
            .filter_map(|b| sodguard::decode::convert(b).ok().flatten())
            .collect();
        objects.push(o);
        let index = sodguard::engine::index::Index::from_objects(objects);
        let _ = sodguard::engine::evaluate(&index, now());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_str_never_panics_on_any_string(s in any::<String>()) {
        let _ = sodguard::load::parse_str(Path::new("p.yaml"), &s);
        let _ = sodguard::load::parse_str(Path::new("p.json"), &s);
    }

    #[test]
    fn parse_str_never_panics_on_any_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&b);
        let _ = sodguard::load::parse_str(Path::new("b.yaml"), &s);
        let _ = sodguard::load::parse_str(Path::new("b.json"), &s);
    }

    #[test]
    fn parse_str_never_panics_on_yaml_like_text(
        s in "([-:?,&*!|>'\"#%@`~{}\\[\\]\\\\ \t\r\n.]|a|k|---|\\.\\.\\.|&a |\\*a|<<: |!!str |%YAML 1.2\n|kind: List\n|items:\n){0,80}"
    ) {
        let _ = sodguard::load::parse_str(Path::new("y.yaml"), &s);
    }

    #[test]
    fn documents_of_parsed_yaml_convert_without_panic(s in "(a|b|: |- |\n|  |\\[|\\]|\\{|\\}|, |kind: RoleBinding\n|apiVersion: rbac.authorization.k8s.io/v1\n|metadata: \\{name: x, namespace: y\\}\n|roleRef: |subjects: |rules: |---\n){0,40}") {
        if let Ok(docs) = sodguard::load::parse_str(Path::new("d.yaml"), &s) {
            for d in docs {
                convert_and_evaluate(&d.value);
            }
        }
    }

    #[test]
    fn convert_never_panics_on_any_value(v in arb_json()) {
        convert_and_evaluate(&v);
    }

    #[test]
    fn convert_never_panics_on_objects_of_known_kinds(v in arb_typed_object()) {
        convert_and_evaluate(&v);
    }

    #[test]
    fn convert_never_panics_on_mutated_valid_objects(v in arb_mutated_object()) {
        convert_and_evaluate(&v);
    }

    #[test]
    fn subjects_parse_without_panic(s in ".{0,40}") {
        if let Ok(id) = s.parse::<sodguard::model::Identity>() {
            // what parses, prints back the same
            prop_assert_eq!(id.to_string(), s);
        }
    }
}
