//! The review-time audit controller (R11.1): on the leader only, a few
//! seconds after the state changes, when a finding changes with time, and
//! at least every `--audit-interval`, it audits a snapshot of the confirmed
//! state (never under the decision lock, R11.3) and writes what changed:
//! status by server-side apply, reports, Warning events.
//!
//! Writes are driven by content, not by time: a status or report equal to
//! the stored one is not written, so an audit of an unchanged state makes
//! no API write (report churn has cost other tools their API servers).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference as K8sRef;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::audit::{self, Audit, MANAGED_BY, MANAGED_BY_LABEL, Report, ReportFormat};
use crate::crd::{self, SoDException, SoDPolicy};
use crate::engine;
use crate::runtime::background::{Background, BackgroundError};
use crate::runtime::state::AppState;

const FIELD_MANAGER: &str = "sodguard";
/// Events raised per audit at most: the first audit of a large, drifted
/// cluster must not flood the API server; the rest follow in later audits.
const EVENTS_PER_AUDIT: usize = 100;

#[derive(Debug, Clone)]
pub struct Settings {
    pub interval: Duration,
    pub debounce: Duration,
    pub format: ReportFormat,
    /// This replica, as the events' reporting instance.
    pub instance: String,
    /// What one evaluation may do (`--audit-budget`, `--audit-max-violations`).
    pub budget: engine::Budget,
    /// Its thread's priority (`--audit-nice`).
    pub background: Background,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit's evaluation stopped: {0}")]
    Background(#[from] BackgroundError),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("lost the lead during the audit")]
    NotLeader,
    /// The state has more to judge than the budget allows: nothing is
    /// written (a partial audit would delete the reports of the subjects it
    /// did not reach), and it is not retried before the next interval.
    #[error(
        "the audit stopped short, nothing written: {0} (raise --audit-budget or --audit-max-violations)"
    )]
    Incomplete(#[from] engine::Exhausted),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> AuditError {
    let what = what.into();
    move |source| AuditError::Kube { what, source }
}

/// What one audit wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Writes {
    pub status: usize,
    pub reports: usize,
    pub deleted: usize,
    pub events: usize,
}

impl Writes {
    pub fn total(&self) -> usize {
        self.status + self.reports + self.deleted + self.events
    }
}

/// Starts the audit. `leading`: the leader signal with leader election
/// (`None`: a single replica, always the one to audit).
pub fn spawn(
    client: Client,
    state: Arc<AppState>,
    leading: Option<watch::Receiver<bool>>,
    settings: Settings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = Controller::new(client, state, leading, settings);
        c.run().await;
    })
}

