//! Issue 13 / R12: no false greens. Every everyday mistake that used to
//! pass silently (exit 0, "0 violation(s)") is an error or a warning that
//! names where it is.

use std::ffi::OsStr;

mod common;

use common::objects::{
    exception, fixture, namespace, role, role_binding, sa, secret_policy, secrets_rule,
    service_account, write, yaml_stream,
};
use common::run::{check, check_with, sodguard};
use serde_json::{Value, json};

/// payments/api writes and reads Secrets: one violation under Deny.
fn violating_state() -> Vec<Value> {
    vec![
        secret_policy("secret-admin-vs-use", &["Deny"]),
        namespace("payments"),
        service_account("payments", "api"),
        role(
            "payments",
            "writer",
            json!([secrets_rule(&["create", "update"])]),
        ),
        role(
            "payments",
            "reader",
            json!([secrets_rule(&["get", "list"])]),
        ),
        role_binding("payments", "w", "Role", "writer", &[sa("payments", "api")]),
        role_binding("payments", "r", "Role", "reader", &[sa("payments", "api")]),
    ]
}

#[test]
fn empty_input_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    check(&[&empty])
        .expect(2)
        .stderr_has(empty.to_str().unwrap())
        .stderr_has("nothing to check");
    let blank = write(dir.path(), "blank.yaml", "# nothing\n---\n");
    check(&[&blank])
        .expect(2)
        .stderr_has(blank.to_str().unwrap());
    sodguard([OsStr::new("test"), empty.as_os_str()])
        .expect(2)
        .stderr_has(empty.to_str().unwrap())
        .stderr_has("no SoDTestCase");
}

#[test]
fn an_input_without_a_policy_is_a_warning() {
    let docs: Vec<Value> = violating_state().into_iter().skip(1).collect();
    let (_d, f) = fixture(&docs);
    check(&[&f])
        .expect(0)
        .stderr_has("warning: no SoDPolicy in the input");
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(0);
    assert!(
        r.json()["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no SoDPolicy"),
        "{}",
        r.context()
    );
    let (_d, f) = fixture(&violating_state());
    let r = check(&[&f]);
    r.expect(1);
    assert!(!r.stderr.contains("warning"), "{}", r.context());
}

#[test]
fn unknown_fields_of_sodguard_kinds_are_refused_offline() {
    let mut docs = violating_state();
    docs[0]["spec"]["subjects"] =
        json!({"excludes": [{"kind": "ServiceAccount", "namespace": "payments", "name": "api"}]});
    let (_d, f) = fixture(&docs);
    check(&[&f])
        .expect(2)
        .stderr_has("state.yaml, document 1")
        .stderr_has("SoDPolicy secret-admin-vs-use")
        .stderr_has("spec.subjects.excludes")
        .stderr_has("--validate=strict");
    let mut docs = violating_state();
    docs.push(exception(
        "e",
        "secret-admin-vs-use",
        sa("payments", "api"),
        "2026-12-01T00:00:00Z",
        json!([]),
    ));
    docs[7]["spec"]["expiresAT"] = json!("x");
    let (_d, f) = fixture(&docs);
    check(&[&f]).expect(2).stderr_has("spec.expiresAT");
    // Other kinds keep their fields: a Role's unknown field is not ours.
    let mut docs = violating_state();
    docs[3]["extra"] = json!(1);
    let (_d, f) = fixture(&docs);
    check(&[&f]).expect(1);
}

