//! The `sodguard` command line, end to end: behaviour, output formats and
//! exit codes of `check`, `explain`, `test` and `crd`, on `examples/` and on
//! small fixtures written to temporary folders.
//!
//! Exit codes (the contract): 0 = no violation under a `Deny` policy (or all
//! test cases pass), 1 = at least one (or some case fails), 2 = bad input or
//! usage, with a message on stderr starting with `error:`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

mod common;

use common::objects::{
    RBAC, cluster_role, cluster_role_binding, example_files, examples_dir, exception, fixture,
    namespace, role, role_binding, sa, secret_policy, secrets_rule, service_account, to_yaml,
    write, yaml_stream,
};
use common::run::{Run, check, check_with, sodguard};
use common::scenarios::{pending, pending_file, shared_scenarios};
use serde_json::{Value, json};

fn examples() -> (PathBuf, PathBuf) {
    let d = examples_dir();
    (d.join("cluster"), d.join("policies"))
}

fn check_examples(extra: &[&str]) -> Run {
    let (cluster, policies) = examples();
    check_with(&[cluster, policies], extra)
}

/// `(policy, subject, namespace, duties)` of every violation in a JSON report.
fn tuples(report: &Value, key: &str) -> BTreeSet<(String, String, String, Vec<String>)> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key:?} in {report:#}"))
        .iter()
        .map(|v| {
            let s = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("{k} is not a string in {v:#}"))
                    .to_string()
            };
            let duties = v["duties"]
                .as_array()
                .unwrap_or_else(|| panic!("duties is not a list in {v:#}"))
                .iter()
                .map(|d| d.as_str().expect("duty names are strings").to_string())
                .collect();
            (s("policy"), s("subject"), s("namespace"), duties)
        })
        .collect()
}

fn tuple(p: &str, s: &str, ns: &str, duties: &[&str]) -> (String, String, String, Vec<String>) {
    (
        p.into(),
        s.into(),
        ns.into(),
        duties.iter().map(|d| d.to_string()).collect(),
    )
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// The exception of payments/api from `secret-admin-vs-use`, approved.
fn api_exception(expires_at: &str, not_before: Option<&str>) -> Value {
    let mut e = exception(
        "api-rotation",
        "secret-admin-vs-use",
        sa("payments", "api"),
        expires_at,
        json!([{"user": "bob", "at": "2026-11-28T08:00:00Z"}]),
    );
    e["spec"]["justification"] = json!("rotation of the payments signing key");
    if let Some(nb) = not_before {
        e["spec"]["notBefore"] = json!(nb);
    }
    e
}

/// A Role on Secrets in `ns`.
fn secrets_role(ns: &str, name: &str, verbs: &[&str]) -> Value {
    role(ns, name, json!([secrets_rule(verbs)]))
}

/// payments/api writes Secrets; nothing else. Clean.
fn clean_state(actions: &[&str]) -> Vec<Value> {
    vec![
        secret_policy("secret-admin-vs-use", actions),
        namespace("payments"),
        service_account("payments", "api"),
        service_account("payments", "web"),
        secrets_role("payments", "secret-writer", &["create", "update"]),
        secrets_role("payments", "secret-reader", &["get", "list"]),
        role_binding(
            "payments",
            "api-writes-secrets",
            "Role",
            "secret-writer",
            &[sa("payments", "api")],
        ),
        role_binding(
            "payments",
            "web-reads-secrets",
            "Role",
            "secret-reader",
            &[sa("payments", "web")],
        ),
    ]
}

/// The clean state plus a binding that lets payments/api also read Secrets.
fn violating_state(actions: &[&str]) -> Vec<Value> {
    let mut v = clean_state(actions);
    v.push(role_binding(
        "payments",
        "api-reads-secrets",
        "Role",
        "secret-reader",
        &[sa("payments", "api")],
    ));
    v
}

// ---------------------------------------------------------------------------
// check on examples/
// ---------------------------------------------------------------------------

#[test]
fn examples_have_exactly_the_one_documented_violation() {
    let r = check_examples(&[]);
    r.expect(1)
        .stdout_has("secret-admin-vs-secret-use")
        .stdout_has("ServiceAccount:ci:builder")
        .stdout_has("in namespace shop")
        .stdout_has("DENY")
        // its explanation: binding -> role -> aggregated source role -> rule
        .stdout_has("RoleBinding shop/ci-builder-edit")
        .stdout_has("ClusterRole edit")
        .stdout_has("ClusterRole system:aggregate-to-edit")
        .stdout_has("secret-admin")
        .stdout_has("secret-use")
        // the Deployment is skipped and counted in a note
        .stdout_has("Deployment")
        // excluded / latent / single-duty subjects are not reported
        .stdout_lacks("namespace-controller")
        .stdout_lacks("rotator-job")
        .stdout_lacks("ServiceAccount:payments:api")
        .stdout_lacks("ServiceAccount:shop:cart");
    // exactly one violation line
    let headers = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("DENY") || l.starts_with("WARN") || l.starts_with("AUDIT"))
        .count();
    assert_eq!(headers, 1, "{}", r.context());
}

#[test]
fn examples_json_output() {
    let r = check_examples(&["-o", "json"]);
    r.expect(1);
    let report = r.json();
    assert_eq!(
        tuples(&report, "violations"),
        BTreeSet::from([tuple(
            "secret-admin-vs-secret-use",
            "ServiceAccount:ci:builder",
            "shop",
            &["secret-admin", "secret-use"],
        )]),
        "{report:#}"
    );
    let v = &report["violations"][0];
    // The first four fields are those of test-case files.
    let ev: sodguard::testcase::ExpectedViolation =
        serde_json::from_value(v.clone()).expect("a violation reads as an ExpectedViolation");
    assert_eq!(ev.subject, "ServiceAccount:ci:builder");
    // The explanation travels with the violation.
    let text = v.to_string();
    assert!(text.contains("RoleBinding shop/ci-builder-edit"), "{v:#}");
    // Skipped kinds are counted.
    assert_eq!(report["skipped"]["Deployment"], json!(1), "{report:#}");
}

#[test]
fn examples_listed_file_by_file_give_the_same_result_as_folders() {
    let args = example_files();
    let mut cmd: Vec<&OsStr> = vec![
        "check".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        "-f".as_ref(),
    ];
    cmd.extend(args.iter().map(|p| p.as_os_str()));
    let by_file = sodguard(cmd);
    by_file.expect(1);
    let by_folder = check_examples(&["-o", "json"]);
    assert_eq!(
        tuples(&by_file.json(), "violations"),
        tuples(&by_folder.json(), "violations")
    );
}

// ---------------------------------------------------------------------------
// check on fixtures
// ---------------------------------------------------------------------------

