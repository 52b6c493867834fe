//! The grant controller (R10.4): on the leader only, it creates the binding
//! of every grant whose window is open, deletes it when the window closes or
//! the grant is gone, and records each grant's standing in its status
//! (server-side apply, only when it changed). It reads the confirmed state,
//! so after downtime its first pass deletes what expired meanwhile.
//!
//! A window's end is a function of the grant alone (its creation, or the
//! approval that completed it, plus its duration): neither a late
//! activation nor an edited status lengthens it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::crd::{self, AccessGrant, ClusterAccessGrant};
use crate::engine::{self, GrantPhase};
use crate::model::{BindingKey, GRANT_LABEL, GrantKey, Identity, JitGrant};
use crate::runtime::state::AppState;

const FIELD_MANAGER: &str = "sodguard-grants";
/// Every binding sodguard creates for a grant is named so.
pub const BINDING_PREFIX: &str = "sodguard-grant-";

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("the grant plan stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("lost the lead")]
    NotLeader,
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> GrantError {
    let what = what.into();
    move |source| GrantError::Kube { what, source }
}

/// What one pass decided, from a snapshot.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<Arc<JitGrant>>,
    pub delete: Vec<BindingKey>,
    pub status: Vec<(GrantKey, Value)>,
    /// The next time a grant's standing changes by itself.
    pub wake: Option<Timestamp>,
}

/// The plan for `index` at `now`: pure, so it is tested without a cluster.
/// `budget` bounds each binding's judging, as its admission would be.
pub fn plan(index: &mut engine::index::Index, now: Timestamp, budget: engine::Budget) -> Plan {
    let mut p = Plan::default();
    let grants: Vec<Arc<JitGrant>> = index.grants().cloned().collect();
    for g in &grants {
        let st = engine::grant_standing(index, g, now);
        let key = g.binding_key();
        let existing = index.binding(&key).cloned();
        let mut phase = st.phase;
        let mut reason = st.reason.clone();
        match st.phase {
            GrantPhase::Active => match &existing {
                None => {
                    // R10.3: judged again at activation, on today's state.
                    let review = engine::judge_grant_binding(index, g, now, budget);
                    if review.allowed {
                        p.create.push(g.clone());
                    } else {
                        phase = GrantPhase::Refused;
                        reason = Some(refusal_text(&review));
                    }
                }
                Some(b) if b.role == g.role && b.subjects == [g.subject.clone()] => {}
                Some(_) => {
                    phase = GrantPhase::Refused;
                    reason = Some(format!(
                        "{key} exists and is not this grant's binding (another role or subject)"
                    ));
                }
            },
            _ => {
                if existing.is_some() {
                    p.delete.push(key.clone());
                }
            }
        }
        if let Some(t) = match st.phase {
            GrantPhase::Active => st.expires_at,
            _ => None,
        } {
            p.wake = Some(p.wake.map_or(t, |w: Timestamp| w.min(t)));
        }
        let mut status = json!({"phase": phase.as_str()});
        if let Some(s) = st.start
            && phase == GrantPhase::Active
        {
            status["activatedAt"] = json!(s.to_string());
        }
        if let Some(e) = st.expires_at {
            status["expiresAt"] = json!(e.to_string());
        }
        if let Some(r) = reason {
            status["reason"] = json!(r);
        }
        if phase == GrantPhase::Active {
            status["binding"] = json!(key.name.to_string());
        }
        p.status.push((g.key(), status));
    }
    // Bindings of grants that are gone (the owner reference does the same
    // where a garbage collector runs; this is for where none does).
    for b in index.bindings() {
        if let Some(name) = b.key.name.strip_prefix(BINDING_PREFIX) {
            let gk = GrantKey {
                namespace: b.key.namespace.clone(),
                name: name.into(),
            };
            if index.grant(&gk).is_none() {
                p.delete.push(b.key.clone());
            }
        }
    }
    p
}

