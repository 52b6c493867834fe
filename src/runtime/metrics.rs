//! Prometheus metrics. Labels are low-cardinality: kinds, operations,
//! decisions, watched resources and policy names (a handful per cluster) —
//! never subjects, objects or messages.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::index::Counts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: String,
    pub operation: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthorizeLabels {
    /// `deny` or `no-opinion`.
    pub decision: String,
    /// `violation`, `grant-ended`, or why there is no opinion: `exempt`, `no-duty`,
    /// `no-violation`, `not-ready`.
    pub why: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Work stopped by its budget: `decision` or `audit`, and `time` or
/// `violations`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabel {
    pub work: &'static str,
    pub why: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyActionLabel {
    pub policy: String,
    pub action: String,
}

/// A TLS listener: `webhook` or `peer`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    pub listener: String,
    /// `handshake-timeout`, `handshake-failed` or `idle-timeout`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    pub what: String,
}

/// Cheap to clone; all handles share the registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histogram,
    pub index_objects: Family<KindLabel, Gauge>,
    pub watch_restarts: Family<ResourceLabel, Counter>,
    pub watch_last_event_age: Family<
        ResourceLabel,
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    >,
    last_events: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
    /// Requests a follower sent to the leader and got an answer for.
    pub forwarded: Counter,
    /// Time of a forwarded request, as the follower sees it.
    pub forward_latency: Histogram,
    /// Requests a follower answered 503 for: no leader known, or the leader
    /// unreachable or too slow.
    pub forward_failures: Family<ReasonLabel, Counter>,
    /// 1 while this replica is the leader (with leader election).
    pub leader: Gauge,
    /// Violations by policy and action, as this replica's last audit found
    /// them: only the replica that audits (the leader) has any.
    pub audit_violations: Family<PolicyActionLabel, Gauge>,
    /// Time of one audit: snapshot, evaluation and the writes.
    pub audit_duration: Histogram,
    /// API writes of the audit, by what was written.
    pub audit_writes: Family<WriteLabel, Counter>,
    /// Decisions and audits stopped short by their budget.
    pub budget_exhausted: Family<BudgetLabel, Counter>,
    audit_age: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    last_audit: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Answers to `/validate` other than an AdmissionReview (4xx, 5xx), by
    /// HTTP status: the API server applies the failurePolicy to them.
    pub refused: Family<CodeLabel, Counter>,
    /// SubjectAccessReviews answered by `/authorize` (R13).
    pub authorize_requests: Family<AuthorizeLabels, Counter>,
    pub authorize_latency: Histogram,
    /// TCP connections a TLS listener holds (at most --max-connections).
    pub connections_open: Family<ListenerLabel, Gauge>,
    /// Times a listener held --max-connections and left the next
    /// connection in the kernel's backlog until one closed.
    pub connections_at_cap: Family<ListenerLabel, Counter>,
    /// Connections the server dropped before or between requests.
    pub connections_dropped: Family<ListenerReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sodguard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by kind, operation and decision",
            requests.clone(),
        );
        // 50 µs .. ~3 s
        let latency = Histogram::new(exponential_buckets(0.00005, 2.0, 17));
        registry.register(
            "admission_duration_seconds",
            "Time to decide one admission request",
            latency.clone(),
        );
        let authorize_requests = Family::<AuthorizeLabels, Counter>::default();
        registry.register(
            "authorize_requests",
            "SubjectAccessReviews answered, by decision and why",
            authorize_requests.clone(),
        );
        // 10 µs .. ~0.6 s
        let authorize_latency = Histogram::new(exponential_buckets(0.00001, 2.0, 17));
        registry.register(
            "authorize_duration_seconds",
            "Time to answer one SubjectAccessReview",
            authorize_latency.clone(),
        );
        let index_objects = Family::<KindLabel, Gauge>::default();
        registry.register(
            "index_objects",
            "Objects in the index, by kind",
            index_objects.clone(),
        );
        let watch_restarts = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watch restarts (errors and relists), by resource",
            watch_restarts.clone(),
        );
        let watch_last_event_age = Family::default();
        registry.register(
            "watch_last_event_age_seconds",
            "Seconds since the last event of each watcher",
            watch_last_event_age.clone(),
        );
        let forwarded = Counter::default();
        registry.register(
            "forwarded_requests",
            "Requests forwarded to the leader and answered by it",
            forwarded.clone(),
        );
        let forward_latency = Histogram::new(exponential_buckets(0.00005, 2.0, 17));
        registry.register(
            "forward_duration_seconds",
            "Time of a request forwarded to the leader, seen from the follower",
            forward_latency.clone(),
        );
        let forward_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "forward_failures",
            "Requests a follower answered 503 for, by reason",
            forward_failures.clone(),
        );
        let refused = Family::<CodeLabel, Counter>::default();
        registry.register(
            "admission_refused_requests",
            "Requests to /validate or /authorize answered without a review, by HTTP status",
            refused.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version of this sodguard as a label",
            build_info,
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the elected leader",
            leader.clone(),
        );
        let audit_violations = Family::<PolicyActionLabel, Gauge>::default();
        registry.register(
            "audit_violations",
            "Violations no exception excuses, by policy and action, as the last audit found them",
            audit_violations.clone(),
        );
        // 1 ms .. ~130 s
        let audit_duration = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register(
            "audit_duration_seconds",
            "Time of one review-time audit",
            audit_duration.clone(),
        );
        let audit_writes = Family::<WriteLabel, Counter>::default();
        registry.register(
            "audit_writes",
            "API writes of the audit (status, report, report deletion, event)",
            audit_writes.clone(),
        );
        let budget_exhausted = Family::<BudgetLabel, Counter>::default();
        registry.register(
            "budget_exhausted",
            "Decisions and audits stopped short by their budget (--decision-budget, --audit-budget and their violation limits), by work and why",
            budget_exhausted.clone(),
        );
        let audit_age = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "audit_last_success_age_seconds",
            "Seconds since this replica's last successful audit (-1: none since it started or took the lead; always -1 on a follower)",
            audit_age.clone(),
        );
        let connections_open = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections_open",
            "TCP connections held by a TLS listener (webhook, peer), at most --max-connections",
            connections_open.clone(),
        );
        let connections_at_cap = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "connections_at_cap",
            "Times a TLS listener held --max-connections and left new connections waiting in the kernel's backlog",
            connections_at_cap.clone(),
        );
        let connections_dropped = Family::<ListenerReasonLabels, Counter>::default();
        registry.register(
            "connections_dropped",
            "Connections closed by the server before or between requests, by reason (handshake-timeout, handshake-failed, idle-timeout)",
            connections_dropped.clone(),
        );
        Metrics {
            connections_open,
            connections_at_cap,
            connections_dropped,
            audit_violations,
            audit_duration,
            audit_writes,
            budget_exhausted,
            audit_age,
            last_audit: Arc::default(),
            registry: Arc::new(registry),
            forwarded,
            forward_latency,
            forward_failures,
            leader,
            refused,
            authorize_requests,
            authorize_latency,
            requests,
            latency,
            index_objects,
            watch_restarts,
            watch_last_event_age,
            last_events: Arc::default(),
        }
    }

    pub fn observe_request(&self, kind: &str, operation: &str, decision: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind.into(),
                operation: operation.into(),
                decision: decision.into(),
            })
            .inc();
        self.latency.observe(seconds);
    }

    /// A request answered with an HTTP error (bad body, too large, not
    /// ready, not the leader): counted, or a misconfigured API server looks
    /// idle.
    pub fn count_refused(&self, code: u16) {
        self.refused
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    pub fn observe_authorize(&self, decision: &str, why: &str, seconds: f64) {
        self.authorize_requests
            .get_or_create(&AuthorizeLabels {
                decision: decision.into(),
                why: why.into(),
            })
            .inc();
        self.authorize_latency.observe(seconds);
    }

    pub fn forward_failure(&self, reason: &str) {
        self.forward_failures
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn watch_event(&self, resource: &str) {
        if let Ok(mut m) = self.last_events.lock() {
            m.insert(resource.to_string(), Instant::now());
        }
    }

    pub fn watch_restart(&self, resource: &str) {
        self.watch_restarts
            .get_or_create(&ResourceLabel {
                resource: resource.into(),
            })
            .inc();
    }

    pub fn set_index_counts(&self, c: &Counts) {
        for (kind, n) in [
            ("Namespace", c.namespaces),
            ("ServiceAccount", c.service_accounts),
            ("Role", c.roles),
            ("ClusterRole", c.cluster_roles),
            ("RoleBinding", c.role_bindings),
            ("ClusterRoleBinding", c.cluster_role_bindings),
            ("SoDPolicy", c.policies),
            ("SoDException", c.exceptions),
            ("TokenSecret", c.token_secrets),
        ] {
            self.index_objects
                .get_or_create(&KindLabel { kind: kind.into() })
                .set(n as i64);
        }
    }

    /// The audit's violation counts: `(policy, action, count)`.
    pub fn set_audit_violations(&self, counts: &[(String, String, i64)]) {
        self.audit_violations.clear();
        for (policy, action, n) in counts {
            self.audit_violations
                .get_or_create(&PolicyActionLabel {
                    policy: policy.clone(),
                    action: action.clone(),
                })
                .set(*n);
        }
    }

    pub fn audit_succeeded(&self) {
        if let Ok(mut t) = self.last_audit.lock() {
            *t = Some(Instant::now());
        }
    }

    /// This replica no longer audits (it lost the lead): it exports no
    /// violation counts, and no audit age, rather than the last ones it
    /// found, which would go stale unseen beside the new leader's.
    pub fn audit_stopped(&self) {
        self.audit_violations.clear();
        if let Ok(mut t) = self.last_audit.lock() {
            *t = None;
        }
    }

    pub fn audit_wrote(&self, what: &str) {
        self.audit_writes
            .get_or_create(&WriteLabel { what: what.into() })
            .inc();
    }

    pub fn count_exhausted(&self, work: &'static str, e: &crate::engine::Exhausted) {
        self.budget_exhausted
            .get_or_create(&BudgetLabel {
                work,
                why: e.metric_label(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(t) = self.last_audit.lock() {
            self.audit_age
                .set(t.map_or(-1.0, |at| at.elapsed().as_secs_f64()));
        }
        if let Ok(m) = self.last_events.lock() {
            for (r, at) in m.iter() {
                self.watch_last_event_age
                    .get_or_create(&ResourceLabel {
                        resource: r.clone(),
                    })
                    .set(at.elapsed().as_secs_f64());
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    /// Issue 11: one violations gauge, the audit's; a replica that stops
    /// auditing (a leader that lost the lead) says so instead of showing its
    /// last counts for ever.
    #[test]
    fn the_audit_is_the_only_violations_gauge_and_a_follower_exports_none() {
        let m = Metrics::new();
        assert!(
            lines(&m, "sodguard_violations").is_empty(),
            "{}",
            m.render()
        );
        assert_eq!(
            lines(&m, "sodguard_audit_last_success_age_seconds "),
            ["sodguard_audit_last_success_age_seconds -1.0"]
        );
        m.set_audit_violations(&[("p".into(), "Deny".into(), 3)]);
        m.audit_succeeded();
        assert_eq!(
            lines(&m, "sodguard_audit_violations{"),
            [r#"sodguard_audit_violations{policy="p",action="Deny"} 3"#]
        );
        let age = lines(&m, "sodguard_audit_last_success_age_seconds ");
        let age: f64 = age[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..60.0).contains(&age), "{age}");
        m.audit_stopped();
        assert!(lines(&m, "sodguard_audit_violations{").is_empty());
        assert_eq!(
            lines(&m, "sodguard_audit_last_success_age_seconds "),
            ["sodguard_audit_last_success_age_seconds -1.0"]
        );
    }
}