#[test]
fn impossible_permissions_are_warnings_naming_the_field() {
    let mut docs = violating_state();
    let p = &mut docs[0]["spec"]["duties"];
    p[0]["permissions"][0]["resources"] = json!(["secret"]);
    p[1]["permissions"][0]["apiGroups"] = json!(["core"]);
    p[1]["permissions"].as_array_mut().unwrap().push(json!(
        {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["lsit"]}
    ));
    let (_d, f) = fixture(&docs);
    let r = check(&[&f]);
    // The violation is gone: the policy no longer matches what it meant to.
    r.expect(0)
        .stderr_has("spec.duties[0].permissions[0].resources[0]: no group listed in apiGroups serves \"secret\"")
        .stderr_has("did you mean \"secrets\"?")
        .stderr_has("spec.duties[1].permissions[0].apiGroups[0]: \"core\"")
        .stderr_has("spec.duties[1].permissions[1].apiGroups[0]: \"example.com\"")
        .stderr_has("spec.duties[1].permissions[1].verbs[0]: \"lsit\" is not a Kubernetes verb");
    // A CustomResourceDefinition in the input serves its group.
    docs.push(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Namespaced", "versions": []}}));
    let (_d, f) = fixture(&docs);
    let r = check(&[&f]);
    r.expect(0);
    assert!(!r.stderr.contains("\"example.com\""), "{}", r.context());
    let r = check_with(&[&f], &["-o", "json"]);
    let w = r.json()["warnings"].as_array().unwrap().len();
    assert_eq!(w, 3, "{}", r.context());
}

#[test]
fn misspelled_kinds_and_unknown_versions_of_sodguard_are_errors() {
    for (api_version, kind, says) in [
        (
            "sodguard.io/v1alpha1",
            "SodPolicy",
            "did you mean SoDPolicy?",
        ),
        (
            "sodguard.io/v1alpha1",
            "SODException",
            "did you mean SoDException?",
        ),
        ("sodguard.io/v1", "SoDPolicy", "\"sodguard.io/v1\""),
        (
            "sodguard.io/v1beta7",
            "SoDPolicy",
            "\"sodguard.io/v1beta7\"",
        ),
    ] {
        let mut docs = violating_state();
        docs[0]["apiVersion"] = json!(api_version);
        docs[0]["kind"] = json!(kind);
        let (_d, f) = fixture(&docs);
        check(&[&f])
            .expect(2)
            .stderr_has("state.yaml, document 1")
            .stderr_has(says);
    }
}

#[test]
fn duplicates_are_errors_naming_both_places_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", yaml_stream(&violating_state()));
    let mut audit = secret_policy("secret-admin-vs-use", &["Audit"]);
    audit["spec"]["description"] = json!("the same name, another meaning");
    let b = write(dir.path(), "b.yaml", yaml_stream(&[audit]));
    for files in [[&a, &b], [&b, &a]] {
        check(&files)
            .expect(2)
            .stderr_has("SoDPolicy secret-admin-vs-use is also defined at")
            .stderr_has("a.yaml, document 1")
            .stderr_has("b.yaml, document 1");
    }
    // The same file named twice is one file, not a duplicate.
    check(&[&a, &a]).expect(1);
    check(&[a.as_path(), dir.path()]).expect(2);
    // Same name, other namespace or kind: not a duplicate.
    let mut docs = violating_state();
    docs.push(role("other", "writer", json!([])));
    docs.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "writer"}, "rules": []}),
    );
    let (_d, f) = fixture(&docs);
    check(&[&f]).expect(1);
}

#[test]
fn check_and_explain_say_why_an_exception_does_not_apply() {
    let mut docs = violating_state();
    let approved = json!([{"user": "bob", "at": "2026-11-28T08:00:00Z"}]);
    docs.push(exception(
        "wrong-policy",
        "secret-admin-vs-usage",
        sa("payments", "api"),
        "2026-11-29T00:00:00Z",
        approved.clone(),
    ));
    docs.push(exception(
        "self-approved",
        "secret-admin-vs-use",
        sa("payments", "api"),
        "2026-11-29T00:00:00Z",
        json!([{"user": "alice", "at": "2026-11-28T08:00:00Z"}]),
    ));
    docs.push(exception(
        "expired",
        "secret-admin-vs-use",
        sa("payments", "api"),
        "2026-11-28T10:00:00Z",
        approved,
    ));
    let (_d, f) = fixture(&docs);
    let now = ["--now", "2026-11-28T12:00:00Z"];
    check_with(&[&f], &now)
        .expect(1)
        .stdout_has("SoDException wrong-policy does not apply: spec.policy names \"secret-admin-vs-usage\", not \"secret-admin-vs-use\"")
        .stdout_has("SoDException self-approved does not apply: it is Pending")
        .stdout_has("other than the requester")
        .stdout_has("SoDException expired does not apply: it is Expired");
    let r = check_with(&[&f], &["--now", "2026-11-28T12:00:00Z", "-o", "json"]);
    r.expect(1);
    let list = &r.json()["violations"][0]["exceptionsNotApplying"];
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{}", r.context());
    sodguard([
        OsStr::new("explain"),
        "ServiceAccount:payments:api".as_ref(),
        "-f".as_ref(),
        f.as_os_str(),
        "--now".as_ref(),
        "2026-11-28T12:00:00Z".as_ref(),
    ])
    .expect(0)
    .stdout_has("SoDException wrong-policy does not apply");
}

// ---------------------------------------------------------------------------
// Conventions of kubectl users
// ---------------------------------------------------------------------------

/// `sodguard ARGS` with `input` on standard input.
fn with_stdin(args: &[&OsStr], input: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::run::BIN)
        .args(args)
        .env_remove("SODGUARD_NOW")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dash_f_dash_reads_standard_input() {
    let docs = violating_state();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.yaml", yaml_stream(&docs[..1]));
    let (code, out, err) = with_stdin(
        &[
            "check".as_ref(),
            "-f".as_ref(),
            "-".as_ref(),
            "-f".as_ref(),
            policy.as_os_str(),
        ],
        &yaml_stream(&docs[1..]),
    );
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("DENY secret-admin-vs-use"), "{out}");
    let (code, _, err) = with_stdin(&["check".as_ref(), "-f".as_ref(), "-".as_ref()], "");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("-: no YAML or JSON manifests"), "{err}");
}