#[test]
fn clean_state_exits_0() {
    let (_d, f) = fixture(&clean_state(&["Deny"]));
    let r = check(&[&f]);
    r.expect(0).stdout_has("0 violation(s)");
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(0);
    assert!(
        tuples(&r.json(), "violations").is_empty(),
        "{}",
        r.context()
    );
}

#[test]
fn violation_exits_1_and_is_explained() {
    let (_d, f) = fixture(&violating_state(&["Deny"]));
    let r = check(&[&f]);
    r.expect(1)
        .stdout_has("secret-admin-vs-use")
        .stdout_has("ServiceAccount:payments:api")
        .stdout_has("in namespace payments")
        .stdout_has("RoleBinding payments/api-writes-secrets")
        .stdout_has("RoleBinding payments/api-reads-secrets")
        .stdout_has("Role payments/secret-reader")
        .stdout_lacks("ServiceAccount:payments:web");
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(1);
    assert_eq!(
        tuples(&r.json(), "violations"),
        BTreeSet::from([tuple(
            "secret-admin-vs-use",
            "ServiceAccount:payments:api",
            "payments",
            &["secret-admin", "secret-use"]
        )])
    );
}

#[test]
fn warn_only_policy_exits_0_and_prints_the_violation() {
    let (_d, f) = fixture(&violating_state(&["Warn"]));
    let r = check(&[&f]);
    r.expect(0)
        .stdout_has("WARN")
        .stdout_has("ServiceAccount:payments:api")
        .stdout_has("secret-admin-vs-use")
        .stdout_lacks("DENY");
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(0);
    let report = r.json();
    assert_eq!(tuples(&report, "violations").len(), 1, "{report:#}");
    assert_eq!(
        report["violations"][0]["actions"],
        json!(["Warn"]),
        "{report:#}"
    );
}

#[test]
fn audit_only_policy_exits_0_and_prints_the_violation() {
    let (_d, f) = fixture(&violating_state(&["Audit"]));
    check(&[&f])
        .expect(0)
        .stdout_has("AUDIT")
        .stdout_has("ServiceAccount:payments:api");
}

#[test]
fn one_deny_policy_among_warn_policies_decides_the_exit_code() {
    let mut docs = violating_state(&["Warn"]);
    docs.push(secret_policy("deny-copy", &["Deny", "Audit"]));
    let (_d, f) = fixture(&docs);
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(1);
    let policies: BTreeSet<String> = tuples(&r.json(), "violations")
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(
        policies,
        BTreeSet::from(["deny-copy".to_string(), "secret-admin-vs-use".to_string()])
    );
}

#[test]
fn now_moves_an_exception_from_active_to_expired() {
    let mut docs = violating_state(&["Deny"]);
    docs.push(api_exception("2026-11-28T20:00:00Z", None));
    let (_d, f) = fixture(&docs);

    // Active: excused, no violation, exit 0.
    let r = check_with(&[&f], &["--now", "2026-11-28T12:00:00Z"]);
    r.expect(0)
        .stdout_has("EXCUSED")
        .stdout_has("api-rotation")
        .stdout_lacks("DENY");
    let r = check_with(&[&f], &["--now", "2026-11-28T12:00:00Z", "-o", "json"]);
    r.expect(0);
    let report = r.json();
    assert!(tuples(&report, "violations").is_empty(), "{report:#}");
    assert_eq!(tuples(&report, "excused").len(), 1, "{report:#}");
    assert_eq!(report["excused"][0]["excusedBy"], json!("api-rotation"));

    // Expired: the violation is back.
    let r = check_with(&[&f], &["--now", "2026-11-28T20:00:01Z"]);
    r.expect(1).stdout_has("DENY").stdout_lacks("EXCUSED");
    let r = check_with(&[&f], &["--now", "2026-11-28T21:00:00Z", "-o", "json"]);
    r.expect(1);
    assert_eq!(tuples(&r.json(), "violations").len(), 1);

    // Exactly at expiresAt it is no longer active (now < expiresAt).
    check_with(&[&f], &["--now", "2026-11-28T20:00:00Z"]).expect(1);
}

#[test]
fn now_before_not_before_means_not_yet_active() {
    let mut docs = violating_state(&["Deny"]);
    docs.push(api_exception(
        "2026-11-28T20:00:00Z",
        Some("2026-11-28T10:00:00Z"),
    ));
    let (_d, f) = fixture(&docs);
    check_with(&[&f], &["--now", "2026-11-28T09:59:59Z"]).expect(1);
    check_with(&[&f], &["--now", "2026-11-28T10:00:00Z"]).expect(0);
    // Offsets other than Z are RFC 3339 too.
    check_with(&[&f], &["--now", "2026-11-28T11:30:00+01:00"]).expect(0);
}

#[test]
fn cluster_wide_violation_has_namespace_star() {
    let docs = vec![
        secret_policy("secret-admin-vs-use", &["Deny"]),
        namespace("ops"),
        service_account("ops", "root"),
        cluster_role("secret-all", json!([secrets_rule(&["get", "create"])])),
        cluster_role_binding("root-secrets", "secret-all", &[sa("ops", "root")]),
    ];
    let (_d, f) = fixture(&docs);
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(1);
    assert_eq!(
        tuples(&r.json(), "violations"),
        BTreeSet::from([tuple(
            "secret-admin-vs-use",
            "ServiceAccount:ops:root",
            "*",
            &["secret-admin", "secret-use"]
        )])
    );
    check(&[&f])
        .expect(1)
        .stdout_has("cluster-wide")
        .stdout_has("ClusterRoleBinding root-secrets");
}

#[test]
fn json_duties_are_sorted() {
    // Duties declared in reverse alphabetical order.
    let mut p = secret_policy("zeta-alpha", &["Deny"]);
    p["spec"]["duties"][0]["name"] = json!("zeta");
    p["spec"]["duties"][1]["name"] = json!("alpha");
    let mut docs = violating_state(&["Deny"]);
    docs[0] = p;
    let (_d, f) = fixture(&docs);
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(1);
    let report = r.json();
    assert_eq!(
        report["violations"][0]["duties"],
        json!(["alpha", "zeta"]),
        "{report:#}"
    );
}

#[test]
fn kind_list_items_are_read() {
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {},
                      "items": violating_state(&["Deny"])});
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "list.yaml", to_yaml(&list));
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(1);
    let report = r.json();
    assert_eq!(tuples(&report, "violations").len(), 1, "{report:#}");
    assert_eq!(report["documents"], json!(9), "{report:#}");

    // Typed lists (`kubectl get rolebindings -o yaml`) too.
    let mut docs = clean_state(&["Deny"]);
    docs.pop();
    let typed = json!({"apiVersion": RBAC, "kind": "RoleBindingList", "metadata": {},
    "items": [
        role_binding("payments", "api-reads-secrets", "Role", "secret-reader", &[sa("payments", "api")]),
        role_binding("payments", "web-reads-secrets", "Role", "secret-reader", &[sa("payments", "web")]),
    ]});
    let f1 = write(dir.path(), "typed/a.yaml", yaml_stream(&docs));
    let f2 = write(dir.path(), "typed/b.yaml", to_yaml(&typed));
    let _ = (f1, f2);
    check(&[&dir.path().join("typed")])
        .expect(1)
        .stdout_has("ServiceAccount:payments:api");
}