struct Controller {
    client: Client,
    state: Arc<AppState>,
    leading: Option<watch::Receiver<bool>>,
    settings: Settings,
    recorder: Recorder,
    /// Events raised while the finding lasts: (reason, key).
    raised: HashSet<(&'static str, String)>,
    /// The report CRD was missing at the last try (said once).
    no_report_crd: bool,
}

impl Controller {
    fn new(
        client: Client,
        state: Arc<AppState>,
        leading: Option<watch::Receiver<bool>>,
        settings: Settings,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "sodguard".into(),
                instance: Some(settings.instance.clone()),
            },
        );
        Controller {
            client,
            state,
            leading,
            settings,
            recorder,
            raised: HashSet::new(),
            no_report_crd: false,
        }
    }

    fn leads(&self) -> bool {
        self.leading.as_ref().is_none_or(|rx| *rx.borrow())
    }

    async fn run(&mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = self.state.changes();
        // (first unaudited change, last change)
        let mut pending: Option<(Instant, Instant)> = None;
        let mut last_run: Option<Instant> = None;
        let mut wake: Option<Timestamp> = None;
        // After an audit that ran out of budget: no other before this, or
        // every change would start another that runs out the same way.
        let mut held_off: Option<Instant> = None;
        loop {
            tick.tick().await;
            let changes = self.state.changes();
            if changes != seen {
                seen = changes;
                let now = Instant::now();
                pending = Some((pending.map_or(now, |(first, _)| first), now));
            }
            if !self.state.is_ready() {
                continue;
            }
            if !self.leads() {
                // A replica that gains the lead audits at once, and raises
                // the events its predecessor may have raised (the recorder
                // and the API server's event series absorb repeats).
                if last_run.take().is_some() {
                    self.state.metrics.audit_stopped();
                }
                self.raised.clear();
                continue;
            }
            let debounced = pending.is_some_and(|(first, last)| {
                last.elapsed() >= self.settings.debounce
                    || first.elapsed() >= self.settings.debounce * 5
            });
            if held_off.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            let due = last_run.is_none_or(|t| t.elapsed() >= self.settings.interval)
                || debounced
                || wake.is_some_and(|w| Timestamp::now() >= w);
            if !due {
                continue;
            }
            pending = None;
            let start = Instant::now();
            match self.audit_once().await {
                Ok((w, next)) => {
                    wake = next;
                    self.state.metrics.audit_succeeded();
                    tracing::info!(
                        seconds = start.elapsed().as_secs_f64(),
                        status = w.status,
                        reports = w.reports,
                        deleted = w.deleted,
                        events = w.events,
                        "audit done"
                    );
                }
                Err(e @ AuditError::Incomplete(_)) => {
                    tracing::warn!(error = %e, "audit failed");
                    held_off = Some(Instant::now() + self.settings.interval);
                    wake = None;
                }
                Err(e) => {
                    // Retried at the next change, wake-up or interval.
                    tracing::warn!(error = %e, "audit failed");
                    wake = Some(
                        Timestamp::now()
                            .checked_add(jiff::SignedDuration::from_secs(10))
                            .unwrap_or(Timestamp::MAX),
                    );
                }
            }
            self.state
                .metrics
                .audit_duration
                .observe(start.elapsed().as_secs_f64());
            last_run = Some(Instant::now());
        }
    }

    /// One audit: evaluate a snapshot off the async threads, then write.
    async fn audit_once(&mut self) -> Result<(Writes, Option<Timestamp>), AuditError> {
        let state = self.state.clone();
        let format = self.settings.format;
        let budget = self.settings.budget;
        let (found, reports) = self
            .settings
            .background
            .run("audit", move || {
                let mut found = evaluate(&state, budget)?;
                let reports = audit::reports(std::mem::take(&mut found.results), format);
                Ok::<_, engine::Exhausted>((found, reports))
            })
            .await??;
        export_counts(&self.state, &found.policies);
        let mut w = Writes::default();
        self.write_policy_status(&found, &mut w).await?;
        self.write_exception_status(&found, &mut w).await?;
        self.write_reports(&reports, &mut w).await?;
        self.raise_events(&found, &mut w).await?;
        Ok((w, found.next_change))
    }

    fn ensure_leader(&self) -> Result<(), AuditError> {
        if self.leads() {
            Ok(())
        } else {
            Err(AuditError::NotLeader)
        }
    }

    async fn write_policy_status(&self, found: &Audit, w: &mut Writes) -> Result<(), AuditError> {
        let api: Api<SoDPolicy> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(kube_err("listing SoDPolicies"))?;
        for p in list {
            let name = p.name_any();
            let prev = p.status.as_ref();
            let generation = p.metadata.generation;
            let desired = match crd::compile_policy(&name, &p.spec) {
                Ok(_) => match found.policies.get(name.as_str()) {
                    Some(a) => audit::policy_status(prev, generation, a, found.at),
                    // Not in the snapshot yet: the next audit has it.
                    None => continue,
                },
                Err(e) => audit::invalid_policy_status(prev, generation, &e, found.at),
            };
            if prev == Some(&desired) {
                continue;
            }
            self.ensure_leader()?;
            let patch =
                json!({"apiVersion": crd::API_VERSION, "kind": "SoDPolicy", "status": desired});
            api.patch_status(&name, &apply_params(), &Patch::Apply(&patch))
                .await
                .map_err(kube_err(format!("status of SoDPolicy {name}")))?;
            self.state.metrics.audit_wrote("status");
            w.status += 1;
        }
        Ok(())
    }

    async fn write_exception_status(
        &self,
        found: &Audit,
        w: &mut Writes,
    ) -> Result<(), AuditError> {
        let api: Api<SoDException> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(kube_err("listing SoDExceptions"))?;
        for x in list {
            let name = x.name_any();
            let prev = x.status.as_ref();
            let desired = match crd::compile_exception(&name, &x.spec) {
                Ok(_) => match found.exceptions.get(name.as_str()) {
                    Some(a) => audit::exception_status(prev, a, found.at),
                    None => continue,
                },
                Err(e) => audit::invalid_exception_status(prev, &e, found.at),
            };
            if prev == Some(&desired) {
                continue;
            }
            self.ensure_leader()?;
            let patch =
                json!({"apiVersion": crd::API_VERSION, "kind": "SoDException", "status": desired});
            api.patch_status(&name, &apply_params(), &Patch::Apply(&patch))
                .await
                .map_err(kube_err(format!("status of SoDException {name}")))?;
            self.state.metrics.audit_wrote("status");
            w.status += 1;
        }
        Ok(())
    }

    async fn write_reports(
        &mut self,
        reports: &[Report],
        w: &mut Writes,
    ) -> Result<(), AuditError> {
        for cluster in [true, false] {
            let ar = api_resource(self.settings.format, cluster);
            let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
            let stored = match all.list(&lp).await {
                Ok(l) => l.items,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    if !self.no_report_crd {
                        tracing::warn!(
                            kind = ar.kind,
                            "the report CRD is not installed: no reports are written (install it, or set the chart's reports.installCRDs)"
                        );
                    }
                    self.no_report_crd = true;
                    continue;
                }
                Err(e) => return Err(kube_err(format!("listing {}s", ar.kind))(e)),
            };
            self.no_report_crd = false;
            // None: unreadable, rewritten below if still wanted.
            let mut stored_by: BTreeMap<(Option<String>, String), Option<Report>> = BTreeMap::new();
            for o in stored {
                let key = (o.namespace(), o.name_any());
                stored_by.insert(key, as_report(o, &ar));
            }
            let mut wanted = BTreeSet::new();
            for r in reports.iter().filter(|r| r.is_cluster() == cluster) {
                let key = (r.metadata.namespace.clone(), r.metadata.name.clone());
                wanted.insert(key.clone());
                if matches!(stored_by.get(&key), Some(Some(s)) if s == r) {
                    continue;
                }
                self.ensure_leader()?;
                let api: Api<DynamicObject> = match &r.metadata.namespace {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                    None => Api::all_with(self.client.clone(), &ar),
                };
                match api
                    .patch(&r.metadata.name, &apply_params(), &Patch::Apply(r))
                    .await
                {
                    Ok(_) => {
                        self.state.metrics.audit_wrote("report");
                        w.reports += 1;
                    }
                    // A namespace being deleted takes its reports with it.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => {
                        tracing::debug!(namespace = ?r.metadata.namespace, error = %s, "report not written");
                    }
                    Err(e) => return Err(kube_err(format!("writing {}", ar.kind))(e)),
                }
            }
            for (ns, name) in stored_by.keys().filter(|k| !wanted.contains(*k)) {
                self.ensure_leader()?;
                let api: Api<DynamicObject> = match ns {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                    None => Api::all_with(self.client.clone(), &ar),
                };
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(kube_err(format!("deleting {}", ar.kind))(e)),
                }
                self.state.metrics.audit_wrote("report_delete");
                w.deleted += 1;
            }
        }
        Ok(())
    }

    async fn raise_events(&mut self, found: &Audit, w: &mut Writes) -> Result<(), AuditError> {
        let current: HashSet<(&'static str, String)> = found
            .events
            .iter()
            .map(|e| (e.kind.reason(), e.key.clone()))
            .collect();
        // A finding that went away may come back: it is news again then.
        self.raised.retain(|k| current.contains(k));
        for e in &found.events {
            if w.events >= EVENTS_PER_AUDIT {
                break;
            }
            let key = (e.kind.reason(), e.key.clone());
            if self.raised.contains(&key) {
                continue;
            }
            self.ensure_leader()?;
            let reference = K8sRef {
                api_version: e.on.api_version.as_deref().map(String::from),
                kind: Some(e.on.kind.to_string()),
                namespace: e.on.namespace.as_deref().map(String::from),
                name: Some(e.on.name.to_string()),
                ..K8sRef::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: e.kind.reason().into(),
                note: Some(e.note_text()),
                action: "Audit".into(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => {
                    self.state.metrics.audit_wrote("event");
                    w.events += 1;
                    self.raised.insert(key);
                }
                // An event is worth less than the rest of the audit.
                Err(err) => {
                    tracing::warn!(error = %err, reason = e.kind.reason(), "event not recorded")
                }
            }
        }
        Ok(())
    }
}

/// The audit of a snapshot of `state` at its time: whole-state work, run
/// off the async threads and without the decision lock. One that runs out of
/// `budget` is counted here, for the controller and the static audit alike.
fn evaluate(state: &AppState, budget: engine::Budget) -> Result<Audit, engine::Exhausted> {
    let index = state.snapshot();
    let now = state.now();
    match engine::evaluate_within(&index, now, budget) {
        (ev, None) => Ok(audit::audit(&index, &ev, now)),
        (_, Some(e)) => {
            state.metrics.count_exhausted("audit", &e);
            Err(e)
        }
    }
}

/// [`evaluate`]'s counts alone, a part at a time (`audit::counts`): a
/// fixed state's audit keeps no results, so it never holds them all.
fn count(
    state: &AppState,
    budget: engine::Budget,
) -> Result<audit::AuditCounts, engine::Exhausted> {
    audit::counts(&state.snapshot(), state.now(), budget).inspect_err(|e| {
        state.metrics.count_exhausted("audit", e);
    })
}

/// The violations gauge, from the audit alone (issue 11).
fn export_counts(state: &AppState, policies: &BTreeMap<crate::model::Name, audit::PolicyAudit>) {
    let mut counts = Vec::new();
    for (policy, p) in policies {
        for (action, n) in &p.by_action {
            counts.push((policy.to_string(), action.to_string(), *n));
        }
    }
    state.metrics.set_audit_violations(&counts);
}

/// The audit of a fixed state (`serve --state`): nothing to write to, so
/// only its metrics, at start, when a finding changes with time and every
/// `interval` (which keeps the audit's age meaningful for alerts).
pub fn spawn_static(
    state: Arc<AppState>,
    interval: Duration,
    budget: engine::Budget,
    background: Background,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let start = Instant::now();
            let s = state.clone();
            let next = match background
                .run("audit", move || Ok::<_, AuditError>(count(&s, budget)?))
                .await
                .map_err(AuditError::from)
                .flatten()
            {
                Ok(found) => {
                    // The counts and the audit's age change together: a
                    // scrape between them saw this audit's counts beside
                    // the age of none (or of the one before).
                    export_counts(&state, &found.policies);
                    state.metrics.audit_succeeded();
                    found.next_change
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit failed");
                    None
                }
            };
            state
                .metrics
                .audit_duration
                .observe(start.elapsed().as_secs_f64());
            tracing::info!(seconds = start.elapsed().as_secs_f64(), "audit done");
            // A fixed clock (`--now`) never reaches a finding's change.
            let until_change = next
                .filter(|_| !state.has_fixed_clock())
                .map(|t| Duration::try_from(t.duration_since(state.now())).unwrap_or_default());
            let wait = until_change.map_or(interval, |d| d.min(interval));
            tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
        }
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

pub fn api_resource(format: ReportFormat, cluster: bool) -> ApiResource {
    let (kind, plural) = format.kind(cluster);
    ApiResource {
        group: format.group().into(),
        version: format.version().into(),
        api_version: format.api_version().into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// A stored report as the audit would have written it: only our label,
/// no server-set metadata, so that equal content compares equal.
fn as_report(o: DynamicObject, ar: &ApiResource) -> Option<Report> {
    let mut v = serde_json::to_value(&o).ok()?;
    // List items may come without their type.
    v["apiVersion"] = json!(ar.api_version);
    v["kind"] = json!(ar.kind);
    let mut r: Report = serde_json::from_value(v).ok()?;
    r.metadata
        .labels
        .retain(|k, _| k.as_str() == MANAGED_BY_LABEL);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_report() -> Report {
        let objs = [
            json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "p"},
                   "spec": {"duties": [
                       {"name": "a", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
                       {"name": "b", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}]}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "pay"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "pay"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "pay"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                   "subjects": [{"kind": "ServiceAccount", "name": "api"}]}),
        ];
        let index = crate::engine::index::Index::from_objects(
            objs.iter()
                .map(|o| crate::decode::convert(o).unwrap().unwrap()),
        );
        let now = Timestamp::now();
        let found = audit::audit(&index, &engine::evaluate(&index, now), now);
        let mut reports = audit::reports(found.results, ReportFormat::Openreports);
        reports.pop().unwrap()
    }

    /// What the API server gives back: server-set metadata, labels of other
    /// tools, list items without their type. None of it is a change.
    #[test]
    fn a_stored_report_equals_the_written_one_despite_server_metadata() {
        let r = a_report();
        assert_eq!(r.metadata.namespace.as_deref(), Some("pay"));
        let mut v = serde_json::to_value(&r).unwrap();
        let m = v["metadata"].as_object_mut().unwrap();
        m.insert("resourceVersion".into(), json!("42"));
        m.insert("uid".into(), json!("u"));
        m.insert("managedFields".into(), json!([{"manager": "sodguard"}]));
        m.insert("creationTimestamp".into(), json!("2026-11-28T12:00:00Z"));
        v["metadata"]["labels"]["team"] = json!("x");
        let obj = v.as_object_mut().unwrap();
        obj.remove("apiVersion");
        obj.remove("kind");
        let stored: DynamicObject = serde_json::from_value(v).unwrap();
        let ar = api_resource(ReportFormat::Openreports, false);
        assert_eq!(as_report(stored, &ar), Some(r.clone()));
    }

    #[test]
    fn a_changed_stored_report_differs() {
        let r = a_report();
        let mut v = serde_json::to_value(&r).unwrap();
        v["results"][0]["result"] = json!("pass");
        let stored: DynamicObject = serde_json::from_value(v).unwrap();
        let ar = api_resource(ReportFormat::Openreports, false);
        assert_ne!(as_report(stored, &ar), Some(r));
    }
}