fn refusal_text(review: &engine::Review) -> String {
    if let Some(r) = &review.refusal {
        return r.clone();
    }
    let v: Vec<String> = review
        .denying()
        .map(|v| {
            format!(
                "its binding would make {} violate SoDPolicy {} in {}",
                v.subject, v.policy, v.namespace
            )
        })
        .collect();
    v.join("; ")
}

pub fn spawn(
    client: Client,
    state: Arc<AppState>,
    leading: Option<watch::Receiver<bool>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = Controller {
            client,
            state,
            leading,
            written: HashMap::new(),
        };
        c.run().await;
    })
}

struct Controller {
    client: Client,
    state: Arc<AppState>,
    leading: Option<watch::Receiver<bool>>,
    /// The status last written per grant, so an unchanged one is not.
    written: HashMap<GrantKey, Value>,
}

impl Controller {
    fn leads(&self) -> bool {
        self.leading.as_ref().is_none_or(|rx| *rx.borrow())
    }

    async fn run(&mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: Option<u64> = None;
        let mut wake: Option<Timestamp> = None;
        let mut last = Instant::now();
        loop {
            tick.tick().await;
            if !self.state.is_ready() {
                continue;
            }
            if !self.leads() {
                seen = None;
                self.written.clear();
                continue;
            }
            let changes = self.state.changes();
            let due = seen != Some(changes)
                || wake.is_some_and(|w| Timestamp::now() >= w)
                || last.elapsed() >= Duration::from_secs(30);
            if !due {
                continue;
            }
            seen = Some(changes);
            last = Instant::now();
            match self.once().await {
                Ok(next) => wake = next,
                Err(e) => {
                    tracing::warn!(error = %e, "grant controller pass failed");
                    seen = None;
                }
            }
        }
    }

    async fn once(&mut self) -> Result<Option<Timestamp>, GrantError> {
        let state = self.state.clone();
        let p = tokio::task::spawn_blocking(move || {
            let mut index = state.snapshot();
            plan(&mut index, Timestamp::now(), state.decision_budget())
        })
        .await?;
        for key in &p.delete {
            self.ensure_leader()?;
            self.delete_binding(key).await?;
        }
        for g in &p.create {
            self.ensure_leader()?;
            self.create_binding(g).await?;
        }
        for (key, status) in p.status {
            if self.written.get(&key) == Some(&status) {
                continue;
            }
            self.ensure_leader()?;
            self.write_status(&key, &status).await?;
            self.written.insert(key, status);
        }
        Ok(p.wake)
    }

    fn ensure_leader(&self) -> Result<(), GrantError> {
        if self.leads() {
            Ok(())
        } else {
            Err(GrantError::NotLeader)
        }
    }