#[test]
fn json_input_files() {
    let dir = tempfile::tempdir().unwrap();
    // One file per object, a JSON stream, and a JSON List.
    let docs = violating_state(&["Deny"]);
    let (first, rest) = docs.split_at(3);
    for (i, d) in first.iter().enumerate() {
        write(
            dir.path(),
            &format!("json/obj{i}.json"),
            serde_json::to_string_pretty(d).unwrap(),
        );
    }
    let (mid, last) = rest.split_at(2);
    let stream: String = mid.iter().map(|d| format!("{d}\n")).collect();
    write(dir.path(), "json/stream.json", &stream);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": last});
    write(dir.path(), "json/list.json", list.to_string());
    let r = check_with(&[&dir.path().join("json")], &["-o", "json"]);
    r.expect(1);
    let report = r.json();
    assert_eq!(tuples(&report, "violations").len(), 1, "{report:#}");
    assert_eq!(report["documents"], json!(docs.len()), "{report:#}");
}

#[test]
fn multi_document_yaml_with_empty_documents_and_comments() {
    let docs = violating_state(&["Deny"]);
    let mut text = String::from("# leading comment\n---\n---\n");
    for d in &docs {
        text.push_str(&to_yaml(d));
        text.push_str("---\n# only a comment\n---\n");
    }
    let (dir, _) = fixture(&[]);
    let f = write(dir.path(), "multi.yml", &text);
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(1);
    assert_eq!(r.json()["documents"], json!(docs.len()));
}

#[test]
fn folders_are_walked_for_yaml_yml_and_json_only() {
    let dir = tempfile::tempdir().unwrap();
    let docs = violating_state(&["Deny"]);
    write(dir.path(), "a.yaml", yaml_stream(&docs[..3]));
    write(dir.path(), "sub/b.yml", yaml_stream(&docs[3..6]));
    write(
        dir.path(),
        "sub/deeper/c.json",
        json!({"kind": "List", "apiVersion": "v1", "items": &docs[6..]}).to_string(),
    );
    // Not manifests: must be ignored when walking a folder.
    write(dir.path(), "README.md", "# not: [valid yaml\n");
    write(dir.path(), "notes.txt", "\u{0}\u{1}garbage: [");
    write(dir.path(), ".hidden.yaml", "garbage: [");
    write(dir.path(), ".git/config.yaml", "garbage: [");
    let r = check_with(&[dir.path()], &["-o", "json"]);
    r.expect(1);
    let report = r.json();
    assert_eq!(report["documents"], json!(docs.len()), "{report:#}");
    assert_eq!(tuples(&report, "violations").len(), 1);
}

#[test]
fn repeated_and_multi_value_filename_flags() {
    let dir = tempfile::tempdir().unwrap();
    let docs = violating_state(&["Deny"]);
    let a = write(dir.path(), "a.yaml", yaml_stream(&docs[..4]));
    let b = write(dir.path(), "b.yaml", yaml_stream(&docs[4..]));
    // -f A -f B
    sodguard([
        OsStr::new("check"),
        "-f".as_ref(),
        a.as_os_str(),
        "-f".as_ref(),
        b.as_os_str(),
    ])
    .expect(1);
    // --filename A B
    sodguard([
        OsStr::new("check"),
        "--filename".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ])
    .expect(1);
    // Only half of the state: no violation.
    sodguard([OsStr::new("check"), "-f".as_ref(), a.as_os_str()]).expect(0);
}

#[test]
fn unknown_kinds_are_skipped_and_counted() {
    let mut docs = clean_state(&["Deny"]);
    docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "payments"}}));
    docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "payments"}}));
    docs.push(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}));
    let (_d, f) = fixture(&docs);
    check(&[&f])
        .expect(0)
        .stdout_has("skipped 3")
        .stdout_has("ConfigMap ×2")
        .stdout_has("Widget ×1");
    let r = check_with(&[&f], &["-o", "json"]);
    r.expect(0);
    let report = r.json();
    assert_eq!(
        report["skipped"],
        json!({"ConfigMap": 2, "Widget": 1}),
        "{report:#}"
    );
}

#[test]
fn check_agrees_with_the_state_scenarios() {
    // Every shared scenario without a request describes a state and its
    // violations: `check -o json` on that state must report exactly them.
    let Some(dir) = shared_scenarios() else {
        return;
    };
    let pending = pending();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") || pending.reason(&path).is_some() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = sodguard::load::parse_str(&path, &text).unwrap();
        for (i, doc) in docs.iter().enumerate() {
            let case = &doc.value;
            if case.get("request").is_some() {
                continue;
            }
            let list = json!({"apiVersion": "v1", "kind": "List",
                              "items": case.get("objects").cloned().unwrap_or(json!([]))});
            let f = write(
                tmp.path(),
                &format!("{}-{i}.json", path.file_stem().unwrap().to_string_lossy()),
                list.to_string(),
            );
            let mut args: Vec<String> = vec!["check".into(), "-o".into(), "json".into()];
            if let Some(now) = case.get("now").and_then(Value::as_str) {
                args.extend(["--now".into(), now.to_string()]);
            }
            args.extend(["-f".into(), f.display().to_string()]);
            let r = sodguard(&args);
            assert!(
                matches!(r.code, Some(0 | 1)),
                "{}: {}",
                path.display(),
                r.context()
            );
            let report = r.json();
            let mut want: BTreeSet<_> = BTreeSet::new();
            for v in case["expect"]["violations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let mut duties: Vec<String> = v["duties"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect();
                duties.sort();
                want.insert((
                    v["policy"].as_str().unwrap().to_string(),
                    v["subject"].as_str().unwrap().to_string(),
                    v["namespace"].as_str().unwrap().to_string(),
                    duties,
                ));
            }
            assert_eq!(tuples(&report, "violations"), want, "{}", path.display());
            let denied = report["violations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["actions"].as_array().unwrap().contains(&json!("Deny")));
            assert_eq!(
                r.code,
                Some(i32::from(denied)),
                "{}: {}",
                path.display(),
                r.context()
            );
            checked += 1;
        }
    }
    assert!(checked > 5, "only {checked} state scenarios found");
}

// ---------------------------------------------------------------------------
// explain
// ---------------------------------------------------------------------------

