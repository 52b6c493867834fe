//! Reports (R11.2): OpenReports `Report` / `ClusterReport`
//! (`openreports.io/v1alpha1`), or the older `wgpolicyk8s.io/v1alpha2`
//! `PolicyReport` / `ClusterPolicyReport`, which have the same fields.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use litemap::LiteMap;
use serde::{Deserialize, Serialize};

use crate::engine::{Excused, Violation};
use crate::model::{Actions, CLUSTER_WIDE, Exception, Identity, Name, Policy, TokenSecret};

/// Results per report at most: larger reports are split, so that no object
/// nears etcd's size limit and no reader loads a huge one.
pub const MAX_RESULTS: usize = 1000;
/// The label that marks sodguard's reports: only those are updated or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "sodguard";
const SOURCE: &str = "sodguard";
const CATEGORY: &str = "Segregation of duties";
/// The name of the first report of a namespace (and of the cluster report);
/// the next parts are `sodguard-2`, `sodguard-3`, …
const NAME: &str = "sodguard";

/// A report's words: most are the same few constants in every result (an
/// audit at 100k bindings writes ~90,000 results), so they are not copied.
pub type Text = Cow<'static, str>;

/// A result's properties, by name.
pub type Properties = LiteMap<Text, Name>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    /// `openreports.io/v1alpha1` Report / ClusterReport.
    #[default]
    Openreports,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport / ClusterPolicyReport.
    Policyreport,
}