#[test]
fn output_yaml_and_namespace_filter() {
    let mut docs = violating_state();
    // The same conflict in a second namespace.
    docs.push(namespace("shop"));
    docs.push(service_account("shop", "api"));
    docs.push(role(
        "shop",
        "all",
        json!([secrets_rule(&["get", "create"])]),
    ));
    docs.push(role_binding(
        "shop",
        "a",
        "Role",
        "all",
        &[sa("shop", "api")],
    ));
    let (_d, f) = fixture(&docs);
    let r = check_with(&[&f], &["-o", "yaml"]);
    r.expect(1)
        .stdout_has("violations:")
        .stdout_has("policy: secret-admin-vs-use");
    let v: Value = serde_saphyr::from_str(&r.stdout).expect("YAML");
    assert_eq!(
        v["violations"].as_array().unwrap().len(),
        2,
        "{}",
        r.context()
    );
    let r = check_with(&[&f], &["-n", "shop", "-o", "json"]);
    r.expect(1);
    let v = r.json();
    assert_eq!(v["violations"].as_array().unwrap().len(), 1);
    assert_eq!(v["violations"][0]["namespace"], json!("shop"));
    check_with(&[&f], &["--namespace", "elsewhere"])
        .expect(0)
        .stdout_has("0 violation(s)");
}

#[test]
fn explain_takes_the_serviceaccount_user_name() {
    let (_d, f) = fixture(&violating_state());
    sodguard([
        OsStr::new("explain"),
        "system:serviceaccount:payments:api".as_ref(),
        "-f".as_ref(),
        f.as_os_str(),
        "-o".as_ref(),
        "yaml".as_ref(),
    ])
    .expect(0)
    .stdout_has("subject: ServiceAccount:payments:api")
    .stdout_has("secret-admin-vs-use");
}