fn explain(subject: &str, files: &[&Path], extra: &[&str]) -> Run {
    // SUBJECT before -f: see `explain_accepts_the_documented_argument_order`.
    let mut args: Vec<&OsStr> = vec!["explain".as_ref(), subject.as_ref()];
    for f in files {
        args.extend(["-f".as_ref(), f.as_os_str()]);
    }
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    sodguard(args)
}

#[test]
fn explain_accepts_the_documented_argument_order() {
    // The issue (and `--help`) write it `sodguard explain -f PATH... SUBJECT`.
    let (cluster, policies) = examples();
    let r = sodguard([
        OsStr::new("explain"),
        "-f".as_ref(),
        cluster.as_os_str(),
        "-f".as_ref(),
        policies.as_os_str(),
        "ServiceAccount:ci:builder".as_ref(),
    ]);
    r.expect(0)
        .stdout_has("ServiceAccount:ci:builder")
        .stdout_has("RoleBinding shop/ci-builder-edit");
    // and with a single path
    let examples_dir = examples_dir();
    sodguard([
        OsStr::new("explain"),
        "-f".as_ref(),
        examples_dir.as_os_str(),
        "ServiceAccount:ci:builder".as_ref(),
    ])
    .expect(0)
    .stdout_has("VIOLATES");
}

#[test]
fn explain_a_violator_names_duties_paths_and_policies() {
    let (cluster, policies) = examples();
    let r = explain("ServiceAccount:ci:builder", &[&cluster, &policies], &[]);
    r.expect(0)
        .stdout_has("ServiceAccount:ci:builder")
        .stdout_has("policy secret-admin-vs-secret-use")
        .stdout_has("in namespace shop: secret-admin, secret-use")
        .stdout_has("RoleBinding shop/ci-builder-edit → ClusterRole edit → ClusterRole system:aggregate-to-edit → rules[")
        .stdout_has("VIOLATES secret-admin-vs-secret-use");
}

#[test]
fn explain_a_clean_subject() {
    let (cluster, policies) = examples();
    explain("ServiceAccount:payments:api", &[&cluster, &policies], &[])
        .expect(0)
        .stdout_has("in namespace payments: secret-use")
        .stdout_has("RoleBinding payments/api-reads-secrets → Role payments/secret-reader")
        .stdout_has("violates no policy")
        .stdout_lacks("VIOLATES");
    // Excluded subject: holds both duties cluster-wide but is not governed.
    explain(
        "ServiceAccount:kube-system:namespace-controller",
        &[&cluster, &policies],
        &[],
    )
    .expect(0)
    .stdout_has("cluster-wide")
    .stdout_has("ClusterRoleBinding system:controller:namespace-controller")
    .stdout_has("not governed")
    .stdout_has("violates no policy");
    // Latent bindings: there is no ServiceAccount payments/rotator-job.
    explain(
        "ServiceAccount:payments:rotator-job",
        &[&cluster, &policies],
        &[],
    )
    .expect(0)
    .stdout_has("no such ServiceAccount");
}

#[test]
fn explain_json() {
    let (cluster, policies) = examples();
    let r = explain(
        "ServiceAccount:ci:builder",
        &[&cluster, &policies],
        &["-o", "json"],
    );
    r.expect(0);
    let e = r.json();
    assert_eq!(e["subject"], json!("ServiceAccount:ci:builder"), "{e:#}");
    assert_eq!(e["exists"], json!(true), "{e:#}");
    let p = &e["policies"][0];
    assert_eq!(p["policy"], json!("secret-admin-vs-secret-use"), "{e:#}");
    let shop = p["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["namespace"] == json!("shop"))
        .unwrap_or_else(|| panic!("no holdings in shop: {e:#}"));
    let duties: Vec<&str> = shop["duties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["duty"].as_str().unwrap())
        .collect();
    assert_eq!(duties, ["secret-admin", "secret-use"], "{e:#}");
    for d in shop["duties"].as_array().unwrap() {
        let paths = d["paths"].as_array().unwrap();
        assert!(!paths.is_empty(), "{e:#}");
        assert!(
            paths[0]
                .as_str()
                .unwrap()
                .starts_with("RoleBinding shop/ci-builder-edit"),
            "{e:#}"
        );
    }
    assert_eq!(
        tuples(&e, "violations"),
        BTreeSet::from([tuple(
            "secret-admin-vs-secret-use",
            "ServiceAccount:ci:builder",
            "shop",
            &["secret-admin", "secret-use"]
        )])
    );
}

#[test]
fn explain_users_and_groups() {
    let (cluster, policies) = examples();
    explain("User:alice", &[&cluster, &policies], &[])
        .expect(0)
        .stdout_has("User:alice");
    explain(
        "Group:system:serviceaccounts:shop",
        &[&cluster, &policies],
        &[],
    )
    .expect(0)
    .stdout_has("Group:system:serviceaccounts:shop");
}

#[test]
fn explain_with_now_and_an_exception() {
    let mut docs = violating_state(&["Deny"]);
    docs.push(api_exception("2026-11-28T20:00:00Z", None));
    let (_d, f) = fixture(&docs);
    explain(
        "ServiceAccount:payments:api",
        &[&f],
        &["--now", "2026-11-28T12:00:00Z"],
    )
    .expect(0)
    .stdout_has("EXCUSED")
    .stdout_has("api-rotation");
    explain(
        "ServiceAccount:payments:api",
        &[&f],
        &["--now", "2026-11-29T12:00:00Z"],
    )
    .expect(0)
    .stdout_has("VIOLATES secret-admin-vs-use")
    .stdout_has("RoleBinding payments/api-reads-secrets");
}

/// R6.4/R6.5 offline: an exception that breaks an integrity rule excuses
/// nothing, and `explain` says which rule.
#[test]
fn explain_says_why_an_exception_is_inactive() {
    let mut docs = violating_state(&["Deny"]);
    let mut e = api_exception("2026-11-28T20:00:00Z", None);
    e["spec"]["namespaces"] = json!(["pay*"]);
    docs.push(e);
    let (_d, f) = fixture(&docs);
    check_with(&[&f], &["--now", "2026-11-28T12:00:00Z"]).expect(1);
    explain(
        "ServiceAccount:payments:api",
        &[&f],
        &["--now", "2026-11-28T12:00:00Z"],
    )
    .expect(0)
    .stdout_has("VIOLATES secret-admin-vs-use")
    .stdout_has("SoDException api-rotation")
    .stdout_has("Invalid")
    .stdout_has("spec.namespaces[0]: \"pay*\" is not a namespace name");
    let r = explain(
        "ServiceAccount:payments:api",
        &[&f],
        &["--now", "2026-11-28T12:00:00Z", "-o", "json"],
    );
    r.expect(0);
    let report = r.json();
    assert_eq!(
        report["exceptions"][0]["phase"],
        json!("Invalid"),
        "{report:#}"
    );
}

#[test]
fn explain_bad_subject_exits_2() {
    let (cluster, _) = examples();
    for bad in [
        "",
        "ci:builder",
        "ServiceAccount:ci",
        "ServiceAccount::builder",
        "ServiceAccount:ci:",
        "ServiceAccount:ci:builder:extra",
        "User:",
        "Group:",
        "Robot:r2d2",
        "serviceaccount:ci:builder",
    ] {
        explain(bad, &[&cluster], &[])
            .expect(2)
            .stderr_has("subject");
    }
}

// ---------------------------------------------------------------------------
// test
// ---------------------------------------------------------------------------

/// `sodguard test --pending LIST CASES`.
fn test_with_pending(list: impl AsRef<Path>, cases: impl AsRef<Path>) -> Run {
    let (list, cases) = (list.as_ref(), cases.as_ref());
    sodguard([
        OsStr::new("test"),
        OsStr::new("--pending"),
        list.as_os_str(),
        cases.as_os_str(),
    ])
}

#[test]
fn test_runs_the_shared_scenarios() {
    let Some(dir) = shared_scenarios() else {
        return;
    };
    let pending_file = pending_file();
    let listed = pending().names().count();
    let total = sodguard::testcase::load_cases(std::slice::from_ref(&dir))
        .unwrap()
        .len();
    let r = test_with_pending(pending_file, dir);
    r.expect(0);
    let summary = if listed == 0 {
        format!("{total} passed, 0 failed")
    } else {
        format!("{} passed, 0 failed, {listed} pending", total - listed)
    };
    assert_eq!(r.last_line(), summary, "{}", r.context());
    let lines: Vec<&str> = r.stdout.lines().collect();
    // one line per case, then the closing line
    assert_eq!(lines.len(), total + 1, "{}", r.context());
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("PEND")).count(),
        listed,
        "{}",
        r.context()
    );
    assert!(
        lines[..total]
            .iter()
            .all(|l| l.starts_with("PASS") || l.starts_with("PEND")),
        "{}",
        r.context()
    );
}