    /// Deletes a grant's binding, and only one sodguard made (labelled).
    async fn delete_binding(&self, key: &BindingKey) -> Result<(), GrantError> {
        let name = key.name.to_string();
        let what = format!("deleting {key}");
        let labelled = |labels: Option<&std::collections::BTreeMap<String, String>>| {
            labels.is_some_and(|l| l.contains_key(GRANT_LABEL))
        };
        match &key.namespace {
            Some(ns) => {
                let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), ns);
                match api.get_opt(&name).await.map_err(kube_err(&what))? {
                    Some(b) if labelled(b.metadata.labels.as_ref()) => {}
                    _ => return Ok(()),
                }
                ignore_missing(api.delete(&name, &DeleteParams::default()).await)
                    .map_err(kube_err(&what))?;
            }
            None => {
                let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
                match api.get_opt(&name).await.map_err(kube_err(&what))? {
                    Some(b) if labelled(b.metadata.labels.as_ref()) => {}
                    _ => return Ok(()),
                }
                ignore_missing(api.delete(&name, &DeleteParams::default()).await)
                    .map_err(kube_err(&what))?;
            }
        }
        tracing::info!(binding = %key, "grant binding deleted");
        Ok(())
    }

    async fn create_binding(&self, g: &JitGrant) -> Result<(), GrantError> {
        let key = g.binding_key();
        let what = format!("creating {key} for {}", g.key());
        let owner = match &g.namespace {
            Some(ns) => {
                let api: Api<AccessGrant> = Api::namespaced(self.client.clone(), ns);
                let Some(o) = api.get_opt(&g.name).await.map_err(kube_err(&what))? else {
                    return Ok(());
                };
                o.controller_owner_ref(&())
            }
            None => {
                let api: Api<ClusterAccessGrant> = Api::all(self.client.clone());
                let Some(o) = api.get_opt(&g.name).await.map_err(kube_err(&what))? else {
                    return Ok(());
                };
                o.controller_owner_ref(&())
            }
        };
        let mut body = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": key.kind(),
            "metadata": {
                "name": key.name.to_string(),
                "labels": {GRANT_LABEL: g.name.to_string()},
                "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": g.role.kind(), "name": g.role.name.to_string()},
            "subjects": [subject(&g.subject)],
        });
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let r = match &g.namespace {
            Some(ns) => {
                body["metadata"]["namespace"] = json!(ns.to_string());
                let b: RoleBinding = serde_json::from_value(body).unwrap_or_default();
                let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), ns);
                api.create(&pp, &b).await.map(|_| ())
            }
            None => {
                let b: ClusterRoleBinding = serde_json::from_value(body).unwrap_or_default();
                let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
                api.create(&pp, &b).await.map(|_| ())
            }
        };
        match r {
            Ok(()) => tracing::info!(binding = %key, grant = %g.key(), "grant activated"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(kube_err(what)(e)),
        }
        Ok(())
    }

    async fn write_status(&self, key: &GrantKey, status: &Value) -> Result<(), GrantError> {
        let what = format!("status of {key}");
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let name = key.name.to_string();
        let r = match &key.namespace {
            Some(ns) => {
                let patch = json!({"apiVersion": crd::API_VERSION, "kind": "AccessGrant", "status": status});
                let api: Api<AccessGrant> = Api::namespaced(self.client.clone(), ns);
                api.patch_status(&name, &params, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
            None => {
                let patch = json!({"apiVersion": crd::API_VERSION, "kind": "ClusterAccessGrant", "status": status});
                let api: Api<ClusterAccessGrant> = Api::all(self.client.clone());
                api.patch_status(&name, &params, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
        };
        ignore_missing(r).map_err(kube_err(what))
    }
}

fn ignore_missing<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn subject(id: &Identity) -> Value {
    match id {
        Identity::ServiceAccount { namespace, name } => {
            json!({"kind": "ServiceAccount", "namespace": namespace.to_string(), "name": name.to_string()})
        }
        Identity::User(n) => {
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": n.to_string()})
        }
        Identity::Group(n) => {
            json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": n.to_string()})
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decode::convert;
    use crate::engine::index::Index;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn index(extra: &[Value]) -> Index {
        let mut objs = vec![
            json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "p"},
                "spec": {"duties": [
                    {"name": "a", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
                    {"name": "u", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}]}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "pay"}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "pay"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "writer", "namespace": "pay"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": "pay"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
            json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrantPolicy", "metadata": {"name": "oncall"},
                "spec": {"roles": ["reader"], "namespaces": ["pay"], "maxDuration": "4h", "approverGroups": ["leads"],
                         "breakGlass": {"allowed": true, "maxDuration": "1h"}}}),
        ];
        objs.extend(extra.iter().cloned());
        Index::from_objects(objs.iter().map(|o| {
            let mut obj = convert(o).unwrap().unwrap();
            // Files carry no creation time; a grant's comes from here.
            if let crate::model::Object::Grant(g) = &mut obj {
                let mut x = (**g).clone();
                x.created = Some(at("2026-11-28T11:00:00Z"));
                *g = Arc::new(x);
            }
            obj
        }))
    }

    fn grant(name: &str, sa: &str, extra: Value) -> Value {
        let mut spec = json!({
            "subject": {"kind": "ServiceAccount", "namespace": "pay", "name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "duration": "2h", "reason": "r", "requestedBy": "alice"});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": name, "namespace": "pay"}, "spec": spec})
    }

    fn approved() -> Value {
        json!({"approvals": [{"user": "bob", "at": "2026-11-28T12:00:00Z"},
                             {"user": "carol", "at": "2026-11-28T12:10:00Z"}]})
    }

    fn binding(name: &str, sa: &str, role: &str) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "pay"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": "pay"}]})
    }

    fn phase(p: &Plan, name: &str) -> Value {
        p.status
            .iter()
            .find(|(k, _)| &*k.name == name)
            .map(|(_, s)| s.clone())
            .unwrap()
    }

    #[test]
    fn an_approved_grant_is_bound_from_its_completing_approval_for_its_duration() {
        let mut i = index(&[grant("g", "web", approved())]);
        let p = plan(
            &mut i,
            at("2026-11-28T12:30:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert_eq!(p.create.len(), 1);
        let s = phase(&p, "g");
        assert_eq!(s["phase"], "Active");
        assert_eq!(s["activatedAt"], "2026-11-28T12:10:00Z");
        assert_eq!(s["expiresAt"], "2026-11-28T14:10:00Z");
        assert_eq!(p.wake, Some(at("2026-11-28T14:10:00Z")));
        // One approval is not enough (approvalsRequired defaults to 2).
        let one = json!({"approvals": [{"user": "bob", "at": "2026-11-28T12:00:00Z"}]});
        let mut i = index(&[grant("g", "web", one)]);
        let p = plan(
            &mut i,
            at("2026-11-28T12:30:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert!(p.create.is_empty());
        assert_eq!(phase(&p, "g")["phase"], "Pending");
    }

    #[test]
    fn break_glass_is_bound_at_once_and_expired_bindings_are_deleted() {
        let bg = json!({"breakGlass": true, "duration": "30m"});
        let mut i = index(&[grant("g", "web", bg.clone())]);
        let p = plan(
            &mut i,
            at("2026-11-28T11:01:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert_eq!(p.create.len(), 1);
        // Came back after the expiry, with the binding still there.
        let mut i = index(&[
            grant("g", "web", bg),
            binding("sodguard-grant-g", "web", "reader"),
        ]);
        let p = plan(
            &mut i,
            at("2026-11-28T13:00:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert!(p.create.is_empty());
        assert_eq!(p.delete.len(), 1);
        assert_eq!(phase(&p, "g")["phase"], "Expired");
    }

    #[test]
    fn a_grant_that_would_complete_a_conflict_is_not_activated_and_says_why() {
        let mut i = index(&[grant("g", "api", approved()), binding("w", "api", "writer")]);
        let p = plan(
            &mut i,
            at("2026-11-28T12:30:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert!(p.create.is_empty());
        let s = phase(&p, "g");
        assert_eq!(s["phase"], "Refused");
        assert!(s["reason"].as_str().unwrap().contains("SoDPolicy p"), "{s}");
    }

    #[test]
    fn the_binding_of_a_deleted_grant_is_deleted_and_foreign_bindings_are_not_taken_for_ours() {
        let mut i = index(&[binding("sodguard-grant-gone", "web", "reader")]);
        let p = plan(
            &mut i,
            at("2026-11-28T12:30:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert_eq!(p.delete.len(), 1);
        let mut i = index(&[
            grant("g", "web", approved()),
            binding("sodguard-grant-g", "api", "reader"),
        ]);
        let p = plan(
            &mut i,
            at("2026-11-28T12:30:00Z"),
            engine::Budget::UNLIMITED,
        );
        assert_eq!(phase(&p, "g")["phase"], "Refused");
        assert!(p.create.is_empty() && p.delete.is_empty());
    }
}