#[test]
fn help_has_examples_and_the_plugin_reads_kubectl_sod() {
    sodguard(["check", "--help"])
        .expect(0)
        .stdout_has("Examples:")
        .stdout_has("-f -")
        .stdout_has("--namespace");
    sodguard(["test", "--help"])
        .expect(0)
        .stdout_has("Examples:");
    sodguard(["explain", "--help"])
        .expect(0)
        .stdout_has("system:serviceaccount:");
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-sod");
    std::os::unix::fs::symlink(common::run::BIN, &plugin).unwrap();
    let out = std::process::Command::new(&plugin)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage: kubectl sod"), "{text}");
    let out = std::process::Command::new(&plugin)
        .args(["check", "--no-such-flag"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Usage: kubectl sod check"), "{text}");
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------
// SoDTestCase
// ---------------------------------------------------------------------------

const CASE_HEAD: &str = "apiVersion: sodguard.io/v1alpha1\nkind: SoDTestCase\n";

/// A folder with the real policy (`policies/policy.yaml`) and `tests/cases.yaml`.
fn case_folder(cases: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policies/policy.yaml",
        yaml_stream(&violating_state()[..1]),
    );
    let state = yaml_stream(&violating_state()[1..6]);
    write(dir.path(), "tests/state.yaml", state);
    write(dir.path(), "tests/cases.yaml", cases);
    let tests = dir.path().join("tests");
    (dir, tests)
}

const REQUEST: &str = "request:
  operation: CREATE
  userInfo: {username: alice}
  object:
    apiVersion: rbac.authorization.k8s.io/v1
    kind: RoleBinding
    metadata: {name: both, namespace: payments}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
    subjects: [{kind: ServiceAccount, name: api, namespace: payments}]
";

fn cases_text() -> String {
    let from = "objectsFrom: [../policies/policy.yaml, state.yaml]\n";
    format!(
        "{CASE_HEAD}name: denied-with-message\n{from}{REQUEST}expect:
  allowed: false
  violations: [{{policy: secret-admin-vs-use, subject: \"ServiceAccount:payments:api\", namespace: payments, duties: [secret-admin, secret-use]}}]
  message: \"secret-use: RoleBinding payments/both\"
---
{CASE_HEAD}name: typo-warns
objects:
- apiVersion: sodguard.io/v1alpha1
  kind: SoDPolicy
  metadata: {{name: typo}}
  spec:
    duties:
    - {{name: a, permissions: [{{apiGroups: [\"\"], resources: [secret], verbs: [get]}}]}}
    - {{name: b, permissions: [{{apiGroups: [\"\"], resources: [pods], verbs: [get]}}]}}
expect:
  violations: []
  warnings: [\"resources[0]: no group listed in apiGroups serves \\\"secret\\\"\"]
"
    )
}

#[test]
fn cases_read_objects_from_files_and_expect_messages_and_warnings() {
    let (_d, tests) = case_folder(&cases_text());
    sodguard([OsStr::new("test"), tests.as_os_str()])
        .expect(0)
        .stdout_has("PASS  denied-with-message")
        .stdout_has("PASS  typo-warns")
        .stdout_has("2 passed, 0 failed")
        // state.yaml is not a case: a note, not an error.
        .stderr_has("note:")
        .stderr_has(
            "state.yaml: skipped 5 document(s) that are not SoDTestCases (Namespace payments",
        );
    // A message or warning that is not there fails the case.
    let wrong = cases_text()
        .replace("RoleBinding payments/both", "RoleBinding payments/other")
        .replace("\\\"secret\\\"", "\\\"pods\\\"");
    let (_d, tests) = case_folder(&wrong);
    sodguard([OsStr::new("test"), tests.as_os_str()])
        .expect(1)
        .stdout_has("FAIL  denied-with-message")
        .stdout_has("the denial message lacks")
        .stdout_has("FAIL  typo-warns")
        .stdout_has("missing warning");
    // A misspelled expectation is refused, not ignored.
    let typo = cases_text().replace("  message:", "  mesage:");
    let (_d, tests) = case_folder(&typo);
    sodguard([OsStr::new("test"), tests.as_os_str()])
        .expect(2)
        .stderr_has("expect.mesage");
}

#[test]
fn run_selects_cases_and_junit_reports_them() {
    let (d, tests) = case_folder(&cases_text().replace("\\\"secret\\\"", "\\\"pods\\\""));
    let report = d.path().join("junit.xml");
    sodguard([
        OsStr::new("test"),
        tests.as_os_str(),
        "--junit".as_ref(),
        report.as_os_str(),
    ])
    .expect(1);
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("<testsuites name=\"sodguard\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase name=\"denied-with-message\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"missing warning containing \\&quot;")
            || xml.contains("<failure message=\"missing warning containing &quot;"),
        "{xml}"
    );
    sodguard([
        OsStr::new("test"),
        tests.as_os_str(),
        "--run".as_ref(),
        "denied".as_ref(),
    ])
    .expect(0)
    .stdout_has("1 passed, 0 failed");
    sodguard([
        OsStr::new("test"),
        tests.as_os_str(),
        "--run".as_ref(),
        "nothing-matches".as_ref(),
    ])
    .expect(2)
    .stderr_has("no SoDTestCase");
}

#[test]
fn durations_in_messages_read_like_people_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let policy = yaml_stream(&violating_state()[..1]);
    write(dir.path(), "policy.yaml", policy);
    let case = format!(
        "{CASE_HEAD}name: too-long
now: \"2026-11-28T12:00:00Z\"
objectsFrom: [policy.yaml]
request:
  operation: CREATE
  userInfo: {{username: alice}}
  object:
    apiVersion: sodguard.io/v1alpha1
    kind: SoDException
    metadata: {{name: long}}
    spec:
      policy: secret-admin-vs-use
      subject: {{kind: ServiceAccount, name: api, namespace: payments}}
      justification: j
      requestedBy: alice
      expiresAt: \"2026-12-29T16:03:58.879Z\"
expect:
  allowed: false
  message: \"would last 31d 4h from 2026-11-28T12:00:00Z, more than the policy's spec.exceptions.maxDuration of 1d\"
"
    );
    let f = write(dir.path(), "case.yaml", case);
    sodguard([OsStr::new("test"), f.as_os_str()])
        .expect(0)
        .stdout_has("1 passed");
}

#[test]
fn a_usage_error_of_serve_is_printed_once() {
    let r = sodguard(["serve", "--tls-cert", "/no/cert.pem"]);
    r.expect(2);
    assert_eq!(r.stderr.matches("--tls-key").count(), 1, "{}", r.context());
}

/// The shipped binary carries no debug info (140 MB with it); benchmarks
/// and profiling keep theirs in their own profiles.
#[test]
fn the_release_profile_is_lean_and_profiling_keeps_debug_info() {
    let toml = std::fs::read_to_string(common::manifest_dir().join("Cargo.toml")).unwrap();
    let section = |name: &str| -> String {
        let start = toml
            .find(&format!("[profile.{name}]"))
            .unwrap_or_else(|| panic!("no [profile.{name}] in Cargo.toml"));
        let rest = &toml[start + 1..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
    };
    let release = section("release");
    assert!(release.contains("debug = false"), "{release}");
    assert!(release.contains("strip = \"debuginfo\""), "{release}");
    for name in ["bench", "profiling"] {
        assert!(section(name).contains("debug = 1"), "{name}");
    }
}