#[test]
fn test_pending_case_that_fails_is_reported_and_does_not_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "wrong.yaml", case("expects-nothing", "[]"));
    let list = write(dir.path(), "pending.txt", "# known\nwrong.yaml  issue 99\n");
    let r = test_with_pending(list, f);
    r.expect(0).stdout_has("PEND").stdout_has("issue 99");
    assert_eq!(
        r.last_line(),
        "0 passed, 0 failed, 1 pending",
        "{}",
        r.context()
    );
}

#[test]
fn test_pending_case_that_passes_is_reported_as_pending() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", case("right", RIGHT));
    let list = write(dir.path(), "pending.txt", "ok.yaml issue 99\n");
    let r = test_with_pending(list, f);
    r.expect(0)
        .stdout_has("PEND")
        .stdout_has("issue 99; passes here");
    assert_eq!(
        r.last_line(),
        "0 passed, 0 failed, 1 pending",
        "{}",
        r.context()
    );
}

#[test]
fn test_pending_list_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", case("right", RIGHT));
    for (text, says) in [
        ("ok.yaml\n", "pending.txt:1: ok.yaml: say why"),
        (
            "\nok.yaml a\nok.yaml b\n",
            "pending.txt:3: ok.yaml is listed twice",
        ),
        ("x/ok.yaml a\n", "a file name, not a path"),
    ] {
        let list = write(dir.path(), "pending.txt", text);
        let r = test_with_pending(list, &f);
        r.expect(2).stderr_has(says);
    }
    let r = test_with_pending(dir.path().join("missing.txt"), &f);
    r.expect(2).stderr_has("cannot read");
}

const CASE_STATE: &str = r#"
apiVersion: sodguard.io/v1alpha1
kind: SoDTestCase
name: NAME
now: '2026-11-28T12:00:00Z'
objects:
- apiVersion: sodguard.io/v1alpha1
  kind: SoDPolicy
  metadata: {name: p}
  spec:
    duties:
    - name: admin
      permissions: [{apiGroups: [''], resources: [secrets], verbs: [create]}]
    - name: use
      permissions: [{apiGroups: [''], resources: [secrets], verbs: [get]}]
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: api, namespace: ns}}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: both, namespace: ns}
  rules: [{apiGroups: [''], resources: [secrets], verbs: [get, create]}]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: api-both, namespace: ns}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: both}
  subjects: [{kind: ServiceAccount, name: api, namespace: ns}]
expect:
  violations: VIOLATIONS
"#;

fn case(name: &str, violations: &str) -> String {
    CASE_STATE
        .replace("NAME", name)
        .replace("VIOLATIONS", violations)
}

const RIGHT: &str =
    "[{policy: p, subject: 'ServiceAccount:ns:api', namespace: ns, duties: [use, admin]}]";

#[test]
fn test_passing_case_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", case("right", RIGHT));
    let r = sodguard([OsStr::new("test"), f.as_os_str()]);
    r.expect(0).stdout_has("PASS").stdout_has("right");
    assert_eq!(r.last_line(), "1 passed, 0 failed", "{}", r.context());
}

#[test]
fn test_failing_case_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "wrong.yaml", case("expects-nothing", "[]"));
    let r = sodguard([OsStr::new("test"), f.as_os_str()]);
    r.expect(1)
        .stdout_has("FAIL")
        .stdout_has("expects-nothing")
        .stdout_has("unexpected violation");
    assert_eq!(r.last_line(), "0 passed, 1 failed", "{}", r.context());

    let f = write(
        dir.path(),
        "wrong2.yaml",
        case(
            "expects-another",
            "[{policy: p, subject: 'ServiceAccount:ns:other', namespace: ns, duties: [admin, use]}]",
        ),
    );
    let r = sodguard([OsStr::new("test"), f.as_os_str()]);
    r.expect(1).stdout_has("missing violation");
    assert_eq!(r.last_line(), "0 passed, 1 failed", "{}", r.context());
}

#[test]
fn test_counts_passes_and_failures_over_files_and_documents() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cases/two.yaml",
        format!("{}---\n{}", case("one", RIGHT), case("two", "[]")),
    );
    write(dir.path(), "cases/sub/three.yaml", case("three", RIGHT));
    let r = sodguard([OsStr::new("test"), dir.path().join("cases").as_os_str()]);
    r.expect(1);
    assert_eq!(r.last_line(), "2 passed, 1 failed", "{}", r.context());
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("PASS")).count(),
        2,
        "{}",
        r.context()
    );
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("FAIL")).count(),
        1,
        "{}",
        r.context()
    );
}