impl ReportFormat {
    pub fn api_version(&self) -> &'static str {
        match self {
            ReportFormat::Openreports => "openreports.io/v1alpha1",
            ReportFormat::Policyreport => "wgpolicyk8s.io/v1alpha2",
        }
    }

    pub fn group(&self) -> &'static str {
        match self {
            ReportFormat::Openreports => "openreports.io",
            ReportFormat::Policyreport => "wgpolicyk8s.io",
        }
    }

    pub fn version(&self) -> &'static str {
        match self {
            ReportFormat::Openreports => "v1alpha1",
            ReportFormat::Policyreport => "v1alpha2",
        }
    }

    /// (kind, plural) of the namespaced report (`cluster: false`) or of the
    /// cluster report.
    pub fn kind(&self, cluster: bool) -> (&'static str, &'static str) {
        match (self, cluster) {
            (ReportFormat::Openreports, false) => ("Report", "reports"),
            (ReportFormat::Openreports, true) => ("ClusterReport", "clusterreports"),
            (ReportFormat::Policyreport, false) => ("PolicyReport", "policyreports"),
            (ReportFormat::Policyreport, true) => ("ClusterPolicyReport", "clusterpolicyreports"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<Text>,
    pub kind: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Name>,
    pub name: Name,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    pub policy: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Text>,
    /// `fail`, `warn` or `skip`.
    pub result: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Text>,
    /// Shared with the violation's event, whose note it is.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub message: Arc<str>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    /// A few entries: a sorted list, not a tree (a tree's node is larger
    /// than all of them, times ~90,000 results at 100k bindings).
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    pub properties: Properties,
}

fn is_empty(s: &Arc<str>) -> bool {
    s.is_empty()
}

impl ReportResult {
    /// The order of results in a report: by policy, subject, namespace,
    /// then what it says (stable across audits).
    pub(crate) fn order(&self) -> impl Ord + '_ {
        (
            &self.policy,
            &self.resources,
            self.properties.get("namespace"),
            &self.rule,
            &self.result,
            &self.message,
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub pass: i64,
    #[serde(default)]
    pub fail: i64,
    #[serde(default)]
    pub warn: i64,
    #[serde(default)]
    pub error: i64,
    #[serde(default)]
    pub skip: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One report as written: what is compared with the stored copy is all of
/// it but `metadata` beyond name, namespace and labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub api_version: String,
    pub kind: String,
    pub metadata: ReportMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub summary: Summary,
    #[serde(default)]
    pub results: Vec<ReportResult>,
}

impl Report {
    pub fn is_cluster(&self) -> bool {
        self.metadata.namespace.is_none()
    }
}

/// An audit's results by report: `None` is the cluster report, else a
/// namespace.
pub type Results = BTreeMap<Option<Name>, Vec<ReportResult>>;

/// The reports of an audit's results (`Audit::results`, moved: at 100k
/// bindings they are ~90,000): one per namespace with results, one cluster
/// report (always, so that "nothing found" is visible), each split in parts
/// of at most [`MAX_RESULTS`]. Ordered: cluster first, then by namespace.
pub fn reports(mut results: Results, format: ReportFormat) -> Vec<Report> {
    let mut out = Vec::new();
    split(
        None,
        results.remove(&None).unwrap_or_default(),
        format,
        &mut out,
    );
    for (ns, results) in results {
        if let Some(ns) = ns {
            split(Some(&ns), results, format, &mut out);
        }
    }
    out
}

fn split(
    ns: Option<&Name>,
    mut results: Vec<ReportResult>,
    format: ReportFormat,
    out: &mut Vec<Report>,
) {
    let (kind, _) = format.kind(ns.is_none());
    let mut parts = Vec::new();
    while results.len() > MAX_RESULTS {
        let rest = results.split_off(MAX_RESULTS);
        parts.push(std::mem::replace(&mut results, rest));
    }
    parts.push(results);
    for (i, chunk) in parts.into_iter().enumerate() {
        let mut summary = Summary::default();
        for r in &chunk {
            match &*r.result {
                "fail" => summary.fail += 1,
                "warn" => summary.warn += 1,
                "skip" => summary.skip += 1,
                "pass" => summary.pass += 1,
                _ => summary.error += 1,
            }
        }
        out.push(Report {
            api_version: format.api_version().into(),
            kind: kind.into(),
            metadata: ReportMeta {
                name: if i == 0 {
                    NAME.into()
                } else {
                    format!("{NAME}-{}", i + 1)
                },
                namespace: ns.map(|n| n.to_string()),
                labels: BTreeMap::from([(MANAGED_BY_LABEL.into(), MANAGED_BY.into())]),
            },
            source: Some(SOURCE.into()),
            summary,
            results: chunk,
        });
    }
}

pub(crate) fn subject_ref(id: &Identity) -> ObjectReference {
    match id {
        Identity::ServiceAccount { namespace, name } => ObjectReference {
            api_version: Some("v1".into()),
            kind: "ServiceAccount".into(),
            namespace: Some(namespace.clone()),
            name: name.clone(),
        },
        Identity::User(n) | Identity::Group(n) => ObjectReference {
            api_version: Some("rbac.authorization.k8s.io/v1".into()),
            kind: id.kind().into(),
            namespace: None,
            name: n.clone(),
        },
    }
}

fn base(
    policy: &Name,
    rule: &'static str,
    result: &'static str,
    severity: &'static str,
) -> ReportResult {
    ReportResult {
        policy: policy.clone(),
        rule: Some(rule.into()),
        result: result.into(),
        category: Some(CATEGORY.into()),
        severity: Some(severity.into()),
        source: Some(SOURCE.into()),
        message: Arc::from(""),
        resources: Vec::new(),
        properties: Properties::new(),
    }
}

fn where_held(ns: &str) -> String {
    if ns == CLUSTER_WIDE {
        "cluster-wide".into()
    } else {
        format!("in namespace {ns}")
    }
}

/// The violation and, for each duty, the paths that grant it (R5.4).
pub(crate) fn violation_message(v: &Violation) -> String {
    let mut m = String::new();
    write_violation_message(v, &mut m);
    m
}

fn write_violation_message(v: &Violation, m: &mut String) {
    let _ = write!(
        m,
        "{} holds {} duties of SoDPolicy {} {} (",
        v.subject,
        v.duties.len(),
        v.policy,
        where_held(&v.namespace),
    );
    for (i, d) in v.duties.iter().enumerate() {
        m.push_str(if i == 0 { "" } else { ", " });
        m.push_str(d);
    }
    m.push_str("):");
    for d in &v.explanation {
        let _ = write!(m, " {}: ", d.duty);
        for (i, p) in d.paths.iter().enumerate() {
            let _ = write!(m, "{}{p}", if i == 0 { "" } else { " | " });
        }
        m.push(';');
    }
    if m.ends_with(';') {
        m.pop();
    }
}

/// What one audit writes of its violations' results again and again,
/// kept from one violation to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Each message is written here once, then copied once into what it
    /// is shared as.
    buf: String,
    /// The joined words of the few action sets and duty lists that ~90,000
    /// results name, each made once.
    actions: Vec<(Actions, Name)>,
    duties: Vec<(Vec<Name>, Name)>,
}

/// Distinct duty lists kept at most: past them, each is joined anew.
const DUTY_LISTS: usize = 64;

impl Scratch {
    fn actions(&mut self, a: Actions) -> Name {
        if let Some((_, n)) = self.actions.iter().find(|(x, _)| *x == a) {
            return n.clone();
        }
        let n: Name = a.names().join(",").into();
        self.actions.push((a, n.clone()));
        n
    }

    fn duties(&mut self, d: &[Name]) -> Name {
        if let Some((_, n)) = self.duties.iter().find(|(x, _)| x == d) {
            return n.clone();
        }
        let words: Vec<&str> = d.iter().map(|d| &**d).collect();
        let n: Name = words.join(",").into();
        if self.duties.len() < DUTY_LISTS {
            self.duties.push((d.to_vec(), n.clone()));
        }
        n
    }

    /// A violation's properties: where, which duties, which actions.
    fn violation_props(&mut self, v: &Violation) -> Properties {
        Properties::from_iter([
            ("namespace".into(), v.namespace.clone()),
            ("duties".into(), self.duties(&v.duties)),
            ("actions".into(), self.actions(v.actions)),
        ])
    }
}

pub(crate) fn violation_result(v: &Violation, w: &mut Scratch) -> ReportResult {
    let result = if v.actions.deny { "fail" } else { "warn" };
    w.buf.clear();
    write_violation_message(v, &mut w.buf);
    ReportResult {
        message: Arc::from(w.buf.as_str()),
        resources: vec![subject_ref(&v.subject)],
        properties: w.violation_props(v),
        ..base(&v.policy, "duties", result, "high")
    }
}

pub(crate) fn excused_result(x: &Excused, w: &mut Scratch) -> ReportResult {
    let mut properties = w.violation_props(&x.violation);
    properties.insert("exception".into(), x.exception.clone());
    properties.insert("expiresAt".into(), x.expires_at.to_string().into());
    ReportResult {
        message: format!(
            "excused by SoDException {} until {}: {}",
            x.exception,
            x.expires_at,
            violation_message(&x.violation)
        )
        .into(),
        resources: vec![subject_ref(&x.violation.subject)],
        properties,
        ..base(&x.violation.policy, "duties", "skip", "info")
    }
}

pub(crate) fn break_glass_result(e: &Exception, end: Timestamp, due: Timestamp) -> ReportResult {
    ReportResult {
        message: format!(
            "break-glass SoDException {} for {} ended at {end} and has no review (spec.review was due by {due})",
            e.name, e.subject
        )
        .into(),
        resources: vec![
            ObjectReference {
                api_version: Some(crate::crd::API_VERSION.into()),
                kind: "SoDException".into(),
                namespace: None,
                name: e.name.clone(),
            },
            subject_ref(&e.subject),
        ],
        properties: Properties::from_iter([
            ("exception".into(), e.name.clone()),
            ("endedAt".into(), end.to_string().into()),
            ("reviewDue".into(), due.to_string().into()),
        ]),
        ..base(&e.policy, "break-glass-review", "fail", "high")
    }
}

/// A grant whose binding outlives its window (R10.4).
pub(crate) fn grant_result(
    g: &crate::model::JitGrant,
    st: &crate::engine::GrantStanding,
) -> ReportResult {
    let binding = g.binding_key();
    let mut properties = Properties::new();
    if let Some(e) = st.expires_at {
        properties.insert("expiresAt".into(), e.to_string().into());
    }
    properties.insert("phase".into(), st.phase.as_str().into());
    ReportResult {
        message: format!(
            "{binding} of {} still exists although the grant is {}{}: the grant controller deletes it; if it stays, sodguard is not running as leader",
            g.key(),
            st.phase.as_str(),
            st.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
        .into(),
        resources: vec![ObjectReference {
            api_version: Some("rbac.authorization.k8s.io/v1".into()),
            kind: binding.kind().into(),
            namespace: binding.namespace.clone(),
            name: binding.name.clone(),
        }],
        properties,
        ..base(&g.key().to_string().into(), "expired-grant-bound", "fail", "high")
    }
}

pub(crate) fn token_result(
    policy: &Policy,
    t: &TokenSecret,
    sa: &Identity,
    stale: Option<SignedDuration>,
) -> ReportResult {
    let secret = ObjectReference {
        api_version: Some("v1".into()),
        kind: "Secret".into(),
        namespace: Some(t.namespace.clone()),
        name: t.name.clone(),
    };
    let mut properties = Properties::from_iter([("namespace".into(), t.namespace.clone())]);
    if let Some(c) = t.created {
        properties.insert("createdAt".into(), c.to_string().into());
    }
    let (rule, result, message) = match stale {
        Some(max) => {
            // Not its age: a finding's text must not change from one audit
            // to the next while the Secret only ages (no report churn).
            properties.insert("maxAge".into(), format!("{max:#}").into());
            (
                "stale-token",
                "fail",
                format!(
                    "Secret {}/{} is a long-lived token for {sa}, which holds duties of SoDPolicy {}, and is older than spec.credentials.maxAge ({max:#}): rotate it, or use short-lived tokens (TokenRequest)",
                    t.namespace, t.name, policy.name
                ),
            )
        }
        None => (
            "long-lived-token",
            "warn",
            format!(
                "Secret {}/{} is a long-lived token for {sa}, which holds duties of SoDPolicy {}: it never expires — use short-lived tokens (TokenRequest)",
                t.namespace, t.name, policy.name
            ),
        ),
    };
    ReportResult {
        message: message.into(),
        resources: vec![secret, subject_ref(sa)],
        properties,
        ..base(&policy.name, rule, result, "medium")
    }
}