#[test]
fn test_malformed_case_file_exits_2_naming_file_and_field() {
    let good = case("good", RIGHT);
    // (file, contents, what stderr must name: the field, as `field:` after
    // the file and document, or serde's `missing field` message)
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad-subject.yaml",
            case(
                "bad-subject",
                "[{policy: p, subject: 'Robot:x', namespace: ns, duties: [a, b]}]",
            ),
            ": expect.violations[0].subject:",
        ),
        (
            "bad-duties.yaml",
            case(
                "bad-duties",
                "[{policy: p, subject: 'ServiceAccount:ns:api', namespace: ns, duties: 5}]",
            ),
            ": expect.violations[0].duties:",
        ),
        (
            "bad-violations.yaml",
            case("bad-violations", "{}"),
            ": expect.violations:",
        ),
        ("no-name.yaml", good.replace("name: good\n", ""), "`name`"),
        (
            "no-expect.yaml",
            good[..good.find("expect:").unwrap()].to_string(),
            "`expect`",
        ),
        (
            "bad-now.yaml",
            good.replace("'2026-11-28T12:00:00Z'", "yesterday"),
            ": now:",
        ),
        (
            "bad-objects.yaml",
            good.replace("objects:\n", "objects: 5\nx:\n"),
            ": objects:",
        ),
        (
            "bad-object.yaml",
            good.replace("verbs: [get]}]", "verbs: [get]}]\n    maxDuties: 7"),
            ": objects[0]:",
        ),
        (
            "bad-kind.yaml",
            good.replace("kind: SoDTestCase", "kind: SoDTest"),
            ": kind:",
        ),
        (
            "no-allowed.yaml",
            format!(
                "{good}request:\n  operation: DELETE\n  userInfo: {{username: alice}}\n  oldObject: {{apiVersion: v1, kind: ServiceAccount, metadata: {{name: api, namespace: ns}}}}\n"
            ),
            ": expect.allowed:",
        ),
    ];
    for (file, text, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), file, &text);
        sodguard([OsStr::new("test"), f.as_os_str()])
            .expect(2)
            .stderr_has(file)
            .stderr_has(field);
        // A malformed file among good ones still stops the run.
        write(dir.path(), "a-good.yaml", &good);
        sodguard([OsStr::new("test"), dir.path().as_os_str()])
            .expect(2)
            .stderr_has(file);
    }
}

#[test]
fn test_document_index_is_named_for_malformed_later_documents() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\n{}",
        case("first", RIGHT),
        case(
            "second",
            "[{policy: p, subject: 'Robot:x', namespace: ns, duties: [a, b]}]"
        )
    );
    let f = write(dir.path(), "multi.yaml", &text);
    sodguard([OsStr::new("test"), f.as_os_str()])
        .expect(2)
        .stderr_has("multi.yaml")
        .stderr_has("document 2")
        .stderr_has("expect.violations[0].subject");
}

// ---------------------------------------------------------------------------
// crd, usage, colours
// ---------------------------------------------------------------------------

#[test]
fn crd_prints_every_custom_resource_definition() {
    let r = sodguard(["crd"]);
    r.expect(0);
    let docs = sodguard::load::parse_str(Path::new("crds.yaml"), &r.stdout)
        .unwrap_or_else(|e| panic!("crd output is not YAML: {e}"));
    let names: BTreeSet<String> = docs
        .iter()
        .map(|d| {
            assert_eq!(d.value["kind"], json!("CustomResourceDefinition"));
            assert_eq!(d.value["apiVersion"], json!("apiextensions.k8s.io/v1"));
            d.value["metadata"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(docs.len(), 5);
    assert_eq!(
        names,
        BTreeSet::from([
            "accessgrantpolicies.sodguard.io".to_string(),
            "accessgrants.sodguard.io".to_string(),
            "clusteraccessgrants.sodguard.io".to_string(),
            "sodexceptions.sodguard.io".to_string(),
            "sodpolicies.sodguard.io".to_string()
        ])
    );
    for d in &docs {
        assert_eq!(d.value["spec"]["group"], json!("sodguard.io"));
        let versions = d.value["spec"]["versions"].as_array().unwrap();
        assert!(versions.iter().any(|v| v["name"] == json!("v1alpha1")));
    }
}

#[test]
fn usage_errors_exit_2() {
    let (cluster, _) = examples();
    let c = cluster.to_str().unwrap();
    // No command at all: clap prints the help on stderr; still exit 2.
    let r = sodguard(Vec::<&str>::new());
    assert_eq!(r.code, Some(2), "{}", r.context());
    assert!(r.stderr.contains("Usage:"), "{}", r.context());
    for args in [
        vec!["frobnicate"],
        vec!["check"],
        vec!["check", "-f"],
        vec!["check", "-f", c, "-o", "xml"],
        vec!["check", "-f", c, "--now", "yesterday"],
        vec!["check", "-f", c, "--now", "2026-11-28"],
        vec!["check", "-f", c, "--no-such-flag"],
        vec!["explain", "-f", c],
        vec!["explain", "ServiceAccount:ci:builder"],
        vec!["test"],
    ] {
        sodguard(&args).expect(2);
    }
}

#[test]
fn missing_paths_exit_2_naming_them() {
    sodguard(["check", "-f", "/no/such/dir/at/all"])
        .expect(2)
        .stderr_has("/no/such/dir/at/all");
    sodguard(["explain", "User:a", "-f", "/no/such/file.yaml"])
        .expect(2)
        .stderr_has("/no/such/file.yaml");
    sodguard(["test", "/no/such/cases"])
        .expect(2)
        .stderr_has("/no/such/cases");
}

#[test]
fn help_and_version_exit_0() {
    sodguard(["--help"]).expect(0).stdout_has("check");
    sodguard(["check", "--help"]).expect(0).stdout_has("--now");
    sodguard(["--version"]).expect(0).stdout_has("sodguard");
}

#[test]
fn no_colours_when_stdout_is_not_a_terminal() {
    // `expect` checks every output for ESC; spelled out here for all commands
    // on outputs that would be coloured on a terminal.
    let r = check_examples(&[]);
    r.expect(1);
    assert!(!r.stdout.contains("\x1b["), "{}", r.context());
    let (cluster, policies) = examples();
    let r = explain("ServiceAccount:ci:builder", &[&cluster, &policies], &[]);
    r.expect(0);
    assert!(!r.stdout.contains("\x1b["));
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "c.yaml",
        format!("{}---\n{}", case("a", RIGHT), case("b", "[]")),
    );
    sodguard([OsStr::new("test"), f.as_os_str()]).expect(1);
    // errors on a non-terminal stderr
    sodguard(["check", "-f", "/no/such/file"]).expect(2);
}

/// R7.10 offline: `check --excluded-namespaces` judges ServiceAccounts of the
/// namespaces the webhook excludes as soon as bindings name them.
#[test]
fn check_governs_missing_serviceaccounts_of_excluded_namespaces() {
    let mut docs = clean_state(&["Deny"]);
    for (name, role) in [
        ("bot-writes", "secret-writer"),
        ("bot-reads", "secret-reader"),
    ] {
        docs.push(role_binding(
            "payments",
            name,
            "Role",
            role,
            &[sa("ops", "bot")],
        ));
    }
    let (_d, f) = fixture(&docs);
    check(&[&f]).expect(0);
    check_with(&[&f], &["--excluded-namespaces", "kube-system,ops"])
        .expect(1)
        .stdout_has("ServiceAccount:ops:bot");
}

// ---------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------

const NOW: &str = "2026-11-28T12:00:00Z";

fn report(docs: &[Value], extra: &[&str]) -> Run {
    let (_dir, f) = fixture(docs);
    let mut args = vec!["report".to_string(), "-f".into(), f.display().to_string()];
    args.extend(["--now".into(), NOW.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    sodguard(&args)
}

fn items(run: &Run) -> Vec<Value> {
    let list = run.json();
    assert_eq!(list["kind"], "List", "{list:#}");
    list["items"].as_array().expect("items").clone()
}

#[test]
fn report_puts_a_denied_violation_in_its_namespace_report_and_exits_1() {
    let run = report(&violating_state(&["Deny"]), &["-o", "json"]);
    run.expect(1);
    let items = items(&run);
    let kinds: Vec<(&str, Option<&str>)> = items
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["metadata"]["namespace"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("ClusterReport", None), ("Report", Some("payments"))]
    );
    let r = &items[1];
    assert_eq!(r["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(
        r["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sodguard"
    );
    assert_eq!(r["summary"]["fail"], 1);
    let result = &r["results"][0];
    assert_eq!(result["result"], "fail");
    assert_eq!(result["policy"], "secret-admin-vs-use");
    assert_eq!(
        result["resources"][0],
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "namespace": "payments", "name": "api"})
    );
    let msg = result["message"].as_str().unwrap();
    assert!(
        msg.contains("RoleBinding payments/api-reads-secrets → Role payments/secret-reader"),
        "{msg}"
    );
    assert!(
        msg.contains("RoleBinding payments/api-writes-secrets"),
        "{msg}"
    );
}

#[test]
fn report_yaml_is_the_same_reports_as_json() {
    let state = violating_state(&["Warn"]);
    let json_items = items(report(&state, &["-o", "json"]).expect(0));
    let yaml = report(&state, &[]);
    yaml.expect(0);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml.stdout).expect("a YAML stream");
    assert_eq!(docs, json_items);
    assert_eq!(docs[1]["results"][0]["result"], "warn");
}

#[test]
fn report_on_a_clean_state_has_only_an_empty_cluster_report() {
    let run = report(&clean_state(&["Deny"]), &["-o", "json"]);
    run.expect(0);
    let items = items(&run);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "ClusterReport");
    assert_eq!(items[0]["results"], json!([]));
}

#[test]
fn report_skips_an_excused_violation_naming_the_exception_and_its_expiry() {
    let mut state = violating_state(&["Deny"]);
    state.push(api_exception("2026-11-28T18:00:00Z", None));
    let run = report(&state, &["-o", "json"]);
    run.expect(0);
    let r = &items(&run)[1]["results"][0];
    assert_eq!(r["result"], "skip");
    assert_eq!(r["properties"]["exception"], "api-rotation");
    assert_eq!(r["properties"]["expiresAt"], "2026-11-28T18:00:00Z");
}

#[test]
fn report_in_the_policyreport_format() {
    let run = report(
        &violating_state(&["Deny"]),
        &["-o", "json", "--format", "policyreport"],
    );
    run.expect(1);
    let items = items(&run);
    assert_eq!(items[0]["kind"], "ClusterPolicyReport");
    assert_eq!(items[1]["kind"], "PolicyReport");
    assert_eq!(items[1]["apiVersion"], "wgpolicyk8s.io/v1alpha2");
}

#[test]
fn report_of_a_bad_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.yaml", "kind: [");
    sodguard(["report".as_ref(), "-f".as_ref(), f.as_os_str()])
        .expect(2)
        .stderr_has("error:");
}

// ---- authz-config (R13) ---------------------------------------------------------

#[test]
fn authz_config_prints_the_authorizer_entry_for_opted_in_duties() {
    let state = common::manifest_dir().join("tests/fixtures/authorize/state.yaml");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("authz.kubeconfig");
    let run = sodguard([
        OsStr::new("authz-config"),
        OsStr::new("-f"),
        state.as_os_str(),
        OsStr::new("--full"),
        OsStr::new("-o"),
        OsStr::new("json"),
        OsStr::new("--url"),
        OsStr::new("https://10.0.0.5:8443/authorize"),
        OsStr::new("--ca-file"),
        OsStr::new("/etc/kubernetes/pki/sodguard-ca.crt"),
        OsStr::new("--write-kubeconfig"),
        kc.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["apiVersion"], "apiserver.config.k8s.io/v1");
    assert_eq!(doc["kind"], "AuthorizationConfiguration");
    let types: Vec<&str> = doc["authorizers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    // Nodes are authorized before sodguard is asked; RBAC after it.
    assert_eq!(types, ["Node", "Webhook", "RBAC"]);
    let w = &doc["authorizers"][1]["webhook"];
    assert_eq!(w["failurePolicy"], "NoOpinion");
    assert_eq!(w["subjectAccessReviewVersion"], "v1");
    assert_eq!(w["matchConditionSubjectAccessReviewVersion"], "v1");
    assert_eq!(w["unauthorizedTTL"], "10s");
    assert_eq!(w["connectionInfo"]["type"], "KubeConfigFile");
    let conds: Vec<&str> = w["matchConditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["expression"].as_str().unwrap())
        .collect();
    let all = conds.join("\n");
    for never in ["system:masters", "system:nodes", "system:apiserver"] {
        assert!(all.contains(never), "{all}");
    }
    // The opted-in duties (secrets get/list/update, create pods), not the
    // policy without useTime (configmaps).
    for want in ["'secrets'", "'pods'", "'update'", "'create'"] {
        assert!(all.contains(want), "{want}: {all}");
    }
    assert!(!all.contains("configmaps"), "{all}");
    let kubeconfig = std::fs::read_to_string(&kc).unwrap();
    assert!(
        kubeconfig.contains("server: https://10.0.0.5:8443/authorize"),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("certificate-authority: /etc/kubernetes/pki/sodguard-ca.crt"));
}

#[test]
fn authz_config_without_an_opted_in_policy_is_an_error() {
    let (_dir, f) = fixture(&[secret_policy("p", &["Deny"])]);
    let run = sodguard([OsStr::new("authz-config"), OsStr::new("-f"), f.as_os_str()]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("useTime"), "{}", run.stderr);
}

#[test]
fn authz_config_quotes_names_for_cel() {
    use sodguard::cli::authz::match_conditions;
    let policy = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "q"},
        "spec": {"duties": [
            {"name": "a", "permissions": [{"apiGroups": ["x'y"], "resources": ["r\\s"], "verbs": ["get"]}]},
            {"name": "b", "permissions": [{"nonResourceURLs": ["/logs/*"], "verbs": ["*"]}]}],
            "useTime": {"action": "Deny"}}});
    let (_dir, f) = fixture(&[policy]);
    let index = sodguard::load::load_state(&[f]).unwrap().0;
    let conds = match_conditions(&index).unwrap();
    let duty = &conds[2];
    assert!(duty.contains(r"'x\'y'"), "{duty}");
    assert!(duty.contains(r"'r\\s'"), "{duty}");
    assert!(duty.contains(".startsWith('/logs/')"), "{duty}");
}

// ------------------------------------------------- kubectl sod grant --as --

/// A stand-in for the API server, over plain HTTP: it answers a
/// SelfSubjectReview with whoever the `Impersonate-User` header names (as
/// the real one does under impersonation), serves one AccessGrant and keeps
/// every request's headers and the body of each PUT.
struct FakeApi {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// One request the fake API server got: its request line, headers (names in
/// lower case) and body.
type Seen = (String, Vec<(String, String)>, String);

impl FakeApi {
    /// Serves `grant`; the first `conflicts` replaces of it fail with 409
    /// Conflict, as when someone else wrote it between a read and a replace.
    fn start(grant: Value, conflicts: usize) -> FakeApi {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut conflicts = conflicts;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let request = line.trim().to_string();
                let mut headers = Vec::new();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim().split_once(':') {
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                        if k == "content-length" {
                            len = v.parse().unwrap_or(0);
                        }
                        headers.push((k, v));
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let body = String::from_utf8_lossy(&body).to_string();
                let user = headers
                    .iter()
                    .find(|(k, _)| k == "impersonate-user")
                    .map_or("admin".to_string(), |(_, v)| v.clone());
                let answer = if request.contains("selfsubjectreviews") {
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                           "metadata": {}, "status": {"userInfo": {"username": user}}})
                } else if request.starts_with("PUT") {
                    serde_json::from_str(&body).unwrap_or(Value::Null)
                } else {
                    grant.clone()
                };
                let (code, answer) = if request.starts_with("PUT") && conflicts > 0 {
                    conflicts -= 1;
                    (
                        "409 Conflict",
                        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                    )
                } else {
                    ("200 OK", answer)
                };
                log.lock().unwrap().push((request, headers, body));
                let a = answer.to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{a}",
                    a.len()
                );
            }
        });
        FakeApi { port, seen }
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        write(
            dir,
            "kubeconfig",
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{}'}}}}]\n\
                 users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
                self.port
            ),
        )
    }
}

#[test]
fn grant_approve_as_another_user_impersonates_them_and_records_their_approval() {
    let grant = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "g", "namespace": "pay", "resourceVersion": "7"},
        "spec": {"subject": {"kind": "ServiceAccount", "namespace": "pay", "name": "web"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                 "duration": "2h", "reason": "r", "requestedBy": "alice"}});
    let api = FakeApi::start(grant, 0);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let run = sodguard([
        OsStr::new("grant"),
        "approve".as_ref(),
        "g".as_ref(),
        "-n".as_ref(),
        "pay".as_ref(),
        "--kubeconfig".as_ref(),
        kc.as_os_str(),
        "--as".as_ref(),
        "bob".as_ref(),
        "--as-group".as_ref(),
        "leads".as_ref(),
        "--as-group".as_ref(),
        "oncall".as_ref(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(
        run.stdout.contains("approved g as bob"),
        "{}",
        run.context()
    );
    let seen = api.seen.lock().unwrap();
    // whoami, get, replace: every one of them as bob with both groups.
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (req, headers, _) in seen.iter() {
        let values = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(values("impersonate-user"), ["bob"], "{req}");
        assert_eq!(values("impersonate-group"), ["leads", "oncall"], "{req}");
    }
    let put: Value = serde_json::from_str(&seen[2].2).unwrap();
    assert!(seen[2].0.starts_with("PUT "), "{:?}", seen[2].0);
    assert_eq!(put["spec"]["approvals"][0]["user"], "bob", "{put}");
    assert_eq!(put["metadata"]["resourceVersion"], "7", "{put}");
}

#[test]
fn grant_commands_without_as_impersonate_nobody_and_as_group_needs_as() {
    let grant = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "g", "namespace": "pay"}, "spec": {}});
    let api = FakeApi::start(grant, 0);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let kc = kc.to_str().unwrap();
    let run = sodguard(["grant", "revoke", "g", "-n", "pay", "--kubeconfig", kc]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    let seen = api.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.starts_with("DELETE "), "{:?}", seen[0].0);
    assert!(
        !seen[0].1.iter().any(|(k, _)| k.starts_with("impersonate-")),
        "{seen:?}"
    );
    drop(seen);
    // The API server refuses groups without a user; so does the command line.
    let run = sodguard([
        "exception",
        "approve",
        "x",
        "--kubeconfig",
        kc,
        "--as-group",
        "leads",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.context());
    assert!(run.stderr.contains("--as"), "{}", run.context());
}

#[test]
fn an_approval_that_meets_a_concurrent_write_is_read_and_made_again() {
    // The grant controller writes a new grant's status while approvers
    // approve it: their replace then conflicts, which must not lose the
    // approval.
    let grant = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "g", "namespace": "pay", "resourceVersion": "7"},
        "spec": {"requestedBy": "alice", "approvals": [{"user": "bob", "at": "2026-11-28T12:00:00Z"}]}});
    let api = FakeApi::start(grant, 2);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let kc = kc.to_str().unwrap();
    let run = sodguard([
        "grant",
        "approve",
        "g",
        "-n",
        "pay",
        "--kubeconfig",
        kc,
        "--as",
        "carol",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    let seen = api.seen.lock().unwrap();
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.0.starts_with("PUT ")).collect();
    let gets = seen.iter().filter(|s| s.0.starts_with("GET ")).count();
    assert_eq!((puts.len(), gets), (3, 3), "{seen:?}");
    let last: Value = serde_json::from_str(&puts[2].2).unwrap();
    assert_eq!(
        last["spec"]["approvals"],
        json!([{"user": "bob", "at": "2026-11-28T12:00:00Z"}, {"user": "carol", "at": last["spec"]["approvals"][1]["at"]}]),
        "{last}"
    );
}
